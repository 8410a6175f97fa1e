-- Jobs matching a filter, newest first (ids are time-ordered). ARGV[3] names the source:
--   'q' the ids of queue ARGV[4] below cursor ARGV[5] ('' = top), down to ARGV[8] ('' = all)
--   'b' the ids of batch ARGV[4] (its own index), below the cursor, down to ARGV[8]
--   'o' and 't' likewise the ids of owner or task ARGV[4] (their own indexes)
--   'i' the ids ARGV[18..] of queue ARGV[4], in the order given (redis_query sorts them)
--   'r' the ids ranked ARGV[5] to ARGV[8] in queue ARGV[4]'s index ARGV[18] (a count's walk)
-- looking at most ARGV[7] ids and stopping at ARGV[6] matches (0: count them all instead).
-- The filter: states ARGV[9] (comma-separated, '' = any); task, owner, queue, batch and
-- text ARGV[10..14] (optional strings); created_after and created_before ARGV[15..16]
-- ('' = none). Text is a substring of the id, task, owner or payload, case-insensitive
-- for ASCII letters (Lua's string.lower), taken literally (string.find's plain mode);
-- never the payload of the tasks in the JSON list ARGV[17] ('' = none): they keep secrets.
-- A source ending in '>' walks its index oldest first instead, from the floor up and above
-- the cursor.
-- Returns {the last id looked at or '' (nothing further), matches, their records...}; for
-- 'r' the next rank to look at, not an id.
local source, name, cursor = string.sub(ARGV[3], 1, 1), ARGV[4], ARGV[5]
local upwards = string.sub(ARGV[3], 2) == '>'
local want, budget, floor = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]
local states = nil
if ARGV[9] ~= '' then
  states = {}
  for s in string.gmatch(ARGV[9], '[^,]+') do states[s] = true end
end
local task, owner, only, batch = opt(ARGV[10]), opt(ARGV[11]), opt(ARGV[12]), opt(ARGV[13])
local text = opt(ARGV[14])
if text then text = string.lower(text) end
local after, before = tonumber(ARGV[15]), tonumber(ARGV[16])
local skips = {}
if ARGV[17] ~= '' then
  for _, t in ipairs(cjson.decode(ARGV[17])) do skips[t] = true end
end
local wanted = {'state', 'task', 'owner', 'batch', 'created_at'}
if text then wanted[#wanted + 1] = 'payload' end

local function mentions(value)
  return value and string.find(string.lower(value), text, 1, true) ~= nil
end
local function matches(queue, id)
  if only and queue ~= only then return false end
  -- a key that holds no hash: a dead job of no task, owner or time (in its batch still)
  local v = fields(queue, id, unpack(wanted))
    or {'dead', source == 't' and name, source == 'o' and name, source == 'b' and name}
  if (states and not states[v[1]]) or (task and v[2] ~= task) or (owner and v[3] ~= owner)
      or (batch and v[4] ~= batch) then
    return false
  end
  if after or before then
    local created = finite(v[5], nil)
    if not created or (after and created < after) or (before and created >= before) then
      return false
    end
  end
  return not text or mentions(id) or mentions(v[2]) or mentions(v[3])
    or (not skips[v[2]] and mentions(v[6]))
end

local out = {'', 0}
local function look(queue, id)
  out[1] = id
  if matches(queue, id) then
    out[2] = out[2] + 1
    if want > 0 then out[#out + 1] = read(queue, id) end
  end
  return want > 0 and out[2] >= want
end

if source == 'i' then
  for k = 18, #ARGV do
    if look(name, ARGV[k]) then return out end
  end
  out[1] = ''
  return out
elseif source == 'r' then
  local first, last = tonumber(cursor), tonumber(floor)
  local stop = math.min(last, first + budget - 1)
  local ids = redis.call('ZRANGE', qkey(name, ARGV[18]), first, stop)
  for _, id in ipairs(ids) do
    if look(name, id) then return out end
  end
  out[1] = (stop < last and #ids == stop - first + 1) and tostring(stop + 1) or ''
  return out
end
local index = ({b = batchkey, o = ownerkey, t = taskkey})[source]
index = index and index(name) or qkey(name, 'all')
local ids
if upwards then
  local low = cursor ~= '' and '(' .. cursor or (floor == '' and '-' or '[' .. floor)
  ids = redis.call('ZRANGEBYLEX', index, low, '+', 'LIMIT', 0, budget)
else
  local top = cursor == '' and '+' or '(' .. cursor
  local bottom = floor == '' and '-' or '[' .. floor
  ids = redis.call('ZREVRANGEBYLEX', index, top, bottom, 'LIMIT', 0, budget)
end
for _, id in ipairs(ids) do
  local queue = source ~= 'q' and redis.call('HGET', DIR, id) or name
  if queue and look(queue, id) then return out end
  out[1] = id
end
if #ids < budget then out[1] = '' end -- nothing further down
return out
