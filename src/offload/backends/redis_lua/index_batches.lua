-- Upgrading a layout 1 keyspace: add the jobs of queue ARGV[3] after id ARGV[4] ('' = from
-- the start), at most ARGV[5], to their batch's index. Returns the last id seen, or ''.
local top = ARGV[4] == '' and '-' or '(' .. ARGV[4]
local ids = redis.call('ZRANGEBYLEX', qkey(ARGV[3], 'all'), top, '+', 'LIMIT', 0, tonumber(ARGV[5]))
for _, id in ipairs(ids) do
  local v = fields(ARGV[3], id, 'batch') -- nil: a key that holds no hash, in no batch
  local batch = v and v[1]
  if batch then redis.call('ZADD', batchkey(batch), 0, id) end
end
if #ids < tonumber(ARGV[5]) then return '' end
return ids[#ids]
