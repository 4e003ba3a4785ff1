-- KEYS: replica leases. ARGV: replicas. 1 when one of them holds a live lease.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, node in ipairs(ARGV) do
  local lease = redis.call('ZSCORE', KEYS[1], node)
  if lease and tonumber(lease) > now then return 1 end
end
return 0
