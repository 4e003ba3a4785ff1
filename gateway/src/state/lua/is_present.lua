-- KEYS: presence set of the driver, node leases. 1 when a live replica holds a socket.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local lease = redis.call('ZSCORE', KEYS[2], node)
  if lease and tonumber(lease) > now then return 1 end
end
return 0
