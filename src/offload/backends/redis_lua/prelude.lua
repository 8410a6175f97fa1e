-- Shared by every script (prepended at load time). ARGV[1] is the key prefix (P),
-- ARGV[2] the time in seconds ('' = the server's TIME, the normal case; tests
-- inject a clock). The key names (DIR, qkey, jkey, ...) come from redis_keys.LUA_KEYS,
-- loaded before this file.

-- A command that fails names its key in the error (WRONGTYPE does not): redis.call, for
-- these scripts, is redis.pcall raising what it returns; the rest of redis is Redis's own.
local REDIS = redis
local redis = setmetatable({call = function(...)
  local reply = REDIS.pcall(...)
  if type(reply) == 'table' and reply.err then
    local cmd, key = ...
    error({err = reply.err .. ' (' .. cmd .. ' ' .. tostring(key) .. ')'})
  end
  return reply
end}, {__index = REDIS})

local now
if ARGV[2] ~= '' then
  now = tonumber(ARGV[2])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
-- A job's history fields (see end_attempt): how many attempts its list keeps, and how its
-- last attempt ended when the job's own fields tell the rest.
local HISTORY = {'attempts', 'last'}
-- What read() returns, in this order: the JobRecord fields, the history as a JSON array last.
local FIELDS = {'id', 'task', 'queue', 'state', 'payload', 'priority', 'attempt',
  'max_attempts', 'delivery', 'crashes', 'run_at', 'lease_until', 'lease_s', 'timeout_s',
  'worker', 'progress', 'progress_message', 'result', 'error', 'created_at', 'started_at',
  'finished_at', 'key', 'batch', 'owner', 'meta'}
