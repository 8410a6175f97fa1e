-- Cancel the ids ARGV[3..] that have not ended; returns the records of all that exist.
local out = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local queue = redis.call('HGET', DIR, id)
  if queue then
    local j = jkey(queue, id)
    local v = fields(queue, id, 'state')
    if not v then quarantine(queue, id) end -- its key holds no hash: dead, as it reads
    local state = v and v[1]
    if holds_key(state) then
      unindex(queue, id, state)
      redis.call('HSET', j, 'state', 'cancelled', 'finished_at', num(now))
      redis.call('HDEL', j, 'lease_until')
      redis.call('ZADD', qkey(queue, 'cancelled'), num(now), id)
    end
    out[#out + 1] = read(queue, id)
  end
end
return out
