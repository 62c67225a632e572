-- The flash-sale ("seckill") script teams run today, in its usual steps:
-- one order per buyer (a set of buyers), the sale's window by the server's
-- clock, a stock check and decrement, and the order handed to the order
-- service through a stream, all in one atomic script. The bench's baseline
-- for INV.RESERVE with a buyer and with its change feed.
-- KEYS[1] stock (a string counter), KEYS[2] buyers (a set), KEYS[3] orders
-- (a stream); ARGV[1] buyer, ARGV[2] quantity, ARGV[3] order id,
-- ARGV[4] sale start (unix ms), ARGV[5] sale end (unix ms, 0: none).
-- Returns 0 ordered, 1 sold out, 2 already bought, 3 outside the window.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local start, stop = tonumber(ARGV[4]), tonumber(ARGV[5])
if now < start or (stop > 0 and now >= stop) then
  return 3
end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then
  return 2
end
local qty = tonumber(ARGV[2])
local stock = tonumber(redis.call('GET', KEYS[1]) or '0')
if stock < qty then
  return 1
end
redis.call('DECRBY', KEYS[1], qty)
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('XADD', KEYS[3], '*', 'order', ARGV[3], 'buyer', ARGV[1], 'qty', qty)
return 0
