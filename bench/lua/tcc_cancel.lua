-- KEYS: counters hash, records hash, deadline zset; ARGV: txid, now_ms
local rec = redis.call('HGET', KEYS[2], ARGV[1])
if not rec then
  redis.call('HSET', KEYS[2], ARGV[1], 'X:0:' .. ARGV[2]) -- fence
  return 'CANCELLED'
end
local names = {R = 'RESERVED', C = 'CONFIRMED', X = 'CANCELLED', E = 'EXPIRED'}
local state, qty, deadline = string.match(rec, '^(%a):(%d+):(%d+)')
if state ~= 'R' then return names[state] end
if tonumber(deadline) <= tonumber(ARGV[2]) then return 'EXPIRED' end
redis.call('HINCRBY', KEYS[1], 'reserved', -tonumber(qty))
redis.call('HSET', KEYS[2], ARGV[1], 'X:' .. qty .. ':' .. deadline)
redis.call('ZREM', KEYS[3], ARGV[1])
return 'CANCELLED'
