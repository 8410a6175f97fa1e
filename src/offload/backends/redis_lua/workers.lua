-- The registry's live workers (expiring after now on the store's clock): their entries,
-- '[last_seen, WorkerInfo JSON]' each.
local live = redis.call('ZRANGEBYSCORE', WORKER_UNTIL, '(' .. NOW, '+inf')
if #live == 0 then return {} end
return redis.call('HMGET', WORKERS, unpack(live))
