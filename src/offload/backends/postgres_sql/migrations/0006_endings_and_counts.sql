-- 0006: follow-ups stored with their job, ready to insert (NULL for most jobs, which pay
-- nothing for them); batches counted down by their members' ends; per-minute counts; and
-- jobs_ended, which every step that ends jobs calls for the rows with follow-ups or a batch.
ALTER TABLE {schema}.jobs ADD COLUMN follow_ups jsonb;

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
