-- Shared by every script (prepended at load time). ARGV[1] is the key prefix (P),
-- ARGV[2] the time in seconds ('' = the server's TIME, the normal case; tests
-- inject a clock). The key names (DIR, qkey, jkey, ...) come from redis_keys.LUA_KEYS,
-- loaded before this file.
local now
if ARGV[2] ~= '' then
  now = tonumber(ARGV[2])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local FIELDS = {'id', 'task', 'queue', 'state', 'payload', 'priority', 'attempt',
  'max_attempts', 'delivery', 'crashes', 'run_at', 'lease_until', 'lease_s', 'timeout_s',
  'worker', 'progress', 'progress_message', 'result', 'error', 'created_at', 'started_at',
  'finished_at', 'key', 'batch', 'owner', 'meta'}
-- positions in FIELDS, for scripts that edit a record they have read
local F_STATE, F_PRIORITY, F_ATTEMPT, F_DELIVERY, F_CRASHES, F_RUN_AT = 4, 6, 7, 9, 10, 11
local F_LEASE_UNTIL, F_LEASE_S, F_WORKER, F_STARTED_AT, F_KEY = 12, 13, 15, 21, 23
local EPOCH = 1577836800 -- 2020-01-01: keeps ready scores within a double's exact range
local PRIORITY_STEP = 4294967296
-- the index each state lives in: one sorted set per queue and state
local INDEX = {scheduled = 'scheduled', queued = 'queued', running = 'running',
  succeeded = 'succeeded', dead = 'dead', cancelled = 'cancelled'}

-- Lua would print numbers with 14 digits: 0.1 ms at epoch scale. Keep them exact.
local function num(x) return string.format('%.17g', x) end
local function read(queue, id) return redis.call('HMGET', jkey(queue, id), unpack(FIELDS)) end
local function holds_key(state)
  return state == 'scheduled' or state == 'queued' or state == 'running'
end

-- Highest priority first, then earliest run_at; ties go to the smaller (older) id.
local function ready_score(priority, run_at)
  return -tonumber(priority) * PRIORITY_STEP + (tonumber(run_at) - EPOCH)
end

-- One token is enough: a woken worker that leaves work behind wakes the next.
local function wake(queue)
  local w = qkey(queue, 'wake')
  if redis.call('LLEN', w) == 0 then redis.call('RPUSH', w, '1') end
end

local function make_ready(queue, id, priority, run_at)
  redis.call('ZADD', qkey(queue, 'queued'), num(ready_score(priority, run_at)), id)
end

-- Take a job out of whichever state index holds it.
local function unindex(queue, id, state)
  redis.call('ZREM', qkey(queue, INDEX[state]), id)
end

-- Due scheduled jobs join the ready set, so that claims respect priority across both.
local function promote(queue, max)
  local sched = qkey(queue, 'scheduled')
  local due = redis.call('ZRANGEBYSCORE', sched, '-inf', num(now), 'LIMIT', 0, max)
  for _, id in ipairs(due) do
    local j = jkey(queue, id)
    local v = redis.call('HMGET', j, 'priority', 'run_at')
    redis.call('HSET', j, 'state', 'queued')
    make_ready(queue, id, v[1], v[2])
  end
  if #due > 0 then redis.call('ZREM', sched, unpack(due)) end
  return #due
end

-- Delete a job and everything that points at it.
local function forget(queue, id, state)
  local j = jkey(queue, id)
  local key = redis.call('HGET', j, 'key')
  if key and redis.call('HGET', UNIQUE, key) == id then redis.call('HDEL', UNIQUE, key) end
  unindex(queue, id, state)
  redis.call('ZREM', qkey(queue, 'all'), id)
  redis.call('HDEL', DIR, id)
  redis.call('DEL', j)
end

-- Optional strings travel as '' (None) or 's' .. text.
local function opt(s) if s == '' then return nil end return string.sub(s, 2) end
