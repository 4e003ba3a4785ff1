-- A reaped replica's drivers were released: forget it, unless it renewed its lease meanwhile.
-- KEYS: node leases, reaping, epochs, stats, its drivers. ARGV: node, lease score as claimed.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) == tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('HDEL', KEYS[4], ARGV[1])
  redis.call('DEL', KEYS[5])
end
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
