"""The Lua scripts that make every job state change atomic in Redis (one source for workers and scheduler).

Every script gets the queue's key prefix as ``ARGV[1]`` and reads the Redis clock (``TIME``, milliseconds), so
leases and due times never depend on the callers' clocks. All keys of a queue share one hash tag, and every
call names at least one of them in ``KEYS``, so on a Redis Cluster it runs on the node owning the queue's slot.

Keys under ``<prefix>``: ``job:<id>`` (hash), ``q:<type>:<priority>`` (list, LPUSH in, RPOP out), ``scheduled``
(zset id -> due ms), ``leases`` (zset id -> lease expiry ms), ``dead`` (zset id -> death ms), ``types`` (set of
types with queues), ``handled`` (set of types some worker handles), ``stats`` (hash of counters), ``cron``
(hash name -> spec), ``cron_due`` (zset name -> next fire ms) and ``wake:<type>`` (list of tokens: every script
that makes jobs ready pushes one per job, up to ``WAKE_CAP``; an idle worker blocks on it with ``BLPOP`` and its
claim runs in Redis the moment a token arrives; a token is only a hint, the claim decides).
"""

from __future__ import annotations

# Helpers shared by the scripts below (prepended to each).
LIBRARY = r"""
local base = ARGV[1]
local WAKE_CAP = 1000
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function job_key(id) return base .. 'job:' .. id end
local function queue_key(jtype, prio) return base .. 'q:' .. jtype .. ':' .. prio end
local function wake_key(jtype) return base .. 'wake:' .. jtype end
-- Push one wake token per job made ready (at most WAKE_CAP kept): each wakes one worker blocked on the list.
local function wake(jtype, n)
  local wk = wake_key(jtype)
  local add = math.min(n, WAKE_CAP - redis.call('LLEN', wk))
  if add > 0 then
    local tokens = {}
    for i = 1, add do tokens[i] = '1' end
    redis.call('LPUSH', wk, unpack(tokens))
  end
end
local function wake_all(counts)
  for jtype, n in pairs(counts) do wake(jtype, n) end
end
local function ready_depth(jtype)
  return redis.call('LLEN', queue_key(jtype, 'high')) + redis.call('LLEN', queue_key(jtype, 'normal'))
    + redis.call('LLEN', queue_key(jtype, 'low'))
end
-- Move a job into the dead-letter store, dropping the oldest dead jobs beyond cap.
local function bury(id, jk, now, err, cap)
  redis.call('HSET', jk, 'status', 'dead', 'finished_at', now, 'error', err)
  redis.call('HDEL', jk, 'cancel')
  redis.call('ZADD', base .. 'dead', now, id)
  redis.call('HINCRBY', base .. 'stats', 'dead', 1)
  if cap > 0 then
    local over = redis.call('ZCARD', base .. 'dead') - cap
    if over > 0 then
      local old = redis.call('ZPOPMIN', base .. 'dead', over)
      for i = 1, #old, 2 do redis.call('DEL', job_key(old[i])) end
    end
  end
end
-- Write one new job unless its id exists. depth is a per-call cache of ready depths by type; ready counts the
-- jobs queued by type (for wake_all).
local function enqueue_one(id, jtype, prio, data, max_attempts, retry_delay, run_at, now, limits, depth, trace, owner,
    ready)
  local jk = job_key(id)
  local existing = redis.call('HGET', jk, 'status')
  if existing then return {'duplicate', existing} end
  if limits.require_known == '1' and redis.call('SISMEMBER', base .. 'handled', jtype) == 0 then
    return {'unknown_type', ''}
  end
  local status = 'queued'
  if run_at > now then
    status = 'scheduled'
    if limits.max_scheduled > 0 and redis.call('ZCARD', base .. 'scheduled') >= limits.max_scheduled then
      return {'scheduled_full', ''}
    end
  else
    run_at = now
    if limits.max_depth > 0 then
      if depth[jtype] == nil then depth[jtype] = ready_depth(jtype) end
      if depth[jtype] >= limits.max_depth then return {'queue_full', ''} end
      depth[jtype] = depth[jtype] + 1
    end
  end
  redis.call('HSET', jk, 'type', jtype, 'priority', prio, 'data', data, 'status', status, 'attempts', 0,
    'claims', 0, 'max_attempts', max_attempts, 'retry_delay', retry_delay, 'enqueued_at', now, 'run_at', run_at)
  if trace ~= nil and trace ~= '' then redis.call('HSET', jk, 'trace', trace) end
  if owner and owner ~= '' then redis.call('HSET', jk, 'owner', owner) end
  redis.call('SADD', base .. 'types', jtype)
  if status == 'scheduled' then
    redis.call('ZADD', base .. 'scheduled', run_at, id)
  else
    redis.call('LPUSH', queue_key(jtype, prio), id)
    ready[jtype] = (ready[jtype] or 0) + 1
  end
  return {'ok', status}
end
"""

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

# Fire one recurring schedule exactly once even with several schedulers: compare-and-set its due time, then
# enqueue under the id cron:<name>:<due>. ARGV: base, name, due_ms, next_ms, job_id, type, priority, data,
# max_attempts, retry_delay_ms, max_depth, owner ('' = none). Returns {fired | skip, code, status}.
FIRE_RECURRING = LIBRARY + r"""
local score = redis.call('ZSCORE', base .. 'cron_due', ARGV[2])
if not score or tonumber(score) ~= tonumber(ARGV[3]) then return {'skip', '', ''} end
redis.call('ZADD', base .. 'cron_due', tonumber(ARGV[4]), ARGV[2])
local limits = {max_depth = tonumber(ARGV[11]), max_scheduled = 0, require_known = '0'}
local now = now_ms()
local ready = {}
local r = enqueue_one(ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], now, now, limits, {}, '', ARGV[12], ready)
wake_all(ready)
return {'fired', r[1], r[2]}
"""
