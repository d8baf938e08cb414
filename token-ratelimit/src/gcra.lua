-- GCRA over every bucket of one check, all or nothing, in one round trip (token-ratelimit).
--
-- KEYS[i]        the bucket keys; each holds its TAT in microseconds since the Unix epoch.
-- ARGV[1]        the cost (an integer >= 0, at most every limit).
-- ARGV[2i]       key i's emission interval T, in microseconds (>= 1).
-- ARGV[2i + 1]   key i's capacity C = limit * T, in microseconds.
--
-- Time is the server's (TIME), so instances with skewed clocks agree. Returns
-- { denied, retry_after, remaining_1, reset_after_1, ..., remaining_n, reset_after_n } where
-- denied is 0 when allowed or else the (1-based) index of the limit with the longest wait,
-- retry_after that wait in microseconds, and each limit's remaining units and time until full
-- (microseconds) after the check; a denial charges nothing and reports the buckets unchanged.
-- On success every bucket is SET to its new TAT with a TTL of the time until it is full again
-- (at least 1 ms), so keys vanish when they would mean "full" anyway. Cost 0 only reads.
--
-- Numbers are Lua doubles: microsecond instants (~1.8e15) and windows (<= 3.2e13) stay exact.

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local cost = tonumber(ARGV[1])
local n = #KEYS

local tats = {}
local afters = {}
local denied = 0
local longest = 0
for i = 1, n do
  local interval = tonumber(ARGV[2 * i])
  local capacity = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', KEYS[i]) or 0) or 0
  if tat < now then
    tat = now
  end
  tats[i] = tat
  local after = tat + cost * interval
  afters[i] = after
  local retry = after - now - capacity
  if retry > 0 and retry > longest then
    denied = i
    longest = retry
  end
end

local reply = { denied, longest }
for i = 1, n do
  local interval = tonumber(ARGV[2 * i])
  local capacity = tonumber(ARGV[2 * i + 1])
  local tat = tats[i]
  if denied == 0 then
    tat = afters[i]
  end
  local ahead = tat - now
  reply[2 * i + 1] = math.floor((capacity - ahead) / interval)
  reply[2 * i + 2] = ahead
end

if denied == 0 and cost > 0 then
  for i = 1, n do
    local ttl_ms = math.ceil((afters[i] - now) / 1000)
    if ttl_ms < 1 then
      ttl_ms = 1
    end
    redis.call('SET', KEYS[i], string.format('%.0f', afters[i]), 'PX', ttl_ms)
  end
end

return reply
