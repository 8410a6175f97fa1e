-- After a prune (prune_turns.lua has run): forget the queues left with no job at all,
-- with their wake-up list and turns, and delete marks and workers past their lifetime.
-- Returns how many queues were forgotten.
local forgotten = 0
for _, queue in ipairs(redis.call('SMEMBERS', QUEUES)) do
  local empty = redis.call('ZCARD', qkey(queue, 'all')) == 0
  for _, index in pairs(INDEX) do
    if redis.call('ZCARD', qkey(queue, index)) > 0 then empty = false end
  end
  if empty then
    redis.call('SREM', QUEUES, queue)
    redis.call('DEL', qkey(queue, 'wake'), turnskey(queue), qkey(queue, 'created'))
    forgotten = forgotten + 1
  end
end
expire_marks()
expire_workers()
return forgotten
