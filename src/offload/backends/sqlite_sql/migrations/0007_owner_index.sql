-- 0007: an owner's jobs by state, for a person's own dashboard ("my work": how many of
-- mine succeeded, failed, wait). Partial: an app whose jobs have no owner pays nothing.
CREATE INDEX offload_jobs_owner ON offload_jobs (owner, state, id) WHERE owner IS NOT NULL;
