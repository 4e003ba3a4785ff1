-- KEYS: node leases, epochs, stats. ARGV: nodeId, ttl (ms), stats JSON.
-- Returns {was_live, epoch}. was_live is 0 when the lease was absent or lapsed (first renewal,
-- reaped by another replica, or Redis lost its data): a new epoch starts (the Redis time) and
-- the caller re-asserts its presence under it.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expires = redis.call('ZSCORE', KEYS[1], ARGV[1])
local epoch = redis.call('HGET', KEYS[2], ARGV[1])
local was_live = 0
if expires and tonumber(expires) >= now and epoch then
  was_live = 1
else
  epoch = tostring(now)
  redis.call('HSET', KEYS[2], ARGV[1], epoch)
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
return {was_live, epoch}
