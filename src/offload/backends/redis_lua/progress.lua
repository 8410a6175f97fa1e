-- Progress of running jobs: groups of (id, delivery, progress, optional message). Each
-- update of a lease still held pushes PROGRESS.
for i = 3, #ARGV, 4 do
  local id, delivery = ARGV[i], ARGV[i + 1]
  local queue = redis.call('HGET', DIR, id)
  local j = queue and jkey(queue, id)
  local v = queue and fields(queue, id, 'state', 'delivery', 'task', 'owner', 'batch', 'attempt',
    'worker')
  if v and v[1] == 'running' and v[2] == delivery then
    redis.call('HSET', j, 'progress', ARGV[i + 2])
    local message = opt(ARGV[i + 3])
    if message then redis.call('HSET', j, 'progress_message', message)
    else redis.call('HDEL', j, 'progress_message') end
    event('progress', id, queue, 'running', v[3], v[4], v[5], v[6], ARGV[i + 2], message, v[7])
  end
end
publish_events()
return 0
