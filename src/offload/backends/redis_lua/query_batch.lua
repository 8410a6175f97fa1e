-- One batch's jobs from its index, newest first, below cursor ARGV[4] ('' = top), matching
-- states ARGV[7] (comma-separated, '' = any), task, owner and queue ARGV[8..10] (optional
-- strings). Looks at most ARGV[6] ids and stops at ARGV[5] matches; never scans the queues.
-- Returns {last id looked at or '', records...}.
local batch, cursor, want, budget = ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local states = nil
if ARGV[7] ~= '' then
  states = {}
  for s in string.gmatch(ARGV[7], '[^,]+') do states[s] = true end
end
local task, owner, only = opt(ARGV[8]), opt(ARGV[9]), opt(ARGV[10])
local top = cursor == '' and '+' or '(' .. cursor
local ids = redis.call('ZREVRANGEBYLEX', batchkey(batch), top, '-', 'LIMIT', 0, budget)
local out = {''}
for _, id in ipairs(ids) do
  out[1] = id
  local queue = redis.call('HGET', DIR, id)
  if queue and (only == nil or queue == only) then
    local v = fields(queue, id, 'state', 'task', 'owner', 'batch')
      or {'dead', false, false, batch} -- a key that holds no hash: dead, in its batch still
    if (states == nil or states[v[1]]) and (task == nil or v[2] == task)
        and (owner == nil or v[3] == owner) and v[4] == batch then
      out[#out + 1] = read(queue, id)
      if #out - 1 >= want then return out end
    end
  end
end
if #ids < budget then out[1] = '' end -- nothing further down
return out
