"""The Redis store's Lua scripts: every decision and every write, atomic on the server.

Each script touches exactly one key (``KEYS[1]``), so it runs on whichever
Redis Cluster master owns that key's slot. Times come from ``TIME`` on the
server, in milliseconds. A record is a hash (docs/redis.md, "Inspecting a
record"):

    id              the incarnation: a random token, new on every acquisition
    version         1 on a fresh claim, +1 on every update (the fencing token)
    fingerprint     the request's fingerprint
    status          in_progress | completed
    method, path    what the first request was
    locked_until    ms since the epoch, Redis clock (in_progress only)
    created_at      ms since the epoch
    expires_at      ms since the epoch; the key itself expires then (or when
                    the lock ends, if later), so nothing needs purging
    response_status, response_headers (JSON), response_body (raw bytes,
                    absent when the response was not kept), sensitive (0/1)

Writes are fenced by ``id`` and ``version`` together: a version alone could
repeat once a key expired and was claimed afresh, an id cannot.
"""

from __future__ import annotations

# Shared by the scripts: the server's clock in milliseconds.
_NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

# ARGV: id, fingerprint, method, path, lock_ms, ttl_ms, create (1/0).
# Returns {outcome, id, version, ...}:
#   {'acquired', id, version, taken_over}
#   {'mismatch', id, version}
#   {'in_progress', id, version, lock_left_ms}
#   {'replay', id, version, status, headers, body or false, sensitive}
#   {'absent'} (create = 0 and no live record: a fallback key's lookup)
CLAIM = (
    _NOW
    + """
local key = KEYS[1]
local found = redis.call('HMGET', key, 'id', 'version', 'fingerprint', 'status',
                         'locked_until', 'expires_at')
local version = tonumber(found[2])
local taken_over = 0
if version then
  if found[1] == ARGV[1] then
    -- This very claim, sent again after a lost reply: it is still ours.
    return {'acquired', found[1], version, 0}
  end
  local in_progress = found[4] == 'in_progress'
  local lock_live = in_progress and tonumber(found[5]) > now
  local expired = tonumber(found[6]) <= now
  -- Past its expiry a record is as if absent, unless a request still runs
  -- under a live lock: a view slower than its TTL must not run twice.
  if not lock_live and expired and ARGV[7] == '0' then
    return {'absent'}  -- an expired record under a former secret's digest
  end
  if lock_live or not expired then
    if found[3] ~= ARGV[2] then
      return {'mismatch', found[1], version}
    end
    if lock_live then
      return {'in_progress', found[1], version, tonumber(found[5]) - now}
    end
    if not in_progress then
      local response = redis.call('HMGET', key, 'response_status', 'response_headers',
                                  'response_body', 'sensitive')
      return {'replay', found[1], version, response[1], response[2], response[3], response[4]}
    end
  end
  taken_over = 1
  version = version + 1
elseif ARGV[7] == '0' then
  return {'absent'}
else
  version = 1
end
local locked_until = now + tonumber(ARGV[5])
local expires_at = now + tonumber(ARGV[6])
-- HSET first: Redis refuses a script's first write when it is out of memory
-- (noeviction), and lets every later write of that script through.
redis.call('HSET', key, 'id', ARGV[1], 'version', version, 'fingerprint', ARGV[2],
           'status', 'in_progress', 'method', ARGV[3], 'path', ARGV[4],
           'locked_until', locked_until, 'created_at', now, 'expires_at', expires_at)
redis.call('HDEL', key, 'response_status', 'response_headers', 'response_body', 'sensitive')
redis.call('PEXPIREAT', key, math.max(locked_until, expires_at))
return {'acquired', ARGV[1], version, taken_over}
"""
)

# ARGV: id, version, lock_ms. 1 while this claim still owns the in-progress
# record and its lock is live (Redis clock): a lock that ran out may be taken
# over by a retry at any moment, so the call's transaction must roll back
# even if nobody has taken it yet. Confirming renews the lock (and the key's
# expiry with it) to at least lock_ms from now, so that neither runs out
# before the completion that follows the commit. The renewal is also the
# write that makes a Redis that would refuse the completion (out of memory,
# read-only after a failover) refuse now, while the transaction can still
# roll back.
CONFIRM = (
    _NOW
    + """
local key = KEYS[1]
local found = redis.call('HMGET', key, 'id', 'version', 'status', 'locked_until', 'expires_at')
if found[1] ~= ARGV[1] or tonumber(found[2]) ~= tonumber(ARGV[2])
   or found[3] ~= 'in_progress' then
  return 0
end
local locked_until = tonumber(found[4])
if locked_until <= now then
  return 0
end
locked_until = math.max(locked_until, now + tonumber(ARGV[3]))
redis.call('HSET', key, 'locked_until', locked_until)
redis.call('PEXPIREAT', key, math.max(locked_until, tonumber(found[5])))
return 1
"""
)

# ARGV: id, version, status, headers, sensitive, has_body (1/0), body.
# 1 when stored, 0 when the record belongs to another writer.
COMPLETE = """
local key = KEYS[1]
local found = redis.call('HMGET', key, 'id', 'version', 'status', 'expires_at')
if found[1] ~= ARGV[1] then
  return 0
end
local version = tonumber(found[2])
if version == tonumber(ARGV[2]) + 1 and found[3] == 'completed' then
  return 1  -- this completion, sent again after a lost reply
end
if version ~= tonumber(ARGV[2]) or found[3] ~= 'in_progress' then
  return 0
end
redis.call('HSET', key, 'status', 'completed', 'version', version + 1,
           'response_status', ARGV[3], 'response_headers', ARGV[4], 'sensitive', ARGV[5])
redis.call('HDEL', key, 'locked_until')
if ARGV[6] == '1' then
  redis.call('HSET', key, 'response_body', ARGV[7])
end
-- Kept until its expiry and no longer: a past expiry removes it at once.
redis.call('PEXPIREAT', key, tonumber(found[4]))
return 1
"""

# ARGV: id, version. 1 when the claim's record was removed.
RELEASE = """
local found = redis.call('HMGET', KEYS[1], 'id', 'version')
if found[1] == ARGV[1] and tonumber(found[2]) == tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""
