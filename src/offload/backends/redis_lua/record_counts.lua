-- A source's per-minute rows, each replacing its earlier one: ARGV[3] = their lifetime in
-- seconds, then per row its minute, queue, task, source and MinuteCounts JSON. A row is
-- kept as '[until, JSON]' (until on the store's clock: read_counts.lua leaves it out
-- after); its minute's hash and the minutes' index live at least as long on the server's.
local ttl_s = tonumber(ARGV[3])
local ms = ttl_s * 1000
local touched = {}
for i = 4, #ARGV, 5 do
  local minute = ARGV[i]
  local key = countkey(minute)
  local field = cjson.encode({ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]})
  if ttl_s > 0 then
    redis.call('HSET', key, field, '[' .. num(now + ttl_s) .. ',' .. ARGV[i + 4] .. ']')
    if not touched[minute] then
      touched[minute] = true
      redis.call('ZADD', COUNT_MINUTES, minute, minute)
      keep_for(key, ms)
    end
  else -- born expired: it only takes the earlier row away
    redis.call('HDEL', key, field)
  end
end
if next(touched) then keep_for(COUNT_MINUTES, ms) end
return 1
