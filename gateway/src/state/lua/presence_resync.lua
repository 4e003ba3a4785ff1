-- A replica re-asserts the drivers it holds after the store lost track of them (writes that
-- failed during a Redis outage, its lease reaped by another replica, Redis restarted empty).
-- KEYS: drivers of this node, pending offline. ARGV: key prefix, nodeId, grace (ms), driverIds...
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local p, node, grace = ARGV[1], ARGV[2], tonumber(ARGV[3])
local held = {}
for i = 4, #ARGV do held[ARGV[i]] = true end
-- Drivers recorded here who left meanwhile: released, their grace starts now.
for _, driver in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if not held[driver] then
    local presence = p .. ':presence:' .. driver
    redis.call('SREM', presence, node)
    redis.call('SREM', KEYS[1], driver)
    if redis.call('SCARD', presence) == 0 then
      redis.call('ZADD', KEYS[2], 'NX', now + grace, driver)
    end
  end
end
for i = 4, #ARGV do
  local driver = ARGV[i]
  redis.call('SADD', p .. ':presence:' .. driver, node)
  redis.call('SADD', KEYS[1], driver)
  redis.call('ZREM', KEYS[2], driver)
  redis.call('HSETNX', p .. ':driver:' .. driver, 'status', 'OFFLINE')
end
return #ARGV - 3
