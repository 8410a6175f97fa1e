-- Store jobs. ARGV[3] = count, then 15 values per job (see redis.py, enqueue_args).
-- Returns {now, then per job '' (stored as given), its run_at (a fair job given its turn)
-- or the record holding its unique key}.
local n = tonumber(ARGV[3])
local STRIDE = 15
local any_fair = false
-- Claim every id in the directory first (a script that fails halfway is not rolled back,
-- so a duplicate takes back the entries made before it).
for i = 0, n - 1 do
  local b = 4 + i * STRIDE
  if redis.call('HSETNX', DIR, ARGV[b], ARGV[b + 2]) == 0 then
    for k = 0, i - 1 do redis.call('HDEL', DIR, ARGV[4 + k * STRIDE]) end
    return redis.error_reply('OFFLOAD_DUPLICATE job ' .. ARGV[b] .. ' already exists')
  end
  if ARGV[b + 14] ~= '' then any_fair = true end
end
local out = {num(now)}
local woken = {}

-- Fair jobs (NewJob.fair) due now take their owner's turn as run_at:
-- turn = max(head, last + step), head being the run_at of the job a claim would take first
-- at the job's priority (or now), last the owner's previous turn in the queue's turns hash.
local heads = {} -- queue -> priority -> head, read once per batch
local lasts = {} -- queue -> owner -> the last turn taken in this batch
local function priority_head(queue, priority)
  local per_queue = heads[queue]
  if not per_queue then
    per_queue = {}
    heads[queue] = per_queue
    promote(queue, 1000) -- due scheduled jobs are ready too: let the claim order see them
  end
  local head = per_queue[priority]
  if not head then
    -- a priority's ready scores lie within 2^31 s of -priority * 2^32 (run_at 1952 to 2088)
    local mid = ready_score(priority, EPOCH)
    local first = redis.call('ZRANGEBYSCORE', qkey(queue, 'queued'), num(mid - PRIORITY_STEP / 2),
      '(' .. num(mid + PRIORITY_STEP / 2), 'LIMIT', 0, 1)
    head = first[1] and tonumber(redis.call('HGET', jkey(queue, first[1]), 'run_at')) or now
    per_queue[priority] = head
  end
  return head
end
local function take_turn(queue, priority, owner, step)
  local head = priority_head(queue, priority)
  local per_queue = lasts[queue]
  if not per_queue then per_queue = {}; lasts[queue] = per_queue end
  local last = per_queue[owner] or tonumber(redis.call('HGET', turnskey(queue), owner))
  local turn = last and math.max(head, last + step) or head
  per_queue[owner] = turn
  return turn
end
for i = 0, n - 1 do
  local b = 4 + i * STRIDE
  local id, queue, key = ARGV[b], ARGV[b + 2], opt(ARGV[b + 10])
  local held = nil
  if key then
    local holder = redis.call('HGET', UNIQUE, key)
    local hq = holder and redis.call('HGET', DIR, holder)
    if hq and holds_key(redis.call('HGET', jkey(hq, holder), 'state')) then
      held = read(hq, holder)
    end
  end
  if held then
    redis.call('HDEL', DIR, id) -- not stored: the holder stands for it
    out[#out + 1] = held
  else
    local run_at = ARGV[b + 7] ~= '' and tonumber(ARGV[b + 7]) or now + tonumber(ARGV[b + 6])
    local turned = false
    if any_fair and run_at <= now then
      if ARGV[b + 14] ~= '' then
        run_at = take_turn(queue, ARGV[b + 4], opt(ARGV[b + 12]) or '', tonumber(ARGV[b + 14]))
        turned = true
      elseif heads[queue] and heads[queue][ARGV[b + 4]] then -- a new head for later fair jobs
        heads[queue][ARGV[b + 4]] = math.min(heads[queue][ARGV[b + 4]], run_at)
      end
    end
    local state = run_at > now and 'scheduled' or 'queued'
    local j = jkey(queue, id)
    local fields = {'id', id, 'task', ARGV[b + 1], 'queue', queue, 'state', state,
      'payload', ARGV[b + 3], 'priority', ARGV[b + 4], 'attempt', '0',
      'max_attempts', ARGV[b + 5], 'delivery', '0', 'crashes', '0', 'run_at', num(run_at),
      'progress', '0', 'created_at', num(now)}
    local function add(name, value)
      if value then fields[#fields + 1] = name; fields[#fields + 1] = value end
    end
    local function given(s) if s ~= '' then return s end end
    add('lease_s', given(ARGV[b + 8]))
    add('timeout_s', given(ARGV[b + 9]))
    add('key', key)
    add('batch', opt(ARGV[b + 11]))
    add('owner', opt(ARGV[b + 12]))
    add('meta', given(ARGV[b + 13]))
    redis.call('HSET', j, unpack(fields))
    if key then redis.call('HSET', UNIQUE, key, id) end
    redis.call('ZADD', qkey(queue, 'all'), 0, id)
    if state == 'queued' then
      make_ready(queue, id, ARGV[b + 4], run_at)
    else
      redis.call('ZADD', qkey(queue, 'scheduled'), num(run_at), id)
    end
    if not woken[queue] then
      woken[queue] = true
      redis.call('SADD', QUEUES, queue)
      wake(queue) -- for a scheduled job too: sleepers re-read the next due time
    end
    out[#out + 1] = turned and num(run_at) or ''
  end
end
for queue, per_queue in pairs(lasts) do
  for owner, turn in pairs(per_queue) do redis.call('HSET', turnskey(queue), owner, num(turn)) end
end
return out
