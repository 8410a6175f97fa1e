-- Before a worker sleeps: {now, 1 if a job on the queues ARGV[3..] can start now else 0,
-- the earliest scheduled run_at or ''}.
local ready, next_at = 0, nil
for q = 3, #ARGV do
  local queue = ARGV[q]
  if redis.call('ZCARD', qkey(queue, 'queued')) > 0 then ready = 1 end
  local head = redis.call('ZRANGE', qkey(queue, 'scheduled'), 0, 0, 'WITHSCORES')
  if #head > 0 then
    local at = tonumber(head[2])
    if at <= now then ready = 1 end
    if next_at == nil or at < next_at then next_at = at end
  end
end
return {NOW, ready, next_at and num(next_at) or ''}
