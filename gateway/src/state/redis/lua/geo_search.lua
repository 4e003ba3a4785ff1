-- KEYS: one shard's geo index part. ARGV: lng, lat, radius (m), limit.
-- Returns flat rows {driverId, distance}, nearest first.
local found = redis.call('GEOSEARCH', KEYS[1], 'FROMLONLAT', ARGV[1], ARGV[2], 'BYRADIUS',
  ARGV[3], 'm', 'ASC', 'COUNT', ARGV[4], 'WITHDIST')
local out = {}
for _, row in ipairs(found) do
  out[#out + 1] = row[1]
  out[#out + 1] = row[2]
end
return out
