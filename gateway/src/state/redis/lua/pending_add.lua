-- Drivers no replica holds start their grace.
-- KEYS: pending offline. ARGV: grace (ms), start ('' = now, Redis clock), 'NX' to keep an
-- earlier deadline ('' to move it), then the drivers.
local start = tonumber(ARGV[2])
if not start then
  local t = redis.call('TIME')
  start = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local deadline = start + tonumber(ARGV[1])
for i = 4, #ARGV do
  if ARGV[3] == 'NX' then
    redis.call('ZADD', KEYS[1], 'NX', deadline, ARGV[i])
  else
    redis.call('ZADD', KEYS[1], deadline, ARGV[i])
  end
end
return #ARGV - 3
