-- One queue's jobs, newest first (ids are time-ordered), below cursor ARGV[4] ('' = top),
-- matching the filter: states ARGV[7] (comma-separated, '' = any), task, owner and batch
-- ARGV[8..10] (optional strings). Looks at most ARGV[6] ids and stops at ARGV[5] matches.
-- Returns {last id looked at or '', records...}.
local queue, cursor, want, budget = ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local states = nil
if ARGV[7] ~= '' then
  states = {}
  for s in string.gmatch(ARGV[7], '[^,]+') do states[s] = true end
end
local task, owner, batch = opt(ARGV[8]), opt(ARGV[9]), opt(ARGV[10])
local top = cursor == '' and '+' or '(' .. cursor
local ids = redis.call('ZREVRANGEBYLEX', qkey(queue, 'all'), top, '-', 'LIMIT', 0, budget)
local out = {''}
for _, id in ipairs(ids) do
  out[1] = id
  local v = fields(queue, id, 'state', 'task', 'owner', 'batch') or {'dead'} -- no hash: dead
  if (states == nil or states[v[1]]) and (task == nil or v[2] == task)
      and (owner == nil or v[3] == owner) and (batch == nil or v[4] == batch) then
    out[#out + 1] = read(queue, id)
    if #out - 1 >= want then return out end
  end
end
if #ids < budget then out[1] = '' end -- nothing further down
return out
