-- Record outcomes, fenced by the delivery token. ARGV[3..] = groups of
-- (id, delivery, kind, result or '', error JSON or '', retry delay seconds,
-- '' or 'm' .. the meta JSON that replaces the job's, the number of follow-ups, then
-- 15 values per follow-up job as in enqueue.lua).
-- A follow-up (a chain's next step) is stored with its outcome, and only if the outcome
-- is taken; one whose id exists, or whose unique key a live job holds, is skipped.
-- Follow-ups do not take fair turns. Returns the ids refused because the lease was no
-- longer held (a job whose key no longer holds a hash is dead: prelude's quarantine).
-- A taken outcome ends the job's attempt in its history and pushes its event, then
-- ENQUEUED for each follow-up stored; a refused one changes nothing and pushes nothing.
local STRIDE = 15
local groups = {} -- ARGV index of each outcome group
local i = 3
while i <= #ARGV do
  groups[#groups + 1] = i
  local nf = tonumber(ARGV[i + 7])
  for k = 0, nf - 1 do -- checked before the first write: a failed script keeps its writes
    local problem = check_job(i + 8 + k * STRIDE)
    if problem then return redis.error_reply('OFFLOAD_REJECTED follow-up ' .. problem) end
  end
  i = i + 8 + nf * STRIDE
end
local rejected = {}
local woken = {}
local function follow_up(b)
  if redis.call('HSETNX', DIR, ARGV[b], ARGV[b + 2]) == 0 then return end -- stored already
  local key = opt(ARGV[b + 10])
  if key then
    local holder = redis.call('HGET', UNIQUE, key)
    local hq = holder and redis.call('HGET', DIR, holder)
    if hq and holds_key(state_of(hq, holder)) then
      redis.call('HDEL', DIR, ARGV[b])
      return
    end
  end
  put_job(b, job_run_at(b), key, woken)
end
-- outcome -> (how the attempt ended, the event subscribers get), as memory_views.OUTCOME_ENDINGS
local ENDINGS = {succeeded = {'succeeded', 'succeeded'}, retry = {'failed', 'retrying'},
  dead = {'failed', 'dead'}, cancelled = {'cancelled', 'cancelled'},
  release = {'released', 'requeued'}, defer = {'deferred', 'requeued'}}
local function error_message(error_json)
  if error_json == '' then return nil end
  local ok, decoded = pcall(cjson.decode, error_json)
  return ok and type(decoded) == 'table' and type(decoded.message) == 'string' and decoded.message
    or nil
end
for _, i in ipairs(groups) do
  local id, delivery, kind = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local queue = redis.call('HGET', DIR, id)
  local j = queue and jkey(queue, id)
  local v = queue and fields(queue, id, 'state', 'delivery', 'priority', 'run_at', 'attempt',
    'task', 'owner', 'batch', 'progress', 'worker', 'started_at', 'attempts')
  if queue and not v then quarantine(queue, id) end
  if not (v and v[1] == 'running' and v[2] == delivery) then
    rejected[#rejected + 1] = id
  else
    local ending = ENDINGS[kind]
    local attempt, progress = finite(v[5], 1), v[9]
    redis.call('ZREM', qkey(queue, 'running'), id)
    redis.call('HDEL', j, 'lease_until')
    redis.call('HSET', j, 'attempts',
      with_attempt(v[12], attempt, v[10], v[11], ending[1], ARGV[i + 4]))
    local meta = opt(ARGV[i + 6])
    if meta == '{}' then redis.call('HDEL', j, 'meta')
    elseif meta then redis.call('HSET', j, 'meta', meta) end
    local state = kind
    if kind == 'defer' then
      local run_at = num(now + tonumber(ARGV[i + 5]))
      state, attempt = 'scheduled', math.max(attempt - 1, 0)
      redis.call('HSET', j, 'state', state, 'run_at', run_at, 'attempt', tostring(attempt))
      redis.call('HDEL', j, 'worker')
      redis.call('ZADD', qkey(queue, 'scheduled'), run_at, id)
      wake(queue)
    elseif kind == 'release' then
      state, attempt = 'queued', math.max(attempt - 1, 0)
      redis.call('HSET', j, 'state', state, 'attempt', tostring(attempt))
      redis.call('HDEL', j, 'worker')
      make_ready(queue, id, v[3], v[4])
      wake(queue)
    elseif kind == 'retry' then
      local run_at = num(now + tonumber(ARGV[i + 5]))
      state = 'scheduled'
      redis.call('HSET', j, 'state', state, 'run_at', run_at, 'error', ARGV[i + 4])
      redis.call('ZADD', qkey(queue, 'scheduled'), run_at, id)
      wake(queue)
    else -- succeeded, dead, cancelled
      redis.call('HSET', j, 'state', kind, 'finished_at', num(now))
      if ARGV[i + 3] ~= '' then redis.call('HSET', j, 'result', ARGV[i + 3])
      else redis.call('HDEL', j, 'result') end
      if ARGV[i + 4] ~= '' then redis.call('HSET', j, 'error', ARGV[i + 4])
      else redis.call('HDEL', j, 'error') end
      if kind == 'succeeded' then
        redis.call('HSET', j, 'progress', '1')
        progress = 1
      end
      redis.call('ZADD', qkey(queue, kind), num(now), id)
    end
    local failed = ending[1] == 'failed'
    event(ending[2], id, queue, state, v[6], v[7], v[8], attempt, progress,
      failed and error_message(ARGV[i + 4]) or nil, v[10])
    for k = 0, tonumber(ARGV[i + 7]) - 1 do follow_up(i + 8 + k * STRIDE) end
  end
end
publish_events()
return rejected
