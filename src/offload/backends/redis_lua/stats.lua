-- Per queue: {queue, counts per state (in INDEX order below), oldest ready run_at or '',
-- finished in the last minute}. Queues without jobs are left out.
local STATES = {'scheduled', 'queued', 'running', 'succeeded', 'dead', 'cancelled'}
local out = {}
local queues = redis.call('SMEMBERS', QUEUES)
table.sort(queues)
for _, queue in ipairs(queues) do
  local counts, total = {}, 0
  for i, state in ipairs(STATES) do
    counts[i] = redis.call('ZCARD', qkey(queue, INDEX[state]))
    total = total + counts[i]
  end
  if total > 0 then
    -- The oldest ready job heads its priority's band of the ready set: visit each band.
    local oldest = nil
    local ready = qkey(queue, 'queued')
    local head = redis.call('ZRANGE', ready, 0, 0, 'WITHSCORES')
    while #head > 0 do
      local score = tonumber(head[2])
      local priority = -math.floor(score / PRIORITY_STEP + 0.5)
      local run_at = score + priority * PRIORITY_STEP + EPOCH
      if oldest == nil or run_at < oldest then oldest = run_at end
      head = redis.call('ZRANGEBYSCORE', ready, '(' .. num(ready_score(priority, EPOCH) +
        PRIORITY_STEP / 2), '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
    end
    head = redis.call('ZRANGE', qkey(queue, 'scheduled'), 0, 0, 'WITHSCORES')
    if #head > 0 and tonumber(head[2]) <= now and (oldest == nil or tonumber(head[2]) < oldest) then
      oldest = tonumber(head[2])
    end
    local recent = 0
    for _, state in ipairs({'succeeded', 'dead', 'cancelled'}) do
      recent = recent + redis.call('ZCOUNT', qkey(queue, state), num(now - 60), '+inf')
    end
    out[#out + 1] = {queue, counts[1], counts[2], counts[3], counts[4], counts[5], counts[6],
      oldest and num(now - oldest) or '', recent}
  end
end
return out
