-- Programs run from tasks (hooks.run -> luacme.sched.spawn ->
-- core.spawn_start): a running program holds up no other task, its
-- timeout holds however busy the loop is, and closing its task stops it.
-- Overlap is shown by monotonic start/end times the tasks record; the
-- programs' own run time (sleep 0.5) is the workload, not a wait for
-- something else.
local t = require "testlib"
local core = require "luacme.core"
local sched = require "luacme.sched"
local hooks = require "luacme.hooks"

local function overlap(a, b)
  return a[1] < b[2] and b[1] < a[2]
end

-- A task that runs argv through hooks.run and records [start, end].
local function runner(log, i, argv, opts)
  return function()
    local s = core.monotonic()
    local res, msg = hooks.run(argv, opts)
    log[i] = { s, core.monotonic() }
    return res, msg
  end
end

-- The entries of /proc/self/fd: our open descriptors.
local function nfds()
  return #assert(core.listdir("/proc/self/fd"))
end

t.test("two programs of 0.5 s in two tasks take about 0.5 s", function()
  local log = {}
  local t0 = core.monotonic()
  local res = sched.all({
    runner(log, 1, { "sleep", "0.5" }),
    runner(log, 2, { "sh", "-c", "sleep 0.5; echo two" }),
  })
  local took = core.monotonic() - t0
  t.ok(res[1][1], tostring(res[1][2]))
  t.eq(res[2][1].stdout, "two\n")
  t.ok(overlap(log[1], log[2]), "the two runs overlap")
  t.ok(took >= 0.5 and took < 0.85, "2 x 0.5 s took " .. took)
end)

t.test("a sleeping task keeps ticking while a program runs", function()
  local done, ticks, at_end = false, 0, nil
  sched.all({
    function()
      assert(hooks.run({ "sleep", "0.5" }))
      done = true
      at_end = ticks
    end,
    function()
      while not done do
        sched.sleep(0.02)
        ticks = ticks + 1
      end
    end,
  })
  -- 0.5 s / 20 ms is 25; a blocking run would give 0 before its end.
  t.ok(at_end >= 10, "ticks while the program ran: " .. at_end)
end)

t.test("HTTP requests go on while a program runs", function()
  local r <close> = assert(core.http01_responder{ address = "127.0.0.1",
    port = 0 })
  local token = string.rep("a", 43)
  assert(r:add(token, "ka"))
  local http = assert(core.http{ allow_http = true, timeout = 10 })
  local url = "http://127.0.0.1:" .. r:port() ..
    "/.well-known/acme-challenge/" .. token
  local done, got, at_end = false, 0, nil
  local prog_end, first
  sched.all({
    function()
      assert(hooks.run({ "sleep", "0.5" }))
      prog_end = core.monotonic()
      done = true
      at_end = got
    end,
    function()
      while not done do
        local status, _, body = sched.request(http, { url = url })
        t.eq(status, 200)
        t.eq(body, "ka")
        got = got + 1
        first = first or core.monotonic()
      end
    end,
  })
  t.ok(first and first < prog_end, "a request finished while the program ran")
  t.ok(at_end >= 5, "requests finished while the program ran: " .. at_end)
end)

t.test("a program's timeout kills it while another task keeps the loop busy",
  function()
  local busy, killed_at, took = 0, nil, nil
  local msg
  local t0 = core.monotonic()
  sched.all({
    function()
      local res
      res, msg = hooks.run({ "sleep", "30" }, { timeout = 0.3 })
      t.eq(res, nil)
      took = core.monotonic() - t0
      killed_at = busy
    end,
    function()
      -- Never idle for long: the loop always has a timer due soon.
      while not killed_at do
        sched.sleep(0.005)
        busy = busy + 1
      end
    end,
  })
  t.match(msg, "timed out after 0.3 s")
  t.ok(took >= 0.29 and took < 1.5, "killed after " .. took)
  t.ok(killed_at >= 10, "the other task ran meanwhile: " .. killed_at)
  -- One that ignores SIGTERM gets SIGKILL after the grace second.
  local res
  sched.all({ function()
    res = sched.spawn{ argv = { "sh", "-c", "trap '' TERM; echo ready; sleep 30" },
      timeout = 0.3 }
  end, function() sched.sleep(0.05) end })
  t.eq(res.timed_out, true)
  t.eq(res.signal, 9)
  t.eq(res.stdout, "ready\n")
end)

