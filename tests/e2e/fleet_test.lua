-- A fleet: nodes sharing their state in etcd (a 3-member cluster) or
-- Redis, each installing into its own directory, against a real Pebble
-- (certificates valid for 60 s, so they fall due while the test runs).
-- Runs under pebble-env.py and tests/fleet/store-env.py.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local t = require "testlib"
local core = require "luacme.core"
local cjson = require "cjson"
local util = require "luacme.util"
local storage = require "luacme.storage"
local E = require "e2e"
local L = require "cli_lib"

local ETCD = assert(os.getenv("LUACME_TEST_ETCD"), "run under store-env.py")
local REDIS = assert(os.getenv("LUACME_TEST_REDIS"))
local ETCD_PIDS = {}
for p in os.getenv("LUACME_TEST_ETCD_PIDS"):gmatch("%d+") do
  ETCD_PIDS[#ETCD_PIDS + 1] = tonumber(p)
end

local dir = E.scratch()
local skey = dir .. "/storage.key"
E.writefile(skey, core.random(32))
core.chmod(skey, 384)

-- The deploy hook every node runs: one line "NODE NAME SERIAL" per
-- certificate installed, in the log the node's environment names.
local hook = dir .. "/deploy.sh"
E.writefile(hook, "#!/bin/sh\n" ..
  "s=$(openssl x509 -noout -serial -in \"$LUACME_CERT_FILE\")\n" ..
  "echo \"$NODE $LUACME_CERT_NAME ${s#serial=}\" >> \"$HOOK_LOG\"\n")
core.chmod(hook, 493)

local function etcd_spec(prefix)
  return "etcd:endpoints=" .. ETCD .. ",prefix=" .. prefix
end

local function redis_spec(prefix)
  return "redis:url=" .. REDIS .. ",prefix=" .. prefix
end

-- argv of one node: the CA, the store, its own install directory.
local function node_argv(spec, node, args, o)
  o = o or {}
  local argv = { L.exe, "--directory", E.env.directory, "--ca-bundle",
    E.env.ca_file, "--storage", spec, "--install-dir",
    o.dir or (dir .. "/" .. node) }
  if not o.no_key then
    argv[#argv + 1] = "--storage-key-file"
    argv[#argv + 1] = o.key or skey
  end
  for _, a in ipairs(o.extra or {}) do argv[#argv + 1] = a end
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return argv
end

local function env_of(node, log)
  return { NODE = node, HOOK_LOG = log or (dir .. "/hooks.log") }
end

-- Run one node; returns status, stdout, stderr.
local function run(spec, node, args, o)
  o = o or {}
  local r = assert(core.spawn{ argv = node_argv(spec, node, args, o),
    env = L.env(env_of(node, o.log)), timeout = o.timeout or 180 })
  L.outputs[#L.outputs + 1] = r.stdout
  L.outputs[#L.outputs + 1] = r.stderr
  assert(not r.timed_out, "luacme timed out")
  return r.status or (128 + (r.signal or 0)), r.stdout, r.stderr
end

local function must(spec, node, args, o)
  local st, out, err = run(spec, node, args, o)
  if st ~= ((o and o.want) or 0) then
    error(node .. ": luacme " .. table.concat(args, " ") .. ": exit " ..
      st .. "\n" .. out .. err, 2)
  end
  return out, err
end

-- Run several nodes at the same moment from one shell; returns their
-- exit statuses in order.
local function at_once(spec, nodes, args, log)
  local lines = {}
  for i, node in ipairs(nodes) do
    local parts = { "NODE=" .. node, "HOOK_LOG=" .. E.q(log) }
    for _, a in ipairs(node_argv(spec, node, args)) do
      parts[#parts + 1] = E.q(a)
    end
    lines[#lines + 1] = table.concat(parts, " ") .. " >" ..
      E.q(dir .. "/" .. node .. ".out") .. " 2>&1 & p" .. i .. "=$!"
  end
  local waits = {}
  for i = 1, #nodes do
    waits[#waits + 1] = "wait $p" .. i .. "; echo $?"
  end
  local r = assert(core.spawn{ argv = { "sh", "-c",
    table.concat(lines, "\n") .. "\n" .. table.concat(waits, "\n") },
    env = L.env(), timeout = 600 })
  local st = {}
  for s in r.stdout:gmatch("%d+") do st[#st + 1] = tonumber(s) end
  return st
end

local function orders() return E.pebble_count("Added order") end

-- Lines of the hook log: counts per "node name" and per node.
local function hook_counts(log)
  local per, serials = {}, {}
  for line in (E.readfile(log) or ""):gmatch("[^\n]+") do
    local node, name, serial = line:match("^(%S+) (%S+) (%S+)$")
    local k = node .. " " .. name
    per[k] = (per[k] or 0) + 1
    serials[k] = serial
  end
  return per, serials
end

-- Wait (bounded) until every certificate of node is due, as list says.
local function wait_due(spec, node, n)
  local ok = L.wait_for(function()
    local out = must(spec, node, { "--json", "list" })
    local due = 0
    for _, ev in ipairs(L.events(L.json(out), "cert")) do
      if ev.due_at and util.parse_rfc3339(ev.due_at) <= core.time() - 1 then
        due = due + 1
      end
    end
    if due == n then return true end
    core.sleep(1)
    return false
  end, 120)
  t.ok(ok, "the certificates fell due")
end

local function the_files(d, name)
  return L.files(d, name)
end

-- Every node's installed set of name is complete and the store's.
local function check_installed(nodes, names, serials)
  for _, node in ipairs(nodes) do
    for _, name in ipairs(names) do
      local cur = the_files(dir .. "/" .. node, name)
      local serial = L.check_set(cur, node .. "/" .. name)
      if serials[name] then
        t.eq(serial, serials[name], node .. " has the fleet's " .. name)
      end
      serials[name] = serial
    end
  end
end

-- A fleet of nodes renewing at once: one order per due certificate.
local function fleet_round(spec, nodes, ncerts, prefix)
  local names = E.names(prefix, ncerts)
  local log = dir .. "/" .. prefix .. "-hooks.log"
  local first = nodes[1]
  must(spec, first, { "account", "new", "--agree-tos" })
  for _, n in ipairs(names) do
    must(spec, first, { "issue", "-d", n, "--hook", L.webroot(),
      "--deploy-hook", "command:cmd=" .. hook }, { log = log })
  end
  -- The other nodes install the first generation (and run their hooks).
  for i = 2, #nodes do
    must(spec, nodes[i], { "sync" }, { log = log })
    must(spec, nodes[i], { "sync" }, { log = log, want = 2 })
  end
  local per = hook_counts(log)
  for _, node in ipairs(nodes) do
    for _, n in ipairs(names) do
      t.eq(per[node .. " " .. n], 1, node .. " deployed " .. n .. " once")
    end
  end
  wait_due(spec, first, ncerts)
  E.writefile(log, "")
  local before = orders()
  local st = at_once(spec, nodes, { "renew" }, log)
  local outs = {}
  for i, node in ipairs(nodes) do
    outs[i] = E.readfile(dir .. "/" .. node .. ".out")
  end
  local all_out = table.concat(outs, "\n")
  -- Every node changed: it renewed, or installed what another renewed.
  for i = 1, #nodes do
    t.eq(st[i], 0, nodes[i] .. " exit\n" .. all_out)
  end
  t.eq(orders() - before, ncerts, "one order per certificate, fleet-wide\n" ..
    all_out)
  local serials = {}
  check_installed(nodes, names, serials)
  per = hook_counts(log)
  for _, node in ipairs(nodes) do
    for _, n in ipairs(names) do
      t.eq(per[node .. " " .. n], 1, node .. " deployed the renewed " .. n ..
        " once\n" .. all_out)
    end
  end
  return names, log
end

local etcd_names

t.test("etcd: 5 nodes x 10 certificates renew at once: 10 orders, every " ..
  "node installs all, one deploy per change per node", function()
  local spec = etcd_spec("/fleet")
  etcd_names = fleet_round(spec, { "e1", "e2", "e3", "e4", "e5" }, 10, "ef")
  -- Nothing newer: sync says so.
  for _, node in ipairs({ "e1", "e3" }) do
    must(spec, node, { "sync" }, { want = 2 })
  end
end)

t.test("redis: 3 nodes x 3 certificates renew at once: 3 orders",
  function()
  fleet_round(redis_spec("fleet:"), { "r1", "r2", "r3" }, 3, "rf")
end)

t.test("a private key in the store is sealed: without the key file it " ..
  "is not usable", function()
  local spec = etcd_spec("/fleet")
  local b = assert(storage.open(spec))
  local raw = assert(b:get("certs/" .. etcd_names[1]))
  local rec = cjson.decode(raw)
  t.eq(rec.key.enc, "A256GCM")
  t.ok(not raw:find("PRIVATE KEY", 1, true), "no PEM key in the record")
  local sealed = core.b64url_decode(rec.key.data)
  t.eq(core.key_load(sealed), nil, "the sealed bytes are no key")
  local araw = assert(b:get("accounts/" .. assert(
    require("luacme.state").ca_host(E.env.directory))))
  t.ok(not araw:find("PRIVATE KEY", 1, true), "the account key is sealed")
  b:close()
  -- A node without the key file, and one with another key: nothing
  -- installed, a clear error.
  local st, out, err = run(spec, "nokey", { "sync" }, { no_key = true })
  t.eq(st, 1, out .. err)
  t.match(err, "storage%-key%-file")
  t.eq(E.readfile(dir .. "/nokey/certs/" .. etcd_names[1] ..
    "/privkey.pem"), nil, "no key installed")
  local other = dir .. "/other.key"
  E.writefile(other, core.random(32))
  st, out, err = run(spec, "otherkey", { "sync" }, { key = other })
  t.eq(st, 1, out .. err)
  t.match(err, "cannot decrypt")
  -- Plaintext needs the explicit option, and says so.
  st, out, err = run(etcd_spec("/plain"), "plain", { "account", "new",
    "--agree-tos" }, { no_key = true })
  t.eq(st, 1, out .. err)
  t.match(err, "unencrypted")
  t.eq(core.stat(dir .. "/plain/accounts/" .. assert(require(
    "luacme.state").ca_host(E.env.directory)) .. "/account.key"), nil,
    "no account made")
  st, out, err = run(etcd_spec("/plain"), "plain2", { "account", "new",
    "--agree-tos" }, { no_key = true, extra = { "--storage-plaintext-keys" } })
  t.eq(st, 0, out .. err)
  t.match(err, "unencrypted")
end)

-- Every file under d (recursively, links as their targets): path -> data.
local function snapshot(d)
  local r = assert(core.spawn{ argv = { "sh", "-c", "cd " .. E.q(d) ..
    " && find . -type f -o -type l | sort | while read f; do " ..
    "echo \"== $f $(readlink \"$f\")\"; cat \"$f\" 2>/dev/null; done" },
    timeout = 30 })
  return r.stdout
end

t.test("the store unreachable: exit 1 with a clear error, installed " ..
  "files untouched", function()
  local before = snapshot(dir .. "/e2")
  local dead = "etcd:endpoints=http://127.0.0.1:9;http://127.0.0.1:7," ..
    "prefix=/fleet"
  local st, out, err = run(dead, "e2", { "renew" })
  t.eq(st, 1, out .. err)
  t.match(err, "etcd http://127%.0%.0%.1:%d+: ")
  st, out, err = run(dead, "e2", { "sync" })
  t.eq(st, 1, out .. err)
  st, out, err = run("redis:url=redis://127.0.0.1:9/0", "e2", { "renew" })
  t.eq(st, 1, out .. err)
  t.match(err, "redis 127%.0%.0%.1:9")
  t.eq(snapshot(dir .. "/e2"), before, "nothing changed on the node")
end)

E.writefile(dir .. "/block.lua", E.readfile(here .. "/block_hook.lua"))

t.test("kill -9 of the lock holder mid-issuance: another node completes " ..
  "after the TTL, nothing torn", function()
  local spec = etcd_spec("/fleet")
  local ttl = { "--lock-ttl", "5" }
  local n = E.name("killed")
  must(spec, "k1", { "issue", "-d", n, "--hook", L.webroot() },
    { extra = ttl })
  must(spec, "k2", { "sync" })
  local s1 = L.check_set(the_files(dir .. "/k2", n), "k2 first")
  -- A second, fresh name: its authorization is pending, so the
  -- blocking hook is reached (Pebble may reuse the first one's).
  local marker, release = dir .. "/k.marker", dir .. "/k.release"
  local blocking = dir .. "/block.lua:root=" .. E.env.webroot ..
    ",marker=" .. marker .. ",release=" .. release
  local args = { "issue", "--force", "--name", n, "-d", n, "-d",
    E.name("killed"), "--hook", blocking }
  local argv = node_argv(spec, "k1", args, { extra = ttl })
  local pid, o1, e1 = L.spawn_bg(nil, { table.unpack(argv, 2) })
  t.ok(L.wait_for(function() return (E.readfile(marker) or "") ~= "" end,
    60), "k1 is mid-issuance\n" .. tostring(E.readfile(o1)) ..
    tostring(E.readfile(e1)))
  L.kill(pid, 9)
  local t0 = core.monotonic()
  E.writefile(release, "go")
  local out, err = must(spec, "k2", args, { extra = ttl })
  local waited = core.monotonic() - t0
  t.ok(waited >= 2, "k2 waited for the dead holder's lock (" .. waited ..
    " s)\n" .. out .. err)
  local s2 = L.check_set(the_files(dir .. "/k2", n), "k2 renewed")
  t.ok(s2 ~= s1, "a new certificate")
  -- k1 died before installing: its old set is whole; sync brings the new.
  t.eq(L.check_set(the_files(dir .. "/k1", n), "k1 after the kill"), s1)
  must(spec, "k1", { "sync", n })
  t.eq(L.check_set(the_files(dir .. "/k1", n), "k1 synced"), s2)
end)

-- A child of store-env.py that exited stays a zombie until it is
-- reaped there: gone means no process or state Z.
local function gone(pid)
  local stat = E.readfile("/proc/" .. pid .. "/stat")
  return stat == nil or stat:match("^%d+ %b() (%a)") == "Z"
end

t.test("one etcd member stopped: renew and sync still work", function()
  -- The first endpoint of the spec: the client must pass it over.
  local pid = ETCD_PIDS[1]
  os.execute("kill -TERM " .. pid)
  t.ok(L.wait_for(function() return gone(pid) end, 30), "member stopped")
  local spec = etcd_spec("/fleet")
  local n = etcd_names[2]
  local before = L.check_set(the_files(dir .. "/e3", n), "e3")
  must(spec, "e3", { "renew", "--force", n })
  local after = L.check_set(the_files(dir .. "/e3", n), "e3 renewed")
  t.ok(after ~= before, "renewed with a member down")
  must(spec, "e4", { "sync" })
  t.eq(L.check_set(the_files(dir .. "/e4", n), "e4"), after)
end)

t.test("storage copy: a node's directory into a store and back",
  function()
  local spec = etcd_spec("/fleet")
  local back = dir .. "/copied"
  must(spec, "e5", { "storage", "copy", "--from", spec, "--to",
    "file:dir=" .. back })
  local spec2 = redis_spec("copy:")
  must(spec, "e5", { "storage", "copy", "--from", "file:dir=" .. back,
    "--to", spec2 })
  must(spec2, "c1", { "sync" })
  for _, n in ipairs(etcd_names) do
    t.eq(L.check_set(the_files(dir .. "/c1", n), "c1 " .. n),
      L.check_set(the_files(back, n), "copied " .. n))
  end
end)

