-- Keeps a recoverable event for rooms of one shard (one slot on a cluster) and publishes it, in
-- one step, so that every replica hears a room's events in the order of their offsets.
-- KEYS: each room's stream; each room's shard's since-key (set with the first offset this Redis
--       gives, if resume has not set it already: every offset and position it gives is after
--       it); then, for an event kept once for the cluster (one every replica hears), each
--       room's once-marker: a room whose marker was set within the window is skipped.
-- ARGV: max events, window (ms), channel (same slot), namespace, event, data (JSON text), then
--       the rooms.
-- Returns per room its offset (the stream entry id), or false when its marker was already set.
-- Publishes one message for the rooms kept: {"ns","event","kept":[[room, offset], ...],"data"}.
-- Entries older than the window are not trimmed here: resume refuses them (trim on read); the
-- stream is capped by count and expires a window after its last append.
local rooms = #ARGV - 6
local once = #KEYS == 3 * rooms
local out, kept = {}, {}
for i = 1, rooms do
  if once and not redis.call('SET', KEYS[2 * rooms + i], '1', 'NX', 'PX', ARGV[2]) then
    out[i] = false
  else
    local id = redis.call('XADD', KEYS[i], 'MAXLEN', ARGV[1], '*', 'event', ARGV[5], 'data', ARGV[6])
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
    redis.call('SET', KEYS[rooms + i], string.match(id, '^(%d+)%-'), 'NX')
    out[i] = id
    kept[#kept + 1] = '[' .. cjson.encode(ARGV[6 + i]) .. ',"' .. id .. '"]'
  end
end
if #kept > 0 then
  redis.call('SPUBLISH', ARGV[3], '{"ns":' .. cjson.encode(ARGV[4]) .. ',"event":' ..
    cjson.encode(ARGV[5]) .. ',"kept":[' .. table.concat(kept, ',') .. '],"data":' .. ARGV[6] .. '}')
end
return out
