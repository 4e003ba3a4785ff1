-- A socket of a user opened in a namespace; the user's sockets beyond the newest `max` are
-- removed and returned, oldest first, so the caller can replace them.
-- KEYS: the user's sockets in the namespace (sorted set: socket id -> opened at, Redis clock).
-- ARGV: socket id, max (0: no limit), key ttl in ms.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
-- Sockets of a replica that died are never closed here; the key's expiry bounds them, and being
-- the oldest they are the first replaced.
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local max = tonumber(ARGV[2])
local n = redis.call('ZCARD', KEYS[1])
if max == 0 or n <= max then
  return {}
end
local excess = n - max
local replaced = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if #replaced >= excess then
    break
  end
  -- Opened in the same millisecond as an older one: never replace the socket just opened.
  if id ~= ARGV[1] then
    table.insert(replaced, id)
  end
end
redis.call('ZREM', KEYS[1], unpack(replaced))
return replaced
