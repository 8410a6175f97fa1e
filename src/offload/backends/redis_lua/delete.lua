-- Forget the ids ARGV[3..] unless running (a worker holds them: cancel first), with their
-- unique key, batch and index entries; each pushes DELETED. A job that had not ended never
-- will: its batch stops waiting for it (endings.lua). Returns the ids deleted, in the order
-- given (the caller sends each id once).
local out = {}
local woken = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local queue = redis.call('HGET', DIR, id)
  if queue then
    local v = fields(queue, id, 'state', 'task', 'owner', 'batch', 'attempt', 'progress', 'worker')
    if not v then -- a key that holds no hash: a dead job, deleted as one
      quarantine(queue, id)
      v = {'dead'}
    end
    if v[1] ~= 'running' then
      event('deleted', id, queue, v[1], v[2], v[3], v[4], v[5], v[6], nil, v[7])
      if holds_key(v[1]) then ended(id, v[1], v[4], nil, woken) end
      forget(queue, id, v[1])
      out[#out + 1] = id
    end
  end
end
publish_events()
return out
