-- Queue the dead or cancelled ids ARGV[3..] again, from attempt 0, unless another live job
-- now holds their unique key. Returns the records of all that exist; each job queued again
-- pushes ENQUEUED, and its batch, if not completed, waits for it again (endings.lua).
local out = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local queue = redis.call('HGET', DIR, id)
  if queue then
    local j = jkey(queue, id)
    local v = fields(queue, id, 'state', 'key', 'priority', 'batch')
    if not v then -- a damaged key: dead, never run again
      quarantine(queue, id)
      v = {}
    end
    local state, key = v[1], v[2]
    local free = true
    if (state == 'dead' or state == 'cancelled') and key then
      local holder = redis.call('HGET', UNIQUE, key)
      local hq = holder and holder ~= id and redis.call('HGET', DIR, holder)
      free = not (hq and holds_key(state_of(hq, holder)))
    end
    local requeued = (state == 'dead' or state == 'cancelled') and free
    if requeued then
      settle_history(queue, id) -- its last attempt, told by the fields this changes
      if v[4] then reopen(v[4]) end
      unindex(queue, id, state)
      redis.call('HSET', j, 'state', 'queued', 'attempt', '0', 'crashes', '0', 'run_at', NOW)
      redis.call('HDEL', j, 'finished_at', 'worker')
      if key then redis.call('HSET', UNIQUE, key, id) end
      make_ready(queue, id, v[3], now)
      wake(queue)
    end
    local rec = read(queue, id)
    if requeued then event_of('enqueued', rec) end
    out[#out + 1] = rec
  end
end
publish_events()
return out
