-- KEYS: presence set of the driver, drivers of this node, pending offline, driver hash.
-- ARGV: nodeId, driverId.
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('HSETNX', KEYS[4], 'status', 'OFFLINE')
return 1
