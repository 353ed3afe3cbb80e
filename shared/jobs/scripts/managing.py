"""The job scripts that manage a queue from outside: cancel, stats, the dead-letter store."""

from __future__ import annotations

from shared.jobs.scripts.library import LIBRARY

# ARGV: base, id, ttl_s. Returns {outcome, status, type}: outcome is
# not_found | cancelled (was queued or scheduled) | cancelling (running: its worker will stop it) | final.
CANCEL = LIBRARY + r"""
local id = ARGV[2]
local jk = job_key(id)
local f = redis.call('HMGET', jk, 'status', 'type', 'priority')
if not f[1] then return {'not_found', '', ''} end
local function finish()
  redis.call('HSET', jk, 'status', 'cancelled', 'finished_at', now_ms())
  local ttl = tonumber(ARGV[3])
  if ttl > 0 then redis.call('EXPIRE', jk, ttl) end
  return {'cancelled', 'cancelled', f[2]}
end
if f[1] == 'queued' then
  redis.call('LREM', queue_key(f[2], f[3]), 1, id)
  return finish()
elseif f[1] == 'scheduled' then
  redis.call('ZREM', base .. 'scheduled', id)
  return finish()
elseif f[1] == 'running' then
  redis.call('HSET', jk, 'cancel', '1')
  return {'cancelling', 'running', f[2]}
end
return {'final', f[1], f[2]}
"""

# ARGV: base. Returns high, normal, low, scheduled, running, dead, succeeded, recurring.
STATS = LIBRARY + r"""
local h, n, l = 0, 0, 0
for _, jtype in ipairs(redis.call('SMEMBERS', base .. 'types')) do
  h = h + redis.call('LLEN', queue_key(jtype, 'high'))
  n = n + redis.call('LLEN', queue_key(jtype, 'normal'))
  l = l + redis.call('LLEN', queue_key(jtype, 'low'))
end
local succeeded = tonumber(redis.call('HGET', base .. 'stats', 'succeeded') or '0')
return {h, n, l, redis.call('ZCARD', base .. 'scheduled'), redis.call('ZCARD', base .. 'leases'),
  redis.call('ZCARD', base .. 'dead'), succeeded, redis.call('HLEN', base .. 'cron')}
"""

# Dead jobs back to their queues with fresh attempts. ARGV: base, limit, then ids (none: the oldest up to limit).
# Returns (id, type) of each job moved.
RETRY_DEAD = LIBRARY + r"""
local ids = {}
if #ARGV > 2 then
  for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  ids = redis.call('ZRANGE', base .. 'dead', 0, tonumber(ARGV[2]) - 1)
end
local now = now_ms()
local out = {}
local ready = {}
for _, id in ipairs(ids) do
  if redis.call('ZREM', base .. 'dead', id) == 1 then
    local jk = job_key(id)
    local f = redis.call('HMGET', jk, 'type', 'priority')
    if f[1] then
      redis.call('HSET', jk, 'status', 'queued', 'attempts', 0, 'run_at', now)
      redis.call('HDEL', jk, 'finished_at', 'worker', 'started_at')
      redis.call('LPUSH', queue_key(f[1], f[2]), id)
      ready[f[1]] = (ready[f[1]] or 0) + 1
      out[#out + 1] = id
      out[#out + 1] = f[1]
    end
  end
end
wake_all(ready)
return out
"""

# ARGV: base, limit, then ids (none: the oldest up to limit). Returns how many were purged.
PURGE_DEAD = LIBRARY + r"""
local ids = {}
if #ARGV > 2 then
  for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  ids = redis.call('ZRANGE', base .. 'dead', 0, tonumber(ARGV[2]) - 1)
end
local purged = 0
for _, id in ipairs(ids) do
  if redis.call('ZREM', base .. 'dead', id) == 1 then
    redis.call('DEL', job_key(id))
    purged = purged + 1
  end
end
return purged
"""
