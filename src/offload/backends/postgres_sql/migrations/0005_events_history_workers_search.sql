-- 0005: attempt history, the worker registry, live events and search by text and time.
ALTER TABLE {schema}.jobs ADD COLUMN attempts jsonb;
CREATE INDEX jobs_created ON {schema}.jobs (created_at);

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
