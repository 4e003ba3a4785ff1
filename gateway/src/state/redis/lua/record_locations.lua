-- Position reports of drivers of one shard (one slot), applied in order in one call.
-- KEYS: per report, the driver hash, its rate window and its shard's geo index part; then,
--       optionally (a single Redis, where every key is on the one server), the stream the
--       accepted positions are appended to.
-- ARGV: rate/s, max indexable |lat|, then per report 8 values: driverId, lat, lng, heading,
--       speed, accuracy, recordedAt, at (absent optional values are ''); then, with the stream,
--       its approximate maxlen.
-- Returns 3 values per report: 1 stored / 0 rate-limited, activeTripId, activePassengerId.
local second = redis.call('TIME')[1]
local rate, max_lat = tonumber(ARGV[1]), tonumber(ARGV[2])
local reports = math.floor(#KEYS / 3)
local stream, maxlen = KEYS[3 * reports + 1], ARGV[3 + 8 * reports]
local out = {}
for i = 0, reports - 1 do
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
    if stream then
      -- As append_locations.lua does on a cluster.
      redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'driverId', driver, 'lat', lat,
        'lng', lng, 'heading', heading, 'speed', speed, 'recordedAt', recorded_at, 'at', at)
    end
    out[#out + 1] = 1
    out[#out + 1] = st[2] or ''
    out[#out + 1] = st[3] or ''
  end
end
return out
