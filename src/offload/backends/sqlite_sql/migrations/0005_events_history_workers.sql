-- 0005: each job's ended attempts (a JSON array), the log of every step's events that
-- live subscribers tail, the registry of live workers, and the created-at filter's index.
ALTER TABLE offload_jobs ADD COLUMN attempts TEXT;
CREATE INDEX offload_jobs_created ON offload_jobs (created_at);

-- AUTOINCREMENT: a sequence number is never reused, even once prune has emptied the log,
-- so a subscriber's last number stays behind every later step's.
CREATE TABLE offload_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    body BLOB NOT NULL
);

CREATE TABLE offload_workers (
    id TEXT PRIMARY KEY,
    info BLOB NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
