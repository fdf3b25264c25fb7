-- User reads: GET a random path from a list, with a session bearer token.
--
-- Environment (see runner_events.lua for why not script arguments):
--   WRK_PATHS_FILE  one request path per line (e.g. /api/design/runs?limit=20&cursor=...)
--   WRK_TOKEN       the session token sent as "Authorization: Bearer <token>"
-- done() prints one line "WRK_JSON {...}" like runner_events.lua.

local paths = {}
local headers
local next_thread = 1

function setup(thread)
  thread:set("tid", next_thread)
  next_thread = next_thread + 1
end

function init(args)
  for line in io.lines(os.getenv("WRK_PATHS_FILE")) do
    if #line > 0 then
      paths[#paths + 1] = line
    end
  end
  assert(#paths > 0, "WRK_PATHS_FILE lists no path")
  headers = { ["Authorization"] = "Bearer " .. os.getenv("WRK_TOKEN") }
  math.randomseed(os.time() * 100 + tid)
end

function request()
  return wrk.format("GET", paths[math.random(#paths)], headers)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,'
      .. '"status":%d,"timeout":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
