-- KEYS: driver hash, presence hash. Returns {seen, 9 fields, replicas holding a socket...}.
if redis.call('EXISTS', KEYS[1]) == 0 and redis.call('EXISTS', KEYS[2]) == 0 then return {0} end
local h = redis.call('HMGET', KEYS[1], 'status', 'lat', 'lng', 'heading', 'speed', 'accuracy',
  'recordedAt', 'at', 'activeTripId')
local out = {1}
for i = 1, 9 do out[#out + 1] = h[i] or '' end
for _, node in ipairs(redis.call('HKEYS', KEYS[2])) do out[#out + 1] = node end
return out
