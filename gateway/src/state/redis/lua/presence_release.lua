-- A replica no longer holds a socket of these drivers (of one shard): it closed them, or it is
-- gone. When reaping a lapsed replica, only entries of its lapsed epoch (or older) go: the same
-- replica back with a new lease re-asserted its drivers under a newer epoch. (Their grace was
-- written before: RedisState::release_presence.)
-- KEYS: presence hashes. ARGV: node, max epoch ('' = any).
for _, key in ipairs(KEYS) do
  local epoch = redis.call('HGET', key, ARGV[1])
  if epoch and (ARGV[2] == '' or tonumber(epoch) <= tonumber(ARGV[2])) then
    redis.call('HDEL', key, ARGV[1])
  end
end
return 0
