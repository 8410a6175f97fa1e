-- New jobs, and what a job's end sets off: prepended (after prelude.lua) to the scripts
-- that store jobs or end them (redis_plans.ENDING_SCRIPTS).

-- One new job's values start at a[b] (a: ARGV, or a follow-up's items; see
-- redis_codec.job_args): id, task, queue, payload, priority, max_attempts, delay_s, run_at,
-- lease_s, timeout_s, key, batch, owner, meta, fair step, follow-ups. The first problem
-- found, or nil: checked before a script's first write (its key holding a string, say,
-- left by another tool where the job's hash would go).
local JOB_NUMBERS = {[4] = 'priority', [5] = 'max_attempts', [6] = 'delay_s', [7] = 'run_at',
  [8] = 'lease_s', [9] = 'timeout_s'}
local function check_job(a, b)
  for k, name in pairs(JOB_NUMBERS) do
    local s = a[b + k]
    if not (s == '' and k >= 7) and not finite(s, nil) then
      return 'job ' .. tostring(a[b]) .. ': ' .. name .. ' is ' .. tostring(s) ..
        ', not a finite number'
    end
  end
  if (a[b] or '') == '' or (a[b + 2] or '') == '' then
    return 'job ' .. tostring(a[b]) .. ': no id or queue'
  end
  local t = redis.call('TYPE', jkey(a[b + 2], a[b])).ok
  if t ~= 'none' and t ~= 'hash' and redis.call('HEXISTS', DIR, a[b]) == 0 then
    return 'job ' .. a[b] .. ': ' .. damage(a[b + 2], a[b]) .. ' (delete it to use the id)'
  end
  return nil
end

local function job_run_at(a, b)
  if a[b + 7] ~= '' then return tonumber(a[b + 7]) end
  return now + tonumber(a[b + 6])
end

