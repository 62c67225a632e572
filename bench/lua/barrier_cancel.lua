-- The cancel of barrier_try.lua: writes the rollback marker (so a try that
-- arrives later is refused) and returns the units only if the try ran and
-- reserved them. Same keys; ARGV[1]: barrier TTL in seconds.
if not redis.call('SET', KEYS[3], 1, 'NX', 'EX', ARGV[1]) then
  return 'REPLAY'
end
local held = redis.call('GET', KEYS[2])
if held then
  redis.call('INCRBY', KEYS[1], tonumber(held))
  return 'CANCELLED'
end
return 'FENCED'
