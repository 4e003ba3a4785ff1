-- A trip's driver bindings (drivers of one shard); idempotent.
-- KEYS: driver hashes. ARGV: tripId, passengerId, then per key 'bind' or 'unbind' (only if the
-- driver is still bound to this trip).
for i, key in ipairs(KEYS) do
  if ARGV[2 + i] == 'bind' then
    redis.call('HSET', key, 'activeTripId', ARGV[1], 'activePassengerId', ARGV[2])
  elseif redis.call('HGET', key, 'activeTripId') == ARGV[1] then
    redis.call('HDEL', key, 'activeTripId', 'activePassengerId')
  end
end
return 1
