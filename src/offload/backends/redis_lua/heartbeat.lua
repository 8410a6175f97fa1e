-- Renew leases. ARGV[3] = lease seconds for jobs without their own, then (id, delivery) pairs.
-- Returns the ids whose lease this worker no longer holds (cancelled, reaped, finished, or
-- dead because their key no longer holds a hash).
local default_lease = tonumber(ARGV[3])
local lost = {}
for i = 4, #ARGV, 2 do
  local id, delivery = ARGV[i], ARGV[i + 1]
  local queue = redis.call('HGET', DIR, id)
  local v = queue and fields(queue, id, 'state', 'delivery', 'lease_s')
  if queue and not v then quarantine(queue, id) end
  if v and v[1] == 'running' and v[2] == delivery then
    local until_s = num(now + finite(v[3], default_lease))
    redis.call('HSET', jkey(queue, id), 'lease_until', until_s)
    redis.call('ZADD', qkey(queue, 'running'), until_s, id)
  else
    lost[#lost + 1] = id
  end
end
return lost
