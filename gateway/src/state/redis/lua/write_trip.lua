-- Compare-and-set of a trip. The driver bindings it changes live on other slots and follow in
-- their own calls (bind_trip.lua); until they are done they are recorded here, so that the next
-- reader of the trip finishes them if this writer could not.
-- KEYS: trip hash. ARGV: expected version ('' = must not exist), status, passengerId, driverId,
--   ttl (s), bindings to record (JSON, '' for none).
-- Returns {1, bindings an earlier writer left unfinished (or '')}, or {0, ''} when the version
-- did not match.
local version = redis.call('HGET', KEYS[1], 'version')
if (ARGV[1] == '' and version) or (ARGV[1] ~= '' and version ~= ARGV[1]) then return {0, ''} end
local left = redis.call('HGET', KEYS[1], 'bindings') or ''
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'passengerId', ARGV[3], 'driverId', ARGV[4],
  'version', (tonumber(version) or 0) + 1)
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[1], 'bindings', ARGV[6])
else
  redis.call('HDEL', KEYS[1], 'bindings')
end
redis.call('EXPIRE', KEYS[1], ARGV[5])
return {1, left}
