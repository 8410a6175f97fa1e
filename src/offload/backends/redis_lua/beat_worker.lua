-- Add or refresh worker ARGV[3] (its WorkerInfo JSON ARGV[4]) in the registry until now +
-- ARGV[5] seconds on the store's clock; last_seen is now. Both registry keys also expire
-- on the server's clock after the longest ttl of the last beats: a registry whose workers
-- all stopped is gone even if nothing prunes.
expire_workers()
local ttl_s = tonumber(ARGV[5])
redis.call('HSET', WORKERS, ARGV[3], '[' .. NOW .. ',' .. ARGV[4] .. ']')
redis.call('ZADD', WORKER_UNTIL, num(now + ttl_s), ARGV[3])
local ttl_ms = math.ceil(ttl_s * 1000)
if ttl_ms > 0 then
  for _, key in ipairs({WORKERS, WORKER_UNTIL}) do
    if redis.call('PTTL', key) < ttl_ms then redis.call('PEXPIRE', key, ttl_ms) end
  end
end
return 1
