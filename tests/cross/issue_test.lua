-- One issuance per challenge type by the luacme command, as an appliance
-- runs it, against the harness's Pebble: webroot http-01, tls-alpn-01
-- (luacme's own responder), dns-01 (the challtestsrv hook) and, when
-- the harness leaves Pebble's httpPort free (--no-webroot), standalone
-- http-01; then a renew with nothing due must write nothing to the state
-- (flash wear). Natively this is e2e/cross_issue; in a cross build
-- (tests/cross) the same scenario runs every luacme under qemu-user
-- (LUACME_TEST_EMULATOR, see testlib.luacme_argv).
--
-- Each run is measured by /usr/bin/time from outside (wall, CPU, peak
-- RSS of the process, which under qemu-user includes the emulator); the
-- figures go to LUACME_CROSS_REPORT when set, for tests/cross/run.sh.
-- A tls-alpn-01 issuance burning CPU for minutes under emulation (the
-- report that started tests/cross) fails here on CPU_MAX, not only on the
-- spawn timeout.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. here .. "/../e2e/?.lua;" .. package.path
local t = require "testlib"
local core = require "luacme.core"
local E = require "e2e"
local L = require "cli_lib"

-- Bounds for one issuance: natively it takes well under a second of CPU,
-- under qemu-user about one; a busy-polling responder takes all of WALL.
local WALL, CPU_MAX = 120, 20

local report = os.getenv("LUACME_CROSS_REPORT")
local standalone = os.getenv("LUACME_CROSS_STANDALONE") == "1"

local function note(line)
  if not report then return end
  local f = assert(io.open(report, "a"))
  f:write(line, "\n")
  f:close()
end

-- Run luacme (under the emulator, if any) with the global options of
-- state, measured. Returns status, stdout .. stderr, and the figures
-- { wall =, cpu =, rss_kb = }.
local function run(state, args)
  local tf = E.scratch() .. "/time"
  local argv = { "/usr/bin/time", "-f", "%e %U %S %M", "-o", tf }
  local all = {}
  if state then
    for _, a in ipairs(L.global(state)) do all[#all + 1] = a end
  end
  for _, a in ipairs(args) do all[#all + 1] = a end
  for _, a in ipairs(t.luacme_argv(L.exe, table.unpack(all))) do
    argv[#argv + 1] = a
  end
  -- The modules compiled into the binary, not the source tree's: what
  -- a device runs, where the binary is installed alone.
  local r = assert(core.spawn{ argv = argv, timeout = WALL,
    env = L.env{ LUACME_LUA_PATH = E.scratch() .. "/no-modules-here" } })
  if r.timed_out then
    error("luacme ran over " .. WALL .. " s: " .. table.concat(args, " "))
  end
  -- time(1) may print "Command exited with non-zero status N" first.
  local text = assert(t.readfile(tf))
  local wall, user, sys, rss = text:match("([%d.]+) ([%d.]+) ([%d.]+) (%d+)%s*$")
  assert(wall, "time(1) said: " .. text)
  return r.status, r.stdout .. r.stderr, { wall = tonumber(wall),
    cpu = tonumber(user) + tonumber(sys), rss_kb = tonumber(rss) }
end

local function figures(f)
  return string.format("wall %.2f s, cpu %.2f s, peak RSS %d kB", f.wall,
    f.cpu, f.rss_kb)
end

local state = L.state()
local issued = {}

-- Issue name with hook; checks the set through openssl and the CPU
-- bound, and records the figures under label.
local function issue(label, names, hook)
  local args = { "--agree-tos", "issue", "--hook", hook }
  for _, n in ipairs(names) do
    args[#args + 1] = "-d"
    args[#args + 1] = n
  end
  local st, out, f = run(state, args)
  note(string.format("issue %s: %s (%s)", label, st == 0 and "ok" or
    "FAILED", figures(f)))
  t.eq(st, 0, out)
  t.ok(f.cpu < CPU_MAX, label .. ": " .. figures(f) .. " (bound " ..
    CPU_MAX .. " s of CPU)")
  local name = names[1]:gsub("^%*", "_")
  local cur = L.files(state, name)
  L.check_set(cur, label)
  local pem = E.scratch() .. "/cert.pem"
  E.writefile(pem, cur["cert.pem"])
  local sans = E.must("openssl x509 -noout -ext subjectAltName -in " ..
    E.q(pem))
  for _, n in ipairs(names) do
    t.ok(sans:find("DNS:" .. n, 1, true), label .. ": " .. n .. " in " ..
      sans)
  end
  issued[#issued + 1] = name
end

t.test("the binary starts; its baseline peak RSS", function()
  local st, out, f = run(nil, { "--version" })
  t.eq(st, 0, out)
  t.match(out, "^luacme %d")
  note("baseline --version: " .. figures(f))
end)

if standalone then
  t.test("standalone http-01 (luacme's own HTTP responder)", function()
    issue("standalone-http-01", { E.name("sa") },
      "standalone:address=127.0.0.1,port=" .. E.env.http_port)
  end)
else
  t.test("webroot http-01 (the harness's web server)", function()
    issue("webroot-http-01", { E.name("wr") }, L.webroot())
  end)

  t.test("tls-alpn-01 (luacme's own TLS responder)", function()
    issue("tls-alpn-01", { E.name("alpn") },
      "tls-alpn:address=127.0.0.1,port=" .. E.env.tls_port)
  end)

  t.test("dns-01 (the challtestsrv hook, for a wildcard)",
    function()
    issue("dns-01", { "*." .. E.name("dns") }, "challtestsrv:url=" ..
      E.env.challtestsrv)
  end)
end

-- Everything under dir as "path inode mtime(ns) size", directories too:
-- a file written in place changes its mtime, one replaced by rename its
-- inode, and a temp or lock file created and removed its directory's
-- mtime. find(1) observes it from outside the code under test.
local function snapshot(dir)
  return E.must("find " .. E.q(dir) .. " -printf '%p %i %T@ %s\\n' | sort")
end

t.test("renew with nothing due writes nothing to the state", function()
  t.ok(#issued > 0, "an issuance above succeeded")
  local before = snapshot(state)
  local st, out, f = run(state, { "renew" })
  note("renew, nothing due: exit " .. tostring(st) .. " (" .. figures(f) ..
    ")")
  t.eq(st, 2, out)
  local after = snapshot(state)
  if after ~= before then
    local b, a = {}, {}
    for l in before:gmatch("[^\n]+") do b[l] = true end
    for l in after:gmatch("[^\n]+") do a[l] = true end
    local diff = {}
    for l in pairs(b) do if not a[l] then diff[#diff + 1] = "- " .. l end end
    for l in pairs(a) do if not b[l] then diff[#diff + 1] = "+ " .. l end end
    table.sort(diff, function(x, y) return x:sub(3) < y:sub(3) end)
    error("renew changed the state:\n" .. table.concat(diff, "\n"))
  end
end)
