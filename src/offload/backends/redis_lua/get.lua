-- Records of the ids ARGV[3..] that exist, in the order asked.
local out = {}
for i = 3, #ARGV do
  local queue = redis.call('HGET', DIR, ARGV[i])
  if queue then out[#out + 1] = read(queue, ARGV[i]) end
end
return out
