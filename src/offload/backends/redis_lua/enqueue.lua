-- Store jobs. ARGV[3] = count, then 16 values per job (see redis_codec.job_args), then the
-- batch to open with them ('' or 's' .. its id), its callback ('' or a job blob) and the
-- callback's id ('' or 's' .. it). Returns {now, then per job '' (stored as given), its
-- run_at (a fair job given its turn) or the record holding its unique key}. Pushes
-- ENQUEUED for each job stored, and adds them to this minute's enqueued counts.
local n = tonumber(ARGV[3])
local STRIDE = JOB_ITEMS
local after = 4 + n * STRIDE
local opened, callback, callback_id = opt(ARGV[after]), ARGV[after + 1], opt(ARGV[after + 2])
local members = 0
local tally = {} -- queue -> task -> jobs stored
local any_fair = false
-- Check every job, then claim every id in the directory, before any other write: a script
-- that fails halfway is not rolled back, so a duplicate takes back the entries made before it.
for i = 0, n - 1 do
  local problem = check_job(ARGV, 4 + i * STRIDE)
  if problem then return redis.error_reply('OFFLOAD_REJECTED ' .. problem) end
end
for i = 0, n - 1 do
  local b = 4 + i * STRIDE
  if redis.call('HSETNX', DIR, ARGV[b], ARGV[b + 2]) == 0 then
    for k = 0, i - 1 do redis.call('HDEL', DIR, ARGV[4 + k * STRIDE]) end
    return redis.error_reply('OFFLOAD_DUPLICATE job ' .. ARGV[b] .. ' already exists')
  end
  if ARGV[b + 14] ~= '' then any_fair = true end
end
local out = {NOW}
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
    local v = first[1] and fields(queue, first[1], 'run_at')
    head = v and tonumber(v[1]) or now
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
    if hq and holds_key(state_of(hq, holder)) then
      held = read(hq, holder)
    end
  end
  if held then
    redis.call('HDEL', DIR, id) -- not stored: the holder stands for it
    out[#out + 1] = held
  else
    local run_at = job_run_at(ARGV, b)
    local turned = false
    if any_fair and run_at <= now then
      if ARGV[b + 14] ~= '' then
        run_at = take_turn(queue, ARGV[b + 4], opt(ARGV[b + 12]) or '', tonumber(ARGV[b + 14]))
        turned = true
      elseif heads[queue] and heads[queue][ARGV[b + 4]] then -- a new head for later fair jobs
        heads[queue][ARGV[b + 4]] = math.min(heads[queue][ARGV[b + 4]], run_at)
      end
    end
    put_job(ARGV, b, run_at, key, woken)
    out[#out + 1] = turned and num(run_at) or ''
    if opened and opt(ARGV[b + 11]) == opened then members = members + 1 end
    local tasks = tally[queue]
    if not tasks then tasks = {}; tally[queue] = tasks end
    tasks[ARGV[b + 1]] = (tasks[ARGV[b + 1]] or 0) + 1
  end
end
for queue, per_queue in pairs(lasts) do
  for owner, turn in pairs(per_queue) do redis.call('HSET', turnskey(queue), owner, num(turn)) end
end
if opened then -- the batch, counting down from the members stored (see endings.lua)
  local rec = batchrec(opened)
  redis.call('DEL', rec)
  local fields = {'total', tostring(members), 'remaining', tostring(members), 'created_at', NOW}
  if callback ~= '' then
    for _, x in ipairs({'callback', callback, 'callback_id', callback_id}) do
      fields[#fields + 1] = x
    end
  end
  redis.call('HSET', rec, unpack(fields))
  redis.call('ZADD', BATCHES, 0, opened)
  redis.call('ZADD', OPEN_BATCHES, 0, opened)
  redis.call('ZREM', DONE_BATCHES, opened)
end
-- This minute's enqueued counts, one HINCRBY per queue and task; a row lives until
-- ENQUEUE_COUNTS_TTL after its minute ends (on the store's clock, as read_counts.lua reads it).
if next(tally) then
  local minute = math.floor(now / 60)
  local counts = countkey(string.format('%d', minute))
  local ms = ((minute + 1) * 60 + ENQUEUE_COUNTS_TTL - now) * 1000
  local left = redis.call('PTTL', counts)
  for queue, tasks in pairs(tally) do
    for task, stored in pairs(tasks) do
      local ok = REDIS.pcall('HINCRBY', counts, cjson.encode({queue, task}), stored)
      if type(ok) ~= 'number' then -- a value written by hand: the count is lost, not the jobs
        redis.log(redis.LOG_WARNING, 'offload: ' .. counts .. ' holds a count that is no integer')
      end
    end
  end
  if left < ms then -- the minute's first count (or a worker's shorter-lived row): index it
    redis.call('ZADD', COUNT_MINUTES, minute, minute)
    keep_for(counts, ms)
    keep_for(COUNT_MINUTES, ms)
  end
end
publish_events()
return out
