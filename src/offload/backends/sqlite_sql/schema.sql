-- The current schema, applied as a whole to a new database.
-- Every change here needs a matching file in migrations/ (a test compares them).
-- attempts (a JSON array of ended attempts) and follow_ups (a JSON array of FollowUp, NULL
-- for most jobs) as migrations 0005's and 0006's ALTER TABLEs leave them
CREATE TABLE offload_jobs (
    id TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    queue TEXT NOT NULL,
    state TEXT NOT NULL,
    payload BLOB NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    attempt INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 1,
    delivery INTEGER NOT NULL DEFAULT 0,
    crashes INTEGER NOT NULL DEFAULT 0,
    run_at REAL NOT NULL,
    lease_until REAL,
    lease_s REAL,
    timeout_s REAL,
    worker TEXT,
    progress REAL NOT NULL DEFAULT 0,
    progress_message TEXT,
    result BLOB,
    error BLOB,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    key TEXT,
    batch TEXT,
    owner TEXT,
    meta BLOB
, attempts TEXT, follow_ups BLOB) WITHOUT ROWID;

CREATE INDEX offload_jobs_ready ON offload_jobs (queue, priority DESC, run_at, id)
    WHERE state IN ('queued', 'scheduled');
CREATE INDEX offload_jobs_leases ON offload_jobs (lease_until) WHERE state = 'running';
CREATE UNIQUE INDEX offload_jobs_live_key ON offload_jobs (key)
    WHERE key IS NOT NULL AND state IN ('scheduled', 'queued', 'running');
CREATE INDEX offload_jobs_finished ON offload_jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX offload_jobs_state ON offload_jobs (state, id);
CREATE INDEX offload_jobs_batch ON offload_jobs (batch, id) WHERE batch IS NOT NULL;
CREATE INDEX offload_jobs_owner ON offload_jobs (owner, state, id) WHERE owner IS NOT NULL;
CREATE INDEX offload_jobs_created ON offload_jobs (created_at);

CREATE TABLE offload_locks (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;

-- expires_at as migration 0004's ALTER TABLE leaves it, so both schemas read the same
CREATE TABLE offload_marks (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
, expires_at REAL) WITHOUT ROWID;
CREATE INDEX offload_marks_expiry ON offload_marks (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE offload_turns (
    queue TEXT NOT NULL,
    owner TEXT NOT NULL,
    turn REAL NOT NULL,
    PRIMARY KEY (queue, owner)
) WITHOUT ROWID;

-- Every step's events (a JSON array each), tailed by live subscribers; prune drops old ones.
-- prune keeps the newest row, so a number is never reused (no AUTOINCREMENT: its counter
-- is one more page to write in every step).
CREATE TABLE offload_events (
    seq INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    body BLOB NOT NULL
);

-- Live workers (a WorkerInfo as JSON each); prune drops those past expires_at.
CREATE TABLE offload_workers (
    id TEXT PRIMARY KEY,
    info BLOB NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;

-- Batches counted down by their members' ends (callback: the NewJob as JSON, stored in the
-- step that ends the last member); prune drops completed ones.
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

-- Per-minute counts: each source's row per (minute, queue, task), histograms as JSON lists
-- (NULL: none); prune drops rows past expires_at.
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
