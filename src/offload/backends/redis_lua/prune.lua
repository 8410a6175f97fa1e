-- Delete jobs that ended (in the states ARGV[5..]) before ARGV[3], at most ARGV[4] per call.
-- Returns how many were deleted. The batch indexes shrink with them (prelude's forget);
-- prune_turns.lua and prune_rest.lua then delete what outlives jobs: old turns, empty
-- queues, expired marks.
local before, budget = '(' .. ARGV[3], tonumber(ARGV[4])
local deleted = 0
for _, queue in ipairs(redis.call('SMEMBERS', QUEUES)) do
  for s = 5, #ARGV do
    local state = ARGV[s]
    if deleted >= budget then return deleted end
    local ids = redis.call('ZRANGEBYSCORE', qkey(queue, state), '-inf', before,
      'LIMIT', 0, budget - deleted)
    for _, id in ipairs(ids) do forget(queue, id, state) end
    deleted = deleted + #ids
  end
end
return deleted
