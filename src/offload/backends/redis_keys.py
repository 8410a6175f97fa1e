"""The whole Redis keyspace of one offload deployment, in one place.

Every key starts with the prefix (``offload`` unless the URL says
``?prefix=``), so that an ACL rule like ``~offload:*`` covers it. Keys that
belong to one queue carry that queue as a hash tag, ``{queue}``, so that in
Redis Cluster a queue's keys would live in one slot::

    P:q:{Q}:j:<id>        hash    one job: the JobRecord fields as strings, and its history's
                                  'attempts' (how many its list keeps) and 'last' (how the
                                  attempt that ended the job ended: its fields tell the rest)
    P:q:{Q}:a:<id>        list    one job's earlier attempts, an Attempt's JSON each, oldest
                                  first; written once a job has an attempt that did not end
                                  it, deleted with the job (see prelude.lua's end_attempt)
    P:q:{Q}:queued        zset    ready jobs; score = -priority * 2**32 + (run_at - 2020):
                                  each priority's band starts with its oldest job
    P:q:{Q}:scheduled     zset    jobs waiting for run_at (score), retries included
    P:q:{Q}:running       zset    leased jobs; score = lease_until on the server's clock
    P:q:{Q}:succeeded     zset    finished jobs by finished_at (and :dead, :cancelled)
    P:q:{Q}:all           zset    every id of the queue, score 0: newest-first listing by id
    P:q:{Q}:created       zset    every id of the queue by created_at: time-range filters
    P:q:{Q}:wake          list    at most one token; idle workers BLPOP it
    P:q:{Q}:turns         hash    owner ('' for none) -> its last turn in the fair order;
                                  turns older than prune's cutoff are deleted
    P:g:{P}:dir           hash    job id -> queue (jobs are addressed by id alone)
    P:g:{P}:keys          hash    unique key -> id of the job that last took it
    P:g:{P}:queues        set     queue names with jobs (prune drops an empty one)
    P:g:{P}:lock:<name>   hash    owner, until: a leader lease on the store's clock
    P:g:{P}:marks         hash    mark name -> value (leader services' compare-and-set state)
    P:g:{P}:mark_until    zset    mark name -> when it expires (store's clock), for marks
                                  written with a lifetime; gone once read or pruned after
    P:g:{P}:batch:<name>  zset    ids of one batch's jobs, score 0 (listing by id); shrinks
                                  as they are pruned, so it ends with them
    P:g:{P}:owner:<name>  zset    ids of one owner's jobs, score 0 (listing by id): owner
                                  filters walk it instead of every job of every queue
    P:g:{P}:task:<name>   zset    ids of one task's jobs, score 0, likewise for task filters
    P:g:{P}:batchrec:<id> hash    a batch opened with its members (EnqueueParams.batch):
                                  total, remaining, created_at, completed_at, callback_id,
                                  and 'callback' (the job to store, as job_blob) until stored
    P:g:{P}:batches       zset    every batch record's id, score 0 (newest first by id)
    P:g:{P}:open_batches  zset    the ids of batches not completed, score 0
    P:g:{P}:done_batches  zset    completed batches by completed_at: prune deletes the old
                                  ones, records and index entries alike
    P:g:{P}:counts:<min>  hash    one minute's counts: '["queue","task","source"]' ->
                                  '[until, MinuteCounts JSON]' (a worker's row, replaced
                                  whole; until on the store's clock), '["queue","task"]' ->
                                  the jobs enqueued (HINCRBY; until = the minute's end +
                                  ENQUEUE_COUNTS_TTL_S); expires on the server's clock after
                                  its longest-lived row, and prune deletes old minutes
    P:g:{P}:count_minutes zset    the minutes that have a counts hash (score = minute), for
                                  range reads; expires after its longest-lived minute
    P:g:{P}:workers       hash    worker id -> '[last_seen, WorkerInfo JSON]': the registry
    P:g:{P}:worker_until  zset    worker id -> when it drops out (store's clock); beats and
                                  prune delete the expired, and both keys expire on the
                                  server's clock after the longest ttl of the last beats
    P:g:{P}:version       string  keyspace layout version
    P:g:{P}:claim:<token> hash    job id -> delivery: what one claim pipelined behind a
                                  wait took ('!' once abandoned); expires after 2 minutes

Live events are no key: each script PUBLISHes its step's events on the channel
``P:g:{P}:events`` (one JSON array per step; nothing is stored) while it has subscribers,
and the control kinds (records.CONTROL_KINDS: rare) always on ``P:g:{P}:control`` too.

A job hash may hold 'follow_ups' (its NewJob.follow_ups as job_blob items, absent when it
has none): the step that ends the job stores those whose states hold its final state.

A job is in exactly one state index at a time. Scripts find a job's queue in
``dir``; today they run on one Redis server (or a primary with replicas). For
Cluster, the per-id lookups in ``dir`` and the unique keys would move into a
first, separate step, while everything a transition touches for one queue
already shares the queue's slot.

A job key that holds no hash (a string another tool wrote there) makes its job dead: the
first script that meets it moves the id to ``:dead`` (prune and purge delete it), and
reads return it with ``unreadable`` saying so.
"""

