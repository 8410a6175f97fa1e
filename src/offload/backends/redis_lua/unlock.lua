-- Release the lock ARGV[3] if owner ARGV[4] holds it.
local k = lockkey(ARGV[3])
if redis.call('HGET', k, 'owner') == ARGV[4] then redis.call('DEL', k) end
return 0
