-- Counts one handshake of a user in the current fixed window.
-- KEYS: the user's handshake counter. ARGV: limit, window in ms.
-- Returns 1 when the handshake is within the limit, else 0.
local n = redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if n <= tonumber(ARGV[1]) then
  return 1
end
return 0
