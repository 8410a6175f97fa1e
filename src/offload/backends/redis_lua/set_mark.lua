-- Store ARGV[4] in the mark ARGV[3] if it holds ARGV[5] ('' = must not exist yet, else 's'
-- then the value); 1 if stored. Read and write in one script: racing leaders cannot both win.
-- ARGV[6] = '' or the mark's lifetime in seconds, on the store's clock.
expire_marks()
local current = redis.call('HGET', MARKS, ARGV[3])
local expected = ARGV[5]
if expected == '' then
  if current then return 0 end
elseif current ~= string.sub(expected, 2) then
  return 0
end
redis.call('HSET', MARKS, ARGV[3], ARGV[4])
if ARGV[6] ~= '' then
  redis.call('ZADD', MARK_UNTIL, num(now + tonumber(ARGV[6])), ARGV[3])
else
  redis.call('ZREM', MARK_UNTIL, ARGV[3])
end
return 1
