"""The scheduler's job scripts: expired leases back to their queues, due jobs to theirs, ready depths."""

from __future__ import annotations

from shared.jobs.scripts.library import LIBRARY

# Return jobs whose lease expired (their worker died or was cut off) to the front of their queue; a job out of
# attempts goes to the dead-letter store instead. ARGV: base, limit, dead_cap, ttl_s.
# Returns: now, then per job (id, type, outcome, attempts): outcome is requeued | dead | cancelled.
REQUEUE_EXPIRED = LIBRARY + r"""
local now = now_ms()
local ids = redis.call('ZRANGEBYSCORE', base .. 'leases', '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local out = {now}
local ready = {}
for _, id in ipairs(ids) do
  redis.call('ZREM', base .. 'leases', id)
  local jk = job_key(id)
  local f = redis.call('HMGET', jk, 'status', 'type', 'priority', 'attempts', 'max_attempts', 'cancel')
  if f[1] == 'running' then
    local outcome = 'requeued'
    if f[6] == '1' then
      outcome = 'cancelled'
      redis.call('HSET', jk, 'status', 'cancelled', 'finished_at', now)
      local ttl = tonumber(ARGV[4])
      if ttl > 0 then redis.call('EXPIRE', jk, ttl) end
    elseif tonumber(f[4]) >= tonumber(f[5]) then
      outcome = 'dead'
      bury(id, jk, now, 'lease expired: the worker stopped renewing (crashed or cut off)', tonumber(ARGV[3]))
    else
      redis.call('HSET', jk, 'status', 'queued', 'run_at', now, 'error', 'lease expired: the worker stopped renewing')
      redis.call('HDEL', jk, 'worker')
      redis.call('RPUSH', queue_key(f[2], f[3]), id)
      redis.call('HINCRBY', base .. 'stats', 'lease_expired', 1)
      ready[f[2]] = (ready[f[2]] or 0) + 1
    end
    local j = #out
    out[j + 1] = id; out[j + 2] = f[2]; out[j + 3] = outcome; out[j + 4] = f[4]
  end
end
wake_all(ready)
return out
"""

# Move due scheduled jobs to their queues. ARGV: base, limit.
# Returns: now, next due ms (-1: none), the earliest due ms moved (-1: none), then (type, count) pairs.
PROMOTE_DUE = LIBRARY + r"""
local now = now_ms()
local ids = redis.call('ZRANGEBYSCORE', base .. 'scheduled', '-inf', now, 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
local counts = {}
local first = -1
if ids[2] then first = tonumber(ids[2]) end
for i = 1, #ids, 2 do
  local id = ids[i]
  redis.call('ZREM', base .. 'scheduled', id)
  local jk = job_key(id)
  local f = redis.call('HMGET', jk, 'status', 'type', 'priority')
  if f[1] == 'scheduled' then
    redis.call('HSET', jk, 'status', 'queued')
    redis.call('LPUSH', queue_key(f[2], f[3]), id)
    counts[f[2]] = (counts[f[2]] or 0) + 1
  end
end
wake_all(counts)
local nxt = redis.call('ZRANGE', base .. 'scheduled', 0, 0, 'WITHSCORES')
local out = {now, -1, first}
if nxt[2] then out[2] = tonumber(nxt[2]) end
for jtype, count in pairs(counts) do
  out[#out + 1] = jtype
  out[#out + 1] = count
end
return out
"""

# ARGV: base. Returns (type, ready depth) for every type with ready jobs.
READY_TYPES = LIBRARY + r"""
local out = {}
for _, jtype in ipairs(redis.call('SMEMBERS', base .. 'types')) do
  local d = ready_depth(jtype)
  if d > 0 then
    out[#out + 1] = jtype
    out[#out + 1] = d
  end
end
return out
"""
