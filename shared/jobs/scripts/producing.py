"""The job scripts that write new jobs."""

from __future__ import annotations

from shared.jobs.scripts.library import LIBRARY

# ARGV: base, max_depth, max_scheduled, require_known, then the jobs: one MessagePack array of 11-string arrays
#   (id, type, priority, data, max_attempts, retry_delay_ms, run_at_ms (0 = none), delay_ms, registers_type,
#   trace (traceparent or ''), owner ('' = none)) — one argument rather than 11 per job, which the client would
#   frame one by one.
# Returns: now, then per job (code, status, run_at).
ENQUEUE = LIBRARY + r"""
local limits = {max_depth = tonumber(ARGV[2]), max_scheduled = tonumber(ARGV[3]), require_known = ARGV[4]}
local now = now_ms()
local out = {now}
local depth = {}
local ready = {}
for _, j in ipairs(cmsgpack.unpack(ARGV[5])) do
  local jtype = j[2]
  if j[9] == '1' then redis.call('SADD', base .. 'handled', jtype) end
  local run_at = math.max(tonumber(j[7]), now + tonumber(j[8]))
  local r = enqueue_one(j[1], jtype, j[3], j[4], j[5], j[6], run_at, now, limits, depth, j[10], j[11], ready)
  out[#out + 1] = r[1]
  out[#out + 1] = r[2]
  out[#out + 1] = run_at
end
wake_all(ready)
return out
"""
