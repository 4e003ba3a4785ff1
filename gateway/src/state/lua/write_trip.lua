-- Compare-and-set of a trip (the driver bindings follow, per driver: bind_trip.lua).
-- KEYS: trip hash. ARGV: expected version ('' = must not exist), status, passengerId, driverId,
--   ttl (s).
local version = redis.call('HGET', KEYS[1], 'version')
if (ARGV[1] == '' and version) or (ARGV[1] ~= '' and version ~= ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'passengerId', ARGV[3], 'driverId', ARGV[4],
  'version', (tonumber(version) or 0) + 1)
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
