-- Every statement the SQLite store runs. {cols} is the job columns in the
-- order job_from_row expects; {marks} is "?, ?, ..." for an IN list; {event} is the
-- columns an event carries (sqlite_events.event_of_row); {push_attempt} is the
-- fragment below, the ending attempt appended to the row's history.

-- name: push_attempt
-- Takes three parameters, in order: ended_at (JSON text), the outcome, the error (JSON
-- text or NULL). A history that does not decode (written by hand) starts again rather
-- than failing the step; the oldest attempt makes room past {max_attempts_kept}. Times
-- go through printf and json() because json_object would round them to 15 digits. The
-- SET's other columns still read the attempt's own values here (attempt, worker,
-- started_at), whatever the SET assigns.
json_insert(
    CASE WHEN typeof(attempts) <> 'text' OR NOT json_valid(attempts) THEN '[]'
         WHEN json_type(attempts) <> 'array' THEN '[]'
         WHEN json_array_length(attempts) >= {max_attempts_kept}
             THEN json_remove(attempts, '$[0]')
         ELSE attempts END,
    '$[#]',
    json_object(
        'number', attempt,
        'worker', worker,
        'started_at', CASE WHEN typeof(started_at) IN ('integer', 'real')
                           THEN json(printf('%!.17g', started_at)) END,
        'ended_at', json(?),
        'outcome', ?,
        'error', json(?)))

-- name: live_key
SELECT {cols} FROM offload_jobs WHERE key = ? AND state IN ('scheduled', 'queued', 'running')

-- name: insert
INSERT INTO offload_jobs (id, task, queue, state, payload, priority, max_attempts, run_at,
                          lease_s, timeout_s, created_at, key, batch, owner, meta, follow_ups)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)

-- name: fair_head
-- the run_at of the job a claim would take first at this priority (fair enqueues only)
SELECT run_at FROM offload_jobs
WHERE queue = ? AND priority = ? AND state IN ('queued', 'scheduled') AND run_at <= ?
ORDER BY run_at LIMIT 1

-- name: last_turn
SELECT turn FROM offload_turns WHERE queue = ? AND owner = ?

-- name: save_turn
INSERT INTO offload_turns (queue, owner, turn) VALUES (?, ?, ?)
ON CONFLICT (queue, owner) DO UPDATE SET turn = excluded.turn

-- name: get
SELECT {cols} FROM offload_jobs WHERE id IN ({marks})

-- name: stored_ids
SELECT id FROM offload_jobs WHERE id IN ({marks})

-- name: cancel
-- a running job's attempt ends here; a waiting one had none
UPDATE offload_jobs SET state = 'cancelled', finished_at = ?, lease_until = NULL,
    attempts = CASE WHEN state = 'running' THEN {push_attempt} ELSE attempts END
WHERE state IN ('scheduled', 'queued', 'running') AND id IN ({marks})
RETURNING {event}, follow_ups

-- name: retry
UPDATE offload_jobs SET state = 'queued', attempt = 0, crashes = 0, run_at = ?,
    finished_at = NULL, worker = NULL
WHERE id = ? AND state IN ('dead', 'cancelled')
RETURNING {event}

-- name: stats_counts
SELECT queue, state, count(*) FROM offload_jobs GROUP BY queue, state

-- name: stats_oldest
SELECT queue, min(run_at) FROM offload_jobs
WHERE state IN ('queued', 'scheduled') AND run_at <= ? GROUP BY queue

-- name: stats_recent
SELECT queue, count(*) FROM offload_jobs WHERE finished_at >= ? GROUP BY queue

-- name: created_range
SELECT count(*) FROM (
    SELECT 1 FROM offload_jobs INDEXED BY offload_jobs_created
    WHERE created_at >= ? AND created_at < ? LIMIT ?
)

-- name: delete
DELETE FROM offload_jobs WHERE id IN ({marks}) AND state <> 'running'
RETURNING {event}

-- name: purge
DELETE FROM offload_jobs WHERE state IN ({marks}) AND (? IS NULL OR queue = ?)

-- name: any_ready
SELECT 1 FROM offload_jobs
WHERE queue IN ({marks}) AND state IN ('queued', 'scheduled') AND run_at <= ? LIMIT 1

