-- The bindings recorded with a trip write were applied: forget them, unless a later write
-- recorded others meanwhile. KEYS: trip hash. ARGV: the bindings as recorded (JSON).
if redis.call('HGET', KEYS[1], 'bindings') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'bindings')
end
return 1
