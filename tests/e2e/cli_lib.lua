-- Helpers for the end-to-end scenarios of the luacme command
-- (tests/e2e/cli_*_test.lua): run the built executable against the
-- harness's Pebble, collect everything it printed (so a scenario can
-- check that no secret ever appears), run it in the background and
-- stop it by PID, and read a certificate's files.
local core = require "luacme.core"
local cjson = require "cjson"
local E = require "e2e"

local L = {}

L.exe = assert(os.getenv("LUACME_TEST_BUILD_DIR"), "run under ctest") ..
  "/luacme"

-- Every stdout/stderr the command produced in this scenario.
L.outputs = {}

-- A fresh state directory.
function L.state()
  return E.scratch() .. "/state"
end

-- The global options pointing at the harness's CA.
function L.global(state)
  return { "--directory", E.env.directory, "--ca-bundle", E.env.ca_file,
    "--state", state }
end

function L.webroot()
  return "webroot:root=" .. E.env.webroot
end

-- The environment for a run: ours minus LUACME_EAB_*, plus extra.
function L.env(extra)
  local env = core.environ()
  env.LUACME_EAB_KID, env.LUACME_EAB_HMAC_KEY = nil, nil
  for k, v in pairs(extra or {}) do env[k] = v end
  return env
end

-- Run luacme with the global options of state and args. opts.env
-- (extra variables), opts.timeout. Returns status, stdout, stderr.
function L.run(state, args, opts)
  opts = opts or {}
  local argv = { L.exe }
  if state then
    for _, a in ipairs(L.global(state)) do argv[#argv + 1] = a end
  end
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local r = assert(core.spawn{ argv = argv, env = L.env(opts.env),
    timeout = opts.timeout or 120 })
  L.outputs[#L.outputs + 1] = r.stdout
  L.outputs[#L.outputs + 1] = r.stderr
  if r.timed_out then error("luacme timed out: " .. table.concat(argv, " ")) end
  return r.status or (128 + (r.signal or 0)), r.stdout, r.stderr
end

-- Like run, but raises unless the exit status is want (default 0).
function L.must(state, args, want, opts)
  local st, out, err = L.run(state, args, opts)
  if st ~= (want or 0) then
    error("luacme " .. table.concat(args, " ") .. ": exit " .. tostring(st) ..
      " (wanted " .. (want or 0) .. ")\n" .. out .. err, 2)
  end
  return out, err
end

-- The JSON lines of an output, decoded.
function L.json(text)
  local t = {}
  for line in text:gmatch("[^\n]+") do
    local v = cjson.decode(line)
    t[#t + 1] = v
  end
  return t
end

-- The events named name among decoded lines.
function L.events(lines, name)
  local t = {}
  for _, l in ipairs(lines) do
    if l.event == name then t[#t + 1] = l end
  end
  return t
end

-- Start luacme in the background, stdout and stderr to files; returns
-- pid, out_path, err_path.
function L.spawn_bg(state, args, opts)
  opts = opts or {}
  local dir = E.scratch()
  local out, err = dir .. "/stdout", dir .. "/stderr"
  local parts = { E.q(L.exe) }
  if state then
    for _, a in ipairs(L.global(state)) do parts[#parts + 1] = E.q(a) end
  end
  for _, a in ipairs(args) do parts[#parts + 1] = E.q(a) end
  local envs = {}
  for k, v in pairs(opts.env or {}) do envs[#envs + 1] = k .. "=" .. E.q(v) end
  -- A simple command in the background: $! is luacme's own pid.
  local cmd = (#envs > 0 and ("env " .. table.concat(envs, " ") .. " ")
    or "") .. table.concat(parts, " ") .. " >" .. E.q(out) .. " 2>" ..
    E.q(err) .. " </dev/null & echo $!"
  local p = assert(io.popen(cmd))
  local pid = tonumber(p:read("l"))
  p:close()
  assert(pid, "no pid from the background start")
  return pid, out, err
end

function L.alive(pid)
  return os.execute("kill -0 " .. pid .. " 2>/dev/null") == true
end

-- Wait (bounded) until pred() is true; returns true, or false on
-- timeout. Polls: the condition is what we wait for, not the time.
function L.wait_for(pred, timeout)
  local deadline = core.monotonic() + (timeout or 60)
  while core.monotonic() < deadline do
    if pred() then return true end
    core.sleep(0.02)
  end
  return pred()
end

-- Wait until the file at path contains the plain string s.
function L.wait_text(path, s, timeout)
  return L.wait_for(function()
    local d = E.readfile(path)
    return d ~= nil and d:find(s, 1, true) ~= nil
  end, timeout)
end

-- Kill pid with signal sig and wait until it is gone.
function L.kill(pid, sig)
  os.execute("kill -" .. sig .. " " .. pid .. " 2>/dev/null")
  assert(L.wait_for(function() return not L.alive(pid) end, 30),
    "pid " .. pid .. " did not die")
end

-- Wait for a background run to end by itself; returns true when it did.
function L.wait_exit(pid, timeout)
  return L.wait_for(function() return not L.alive(pid) end, timeout or 120)
end

-- The files of certificate name: { ["cert.pem"] = data, ... } for the
-- current set and each *.prev.
L.FILES = { "privkey.pem", "cert.pem", "chain.pem", "fullchain.pem",
  "meta.json" }

function L.files(state, name)
  local dir = state .. "/certs/" .. name
  local cur, prev = {}, {}
  for _, f in ipairs(L.FILES) do
    cur[f] = E.readfile(dir .. "/" .. f)
    prev[f] = E.readfile(dir .. "/" .. f .. ".prev")
  end
  return cur, prev
end

-- Check a set of files belongs together, through openssl: the key
-- matches the certificate, fullchain = cert .. chain, meta.json names
-- the certificate's serial. Returns the serial (upper-case hex).
function L.check_set(set, label)
  label = label or "set"
  for _, f in ipairs(L.FILES) do
    assert(set[f], label .. ": " .. f .. " missing")
  end
  assert(set["fullchain.pem"] == set["cert.pem"] .. set["chain.pem"],
    label .. ": fullchain.pem is not cert.pem .. chain.pem")
  local dir = E.scratch()
  E.writefile(dir .. "/cert.pem", set["cert.pem"])
  E.writefile(dir .. "/key.pem", set["privkey.pem"])
  local a = E.must("openssl x509 -noout -pubkey -in " .. E.q(dir ..
    "/cert.pem"))
  local b = E.must("openssl pkey -pubout -in " .. E.q(dir .. "/key.pem"))
  assert(a == b, label .. ": the key does not match the certificate")
  local serial = E.must("openssl x509 -noout -serial -in " ..
    E.q(dir .. "/cert.pem")):match("serial=(%x+)")
  local meta = cjson.decode(set["meta.json"])
  assert(meta.serial:upper():gsub("^0+", "") == serial:gsub("^0+", ""),
    label .. ": meta.json describes serial " .. meta.serial .. ", the " ..
    "certificate has " .. serial)
  return serial
end

-- Does any collected output contain the plain string s?
function L.leaked(s)
  for _, o in ipairs(L.outputs) do
    if o:find(s, 1, true) then return true end
  end
  return false
end

return L
