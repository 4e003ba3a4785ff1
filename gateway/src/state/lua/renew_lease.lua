-- KEYS: node leases, this node's stats. ARGV: nodeId, ttl (ms), stats JSON.
-- Returns 1 when the lease was live before this renewal, 0 when it was absent or lapsed (first
-- renewal, reaped by another replica, or Redis lost its data): the caller re-asserts presence.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expires = redis.call('ZSCORE', KEYS[1], ARGV[1])
local was_live = 0
if expires and tonumber(expires) >= now then was_live = 1 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2])
return was_live