t.test("sched.spawn in a task gives what core.spawn gives", function()
  local big = string.rep("0123456789abcdef", 20000)
  local res = sched.all({
    function() return sched.spawn{ argv = { "cat" }, stdin = big,
      max_output = #big } end,
    function() return sched.spawn{ argv = { "sh", "-c", "echo o; echo e >&2; exit 3" } } end,
    function() return sched.spawn{ argv = { "luacme-no-such-program" } } end,
    function() return sched.spawn{ argv = { "echo", "hello" }, max_output = 2 } end,
    function() return sched.spawn{ argv = { "env" }, env = { A = "b" } } end,
  })
  t.eq(res[1][1].stdout == big, true)
  t.eq(res[1][1].status, 0)
  t.eq(res[2][1].status, 3)
  t.eq(res[2][1].stdout, "o\n")
  t.eq(res[2][1].stderr, "e\n")
  t.fails("not_found", "luacme%-no%-such%-program", table.unpack(res[3], 1, 3))
  t.eq(res[4][1].stdout, "he")
  t.eq(res[4][1].truncated, true)
  t.eq(res[5][1].stdout, "A=b\n")
  -- Outside a task it is core.spawn.
  t.eq(sched.spawn{ argv = { "echo", "x" } }.stdout, "x\n")
end)

t.test("a raise closes a task running a program: the program is stopped",
  function()
  local d = t.tmpdir()
  local pidfile = d .. "/pid"
  local t0 = core.monotonic()
  t.raises(function()
    sched.all({
      function()
        sched.spawn{ argv = { "sh", "-c", 'echo $$ > "$1"; exec sleep 30',
          "sh", pidfile } }
      end,
      function()
        while not core.stat(pidfile) or #t.readfile(pidfile) == 0 do
          sched.sleep(0.01)
        end
        error("boom", 0)
      end,
    })
  end, "boom")
  t.ok(core.monotonic() - t0 < 2.5, "not waited for")
  local pid = t.readfile(pidfile):match("%d+")
  local r = core.spawn{ argv = { "kill", "-0", pid } }
  t.ok(r.status ~= 0, "the program is gone")
end)

t.test("core.spawn_start: done, result, close; no zombies, no fd leak",
  function()
  local before = nfds()
  local p = assert(core.spawn_start{ argv = { "sh", "-c", "echo hi" } })
  t.raises(function() p:result() end, "still running")
  while not p:done() do core.http_run(1, { p }) end
  local r = p:result()
  t.eq(r.status, 0)
  t.eq(r.stdout, "hi\n")
  t.raises(function() p:result() end, "collected")
  p:close()
  -- close stops one still running: SIGTERM first.
  local q = assert(core.spawn_start{ argv = { "sleep", "30" } })
  local t0 = core.monotonic()
  t.eq(q:done(), false)
  q:close()
  q:close()
  t.ok(core.monotonic() - t0 < 1, "sleep ends on SIGTERM")
  -- The wait of core.http_run wakes for the program, not after 1 s.
  q = assert(core.spawn_start{ argv = { "sleep", "0.1" } })
  t0 = core.monotonic()
  while not q:done() do core.http_run(1, { q }) end
  local el = core.monotonic() - t0
  t.ok(el < 0.4, "noticed the exit after " .. el)
  q:close()
  do
    local g <close> = assert(core.spawn_start{ argv = { "sleep", "30" } })
  end
  t.fails("not_found", nil, core.spawn_start{ argv = { "/nonexistent/x" } })
  t.raises(function() core.spawn_start{ argv = { "true" }, shell = 1 } end,
    "unknown option 'shell'")
  t.raises(function() core.http_run(0, { {} }) end, "no process")
  collectgarbage()
  t.eq(nfds(), before)
  local ps = core.spawn{ argv = { "ps", "-o", "stat=,pid=", "--ppid",
    tostring(core.getpid()) } }
  local lines = {}
  for l in ps.stdout:gmatch("[^\n]+") do lines[#lines + 1] = l end
  t.eq(#lines, 1, ps.stdout)
end)

t.test("a program with its pipes closed is waited for, not spun on",
  function()
  -- Only its exit is left to see: core.http_run must still wait (in
  -- growing steps), with and without HTTP transfers in the process.
  for _, with_http in ipairs({ false, true }) do
    local x
    if with_http then
      local r <close> = assert(core.http01_responder{ address = "127.0.0.1",
        port = 0 })
      local http = assert(core.http{ allow_http = true, timeout = 10 })
      x = assert(http:start{ url = "http://127.0.0.1:" .. r:port() .. "/" })
      while not x:done() do core.http_run(1) end
    end
    local p <close> = assert(core.spawn_start{ argv = { "sh", "-c",
      "exec >&- 2>&-; sleep 0.3" } })
    local rounds = 0
    while not p:done() do
      core.http_run(1, { p })
      rounds = rounds + 1
    end
    t.eq(p:result().status, 0)
    t.ok(rounds < 60, "rounds of the wait: " .. rounds)
  end
end)
