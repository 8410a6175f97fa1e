-- 0005: attempt history, the worker registry, live events and search by text and time.
ALTER TABLE {schema}.jobs ADD COLUMN attempts json;

CREATE TABLE {schema}.workers (
    id text PRIMARY KEY,
    info text NOT NULL,
    last_seen timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX workers_expiry ON {schema}.workers (expires_at);

-- The newest ``kept`` - 1 attempts of a history at its cap, as the start of a JSON array
-- ("[a,b,"): the attempt being appended makes ``kept`` again (queries.sql, {with_attempt}).
-- PL/pgSQL, so the planner never parses it to try inlining; it only runs at the cap.
CREATE FUNCTION {schema}.attempts_but_oldest(attempts json, kept integer)
RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN (SELECT '[' || string_agg(a.e::text, ',' ORDER BY a.n) || ','
            FROM json_array_elements(attempts) WITH ORDINALITY AS a(e, n)
            WHERE a.n > json_array_length(attempts) - kept + 1);
END
$$;

-- A big step's events (``body``: event objects joined by commas) as several notifications,
-- cut between two events (a step that fits goes straight to pg_notify: {push} in
-- postgres_plans.py). Every event object starts with {"kind": and a quote inside a JSON
-- string is escaped, so },{"kind": occurs only between two events. Each notification
-- takes about as many events as 7000 bytes hold on average, halved while they do not fit;
-- an event that alone passes the limit is dropped: live events are best effort, and the
-- step they describe must not fail for them.
CREATE FUNCTION {schema}.push_events_split(channel text, body text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    pieces text[] := string_to_array(body, '},{"kind":');
    total integer := cardinality(pieces);
    share integer := greatest(1, (total::bigint * 7000 / octet_length(body))::integer);
    first integer := 1;
    last integer;
    chunk text;
BEGIN
    WHILE first <= total LOOP
        last := least(total, first + share - 1);
        LOOP
            chunk := CASE WHEN first > 1 THEN '{"kind":' ELSE '' END
                || array_to_string(pieces[first:last], '},{"kind":')
                || CASE WHEN last < total THEN '}' ELSE '' END;
            EXIT WHEN octet_length(chunk) <= 7997 OR last = first;
            last := first + (last - first) / 2;
        END LOOP;
        IF octet_length(chunk) <= 7997 THEN
            PERFORM pg_notify(channel, '[' || chunk || ']');
        END IF;
        first := last + 1;
    END LOOP;
END
$$;

-- What a job is found by (JobFilter.text and the created_at range), written once with the
-- job and deleted with it. Apart from jobs, whose row every claim and finish rewrites, and
-- with it an entry in each of its indexes: a trigram and a created_at index there would
-- cost every step of every job, here they cost its enqueue only. ``body`` is the id, task,
-- owner and payload, one per line; the payload is bytes that need not be UTF-8, so it is
-- written in bytea's escape format (never an error): ASCII as is, a backslash doubled,
-- other bytes as \ooo ({search_text} in postgres_plans.py; postgres_admin.py writes the
-- search pattern the same way).
CREATE TABLE {schema}.job_search (
    id text PRIMARY KEY,
    created_at timestamptz NOT NULL,
    body text NOT NULL
);
CREATE INDEX job_search_created ON {schema}.job_search (created_at);
INSERT INTO {schema}.job_search (id, created_at, body)
SELECT id, created_at, id || E'\n' || task || E'\n' || coalesce(owner, '') || E'\n'
    || coalesce(encode(payload, 'escape'), '')
FROM {schema}.jobs;

-- Text search by trigram index where pg_trgm exists or may be created here (a trusted
-- extension: a database owner may). Elsewhere text search reads every job_search row,
-- until a database owner runs, once: CREATE EXTENSION pg_trgm; CREATE INDEX
-- job_search_trigrams ON <schema>.job_search USING gin (body gin_trgm_ops);
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
        EXECUTE 'CREATE INDEX job_search_trigrams ON {schema}.job_search USING gin '
            || '(body ' || quote_ident(trgm) || '.gin_trgm_ops)';
    END IF;
END
$$;
