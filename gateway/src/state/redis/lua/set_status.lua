-- KEYS: driver hash, geo index. ARGV: driverId, status, at, max indexable |lat|.
local prev = redis.call('HGET', KEYS[1], 'status')
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'statusAt', ARGV[3])
if ARGV[2] == 'ONLINE' then
  local pos = redis.call('HMGET', KEYS[1], 'lat', 'lng')
  if pos[1] and pos[2] and math.abs(tonumber(pos[1])) <= tonumber(ARGV[4]) then
    redis.call('GEOADD', KEYS[2], pos[2], pos[1], ARGV[1])
  end
else
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return prev or false