-- name: claim
-- and whether the job has follow-ups, so that its finish here reads them only if it has
-- (typeof: SQLite 3.40's RETURNING answers IS NOT NULL wrongly on a WITHOUT ROWID table)
UPDATE offload_jobs SET state = 'running', attempt = attempt + 1, delivery = delivery + 1,
    worker = ?, started_at = ?, lease_until = ? + CASE WHEN typeof(lease_s) IN ('integer', 'real') AND lease_s > 0
    AND lease_s <= 1e9 THEN lease_s ELSE ? END
WHERE id IN (
    SELECT id FROM offload_jobs
    WHERE queue IN ({marks}) AND state IN ('queued', 'scheduled') AND run_at <= ?
    ORDER BY priority DESC, run_at, id LIMIT ?
)
RETURNING {cols}, typeof(follow_ups) <> 'null'

-- name: heartbeat
UPDATE offload_jobs SET lease_until = ? + CASE WHEN typeof(lease_s) IN ('integer', 'real') AND lease_s > 0
    AND lease_s <= 1e9 THEN lease_s ELSE ? END
WHERE id = ? AND delivery = ? AND state = 'running'

-- name: finish_succeeded
-- A success with no history before it (and no error noted) writes none: its attempt is the
-- row's own attempt, worker, started_at and finished_at (rows.py), and rows stay their size.
-- The error parameter comes twice: once for that test, once for the attempt.
UPDATE offload_jobs SET state = 'succeeded', result = ?, error = NULL, finished_at = ?,
    lease_until = NULL, progress = 1.0,
    attempts = CASE WHEN attempts IS NULL AND ? IS NULL THEN NULL ELSE {push_attempt} END
WHERE id = ? AND delivery = ? AND state = 'running'

-- name: finish_retry
UPDATE offload_jobs SET state = 'scheduled', run_at = ?, error = ?, lease_until = NULL,
    attempts = {push_attempt}
WHERE id = ? AND delivery = ? AND state = 'running'

-- name: finish_release
UPDATE offload_jobs SET state = 'queued', attempt = attempt - 1, worker = NULL,
    lease_until = NULL, attempts = {push_attempt}
WHERE id = ? AND delivery = ? AND state = 'running'

-- name: finish_defer
UPDATE offload_jobs SET state = 'scheduled', run_at = ?, attempt = attempt - 1, worker = NULL,
    lease_until = NULL, attempts = {push_attempt}
WHERE id = ? AND delivery = ? AND state = 'running'

-- name: set_meta
UPDATE offload_jobs SET meta = ? WHERE id = ?

-- name: finish_ended
UPDATE offload_jobs SET state = ?, result = ?, error = ?, finished_at = ?, lease_until = NULL,
    attempts = {push_attempt}
WHERE id = ? AND delivery = ? AND state = 'running'

-- name: finished_events
-- the events of the jobs a finish took, read once for the whole finish (a RETURNING on
-- each outcome's UPDATE costs as much as the UPDATE); release and defer cleared the
-- worker, so it is the one of the attempt just ended; then the job's follow-ups
SELECT id, queue, state, task, owner, batch, attempt, progress, progress_message,
    coalesce(worker, json_extract(attempts, '$[#-1].worker')), follow_ups
FROM offload_jobs WHERE id IN ({marks})

-- name: follow_ups
SELECT id, follow_ups FROM offload_jobs WHERE id IN ({marks})

-- name: progress
UPDATE offload_jobs SET progress = ?, progress_message = ?
WHERE id = ? AND delivery = ? AND state = 'running'
RETURNING {event}

-- name: promote_due
UPDATE offload_jobs SET state = 'queued' WHERE state = 'scheduled' AND run_at <= ?

-- name: reap_expired
UPDATE offload_jobs SET crashes = crashes + 1, lease_until = NULL, worker = NULL, error = ?,
    state = CASE WHEN crashes + 1 >= ? THEN 'dead' ELSE 'queued' END,
    finished_at = CASE WHEN crashes + 1 >= ? THEN ? ELSE NULL END,
    attempts = {push_attempt}
WHERE state = 'running' AND lease_until < ?
RETURNING {event}, follow_ups

-- name: prune
-- one bounded step: each step is its own short transaction, so enqueues never wait long
DELETE FROM offload_jobs WHERE id IN (
    SELECT id FROM offload_jobs WHERE state IN ({marks}) AND finished_at < ? LIMIT ?
)

-- name: prune_marks
DELETE FROM offload_marks WHERE expires_at <= ?

-- name: prune_turns
DELETE FROM offload_turns WHERE turn < ?

-- name: lock
INSERT INTO offload_locks (name, owner, expires_at) VALUES (?, ?, ?)
ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
WHERE offload_locks.owner = excluded.owner OR offload_locks.expires_at <= ?

-- name: unlock
DELETE FROM offload_locks WHERE name = ? AND owner = ?

-- name: next_ready
SELECT min(run_at) FROM offload_jobs
WHERE state IN ('queued', 'scheduled') AND queue IN ({marks})

-- name: get_marks
SELECT name, value FROM offload_marks
WHERE name IN ({marks}) AND (expires_at IS NULL OR expires_at > ?)

-- name: create_mark
-- a mark whose lifetime has ended counts as absent
INSERT INTO offload_marks (name, value, expires_at) VALUES (?, ?, ?)
ON CONFLICT (name) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at
WHERE offload_marks.expires_at <= ?

-- name: update_mark
UPDATE offload_marks SET value = ?, expires_at = ?
WHERE name = ? AND value = ? AND (expires_at IS NULL OR expires_at > ?)

-- name: listened
-- until when a subscriber to more than the control kinds listens (steps log the rest then)
SELECT expires_at FROM offload_marks WHERE name = 'offload.events:listened'

-- name: listen
INSERT INTO offload_marks (name, value, expires_at) VALUES ('offload.events:listened', '', ?)
ON CONFLICT (name) DO UPDATE
SET expires_at = max(coalesce(offload_marks.expires_at, 0), excluded.expires_at)

-- name: log_events
INSERT INTO offload_events (at, body) VALUES (?, ?)

-- name: last_event_seq
SELECT coalesce(max(seq), 0) FROM offload_events

-- name: read_events
SELECT seq, body FROM offload_events WHERE seq > ? ORDER BY seq LIMIT ?

-- name: prune_events
-- one bounded step over the oldest numbers (a range of the primary key, never a scan of
-- the whole log; it is in time order but for clocks that differ between processes); the
-- newest row stays, so the next step's number is never one a subscriber has seen
DELETE FROM offload_events
WHERE seq < (SELECT min(seq) FROM offload_events) + ? AND at < ?
    AND seq < (SELECT max(seq) FROM offload_events)

-- name: beat_worker
INSERT INTO offload_workers (id, info, expires_at) VALUES (?, ?, ?)
ON CONFLICT (id) DO UPDATE SET info = excluded.info, expires_at = excluded.expires_at

-- name: remove_worker
DELETE FROM offload_workers WHERE id = ?

-- name: live_workers
SELECT info FROM offload_workers WHERE expires_at > ? ORDER BY id

-- name: prune_workers
DELETE FROM offload_workers WHERE expires_at <= ?

-- name: open_batch
-- a batch id opened again starts again, as in the in-memory store
INSERT OR REPLACE INTO offload_batches (id, total, remaining, created_at, callback, callback_id)
VALUES (?, ?, ?, ?, ?, ?)

-- name: batch_member_ended
-- SET reads the old remaining, RETURNING the new one; the callback only with the last end
UPDATE offload_batches SET remaining = remaining - 1,
    completed_at = CASE WHEN remaining <= 1 THEN ? END
WHERE id = ? AND completed_at IS NULL
RETURNING total, remaining, CASE WHEN remaining <= 0 THEN callback END

-- name: batch_member_reopened
UPDATE offload_batches SET remaining = remaining + 1 WHERE id = ? AND completed_at IS NULL

-- name: batches_by_id
SELECT id, total, remaining, created_at, completed_at, callback_id FROM offload_batches
WHERE id IN ({marks})

-- name: batches_newest
SELECT id, total, remaining, created_at, completed_at, callback_id FROM offload_batches
ORDER BY id DESC LIMIT ?

-- name: batches_open
SELECT id, total, remaining, created_at, completed_at, callback_id
FROM offload_batches INDEXED BY offload_batches_open
WHERE completed_at IS NULL ORDER BY id DESC LIMIT ?

-- name: prune_batches
-- one bounded step, like prune
DELETE FROM offload_batches WHERE id IN (
    SELECT id FROM offload_batches WHERE completed_at < ? LIMIT ?
)

-- name: add_enqueued
-- the store's own row of a minute adds up; it lives ENQUEUE_COUNTS_TTL_S from its first
-- enqueue (no index write on later ones)
INSERT INTO offload_counts (minute, queue, task, source, enqueued, expires_at)
VALUES (?, ?, ?, 'enqueue', ?, ?)
ON CONFLICT (minute, queue, task, source) DO UPDATE SET enqueued = enqueued + excluded.enqueued

-- name: record_counts
-- a source owns its rows: each write replaces the earlier one
INSERT OR REPLACE INTO offload_counts (minute, queue, task, source, enqueued, started,
    succeeded, retried, dead, wait_ms, run_ms, expires_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)

-- name: read_counts
SELECT minute, queue, task, source, enqueued, started, succeeded, retried, dead, wait_ms,
    run_ms
FROM offload_counts
WHERE minute >= ? AND minute <= ? AND expires_at > ? AND (? IS NULL OR queue = ?)
    AND (? IS NULL OR task = ?)
ORDER BY minute, queue, task, source

-- name: prune_counts_expired
-- one bounded step: the rows past their lifetime up to the step-th soonest to end (a range
-- of its index; a row-value IN would scan the table)
DELETE FROM offload_counts WHERE expires_at <= ? AND expires_at <= coalesce(
    (SELECT expires_at FROM offload_counts ORDER BY expires_at LIMIT 1 OFFSET ?), ?)

-- name: prune_counts_before
-- one bounded step: the rows of minutes before the given one, up to the step-th oldest
DELETE FROM offload_counts WHERE minute < ? AND minute <= coalesce(
    (SELECT minute FROM offload_counts ORDER BY minute LIMIT 1 OFFSET ?), ?)
