-- Crashes and interruptions of the luacme command during an issuance
-- that replaces a working certificate: kill -9 after each kind of
-- --json event, inside a challenge hook that blocks until killed, and
-- inside a deploy hook after the new set is installed; SIGINT and
-- SIGTERM inside a challenge hook. The previous certificate is never
-- damaged (it stays, or the new complete set replaces it with the old
-- one as *.prev), hooks are cleaned up on a signal, the lock goes with
-- the process, and the next run succeeds.
-- The blocking hooks order a fresh name under the same certificate name
-- (--name), so the CA always has a challenge for them; the scenario runs
-- with PEBBLE_AUTHZREUSE=0 so the other runs deploy challenges too.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local t = require "testlib"
local core = require "luacme.core"
local cjson = require "cjson"
local E = require "e2e"
local L = require "cli_lib"

local dir = E.scratch()
local state = L.state()
local NAME = E.name("crash")

-- http-01 into the webroot, then wait (forever unless released); the
-- marker file tells the test where it is.
E.writefile(dir .. "/block.lua", E.readfile(here .. "/block_hook.lua"))

E.writefile(dir .. "/block_deploy.lua", [[
local core = require "luacme.core"
local M = { options = { { name = "marker", required = true },
  { name = "release" } } }
function M.deploy_cert(cert, o)
  assert(core.write_file(o.marker, "installed " .. cert.name, 420))
  while not (o.release and core.stat(o.release)) do core.sleep(0.05) end
  return true
end
return M
]])

local marker_n = 0
local function marker()
  marker_n = marker_n + 1
  return dir .. "/marker" .. marker_n
end

local function block_hook(m)
  return dir .. "/block.lua:root=" .. E.env.webroot .. ",marker=" .. m
end

-- The current set through openssl, and its serial.
local function current()
  local cur, prev = L.files(state, NAME)
  return cur, prev, L.check_set(cur, "current set")
end

local function no_new_files()
  for _, f in ipairs(L.FILES) do
    if core.stat(state .. "/certs/" .. NAME .. "/" .. f .. ".new") then
      return false
    end
  end
  return true
end

local function same(a, b, what)
  for _, f in ipairs(L.FILES) do
    t.eq(a[f], b[f], (what or "") .. " " .. f)
  end
end

t.test("setup: a working certificate", function()
  L.must(state, { "issue", "-d", NAME, "--hook", L.webroot(),
    "--agree-tos" })
  current()
end)

t.test("kill -9 inside a blocking challenge hook leaves it untouched",
  function()
  local before = current()
  local m = marker()
  local pid, out = L.spawn_bg(state, { "--json", "issue", "-d",
    E.name("fresh"), "--name", NAME, "--hook", block_hook(m) })
  t.ok(L.wait_text(m, "deployed", 60), "the hook was reached: " ..
    (E.readfile(out) or ""))
  L.kill(pid, "KILL")
  local after = L.files(state, NAME)
  same(after, before, "after kill -9:")
  t.ok(no_new_files())
  t.eq(core.stat(m .. ".cleaned"), nil, "SIGKILL allows no cleanup")
  -- The lock died with the process: the next run does not wait.
  local t0 = core.monotonic()
  L.must(state, { "issue", "-d", NAME, "--force", "--hook", L.webroot(),
    "--lock-timeout", "5" })
  t.ok(core.monotonic() - t0 < 30)
  local cur, prev = current()
  same(prev, before, "previous kept as .prev:")
  t.ok(cur["cert.pem"] ~= before["cert.pem"])
end)

t.test("kill -9 in a deploy hook: the new set is complete", function()
  local before = current()
  local m = marker()
  local pid = L.spawn_bg(state, { "issue", "-d", NAME, "--force",
    "--hook", L.webroot(), "--deploy-hook", dir .. "/block_deploy.lua:" ..
    "marker=" .. m })
  t.ok(L.wait_text(m, "installed", 60), "the deploy hook was reached")
  L.kill(pid, "KILL")
  local cur, prev = current()
  t.ok(cur["cert.pem"] ~= before["cert.pem"], "the new one is installed")
  same(prev, before, "the old one is .prev:")
  t.ok(no_new_files())
  -- The stored settings include the deploy hook: drop it and renew.
  L.must(state, { "issue", "-d", NAME, "--force", "--hook", L.webroot() })
  current()
end)

