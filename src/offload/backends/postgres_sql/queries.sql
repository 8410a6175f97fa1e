-- Every statement the PostgreSQL backend runs. {schema} is the quoted schema,
-- {cols} the job columns as JobRecord wants them, {now} the clock expression
-- (the database's now() unless a test injects a clock). Parameters are %(name)s.
--
-- A step that changes jobs pushes their events in the same statement, so in the same
-- transaction and only if it commits: the rows it changed (a data-modifying CTE) become
-- rows ``e`` of JobEvent's fields, {event} writes each as JSON and {push} NOTIFYs them in
-- order on %(events)s as one JSON array (postgres_exprs.py). A step that changed nothing,
-- or that no subscriber can hear ({listened}), pushes nothing; the steps that make the
-- control kinds workers listen for (cancel, delete, publish) push always, on a channel of
-- their own too ({push_control}). %(channel)s is the wake-up channel: the queue of each
-- job made ready, for idle workers.

-- name: enqueue
WITH stored AS (
    INSERT INTO {schema}.jobs (id, task, queue, state, payload, priority, max_attempts, run_at,
                               lease_s, timeout_s, created_at, key, batch, owner, meta,
                               follow_ups)
    SELECT j.id, j.task, j.queue,
           CASE WHEN j.run_at > {now} THEN 'scheduled' ELSE 'queued' END,
           j.payload, j.priority, j.max_attempts, j.run_at, j.lease_s, j.timeout_s, {now},
           j.key, j.batch, j.owner, j.meta::jsonb, j.follow_ups::jsonb
    FROM (
        SELECT u.id, u.task, u.queue, u.payload, u.priority, u.max_attempts,
               coalesce(to_timestamp(u.run_at_s), {now} + make_interval(secs => u.delay_s)) AS run_at,
               u.lease_s, u.timeout_s, u.key, u.batch, u.owner, u.meta, u.follow_ups
        FROM unnest(%(ids)s::text[], %(tasks)s::text[], %(queues)s::text[], %(payloads)s::bytea[],
                    %(priorities)s::int[], %(max_attempts)s::int[], %(run_ats)s::float8[],
                    %(delays)s::float8[], %(lease_ss)s::float8[], %(timeout_ss)s::float8[],
                    %(keys)s::text[], %(batches)s::text[], %(owners)s::text[], %(metas)s::text[],
                    %(follow_ups)s::text[])
             AS u(id, task, queue, payload, priority, max_attempts, run_at_s, delay_s, lease_s,
                  timeout_s, key, batch, owner, meta, follow_ups)
    ) AS j
    ON CONFLICT (key) WHERE key IS NOT NULL AND state IN ('scheduled', 'queued', 'running') DO NOTHING
    RETURNING {cols}, CASE WHEN state = 'queued' THEN pg_notify(%(channel)s, queue) END AS woken
),{count_enqueued}
searched AS (
    INSERT INTO {schema}.job_search AS t (id, created_at, body)
    SELECT s.id, {now}, {search_text} FROM stored AS s
    ON CONFLICT (id) DO UPDATE SET created_at = excluded.created_at, body = excluded.body
),
pushed AS (
    SELECT {push}
    FROM (SELECT string_agg({event}, ',') AS body
        FROM (SELECT 'enqueued' AS kind, s.id, s.queue, s.state, s.task, s.owner, s.batch,
                     s.attempt, s.progress, NULL::text AS message, NULL::text AS worker,
                     s.created_at_s AS at
              FROM stored AS s WHERE {listened}) AS e
        HAVING count(*) > 0) AS p
)
SELECT stored.* FROM stored LEFT JOIN pushed ON true

-- name: enqueue_one
WITH stored AS (
    INSERT INTO {schema}.jobs (id, task, queue, state, payload, priority, max_attempts, run_at,
                               lease_s, timeout_s, created_at, key, batch, owner, meta,
                               follow_ups)
    SELECT %(id)s, %(task)s, %(queue)s,
           CASE WHEN j.run_at > {now} THEN 'scheduled' ELSE 'queued' END,
           %(payload)s, %(priority)s, %(max_attempts)s, j.run_at, %(lease_s)s, %(timeout_s)s, {now},
           %(key)s, %(batch)s, %(owner)s, %(meta)s::jsonb, %(follow_ups)s::jsonb
    FROM (SELECT coalesce(to_timestamp(%(run_at_s)s::float8),
                          {now} + make_interval(secs => %(delay_s)s::float8)) AS run_at) AS j
    ON CONFLICT (key) WHERE key IS NOT NULL AND state IN ('scheduled', 'queued', 'running') DO NOTHING
    RETURNING {cols}, CASE WHEN state = 'queued' THEN pg_notify(%(channel)s, queue) END AS woken
),{count_enqueued}
searched AS (
    INSERT INTO {schema}.job_search AS t (id, created_at, body)
    SELECT s.id, {now}, {search_text} FROM stored AS s
    ON CONFLICT (id) DO UPDATE SET created_at = excluded.created_at, body = excluded.body
),
pushed AS (
    SELECT {push}
    FROM (SELECT string_agg({event}, ',') AS body
        FROM (SELECT 'enqueued' AS kind, s.id, s.queue, s.state, s.task, s.owner, s.batch,
                     s.attempt, s.progress, NULL::text AS message, NULL::text AS worker,
                     s.created_at_s AS at
              FROM stored AS s WHERE {listened}) AS e
        HAVING count(*) > 0) AS p
)
SELECT stored.* FROM stored LEFT JOIN pushed ON true

-- name: enqueue_fair
-- enqueue when some job of the batch is fair (NewJob.fair): a fair job due now gets its
-- owner's turn as run_at, turn = max(head, last + step), where head is the run_at of the
-- job a claim would take first at its priority and last the owner's previous turn. Within
-- the batch each owner's k-th job gets k * step + max(last, max over its jobs i <= k of
-- head_i - i * step): the same as handing out turns one by one.
WITH u AS (
    SELECT u.*, coalesce(to_timestamp(u.run_at_s), {now} + make_interval(secs => u.delay_s)) AS due
    FROM unnest(%(ids)s::text[], %(tasks)s::text[], %(queues)s::text[], %(payloads)s::bytea[],
                %(priorities)s::int[], %(max_attempts)s::int[], %(run_ats)s::float8[],
                %(delays)s::float8[], %(lease_ss)s::float8[], %(timeout_ss)s::float8[],
                %(keys)s::text[], %(batches)s::text[], %(owners)s::text[], %(metas)s::text[],
                %(follow_ups)s::text[], %(fairs)s::bool[]) WITH ORDINALITY
         AS u(id, task, queue, payload, priority, max_attempts, run_at_s, delay_s, lease_s,
              timeout_s, key, batch, owner, meta, follow_ups, fair, ord)
),
heads AS (
    SELECT g.queue, g.priority, extract(epoch FROM coalesce((
        SELECT r.run_at FROM {schema}.jobs AS r
        WHERE r.queue = g.queue AND r.priority = g.priority
          AND r.state IN ('queued', 'scheduled') AND r.run_at <= {now}
        ORDER BY r.run_at LIMIT 1), {now}))::float8 AS head
    FROM (SELECT DISTINCT queue, priority FROM u WHERE fair AND due <= {now}) AS g
),
numbered AS (
    SELECT u.ord, u.queue, coalesce(u.owner, '') AS owner, h.head,
           row_number() OVER (PARTITION BY u.queue, coalesce(u.owner, '') ORDER BY u.ord) AS k
    FROM u JOIN heads AS h ON h.queue = u.queue AND h.priority = u.priority
    WHERE u.fair AND u.due <= {now}
),
fair AS (
    SELECT n.ord, n.queue, n.owner,
           n.k * %(step)s::float8 + greatest(t.turn, max(n.head - n.k * %(step)s::float8)
               OVER (PARTITION BY n.queue, n.owner ORDER BY n.k)) AS turn
    FROM numbered AS n LEFT JOIN {schema}.turns AS t ON t.queue = n.queue AND t.owner = n.owner
),
j AS (
    SELECT u.*, coalesce(to_timestamp(t.turn), u.due) AS run_at, t.owner AS tenant
    FROM u LEFT JOIN fair AS t ON t.ord = u.ord
),
stored AS (
    INSERT INTO {schema}.jobs (id, task, queue, state, payload, priority, max_attempts, run_at,
                               lease_s, timeout_s, created_at, key, batch, owner, meta,
                               follow_ups)
    SELECT j.id, j.task, j.queue,
           CASE WHEN j.run_at > {now} THEN 'scheduled' ELSE 'queued' END,
           j.payload, j.priority, j.max_attempts, j.run_at, j.lease_s, j.timeout_s, {now},
           j.key, j.batch, j.owner, j.meta::jsonb, j.follow_ups::jsonb
    FROM j
    ON CONFLICT (key) WHERE key IS NOT NULL AND state IN ('scheduled', 'queued', 'running')
    DO NOTHING
    RETURNING {cols}, CASE WHEN state = 'queued' THEN pg_notify(%(channel)s, queue) END,
              id AS stored_id, run_at AS stored_run_at
),
kept AS (
    INSERT INTO {schema}.turns AS t (queue, owner, turn)
    SELECT j.queue, j.tenant, max(extract(epoch FROM s.stored_run_at))::float8
    FROM stored AS s JOIN j ON j.id = s.stored_id
    WHERE j.tenant IS NOT NULL
    GROUP BY j.queue, j.tenant
    ON CONFLICT (queue, owner) DO UPDATE SET turn = greatest(t.turn, excluded.turn)
),{count_enqueued}
searched AS (
    INSERT INTO {schema}.job_search AS t (id, created_at, body)
    SELECT s.id, {now}, {search_text} FROM stored AS s
    ON CONFLICT (id) DO UPDATE SET created_at = excluded.created_at, body = excluded.body
),
pushed AS (
    SELECT {push}
    FROM (SELECT string_agg({event}, ',') AS body
        FROM (SELECT 'enqueued' AS kind, s.id, s.queue, s.state, s.task, s.owner, s.batch,
                     s.attempt, s.progress, NULL::text AS message, NULL::text AS worker,
                     s.created_at_s AS at
              FROM stored AS s WHERE {listened}) AS e
        HAVING count(*) > 0) AS p
)
SELECT stored.* FROM stored LEFT JOIN pushed ON true

