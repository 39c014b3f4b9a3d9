-- The fleet benchmark's body (run by tests/bench/fleet_bench.sh under
-- pebble-env.py and store-env.py): arg[1] the luacme executable, arg[2]
-- nodes, arg[3] certificates.
local core = require "luacme.core"
local cjson = require "cjson"
local util = require "luacme.util"
local storage = require "luacme.storage"

local EXE, NODES, CERTS = arg[1], tonumber(arg[2]), tonumber(arg[3])
local DIR = os.getenv("LUACME_E2E_DIRECTORY")
local CA = os.getenv("LUACME_E2E_CA_FILE")
local WEBROOT = os.getenv("LUACME_E2E_WEBROOT")
local PEBBLE_LOG = os.getenv("LUACME_E2E_PEBBLE_LOG")
local ETCD = os.getenv("LUACME_TEST_ETCD")
local REDIS = os.getenv("LUACME_TEST_REDIS")

local work = assert(io.popen("mktemp -d")):read("l")
local skey = work .. "/storage.key"
assert(core.write_file(skey, core.random(32), 384))

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- A recipe (args = { "run", FILE, ... }) takes the global options
-- after its file name: cli.open reads them from its arguments.
local function node_argv(spec, node, args)
  local a = { EXE }
  local rest = 1
  if args[1] == "run" then
    a[2], a[3], rest = "run", args[2], 3
  end
  for _, x in ipairs({ "--directory", DIR, "--ca-bundle", CA, "--storage",
    spec, "--storage-key-file", skey, "--install-dir", work .. "/" .. node }) do
    a[#a + 1] = x
  end
  for i = rest, #args do a[#a + 1] = args[i] end
  return a
end

local function run(spec, node, args)
  local r = assert(core.spawn{ argv = node_argv(spec, node, args),
    timeout = 600 })
  if r.status ~= 0 then
    error(node .. ": " .. table.concat(args, " ") .. ": exit " ..
      tostring(r.status) .. "\n" .. r.stdout .. r.stderr)
  end
  return r.stdout
end

-- Each entry of jobs ({ node, args }) at the same moment; returns the
-- statuses and the wall time.
local function at_once(spec, jobs)
  local lines, waits = {}, {}
  for i, j in ipairs(jobs) do
    local parts = {}
    for _, a in ipairs(node_argv(spec, j[1], j[2])) do parts[#parts + 1] = q(a) end
    lines[#lines + 1] = table.concat(parts, " ") .. " >" ..
      q(work .. "/" .. j[1] .. ".out") .. " 2>&1 & p" .. i .. "=$!"
    waits[#waits + 1] = "wait $p" .. i .. "; echo $?"
  end
  local t0 = core.monotonic()
  local r = assert(core.spawn{ argv = { "sh", "-c", table.concat(lines, "\n") ..
    "\n" .. table.concat(waits, "\n") }, timeout = 1800 })
  local wall = core.monotonic() - t0
  local st = {}
  for s in r.stdout:gmatch("%d+") do st[#st + 1] = tonumber(s) end
  return st, wall
end

local function orders()
  local n = 0
  local f = io.open(PEBBLE_LOG, "rb")
  for line in f:lines() do
    if line:find("Added order", 1, true) then n = n + 1 end
  end
  f:close()
  return n
end

-- Requests the store's servers handled: etcd's gRPC counters (the JSON
-- gateway calls them too) summed over the members; Redis's commands.
local function etcd_requests()
  local n = 0
  for ep in ETCD:gmatch("[^;]+") do
    local r = assert(core.spawn{ argv = { "curl", "-s", ep .. "/metrics" },
      timeout = 30 })
    for v in r.stdout:gmatch("\ngrpc_server_handled_total{[^}]*} (%d+)") do
      n = n + tonumber(v)
    end
  end
  return n
end

local function redis_requests()
  local host, port = REDIS:match("redis://([^:]+):(%d+)")
  local c = assert(core.redis{ host = host, port = tonumber(port) })
  local info = assert(c:call("INFO", "stats"))
  c:close()
  -- Minus the INFO itself.
  return tonumber(info:match("total_commands_processed:(%d+)")) - 1
end

local function round(label, spec, count)
  local nodes = {}
  for i = 1, NODES do nodes[i] = label .. i end
  run(spec, nodes[1], { "account", "new", "--agree-tos" })
  -- Seed: the nodes issue their share of the certificates in parallel.
  local jobs = {}
  local names = {}
  for i = 1, CERTS do names[i] = string.format("%s%03d.fleet.test", label, i) end
  for n = 1, NODES do
    local script = {}
    for i = n, CERTS, NODES do
      script[#script + 1] = names[i]
    end
    local args = { "run", work .. "/seed.lua", WEBROOT, table.unpack(script) }
    jobs[#jobs + 1] = { nodes[n], args }
  end
  local st = at_once(spec, jobs)
  for i, s in ipairs(st) do
    assert(s == 0, nodes[i] .. " seeding failed: " ..
      tostring(io.open(work .. "/" .. nodes[i] .. ".out"):read("a")))
  end
  -- Every node installs the others' certificates (so that the round
  -- measures renewals, not first installs), then all wait until every
  -- certificate is due (bounded).
  jobs = {}
  for _, n in ipairs(nodes) do jobs[#jobs + 1] = { n, { "sync" } } end
  at_once(spec, jobs)
  local deadline = core.monotonic() + 300
  while true do
    local out = run(spec, nodes[1], { "--json", "list" })
    local due = 0
    for line in out:gmatch("[^\n]+") do
      local ev = cjson.decode(line)
      if ev.event == "cert" and ev.due_at and
        util.parse_rfc3339(ev.due_at) <= core.time() - 1 then
        due = due + 1
      end
    end
    if due == CERTS then break end
    assert(core.monotonic() < deadline, "certificates never fell due")
    core.sleep(2)
  end
  local o0, r0 = orders(), count()
  jobs = {}
  for _, n in ipairs(nodes) do jobs[#jobs + 1] = { n, { "renew" } } end
  local rst, wall = at_once(spec, jobs)
  local reqs = count() - r0
  local made = orders() - o0
  local bad = 0
  for i, s in ipairs(rst) do
    if s ~= 0 and s ~= 2 then
      bad = bad + 1
      io.stderr:write(nodes[i] .. " exit " .. s .. "\n" ..
        io.open(work .. "/" .. nodes[i] .. ".out"):read("a"))
    end
  end
  -- Every node has every certificate at the renewed generation.
  local installed = 0
  for _, n in ipairs(nodes) do
    for _, name in ipairs(names) do
      local m = core.read_file(work .. "/" .. n .. "/certs/" .. name ..
        "/meta.json", 1 << 20)
      if m and cjson.decode(m).fleet_gen == 2 then installed = installed + 1 end
    end
  end
  return { label = label, orders = made, wall = wall, reqs = reqs,
    installed = installed, failed = bad }
end

assert(core.write_file(work .. "/seed.lua", [[
-- Issue each name given (arg[2..]) with the webroot arg[1], through the
-- same options as the luacme command.
local m <close>, args = require("luacme.cli").open(arg)
local root = args[1]
for i = 2, #args do
  assert(m:issue({ names = { args[i] }, hooks = { "webroot:root=" .. root } }))
end
]], 420))

local _ = storage
local rows = {
  round("etcd", "etcd:endpoints=" .. ETCD .. ",prefix=/bench", etcd_requests),
  round("redis", "redis:url=" .. REDIS .. ",prefix=bench:", redis_requests),
}
print(string.format("\nluacme %s: %d nodes x %d certificates, every node " ..
  "runs `renew` at once (all due)", core.VERSION, NODES, CERTS))
print(string.format("%-6s %8s %10s %16s %12s %18s %8s", "store", "orders",
  "wall (s)", "store requests", "per cert", "installed", "failed"))
local ok = true
for _, r in ipairs(rows) do
  print(string.format("%-6s %8d %10.1f %16d %12.1f %11d / %-5d %8d", r.label,
    r.orders, r.wall, r.reqs, r.reqs / CERTS, r.installed, NODES * CERTS,
    r.failed))
  ok = ok and r.orders == CERTS and r.installed == NODES * CERTS and
    r.failed == 0
end
print(ok and "ok: one order per certificate, fleet-wide; every node " ..
  "installed every certificate" or "FAILED")
os.execute("rm -rf " .. q(work))
return ok and 0 or 1