-- kill -9 right after the first event of each kind: wherever it lands,
-- the set is the old one or a complete new one (with the old as .prev),
-- and the next run works.
for _, ev in ipairs({ "order", "deployed", "validating", "waiting",
  "issued" }) do
  t.test("kill -9 after the '" .. ev .. "' event", function()
    local before = current()
    local pid, out = L.spawn_bg(state, { "--json", "issue", "-d", NAME,
      "--force", "--hook", L.webroot() })
    local seen = L.wait_text(out, '"event":"' .. ev .. '"', 60)
    if L.alive(pid) then L.kill(pid, "KILL") end
    t.ok(seen or not L.alive(pid), "event seen or run over")
    -- What a reader sees (luacme list reads without the lock).
    local lines = L.json(L.must(state, { "list", "--json" }))
    local c = L.events(lines, "cert")[1]
    t.eq(c.name, NAME)
    t.eq(c.error, nil, "the set reads as complete")
    -- Recovery under the lock, by the next run.
    L.must(state, { "issue", "-d", NAME, "--force", "--hook",
      L.webroot() })
    local cur, prev = current()
    t.ok(cur["cert.pem"] ~= before["cert.pem"])
    t.ok(no_new_files())
    t.ok(prev["cert.pem"], "a .prev set")
  end)
end

for _, sig in ipairs({ "INT", "TERM" }) do
  t.test("SIG" .. sig .. " in a challenge hook: cleanup runs, exit 130",
    function()
    local before = current()
    local m = marker()
    local pid, _, errf = L.spawn_bg(state, { "issue", "-d",
      E.name("fresh"), "--name", NAME, "--hook", block_hook(m) })
    t.ok(L.wait_text(m, "deployed", 60))
    local token = E.readfile(m):match("deployed (.*)")
    t.ok(core.stat(E.env.webroot .. "/.well-known/acme-challenge/" .. token))
    L.kill(pid, sig)
    local err = E.readfile(errf)
    t.match(err, "luacme: error: interrupted: ")
    t.eq(E.readfile(m .. ".cleaned"), token, "cleanup ran")
    t.eq(core.stat(E.env.webroot .. "/.well-known/acme-challenge/" ..
      token), nil, "the challenge file is gone")
    local after = L.files(state, NAME)
    for _, f in ipairs({ "privkey.pem", "cert.pem", "chain.pem",
      "fullchain.pem" }) do
      t.eq(after[f], before[f], f .. " untouched")
    end
    local meta = cjson.decode(after["meta.json"])
    t.eq(meta.last_error.kind, "interrupted")
    t.ok(no_new_files())
  end)
end

t.test("the exit status of an interrupted run is 130", function()
  local m = marker()
  local script = dir .. "/int.sh"
  E.writefile(script, "#!/bin/sh\n" .. E.q(L.exe) .. ' "$@" & p=$!\n' ..
    "while [ ! -e " .. E.q(m) .. " ]; do sleep 0.05; done\n" ..
    'kill -INT $p; wait $p; echo "status=$?"\n')
  local args = { "sh", script }
  for _, a in ipairs(L.global(state)) do args[#args + 1] = a end
  for _, a in ipairs({ "issue", "-d", E.name("fresh"), "--name", NAME,
    "--hook", block_hook(m) }) do args[#args + 1] = a end
  local r = assert(core.spawn{ argv = args, timeout = 120 })
  t.match(r.stdout, "status=130")
end)

t.test("afterwards a renewal works and the files are consistent",
  function()
  local before = current()
  L.must(state, { "renew", "--force", NAME })
  local cur, prev = current()
  same(prev, before, "after renew:")
  t.ok(cur["cert.pem"] ~= before["cert.pem"])
  t.eq(cjson.decode(cur["meta.json"]).last_error, nil)
end)
