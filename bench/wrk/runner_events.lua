-- Simulated runners posting events: POST /api/runner/runs/<runId>/events.
--
-- Run wrk with as many threads as connections (-t N -c N): each wrk thread is then one runner
-- on one connection, posting its events one after another to its own run, as a real runner does.
-- Settings come from the environment (wrk passes script arguments only to init(), too late for
-- setup()):
--   WRK_RUNS_FILE   lines "<runId> <bearer token or ->", one per runner (thread), reused cyclically
--   WRK_BATCH       0: one event per request ({"eventType": ...}); N: {"events": [N events]}
--   WRK_KEY_PREFIX  makes idempotency keys unique across wrk invocations (default "k")
-- Every event carries an idempotency key "<prefix>-<thread>-<request>[-<index>]", so a server
-- that deduplicates keys stores each event once. done() prints one line "WRK_JSON {...}" with
-- the request count, the error counts and latency percentiles in microseconds.

local runs = {}
local next_thread = 1

local function load_runs()
  local path = os.getenv("WRK_RUNS_FILE")
  assert(path, "WRK_RUNS_FILE is not set")
  for line in io.lines(path) do
    local run_id, token = line:match("^(%S+)%s+(%S+)")
    if run_id then
      runs[#runs + 1] = { run_id = run_id, token = token }
    end
  end
  assert(#runs > 0, "WRK_RUNS_FILE lists no run")
end

function setup(thread)
  if #runs == 0 then
    load_runs()
  end
  local run = runs[(next_thread - 1) % #runs + 1]
  thread:set("tid", next_thread)
  thread:set("run_id", run.run_id)
  thread:set("token", run.token)
  next_thread = next_thread + 1
end

local path, headers, batch, prefix
local counter = 0
local filler = string.rep("x", 40)

function init(args)
  path = "/api/runner/runs/" .. run_id .. "/events"
  headers = { ["Content-Type"] = "application/json" }
  if token ~= "-" then
    headers["Authorization"] = "Bearer " .. token
  end
  batch = tonumber(os.getenv("WRK_BATCH") or "0")
  prefix = (os.getenv("WRK_KEY_PREFIX") or "k") .. "-" .. tid .. "-"
end

local function event_json(key, step)
  return '{"eventType":"log","message":"step ' .. step .. " " .. filler .. '",'
    .. '"metadata":{"step":' .. step .. '},"idempotencyKey":"' .. key .. '"}'
end

function request()
  counter = counter + 1
  local body
  if batch == 0 then
    body = event_json(prefix .. counter, counter)
  else
    local parts = {}
    for i = 1, batch do
      parts[i] = event_json(prefix .. counter .. "-" .. i, i)
    end
    body = '{"events":[' .. table.concat(parts, ",") .. "]}"
  end
  return wrk.format("POST", path, headers, body)
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
