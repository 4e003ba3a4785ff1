-- Compare-and-set of a trip with the driver bindings it changes.
-- KEYS: trip hash. ARGV: expected version ('' = must not exist), status, passengerId, driverId,
--   ttl (s), driver to bind, tripId, driver hash key prefix, drivers to unbind...
local version = redis.call('HGET', KEYS[1], 'version')
if (ARGV[1] == '' and version) or (ARGV[1] ~= '' and version ~= ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'passengerId', ARGV[3], 'driverId', ARGV[4],
  'version', (tonumber(version) or 0) + 1)
redis.call('EXPIRE', KEYS[1], ARGV[5])
for i = 9, #ARGV do
  local hash = ARGV[8] .. ARGV[i]
  if redis.call('HGET', hash, 'activeTripId') == ARGV[7] then
    redis.call('HDEL', hash, 'activeTripId', 'activePassengerId')
  end
end
if ARGV[6] ~= '' then
  redis.call('HSET', ARGV[8] .. ARGV[6], 'activeTripId', ARGV[7], 'activePassengerId', ARGV[3])
end
return 1
