-- Full TCC reserve with INV.RESERVE's semantics: idempotent by txid, refused
-- after a cancel (fence), per-tx records in a hash, deadlines in a ZSET.
-- KEYS: counters hash, records hash, deadline zset; ARGV: txid, qty, ttl_ms, now_ms
local rec = redis.call('HGET', KEYS[2], ARGV[1])
local names = {R = 'RESERVED', C = 'CONFIRMED', X = 'CANCELLED', E = 'EXPIRED'}
if rec then
  local state, qty, deadline = string.match(rec, '^(%a):(%d+):(%d+)')
  if state == 'R' and tonumber(deadline) <= tonumber(ARGV[4]) then return 'EXPIRED' end
  if state == 'R' and qty ~= ARGV[2] then return redis.error_reply('TXCONFLICT') end
  return names[state]
end
local stock = tonumber(redis.call('HGET', KEYS[1], 'stock') or '0')
local reserved = tonumber(redis.call('HGET', KEYS[1], 'reserved') or '0')
local qty = tonumber(ARGV[2])
if stock - reserved < qty then return 'NOSTOCK' end
local deadline = tonumber(ARGV[4]) + tonumber(ARGV[3])
redis.call('HINCRBY', KEYS[1], 'reserved', qty)
redis.call('HSET', KEYS[2], ARGV[1], 'R:' .. qty .. ':' .. deadline)
redis.call('ZADD', KEYS[3], deadline, ARGV[1])
return 'RESERVED'
