-- Replicas to reap: those whose lease lapsed (never this one: it is alive to run this), or,
-- with ARGV[2], that one replica leaving. Each is claimed for ARGV[4] ms so that one replica
-- reaps it at a time; a claim that was not finished (its reaper died) expires and is retaken.
-- KEYS: node leases, reaping, epochs. ARGV: max, node leaving ('' = lapsed ones), this node,
-- claim (ms). Returns 4 values per replica: node, epoch, lease score as read, lapse time.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local nodes
if ARGV[2] ~= '' then
  local score = redis.call('ZSCORE', KEYS[1], ARGV[2])
  nodes = {ARGV[2], score or now}
else
  nodes = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, ARGV[1])
end
local out = {}
for i = 1, #nodes, 2 do
  local node, score = nodes[i], nodes[i + 1]
  local claim = redis.call('ZSCORE', KEYS[2], node)
  local free = ARGV[2] ~= '' or (node ~= ARGV[3] and (not claim or tonumber(claim) <= now))
  if free then
    redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), node)
    out[#out + 1] = node
    out[#out + 1] = redis.call('HGET', KEYS[3], node) or ''
    out[#out + 1] = tostring(score)
    out[#out + 1] = tostring(math.min(tonumber(score), now))
  end
end
return out
