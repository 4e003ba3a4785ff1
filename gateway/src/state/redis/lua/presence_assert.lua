-- A replica holds a socket of each of these drivers (of one shard).
-- KEYS: per driver, its presence hash and its driver hash. ARGV: node, lease epoch.
for i = 1, #KEYS, 2 do
  redis.call('HSET', KEYS[i], ARGV[1], ARGV[2])
  redis.call('HSETNX', KEYS[i + 1], 'status', 'OFFLINE')
end
return #KEYS / 2
