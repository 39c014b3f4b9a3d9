-- A CA outage costs one timeout per run, not one per certificate:
-- certificates of a CA that cannot be reached (a closed port) or that
-- answers 503 with a long Retry-After (tests/e2e/unavailable.py) are
-- not tried once the run has found it down; each gets one line and its
-- last_error; certificates of the working CA (the harness's Pebble)
-- still renew in the same run; a remembered Retry-After keeps the next
-- runs away from the CA. LUACME_OUTAGE_CERTS sets how many certificates
-- the unreachable CA has (default 50).
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local t = require "testlib"
local core = require "luacme.core"
local cjson = require "cjson"
local E = require "e2e"
local L = require "cli_lib"

local N = tonumber(os.getenv("LUACME_OUTAGE_CERTS")) or 50
-- Nothing listens on port 1 of loopback: every connect is refused.
local DEAD = "https://127.0.0.1:1/dir"

local state = L.state()
-- Without --directory, so that each certificate goes to its own CA.
local function global()
  return { "--ca-bundle", E.env.ca_file, "--state", state }
end
local function run(args, want)
  local argv = global()
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local t0 = core.monotonic()
  local st, out, err = L.run(nil, argv, { timeout = 240 })
  local took = core.monotonic() - t0
  if want then t.eq(st, want, out .. err) end
  return out, err, took
end

-- Certificate `name` pointing at the CA `dir`: a copy of the live one.
local function clone(from, name, dir)
  local src, dst = state .. "/certs/" .. from, state .. "/certs/" .. name
  E.must("cp -a " .. E.q(src) .. " " .. E.q(dst))
  local meta = cjson.decode(E.readfile(dst .. "/meta.json"))
  meta.directory = dir
  E.writefile(dst .. "/meta.json", cjson.encode(meta))
end

local function meta_of(name)
  return cjson.decode(E.readfile(state .. "/certs/" .. name .. "/meta.json"))
end

local function serial_of(name)
  local pem = E.readfile(state .. "/certs/" .. name .. "/cert.pem")
  local info = assert(core.cert_info(pem))
  return info.serial
end

local function count(s, plain)
  local n, i = 0, 1
  while true do
    local a, b = s:find(plain, i, true)
    if not a then return n end
    n, i = n + 1, b + 1
  end
end

local live = E.name("live")
L.must(nil, { "--directory", E.env.directory, "--ca-bundle", E.env.ca_file,
  "--state", state, "account", "new", "--agree-tos" })
L.must(nil, { "--directory", E.env.directory, "--ca-bundle", E.env.ca_file,
  "--state", state, "issue", "-d", live, "--hook", L.webroot() })

t.test(N .. " certificates of an unreachable CA cost one retry budget; " ..
  "the other CA's certificate renews", function()
  for i = 1, N do clone(live, "down" .. i, DEAD) end
  local before = serial_of(live)
  local out, err, took = run({ "renew", "--force" }, 1)
  print(string.format("renew --force, %d certificates of a CA down + 1 " ..
    "live: %.1f s", N, took))
  -- One retry budget (the client's 5 retries: about 25-30 s), not N.
  t.ok(took < 60, "took " .. took .. " s")
  t.ok(serial_of(live) ~= before, "the live certificate was renewed")
  t.match(out, live)
  local failures = 0
  for line in err:gmatch("[^\n]+") do
    if line:find("^luacme: down%d+: error:") then failures = failures + 1 end
  end
  t.eq(failures, N, err)
  t.eq(count(err, "skipped: CA " .. DEAD .. " unreachable since "), N - 1,
    err)
  for i = 1, N do
    local m = meta_of("down" .. i)
    t.ok(m.last_error and m.last_error.message, "down" .. i ..
      " has a last_error")
  end
  t.match(meta_of("down2").last_error.message, "unreachable since")
  -- list shows it.
  local lst = run({ "list" }, 0)
  t.match(lst, "unreachable since")
  -- A transport failure has no Retry-After: nothing remembered.
  t.ok(not E.readfile(state .. "/accounts/127.0.0.1_1/ca.json"),
    "no remembered wait without a Retry-After")
  for i = 1, N do E.must("rm -rf " .. E.q(state .. "/certs/down" .. i)) end
end)

-- Start unavailable.py; returns its pid, its directory URL and the
-- path of its request log.
local function start_unavailable()
  local dir = E.scratch()
  local key = E.env.ca_file:gsub("cert%.pem$", "key.pem")
  local portfile, log = dir .. "/port", dir .. "/requests"
  E.writefile(log, "")
  local p = assert(io.popen("python3 " .. E.q(here .. "/unavailable.py") ..
    " " .. E.q(E.env.ca_file) .. " " .. E.q(key) .. " " .. E.q(portfile) ..
    " " .. E.q(log) .. " --retry-after 3600 >/dev/null 2>&1 & echo $!"))
  local pid = tonumber(p:read("l"))
  p:close()
  assert(pid, "no pid for unavailable.py")
  assert(L.wait_for(function() return E.readfile(portfile) ~= nil end, 30),
    "unavailable.py did not start")
  local port = tonumber(E.readfile(portfile):match("%d+"))
  return pid, "https://127.0.0.1:" .. port .. "/dir", log, port
end

local function lines(path)
  return count(E.readfile(path) or "", "\n")
end

t.test("503 + Retry-After: one request, remembered; the next runs do not " ..
  "contact the CA", function()
  local pid, dir, log, port = start_unavailable()
  local ok, e = pcall(function()
    for i = 1, 5 do clone(live, "maint" .. i, dir) end
    local out, err = run({ "renew", "--force" }, 1)
    t.eq(lines(log), 1, E.readfile(log))
    t.match(out, live)
    t.eq(count(err, "skipped: CA " .. dir .. " unreachable since "), 4, err)
    local rec = cjson.decode(assert(E.readfile(state ..
      "/accounts/127.0.0.1_" .. port .. "/ca.json")))
    t.eq(rec.directory, dir)
    t.ok(rec.retry_at > core.time() + 3000, "retry_at ~ an hour away")
    -- The next run, forced or not, does not contact that CA at all.
    local _, err2 = run({ "renew", "--force" }, 1)
    t.eq(lines(log), 1, E.readfile(log))
    t.eq(count(err2, "asked to be left alone until"), 5, err2)
    -- Not forced: nothing is due, and still no request.
    run({ "renew" }, 2)
    t.eq(lines(log), 1, E.readfile(log))
  end)
  os.execute("kill " .. pid .. " 2>/dev/null")
  assert(L.wait_for(function() return not L.alive(pid) end, 30))
  if not ok then error(e, 0) end
end)