-- name: live_keys
SELECT {cols} FROM {schema}.jobs
WHERE key = ANY(%(keys)s::text[]) AND state IN ('scheduled', 'queued', 'running')

-- name: get
SELECT {cols} FROM {schema}.jobs WHERE id = ANY(%(ids)s::text[])

-- name: cancel
-- a running job's attempt ends here (its worker learns it at its next heartbeat)
WITH cancelled AS (
    UPDATE {schema}.jobs AS j SET state = 'cancelled', finished_at = {now}, lease_until = NULL,
        attempts = CASE WHEN j.state = 'running'
            THEN {with_attempt('cancelled'; NULL)}
            ELSE j.attempts END
    FROM unnest(%(ids)s::text[]) WITH ORDINALITY AS u(id, ord)
    WHERE j.id = u.id AND j.state IN ('scheduled', 'queued', 'running')
    RETURNING j.id, j.queue, j.state, j.task, j.owner, j.batch, j.attempt, j.progress, j.worker,
              j.follow_ups, u.ord
),
{ended(cancelled AS c; c.ord; true)}
pushed AS (
    SELECT {push_control}
    FROM (SELECT string_agg({event}, ',' ORDER BY e.part, e.ord) AS body
        FROM (SELECT 'cancelled' AS kind, c.id, c.queue, c.state, c.task, c.owner, c.batch,
                     c.attempt, c.progress, NULL::text AS message, c.worker,
                     date_part('epoch', {now}) AS at, 0 AS part, c.ord
              FROM cancelled AS c
        UNION ALL
        SELECT x.e_kind, x.e_id, x.e_queue, x.e_state, x.e_task, x.e_owner, x.e_batch,
               x.e_attempt, x.e_progress, x.e_message, NULL::text, date_part('epoch', {now}),
               1, x.e_seq
        FROM ended AS x) AS e
        HAVING count(*) > 0) AS p
)
SELECT 1 FROM pushed RIGHT JOIN (SELECT count(*) FROM ended) AS n ON true

