-- The values of the marks ARGV[3..] (nil for none), once those past their lifetime are gone.
expire_marks()
local out = {}
for i = 3, #ARGV do out[#out + 1] = redis.call('HGET', MARKS, ARGV[i]) end
return out
