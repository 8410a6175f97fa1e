-- Delete the fair turns of queue ARGV[3] taken before ARGV[5] (a turn that old never
-- delays anyone: a new turn is at least the head of the ready jobs, or now), looking at
-- about 1000 owners from HSCAN cursor ARGV[4]. Returns the next cursor ('0' when done).
local turns = turnskey(ARGV[3])
local before = tonumber(ARGV[5])
local page = redis.call('HSCAN', turns, ARGV[4], 'COUNT', 1000)
local old = {}
for i = 1, #page[2], 2 do
  if (tonumber(page[2][i + 1]) or 0) < before then old[#old + 1] = page[2][i] end
end
if #old > 0 then redis.call('HDEL', turns, unpack(old)) end
return page[1]
