-- Take or renew the lock ARGV[3] for owner ARGV[4] for ARGV[5] seconds; 1 if held.
-- The expiry is a field on the store's clock, not a key TTL, so injected clocks hold too.
local k = lockkey(ARGV[3])
local v = redis.call('HMGET', k, 'owner', 'until')
if v[1] and v[1] ~= ARGV[4] and tonumber(v[2]) > now then return 0 end
redis.call('HSET', k, 'owner', ARGV[4], 'until', num(now + tonumber(ARGV[5])))
return 1
