-- Accepted positions to the stream backends read, in the order they were accepted.
-- KEYS: the stream. ARGV: approximate maxlen, then per entry 7 values: driverId, lat, lng,
--       heading, speed, recordedAt, at.
local maxlen = ARGV[1]
for a = 2, #ARGV - 1, 7 do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'driverId', ARGV[a], 'lat', ARGV[a + 1],
    'lng', ARGV[a + 2], 'heading', ARGV[a + 3], 'speed', ARGV[a + 4], 'recordedAt', ARGV[a + 5],
    'at', ARGV[a + 6])
end
return (#ARGV - 1) / 7
