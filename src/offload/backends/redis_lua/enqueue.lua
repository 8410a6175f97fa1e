-- Store jobs. ARGV[3] = count, then 14 values per job (see redis.py, enqueue_args).
-- Returns {now, then per job '' (stored as given) or the record holding its unique key}.
local n = tonumber(ARGV[3])
local STRIDE = 14
for i = 0, n - 1 do -- check every id first: a script that fails halfway is not rolled back
  if redis.call('HEXISTS', DIR, ARGV[4 + i * STRIDE]) == 1 then
    return redis.error_reply('OFFLOAD_DUPLICATE job ' .. ARGV[4 + i * STRIDE] .. ' already exists')
  end
end
local out = {num(now)}
local woken = {}
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
    out[#out + 1] = held
  else
    local run_at = ARGV[b + 7] ~= '' and tonumber(ARGV[b + 7]) or now + tonumber(ARGV[b + 6])
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
    redis.call('HSET', DIR, id, queue)
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
    out[#out + 1] = ''
  end
end
return out
