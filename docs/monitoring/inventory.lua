-- INFO inventory's fields as name/value pairs, for prometheus-redis-exporter's
-- -script option: each becomes redis_script_values{key="inventory_..."}.
-- (The exporter reads INFO ALL, which leaves module sections out.)
local out = {}
for line in string.gmatch(redis.call('INFO', 'inventory'), '[^\r\n]+') do
  local name, value = string.match(line, '^([%w_]+):(%-?%d+)$')
  if name then
    out[#out + 1] = name
    out[#out + 1] = value
  end
end
return out
