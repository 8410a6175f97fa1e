-- Record outcomes, fenced by the delivery token. ARGV[3..] = groups of
-- (id, delivery, kind, result or '', error JSON or '', retry delay seconds,
-- '' or 'm' .. the meta JSON that replaces the job's, the number of follow-ups, then
-- 16 values per follow-up job as in enqueue.lua).
-- A follow-up (a chain's next step) is stored with its outcome, and only if the outcome
-- is taken; one whose id exists, or whose unique key a live job holds, is skipped.
-- Follow-ups do not take fair turns. Returns the ids refused because the lease was no
-- longer held (a job whose key no longer holds a hash is dead: prelude's quarantine).
-- A taken outcome ends the job's attempt in its history and pushes its event, then
-- ENQUEUED for each follow-up stored; a final one then sets off what its end does
-- (endings.lua: its batch's count, the follow-ups it was stored with, the batch's callback).
-- A refused one changes nothing and pushes nothing.
local STRIDE = JOB_ITEMS
local groups = {} -- ARGV index of each outcome group
local cancels = false -- a cancelled outcome: its event goes to the control channel
local i = 3
while i <= #ARGV do
  groups[#groups + 1] = i
  if ARGV[i + 2] == 'cancelled' then cancels = true end
  local nf = tonumber(ARGV[i + 7])
  for k = 0, nf - 1 do -- checked before the first write: a failed script keeps its writes
    local problem = check_job(ARGV, i + 8 + k * STRIDE)
    if problem then return redis.error_reply('OFFLOAD_REJECTED follow-up ' .. problem) end
  end
  i = i + 8 + nf * STRIDE
end
local rejected = {}
local woken = {}
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
-- what the step needs of a job (1..10), then what only its event does
local WANTED = {'state', 'delivery', 'priority', 'run_at', 'attempt', 'worker', 'started_at',
  'attempts', 'batch', 'follow_ups'}
if listened() or cancels then
  for _, name in ipairs({'task', 'owner', 'progress'}) do WANTED[#WANTED + 1] = name end
end
local function put(set, name, value)
  set[#set + 1] = name
  set[#set + 1] = value
end
for _, i in ipairs(groups) do
  local id, delivery, kind = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local queue = redis.call('HGET', DIR, id)
  local j = queue and jkey(queue, id)
  local v = queue and fields(queue, id, unpack(WANTED))
  if queue and not v then quarantine(queue, id) end
  if not (v and v[1] == 'running' and v[2] == delivery) then
    rejected[#rejected + 1] = id
  else
    local ending = ENDINGS[kind]
    local attempt, progress, error_json = finite(v[5], 1), v[13], ARGV[i + 4]
    -- one HSET and one HDEL for the job's hash: a call costs about what the rest does
    local set, unset = {}, {'lease_until'}
    end_attempt(queue, id, v[8], set, unset, attempt, v[6], v[7], ending[1], error_json,
      kind == 'succeeded' or kind == 'dead' or kind == 'cancelled')
    local meta = opt(ARGV[i + 6])
    if meta == '{}' then unset[#unset + 1] = 'meta' elseif meta then put(set, 'meta', meta) end
    redis.call('ZREM', qkey(queue, 'running'), id)
    local state = kind
    if kind == 'defer' or kind == 'release' then -- not counted: the attempt is given back
      attempt = math.max(attempt - 1, 0)
      state = kind == 'defer' and 'scheduled' or 'queued'
      put(set, 'attempt', tostring(attempt))
      unset[#unset + 1] = 'worker'
    end
    if kind == 'defer' or kind == 'retry' then
      local run_at = num(now + tonumber(ARGV[i + 5]))
      state = 'scheduled'
      put(set, 'run_at', run_at)
      if kind == 'retry' then -- none given: none kept ('' would not decode)
        if error_json ~= '' then put(set, 'error', error_json) else unset[#unset + 1] = 'error' end
      end
      redis.call('ZADD', qkey(queue, 'scheduled'), run_at, id)
      wake(queue)
    elseif kind == 'release' then
      make_ready(queue, id, v[3], v[4])
      wake(queue)
    else -- succeeded, dead, cancelled
      put(set, 'finished_at', NOW)
      if ARGV[i + 3] ~= '' then put(set, 'result', ARGV[i + 3]) else unset[#unset + 1] = 'result' end
      if error_json ~= '' then put(set, 'error', error_json) else unset[#unset + 1] = 'error' end
      if kind == 'succeeded' then
        progress = 1
        put(set, 'progress', '1')
      end
      redis.call('ZADD', qkey(queue, kind), NOW, id)
    end
    put(set, 'state', state)
    redis.call('HSET', j, unpack(set))
    redis.call('HDEL', j, unpack(unset))
    local failed = ending[1] == 'failed' and listened()
    event(ending[2], id, queue, state, v[11], v[12], v[9], attempt, progress,
      failed and error_message(error_json) or nil, v[6])
    for k = 0, tonumber(ARGV[i + 7]) - 1 do insert_job(ARGV, i + 8 + k * STRIDE, woken) end
    if kind == 'succeeded' or kind == 'dead' or kind == 'cancelled' then
      ended(id, state, v[9], v[10], woken)
    end
  end
end
publish_events()
return rejected