-- name: retry
WITH retried AS (
    UPDATE {schema}.jobs AS j SET state = 'queued', attempt = 0, crashes = 0, run_at = {now},
        finished_at = NULL, worker = NULL
    FROM unnest(%(ids)s::text[]) WITH ORDINALITY AS u(id, ord)
    WHERE j.id = u.id AND j.state IN ('dead', 'cancelled')
      AND (j.key IS NULL OR NOT EXISTS (
          SELECT 1 FROM {schema}.jobs AS o
          WHERE o.key = j.key AND o.id <> j.id AND o.state IN ('scheduled', 'queued', 'running')))
    RETURNING j.id, j.queue, j.state, j.task, j.owner, j.batch, j.attempt, j.progress, u.ord,
              pg_notify(%(channel)s, j.queue) AS woken
),
reopened AS (
    -- a person queued final members again: their open batches wait for them once more
    UPDATE {schema}.batches AS b SET remaining = b.remaining + r.n
    FROM (SELECT batch, count(*) AS n FROM retried WHERE batch IS NOT NULL GROUP BY batch) AS r
    WHERE b.id = r.batch AND b.completed_at IS NULL
)
SELECT {push}
FROM (SELECT string_agg({event}, ',' ORDER BY e.ord) AS body
    FROM (SELECT 'enqueued' AS kind, r.id, r.queue, r.state, r.task, r.owner, r.batch,
                 r.attempt, r.progress, NULL::text AS message, NULL::text AS worker,
                 date_part('epoch', {now}) AS at, r.ord
          FROM retried AS r WHERE {listened}) AS e
    HAVING count(*) > 0) AS p

