"""The helpers every job script starts with, and the keys of a queue they work on.

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
