-- Progress of running jobs: groups of (id, delivery, progress, optional message).
for i = 3, #ARGV, 4 do
  local id, delivery = ARGV[i], ARGV[i + 1]
  local queue = redis.call('HGET', DIR, id)
  local j = queue and jkey(queue, id)
  local v = queue and fields(queue, id, 'state', 'delivery')
  if v and v[1] == 'running' and v[2] == delivery then
    redis.call('HSET', j, 'progress', ARGV[i + 2])
    local message = opt(ARGV[i + 3])
    if message then redis.call('HSET', j, 'progress_message', message)
    else redis.call('HDEL', j, 'progress_message') end
  end
end
return 0
