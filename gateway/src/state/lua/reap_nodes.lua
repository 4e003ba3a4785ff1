-- A replica whose lease lapsed (or, with ARGV[4] = node, this replica leaving) loses its
-- drivers: each one no replica holds any more starts its grace from the lapse. A replica never
-- reaps its own lease (ARGV[5]): it is alive to run this, and renews the lease itself.
-- KEYS: node leases, pending offline. ARGV: key prefix, grace (ms), max nodes, node to release,
-- this node.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local p = ARGV[1]
local nodes
if ARGV[4] ~= '' then
  nodes = {ARGV[4], now}
else
  nodes = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, ARGV[3])
end
local reaped = 0
for i = 1, #nodes, 2 do
  local node, lapsed = nodes[i], math.min(tonumber(nodes[i + 1]), now)
  if node ~= ARGV[5] or ARGV[4] ~= '' then
    local held = p .. ':node:' .. node .. ':drivers'
    for _, driver in ipairs(redis.call('SMEMBERS', held)) do
      local presence = p .. ':presence:' .. driver
      redis.call('SREM', presence, node)
      if redis.call('SCARD', presence) == 0 then
        redis.call('ZADD', KEYS[2], 'NX', lapsed + tonumber(ARGV[2]), driver)
      end
    end
    redis.call('DEL', held, p .. ':node:' .. node .. ':stats')
    redis.call('ZREM', KEYS[1], node)
    reaped = reaped + 1
  end
end
return reaped
