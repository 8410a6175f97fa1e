-- Expired leases: the job goes back to queued, or to dead after ARGV[3] crashes.
-- ARGV[4] = the error recorded (JSON). Returns (id, new state) pairs.
local max_crashes, error_json = tonumber(ARGV[3]), ARGV[4]
local out = {}
for _, queue in ipairs(redis.call('SMEMBERS', QUEUES)) do
  local running = qkey(queue, 'running')
  local expired = redis.call('ZRANGEBYSCORE', running, '-inf', '(' .. num(now), 'LIMIT', 0, 1000)
  for _, id in ipairs(expired) do
    local j = jkey(queue, id)
    local v = redis.call('HMGET', j, 'crashes', 'priority', 'run_at')
    local crashes = finite(v[1], 0) + 1
    redis.call('ZREM', running, id)
    redis.call('HDEL', j, 'lease_until', 'worker')
    redis.call('HSET', j, 'crashes', tostring(crashes), 'error', error_json)
    local state
    if crashes >= max_crashes then
      state = 'dead'
      redis.call('HSET', j, 'state', state, 'finished_at', num(now))
      redis.call('ZADD', qkey(queue, 'dead'), num(now), id)
    else
      state = 'queued'
      redis.call('HSET', j, 'state', state)
      make_ready(queue, id, v[2], v[3])
      wake(queue)
    end
    out[#out + 1] = id
    out[#out + 1] = state
  end
end
return out