-- name: stats_counts
SELECT queue, state, count(*) FROM {schema}.jobs GROUP BY queue, state

-- name: stats_oldest
SELECT queue, extract(epoch FROM {now} - min(run_at))::float8 FROM {schema}.jobs
WHERE state IN ('queued', 'scheduled') AND run_at <= {now} GROUP BY queue

-- name: stats_recent
SELECT queue, count(*) FROM {schema}.jobs
WHERE finished_at >= {now} - interval '60 seconds' GROUP BY queue

-- name: claim
-- A job's lease_s outside (0, 1e9] (NaN, infinity, written by hand or another version) reads
-- as the worker's: one bad row must not fail the statement for every job it would claim.
WITH claimed AS (
    UPDATE {schema}.jobs AS j
    SET state = 'running', attempt = j.attempt + 1, delivery = j.delivery + 1,
        worker = %(worker)s, started_at = {now},
        lease_until = {now} + make_interval(secs => CASE WHEN j.lease_s > 0 AND j.lease_s <= 1e9
            THEN j.lease_s ELSE %(lease_s)s END)
    WHERE j.id IN (
        -- queue = one value (not ANY) so the ready index is read in order: no sort of the backlog
        SELECT id FROM {schema}.jobs
        WHERE queue = %(queue)s AND state IN ('queued', 'scheduled') AND run_at <= {now}
        ORDER BY priority DESC, run_at, id
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    )
    RETURNING {cols}
),
pushed AS (
    SELECT {push}
    FROM (SELECT string_agg({event}, ','
        ORDER BY e.priority DESC, e.run_at_s, e.id) AS body
        FROM (SELECT 'started' AS kind, c.id, c.queue, c.state, c.task, c.owner, c.batch,
                     c.attempt, c.progress, NULL::text AS message, c.worker, c.started_at_s AS at,
                     c.priority, c.run_at_s
              FROM claimed AS c WHERE {listened}) AS e
        HAVING count(*) > 0) AS p
)
SELECT claimed.* FROM claimed LEFT JOIN pushed ON true

-- name: claim_many_queues
WITH claimed AS (
    UPDATE {schema}.jobs AS j
    SET state = 'running', attempt = j.attempt + 1, delivery = j.delivery + 1,
        worker = %(worker)s, started_at = {now},
        lease_until = {now} + make_interval(secs => CASE WHEN j.lease_s > 0 AND j.lease_s <= 1e9
            THEN j.lease_s ELSE %(lease_s)s END)
    WHERE j.id IN (
        -- an ordered LIMIT per queue (each an index range), then the best of them
        SELECT c.id FROM unnest(%(queues)s::text[]) AS q(name)
        CROSS JOIN LATERAL (
            SELECT id, priority, run_at FROM {schema}.jobs
            WHERE queue = q.name AND state IN ('queued', 'scheduled') AND run_at <= {now}
            ORDER BY priority DESC, run_at, id
            LIMIT %(limit)s
            FOR UPDATE SKIP LOCKED
        ) AS c
        ORDER BY c.priority DESC, c.run_at, c.id
        LIMIT %(limit)s
    )
    RETURNING {cols}
),
pushed AS (
    SELECT {push}
    FROM (SELECT string_agg({event}, ','
        ORDER BY e.priority DESC, e.run_at_s, e.id) AS body
        FROM (SELECT 'started' AS kind, c.id, c.queue, c.state, c.task, c.owner, c.batch,
                     c.attempt, c.progress, NULL::text AS message, c.worker, c.started_at_s AS at,
                     c.priority, c.run_at_s
              FROM claimed AS c WHERE {listened}) AS e
        HAVING count(*) > 0) AS p
)
SELECT claimed.* FROM claimed LEFT JOIN pushed ON true

