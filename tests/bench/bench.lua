-- The benchmark's client side (tests/bench/bench.sh runs it; a benchmark
-- printing figures, not a timed test). Modes:
--   bench.lua fast OUT ROUNDS EXE  under pebble-env.py (VA_NOSLEEP): 1 name,
--                               20 names, wildcard + base via a dns-01
--                               exec hook, 100 names; the RSS of one
--                               issuance in a fresh process; binary size
--                               and --version start-up
--   bench.lua slow OUT          under pebble-env.py --webroot-delay 2:
--                               1 name and 20 names against a CA that
--                               takes 2 s to validate
--   bench.lua one               one issuance in this fresh process,
--                               printing "rss NAME KB" lines (used by fast)
--   bench.lua table OUT...      the table of every figure with its target
-- OUT collects "row" lines (one per figure) that "table" prints.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/../e2e/?.lua;" .. package.path
local core = require "luacme.core"

local mode = arg[1]

local function median(t)
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  local n = #s
  if n == 0 then return nil end
  if n % 2 == 1 then return s[(n + 1) // 2] end
  return (s[n // 2] + s[n // 2 + 1]) / 2
end

local function status_kb(field)
  local f = io.open("/proc/self/status")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return tonumber(s:match(field .. ":%s*(%d+) kB"))
end

-- Every request a client sends, timed: {t=, url=}.
local function record(c)
  local log = {}
  local send = c._send
  c._send = function(self, method, url, ...)
    log[#log + 1] = { t = core.monotonic(), url = url, method = method }
    return send(self, method, url, ...)
  end
  return log
end

-- Polls are the reads of an order URL (Pebble's /my-order/); a wait is
-- a run of polls with nothing else between, starting at the request
-- before its first poll (the last accept, or the finalize). Returns
-- {polls =, max = polls/s (1 / the shortest gap, the first poll's gap
-- from the wait's start included), after2 = the same for polls 2 s or
-- more into their wait}.
local function poll_rates(log, from)
  local max, after2, polls = 0, 0, 0
  local wait_start, last
  for i = from + 1, #log do
    local cur = log[i]
    if cur.url:find("/my%-order/") then
      polls = polls + 1
      if not wait_start then wait_start = last end
      if last then
        local gap = cur.t - last
        local rate = gap > 0 and 1 / gap or math.huge
        if rate > max then max = rate end
        if cur.t - wait_start >= 2 and rate > after2 then after2 = rate end
      end
    else
      wait_start = nil
    end
    last = cur.t
  end
  return { max = max, after2 = after2, polls = polls }
end

local out_file
local function row(fields)
  local parts = {}
  for _, k in ipairs({ "case", "value", "unit", "target", "req", "note" }) do
    parts[#parts + 1] = tostring(fields[k] or "")
  end
  out_file:write(table.concat(parts, "\t"), "\n")
  out_file:flush()
end

-- The dns-01 "script hook": a dehydrated-style shell script setting
-- challtestsrv's TXT records with curl, run through the exec hook.
local function dns_script(dir)
  local path = dir .. "/dns-hook.sh"
  local f = assert(io.open(path, "w"))
  f:write([[#!/bin/sh
api=$LUACME_E2E_CHALLTESTSRV
case "$1" in
deploy_challenge)
  exec curl -fsS -o /dev/null -X POST \
    -d "{\"host\":\"_acme-challenge.$2.\",\"value\":\"$4\"}" "$api/set-txt" ;;
clean_challenge)
  exec curl -fsS -o /dev/null -X POST \
    -d "{\"host\":\"_acme-challenge.$2.\"}" "$api/clear-txt" ;;
esac
]])
  f:close()
  assert(core.chmod(path, 493))                    -- 0755
  return path
end

-- Issue ROUNDS orders of a case; returns times, requests (client),
-- requests (Pebble log), poll figures.
local function run_case(E, c, log, label, rounds, names_of, issue)
  local times, creqs, preqs = {}, {}, {}
  local pmax, pafter2, polls = 0, 0, {}
  for i = 1, rounds do
    local names = names_of(i)
    local c0 = c:stats().requests
    local p0 = E.pebble_count(" %-> calling handler%(%)")
    local l0 = #log
    local t0 = core.monotonic()
    local r, err = issue(names)
    times[i] = core.monotonic() - t0
    if not r then error(label .. ": issuance failed: " .. tostring(err), 0) end
    creqs[i] = c:stats().requests - c0
    preqs[i] = E.pebble_count(" %-> calling handler%(%)") - p0
    local pr = poll_rates(log, l0)
    pmax = math.max(pmax, pr.max)
    pafter2 = math.max(pafter2, pr.after2)
    polls[i] = pr.polls
  end
  return { times = times, creq = median(creqs), preq = median(preqs),
    creq_max = math.max(table.unpack(creqs)), pmax = pmax,
    pafter2 = pafter2, polls = median(polls) }
end

local function req_text(r)
  local s = string.format("%g", r.creq)
  if r.creq_max ~= r.creq then s = s .. " (max " .. r.creq_max .. ")" end
  if r.preq ~= r.creq then s = s .. " [Pebble " .. r.preq .. "]" end
  return s
end

local function rate_text(r)
  return string.format("%g polls, max %.0f/s, after 2 s %.1f/s", r.polls,
    r.pmax, r.pafter2)
end

local function issue_cases(slow, rounds)
  local E = require "e2e"
  local acme = require "luacme"
  local hooks = require "luacme.hooks"
  local c = E.account()
  local log = record(c)
  local webroot = E.webroot_solver()
  local function http(names) return E.lib_issue(c, names, webroot) end
  local tag = slow and "s" or "f"

  if slow then
    -- The request counts measured before the issue-11 wait schedule.
    local before = { [1] = 12, [20] = 50 }
    for _, n in ipairs({ 1, 20 }) do
      local r = run_case(E, c, log, n .. " names", 1, function(i)
        return E.names(tag .. n .. "r" .. i .. "x", n)
      end, http)
      row{ case = string.format("2 s CA, %d name%s: requests", n,
          n == 1 and "" or "s"), value = req_text(r), unit = "req",
        target = "<= " .. before[n] .. " (before)", note = string.format("%.2f s; %s",
          r.times[1], rate_text(r)) }
      row{ case = string.format("2 s CA, %d name%s: polls/s after 2 s", n,
          n == 1 and "" or "s"), value = string.format("%.1f", r.pafter2),
        unit = "/s", target = "<= 2" }
    end
    return
  end

  local function time_row(label, r, stat, target, extra)
    local v = stat == "worst" and math.max(table.unpack(r.times)) or
        median(r.times)
    row{ case = label .. " (" .. stat .. " of " .. #r.times .. ")",
      value = string.format("%.3f", v), unit = "s",
      target = string.format("<= %.2f", target) ..
          (extra and ", " .. extra or ""),
      req = req_text(r), note = string.format("%.3f..%.3f s; %s",
        math.min(table.unpack(r.times)), math.max(table.unpack(r.times)),
        rate_text(r)) }
  end

  local r = run_case(E, c, log, "1 name", rounds, function(i)
    return E.names(tag .. "1r" .. i .. "x", 1)
  end, http)
  time_row("1 name, http-01", r, "median", 0.08, "<= 9 req")
  row{ case = "1 name, http-01: requests", value = tostring(r.creq),
    unit = "req", target = "<= 9" }

  r = run_case(E, c, log, "20 names", rounds, function(i)
    return E.names(tag .. "20r" .. i .. "x", 20)
  end, http)
  time_row("20 names, http-01", r, "worst", 0.25)

  -- Wildcard + base through an exec dns-01 script; with parallel=yes
  -- the script may take both calls at once, so the two deploy_challenge
  -- (and clean_challenge) runs overlap.
  local dir = E.scratch()
  local function wildcard(label, opts, name_tag)
    local h = assert(hooks.load("exec:script=" .. dns_script(dir) ..
        ",types=dns-01" .. opts, "challenge"))
    r = run_case(E, c, log, label, rounds, function(i)
      local base = E.name(tag .. name_tag .. i)
      return { base, "*." .. base }
    end, function(names)
      local key = assert(core.key_generate("ec256"))
      local csr = assert(core.csr{ key = key, names = names })
      return c:issue{ identifiers = acme.domain_ids(table.unpack(names)),
        csr = csr, hooks = { h } }
    end)
  end
  wildcard("wildcard", "", "wc")
  time_row("wildcard + base, dns-01 exec hook", r, "median", 0.15)
  wildcard("wildcard parallel", ",parallel=yes", "wp")
  time_row("wildcard + base, dns-01 exec hook, parallel=yes", r, "median",
    0.15)

  r = run_case(E, c, log, "100 names", rounds, function(i)
    return E.names(tag .. "100r" .. i .. "x", 100)
  end, http)
  time_row("100 names, http-01", r, "median", 0.40)
end

-- Resident KiB by owner, from /proc/self/smaps: OpenSSL, libcurl and
-- what it pulls in, the C library and loader, this executable, and the
-- process's own memory (heap and anonymous maps: the Lua heap, OpenSSL's
-- and libcurl's allocations, the expanded embedded modules).
local SYSTEM = { ["libc.so.6"] = true, ["libm.so.6"] = true,
  ["ld-linux-x86-64.so.2"] = true, ["libresolv.so.2"] = true,
  ["libz.so.1"] = true }
local function by_owner()
  local f = assert(io.open("/proc/self/smaps"))
  local s = f:read("a")
  f:close()
  local out = { openssl = 0, curl = 0, system = 0, exe = 0, own = 0,
    clean = 0, dirty = 0 }
  local owner, file
  for line in s:gmatch("[^\n]+") do
    local path = line:match("^%x+%-%x+ %S+ %x+ %S+ %d+%s*(.*)$")
    if path then
      file = path:find("^/") ~= nil
      local base = path:match("[^/]*$")
      local soname = base:match("^(.-%.so%.%d+)") or base
      if path == "" or path:find("^%[heap%]") or path:find("^%[stack") then
        owner = "own"
      elseif path:find("^%[") then
        owner = nil
      elseif soname == "libcrypto.so.3" or soname == "libssl.so.3" then
        owner = "openssl"
      elseif SYSTEM[soname] then
        owner = "system"
      elseif base == "luacme" then
        owner = "exe"
      else
        owner = "curl"
      end
    else
      local kb = line:match("^Rss:%s+(%d+)")
      if kb and owner then out[owner] = out[owner] + tonumber(kb) end
      -- clean pages of files: the libraries' code and read-only data,
      -- shared with every process mapping them (and mapped 64 KB at a
      -- time by the kernel's fault-around); dirty: this process's own
      local clean = line:match("^%a+_Clean:%s+(%d+)")
      local dirty = line:match("^Private_Dirty:%s+(%d+)")
      if clean and file then out.clean = out.clean + tonumber(clean) end
      if dirty then out.dirty = out.dirty + tonumber(dirty) end
    end
  end
  return out
end

-- One issuance in a fresh process, with where its memory goes:
-- VmRSS before and after each stage and the Lua heap beside it.
local function one()
  local lua0 = collectgarbage("count")
  local rss0 = status_kb("VmRSS")
  local E = require "e2e"
  require "luacme"
  require "luacme.issuance"
  local lua1 = collectgarbage("count")
  local rss1 = status_kb("VmRSS")
  local c = E.client()
  assert(c:discover())                           -- TLS, CA file, curl
  local rss2 = status_kb("VmRSS")
  local lua2 = collectgarbage("count")
  assert(c:register({ contact = { "mailto:e2e@example.test" } },
    require("luacme").accept_tos))
  local r, err = E.lib_issue(c, E.names("rss", 1), E.webroot_solver())
  assert(r, tostring(err))
  local lua3 = collectgarbage("count")
  local rss3 = status_kb("VmRSS")
  local hwm = status_kb("VmHWM")
  for k, v in pairs(by_owner()) do print(string.format("rss by_%s %d", k, v)) end
  print(string.format("rss base %d", rss0))
  print(string.format("rss lua_start %d", math.floor(lua0)))
  print(string.format("rss modules %d", rss1 - rss0))
  print(string.format("rss modules_lua %d", math.floor(lua1 - lua0)))
  print(string.format("rss tls %d", rss2 - rss1))
  print(string.format("rss tls_lua %d", math.floor(lua2 - lua1)))
  print(string.format("rss issuance %d", rss3 - rss2))
  print(string.format("rss issuance_lua %d", math.floor(lua3 - lua2)))
  print(string.format("rss lua_end %d", math.floor(lua3)))
  print(string.format("rss peak %d", hwm))
  print(string.format("rss end %d", rss3))
end

-- The environment of an installed binary: no lua/ or hooks/ on disk,
-- so the modules come from the copies compiled in (a dev build would
-- read and parse the tree's sources).
local function release_env()
  local env = core.environ()
  local dir = os.tmpname()
  os.remove(dir)
  assert(core.mkdir(dir))
  env.LUACME_LUA_PATH = dir
  return env
end

local function binary_rows(exe)
  local tmp = os.tmpname()
  assert(os.execute("strip -o '" .. tmp .. "' '" .. exe .. "'"))
  local size = core.stat(tmp).size
  os.remove(tmp)
  row{ case = "binary, stripped", value = string.format("%.0f",
    (size or 0) / 1024), unit = "KiB", target = "<= 450" }
  -- beside it the curl command, which loads the same libraries, taken
  -- in turn with ours so that both see the same machine load
  local times, curl_times = {}, {}
  for i = 1, 21 do
    local t0 = core.monotonic()
    local res = assert(core.spawn{ argv = { exe, "--version" },
      env = release_env() })
    times[i] = core.monotonic() - t0
    assert(res.status == 0, res.stderr)
    t0 = core.monotonic()
    res = assert(core.spawn{ argv = { "curl", "--version" } })
    curl_times[i] = core.monotonic() - t0
    assert(res.status == 0, res.stderr)
  end
  row{ case = "luacme --version start-up (median of 21, embedded)",
    value = string.format("%.1f", median(times) * 1000), unit = "ms",
    target = "<= 10", note = string.format("`curl --version` %.1f ms",
      median(curl_times) * 1000) }
end

local function rss_rows(exe, script)
  local res = assert(core.spawn{ argv = { exe, "run", script, "one" },
    env = release_env() })
  assert(res.status == 0, res.stderr)
  local v = {}
  for k, n in res.stdout:gmatch("rss (%S+) (%-?%d+)") do v[k] = tonumber(n) end
  row{ case = "peak RSS of one issuance (embedded modules; +-0.3)", value = string.format("%.1f",
    v.peak / 1024), unit = "MiB", target = "<= 12" }
  local function part(label, kb, note)
    row{ case = "  " .. label, value = string.format("%.0f", kb),
      unit = "KiB", note = note }
  end
  -- The maximum resident set of three runs of a command (argv given
  -- run i), by /usr/bin/time: a row with the median and the range.
  local function maxrss_row(case, target, argv_of, env)
    local kb = {}
    for i = 1, 3 do
      local argv = { "/usr/bin/time", "-f", "maxrss %M",
        table.unpack(argv_of(i)) }
      local r = assert(core.spawn{ argv = argv, env = env })
      assert(r.status == 0, r.stdout .. r.stderr)
      kb[i] = assert(tonumber(r.stderr:match("maxrss (%d+)")), r.stderr)
    end
    row{ case = case, value = string.format("%.1f", median(kb) / 1024),
      unit = "MiB", target = target, note = string.format(
        "%.1f..%.1f MiB; median of 3", math.min(table.unpack(kb)) / 1024,
        math.max(table.unpack(kb)) / 1024) }
  end
  -- The real command as installed (account created first, files
  -- written).
  local E = require "e2e"
  maxrss_row("peak RSS of `luacme issue` (real command, median of 3)",
    "<= 12", function(i)
      return { exe, "--directory", E.env.directory, "--ca-bundle",
        E.env.ca_file, "--state", E.scratch() .. "/state", "issue", "-d",
        E.name("rsscli" .. i), "--hook", "webroot:root=" .. E.env.webroot,
        "--agree-tos", "--contact", "rss@example.test" }
    end, release_env())
  -- The floor under both: Debian's curl command (the same libcurl, with
  -- OpenSSL 3) fetching the directory once over HTTPS; whatever a
  -- program on these two libraries does, it pays this.
  maxrss_row("  floor: `curl` (same libcurl+OpenSSL), one HTTPS GET", nil,
    function()
      return { "curl", "-sS", "--fail", "-o", "/dev/null", "--cacert",
        E.env.ca_file, E.env.directory }
    end)
  -- where the peak goes (the peak is at the end of the issuance)
  part("OpenSSL (libcrypto, libssl: code, tables, relocations)",
    v.by_openssl)
  part("libcurl and the libraries it links (gnutls, krb5, ldap, ...)",
    v.by_curl)
  part("libc, libm, ld.so, libz, libresolv", v.by_system)
  part("luacme executable (code, compressed modules)", v.by_exe)
  part("heap, stack and anonymous memory", v.by_own, string.format(
    "of it the Lua heap %d KiB", v.lua_end))
  part("of the total: clean file pages (shared library code, rodata)",
    v.by_clean, "shared with other processes; 64 KB fault-around")
  part("of the total: private dirty pages (heap, relocated data)",
    v.by_dirty, "this process's own")
  -- what each step adds
  part("step: start (libraries loaded; libcurl initialised if eager)",
    v.base, string.format("Lua heap %d KiB", v.lua_start))
  part("step: Lua modules loaded", v.modules, string.format(
    "Lua heap +%d KiB", v.modules_lua))
  part("step: first HTTPS exchange (libcurl/OpenSSL TLS init, handshake)",
    v.tls, string.format("Lua heap +%d KiB", v.tls_lua))
  part("step: account + issuance (keys, JSON, JWS)", v.issuance,
    string.format("Lua heap +%d KiB", v.issuance_lua))
end

local function print_table(files)
  local rows = {}
  for _, file in ipairs(files) do
    for line in io.lines(file) do
      local f = {}
      for field in (line .. "\t"):gmatch("([^\t]*)\t") do f[#f + 1] = field end
      rows[#rows + 1] = f
    end
  end
  print(string.format("luacme %s benchmark, Pebble VA_NOSLEEP and nonce "
    .. "rejection 0 unless said, account registered", core.VERSION or "?"))
  print(string.format("%-58s %12s  %-16s %-16s %s", "figure", "value",
    "target", "requests", "notes"))
  for _, f in ipairs(rows) do
    print(string.format("%-58s %8s %-3s  %-16s %-16s %s", f[1], f[2], f[3],
      f[4], f[5], f[6]))
  end
end

if mode == "fast" or mode == "slow" then
  out_file = assert(io.open(arg[2], "a"))
  issue_cases(mode == "slow", tonumber(arg[3]) or 5)
  if mode == "fast" then
    local exe = assert(arg[4], "bench.lua fast OUT ROUNDS EXE")
    rss_rows(exe, debug.getinfo(1, "S").source:sub(2))
    binary_rows(exe)
  end
  out_file:close()
elseif mode == "one" then
  one()
elseif mode == "table" then
  print_table({ table.unpack(arg, 2) })
else
  error("usage: bench.lua fast|slow|one|table ...", 0)
end
