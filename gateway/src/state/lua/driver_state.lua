-- KEYS: driver hash, presence set, node leases. Returns {seen, connected, fields...}.
if redis.call('EXISTS', KEYS[1]) == 0 and redis.call('EXISTS', KEYS[2]) == 0 then return {0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local connected = 0
for _, node in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local lease = redis.call('ZSCORE', KEYS[3], node)
  if lease and tonumber(lease) > now then connected = 1 break end
end
local h = redis.call('HMGET', KEYS[1], 'status', 'lat', 'lng', 'heading', 'speed', 'accuracy',
  'recordedAt', 'at', 'activeTripId')
for i = 1, 9 do h[i] = h[i] or '' end
return {1, connected, h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]}
