-- Records an offer's outcome if it has none: an answer (before expiry), or its close.
-- KEYS: the driver's offers. ARGV: offer id, outcome ('closed' or the answer's JSON), now (ms;
-- '' for a close, which ignores expiry), the channel to tell replicas on, the notice ('' none).
-- Returns {'first'}, {'already', outcome}, or {'gone'}.
local id = ARGV[1]
local expires = redis.call('HGET', KEYS[1], 'e:' .. id)
if not expires then return {'gone'} end
local now = tonumber(ARGV[3])
if now and tonumber(expires) <= now then
  local outcome = redis.call('HGET', KEYS[1], 'a:' .. id)
  if outcome and outcome ~= 'closed' then return {'already', outcome} end
  return {'gone'}
end
if redis.call('HSETNX', KEYS[1], 'a:' .. id, ARGV[2]) == 1 then
  if ARGV[5] ~= '' then redis.call('SPUBLISH', ARGV[4], ARGV[5]) end
  return {'first'}
end
return {'already', redis.call('HGET', KEYS[1], 'a:' .. id)}
