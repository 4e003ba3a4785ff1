-- KEYS: driver hashes of one shard. Returns 4 values per driver: status, lat, lng, at.
local out = {}
for _, key in ipairs(KEYS) do
  local h = redis.call('HMGET', key, 'status', 'lat', 'lng', 'at')
  for i = 1, 4 do out[#out + 1] = h[i] or '' end
end
return out
