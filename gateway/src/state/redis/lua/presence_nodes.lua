-- KEYS: presence hash of a driver. The replicas recorded as holding a socket of it.
return redis.call('HKEYS', KEYS[1])
