-- A small test library for tests that run inside the luacme executable.
-- t.test(name, fn) registers; the runner (run.lua) runs them in order.
local M = { tests = {} }

function M.test(name, fn)
  M.tests[#M.tests + 1] = { name = name, fn = fn }
end

local function fmt(v)
  if type(v) == "string" then return string.format("%q", v) end
  return tostring(v)
end

function M.eq(got, want, msg)
  if got ~= want then
    error((msg and msg .. ": " or "") .. "expected " .. fmt(want) .. ", got " .. fmt(got), 2)
  end
end

function M.ok(v, msg)
  if not v then error(msg or "expected a true value", 2) end
  return v
end

function M.match(s, pat, msg)
  if type(s) ~= "string" or not s:find(pat) then
    error((msg and msg .. ": " or "") .. "expected " .. fmt(s) .. " to match " .. fmt(pat), 2)
  end
end

-- fn must raise; the message (tostring of the error) must match pat.
function M.raises(fn, pat)
  local ok, err = pcall(fn)
  if ok then error("expected an error matching " .. fmt(pat), 2) end
  if pat and not tostring(err):find(pat) then
    error("error " .. fmt(tostring(err)) .. " does not match " .. fmt(pat), 2)
  end
  return err
end

-- An expected failure: fn's results are nil, message, kind.
function M.fails(kind, pat, ...)
  local v, msg, k = ...
  if v ~= nil then error("expected nil, message, kind; got " .. fmt(v), 2) end
  if kind and k ~= kind then error("expected kind " .. fmt(kind) .. ", got " .. fmt(k) .. " (" .. fmt(msg) .. ")", 2) end
  if pat and not tostring(msg):find(pat) then
    error("message " .. fmt(msg) .. " does not match " .. fmt(pat), 2)
  end
  return msg
end

-- An expected failure of a Lua module: its results are nil and an error
-- table (luacme.errors) whose kind is kind and whose detail matches pat.
function M.fails_err(kind, pat, v, err)
  if v ~= nil then error("expected nil, err; got " .. tostring(v), 2) end
  if type(err) ~= "table" then
    error("expected an error table, got " .. tostring(err), 2)
  end
  if kind and err.kind ~= kind then
    error("expected kind " .. kind .. ", got " .. tostring(err.kind) ..
      " (" .. tostring(err.detail) .. ")", 2)
  end
  if pat and not tostring(err.detail):find(pat) then
    error("detail " .. tostring(err.detail) .. " does not match " .. pat, 2)
  end
  return err
end

function M.hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

function M.unhex(h)
  return (h:gsub("%s", ""):gsub("..", function(x) return string.char(tonumber(x, 16)) end))
end

function M.readfile(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

function M.writefile(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

-- A fresh temporary directory, removed by the runner at exit.
M.tmpdirs = {}
function M.tmpdir()
  local p = assert(io.popen("mktemp -d /tmp/luacme-test.XXXXXX"))
  local d = p:read("l")
  p:close()
  M.tmpdirs[#M.tmpdirs + 1] = d
  return d
end

-- Start tests/lua/idle_peer.py holding n idle connections to port on
-- loopback. Returns how many it opened and a function stopping it.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
function M.idle_peer(port, n)
  local p = assert(io.popen("exec python3 '" .. here .. "/idle_peer.py' " ..
    math.tointeger(port) .. " " .. math.tointeger(n)))
  local line = p:read("l") or ""
  local opened, pid = line:match("^open (%d+) (%d+)$")
  local function stop()
    if pid then os.execute("kill " .. pid) end
    p:close()
  end
  return tonumber(opened), stop
end

-- The argv that runs the luacme executable exe (a path, or
-- "/proc/self/exe" for the one running this test) with the arguments
-- after it. A cross build's tests run under an emulator
-- (LUACME_TEST_EMULATOR, e.g. "/usr/bin/qemu-aarch64 -L SYSROOT", set by
-- tests/lua/CMakeLists.txt), which then starts every child luacme too:
-- the host cannot exec the target's binary without binfmt.
function M.luacme_argv(exe, ...)
  local argv = {}
  local emu = os.getenv("LUACME_TEST_EMULATOR")
  if emu and emu ~= "" then
    for w in emu:gmatch("%S+") do argv[#argv + 1] = w end
    -- Under the emulator /proc/self/exe is the emulator itself.
    if exe == "/proc/self/exe" then
      exe = assert(os.getenv("LUACME_TEST_BUILD_DIR"), "run under ctest") ..
        "/luacme"
    end
  end
  argv[#argv + 1] = exe
  for _, a in ipairs({ ... }) do argv[#argv + 1] = a end
  return argv
end

-- Run a shell command; returns ok, output (stdout+stderr).
function M.sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local ok = p:close()
  return ok, out
end

return M
