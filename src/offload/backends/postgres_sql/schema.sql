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
    attempts json,
    follow_ups jsonb
);

CREATE INDEX jobs_ready ON {schema}.jobs (queue, priority DESC, run_at, id)
    WHERE state IN ('queued', 'scheduled');
CREATE INDEX jobs_leases ON {schema}.jobs (lease_until) WHERE state = 'running';
CREATE UNIQUE INDEX jobs_live_key ON {schema}.jobs (key)
    WHERE key IS NOT NULL AND state IN ('scheduled', 'queued', 'running');
CREATE INDEX jobs_finished ON {schema}.jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX jobs_state ON {schema}.jobs (state, id);
CREATE INDEX jobs_batch ON {schema}.jobs (batch, id) WHERE batch IS NOT NULL;
CREATE INDEX jobs_owner ON {schema}.jobs (owner, state, id) WHERE owner IS NOT NULL;

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
-- postgres_exprs.py). Every event object starts with {"kind": and a quote inside a JSON
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
-- other bytes as \ooo ({search_text} in postgres_exprs.py; postgres_admin.py writes the
-- search pattern the same way).
CREATE TABLE {schema}.job_search (
    id text PRIMARY KEY,
    created_at timestamptz NOT NULL,
    body text NOT NULL
);
CREATE INDEX job_search_created ON {schema}.job_search (created_at);

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

-- Batches counted down by their members' ends (one row each, found by id: nothing scans
-- a batch's members), and per-minute counts.
CREATE TABLE {schema}.batches (
    id text PRIMARY KEY,
    total integer NOT NULL,
    remaining integer NOT NULL,
    created_at timestamptz NOT NULL,
    completed_at timestamptz,
    callback jsonb,
    callback_id text
);
CREATE INDEX batches_completed ON {schema}.batches (completed_at) WHERE completed_at IS NOT NULL;

CREATE TABLE {schema}.counts (
    minute bigint NOT NULL,
    queue text NOT NULL,
    task text NOT NULL,
    source text NOT NULL,
    enqueued integer NOT NULL DEFAULT 0,
    started integer NOT NULL DEFAULT 0,
    succeeded integer NOT NULL DEFAULT 0,
    retried integer NOT NULL DEFAULT 0,
    dead integer NOT NULL DEFAULT 0,
    wait_ms text,
    run_ms text,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (minute, queue, task, source)
);
CREATE INDEX counts_expiry ON {schema}.counts (expires_at);

-- What the jobs ``ids`` ending in ``states`` set off, stored in the caller's statement:
-- for each job in order, its batch's progress (one member fewer; the last one stores the
-- batch's callback), then each job stored (follow-ups whose ``on`` holds its state, the
-- callback), as event rows. ``follow_ups`` is the jobs' column: a JSON array of rows
-- ready to insert (postgres_endings.py writes them), each with its ``on`` states. A value
-- that does not insert (written by hand or another version) is skipped with a warning:
-- the step that ends the job must not fail for it. A state that is not final (a person
-- deletes a job that had not ended) only counts its batch down.
CREATE FUNCTION {schema}.jobs_ended(ids text[], states text[], batches text[],
                                    follow_ups jsonb[], at timestamptz, channel text)
RETURNS TABLE (e_kind text, e_id text, e_queue text, e_state text, e_task text,
               e_owner text, e_batch text, e_attempt integer, e_progress double precision,
               e_message text,
               e_seq integer)
LANGUAGE plpgsql AS $$
DECLARE
    n integer := 0;
    due jsonb;
    callback jsonb;
    part jsonb;
    b record;
    s_ids text[]; s_queues text[]; s_states text[]; s_tasks text[]; s_owners text[];
    s_batches text[];
