-- Expired leases: the job goes back to queued, or to dead after ARGV[3] crashes.
-- ARGV[4] = the error recorded (JSON), ARGV[5] its message. Returns (id, new state) pairs.
-- The attempt ends in the job's history as lost; each job pushes REQUEUED or DEAD, and a
-- dead one sets off what its end does (endings.lua).
local max_crashes, error_json, message = tonumber(ARGV[3]), ARGV[4], ARGV[5]
local out = {}
local woken = {}
for _, queue in ipairs(redis.call('SMEMBERS', QUEUES)) do
  local running = qkey(queue, 'running')
  local expired = redis.call('ZRANGEBYSCORE', running, '-inf', '(' .. NOW, 'LIMIT', 0, 1000)
  local live = {}
  for _, id in ipairs(expired) do -- a key that is no hash: dead, and charged no crash
    local v = fields(queue, id, 'crashes', 'priority', 'run_at', 'attempt', 'worker',
      'started_at', 'task', 'owner', 'batch', 'progress', 'attempts', 'follow_ups')
    if v then live[#live + 1] = {id, v} else quarantine(queue, id) end
  end
  for _, e in ipairs(live) do
    local id, v = e[1], e[2]
    local j = jkey(queue, id)
    local crashes = finite(v[1], 0) + 1
    redis.call('ZREM', running, id)
    local set = {'crashes', tostring(crashes), 'error', error_json}
    local unset = {'lease_until', 'worker'}
    end_attempt(queue, id, v[11], set, unset, v[4], v[5], v[6], 'lost', error_json, false)
    local state, kind
    if crashes >= max_crashes then
      state, kind = 'dead', 'dead'
      for _, x in ipairs({'state', state, 'finished_at', NOW}) do set[#set + 1] = x end
      redis.call('ZADD', qkey(queue, 'dead'), NOW, id)
    else
      state, kind = 'queued', 'requeued'
      for _, x in ipairs({'state', state}) do set[#set + 1] = x end
      make_ready(queue, id, v[2], v[3])
      wake(queue)
    end
    redis.call('HSET', j, unpack(set))
    redis.call('HDEL', j, unpack(unset))
    event(kind, id, queue, state, v[7], v[8], v[9], v[4], v[10], message, nil)
    if state == 'dead' then ended(id, state, v[9], v[12], woken) end
    out[#out + 1] = id
    out[#out + 1] = state
  end
end
publish_events()
return out
