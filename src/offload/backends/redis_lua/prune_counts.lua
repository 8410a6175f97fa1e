-- Delete the counts of minutes before ARGV[3] ('' for none), then forget the oldest minutes
-- whose hash has expired on the server's clock; at most ARGV[4] per call. Returns how many
-- minutes left the index.
local budget = tonumber(ARGV[4])
local gone = {}
if ARGV[3] ~= '' then
  gone = redis.call('ZRANGEBYSCORE', COUNT_MINUTES, '-inf', '(' .. ARGV[3], 'LIMIT', 0, budget)
  for _, minute in ipairs(gone) do redis.call('DEL', countkey(minute)) end
end
if #gone < budget then
  for _, minute in ipairs(redis.call('ZRANGE', COUNT_MINUTES, #gone, budget - 1)) do
    if redis.call('EXISTS', countkey(minute)) == 1 then break end
    gone[#gone + 1] = minute
  end
end
if #gone > 0 then redis.call('ZREM', COUNT_MINUTES, unpack(gone)) end
return #gone
