--[[ heartbeat: mark one client alive at its tag's uptime, and say whether it had been dropped.
  KEYS[1]  clock       the tag's uptime clock (see _helpers.lua): ticked here
  KEYS[2]  mark        the client's liveness mark <prefix>{T}h:<head>
  ARGV[1]  beat_ms     the caller's heartbeat, ms
  Returns  0 the mark was there | 1 the mark was gone or said dead: a group_send may have
           dropped the client's members, so the caller adds them again
  Cost     O(1)
]]
local beat_ms = tonumber(ARGV[1])
local up = tick_clock(KEYS[1], beat_ms)
local before = redis.call('GET', KEYS[2])
set_mark(KEYS[2], up, beat_ms, false)
if not before or before == DEAD_MARK then
  return 1
end
return 0
