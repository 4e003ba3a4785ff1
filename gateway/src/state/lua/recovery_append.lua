-- Keeps a recoverable event of a user room and publishes it, in one step, so that every replica
-- hears a room's events in the order of their offsets.
-- KEYS: the room's stream, and optionally a once-marker: the event is kept only if that marker
-- was not set within the window (an event every replica hears, kept once for the cluster).
-- ARGV: max events, window (ms), channel (same slot), namespace, room, event, data (JSON text).
-- Returns the offset (the stream entry id), or false when the marker was already set.
if KEYS[2] and not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then return false end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], '*', 'event', ARGV[6], 'data', ARGV[7])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('XTRIM', KEYS[1], 'MINID', tostring(now - tonumber(ARGV[2])))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local message = '{"ns":' .. cjson.encode(ARGV[4]) .. ',"room":' .. cjson.encode(ARGV[5]) ..
  ',"event":' .. cjson.encode(ARGV[6]) .. ',"offset":"' .. id .. '","data":' .. ARGV[7] .. '}'
redis.call('SPUBLISH', ARGV[3], message)
return id
