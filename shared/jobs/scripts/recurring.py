"""The job scripts of recurring (cron) schedules: set, remove, find the due ones, fire one."""

from __future__ import annotations

from shared.jobs.scripts.library import LIBRARY

# A script rather than MULTI: a cluster client has no transactions, and one script is atomic everywhere.
# ARGV: base, name, spec, first fire ms.
SET_RECURRING = r"""
redis.call('HSET', ARGV[1] .. 'cron', ARGV[2], ARGV[3])
redis.call('ZADD', ARGV[1] .. 'cron_due', tonumber(ARGV[4]), ARGV[2])
return 1
"""

# ARGV: base, name. Returns 1 (removed) or 0 (no such schedule).
REMOVE_RECURRING = r"""
local removed = redis.call('HDEL', ARGV[1] .. 'cron', ARGV[2])
redis.call('ZREM', ARGV[1] .. 'cron_due', ARGV[2])
return removed
"""

# Due recurring schedules. ARGV: base, limit.
# Returns: now, next due ms after now (-1: none), then (name, due ms) pairs.
DUE_RECURRING = LIBRARY + r"""
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', base .. 'cron_due', '-inf', now, 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
local nxt = redis.call('ZRANGEBYSCORE', base .. 'cron_due', '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
local out = {now, -1}
if nxt[2] then out[2] = tonumber(nxt[2]) end
for i = 1, #due do out[#out + 1] = due[i] end
return out
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
