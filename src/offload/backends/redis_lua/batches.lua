-- Batch records: of the ids ARGV[5..] (any that exist, in the order asked), or else the
-- newest first by id; only those not completed if ARGV[3] is '1'; at most ARGV[4]. Each is
-- {id, total, remaining, created_at, completed_at or false, callback_id or false}.
local open_only, limit = ARGV[3] == '1', tonumber(ARGV[4])
local ids = {}
if #ARGV >= 5 then
  for i = 5, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  ids = redis.call('ZREVRANGEBYLEX', open_only and OPEN_BATCHES or BATCHES, '+', '-',
    'LIMIT', 0, limit)
end
local out = {}
for _, id in ipairs(ids) do
  if #out >= limit then break end
  local v = REDIS.pcall('HMGET', batchrec(id), 'total', 'remaining', 'created_at',
    'completed_at', 'callback_id')
  if not v.err and v[1] and not (open_only and v[4]) then
    out[#out + 1] = {id, v[1], v[2], v[3], v[4], v[5]}
  end
end
return out
