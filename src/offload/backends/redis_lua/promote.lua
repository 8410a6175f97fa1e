-- Move due scheduled jobs of every queue to queued; returns how many moved.
local moved = 0
for _, queue in ipairs(redis.call('SMEMBERS', QUEUES)) do
  moved = moved + promote(queue, 10000)
end
return moved