BEGIN
    FOR i IN 1 .. coalesce(cardinality(ids), 0) LOOP
        due := '[]'::jsonb;
        callback := '[]'::jsonb;
        IF follow_ups[i] IS NOT NULL THEN
            BEGIN
                SELECT coalesce(jsonb_agg(f.value ORDER BY f.ordinality), '[]'::jsonb) INTO due
                FROM jsonb_array_elements(follow_ups[i]) WITH ORDINALITY AS f
                WHERE f.value -> 'on' ? states[i];
            EXCEPTION WHEN OTHERS THEN
                RAISE WARNING USING MESSAGE = 'offload: the follow-ups of ' || ids[i]
                    || ' not stored: ' || SQLERRM;
                due := '[]'::jsonb;
            END;
        END IF;
        IF batches[i] IS NOT NULL THEN
            UPDATE {schema}.batches AS t SET remaining = t.remaining - 1,
                completed_at = CASE WHEN t.remaining <= 1 THEN at END
            WHERE t.id = batches[i] AND t.completed_at IS NULL
            RETURNING t.id, t.total, t.remaining, t.callback INTO b;
            IF FOUND THEN
                n := n + 1;
                e_kind := 'batch_progress'; e_id := ''; e_queue := ''; e_state := NULL;
                e_task := ''; e_owner := NULL; e_batch := b.id; e_attempt := 0;
                e_progress := CASE WHEN b.total > 0
                    THEN (b.total - b.remaining)::float8 / b.total ELSE 1.0 END;
                e_message := (b.total - b.remaining) || ' of ' || b.total || ' done';
                e_seq := n;
                RETURN NEXT;
                IF b.remaining <= 0 AND b.callback IS NOT NULL THEN
                    callback := jsonb_build_array(b.callback);
                END IF;
            END IF;
        END IF;
        FOREACH part IN ARRAY ARRAY[due, callback] LOOP  -- apart: a bad one spares the other
            CONTINUE WHEN jsonb_array_length(part) = 0;
            BEGIN
                WITH f AS (
                    SELECT f.*, e.ord
                    FROM jsonb_array_elements(part) WITH ORDINALITY AS e(value, ord)
                    CROSS JOIN LATERAL jsonb_to_record(e.value) AS f(
                        id text, task text, queue text, payload text, priority integer,
                        max_attempts integer, run_at double precision, delay_s double precision,
                        lease_s double precision, timeout_s double precision, key text,
                        batch text, owner text, meta jsonb, follow_ups jsonb)
                ),
                put AS (
                    INSERT INTO {schema}.jobs AS j (id, task, queue, state, payload, priority,
                        max_attempts, run_at, lease_s, timeout_s, created_at, key, batch, owner,
                        meta, follow_ups)
                    SELECT f.id, f.task, f.queue,
                           CASE WHEN f.due > at THEN 'scheduled' ELSE 'queued' END,
                           decode(f.payload, 'base64'), f.priority, f.max_attempts, f.due,
                           f.lease_s, f.timeout_s, at, f.key, f.batch, f.owner, f.meta,
                           f.follow_ups
                    FROM (SELECT f.*, coalesce(to_timestamp(f.run_at),
                                               at + make_interval(secs => f.delay_s)) AS due
                          FROM f) AS f
                    ORDER BY f.ord
                    ON CONFLICT DO NOTHING
                    RETURNING j.id, j.queue, j.state, j.task, j.owner, j.batch,
                              CASE WHEN j.state = 'queued' THEN pg_notify(channel, j.queue) END
                                  AS woken
                ),
                searched AS (
                    INSERT INTO {schema}.job_search AS t (id, created_at, body)
                    SELECT s.id, at, s.id || E'\n' || s.task || E'\n' || coalesce(s.owner, '')
                        || E'\n' || coalesce(encode(decode(j.payload, 'base64'), 'escape'), '')
                    FROM put AS s JOIN f AS j ON j.id = s.id
                    ON CONFLICT (id) DO UPDATE
                    SET created_at = excluded.created_at, body = excluded.body
                )
                SELECT array_agg(p.id ORDER BY f.ord), array_agg(p.queue ORDER BY f.ord),
                       array_agg(p.state ORDER BY f.ord), array_agg(p.task ORDER BY f.ord),
                       array_agg(p.owner ORDER BY f.ord), array_agg(p.batch ORDER BY f.ord)
                INTO s_ids, s_queues, s_states, s_tasks, s_owners, s_batches
                FROM put AS p JOIN f ON f.id = p.id;
            EXCEPTION WHEN OTHERS THEN
                RAISE WARNING USING MESSAGE = 'offload: the jobs that ' || ids[i]
                    || ' sets off not stored: ' || SQLERRM;
                CONTINUE;
            END;
            FOR k IN 1 .. coalesce(cardinality(s_ids), 0) LOOP
                n := n + 1;
                e_kind := 'enqueued'; e_id := s_ids[k]; e_queue := s_queues[k];
                e_state := s_states[k]; e_task := s_tasks[k]; e_owner := s_owners[k];
                e_batch := s_batches[k]; e_attempt := 0; e_progress := 0; e_message := NULL;
                e_seq := n;
                RETURN NEXT;
            END LOOP;
        END LOOP;
    END LOOP;
END
$$;