-- name: heartbeat
UPDATE {schema}.jobs AS j
SET lease_until = {now} + make_interval(secs => CASE WHEN j.lease_s > 0 AND j.lease_s <= 1e9
        THEN j.lease_s ELSE %(lease_s)s END)
FROM unnest(%(ids)s::text[], %(deliveries)s::int[]) AS l(id, delivery)
WHERE j.id = l.id AND j.delivery = l.delivery AND j.state = 'running'
RETURNING j.id

-- name: finish
-- the attempt ends with the values it ran with (SET reads the row as it was); the event's
-- worker is the one that ran it, which a release or a deferral clears from the job
WITH done AS (
    UPDATE {schema}.jobs AS j SET
        state = CASE o.kind WHEN 'retry' THEN 'scheduled' WHEN 'defer' THEN 'scheduled'
                            WHEN 'release' THEN 'queued' ELSE o.kind END,
        result = CASE WHEN o.kind IN ('succeeded', 'dead', 'cancelled') THEN o.result
                      ELSE j.result END,
        error = CASE WHEN o.kind IN ('release', 'defer') THEN j.error
                     WHEN o.kind = 'succeeded' THEN NULL ELSE o.error::jsonb END,
        run_at = CASE WHEN o.kind IN ('retry', 'defer')
                      THEN {now} + make_interval(secs => o.delay_s) ELSE j.run_at END,
        attempt = CASE WHEN o.kind IN ('release', 'defer') THEN j.attempt - 1 ELSE j.attempt END,
        worker = CASE WHEN o.kind IN ('release', 'defer') THEN NULL ELSE j.worker END,
        finished_at = CASE WHEN o.kind IN ('succeeded', 'dead', 'cancelled') THEN {now}
                           ELSE j.finished_at END,
        progress = CASE o.kind WHEN 'succeeded' THEN 1.0 ELSE j.progress END,
        meta = CASE WHEN o.meta IS NULL THEN j.meta ELSE o.meta::jsonb END,
        -- a success with no history before it (and no error noted) writes none: its attempt
        -- is the row's own number, worker, start and finish (rows.py), and rows stay their size
        attempts = CASE WHEN o.kind = 'succeeded' AND j.attempts IS NULL AND o.error IS NULL
                        THEN NULL
                        ELSE {with_attempt(CASE o.kind WHEN 'retry' THEN 'failed'
                                WHEN 'dead' THEN 'failed' WHEN 'release' THEN 'released'
                                WHEN 'defer' THEN 'deferred' ELSE o.kind END; o.error)} END,
        lease_until = NULL
    FROM unnest(%(ids)s::text[], %(deliveries)s::int[], %(kinds)s::text[], %(results)s::bytea[],
                %(errors)s::text[], %(delays)s::float8[], %(metas)s::text[]) WITH ORDINALITY
         AS o(id, delivery, kind, result, error, delay_s, meta, ord)
    WHERE j.id = o.id AND j.delivery = o.delivery AND j.state = 'running'
    RETURNING j.id, j.queue, j.state, j.task, j.owner, j.batch, j.attempt, j.progress, o.ord,
              o.kind, o.error, coalesce(j.worker, j.attempts -> -1 ->> 'worker') AS ran_on,
              j.follow_ups,
              CASE WHEN o.kind IN ('retry', 'release', 'defer')
                   THEN pg_notify(%(channel)s, j.queue) END AS woken
),
{ended(done AS d; d.ord; d.state IN ('succeeded', 'dead', 'cancelled'))}
pushed AS (
    SELECT {push}
    FROM (SELECT string_agg({event}, ',' ORDER BY e.part, e.ord) AS body
        FROM (SELECT CASE d.kind WHEN 'retry' THEN 'retrying' WHEN 'release' THEN 'requeued'
                                 WHEN 'defer' THEN 'requeued' ELSE d.kind END AS kind,
                     d.id, d.queue, d.state, d.task, d.owner, d.batch, d.attempt, d.progress,
                     CASE WHEN d.kind IN ('retry', 'dead')
                          THEN left(d.error::jsonb ->> 'message', 1000) END AS message,
                     d.ran_on AS worker, date_part('epoch', {now}) AS at, 0 AS part, d.ord
              FROM done AS d WHERE {listened}
        UNION ALL
        SELECT x.e_kind, x.e_id, x.e_queue, x.e_state, x.e_task, x.e_owner, x.e_batch,
               x.e_attempt, x.e_progress, x.e_message, NULL::text, date_part('epoch', {now}),
               1, x.e_seq
        FROM ended AS x WHERE {listened}) AS e
        HAVING count(*) > 0) AS p
)
SELECT done.id FROM done LEFT JOIN pushed ON true WHERE (SELECT count(*) FROM ended) >= 0

