-- Cooperative tasks in one process: Lua coroutines over libcurl's
-- multi interface. A task waits by yielding to the loop (for an HTTP
-- transfer, a program it runs, a DNS query, a sleep, a lock or its
-- children); the loop drives every transfer of the process's one
-- connection pool, the pipes of every running program and the running
-- DNS queries with one wait (core.http_run) and resumes whoever can go
-- on. Outside a task everything blocks as
-- before, so code written for one issuance works unchanged.
--
--   local sched = require "luacme.sched"
--   local res = sched.all({ f1, f2, f3 }, 2)  -- at most 2 at once;
--   -- res[i] = table.pack(fi()) once all are done
--   sched.sleep(0.5)                 -- a task: others run meanwhile
--   sched.request(t, req)            -- t = core.http{}: as t:request
--   sched.spawn(opts)                -- as core.spawn; others run
--   sched.dns_query(name, type, o)   -- as core.dns_query; others run
--   sched.serial(key, fn, ...)       -- fn(...) with no other task
--                                    -- inside serial(key) meanwhile
--
-- sched.all inside a task runs the functions as child tasks of the
-- same loop (hooks of one issuance inside a parallel renew); outside,
-- it runs a loop until they are done. A raise in a task (an
-- interruption, a programmer error) stops the loop: every task still
-- alive is closed, youngest first, so its <close> guards run (their
-- cleanup then blocks), and the error is raised from sched.all.
--
-- Every wait keeps its bound: a transfer has its timeouts, a program
-- its timeout (the loop wakes for it however busy it is), a DNS query
-- its own, a sleep its end; a task waiting for a lock or for children waits for tasks that
-- have such bounds.
local core = require "luacme.core"

local M = {}

-- Longest wait of the loop in one go, so new sleepers and Ctrl-C are
-- seen (core.http_run caps itself too).
M.MAX_WAIT = 1

M.now = core.monotonic

-- The running task of each coroutine (weak: a dead one goes away).
local TASKS = setmetatable({}, { __mode = "k" })
-- Held serial() keys: key -> { owner = task, waiters = {task...} }.
local LOCKS = {}

-- What a task yields to its loop (private: nothing else yields these).
local WAKE = {}

local Loop = {}
Loop.__index = Loop

local function new_loop()
    return setmetatable({ ready = {}, tasks = {}, alive = 0 }, Loop)
end

-- The task running here, when it may yield to its loop; nil outside a
-- task and where yielding is impossible (a __close run by
-- coroutine.close, a C callback).
local function current()
    local co, main = coroutine.running()
    if main or not coroutine.isyieldable() then return nil end
    return TASKS[co]
end
M.current = current

