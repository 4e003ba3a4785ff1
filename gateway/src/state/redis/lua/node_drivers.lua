-- The drivers one replica holds a socket of.
-- KEYS: the replica's set. ARGV: 'add' | 'remove' | 'replace' | 'list', then drivers.
-- 'replace' makes the set exactly the drivers given and returns those it dropped; 'list'
-- returns the members.
local op = ARGV[1]
if op == 'list' then return redis.call('SMEMBERS', KEYS[1]) end
local given = {}
for i = 2, #ARGV do given[#given + 1] = ARGV[i] end
if op == 'add' then
  if #given > 0 then redis.call('SADD', KEYS[1], unpack(given)) end
  return {}
end
if op == 'remove' then
  if #given > 0 then redis.call('SREM', KEYS[1], unpack(given)) end
  return {}
end
local keep = {}
for _, d in ipairs(given) do keep[d] = true end
local dropped = {}
for _, d in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if not keep[d] then dropped[#dropped + 1] = d end
end
redis.call('DEL', KEYS[1])
for i = 1, #given, 5000 do
  redis.call('SADD', KEYS[1], unpack(given, i, math.min(i + 4999, #given)))
end
return dropped
