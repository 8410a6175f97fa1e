-- Hand back what the pipelined claim with token ARGV[3] took, if it ran: its waiter was
-- cancelled or timed out before reading the reply, so the worker never started those jobs.
-- Each goes back to queued with its attempt given back and no crash charged; the token is
-- then marked abandoned, so that a claim still queued behind a BLPOP takes nothing.
-- Returns how many jobs were handed back.
local token = claimkey(ARGV[3])
local taken = redis.call('HGETALL', token)
local back = 0
for i = 1, #taken, 2 do
  local id, delivery = taken[i], taken[i + 1]
  if id ~= '!' then
    local queue = redis.call('HGET', DIR, id)
    local j = queue and jkey(queue, id)
    local v = queue and redis.call('HMGET', j, 'state', 'delivery', 'priority', 'run_at', 'attempt',
      'task', 'owner', 'batch', 'progress')
    if v and v[1] == 'running' and v[2] == delivery then
      local attempt = math.max(finite(v[5], 1) - 1, 0)
      redis.call('ZREM', qkey(queue, 'running'), id)
      redis.call('HSET', j, 'state', 'queued', 'attempt', tostring(attempt))
      redis.call('HDEL', j, 'worker', 'lease_until', 'started_at')
      make_ready(queue, id, v[3], v[4])
      wake(queue)
      -- subscribers saw it start: they see it back in its queue (it never ran: no attempt)
      event('requeued', id, queue, 'queued', v[6], v[7], v[8], attempt, v[9], nil, nil)
      back = back + 1
    end
  end
end
redis.call('DEL', token)
redis.call('HSET', token, '!', '1')
redis.call('PEXPIRE', token, CLAIM_NOTE_MS)
publish_events()
return back
