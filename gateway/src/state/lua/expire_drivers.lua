-- Drivers past their grace with no socket anywhere become OFFLINE, once.
-- KEYS: pending offline, geo index. ARGV: key prefix, at, max.
-- Returns the ids whose status changed.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local p = ARGV[1]
local changed = {}
for _, driver in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[3])) do
  redis.call('ZREM', KEYS[1], driver)
  if redis.call('SCARD', p .. ':presence:' .. driver) == 0 then
    local hash = p .. ':driver:' .. driver
    redis.call('ZREM', KEYS[2], driver)
    local prev = redis.call('HGET', hash, 'status')
    if prev and prev ~= 'OFFLINE' then
      redis.call('HSET', hash, 'status', 'OFFLINE', 'statusAt', ARGV[2])
      table.insert(changed, driver)
    end
  end
end
return changed
