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
    meta jsonb,
    attempts jsonb
);

CREATE INDEX jobs_ready ON {schema}.jobs (queue, priority DESC, run_at, id)
    WHERE state IN ('queued', 'scheduled');
CREATE INDEX jobs_leases ON {schema}.jobs (lease_until) WHERE state = 'running';
CREATE UNIQUE INDEX jobs_live_key ON {schema}.jobs (key)
    WHERE key IS NOT NULL AND state IN ('scheduled', 'queued', 'running');
CREATE INDEX jobs_finished ON {schema}.jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX jobs_state ON {schema}.jobs (state, id);
CREATE INDEX jobs_batch ON {schema}.jobs (batch, id) WHERE batch IS NOT NULL;
CREATE INDEX jobs_created ON {schema}.jobs (created_at);

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

CREATE TABLE {schema}.workers (
    id text PRIMARY KEY,
    info text NOT NULL,
    last_seen timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX workers_expiry ON {schema}.workers (expires_at);

-- A job's history with one more ended attempt; the oldest goes past ``kept`` (attempts only
-- ever grow by one, so one removal keeps the cap). A value that is not an array (written by
-- hand) starts over. Inlined by the planner: no function call per row.
CREATE FUNCTION {schema}.with_attempt(attempts jsonb, attempt jsonb, kept integer)
RETURNS jsonb LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(attempts) IS DISTINCT FROM 'array' THEN '[]'::jsonb
                WHEN jsonb_array_length(attempts) >= kept THEN attempts - 0
                ELSE attempts END || jsonb_build_array(attempt)
$$;

-- One step's events (each a JSON object) pushed to ``channel`` as JSON arrays: one
-- notification, or several when they pass PostgreSQL's payload limit (8000 bytes), split
-- between events. An event that alone passes it is dropped: live events are best effort,
-- and the step they describe must not fail for them.
CREATE FUNCTION {schema}.push_events(channel text, events text[])
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    body text := '';
    piece text;
    sent integer := 0;
BEGIN
    FOREACH piece IN ARRAY coalesce(events, '{}'::text[]) LOOP
        CONTINUE WHEN piece IS NULL OR octet_length(piece) > 7900;
        IF body <> '' AND octet_length(body) + octet_length(piece) > 7900 THEN
            PERFORM pg_notify(channel, '[' || body || ']');
            sent := sent + 1;
            body := '';
        END IF;
        body := CASE WHEN body = '' THEN piece ELSE body || ',' || piece END;
    END LOOP;
    IF body <> '' THEN
        PERFORM pg_notify(channel, '[' || body || ']');
        sent := sent + 1;
    END IF;
    RETURN sent;
END
$$;

-- What JobFilter.text searches: id, task, owner and the payload, one per line. The payload
-- is bytes that need not be UTF-8, so it is written in bytea's escape format (never an
-- error): ASCII as is, a backslash doubled, other bytes as \ooo. The search pattern is
-- written the same way (postgres_search.py).
CREATE FUNCTION {schema}.job_text(id text, task text, owner text, payload bytea)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT id || E'\n' || task || E'\n' || coalesce(owner, '') || E'\n'
        || coalesce(encode(payload, 'escape'), '')
$$;

-- Text search by trigram index where pg_trgm exists or may be created here (a trusted
-- extension: a database owner may). Elsewhere text search reads the jobs newest first,
-- as far as a page needs (counting reads them all); CREATE EXTENSION pg_trgm and then
-- the index below makes it fast.
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
EXCEPTION WHEN OTHERS THEN
    NULL;
END
$$;
DO $$
DECLARE
    trgm text;
BEGIN
    SELECT n.nspname INTO trgm FROM pg_extension AS e
    JOIN pg_namespace AS n ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm';
    IF trgm IS NOT NULL THEN
        EXECUTE 'CREATE INDEX jobs_text ON {schema}.jobs USING gin '
            || '({schema}.job_text(id, task, owner, payload) '
            || quote_ident(trgm) || '.gin_trgm_ops)';
    END IF;
END
$$;
