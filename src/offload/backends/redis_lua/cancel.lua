-- Cancel the ids ARGV[3..] that have not ended; returns the records of all that exist.
-- A running job's attempt ends in its history (cancelled); each job changed pushes CANCELLED
-- and sets off what its end does (endings.lua).
local out = {}
local woken = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local queue = redis.call('HGET', DIR, id)
  if queue then
    local j = jkey(queue, id)
    local v = fields(queue, id, 'state', 'attempt', 'worker', 'started_at', 'attempts',
      'batch', 'follow_ups')
    if not v then quarantine(queue, id) end -- its key holds no hash: dead, as it reads
    local state = v and v[1]
    if holds_key(state) then
      unindex(queue, id, state)
      local set, unset = {'state', 'cancelled', 'finished_at', NOW}, {'lease_until'}
      if state == 'running' then
        end_attempt(queue, id, v[5], set, unset, v[2], v[3], v[4], 'cancelled', nil, true)
      end
      redis.call('HSET', j, unpack(set))
      redis.call('HDEL', j, unpack(unset))
      redis.call('ZADD', qkey(queue, 'cancelled'), NOW, id)
    end
    local rec = read(queue, id)
    if holds_key(state) then
      event_of('cancelled', rec)
      ended(id, 'cancelled', v[6], v[7], woken)
    end
    out[#out + 1] = rec
  end
end
publish_events()
return out
