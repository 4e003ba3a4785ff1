-- A trip's driver bindings (drivers of one shard), ordered by the trip's version so that a late
-- call of an older write cannot undo a newer one: an unbinding leaves the trip and version it
-- ended at, and a binding of that trip at that version or older is then skipped.
-- KEYS: driver hashes. ARGV: tripId, passengerId, trip version, then per key 'bind' or 'unbind'.
local trip, version = ARGV[1], tonumber(ARGV[3])
for i, key in ipairs(KEYS) do
  local h = redis.call('HMGET', key, 'activeTripId', 'activeTripVersion', 'unboundTrip', 'unboundVersion')
  if ARGV[3 + i] == 'bind' then
    local ended = h[3] == trip and tonumber(h[4]) >= version
    local newer = h[1] == trip and tonumber(h[2] or 0) > version
    if not ended and not newer then
      redis.call('HSET', key, 'activeTripId', trip, 'activePassengerId', ARGV[2],
        'activeTripVersion', version)
    end
  else
    if h[1] == trip and tonumber(h[2] or 0) <= version then
      redis.call('HDEL', key, 'activeTripId', 'activePassengerId', 'activeTripVersion')
    end
    if h[3] ~= trip or tonumber(h[4]) < version then
      redis.call('HSET', key, 'unboundTrip', trip, 'unboundVersion', version)
    end
  end
end
return 1