from __future__ import annotations

#: Bumped when the layout changes; a newer layout on the server stops an older offload.
#: 2: per-batch indexes; 3: the created index (older are indexed on upgrade); 4: follow-ups,
#: batches counted down by the store and per-minute counts: an older offload would end jobs
#: without them, so it must refuse the keyspace rather than share it; 5: the owner and task
#: indexes (older are indexed on upgrade; an older offload would leave its jobs out).
LAYOUT_VERSION = 5
_FORBIDDEN_IN_PREFIX = set("{}* \t\r\n")

#: The same layout for the scripts (prepended to every one); ``P`` is the prefix argument.
LUA_KEYS = """
local DIR = P .. ':g:{' .. P .. '}:dir'
local UNIQUE = P .. ':g:{' .. P .. '}:keys'
local QUEUES = P .. ':g:{' .. P .. '}:queues'
local MARKS = P .. ':g:{' .. P .. '}:marks'
local MARK_UNTIL = P .. ':g:{' .. P .. '}:mark_until'
local WORKERS = P .. ':g:{' .. P .. '}:workers'
local WORKER_UNTIL = P .. ':g:{' .. P .. '}:worker_until'
local EVENTS_CHANNEL = P .. ':g:{' .. P .. '}:events'
local CONTROL_CHANNEL = P .. ':g:{' .. P .. '}:control'
local BATCHES = P .. ':g:{' .. P .. '}:batches'
local OPEN_BATCHES = P .. ':g:{' .. P .. '}:open_batches'
local DONE_BATCHES = P .. ':g:{' .. P .. '}:done_batches'
local COUNT_MINUTES = P .. ':g:{' .. P .. '}:count_minutes'
local function batchrec(id) return P .. ':g:{' .. P .. '}:batchrec:' .. id end
local function countkey(minute) return P .. ':g:{' .. P .. '}:counts:' .. minute end
local function batchkey(name) return P .. ':g:{' .. P .. '}:batch:' .. name end
local function ownerkey(name) return P .. ':g:{' .. P .. '}:owner:' .. name end
local function taskkey(name) return P .. ':g:{' .. P .. '}:task:' .. name end
local function qkey(queue, name) return P .. ':q:{' .. queue .. '}:' .. name end
local function turnskey(queue) return qkey(queue, 'turns') end
local function jkey(queue, id) return P .. ':q:{' .. queue .. '}:j:' .. id end
local function historykey(queue, id) return P .. ':q:{' .. queue .. '}:a:' .. id end
local function lockkey(name) return P .. ':g:{' .. P .. '}:lock:' .. name end
local function claimkey(token) return P .. ':g:{' .. P .. '}:claim:' .. token end
"""


def check_prefix(prefix: str) -> str:
    if not prefix or len(prefix) > 64 or _FORBIDDEN_IN_PREFIX & set(prefix):
        raise ValueError(
            f"prefix must be 1 to 64 characters without braces, '*' or spaces, got {prefix!r}"
        )
    return prefix


class Keyspace:
    """Key names for Python-side commands; the scripts build the same names from LUA_KEYS."""

    def __init__(self, prefix: str) -> None:
        self.prefix = check_prefix(prefix)
        self._global = f"{prefix}:g:{{{prefix}}}:"

    def queue_key(self, queue: str, name: str) -> str:
        return f"{self.prefix}:q:{{{queue}}}:{name}"

    def job(self, queue: str, job_id: str) -> str:
        return self.queue_key(queue, "j:" + job_id)

    def wake(self, queue: str) -> str:
        return self.queue_key(queue, "wake")

    def history(self, queue: str, job_id: str) -> str:
        return self.queue_key(queue, "a:" + job_id)

    def turns(self, queue: str) -> str:
        return self.queue_key(queue, "turns")

    @property
    def directory(self) -> str:
        return self._global + "dir"

    @property
    def queues(self) -> str:
        return self._global + "queues"

    @property
    def marks(self) -> str:
        return self._global + "marks"

    @property
    def version(self) -> str:
        return self._global + "version"

    @property
    def events(self) -> str:
        """The pub/sub channel of this prefix's live events (a channel, not a key)."""
        return self._global + "events"

    @property
    def control(self) -> str:
        """The channel of the control kinds alone (records.CONTROL_KINDS), always sent."""
        return self._global + "control"

    def lock(self, name: str) -> str:
        return self._global + "lock:" + name

    def batch(self, name: str) -> str:
        return self._global + "batch:" + name

    def owner(self, name: str) -> str:
        return self._global + "owner:" + name

    def task(self, name: str) -> str:
        return self._global + "task:" + name

    def batch_record(self, batch_id: str) -> str:
        return self._global + "batchrec:" + batch_id

    def counts(self, minute: int) -> str:
        return self._global + f"counts:{minute}"

    @property
    def count_minutes(self) -> str:
        return self._global + "count_minutes"
