-- The cooperative scheduler (luacme.sched): tasks really overlap their
-- waits, limits and serial keys hold, a raise closes every task.
-- Overlap is shown by monotonic start/end times the tasks record, not
-- by wall-clock budgets alone.
local t = require "testlib"
local core = require "luacme.core"
local sched = require "luacme.sched"

-- A task body that records [start, end] around a 0.2 s sleep.
local function timed(log, i, fn)
  return function()
    local s = core.monotonic()
    ;(fn or sched.sleep)(0.2)
    log[i] = { s, core.monotonic() }
    return i
  end
end

-- Do intervals a and b overlap?
local function overlap(a, b)
  return a[1] < b[2] and b[1] < a[2]
end

t.test("sleeps of ten tasks overlap; results come back in order", function()
  local log, fns = {}, {}
  for i = 1, 10 do fns[i] = timed(log, i) end
  local t0 = core.monotonic()
  local res = sched.all(fns)
  local took = core.monotonic() - t0
  for i = 1, 10 do t.eq(res[i][1], i) t.eq(res[i].n, 1) end
  for i = 2, 10 do t.ok(overlap(log[1], log[i]), "task " .. i .. " overlaps 1") end
  t.ok(took < 1.0, "10 x 0.2 s took " .. took)
end)

t.test("limit bounds how many run at once", function()
  local log, fns, running, most = {}, {}, 0, 0
  for i = 1, 6 do
    fns[i] = timed(log, i, function(s)
      running = running + 1
      most = math.max(most, running)
      sched.sleep(s)
      running = running - 1
    end)
  end
  sched.all(fns, 2)
  t.eq(most, 2)
end)

t.test("serial: one task at a time inside a key, others free", function()
  local log, fns = {}, {}
  for i = 1, 3 do
    fns[i] = function() sched.serial("k", timed(log, i)) end
  end
  fns[4] = timed(log, 4)
  sched.all(fns)
  for i = 1, 3 do
    for j = i + 1, 3 do t.ok(not overlap(log[i], log[j]), i .. " and " .. j .. " overlap") end
  end
  t.ok(overlap(log[1], log[4]), "a task outside the key runs meanwhile")
end)

t.test("nested all inside a task joins the same loop", function()
  local log = {}
  local res = sched.all({
    function()
      local inner = sched.all({ timed(log, 1), timed(log, 2) })
      return #inner
    end,
    timed(log, 3),
  })
  t.eq(res[1][1], 2)
  t.ok(overlap(log[1], log[2]) and overlap(log[1], log[3]))
end)

t.test("outside a task everything blocks as before", function()
  t.eq(sched.current(), nil)
  local s = core.monotonic()
  sched.sleep(0.05)
  t.ok(core.monotonic() - s >= 0.05)
  t.eq(sched.serial("k", function(a) return a + 1 end, 1), 2)
end)

t.test("a raise closes every other task (its <close> runs) and is raised", function()
  local closed = {}
  local function guarded(i)
    return function()
      local g <close> = setmetatable({}, { __close = function() closed[i] = true end })
      sched.sleep(5)
    end
  end
  local t0 = core.monotonic()
  local err = t.raises(function()
    sched.all({ guarded(1), guarded(2), function()
      sched.sleep(0.05)
      error({ kind = "interrupted" }, 0)
    end })
  end)
  t.eq(err.kind, "interrupted")
  t.ok(closed[1] and closed[2], "guards of the sleeping tasks ran")
  t.ok(core.monotonic() - t0 < 1, "the sleepers were not waited for")
  -- The scheduler is usable afterwards.
  t.eq(sched.all({ function() return 7 end })[1][1], 7)
end)

t.test("a stray coroutine.yield inside a task is refused", function()
  t.raises(function() sched.all({ function() coroutine.yield(1) end }) end,
    "outside the scheduler")
end)

t.test("user coroutines inside a task still work (wait blocks there)", function()
  local res = sched.all({ function()
    local co = coroutine.wrap(function() coroutine.yield(1) return 2 end)
    return co() + co()
  end })
  t.eq(res[1][1], 3)
end)

t.test("a raise inside serial() releases the key for the next run", function()
  t.raises(function()
    sched.all({ function() sched.serial("r", error, "boom", 0) end,
      function() sched.serial("r", sched.sleep, 0.01) end })
  end, "boom")
  -- Would wait for the dead holder forever (the loop reports that).
  local res = sched.all({ function() return sched.serial("r", function() return 5 end) end })
  t.eq(res[1][1], 5)
end)
