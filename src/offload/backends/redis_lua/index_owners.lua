-- Upgrading a layout 4 or older keyspace: add the jobs of queue ARGV[3] after id ARGV[4]
-- ('' = from the start), at most ARGV[5], to their owner's and their task's index. Returns
-- the last id seen, or ''.
local top = ARGV[4] == '' and '-' or '(' .. ARGV[4]
local ids = redis.call('ZRANGEBYLEX', qkey(ARGV[3], 'all'), top, '+', 'LIMIT', 0, tonumber(ARGV[5]))
for _, id in ipairs(ids) do
  local v = fields(ARGV[3], id, 'owner', 'task') -- nil: a key that holds no hash
  if v and v[1] then redis.call('ZADD', ownerkey(v[1]), 0, id) end
  if v and v[2] then redis.call('ZADD', taskkey(v[2]), 0, id) end
end
if #ids < tonumber(ARGV[5]) then return '' end
return ids[#ids]
