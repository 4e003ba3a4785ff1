-- What a user room received after an offset the client had, oldest first.
-- KEYS: the room's stream. ARGV: the offset, max events.
-- Returns {0} when the offset is not kept (expired, trimmed, never issued), else
-- {1, offset, event, data, ...}.
if #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) == 0 then return {0} end
local out = {1}
for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])) do
  local fields = {}
  for i = 1, #entry[2], 2 do fields[entry[2][i]] = entry[2][i + 1] end
  out[#out + 1] = entry[1]
  out[#out + 1] = fields.event or ''
  out[#out + 1] = fields.data or 'null'
end
return out
