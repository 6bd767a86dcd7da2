-- wrk script of the benchmark (bench/run.py). Environment:
--   BENCH_REQUESTS  file of requests, one a line: METHOD <tab> PATH [<tab> Name: value]...
--                   read once per wrk thread and cycled through, each thread from its own
--                   starting point, so per-request Lua work is one table index.
--   BENCH_DELAY_MS  optional: pause this many milliseconds (mean; fractions by drawing the
--                   floor or the ceiling) after each response on a connection, to pace the
--                   load below the peak (wrk2 is not packaged in Debian). Without it no
--                   delay() exists, and wrk runs flat out.
-- done() prints one line "BENCH_RESULT {json}" that bench/wrk.py parses.

local prepared = {}
local count = 0
local next_index = 0

local function split(line, separator)
  local fields = {}
  for field in string.gmatch(line, "[^" .. separator .. "]+") do
    fields[#fields + 1] = field
  end
  return fields
end

function init(args)
  local path = os.getenv("BENCH_REQUESTS")
  if path == nil then
    error("BENCH_REQUESTS is not set")
  end
  for line in io.lines(path) do
    local fields = split(line, "\t")
    local headers = {}
    for k = 3, #fields do
      local name, value = string.match(fields[k], "^([^:]+): (.*)$")
      headers[name] = value
    end
    count = count + 1
    prepared[count] = wrk.format(fields[1], fields[2], headers)
  end
  if count == 0 then
    error("no requests in " .. path)
  end
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16))
  next_index = math.random(count) - 1
end

function request()
  next_index = next_index % count + 1
  return prepared[next_index]
end

local mean_delay = tonumber(os.getenv("BENCH_DELAY_MS") or "")
if mean_delay ~= nil then
  local floor = math.floor(mean_delay)
  local fraction = mean_delay - floor
  function delay()
    if math.random() < fraction then
      return floor + 1
    end
    return floor
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, '
      .. '"write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, '
      .. '"p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
