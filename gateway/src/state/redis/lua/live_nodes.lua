-- KEYS: node leases, stats. Returns the stats JSON of every live replica.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for _, node in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')) do
  local stats = redis.call('HGET', KEYS[2], node)
  if stats then out[#out + 1] = stats end
end
return out