-- name: progress
WITH moved AS (
    UPDATE {schema}.jobs AS j SET progress = u.progress, progress_message = u.message
    FROM unnest(%(ids)s::text[], %(deliveries)s::int[], %(progress)s::float8[],
                %(messages)s::text[]) WITH ORDINALITY AS u(id, delivery, progress, message, ord)
    WHERE j.id = u.id AND j.delivery = u.delivery AND j.state = 'running'
    RETURNING j.id, j.queue, j.state, j.task, j.owner, j.batch, j.attempt, j.progress,
              j.progress_message, j.worker, u.ord
)
SELECT {push}
FROM (SELECT string_agg({event}, ',' ORDER BY e.ord) AS body
    FROM (SELECT 'progress' AS kind, m.id, m.queue, m.state, m.task, m.owner, m.batch,
                 m.attempt, m.progress, left(m.progress_message, 1000) AS message, m.worker,
                 date_part('epoch', {now}) AS at, m.ord
          FROM moved AS m WHERE {listened}) AS e
    HAVING count(*) > 0) AS p

-- name: promote_due
UPDATE {schema}.jobs SET state = 'queued' WHERE state = 'scheduled' AND run_at <= {now}

-- name: reap_expired
WITH reaped AS (
    UPDATE {schema}.jobs AS j SET crashes = j.crashes + 1, lease_until = NULL, worker = NULL,
        error = %(error)s::jsonb,
        state = CASE WHEN j.crashes + 1 >= %(max_crashes)s THEN 'dead' ELSE 'queued' END,
        finished_at = CASE WHEN j.crashes + 1 >= %(max_crashes)s THEN {now} ELSE NULL END,
        attempts = {with_attempt('lost'; %(error)s::text)}
    WHERE j.state = 'running' AND j.lease_until < {now}
    RETURNING j.id, j.queue, j.state, j.task, j.owner, j.batch, j.attempt, j.progress,
              j.follow_ups,
              CASE WHEN j.state = 'queued' THEN pg_notify(%(channel)s, j.queue) END AS woken
),
{ended(reaped AS r; r.id; r.state = 'dead')}
pushed AS (
    SELECT {push}
    FROM (SELECT string_agg({event}, ',' ORDER BY e.part, e.ord) AS body
        FROM (SELECT CASE r.state WHEN 'dead' THEN 'dead' ELSE 'requeued' END AS kind, r.id,
                     r.queue, r.state, r.task, r.owner, r.batch, r.attempt, r.progress,
                     %(error)s::jsonb ->> 'message' AS message, NULL::text AS worker,
                     date_part('epoch', {now}) AS at, 0 AS part,
                     row_number() OVER (ORDER BY r.id) AS ord
              FROM reaped AS r WHERE {listened}
        UNION ALL
        SELECT x.e_kind, x.e_id, x.e_queue, x.e_state, x.e_task, x.e_owner, x.e_batch,
               x.e_attempt, x.e_progress, x.e_message, NULL::text, date_part('epoch', {now}),
               1, x.e_seq
        FROM ended AS x WHERE {listened}) AS e
        HAVING count(*) > 0) AS p
)
SELECT reaped.id, reaped.state FROM reaped LEFT JOIN pushed ON true
WHERE (SELECT count(*) FROM ended) >= 0

-- name: prune
-- one bounded step, so no statement holds many row locks for long
WITH gone AS (
    DELETE FROM {schema}.jobs WHERE id IN (
        SELECT id FROM {schema}.jobs
        WHERE state = ANY(%(states)s::text[]) AND finished_at < to_timestamp(%(before)s)
        LIMIT %(batch)s
    )
    RETURNING id
),
searched AS (DELETE FROM {schema}.job_search WHERE id IN (SELECT id FROM gone))
SELECT 1 FROM gone

