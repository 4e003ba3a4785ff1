-- Position reports of drivers of one shard (one slot), applied in order in one call.
-- KEYS: per report, the driver hash, its rate window and its shard's geo index part.
-- ARGV: rate/s, max indexable |lat|, then per report 8 values: driverId, lat, lng, heading,
--       speed, accuracy, recordedAt, at. Absent optional values are ''.
-- Returns 3 values per report: 1 stored / 0 rate-limited, activeTripId, activePassengerId.
local second = redis.call('TIME')[1]
local rate, max_lat = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
for i = 0, #KEYS / 3 - 1 do
  local driver_key, rate_key, geo_key = KEYS[1 + 3 * i], KEYS[2 + 3 * i], KEYS[3 + 3 * i]
  local a = 2 + 8 * i
  local driver, lat, lng, heading, speed, accuracy, recorded_at, at =
    ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5], ARGV[a + 6], ARGV[a + 7], ARGV[a + 8]
  local n = 1
  if redis.call('HGET', rate_key, 'w') == second then
    n = redis.call('HINCRBY', rate_key, 'n', 1)
  else
    redis.call('HSET', rate_key, 'w', second, 'n', 1)
  end
  redis.call('PEXPIRE', rate_key, 2000)
  if n > rate then
    out[#out + 1] = 0
    out[#out + 1] = ''
    out[#out + 1] = ''
  else
    redis.call('HSET', driver_key, 'lat', lat, 'lng', lng, 'heading', heading, 'speed', speed,
      'accuracy', accuracy, 'recordedAt', recorded_at, 'at', at)
    redis.call('HSETNX', driver_key, 'status', 'OFFLINE')
    local st = redis.call('HMGET', driver_key, 'status', 'activeTripId', 'activePassengerId')
    if st[1] == 'ONLINE' and math.abs(tonumber(lat)) <= max_lat then
      redis.call('GEOADD', geo_key, lng, lat, driver)
    end
    out[#out + 1] = 1
    out[#out + 1] = st[2] or ''
    out[#out + 1] = st[3] or ''
  end
end
return out
