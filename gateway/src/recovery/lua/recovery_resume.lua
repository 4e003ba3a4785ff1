-- Where a socket of a user room resumes (recovery::log::RecoveryLog::resume).
-- KEYS: the room's stream; its shard's since-key (when this Redis started keeping: a position
-- given before it was given by a Redis that has since lost its data).
-- ARGV: the client's offset ('' for none), max events, window (ms), the room's mark (the
-- sequence number of its positions, recovery::offset::room_mark), and for a connected socket's
-- catch-up the lookback (ms; '' otherwise): an offset older than now - lookback reads from the
-- room's position then (recovery::log::catch_up_from).
-- Returns {head, 0} when the offset is not kept, else {head, 1, offset, event, data, ...}: what
-- the room received after it, oldest first. head: the newest entry's id, or the room's position
-- now when it has none.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local since = tonumber(redis.call('GET', KEYS[2]))
if not since then
  since = now
  redis.call('SET', KEYS[2], string.format('%.0f', since))
end
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
local head = newest and newest[1] or (string.format('%.0f', now - 1) .. '-' .. ARGV[4])

local function id(text)
  local ms, seq = string.match(text, '^(%d+)%-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function before(a, b)
  local am, as = id(a)
  local bm, bs = id(b)
  return am < bm or (am == bm and as < bs)
end

local from = ARGV[1]
if from ~= '' and ARGV[5] ~= '' then
  local floor = now - tonumber(ARGV[5])
  if tonumber(string.match(from, '^(%d+)%-')) < floor then
    from = string.format('%.0f', floor) .. '-' .. ARGV[4]
  end
end
local kept = false
if from ~= '' then
  if #redis.call('XRANGE', KEYS[1], from, from) == 1 then
    -- Appends do not trim by age: an entry older than the window is gone as far as clients go.
    local ms = tonumber(string.match(from, '^(%d+)%-'))
    kept = now - ms < tonumber(ARGV[3])
  else
    -- recovery::log::position_kept: this room's position, given by this Redis, within the
    -- window, and nothing after it trimmed (the stream is a suffix of what was appended).
    local ms, seq = string.match(from, '^(%d+)%-(%d+)$')
    ms = tonumber(ms)
    if seq == ARGV[4] and ms + 1 >= since and ms < now and now - ms < tonumber(ARGV[3]) then
      kept = true
      if newest then
        local info = redis.call('XINFO', 'STREAM', KEYS[1])
        local fields = {}
        for i = 1, #info, 2 do fields[info[i]] = info[i + 1] end
        local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1][1]
        kept = fields['entries-added'] == fields['length'] or before(oldest, from)
      end
    end
  end
end
if not kept then return {head, 0} end
local out = {head, 1}
for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '(' .. from, '+', 'COUNT', ARGV[2])) do
  local f = {}
  for i = 1, #entry[2], 2 do f[entry[2][i]] = entry[2][i + 1] end
  out[#out + 1] = entry[1]
  out[#out + 1] = f.event or ''
  out[#out + 1] = f.data or 'null'
end
return out
