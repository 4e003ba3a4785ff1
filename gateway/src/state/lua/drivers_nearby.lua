-- KEYS: geo index. ARGV: lng, lat, radius (m), limit, driver hash key prefix.
-- Returns flat rows {id, distance, lat, lng, at} of ONLINE drivers, nearest first.
local found = redis.call('GEOSEARCH', KEYS[1], 'FROMLONLAT', ARGV[1], ARGV[2], 'BYRADIUS',
  ARGV[3], 'm', 'ASC', 'COUNT', ARGV[4], 'WITHDIST')
local out = {}
for _, row in ipairs(found) do
  local h = redis.call('HMGET', ARGV[5] .. row[1], 'status', 'lat', 'lng', 'at')
  if h[1] == 'ONLINE' and h[2] and h[3] then
    table.insert(out, row[1]); table.insert(out, row[2]); table.insert(out, h[2])
    table.insert(out, h[3]); table.insert(out, h[4] or '')
  end
end
return out
