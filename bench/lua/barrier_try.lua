-- A barrier-style TCC "try" in one script, with the semantics of the DTM
-- transaction barrier (written here from its public description, not its
-- code): the try is idempotent per transaction, a cancel that came first
-- leaves a rollback marker that blocks the late try, and both markers
-- expire after the barrier TTL. The stock is a plain integer counter.
-- KEYS[1]: the SKU's stock; KEYS[2]: this transaction's try barrier (the
-- units it took); KEYS[3]: its rollback marker (barrier_cancel.lua).
-- ARGV[1]: units; ARGV[2]: barrier TTL in seconds.
local qty = tonumber(ARGV[1])
local stock = tonumber(redis.call('GET', KEYS[1]) or '0')
if redis.call('EXISTS', KEYS[3]) == 1 then
  return 'FENCED'
end
if redis.call('GET', KEYS[2]) then
  return 'REPLAY'
end
if stock < qty then
  return 'NOSTOCK'
end
redis.call('SET', KEYS[2], qty, 'EX', ARGV[2])
redis.call('INCRBY', KEYS[1], -qty)
return 'OK'
