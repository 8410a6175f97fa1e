-- Upgrading a layout 1 or 2 keyspace: add the jobs of queue ARGV[3] after id ARGV[4] ('' =
-- from the start), at most ARGV[5], to the queue's created index. Returns the last id seen,
-- or ''.
local top = ARGV[4] == '' and '-' or '(' .. ARGV[4]
local ids = redis.call('ZRANGEBYLEX', qkey(ARGV[3], 'all'), top, '+', 'LIMIT', 0, tonumber(ARGV[5]))
for _, id in ipairs(ids) do
  local v = fields(ARGV[3], id, 'created_at') -- nil: a key that holds no hash, at no time
  local created = v and finite(v[1], nil)
  if created then redis.call('ZADD', qkey(ARGV[3], 'created'), num(created), id) end
end
if #ids < tonumber(ARGV[5]) then return '' end
return ids[#ids]
