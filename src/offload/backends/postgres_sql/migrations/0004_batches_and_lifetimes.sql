-- 0004: a batch's members found by index (progress never scans every job), and marks
-- with a lifetime (MarkParams.ttl_s) that prune deletes once it has ended.
CREATE INDEX jobs_batch ON {schema}.jobs (batch, id) WHERE batch IS NOT NULL;
ALTER TABLE {schema}.marks ADD COLUMN expires_at timestamptz;
CREATE INDEX marks_expiry ON {schema}.marks (expires_at) WHERE expires_at IS NOT NULL;
