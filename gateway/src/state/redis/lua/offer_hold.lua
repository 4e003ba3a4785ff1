-- Holds an offer for a driver until it expires.
-- KEYS: the driver's offers. ARGV: offer id, offer (JSON), expiry (ms), now (ms), kept after
-- expiry (ms). 0 when an offer of that id is already held.
local id, expires, now, kept = ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
-- Forget offers long expired (a driver's hash holds a few).
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local name = fields[i]
  if string.sub(name, 1, 2) == 'e:' and tonumber(fields[i + 1]) + kept < now then
    local old = string.sub(name, 3)
    redis.call('HDEL', KEYS[1], 'o:' .. old, 'e:' .. old, 'a:' .. old)
  end
end
if redis.call('HSETNX', KEYS[1], 'o:' .. id, ARGV[2]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'e:' .. id, ARGV[3])
local until_ms = expires + kept
local current = redis.call('PEXPIRETIME', KEYS[1])
if current < until_ms then redis.call('PEXPIREAT', KEYS[1], until_ms) end
return 1
