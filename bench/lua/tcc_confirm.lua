-- KEYS: counters hash, records hash, deadline zset; ARGV: txid, now_ms
local rec = redis.call('HGET', KEYS[2], ARGV[1])
if not rec then return 'UNKNOWN' end
local names = {R = 'RESERVED', C = 'CONFIRMED', X = 'CANCELLED', E = 'EXPIRED'}
local state, qty, deadline = string.match(rec, '^(%a):(%d+):(%d+)')
if state ~= 'R' then return names[state] end
if tonumber(deadline) <= tonumber(ARGV[2]) then return 'EXPIRED' end
local n = tonumber(qty)
redis.call('HINCRBY', KEYS[1], 'reserved', -n)
redis.call('HINCRBY', KEYS[1], 'stock', -n)
redis.call('HINCRBY', KEYS[1], 'sold', n)
redis.call('HSET', KEYS[2], ARGV[1], 'C:' .. qty .. ':' .. deadline)
redis.call('ZREM', KEYS[3], ARGV[1])
return 'CONFIRMED'
