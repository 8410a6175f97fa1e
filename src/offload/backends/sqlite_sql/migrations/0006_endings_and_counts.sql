-- 0006: what a job's end sets off, stored by the step that ends it: the follow-ups a job
-- carries (NULL for most jobs, so a row without any costs nothing), and batches counted
-- down by their members' ends (one row per batch, found by id: never a scan of members);
-- and per-minute counts, a source's row per (minute, queue, task), kept until expires_at.
ALTER TABLE offload_jobs ADD COLUMN follow_ups BLOB;

-- callback: the NewJob (JSON) stored in the step that ends the last member
CREATE TABLE offload_batches (
    id TEXT PRIMARY KEY,
    total INTEGER NOT NULL,
    remaining INTEGER NOT NULL,
    created_at REAL NOT NULL,
    completed_at REAL,
    callback BLOB,
    callback_id TEXT
) WITHOUT ROWID;
CREATE INDEX offload_batches_open ON offload_batches (id) WHERE completed_at IS NULL;
CREATE INDEX offload_batches_completed ON offload_batches (completed_at)
    WHERE completed_at IS NOT NULL;

-- wait_ms and run_ms: JSON lists (NULL: no histogram, as in the store's enqueue rows)
CREATE TABLE offload_counts (
    minute INTEGER NOT NULL,
    queue TEXT NOT NULL,
    task TEXT NOT NULL,
    source TEXT NOT NULL,
    enqueued INTEGER NOT NULL DEFAULT 0,
    started INTEGER NOT NULL DEFAULT 0,
    succeeded INTEGER NOT NULL DEFAULT 0,
    retried INTEGER NOT NULL DEFAULT 0,
    dead INTEGER NOT NULL DEFAULT 0,
    wait_ms TEXT,
    run_ms TEXT,
    expires_at REAL NOT NULL,
    PRIMARY KEY (minute, queue, task, source)
) WITHOUT ROWID;
CREATE INDEX offload_counts_expiry ON offload_counts (expires_at);