function Loop:spawn(fn, parent)
    local task = { loop = self, parent = parent }
    task.co = coroutine.create(function()
        fn()
        return WAKE
    end)
    TASKS[task.co] = task
    self.tasks[#self.tasks + 1] = task
    self.alive = self.alive + 1
    self.ready[#self.ready + 1] = task
    return task
end

function Loop:wake(task)
    task.wake_at, task.xfer, task.job, task.waiting = nil, nil, nil, nil
    self.ready[#self.ready + 1] = task
end

-- Close every task still alive, youngest first, then raise err.
function Loop:abort(err)
    for i = #self.tasks, 1, -1 do
        local task = self.tasks[i]
        if coroutine.status(task.co) == "suspended" then
            TASKS[task.co] = nil
            if task.xfer then task.xfer:cancel() end
            if task.job then task.job:close() end
            coroutine.close(task.co)
        end
    end
    self.tasks, self.ready, self.alive = {}, {}, 0
    error(err, 0)
end

-- The coroutine resumed last (a task of this or an outer loop), for the
-- signal handler (core.set_running).
local running = {}

function Loop:step(task)
    running[#running + 1] = task.co
    core.set_running(task.co)
    local ok, what = coroutine.resume(task.co)
    running[#running] = nil
    core.set_running(running[#running])
    if not ok then
        -- A coroutine that died by an error keeps its <close> variables
        -- open (held serial keys among them) until it is closed.
        TASKS[task.co] = nil
        coroutine.close(task.co)
        self:abort(what)
    end
    if coroutine.status(task.co) == "dead" then
        self.alive = self.alive - 1
        TASKS[task.co] = nil
        local p = task.parent
        if p then
            p.children = p.children - 1
            if p.children == 0 then self:wake(p) end
        end
        return
    end
    if what ~= WAKE then
        self:abort("sched: a task yielded outside the scheduler " ..
            "(coroutine.yield inside sched.all)")
    end
end

-- Run until every task is done. A raise (Ctrl-C arrives in the loop
-- itself while it waits) closes every task too.
function Loop:run()
    local ok, err = pcall(self._run, self)
    if not ok then self:abort(err) end
end

function Loop:_run()
    while self.alive > 0 do
        while #self.ready > 0 do
            self:step(table.remove(self.ready, 1))
        end
        if self.alive == 0 then break end
        local now = M.now()
        local next_wake, xfers, jobs = nil, false, {}
        for _, task in ipairs(self.tasks) do
            if task.wake_at then
                if task.wake_at <= now then self:wake(task)
                elseif not next_wake or task.wake_at < next_wake then
                    next_wake = task.wake_at
                end
            elseif task.xfer then
                if task.xfer:done() then self:wake(task) else xfers = true end
            elseif task.job then
                if task.job:done() then self:wake(task)
                else jobs[#jobs + 1] = task.job end
            end
        end
        if #self.ready == 0 then
            local wait = math.min(next_wake and (next_wake - now) or
                M.MAX_WAIT, M.MAX_WAIT)
            if xfers or #jobs > 0 then
                -- core.http_run shortens the wait to what each program
                -- allows (its timeout, its exit check).
                local n, msg = core.http_run(math.max(wait, 0), jobs)
                if not n then self:abort(msg) end
            elseif next_wake then
                if wait > 0 then core.sleep(wait) end
            else
                self:abort("sched: every task waits for another " ..
                    "(a lock or children that never come)")
            end
        end
        -- Drop finished tasks from the scan list now and then.
        if #self.tasks > 2 * self.alive + 16 then
            local keep = {}
            for _, task in ipairs(self.tasks) do
                if coroutine.status(task.co) ~= "dead" then
                    keep[#keep + 1] = task
                end
            end
            self.tasks = keep
        end
    end
end

-- all(fns[, limit]) -> results: calls every function of the list fns
-- in its own task, at most limit (default all) at once, and returns
-- when all are done; results[i] = table.pack(fns[i]()). A raise stops
-- all of them (see the top).
function M.all(fns, limit)
    local n = #fns
    limit = math.max(1, math.min(limit or n, n))
    local results, next_i = {}, 0
    local function worker()
        while next_i < n do
            next_i = next_i + 1
            local i = next_i
            results[i] = table.pack(fns[i]())
        end
    end
    if n == 0 then return results end
    local parent = current()
    if parent then
        parent.children = limit
        for _ = 1, limit do parent.loop:spawn(worker, parent) end
        parent.waiting = true
        coroutine.yield(WAKE)
    else
        local loop = new_loop()
        for _ = 1, limit do loop:spawn(worker) end
        loop:run()
    end
    return results
end

-- sleep(seconds): in a task, lets the others run meanwhile; outside,
-- core.sleep.
function M.sleep(s)
    local task = current()
    if not task then return core.sleep(s) end
    task.wake_at = M.now() + math.max(s, 0)
    coroutine.yield(WAKE)
end

-- request(t, req) -> as t:request(req). In a task with a transport
-- that can start transfers (core.http), the task waits for its
-- transfer while the others run; otherwise (a test's fake transport,
-- outside a task) t:request.
function M.request(t, req)
    local task = current()
    if not task or t.start == nil then
        return t:request(req)
    end
    local x, msg, kind = t:start(req)
    if not x then return nil, msg, kind end
    task.xfer = x
    coroutine.yield(WAKE)
    return x:result()
end

-- spawn(opts) -> as core.spawn(opts). In a task the program runs while
-- the others go on: the task waits for it in the loop, which waits on
-- its pipes together with the transfers (core.spawn_start); outside a
-- task, core.spawn. Closing the task (a raise in the loop) stops the
-- program (SIGTERM, SIGKILL after a grace second).
function M.spawn(opts)
    local task = current()
    if not task then return core.spawn(opts) end
    local p <close>, msg, kind = core.spawn_start(opts)
    if not p then return nil, msg, kind end
    if not p:done() then
        task.job = p
        coroutine.yield(WAKE)
    end
    return p:result()
end

-- dns_query(name, qtype, opts) -> as core.dns_query. In a task the
-- query runs on a thread (core.dns_start) while the others go on;
-- outside a task, core.dns_query. A closed task drops its query, which
-- ends by its own timeout.
function M.dns_query(name, qtype, opts)
    local task = current()
    if not task then return core.dns_query(name, qtype, opts) end
    local q <close>, msg, kind = core.dns_start(name, qtype, opts)
    if not q then return nil, msg, kind end
    if not q:done() then
        task.job = q
        coroutine.yield(WAKE)
    end
    return q:result()
end

-- serial(key, fn, ...) -> fn(...): no two tasks run inside serial with
-- the same key at once (hooks with serial = true, exec scripts); the
-- others wait their turn in order.
function M.serial(key, fn, ...)
    local task = current()
    if not task then return fn(...) end
    local l = LOCKS[key]
    if l and l.owner == task then return fn(...) end   -- re-entered
    while LOCKS[key] do
        local w = LOCKS[key].waiters
        w[#w + 1] = task
        task.waiting = true
        coroutine.yield(WAKE)
    end
    LOCKS[key] = { owner = task, waiters = {} }
    local release <close> = setmetatable({}, { __close = function()
        local held = LOCKS[key]
        LOCKS[key] = nil
        local nxt = held and table.remove(held.waiters, 1)
        if nxt then
            -- The first waiter runs first and takes the key; the rest
            -- find it held and queue again behind it, in order.
            nxt.loop:wake(nxt)
            for _, w in ipairs(held.waiters) do w.loop:wake(w) end
        end
    end })
    return fn(...)
end

return M
