-- Drivers whose grace is over, claimed for ARGV[2] ms (a sweeper that dies leaves them to the
-- next one). KEYS: pending offline. ARGV: max, claim (ms). Returns {claim score, drivers...}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[1])
local claim = now + tonumber(ARGV[2])
local out = {tostring(claim)}
for _, driver in ipairs(due) do
  redis.call('ZADD', KEYS[1], 'XX', claim, driver)
  out[#out + 1] = driver
end
return out