-- Write the checked new job at a[b] (its id already in DIR) to run at run_at; woken
-- lists the queues already woken by this script.
local function put_job(a, b, run_at, key, woken)
  local id, queue, priority = a[b], a[b + 2], a[b + 4]
  local state = run_at > now and 'scheduled' or 'queued'
  local fields = {'id', id, 'task', a[b + 1], 'queue', queue, 'state', state,
    'payload', a[b + 3], 'priority', priority, 'attempt', '0',
    'max_attempts', a[b + 5], 'delivery', '0', 'crashes', '0', 'run_at', num(run_at),
    'progress', '0', 'created_at', NOW}
  local function add(name, value)
    if value and value ~= '' then fields[#fields + 1] = name; fields[#fields + 1] = value end
  end
  local batch = opt(a[b + 11])
  add('lease_s', a[b + 8])
  add('timeout_s', a[b + 9])
  add('key', key)
  add('batch', batch)
  add('owner', opt(a[b + 12]))
  add('meta', a[b + 13])
  add('follow_ups', a[b + 15])
  redis.call('HSET', jkey(queue, id), unpack(fields))
  if key then redis.call('HSET', UNIQUE, key, id) end
  if batch then redis.call('ZADD', batchkey(batch), 0, id) end
  local owner = opt(a[b + 12])
  if owner then redis.call('ZADD', ownerkey(owner), 0, id) end
  redis.call('ZADD', taskkey(a[b + 1]), 0, id)
  redis.call('ZADD', qkey(queue, 'all'), 0, id)
  redis.call('ZADD', qkey(queue, 'created'), NOW, id)
  if state == 'queued' then
    make_ready(queue, id, priority, run_at)
  else
    redis.call('ZADD', qkey(queue, 'scheduled'), num(run_at), id)
  end
  if not woken[queue] then
    woken[queue] = true
    redis.call('SADD', QUEUES, queue)
    wake(queue) -- for a scheduled job too: sleepers re-read the next due time
  end
  event('enqueued', id, queue, state, a[b + 1], opt(a[b + 12]), batch, 0, 0, nil, nil)
end

-- Store the checked job at a[b] unless its id is stored already, or a live job holds its
-- unique key (that one stands for it). Returns whether it was stored.
local function insert_job(a, b, woken)
  if redis.call('HSETNX', DIR, a[b], a[b + 2]) == 0 then return false end
  local key = opt(a[b + 10])
  if key then
    local holder = redis.call('HGET', UNIQUE, key)
    local hq = holder and redis.call('HGET', DIR, holder)
    if hq and holds_key(state_of(hq, holder)) then
      redis.call('HDEL', DIR, a[b])
      return false
    end
  end
  put_job(a, b, job_run_at(a, b), key, woken)
  return true
end

-- A blob of items, each '<length>:<bytes>' (redis_codec.items): a table of strings, or
-- nil if it does not parse (written by hand or by another version).
local function items(s)
  local out, pos = {}, 1
  while pos <= #s do
    local colon = string.find(s, ':', pos, true)
    local n = colon and string.match(string.sub(s, pos, colon - 1), '^%d+$') and
      tonumber(string.sub(s, pos, colon - 1))
    if not n or colon + n > #s then return nil end
    out[#out + 1] = string.sub(s, colon + 1, colon + n)
    pos = colon + n + 1
  end
  return out
end
local JOB_ITEMS = 16

-- Store the job a blob holds at a[b] (checked first: a bad one is skipped, and logged).
local function insert_checked(a, b, what, woken)
  local problem = check_job(a, b)
  if problem then
    redis.log(redis.LOG_WARNING, 'offload: ' .. what .. ' not stored: ' .. problem)
    return
  end
  insert_job(a, b, woken)
end

-- The follow-ups of job id (its 'follow_ups' field) whose states hold its final state:
-- groups of its states ('dead,cancelled'), then JOB_ITEMS values of the job.
local function insert_follow_ups(id, state, blob, woken)
  local a = items(blob)
  if not a or #a % (JOB_ITEMS + 1) ~= 0 then
    redis.log(redis.LOG_WARNING, 'offload: job ' .. id .. ': its follow-ups do not decode; ' ..
      'none is stored')
    return
  end
  for g = 1, #a, JOB_ITEMS + 1 do
    if string.find(',' .. a[g] .. ',', ',' .. state .. ',', 1, true) then
      insert_checked(a, g + 1, 'a follow-up of job ' .. id, woken)
    end
  end
end

-- BATCH_PROGRESS of a batch record, as memory_endings.progress_event.
local function batch_event(batch, total, remaining)
  local done = total - remaining
  local message = string.format('%d of %d done', done, total)
  event('batch_progress', '', '', nil, '', nil, batch, 0, total > 0 and done / total or 1,
    message, nil)
end

-- A member of batch ended: its record counts it down; the last end completes it and
-- returns its callback (a job blob) to store. Nothing for a batch with no record (its
-- jobs were enqueued without opening it) or completed already.
local function count_down(batch)
  local rec = batchrec(batch)
  local v = REDIS.pcall('HMGET', rec, 'total', 'remaining', 'completed_at')
  if v.err or not v[1] or v[3] then return nil end
  local total, remaining = finite(v[1], 0), finite(v[2], 0) - 1
  local callback = nil
  if remaining <= 0 then
    callback = redis.call('HGET', rec, 'callback')
    redis.call('HSET', rec, 'remaining', tostring(remaining), 'completed_at', NOW)
    redis.call('HDEL', rec, 'callback')
    redis.call('ZREM', OPEN_BATCHES, batch)
    redis.call('ZADD', DONE_BATCHES, NOW, batch)
  else
    redis.call('HSET', rec, 'remaining', tostring(remaining))
  end
  batch_event(batch, total, remaining)
  return callback
end

-- A person queued a final member again: its batch, not completed, waits for it once more.
local function reopen(batch)
  local rec = batchrec(batch)
  local v = REDIS.pcall('HMGET', rec, 'total', 'remaining', 'completed_at')
  if v.err or not v[1] or v[3] then return end
  redis.call('HSET', rec, 'remaining', tostring(finite(v[2], 0) + 1))
end

-- Job id just reached state (any path: its worker, the reaper, a person's cancel, a delete
-- of a job that never ended): in this same step, its batch counts it down, then its
-- follow-ups for that state are stored, then its batch's callback if this was the last
-- end, each pushing ENQUEUED (memory_endings.Endings.ended). batch, blob: its fields.
local function ended(id, state, batch, blob, woken)
  local callback = batch and count_down(batch)
  if blob then insert_follow_ups(id, state, blob, woken) end
  if callback then
    local a = items(callback)
    if a and #a == JOB_ITEMS then
      insert_checked(a, 1, 'the callback of batch ' .. batch, woken)
    else
      redis.log(redis.LOG_WARNING, 'offload: batch ' .. batch .. ': its callback does not ' ..
        'decode; not stored')
    end
  end
end
