-- The reserve users write today: no idempotency, no confirm/cancel, no expiry.
-- KEYS[1] stock hash; ARGV: txid, qty
local stock = tonumber(redis.call('HGET', KEYS[1], 'stock') or '0')
local reserved = tonumber(redis.call('HGET', KEYS[1], 'reserved') or '0')
local qty = tonumber(ARGV[2])
if stock - reserved < qty then return 0 end
redis.call('HINCRBY', KEYS[1], 'reserved', qty)
redis.call('HSET', KEYS[1], 'tx_' .. ARGV[1], qty)
return 1
