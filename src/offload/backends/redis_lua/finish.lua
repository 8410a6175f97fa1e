-- Record outcomes, fenced by the delivery token. ARGV[3..] = groups of
-- (id, delivery, kind, result or '', error JSON or '', retry delay seconds,
-- '' or 'm' .. the meta JSON that replaces the job's).
-- Returns the ids refused because the lease was no longer held.
local rejected = {}
for i = 3, #ARGV, 7 do
  local id, delivery, kind = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local queue = redis.call('HGET', DIR, id)
  local j = queue and jkey(queue, id)
  local v = queue and redis.call('HMGET', j, 'state', 'delivery', 'priority', 'run_at', 'attempt')
  if not (v and v[1] == 'running' and v[2] == delivery) then
    rejected[#rejected + 1] = id
  else
    redis.call('ZREM', qkey(queue, 'running'), id)
    redis.call('HDEL', j, 'lease_until')
    local meta = opt(ARGV[i + 6])
    if meta == '{}' then redis.call('HDEL', j, 'meta')
    elseif meta then redis.call('HSET', j, 'meta', meta) end
    if kind == 'defer' then
      local run_at = num(now + tonumber(ARGV[i + 5]))
      redis.call('HSET', j, 'state', 'scheduled', 'run_at', run_at,
        'attempt', tostring(math.max(finite(v[5], 1) - 1, 0)))
      redis.call('HDEL', j, 'worker')
      redis.call('ZADD', qkey(queue, 'scheduled'), run_at, id)
      wake(queue)
    elseif kind == 'release' then
      redis.call('HSET', j, 'state', 'queued', 'attempt', tostring(math.max(finite(v[5], 1) - 1, 0)))
      redis.call('HDEL', j, 'worker')
      make_ready(queue, id, v[3], v[4])
      wake(queue)
    elseif kind == 'retry' then
      local run_at = num(now + tonumber(ARGV[i + 5]))
      redis.call('HSET', j, 'state', 'scheduled', 'run_at', run_at, 'error', ARGV[i + 4])
      redis.call('ZADD', qkey(queue, 'scheduled'), run_at, id)
      wake(queue)
    else -- succeeded, dead, cancelled
      redis.call('HSET', j, 'state', kind, 'finished_at', num(now))
      if ARGV[i + 3] ~= '' then redis.call('HSET', j, 'result', ARGV[i + 3])
      else redis.call('HDEL', j, 'result') end
      if ARGV[i + 4] ~= '' then redis.call('HSET', j, 'error', ARGV[i + 4])
      else redis.call('HDEL', j, 'error') end
      if kind == 'succeeded' then redis.call('HSET', j, 'progress', '1') end
      redis.call('ZADD', qkey(queue, kind), num(now), id)
    end
  end
end
return rejected
