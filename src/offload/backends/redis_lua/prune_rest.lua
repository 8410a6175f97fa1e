-- After a prune up to ARGV[3]: delete fair turns taken before it (a turn that old never
-- delays anyone: a new turn is at least the head of the ready jobs, or now), forget the
-- queues left with no job at all, and delete marks past their lifetime.
-- Returns how many turns, queues and marks were deleted, summed.
local before = tonumber(ARGV[3])
local deleted = 0
for _, queue in ipairs(redis.call('SMEMBERS', QUEUES)) do
  local turns = turnskey(queue)
  local all = redis.call('HGETALL', turns)
  local old = {}
  for i = 1, #all, 2 do
    if (tonumber(all[i + 1]) or 0) < before then old[#old + 1] = all[i] end
  end
  for i = 1, #old, 1000 do
    redis.call('HDEL', turns, unpack(old, i, math.min(i + 999, #old)))
  end
  deleted = deleted + #old
  local empty = redis.call('ZCARD', qkey(queue, 'all')) == 0
  for _, index in pairs(INDEX) do
    if redis.call('ZCARD', qkey(queue, index)) > 0 then empty = false end
  end
  if empty then
    redis.call('SREM', QUEUES, queue)
    redis.call('DEL', qkey(queue, 'wake'), turns)
    deleted = deleted + 1
  end
end
local marks = redis.call('ZCOUNT', MARK_UNTIL, '-inf', num(now))
expire_marks()
return deleted + math.min(marks, 1000)
