-- 0004: a batch's members found by index (progress never scans every job), and marks
-- with a lifetime (MarkParams.ttl_s) that prune deletes once it has ended.
CREATE INDEX offload_jobs_batch ON offload_jobs (batch, id) WHERE batch IS NOT NULL;
ALTER TABLE offload_marks ADD COLUMN expires_at REAL;
CREATE INDEX offload_marks_expiry ON offload_marks (expires_at) WHERE expires_at IS NOT NULL;
