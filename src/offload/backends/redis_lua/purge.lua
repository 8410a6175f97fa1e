-- Delete every job in the states ARGV[5..] (of queue ARGV[3], or '' for all), at most
-- ARGV[4] per call so that a huge purge never blocks the server for long.
local budget = tonumber(ARGV[4])
local queues = ARGV[3] ~= '' and {ARGV[3]} or redis.call('SMEMBERS', QUEUES)
local deleted = 0
for _, queue in ipairs(queues) do
  for s = 5, #ARGV do
    local state = ARGV[s]
    if deleted >= budget then return deleted end
    local ids = redis.call('ZRANGE', qkey(queue, INDEX[state]), 0, budget - deleted - 1)
    for _, id in ipairs(ids) do forget(queue, id, state) end
    deleted = deleted + #ids
  end
end
return deleted
