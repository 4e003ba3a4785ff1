-- KEYS: driver hash, geo index, locations stream, rate window.
-- ARGV: driverId, rate/s, lat, lng, heading, speed, accuracy, recordedAt, at, stream maxlen,
--       max indexable |lat|. Absent optional values are ''.
local second = redis.call('TIME')[1]
local n = 1
if redis.call('HGET', KEYS[4], 'w') == second then
  n = redis.call('HINCRBY', KEYS[4], 'n', 1)
else
  redis.call('HSET', KEYS[4], 'w', second, 'n', 1)
end
redis.call('PEXPIRE', KEYS[4], 2000)
if n > tonumber(ARGV[2]) then return {0} end
redis.call('HSET', KEYS[1], 'lat', ARGV[3], 'lng', ARGV[4], 'heading', ARGV[5], 'speed', ARGV[6],
  'accuracy', ARGV[7], 'recordedAt', ARGV[8], 'at', ARGV[9])
redis.call('HSETNX', KEYS[1], 'status', 'OFFLINE')
local st = redis.call('HMGET', KEYS[1], 'status', 'activeTripId', 'activePassengerId')
if st[1] == 'ONLINE' and math.abs(tonumber(ARGV[3])) <= tonumber(ARGV[11]) then
  redis.call('GEOADD', KEYS[2], ARGV[4], ARGV[3], ARGV[1])
end
if tonumber(ARGV[10]) > 0 then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[10], '*', 'driverId', ARGV[1], 'lat', ARGV[3],
    'lng', ARGV[4], 'heading', ARGV[5], 'speed', ARGV[6], 'recordedAt', ARGV[8], 'at', ARGV[9])
end
return {1, st[2] or '', st[3] or ''}
