-- Lease up to ARGV[5] ready jobs from the queues ARGV[7..], highest priority then oldest.
-- ARGV[3] = worker, ARGV[4] = lease seconds for jobs without their own, ARGV[6] = '' or
-- the token of a claim pipelined behind a wait: the ids it takes are noted under it, and
-- a token unclaim.lua abandoned first claims nothing.
-- Returns the claimed records, then, if there were fewer than ARGV[5], {'idle', now, the
-- next scheduled due time or ''} (three fields, where a record has many). Pushes STARTED.
local worker, default_lease, limit = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local token = ARGV[6] ~= '' and claimkey(ARGV[6])
local Q0 = 7
if token and redis.call('HEXISTS', token, '!') == 1 then
  -- Abandoned: take nothing, but pass on the wake-up token the BLPOP before took.
  for q = Q0, #ARGV do
    if redis.call('ZCARD', qkey(ARGV[q], 'queued')) > 0 then wake(ARGV[q]) end
  end
  return {}
end
local picked = {} -- {queue, id}
if #ARGV == Q0 then
  local queue = ARGV[Q0]
  promote(queue, 1000)
  local popped = redis.call('ZPOPMIN', qkey(queue, 'queued'), limit)
  for i = 1, #popped, 2 do picked[#picked + 1] = {queue, popped[i]} end
else
  local candidates = {}
  for q = Q0, #ARGV do
    local queue = ARGV[q]
    promote(queue, 1000)
    local head = redis.call('ZRANGE', qkey(queue, 'queued'), 0, limit - 1, 'WITHSCORES')
    for i = 1, #head, 2 do
      candidates[#candidates + 1] = {queue, head[i], tonumber(head[i + 1])}
    end
  end
  table.sort(candidates, function(a, b)
    if a[3] ~= b[3] then return a[3] < b[3] end
    return a[2] < b[2]
  end)
  for i = 1, math.min(limit, #candidates) do
    local c = candidates[i]
    redis.call('ZREM', qkey(c[1], 'queued'), c[2])
    picked[#picked + 1] = {c[1], c[2]}
  end
end
-- Read every popped job before the first write for any: one whose key is not a hash
-- (prelude's fields) is not claimed but dead, and cannot fail the claim of the others.
local good, damaged = {}, {}
for _, p in ipairs(picked) do
  local rec, bad = read(p[1], p[2])
  if bad then damaged[#damaged + 1] = p else good[#good + 1] = {p[1], p[2], rec} end
end
for _, p in ipairs(damaged) do quarantine(p[1], p[2]) end
local out = {}
for _, p in ipairs(good) do
  local queue, id, rec = p[1], p[2], p[3]
  local lease_until = now + finite(rec[F_LEASE_S], default_lease)
  rec[F_STATE] = 'running'
  rec[F_ATTEMPT] = tostring(finite(rec[F_ATTEMPT], 0) + 1)
  rec[F_DELIVERY] = tostring(finite(rec[F_DELIVERY], 0) + 1)
  rec[F_WORKER] = worker
  rec[F_LEASE_UNTIL] = num(lease_until)
  rec[F_STARTED_AT] = NOW
  redis.call('HSET', jkey(queue, id), 'state', 'running', 'attempt', rec[F_ATTEMPT],
    'delivery', rec[F_DELIVERY], 'worker', worker, 'lease_until', rec[F_LEASE_UNTIL],
    'started_at', rec[F_STARTED_AT])
  redis.call('ZADD', qkey(queue, 'running'), rec[F_LEASE_UNTIL], id)
  if token then redis.call('HSET', token, id, rec[F_DELIVERY]) end
  event_of('started', rec)
  out[#out + 1] = rec
end
if token and #out > 0 then redis.call('PEXPIRE', token, CLAIM_NOTE_MS) end
for q = Q0, #ARGV do -- work left behind: wake another sleeper (a chain, one token at a time)
  local queue = ARGV[q]
  if redis.call('ZCARD', qkey(queue, 'queued')) > 0 then wake(queue) end
end
if #picked < limit then
  -- The queues ran dry: say when the next scheduled job falls due, so that the worker can
  -- go straight to sleep without asking again (one round trip per wake-up, not three).
  local next_at = nil
  for q = Q0, #ARGV do
    local head = redis.call('ZRANGE', qkey(ARGV[q], 'scheduled'), 0, 0, 'WITHSCORES')
    if #head > 0 and (next_at == nil or tonumber(head[2]) < next_at) then
      next_at = tonumber(head[2])
    end
  end
  out[#out + 1] = {'idle', NOW, next_at and num(next_at) or ''}
end
publish_events()
return out
