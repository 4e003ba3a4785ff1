-- Claimed drivers (of one shard) past their grace: those no replica holds become OFFLINE, once.
-- KEYS: per driver, its presence hash, driver hash, geo index part. ARGV: at, then the ids.
-- Returns the ids whose status changed.
local changed = {}
for i = 0, #KEYS / 3 - 1 do
  local driver = ARGV[2 + i]
  if redis.call('HLEN', KEYS[1 + 3 * i]) == 0 then
    local hash = KEYS[2 + 3 * i]
    redis.call('ZREM', KEYS[3 + 3 * i], driver)
    local prev = redis.call('HGET', hash, 'status')
    if prev and prev ~= 'OFFLINE' then
      redis.call('HSET', hash, 'status', 'OFFLINE', 'statusAt', ARGV[1])
      changed[#changed + 1] = driver
    end
  end
end
return changed