local RECORD = #FIELDS + 1
for _, name in ipairs(HISTORY) do FIELDS[#FIELDS + 1] = name end
-- positions in FIELDS, for scripts that edit a record they have read
local F_TASK, F_STATE, F_PRIORITY, F_ATTEMPT, F_DELIVERY, F_CRASHES, F_RUN_AT = 2, 4, 6, 7, 9, 10, 11
local F_LEASE_UNTIL, F_LEASE_S, F_WORKER, F_PROGRESS, F_ERROR = 12, 13, 15, 16, 19
local F_STARTED_AT, F_FINISHED_AT, F_KEY, F_BATCH, F_OWNER = 21, 22, 23, 24, 25
local EPOCH = 1577836800 -- 2020-01-01: keeps ready scores within a double's exact range
local PRIORITY_STEP = 4294967296
-- how long a pipelined claim's note of the ids it took is kept (see unclaim.lua)
local CLAIM_NOTE_MS = 120000
-- the index each state lives in: one sorted set per queue and state
local INDEX = {scheduled = 'scheduled', queued = 'queued', running = 'running',
  succeeded = 'succeeded', dead = 'dead', cancelled = 'cancelled'}

-- Lua would print numbers with 14 digits: 0.1 ms at epoch scale. Keep them exact.
local function num(x) return string.format('%.17g', x) end
local NOW = num(now) -- written once: most scripts write the time many times
-- A job key can hold a string, a list... (written by hand or by another tool) where its
-- hash should be. A command on it fails, and a script that fails halfway keeps its earlier
-- writes: scripts read a job with fields() (nil for such a key) before any write for it.
local function fields(queue, id, ...)
  local v = redis.pcall('HMGET', jkey(queue, id), ...)
  if v.err then return nil end
  return v
end
local function damage(queue, id)
  local j = jkey(queue, id)
  return 'its key ' .. j .. ' holds a ' .. redis.call('TYPE', j).ok .. ', not a hash'
end
-- A job's state, nil for a damaged key (it holds nothing: it is dead).
local function state_of(queue, id)
  local v = fields(queue, id, 'state')
  return v and v[1]
end
-- A damaged job leaves every state index for dead's, where no claim pops it and prune or
-- purge deletes it in time; Redis's log says why. Once: a dead one stays as it is.
local function quarantine(queue, id)
  local dead = qkey(queue, 'dead')
  if redis.call('ZSCORE', dead, id) then return end
  for _, index in pairs(INDEX) do redis.call('ZREM', qkey(queue, index), id) end
  redis.call('ZADD', dead, NOW, id)
  redis.log(redis.LOG_WARNING, 'offload: job ' .. id .. ' is dead: ' .. damage(queue, id))
end
local function holds_key(state)
  return state == 'scheduled' or state == 'queued' or state == 'running'
end

-- Highest priority first, then earliest run_at; ties go to the smaller (older) id.
-- A field as a finite number, or the default (a hash written by hand or by another version
-- must not stop a script halfway: a failed script keeps its earlier writes).
local function finite(x, default)
  x = tonumber(x)
  if x == nil or x ~= x or x == math.huge or x == -math.huge then return default end
  return x
end

local function ready_score(priority, run_at)
  return -finite(priority, 0) * PRIORITY_STEP + (finite(run_at, now) - EPOCH)
end

-- One token is enough: a woken worker that leaves work behind wakes the next.
local function wake(queue)
  local w = qkey(queue, 'wake')
  if redis.call('LLEN', w) == 0 then redis.call('RPUSH', w, '1') end
end

local function make_ready(queue, id, priority, run_at)
  redis.call('ZADD', qkey(queue, 'queued'), num(ready_score(priority, run_at)), id)
end

-- Take a job out of whichever state index holds it (every one, for a hash without a state).
local function unindex(queue, id, state)
  if INDEX[state] then
    redis.call('ZREM', qkey(queue, INDEX[state]), id)
  else
    for _, index in pairs(INDEX) do redis.call('ZREM', qkey(queue, index), id) end
  end
end

-- Due scheduled jobs join the ready set, so that claims respect priority across both.
local function promote(queue, max)
  local sched = qkey(queue, 'scheduled')
  local due = redis.call('ZRANGEBYSCORE', sched, '-inf', NOW, 'LIMIT', 0, max)
  for _, id in ipairs(due) do
    local v = fields(queue, id, 'priority', 'run_at')
    if v then
      redis.call('HSET', jkey(queue, id), 'state', 'queued')
      make_ready(queue, id, v[1], v[2])
    else
      quarantine(queue, id)
    end
  end
  if #due > 0 then redis.call('ZREM', sched, unpack(due)) end
  return #due
end

-- Delete a job and everything that points at it.
local function forget(queue, id, state)
  local j = jkey(queue, id)
  local v = fields(queue, id, 'key', 'batch', 'owner', 'task') or {} -- a damaged key: its
  local key = v[1]                                                      -- own job alone
  if key and redis.call('HGET', UNIQUE, key) == id then redis.call('HDEL', UNIQUE, key) end
  if v[2] then redis.call('ZREM', batchkey(v[2]), id) end
  if v[3] then redis.call('ZREM', ownerkey(v[3]), id) end
  if v[4] then redis.call('ZREM', taskkey(v[4]), id) end
  unindex(queue, id, state)
  redis.call('ZREM', qkey(queue, 'all'), id)
  redis.call('ZREM', qkey(queue, 'created'), id)
  redis.call('HDEL', DIR, id)
  redis.call('DEL', j, historykey(queue, id))
end

-- Optional strings travel as '' (None) or 's' .. text.
local function opt(s) if s == '' then return nil end return string.sub(s, 2) end

-- Live events (redis_events.py): a script notes the events of the jobs it changed, then
-- publish_events() sends them as one JSON array (event_wire's field names) after its last
-- write: subscribers get a step whole, in order, and only if it was taken. The JSON is
-- written here rather than by cjson.encode of a table, which keeps 14 digits of a number.
-- Nothing is built while nobody listens: PUBSUB NUMSUB, asked once per script, counts every
-- subscription Redis confirmed before the script began (a script runs whole). It counts
-- this server's subscribers only: subscribe() connects to the server the scripts run on.
-- The control kinds (records.CONTROL_KINDS: a person's cancel or delete) are rare and
-- every worker listens for them: they go on CONTROL_CHANNEL always, whoever listens.
local EVENTS = {}
local CONTROLS = {}
local CONTROL = {cancelled = true, deleted = true, queue_paused = true, queue_resumed = true}
local LISTENED = nil
local function listened()
  if LISTENED == nil then
    LISTENED = redis.call('PUBSUB', 'NUMSUB', EVENTS_CHANNEL)[2] > 0
  end
  return LISTENED
end
local function jtext(s)
  if not s then return 'null' end
  return cjson.encode(s)
end
-- A count (attempt) as JSON: the hash's own text when it is a whole number (this store
-- wrote it with tostring), else tostring, exact for integers and cheaper than num.
local function jcount(x)
  local n = finite(x, nil)
  if not n or n ~= math.floor(n) then return '0' end
  return type(x) == 'string' and string.find(x, '^%-?%d+$') and x or tostring(n)
end
local function jprogress(x)
  x = finite(x, 0)
  if x == 0 then return '0' elseif x == 1 then return '1' end
  return num(x)
end
local function event(kind, id, queue, state, task, owner, batch, attempt, progress, message,
                     worker)
  local control = CONTROL[kind]
  if not (control or listened()) then return end
  local e = '{"kind":"' .. kind .. '","id":' .. jtext(id) .. ',"queue":' .. jtext(queue or '') ..
    ',"state":' .. jtext(state) .. ',"task":' .. jtext(task or '') .. ',"attempt":' ..
    jcount(attempt) .. ',"progress":' .. jprogress(progress) .. ',"at":' .. NOW
  -- fields left out read as their defaults (None)
  if worker then e = e .. ',"worker":' .. jtext(worker) end
  if owner then e = e .. ',"owner":' .. jtext(owner) end
  if batch then e = e .. ',"batch":' .. jtext(batch) end
  if message then e = e .. ',"message":' .. jtext(message) end
  e = e .. '}'
  if listened() then EVENTS[#EVENTS + 1] = e end
  if control then CONTROLS[#CONTROLS + 1] = e end
end
-- The event of a job read with read() (FIELDS order) after the step changed it.
local function event_of(kind, rec, message)
  event(kind, rec[1], rec[3], rec[F_STATE], rec[F_TASK], rec[F_OWNER], rec[F_BATCH],
    rec[F_ATTEMPT], rec[F_PROGRESS], message, rec[F_WORKER])
end
local function publish_events()
  if #EVENTS > 0 then
    redis.call('PUBLISH', EVENTS_CHANNEL, '[' .. table.concat(EVENTS, ',') .. ']')
  end
  if #CONTROLS > 0 then
    redis.call('PUBLISH', CONTROL_CHANNEL, '[' .. table.concat(CONTROLS, ',') .. ']')
  end
end

-- Attempt history (JobRecord.attempts): a list beside the job's hash (historykey), one
-- Attempt JSON per ended attempt, oldest first, the newest MAX_ATTEMPTS kept, counted by
-- the hash's 'attempts' field. An attempt that ends the job (succeeded, dead, cancelled)
-- is not written out: the job's own fields tell it (attempt, worker, started_at,
-- finished_at, error), and its 'last' field says how it ended ('succeeded:', 'failed:e';
-- 'e': the job's error is the attempt's). So a job run once costs one short field, no key
-- of its own, and its hash stays a listpack (one value over 64 bytes makes it a table 3.6
-- times larger). retry.lua writes that attempt out before the fields change.
local function attempt_json(number, worker, started_at, ended_at, outcome, error_json)
  local started = finite(started_at, nil)
  return '{"number":' .. jcount(number) .. ',"worker":' .. jtext(worker) ..
    ',"started_at":' .. (started and num(started) or 'null') .. ',"ended_at":' ..
    num(finite(ended_at, 0)) .. ',"outcome":' .. jtext(outcome) .. ',"error":' ..
    ((error_json and error_json ~= '') and error_json or 'null') .. '}'
end
-- The attempt a job's fields tell (rec in FIELDS order, its 'last' field given).
local function last_json(rec, last)
  local outcome, e = string.match(last, '^(%a+):(e?)$')
  return attempt_json(rec[F_ATTEMPT], rec[F_WORKER], rec[F_STARTED_AT], rec[F_FINISHED_AT],
    outcome or last, e == 'e' and rec[F_ERROR])
end
-- Add entries to the job's list; returns how many it keeps (a list key of another type,
-- written by hand, loses them but never fails the step: Redis's log says so).
local function push_history(queue, id, entries, room)
  local key = historykey(queue, id)
  local n = REDIS.pcall('RPUSH', key, unpack(entries))
  if type(n) ~= 'number' then
    redis.log(redis.LOG_WARNING, 'offload: job ' .. id .. ': its history key ' .. key ..
      ' is not a list; attempts are not kept')
    return 0
  end
  if n > room then
    redis.call('LTRIM', key, -room, -1)
    n = room
  end
  return n
end
-- The attempt ending now, added to set and unset (the HSET and HDEL of the job's hash that
-- the caller makes). count: the job's 'attempts' field as read. told: the step leaves the
-- job's fields telling this attempt (it ends the job; the error field holds error_json).
local function end_attempt(queue, id, count, set, unset, number, worker, started_at, outcome,
                           error_json, told)
  local kept = tonumber(count or '0')
  if not kept then -- not a count (written by hand): the list starts afresh
    redis.call('DEL', historykey(queue, id))
    kept = 0
    set[#set + 1] = 'attempts'
    set[#set + 1] = '0'
  end
  local e = (error_json and error_json ~= '') and 'e' or ''
  if told then
    set[#set + 1] = 'last'
    set[#set + 1] = outcome .. ':' .. e
    if kept >= MAX_ATTEMPTS then -- room for the last one
      redis.call('LTRIM', historykey(queue, id), -(MAX_ATTEMPTS - 1), -1)
      set[#set + 1] = 'attempts'
      set[#set + 1] = tostring(MAX_ATTEMPTS - 1)
    end
    return
  end
  local entry = attempt_json(number, worker, started_at, now, outcome, error_json)
  set[#set + 1] = 'attempts'
  set[#set + 1] = tostring(push_history(queue, id, {entry}, MAX_ATTEMPTS))
  unset[#unset + 1] = 'last'
end
-- Write out the attempt a job's fields tell, before a step changes them (a person's retry).
local function settle_history(queue, id)
  local rec = fields(queue, id, unpack(FIELDS))
  local last = rec and rec[RECORD + 1]
  if not last then return end
  if not tonumber(rec[RECORD] or '0') then -- not a count (written by hand): afresh
    redis.call('DEL', historykey(queue, id))
  end
  local n = push_history(queue, id, {last_json(rec, last)}, MAX_ATTEMPTS)
  redis.call('HSET', jkey(queue, id), 'attempts', tostring(n))
  redis.call('HDEL', jkey(queue, id), 'last')
end
-- A hash missing its id or queue (written by hand, half deleted) still says which job it is.
-- A damaged key reads as a dead job with one more field saying why (redis_codec.record's
-- unreadable), and true as the second value. The history reads as one JSON array (or, not
-- being one, as no attempts: redis_codec.attempts keeps what decodes).
local function read(queue, id)
  local rec = fields(queue, id, unpack(FIELDS))
  if not rec then
    rec = {}
    for i = 1, RECORD do rec[i] = false end
    rec[1], rec[3], rec[F_STATE] = id, queue, 'dead'
    rec[RECORD + 1] = damage(queue, id)
    return rec, true
  end
  if not rec[1] then rec[1] = id end
  if not rec[3] then rec[3] = queue end
  local count, last = rec[RECORD], rec[RECORD + 1]
  rec[RECORD + 1] = nil
  local kept = tonumber(count or '0')
  if not kept then return rec, false end -- not a count: no history
  local items = {}
  if kept > 0 then
    items = REDIS.pcall('LRANGE', historykey(queue, id), 0, -1)
    if items.err then
      rec[RECORD] = 'history: ' .. items.err
      return rec, false
    end
  end
  if last then items[#items + 1] = last_json(rec, last) end
  rec[RECORD] = #items > 0 and '[' .. table.concat(items, ',') .. ']'
  return rec, false
end

-- Give a key (a count's, which no prune need reach) a lifetime on the server's clock of
-- at least ms from now; renewed only when it would end sooner, a minute past what is asked.
local function keep_for(key, ms)
  if redis.call('PTTL', key) < ms then
    redis.call('PEXPIRE', key, math.ceil(ms) + 60000)
  end
end

-- Workers that stopped beating (on the store's clock) leave the registry.
local function expire_workers()
  local gone = redis.call('ZRANGEBYSCORE', WORKER_UNTIL, '-inf', NOW, 'LIMIT', 0, 1000)
  if #gone > 0 then
    redis.call('HDEL', WORKERS, unpack(gone))
    redis.call('ZREM', WORKER_UNTIL, unpack(gone))
  end
end

-- Marks written with a lifetime that has run out (on the store's clock) are deleted.
local function expire_marks()
  local gone = redis.call('ZRANGEBYSCORE', MARK_UNTIL, '-inf', NOW, 'LIMIT', 0, 1000)
  if #gone > 0 then
    redis.call('HDEL', MARKS, unpack(gone))
    redis.call('ZREM', MARK_UNTIL, unpack(gone))
  end
end
