-- luacme.core files, directories and locks (core/fs.c, core/lua_fs.c).
local t = require "testlib"
local core = require "luacme.core"

-- The luacme executable under test, for work in another process.
local function exe()
  local dir = os.getenv("LUACME_TEST_BUILD_DIR")
  assert(dir, "LUACME_TEST_BUILD_DIR is not set (run the tests via ctest)")
  return dir .. "/luacme"
end

-- Run a Lua script in a separate luacme process; returns core.spawn's
-- result. prefix is put before the executable (e.g. setpriv ...).
local function run_lua(dir, src, args, opts)
  local script = dir .. "/script-" .. core.b64url_encode(core.random(6)) .. ".lua"
  assert(core.write_file(script, src, 0644))
  local argv = {}
  for _, a in ipairs(opts and opts.prefix or {}) do argv[#argv + 1] = a end
  for _, a in ipairs(t.luacme_argv(exe(), "run", script)) do
    argv[#argv + 1] = a
  end
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  return assert(core.spawn { argv = argv, timeout = opts and opts.timeout or 30 })
end

t.test("write_file replaces atomically with the mode asked for", function()
  local d = t.tmpdir()
  local f = d .. "/cert.pem"
  t.eq(core.write_file(f, "one"), true)
  t.eq(t.readfile(f), "one")
  t.eq(core.stat(f).mode, 420)                      -- default 0644
  local old = core.umask(63)                        -- 077
  t.eq(core.write_file(f, "two\0bytes", 420), true)
  t.eq(core.stat(f).mode, 420)                      -- not narrowed
  core.umask(0)
  t.eq(core.write_file(f, "three", 384), true)      -- 0600
  t.eq(core.stat(f).mode, 384)                      -- not widened
  core.umask(old)
  t.eq(t.readfile(f), "three")
  local names = core.listdir(d)
  t.eq(#names, 1, "no temp file left")
  t.eq(names[1], "cert.pem")
  -- The temporary file sits next to the target and is unique.
  t.eq(core.write_file(f, "four"), true)
  t.eq(#core.listdir(d), 1)
end)

t.test("write_file failures leave the old file alone", function()
  local d = t.tmpdir()
  t.fails("not_found", "missing/f", core.write_file(d .. "/missing/f", "x"))
  -- A directory in the way: the rename fails after the temp file exists.
  assert(core.mkdir(d .. "/sub"))
  t.fails("io", "sub", core.write_file(d .. "/sub", "x"))
  t.eq(#core.listdir(d), 1, "temp file removed")
  t.raises(function() core.write_file(d .. "/f", "x", 8 ^ 5) end, "mode")
  t.raises(function() core.write_file(d .. "/f", {}) end, "string expected")
  t.raises(function() core.write_file(nil, "x") end, "string expected")
end)

t.test("read_file reads whole files and refuses large ones", function()
  local d = t.tmpdir()
  t.writefile(d .. "/f", "0123456789")
  t.eq(core.read_file(d .. "/f"), "0123456789")
  t.eq(core.read_file(d .. "/f", 10), "0123456789")
  t.fails("too_large", "larger than 9", core.read_file(d .. "/f", 9))
  t.fails("not_found", "empty", core.read_file(d .. "/empty"))
  t.fails("io", "Is a directory", core.read_file(d))
  -- Files that report size 0 are read to their end.
  t.match(core.read_file("/proc/self/status"), "Pid:")
  t.raises(function() core.read_file(d .. "/f", -1) end, "bad argument")
  t.raises(function() core.read_file(d .. "/f", 256 * 1024 * 1024 + 1) end,
    "LUACME_FILE_MAX_CEIL")
end)

t.test("read_file default cap is LUACME_FILE_MAX (16 MiB)", function()
  local d = t.tmpdir()
  local mib16 = 16 * 1024 * 1024
  local block = string.rep("x", 1024 * 1024)
  t.writefile(d .. "/big", string.rep(block, 16))
  t.eq(#core.read_file(d .. "/big"), mib16)
  t.writefile(d .. "/big", string.rep(block, 16) .. "y")
  t.fails("too_large", "larger than 16777216", core.read_file(d .. "/big"))
  t.eq(#core.read_file(d .. "/big", mib16 + 1), mib16 + 1)
end)

t.test("mkdir and mkdir_p", function()
  local d = t.tmpdir()
  local old = core.umask(63)
  t.eq(core.mkdir(d .. "/a"), true)
  t.eq(core.stat(d .. "/a").mode, 448)              -- 0700
  t.eq(core.mkdir(d .. "/b", 493), true)            -- 0755 despite umask
  t.eq(core.stat(d .. "/b").mode, 493)
  t.fails("exists", "a", core.mkdir(d .. "/a"))
  t.fails("not_found", "x/y", core.mkdir(d .. "/x/y"))
  t.eq(core.mkdir_p(d .. "/p/q//r/", 488), true)    -- 0750
  t.eq(core.stat(d .. "/p").mode, 488)
  t.eq(core.stat(d .. "/p/q/r").mode, 488)
  t.eq(core.mkdir_p(d .. "/p/q/r"), true)           -- existing: fine
  t.eq(core.stat(d .. "/p/q/r").mode, 488)          -- and untouched
  core.umask(old)
  t.writefile(d .. "/file", "")
  t.fails("exists", "not a directory", core.mkdir_p(d .. "/file"))
  t.fails("exists", "not a directory", core.mkdir_p(d .. "/file/sub"))
  t.fails("not_found", nil, core.mkdir_p(""))
  -- A symlink to a directory counts as a directory.
  assert(core.symlink(d .. "/p", d .. "/lp"))
  t.eq(core.mkdir_p(d .. "/lp/q/s"), true)
  t.eq(core.stat(d .. "/p/q/s").type, "dir")
  t.raises(function() core.mkdir(d .. "/z", -1) end, "mode")
end)

t.test("stat and lstat", function()
  local d = t.tmpdir()
  assert(core.write_file(d .. "/f", "hello", 416))  -- 0640
  local st = core.stat(d .. "/f")
  t.eq(st.type, "file")
  t.eq(st.mode, 416)
  t.eq(st.size, 5)
  t.eq(st.uid, core.getuid())
  t.eq(math.type(st.gid), "integer")
  t.ok(math.abs(st.mtime - os.time()) < 60, "mtime is now")
  t.eq(core.stat(d).type, "dir")
  t.eq(core.stat("/dev/null").type, "other")
  assert(core.symlink("f", d .. "/l"))
  t.eq(core.lstat(d .. "/l").type, "link")
  t.eq(core.stat(d .. "/l").type, "file")
  assert(core.symlink("nowhere", d .. "/dangling"))
  t.eq(core.lstat(d .. "/dangling").type, "link")
  t.fails("not_found", "dangling", core.stat(d .. "/dangling"))
  t.fails("not_found", "nope", core.lstat(d .. "/nope"))
end)

t.test("listdir is sorted and skips . and ..", function()
  local d = t.tmpdir()
  for _, n in ipairs({ "b", "a", "c.txt", ".hidden", "B" }) do
    t.writefile(d .. "/" .. n, "")
  end
  local l = core.listdir(d)
  t.eq(table.concat(l, ","), ".hidden,B,a,b,c.txt")
  t.eq(#core.listdir(t.tmpdir()), 0)
  t.fails("not_found", "nope", core.listdir(d .. "/nope"))
  t.fails("io", "Not a directory", core.listdir(d .. "/a"))
end)

t.test("unlink, rmdir, rename, chmod, symlink, readlink, fsync_dir", function()
  local d = t.tmpdir()
  t.writefile(d .. "/f", "x")
  t.eq(core.rename(d .. "/f", d .. "/g"), true)
  t.eq(t.readfile(d .. "/g"), "x")
  t.fails("not_found", "/f", core.rename(d .. "/f", d .. "/h"))
  assert(core.mkdir(d .. "/sub"))
  t.eq(core.rename(d .. "/g", d .. "/sub/g"), true) -- across directories
  t.eq(t.readfile(d .. "/sub/g"), "x")
  t.eq(core.chmod(d .. "/sub/g", 256), true)        -- 0400
  t.eq(core.stat(d .. "/sub/g").mode, 256)
  t.fails("not_found", "nope", core.chmod(d .. "/nope", 420))
  t.raises(function() core.chmod(d .. "/sub/g") end, "number expected")
  t.fails("io", "not empty", core.rmdir(d .. "/sub"))
  t.eq(core.symlink("sub/g", d .. "/link"), true)
  t.eq(t.readfile(d .. "/link"), "x")
  t.fails("exists", "link", core.symlink("x", d .. "/link"))
  t.eq(core.readlink(d .. "/link"), "sub/g")
  t.fails("io", "Invalid argument", core.readlink(d .. "/sub/g"))
  t.fails("not_found", "nope", core.readlink(d .. "/nope"))
  t.raises(function() core.readlink() end, "string expected")
  t.eq(core.unlink(d .. "/link"), true)
  t.eq(core.unlink(d .. "/sub/g"), true)
  t.fails("not_found", "g", core.unlink(d .. "/sub/g"))
  t.eq(core.fsync_dir(d .. "/sub"), true)
  t.eq(core.rmdir(d .. "/sub"), true)
  t.fails("not_found", "sub", core.rmdir(d .. "/sub"))
  t.fails("not_found", "sub", core.fsync_dir(d .. "/sub"))
  t.eq(#core.listdir(d), 0)
end)

-- Permission errors: root may do nearly anything, so as root the calls
-- run in a luacme process that setpriv dropped to nobody; otherwise they
-- run as we are.
local function unprivileged_prefix()
  if core.getuid() ~= 0 then return {} end
  for _, p in ipairs({ "/usr/bin/setpriv", "/bin/setpriv" }) do
    if core.stat(p) then
      return { p, "--reuid=65534", "--regid=65534", "--clear-groups" }
    end
  end
end

local prefix = unprivileged_prefix()
if not prefix then
  -- Not counted: without setpriv a root test run cannot lose its rights.
  print("skip permission errors: running as root and setpriv is missing")
else
  t.test("permission errors", function()
    local d = t.tmpdir()
    assert(core.chmod(d, 493))                      -- others may enter
    assert(core.mkdir(d .. "/ro", 493))
    assert(core.mkdir(d .. "/ro/empty", 493))
    assert(core.write_file(d .. "/ro/f", "old", 420))
    assert(core.write_file(d .. "/ro/secret", "s", 384))
    assert(core.mkdir(d .. "/private", 448))
    assert(core.chmod(d .. "/ro", 365))             -- 0555
    local r = run_lua(d, [[
      local core = require "luacme.core"
      assert(core.getuid() ~= 0, "still root")
      local d, out = arg[1], {}
      local function rec(name, v, msg, kind)
        out[#out + 1] = name .. "=" .. tostring(kind)
        if msg and not msg:find(d, 1, true) then out[#out + 1] = "nopath " .. msg end
      end
      rec("write_file", core.write_file(d .. "/ro/f", "new"))
      rec("mkdir", core.mkdir(d .. "/ro/sub"))
      rec("mkdir_p", core.mkdir_p(d .. "/ro/a/b"))
      rec("unlink", core.unlink(d .. "/ro/f"))
      rec("rmdir", core.rmdir(d .. "/ro/empty"))
      rec("rename", core.rename(d .. "/ro/f", d .. "/ro/g"))
      rec("chmod", core.chmod(d .. "/ro/f", 420))
      rec("symlink", core.symlink("x", d .. "/ro/l"))
      rec("read_file", core.read_file(d .. "/ro/secret"))
      rec("listdir", core.listdir(d .. "/private"))
      rec("stat", core.stat(d .. "/private/x"))
      rec("lock", core.lock(d .. "/ro/lockfile"))
      io.write(table.concat(out, "\n"), "\n")
    ]], { d }, { prefix = prefix })
    t.eq(r.stderr, "")
    t.eq(r.status, 0)
    t.eq(r.stdout, table.concat({ "write_file", "mkdir", "mkdir_p",
      "unlink", "rmdir", "rename", "chmod", "symlink", "read_file",
      "listdir", "stat", "lock" }, "=permission\n") .. "=permission\n")
    t.eq(t.readfile(d .. "/ro/f"), "old")
    t.eq(table.concat(core.listdir(d .. "/ro"), ","), "empty,f,secret")
    assert(core.chmod(d .. "/ro", 493))
  end)
end

t.test("lock: exclusive, file untouched, holder named, unlock idempotent",
  function()
  local d = t.tmpdir()
  local f = d .. "/cert.lock"
  local l = core.lock(f)
  t.eq(type(l), "userdata")
  t.match(tostring(l), "luacme.lock %(.*cert.lock, held%)")
  t.eq(core.stat(f).mode, 384)                      -- 0600
  -- Nothing is written into it (flash wear): the busy message below
  -- still names the holder, from the kernel's lock table.
  t.eq(t.readfile(f), "")
  -- flock locks belong to the open file: a second open in this process
  -- conflicts just as another process would.
  t.fails("busy", "is locked by another process %(pid " .. core.getpid() .. "%)",
    core.lock(f))
  l:unlock()
  t.match(tostring(l), "released")
  l:unlock()
  local l2 = core.lock(f)
  t.ok(l2)
  l2:unlock()
  t.fails("not_found", "missing", core.lock(d .. "/missing/x.lock"))
  -- A symlink where the lock file should be is refused: following it,
  -- the holder would truncate the target to write its PID there.
  t.writefile(d .. "/precious", "keep me")
  t.ok(core.symlink(d .. "/precious", d .. "/link.lock"))
  t.fails("io", "link%.lock", core.lock(d .. "/link.lock"))
  t.fails("io", "link%.lock", core.lock(d .. "/link.lock", { shared = true }))
  t.eq(t.readfile(d .. "/precious"), "keep me")
  t.raises(function() core.lock(f, { timeot = 1 }) end, "unknown option 'timeot'")
  t.raises(function() core.lock(f, { timeout = -1 }) end, "timeout")
  t.raises(function() core.lock(f, { timeout = 8 * 86400 }) end, "timeout")
  t.raises(function() core.lock(f, { timeout = "1" .. "x" }) end, "timeout")
  t.raises(function() l.unlock({}) end, "luacme.lock expected")
end)

t.test("lock: timeout, shared, __close and __gc", function()
  local d = t.tmpdir()
  local f = d .. "/x.lock"
  local l = assert(core.lock(f))
  local t0 = core.monotonic()
  t.fails("busy", "locked by another process", core.lock(f, { timeout = 0.3 }))
  local el = core.monotonic() - t0
  t.ok(el >= 0.29 and el < 2, "waited about the timeout: " .. el)
  l:unlock()
  -- Waiting ends as soon as the lock is free... here it already is.
  t0 = core.monotonic()
  local l2 = assert(core.lock(f, { timeout = 5 }))
  t.ok(core.monotonic() - t0 < 1)
  l2:unlock()

  local s1 = assert(core.lock(f, { shared = true }))
  local s2 = assert(core.lock(f, { shared = true }))
  t.fails("busy", nil, core.lock(f))
  s1:unlock()
  t.fails("busy", nil, core.lock(f))
  s2:unlock()
  do
    local l3 <close> = assert(core.lock(f))
    t.fails("busy", nil, core.lock(f))
  end
  local l4 = assert(core.lock(f))
  l4 = nil -- luacheck: ignore
  collectgarbage()
  collectgarbage()
  assert(core.lock(f)):unlock()
end)

local LOCK_TRY = [[
  local core = require "luacme.core"
  local t0 = core.monotonic()
  local l, msg, kind = core.lock(arg[1], { timeout = tonumber(arg[2]) })
  io.write(tostring(kind), " ", string.format("%.2f", core.monotonic() - t0), "\n")
  io.write(tostring(msg), "\n")
]]

t.test("lock: another process finds it busy, then free", function()
  local d = t.tmpdir()
  local f = d .. "/y.lock"
  local l = assert(core.lock(f))
  local r = run_lua(d, LOCK_TRY, { f, "0.4" })
  t.eq(r.status, 0, r.stderr)
  local kind, el = r.stdout:match("^(%S+) (%S+)\n")
  t.eq(kind, "busy")
  el = tonumber(el)
  t.ok(el >= 0.39 and el < 2, "busy after its timeout: " .. tostring(el))
  t.match(r.stdout, "is locked by another process %(pid " .. core.getpid() .. "%)")
  l:unlock()
  r = run_lua(d, LOCK_TRY, { f, "0.4" })
  t.match(r.stdout, "^nil ")                        -- got it: no kind
end)

t.test("lock: a waiting lock stops on SIGTERM", function()
  local d = t.tmpdir()
  local f = d .. "/z.lock"
  local l = assert(core.lock(f))
  -- spawn's timeout sends SIGTERM after 0.5 s; a wait that ignored the
  -- interrupt would run on until SIGKILL a second later.
  local r = run_lua(d, LOCK_TRY, { f, "20" }, { timeout = 0.5 })
  t.eq(r.timed_out, true)
  t.eq(r.signal, nil, "ended by itself, not by SIGKILL")
  t.eq(r.status, 128 + 15)
  t.match(r.stderr, "interrupted")
  l:unlock()
end)

t.test("lock: released when the holder is killed with SIGKILL", function()
  local d = t.tmpdir()
  local f = d .. "/k.lock"
  local script = d .. "/holder.lua"
  assert(core.write_file(script, [[
    local core = require "luacme.core"
    local l = assert(core.lock(arg[1]))
    io.write("locked ", core.getpid(), "\n")
    io.flush()
    core.sleep(30)
  ]]))
  local p = assert(io.popen("exec " .. table.concat(
    t.luacme_argv(exe(), "run", script, f), " ")))
  local pid
  local guard <close> = setmetatable({}, { __close = function()
    if pid then core.spawn { argv = { "kill", "-KILL", pid } } end
    if io.type(p) == "file" then p:close() end
  end })
  pid = p:read("l"):match("^locked (%d+)$")
  t.ok(pid, "holder reports its lock")
  t.fails("busy", "pid " .. pid, core.lock(f, { timeout = 0.2 }))
  local r = core.spawn { argv = { "kill", "-KILL", pid } }
  t.eq(r.status, 0)
  local _, how, code = p:close()
  pid = nil
  t.eq(how, "signal")
  t.eq(code, 9)
  local t0 = core.monotonic()
  local l = core.lock(f, { timeout = 5 })
  t.ok(l, "lock free after the holder died")
  t.ok(core.monotonic() - t0 < 1)
  l:unlock()
end)

t.test("process and environment helpers", function()
  local env = core.environ()
  t.eq(env.PATH, os.getenv("PATH"))
  t.eq(env.LUACME_TEST_BUILD_DIR, os.getenv("LUACME_TEST_BUILD_DIR"))
  local r = core.spawn { argv = { "sh", "-c", "echo $PPID; id -u; uname -n" } }
  t.eq(r.stdout, core.getpid() .. "\n" .. core.getuid() .. "\n" .. core.hostname() .. "\n")
  for fd = 0, 2 do t.eq(type(core.isatty(fd)), "boolean") end
  -- A spawned child has /dev/null and pipes: no terminal anywhere.
  r = run_lua(t.tmpdir(), [[
    local core = require "luacme.core"
    print(core.isatty(0), core.isatty(1), core.isatty(2))
  ]])
  t.eq(r.stdout, "false\tfalse\tfalse\n")
  t.raises(function() core.isatty(-1) end, "bad argument")
  local old = core.umask(18)                        -- 022
  t.eq(core.umask(old), 18)
  t.raises(function() core.umask(512) end, "bad argument")
end)

-- C stops at a NUL: "dir/f\0.bak" would act on "dir/f". Such paths are a
-- caller's bug and raise, and nothing on disk is touched.
t.test("paths with a NUL byte raise and touch nothing", function()
  local d = t.tmpdir()
  local f = d .. "/f"
  t.writefile(f, "old")
  local bad = f .. "\0.tmp"
  local calls = {
    function() return core.write_file(bad, "new") end,
    function() return core.read_file(bad) end,
    function() return core.mkdir(bad) end,
    function() return core.mkdir_p(d .. "/x\0/y") end,
    function() return core.stat(bad) end,
    function() return core.lstat(bad) end,
    function() return core.listdir(d .. "\0/sub") end,
    function() return core.unlink(bad) end,
    function() return core.rmdir(d .. "\0") end,
    function() return core.rename(bad, d .. "/g") end,
    function() return core.rename(d .. "/g", bad) end,
    function() return core.chmod(bad, 420) end,
    function() return core.symlink("f", bad) end,
    function() return core.symlink(bad, d .. "/link") end,
    function() return core.fsync_dir(d .. "\0") end,
    function() return core.lock(bad) end,
    function() return core.spawn{ argv = { "true" }, cwd = d .. "\0/x" } end,
  }
  for i, fn in ipairs(calls) do
    local ok, err = pcall(fn)
    t.ok(not ok, "call " .. i .. " did not raise")
    t.match(tostring(err), "NUL")
  end
  t.eq(t.readfile(f), "old")
  t.eq(table.concat(core.listdir(d), ","), "f")
end)
