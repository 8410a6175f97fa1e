-- Delete the batches completed before ARGV[3], at most ARGV[4] per call, records and index
-- entries alike. Returns how many were deleted.
local done = redis.call('ZRANGEBYSCORE', DONE_BATCHES, '-inf', '(' .. ARGV[3],
  'LIMIT', 0, tonumber(ARGV[4]))
for _, id in ipairs(done) do redis.call('DEL', batchrec(id)) end
if #done > 0 then
  redis.call('ZREM', DONE_BATCHES, unpack(done))
  redis.call('ZREM', BATCHES, unpack(done))
end
return #done
