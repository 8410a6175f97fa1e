-- The live rows of the minutes ARGV[3] to ARGV[4] (of queue ARGV[5] and task ARGV[6] when
-- not ''), as {minute, field, value} each (record_counts.lua and enqueue.lua write them);
-- a row past its lifetime on the store's clock is left out.
local queue, task = opt(ARGV[5]), opt(ARGV[6])
local out = {}
for _, minute in ipairs(redis.call('ZRANGEBYSCORE', COUNT_MINUTES, ARGV[3], ARGV[4])) do
  local rows = REDIS.pcall('HGETALL', countkey(minute))
  if rows.err then rows = {} end -- a key written by hand: no counts
  local enqueued_until = (tonumber(minute) + 1) * 60 + ENQUEUE_COUNTS_TTL
  for i = 1, #rows, 2 do
    local field, value = rows[i], rows[i + 1]
    local ok, names = pcall(cjson.decode, field)
    if ok and type(names) == 'table' and (not queue or names[1] == queue) and
        (not task or names[2] == task) then
      local expires = #names == 2 and enqueued_until or
        tonumber(string.match(value, '^%[([^,]+),') or '')
      if not expires or expires > now then
        out[#out + 1] = {minute, field, value}
      end
    end
  end
end
return out
