-- The benchmark's client side, run by tests/bench/bench.sh under
-- tests/e2e/pebble-env.py: registers an account (not measured), then
-- issues ROUNDS certificates for one name and ROUNDS for twenty names,
-- each for fresh names, and prints requests per issuance, wall time
-- (median, min, max) and peak RSS.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/../e2e/?.lua;" .. package.path
local E = require "e2e"
local core = require "luacme.core"

local rounds = tonumber(arg[1]) or 5

-- Requests the client has made so far, from its own counter.
local function client_requests(c)
  local s = type(c.stats) == "function" and c:stats() or c.stats
  if type(s) == "table" then return s.requests end
  return nil
end

-- Requests Pebble has handled so far (it logs each before handling it;
-- GET /dir included).
local function pebble_requests()
  return E.pebble_count(" %-> calling handler%(%)")
end

local function issue(c, names)
  local r, err = E.lib_issue(c, names, E.webroot_solver())
  if not r then error("issuance failed: " .. tostring(err), 0) end
  return r
end

local function median(t)
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  local n = #s
  if n % 2 == 1 then return s[(n + 1) // 2] end
  return (s[n // 2] + s[n // 2 + 1]) / 2
end

local function vmhwm()
  local f = io.open("/proc/self/status")
  if not f then return "?" end
  local s = f:read("a")
  f:close()
  return s:match("VmHWM:%s*(%d+ kB)") or "?"
end

local c = E.account()
local results = {}
for _, case in ipairs({ { label = "1 name", n = 1, reqs_max = 9, t_max = 0.5 },
                        { label = "20 names", n = 20, reqs_max = 48,
                          t_max = 1.0 } }) do
  local times, creqs, preqs = {}, {}, {}
  for i = 1, rounds do
    local names = E.names("b" .. case.n .. "r" .. i .. "x", case.n)
    local c0, p0 = client_requests(c), pebble_requests()
    local t0 = core.monotonic()
    issue(c, names)
    times[i] = core.monotonic() - t0
    local c1 = client_requests(c)
    creqs[i] = c1 and c0 and (c1 - c0) or nil
    preqs[i] = pebble_requests() - p0
  end
  local cr = #creqs == rounds and median(creqs) or nil
  results[#results + 1] = {
    label = case.label, median = median(times),
    min = math.min(table.unpack(times)), max = math.max(table.unpack(times)),
    creq = cr, preq = median(preqs),
    preq_min = math.min(table.unpack(preqs)),
    preq_max = math.max(table.unpack(preqs)),
    reqs_max = case.reqs_max, t_max = case.t_max,
  }
end

print(string.format("luacme %s against Pebble, %d rounds per case "
  .. "(PEBBLE_VA_NOSLEEP=1, PEBBLE_WFE_NONCEREJECT=0, account registered)",
  core.VERSION or "?", rounds))
print(string.format("%-9s %22s %22s %12s %18s  %s", "case", "requests (client)",
  "requests (Pebble log)", "median s", "min..max s", "target"))
for _, r in ipairs(results) do
  local creq = r.creq and string.format("%g", r.creq) or "n/a"
  local verdict = ((r.creq or r.preq) <= r.reqs_max and r.median < r.t_max)
    and "met" or "MISSED"
  print(string.format("%-9s %22s %22s %12.3f %18s  <= %d req, < %.1f s: %s",
    r.label, creq,
    string.format("%g (%d..%d)", r.preq, r.preq_min, r.preq_max),
    r.median, string.format("%.3f..%.3f", r.min, r.max),
    r.reqs_max, r.t_max, verdict))
end
print("peak RSS (VmHWM at the end): " .. vmhwm())
