"""The job scripts a worker runs on the jobs it claims: claim, wake, renew, complete, fail, release."""

from __future__ import annotations

from shared.jobs.scripts.library import LIBRARY

# KEYS: the ready lists (highest priority first), then the wake lists of their types and the worker's own wake
# list. ARGV: base, n, worker, lease_ms, number of ready lists. The worker's wake list is emptied; the types' are
# too when the ready lists are found empty (their tokens then stand for jobs already claimed).
# Returns: now, then per claimed job 10 fields:
#   id, type, priority, data, attempts, claims (the lease token), max_attempts, retry_delay_ms, run_at_ms, owner.
CLAIM = LIBRARY + r"""
local n = tonumber(ARGV[2])
local worker = ARGV[3]
local lease = tonumber(ARGV[4])
local nready = tonumber(ARGV[5])
local now = now_ms()
local out = {now}
for k = 1, nready do
  if n <= 0 then break end
  local ids = redis.call('RPOP', KEYS[k], n)
  if ids then
    for _, id in ipairs(ids) do
      local jk = job_key(id)
      local f = redis.call('HMGET', jk, 'status', 'type', 'priority', 'data', 'max_attempts', 'retry_delay', 'run_at',
        'owner')
      if f[1] == 'queued' then
        local attempts = redis.call('HINCRBY', jk, 'attempts', 1)
        local claims = redis.call('HINCRBY', jk, 'claims', 1)
        redis.call('HSET', jk, 'status', 'running', 'worker', worker, 'started_at', now)
        redis.call('ZADD', base .. 'leases', now + lease, id)
        local j = #out
        out[j + 1] = id; out[j + 2] = f[2]; out[j + 3] = f[3]; out[j + 4] = f[4]; out[j + 5] = attempts
        out[j + 6] = claims; out[j + 7] = f[5]; out[j + 8] = f[6]; out[j + 9] = f[7]; out[j + 10] = f[8] or ''
        n = n - 1
      end
    end
  end
end
if #KEYS > nready then
  redis.call('DEL', KEYS[#KEYS])
  if n > 0 then
    local empty = true
    for k = 1, nready do
      if redis.call('LLEN', KEYS[k]) > 0 then empty = false; break end
    end
    if empty and #KEYS > nready + 1 then redis.call('DEL', unpack(KEYS, nready + 1, #KEYS - 1)) end
  end
end
return out
"""

# Wake one worker blocked in its claim (it asked for it: a nudge, or it is stopping); the claim empties the list.
# KEYS: the worker's wake list. ARGV: base.
WAKE_WORKER = r"""
redis.call('LPUSH', KEYS[1], '1')
redis.call('PEXPIRE', KEYS[1], 60000)
return 1
"""

# ARGV: base, lease_ms, then (id, token) pairs. Returns per job: 0 lost, 1 renewed, 2 renewed + cancel requested.
RENEW = LIBRARY + r"""
local lease = tonumber(ARGV[2])
local now = now_ms()
local out = {}
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  local f = redis.call('HMGET', job_key(id), 'status', 'claims', 'cancel')
  if f[1] == 'running' and f[2] == ARGV[i + 1] then
    redis.call('ZADD', base .. 'leases', now + lease, id)
    if f[3] == '1' then out[#out + 1] = 2 else out[#out + 1] = 1 end
  else
    out[#out + 1] = 0
  end
end
return out
"""

# ARGV: base, ttl_s, then (id, token, result) triples. Returns per job 1 (recorded) or 0 (lease lost).
COMPLETE = LIBRARY + r"""
local ttl = tonumber(ARGV[2])
local now = now_ms()
local out = {}
local done = 0
for i = 3, #ARGV, 3 do
  local id = ARGV[i]
  local jk = job_key(id)
  local f = redis.call('HMGET', jk, 'status', 'claims')
  if f[1] == 'running' and f[2] == ARGV[i + 1] then
    redis.call('HSET', jk, 'status', 'succeeded', 'result', ARGV[i + 2], 'finished_at', now)
    redis.call('HDEL', jk, 'cancel')
    redis.call('ZREM', base .. 'leases', id)
    if ttl > 0 then redis.call('EXPIRE', jk, ttl) end
    done = done + 1
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
if done > 0 then redis.call('HINCRBY', base .. 'stats', 'succeeded', done) end
return out
"""

# ARGV: base, id, token, error, retry (0/1), delay_ms, dead_cap.
# Returns {outcome, run_at_ms, attempts}: outcome is lost | scheduled | queued | dead.
FAIL = LIBRARY + r"""
local id = ARGV[2]
local jk = job_key(id)
local now = now_ms()
local f = redis.call('HMGET', jk, 'status', 'claims', 'attempts', 'max_attempts', 'type', 'priority')
if f[1] ~= 'running' or f[2] ~= ARGV[3] then return {'lost', 0, 0} end
redis.call('ZREM', base .. 'leases', id)
redis.call('HINCRBY', base .. 'stats', 'failed_attempts', 1)
local attempts = tonumber(f[3])
if ARGV[5] == '1' and attempts < tonumber(f[4]) then
  local delay = tonumber(ARGV[6])
  if delay > 0 then
    redis.call('HSET', jk, 'status', 'scheduled', 'run_at', now + delay, 'error', ARGV[4])
    redis.call('ZADD', base .. 'scheduled', now + delay, id)
    return {'scheduled', now + delay, attempts}
  end
  redis.call('HSET', jk, 'status', 'queued', 'run_at', now, 'error', ARGV[4])
  redis.call('LPUSH', queue_key(f[5], f[6]), id)
  wake(f[5], 1)
  return {'queued', now, attempts}
end
bury(id, jk, now, ARGV[4], tonumber(ARGV[7]))
return {'dead', now, attempts}
"""

# Hand jobs back (graceful stop): not the job's fault, so the attempt is not counted.
# ARGV: base, then (id, token) pairs. Returns the types of the jobs handed back (one entry each).
RELEASE = LIBRARY + r"""
local out = {}
local ready = {}
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  local jk = job_key(id)
  local f = redis.call('HMGET', jk, 'status', 'claims', 'type', 'priority')
  if f[1] == 'running' and f[2] == ARGV[i + 1] then
    redis.call('ZREM', base .. 'leases', id)
    redis.call('HINCRBY', jk, 'attempts', -1)
    redis.call('HSET', jk, 'status', 'queued', 'run_at', now_ms())
    redis.call('HDEL', jk, 'worker')
    redis.call('RPUSH', queue_key(f[3], f[4]), id)
    ready[f[3]] = (ready[f[3]] or 0) + 1
    out[#out + 1] = f[3]
  end
end
wake_all(ready)
return out
"""

# A running job's worker stopped it on request. ARGV: base, id, token, ttl_s. Returns 1 or 0 (lease lost).
FINISH_CANCELLED = LIBRARY + r"""
local id = ARGV[2]
local jk = job_key(id)
local f = redis.call('HMGET', jk, 'status', 'claims')
if f[1] ~= 'running' or f[2] ~= ARGV[3] then return 0 end
redis.call('ZREM', base .. 'leases', id)
redis.call('HSET', jk, 'status', 'cancelled', 'finished_at', now_ms())
local ttl = tonumber(ARGV[4])
if ttl > 0 then redis.call('EXPIRE', jk, ttl) end
return 1
"""
