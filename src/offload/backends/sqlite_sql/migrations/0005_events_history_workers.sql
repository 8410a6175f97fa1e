-- 0005: each job's ended attempts (a JSON array), the log of every step's events that
-- live subscribers tail, the registry of live workers, and the created-at filter's index.
ALTER TABLE offload_jobs ADD COLUMN attempts TEXT;
CREATE INDEX offload_jobs_created ON offload_jobs (created_at);

-- prune keeps the newest row, so a number is never reused and a subscriber's last number
-- stays behind every later step's (no AUTOINCREMENT: its counter is one more page to write
-- in every step).
CREATE TABLE offload_events (
    seq INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    body BLOB NOT NULL
);

CREATE TABLE offload_workers (
    id TEXT PRIMARY KEY,
    info BLOB NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
