-- The current schema, applied as a whole to a new database. {schema} is the
-- configured schema (quoted). Every change here needs a file in migrations/.
CREATE TABLE {schema}.jobs (
    id text PRIMARY KEY,
    task text NOT NULL,
    queue text NOT NULL,
    state text NOT NULL CHECK (state IN ('scheduled', 'queued', 'running', 'succeeded', 'dead', 'cancelled')),
    payload bytea NOT NULL,
    priority integer NOT NULL DEFAULT 0,
    attempt integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL DEFAULT 1,
    delivery integer NOT NULL DEFAULT 0,
    crashes integer NOT NULL DEFAULT 0,
    run_at timestamptz NOT NULL,
    lease_until timestamptz,
    lease_s double precision,
    timeout_s double precision,
    worker text,
    progress double precision NOT NULL DEFAULT 0,
    progress_message text,
    result bytea,
    error jsonb,
    created_at timestamptz NOT NULL,
    started_at timestamptz,
    finished_at timestamptz,
    key text,
    batch text,
    owner text,
    meta jsonb
);

CREATE INDEX jobs_ready ON {schema}.jobs (queue, priority DESC, run_at, id)
    WHERE state IN ('queued', 'scheduled');
CREATE INDEX jobs_leases ON {schema}.jobs (lease_until) WHERE state = 'running';
CREATE UNIQUE INDEX jobs_live_key ON {schema}.jobs (key)
    WHERE key IS NOT NULL AND state IN ('scheduled', 'queued', 'running');
CREATE INDEX jobs_finished ON {schema}.jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX jobs_state ON {schema}.jobs (state, id);
CREATE INDEX jobs_batch ON {schema}.jobs (batch, id) WHERE batch IS NOT NULL;

CREATE TABLE {schema}.locks (
    name text PRIMARY KEY,
    owner text NOT NULL,
    expires_at timestamptz NOT NULL
);

CREATE TABLE {schema}.marks (
    name text PRIMARY KEY,
    value text NOT NULL,
    expires_at timestamptz
);
CREATE INDEX marks_expiry ON {schema}.marks (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE {schema}.turns (
    queue text NOT NULL,
    owner text NOT NULL,
    turn double precision NOT NULL,
    PRIMARY KEY (queue, owner)
);