-- name: prune_expired
-- the marks and the registry's workers whose lifetime has ended
WITH workers AS (DELETE FROM {schema}.workers WHERE expires_at <= {now})
DELETE FROM {schema}.marks WHERE expires_at <= {now}

-- name: prune_turns
DELETE FROM {schema}.turns WHERE turn < %(before)s::float8

-- name: purge
WITH gone AS (
    DELETE FROM {schema}.jobs
    WHERE state = ANY(%(states)s::text[]) AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
    RETURNING id
),
searched AS (DELETE FROM {schema}.job_search WHERE id IN (SELECT id FROM gone))
SELECT 1 FROM gone

-- name: delete
-- a running job stays (cancel it first); a duplicate id joins once
WITH gone AS (
    DELETE FROM {schema}.jobs AS j USING unnest(%(ids)s::text[]) WITH ORDINALITY AS u(id, ord)
    WHERE j.id = u.id AND j.state <> 'running'
    RETURNING j.id, j.queue, j.state, j.task, j.owner, j.batch, j.attempt, j.progress, j.worker,
              NULL::jsonb AS follow_ups, u.ord
),
{ended(gone AS g; g.ord; g.state NOT IN ('succeeded', 'dead', 'cancelled'))}
searched AS (DELETE FROM {schema}.job_search WHERE id IN (SELECT id FROM gone)),
pushed AS (
    SELECT {push_control}
    FROM (SELECT string_agg({event}, ',' ORDER BY e.part, e.ord) AS body
        FROM (SELECT 'deleted' AS kind, g.id, g.queue, g.state, g.task, g.owner, g.batch,
                     g.attempt, g.progress, NULL::text AS message, g.worker,
                     date_part('epoch', {now}) AS at, 0 AS part, g.ord
              FROM gone AS g
        UNION ALL
        SELECT x.e_kind, x.e_id, x.e_queue, x.e_state, x.e_task, x.e_owner, x.e_batch,
               x.e_attempt, x.e_progress, x.e_message, NULL::text, date_part('epoch', {now}),
               1, x.e_seq
        FROM ended AS x) AS e
        HAVING count(*) > 0) AS p
)
SELECT gone.id FROM gone LEFT JOIN pushed ON true WHERE (SELECT count(*) FROM ended) >= 0

-- name: publish
SELECT {push_control} FROM (SELECT %(body)s::text AS body) AS p

-- name: beat_worker
INSERT INTO {schema}.workers AS w (id, info, last_seen, expires_at)
VALUES (%(id)s, %(info)s, {now}, {now} + make_interval(secs => %(ttl_s)s::float8))
ON CONFLICT (id) DO UPDATE
SET info = excluded.info, last_seen = excluded.last_seen, expires_at = excluded.expires_at

-- name: remove_workers
DELETE FROM {schema}.workers WHERE id = ANY(%(ids)s::text[])

-- name: workers
SELECT info, date_part('epoch', last_seen) FROM {schema}.workers
WHERE expires_at > {now}

-- name: lock
INSERT INTO {schema}.locks (name, owner, expires_at)
VALUES (%(name)s, %(owner)s, {now} + make_interval(secs => %(ttl_s)s))
ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
WHERE {schema}.locks.owner = excluded.owner OR {schema}.locks.expires_at <= {now}
RETURNING name

-- name: unlock
DELETE FROM {schema}.locks WHERE name = %(name)s AND owner = %(owner)s

-- name: get_marks
SELECT name, value FROM {schema}.marks
WHERE name = ANY(%(names)s::text[]) AND (expires_at IS NULL OR expires_at > {now})

-- name: create_mark
-- a mark whose lifetime has ended counts as absent
INSERT INTO {schema}.marks AS m (name, value, expires_at)
VALUES (%(name)s, %(value)s, {now} + make_interval(secs => %(ttl_s)s::float8))
ON CONFLICT (name) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at
WHERE m.expires_at <= {now}
RETURNING name

-- name: update_mark
UPDATE {schema}.marks SET value = %(value)s,
    expires_at = {now} + make_interval(secs => %(ttl_s)s::float8)
WHERE name = %(name)s AND value = %(expected)s AND (expires_at IS NULL OR expires_at > {now})
RETURNING name

