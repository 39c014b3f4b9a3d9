-- Many certificates in one run (the renew side of tests/bench/bench.sh),
-- under tests/e2e/pebble-env.py: for each case, a fresh state directory
-- with an account and N certificates issued beforehand (not measured;
-- issued 16 at a time through the recipe API), then a separate luacme
-- process (renew_probe.lua) renews all of them with --force at the
-- case's parallelism and reports its wall time, its open file
-- descriptors (before, most during, after) and its peak RSS.
--   luacme run tests/bench/bench_renew.lua EXE [CASES [ROWS]]
-- CASES: "N:P,N:P" (default 50:1,50:4,50:8,500:8); ROWS: a file to
-- append the rows of bench.lua's table to (tab-separated).
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/../e2e/?.lua;" .. package.path
local E = require "e2e"
local core = require "luacme.core"
local manage = require "luacme.manage"
local output = require "luacme.output"
local sched = require "luacme.sched"

local exe = assert(arg[1], "usage: bench_renew.lua EXE [CASES]")
local spec = arg[2] or "50:1,50:4,50:8,500:8"
local rows_file = arg[3]

local function setup(n, tag)
  local state = E.scratch() .. "/state"
  local m <close> = assert(manage.open{ state = state,
    directory = E.env.directory, ca_file = E.env.ca_file, agree_tos = true,
    out = output.new{ level = -1 } })
  assert(m:account_new{})
  local fns = {}
  for i = 1, n do
    local name = E.name(tag .. "c" .. i .. "x")
    fns[i] = function()
      return m:issue{ domains = { name },
        hooks = { "webroot:root=" .. E.env.webroot } }
    end
  end
  for i, r in ipairs(sched.all(fns, 16)) do
    if not r[1] then error("setup issue " .. i .. ": " .. tostring(r[2]), 0) end
  end
  return state
end

local function probe(state, parallel)
  local r = assert(core.spawn{ argv = { exe, "run", here .. "/renew_probe.lua",
    tostring(parallel), "--state", state, "--directory", E.env.directory,
    "--ca-bundle", E.env.ca_file }, timeout = 900 })
  io.stderr:write(r.stderr)
  local line = r.stdout:match("renewed=[^\n]*")
  if r.status ~= 0 or not line then
    error("renew_probe failed (" .. tostring(r.status) .. "): " ..
      r.stdout .. r.stderr, 0)
  end
  local f = {}
  for k, v in line:gmatch("([%w_]+)=(%S+)") do f[k] = tonumber(v) or v end
  return f
end

local rows = {}
local k = 0
for n, p in spec:gmatch("(%d+):(%d+)") do
  k = k + 1
  n, p = tonumber(n), tonumber(p)
  local state = setup(n, "r" .. k)
  local f = probe(state, p)
  f.n, f.p = n, p
  rows[#rows + 1] = f
end

print("renew --force of many certificates in one process " ..
  "(renew_probe.lua: m:renew{force = true, parallel = P})")
print(string.format("%-22s %9s %9s %20s %10s  %s", "case", "renewed",
  "wall s", "fds before/max/after", "peak RSS", "target"))
for _, r in ipairs(rows) do
  local target, met = "", nil
  r.rss_kb = tonumber(r.rss_kb) or math.huge
  if r.n == 50 and r.p > 1 then
    target, met = "<= 1.5 s", r.seconds <= 1.5
  elseif r.n >= 500 then
    target = "<= 30 MiB RSS, fds not growing"
    -- The pool's wake-up socket pair and one kept connection stay.
    met = r.rss_kb <= 30 * 1024 and r.fds_after <= r.fds_before + 4 and
      r.fds_max <= r.fds_before + 2 * r.p + 8
  elseif r.p == 1 then
    target = "(one at a time, for comparison)"
  end
  print(string.format("%-22s %5d/%-3d %9.3f %20s %7.1f MiB  %s%s",
    r.n .. " certs, parallel " .. r.p, r.renewed, r.n, r.seconds,
    r.fds_before .. "/" .. r.fds_max .. "/" .. r.fds_after,
    (tonumber(r.rss_kb) or 0) / 1024, target,
    met == nil and "" or (met and ": met" or ": MISSED")))
end

-- The rows of the one table bench.sh prints (bench.lua table).
if rows_file then
  local f = assert(io.open(rows_file, "a"))
  local function row(case, value, unit, target, note)
    f:write(table.concat({ case, value, unit, target, "", note or "" }, "\t"),
      "\n")
  end
  for _, r in ipairs(rows) do
    local fds = r.fds_before .. "/" .. r.fds_max .. "/" .. r.fds_after
    local rss = string.format("%.1f MiB", (tonumber(r.rss_kb) or 0) / 1024)
    if r.n >= 500 then
      row(r.n .. " certs renew --force, parallel " .. r.p .. ": peak RSS",
        string.format("%.1f", (tonumber(r.rss_kb) or 0) / 1024), "MiB",
        "<= 30", string.format("%d renewed in %.1f s", r.renewed, r.seconds))
      row(r.n .. " certs: fds before/most/after", fds, "", "no growth",
        "socket pair + 1 kept connection stay")
    else
      row(r.n .. " certs renew --force, parallel " .. r.p, string.format(
        "%.2f", r.seconds), "s", r.p > 1 and "<= 1.5" or "(was 5.5)",
        "fds " .. fds .. ", RSS " .. rss)
    end
  end
  f:close()
end
