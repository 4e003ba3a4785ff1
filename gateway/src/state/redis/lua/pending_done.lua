-- Claimed drivers handled: off the pending set, unless a new grace started meanwhile.
-- KEYS: pending offline. ARGV: claim score, drivers.
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[1]) then redis.call('ZREM', KEYS[1], ARGV[i]) end
end
return 1