-- name: next_ready
SELECT extract(epoch FROM min(run_at))::float8, extract(epoch FROM {now})::float8
FROM {schema}.jobs
WHERE state IN ('queued', 'scheduled') AND queue = ANY(%(queues)s::text[])

-- name: now
SELECT extract(epoch FROM {now})::float8

-- name: open_batch
-- in its members' enqueue step; the same id again starts the batch over
INSERT INTO {schema}.batches AS b (id, total, remaining, created_at, callback, callback_id)
VALUES (%(id)s, %(total)s, %(total)s, {now}, %(callback)s::jsonb, %(callback_id)s)
ON CONFLICT (id) DO UPDATE SET total = excluded.total, remaining = excluded.remaining,
    created_at = excluded.created_at, completed_at = NULL, callback = excluded.callback,
    callback_id = excluded.callback_id

-- name: batches_by_id
SELECT id, total, remaining, date_part('epoch', created_at),
       date_part('epoch', completed_at), callback_id
FROM {schema}.batches WHERE id = ANY(%(ids)s::text[])

-- name: batches_newest
SELECT id, total, remaining, date_part('epoch', created_at),
       date_part('epoch', completed_at), callback_id
FROM {schema}.batches WHERE NOT %(open_only)s OR completed_at IS NULL
ORDER BY id DESC LIMIT %(limit)s

-- name: prune_batches
-- one bounded step of the batches completed before the horizon
DELETE FROM {schema}.batches WHERE id IN (
    SELECT id FROM {schema}.batches WHERE completed_at < to_timestamp(%(before)s)
    LIMIT %(batch)s)
RETURNING 1

-- name: record_counts
-- a source owns its rows: each replaces its earlier one
INSERT INTO {schema}.counts AS c (minute, queue, task, source, enqueued, started, succeeded,
                                  retried, dead, wait_ms, run_ms, expires_at)
SELECT u.minute, u.queue, u.task, u.source, u.enqueued, u.started, u.succeeded, u.retried,
       u.dead, u.wait_ms, u.run_ms, {now} + make_interval(secs => %(ttl_s)s::float8)
FROM unnest(%(minutes)s::bigint[], %(queues)s::text[], %(tasks)s::text[], %(sources)s::text[],
            %(enqueued)s::int[], %(started)s::int[], %(succeeded)s::int[], %(retried)s::int[],
            %(dead)s::int[], %(wait_ms)s::text[], %(run_ms)s::text[])
     AS u(minute, queue, task, source, enqueued, started, succeeded, retried, dead, wait_ms,
          run_ms)
ON CONFLICT (minute, queue, task, source) DO UPDATE SET enqueued = excluded.enqueued,
    started = excluded.started, succeeded = excluded.succeeded, retried = excluded.retried,
    dead = excluded.dead, wait_ms = excluded.wait_ms, run_ms = excluded.run_ms,
    expires_at = excluded.expires_at

-- name: read_counts
-- the enqueues' own rows (one per transaction) added up as the one source "enqueue"
SELECT minute, queue, task, source, enqueued, started, succeeded, retried, dead, wait_ms,
       run_ms
FROM (
    SELECT minute, queue, task, 'enqueue' AS source, sum(enqueued)::integer AS enqueued,
           0 AS started, 0 AS succeeded, 0 AS retried, 0 AS dead, NULL::text AS wait_ms,
           NULL::text AS run_ms
    FROM {schema}.counts
    WHERE minute BETWEEN %(since)s AND %(until)s AND expires_at > {now}
      AND source LIKE 'enqueue:%%'
      AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
      AND (%(task)s::text IS NULL OR task = %(task)s::text)
    GROUP BY minute, queue, task
    UNION ALL
    SELECT minute, queue, task, source, enqueued, started, succeeded, retried, dead, wait_ms,
           run_ms
    FROM {schema}.counts
    WHERE minute BETWEEN %(since)s AND %(until)s AND expires_at > {now}
      AND source NOT LIKE 'enqueue:%%'
      AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
      AND (%(task)s::text IS NULL OR task = %(task)s::text)
) AS rows
ORDER BY minute, queue, task, source

-- name: prune_counts
-- one bounded step of the rows past their lifetime or of minutes before the bound
DELETE FROM {schema}.counts WHERE ctid IN (
    SELECT ctid FROM {schema}.counts
    WHERE expires_at <= {now} OR minute < %(before_minute)s::bigint
    LIMIT %(batch)s)
RETURNING 1
