-- The hook engine: turns loaded challenge hooks (luacme.hooks.load) into
-- the solver that luacme.order.issue drives, and runs the hooks' events.
--
--   local solve = require "luacme.solve"
--   local res, err = solve.issue(client, {
--     identifiers = acme.domain_ids("example.com", "*.example.com"),
--     csr = der, hooks = { h1, h2 },          -- hooks.load(spec, "challenge")
--     on_event = function(name, fields, text, opts) end,   -- optional
--     timeout = 300, ready_timeout = 300,     -- seconds
--     types = { "dns-01" },                   -- optional: only these
--     not_before =, not_after =, profile =, replaces =, preferred_chain =,
--   })
--
-- For every pending authorization one challenge is picked (pick): the
-- first type, in the order the hooks are given and then in each hook's
-- own order, that the CA offers and the identifier allows (a wildcard
-- only dns-01, an IP address only http-01 or tls-alpn-01). All are
-- deployed, grouped per hook; then every hook's ready() is called until
-- all say true (DNS propagation) within ready_timeout; order.issue then
-- accepts them all and polls the order. Cleanup always runs, once per
-- deployed challenge (also one whose deploy failed, so half-made state
-- goes too), on success, on error and on Ctrl-C: order.issue holds a
-- <close> guard, and solve.issue holds a second one in case the error
-- came from somewhere order.issue does not guard.
--
-- Events (on_event(name, fields, text, opts), see luacme.output):
--   deployed   {identifier, wildcard, type, hook}
--   ready_wait {pending = {identifier...}, elapsed, timeout}
--   validating {count}             accepted; the CA validates now
--   waiting    {pending, elapsed, timeout}   (while the order is polled)
--   finalize   {}                  all valid; the CSR goes to the CA
--   cleanup    {identifier, wildcard, type, hook, ok, error?}
--   hook_event {hook, event, ok, error?}   startup/exit/invalid/failure
local core = require "luacme.core"
local errors = require "luacme.errors"
local hooks = require "luacme.hooks"
local order = require "luacme.order"

local M = {}

-- First and longest wait between two rounds of ready() calls.
M.READY_FIRST = 0.5
M.READY_CAP = 5
-- Default seconds to wait for every ready() to say true.
M.READY_TIMEOUT = 300

local ONLY_DNS = { ["dns-01"] = true }
local IP_TYPES = { ["http-01"] = true, ["tls-alpn-01"] = true }

-- May challenge type ty be used for authorization a?
function M.allowed(a, ty)
    if a.wildcard then return ONLY_DNS[ty] == true end
    if type(a.identifier) == "table" and a.identifier.type == "ip" then
        return IP_TYPES[ty] == true
    end
    return true
end

-- "*.example.com" / "192.0.2.1": the name people wrote.
function M.display(a)
    local v = type(a.identifier) == "table" and a.identifier.value or "?"
    return (a.wildcard and "*." or "") .. errors.printable(v)
end

-- "webroot (http-01), exec (dns-01)".
function M.describe(list)
    local parts = {}
    for _, h in ipairs(list or {}) do
        parts[#parts + 1] = tostring(h.name) .. " (" ..
            table.concat(h.types or {}, ", ") .. ")"
    end
    if #parts == 0 then return "none" end
    return table.concat(parts, ", ")
end

local function or_list(t)
    if #t <= 1 then return t[1] or "" end
    return table.concat(t, ", ", 1, #t - 1) .. " or " .. t[#t]
end

-- pick(list, authz[, only]) -> challenge, hook | nil, err (kind
-- "unsolvable", naming the identifier, the types it could use and what
-- is configured). only (a set, e.g. {["dns-01"] = true}) limits the
-- challenge types used at all.
function M.pick(list, a, only)
    for _, h in ipairs(list) do
        for _, ty in ipairs(h.types or {}) do
            if M.allowed(a, ty) and (not only or only[ty]) then
                for _, ch in ipairs(a.challenges or {}) do
                    if ch.type == ty then return ch, h end
                end
            end
        end
    end
    local usable, offered = {}, {}
    for _, ch in ipairs(a.challenges or {}) do
        offered[#offered + 1] = errors.printable(tostring(ch.type))
        if M.allowed(a, ch.type) and (not only or only[ch.type]) then
            usable[#usable + 1] = ch.type
        end
    end
    local msg
    if #usable == 0 then
        msg = "the CA offers no challenge luacme may use for " ..
            M.display(a) .. " (offered: " .. (#offered > 0 and
            table.concat(offered, ", ") or "none") .. ")"
    else
        msg = "no hook solves " .. or_list(usable) .. " for " ..
            M.display(a) .. "; configured: " .. M.describe(list)
    end
    return nil, errors.new("unsolvable", msg, { identifier = a.identifier,
        wildcard = a.wildcard, uri = a.uri, offered = usable })
end

-- The challenge table a hook receives (hooks/README.md) for an item of
-- order.issue.
function M.challenge(item)
    return hooks.challenge{
        type = item.type, token = item.token, uri = item.uri,
        identifier = { type = item.identifier_type or "dns",
            value = item.identifier },
        key_authorization = item.key_authorization,
        wildcard = item.wildcard,
        cert = item.cert, cert_pem = item.cert, key = item.key,
    }
end

local function noop() end

-- Seconds to one decimal, for events.
local function tenths(x)
    return math.floor(x * 10 + 0.5) / 10
end

local Solver = {}
Solver.__index = Solver

-- new(list, opts) -> solver object; solver.solver is the table for
-- order.issue. opts: on_event, now (monotonic seconds), sleep,
-- ready_timeout, types (a list: only these challenge types are used).
function M.new(list, opts)
    opts = opts or {}
    if type(list) ~= "table" then error("solve.new: hook list expected", 2) end
    local s = setmetatable({
        hooks = list,
        on_event = opts.on_event or noop,
        now = opts.now or core.monotonic,
        sleep = opts.sleep or core.sleep,
        ready_timeout = opts.ready_timeout or M.READY_TIMEOUT,
        chosen = {},          -- challenge URL -> hook
        entries = {},         -- every deploy attempted: {hook, ch, item}
        live = {},            -- entries still to clean up
        phase = nil,          -- "validating" / "finalizing" once there
    }, Solver)
    if opts.types then
        s.only = {}
        for _, ty in ipairs(opts.types) do s.only[ty] = true end
    end
    s.solver = {
        choose = function(a) return s:choose(a) end,
        deploy = function(items) return s:deploy(items) end,
        cleanup = function() s:cleanup() end,
    }
    return s
end

function Solver:emit(name, fields, text, opts)
    self.on_event(name, fields, text, opts)
end

local function who(item)
    return (item.wildcard and "*." or "") .. tostring(item.identifier)
end

-- order.issue's choose: the challenge for a, or nil (the reason is kept
-- in self.unsolvable, order.issue only knows "unsupported").
function Solver:choose(a)
    local ch, h = M.pick(self.hooks, a, self.only)
    if not ch then
        self.unsolvable = self.unsolvable or h
        return nil
    end
    self.chosen[ch.uri] = h
    return ch
end

-- Call ready(ch, opts) (hooks/README.md): true once visible; false or
-- nil, "why" while not yet (asked again until the deadline; the reason
-- is kept for the message); raising is a failure. Returns true, or
-- false, why, or nil, err. An interruption is raised on.
local function call_ready(e)
    local ok, r, why = pcall(e.hook.ready, e.ch, e.hook.opts)
    if not ok then
        if type(r) == "table" and r.kind == "interrupted" then error(r, 0) end
        return nil, errors.new("hook", "hook " .. e.hook.name ..
            ": ready: " .. tostring(r), { hook = e.hook.name })
    end
    if r == true then return true end
    if why ~= nil then
        why = type(why) == "table" and (why.detail or why.kind) or why
    end
    return false, why
end

-- Wait until every deployed challenge whose hook has ready() is visible.
function Solver:wait_ready()
    local pending = {}
    for _, e in ipairs(self.entries) do
        if e.hook.ready then pending[#pending + 1] = e end
    end
    if #pending == 0 then return true end
    local start = self.now()
    local delay = M.READY_FIRST
    while true do
        local still = {}
        for _, e in ipairs(pending) do
            local r, err = call_ready(e)
            if r == nil then
                err.identifier = err.identifier or { type =
                    e.item.identifier_type, value = e.item.identifier }
                return nil, err
            end
            if not r then
                e.why = err
                still[#still + 1] = e
            end
        end
        pending = still
        if #pending == 0 then return true end
        local names = {}
        for _, e in ipairs(pending) do names[#names + 1] = who(e.item) end
        local elapsed = self.now() - start
        if elapsed + delay > self.ready_timeout then
            local why = pending[1].why and (": " ..
                errors.printable(tostring(pending[1].why))) or
                " (the hook's ready() never said so)"
            return nil, errors.new("deadline", "the challenge response " ..
                "for " .. table.concat(names, ", ") .. " was not visible " ..
                "after " .. math.floor(elapsed) .. " s" .. why,
                { pending = names, identifier = {
                    type = pending[1].item.identifier_type,
                    value = pending[1].item.identifier },
                    wildcard = pending[1].item.wildcard })
        end
        self:emit("ready_wait", { pending = names, elapsed = tenths(elapsed),
            timeout = self.ready_timeout }, string.format(
            "waiting for %d challenge response%s to become visible " ..
            "(%.1f s / %d s)", #names, #names == 1 and "" or "s", elapsed,
            math.floor(self.ready_timeout)), { progress = true })
        self.sleep(delay)
        delay = math.min(delay * 2, M.READY_CAP)
    end
end

-- order.issue's deploy: every item, grouped per hook in the order the
-- hooks were given; then wait for ready().
function Solver:deploy(items)
    local groups = {}
    for _, it in ipairs(items) do
        local h = self.chosen[it.uri]
        if not h then
            error("solve: item for " .. tostring(it.uri) .. " was not " ..
                "chosen by this solver", 2)
        end
        groups[h] = groups[h] or {}
        table.insert(groups[h], it)
    end
    for _, h in ipairs(self.hooks) do
        for _, it in ipairs(groups[h] or {}) do
            local e = { hook = h, item = it, ch = M.challenge(it) }
            -- Recorded before deploy runs: a half-done deploy is cleaned.
            self.entries[#self.entries + 1] = e
            self.live[#self.live + 1] = e
            local ok, err = hooks.call(h, "deploy", e.ch)
            if not ok then
                err.identifier = { type = it.identifier_type,
                    value = it.identifier }
                err.wildcard = it.wildcard
                err.detail = who(it) .. ": " .. it.type .. " via " ..
                    h.name .. ": " .. tostring(err.detail)
                return nil, err
            end
            self:emit("deployed", { identifier = it.identifier,
                wildcard = it.wildcard or false, type = it.type,
                hook = h.name }, who(it) .. ": " .. it.type ..
                " deployed via " .. h.name)
        end
    end
    local ok, err = self:wait_ready()
    if not ok then return nil, err end
    self.phase = "validating"
    self.count = #items
    self.t0 = self.now()
    self:emit("validating", { count = #items }, nil)
    return true
end

-- Clean up every live entry once, last deployed first. Failures are
-- reported and do not stop the others; an interruption arriving here
-- is kept (self.interrupted) for solve.issue to raise afterwards, since
-- order.issue's guard would swallow it.
function Solver:cleanup()
    self.phase = nil
    while #self.live > 0 do
        local e = table.remove(self.live)
        local it = e.item
        local ok, r, err = pcall(hooks.call, e.hook, "cleanup", e.ch)
        if not ok then
            if type(r) == "table" and r.kind == "interrupted" then
                self.interrupted = self.interrupted or r
                err = r
            else
                err = r
            end
            r = nil
        end
        local fields = { identifier = it.identifier,
            wildcard = it.wildcard or false, type = it.type,
            hook = e.hook.name, ok = r and true or false }
        if r then
            self:emit("cleanup", fields, who(it) .. ": " .. it.type ..
                " cleaned up via " .. e.hook.name, { verbose = true })
        else
            fields.error = tostring(type(err) == "table" and
                (err.detail or err.kind) or err)
            self:emit("cleanup", fields, who(it) .. ": cleanup via " ..
                e.hook.name .. " failed: " .. fields.error,
                { warning = true })
        end
    end
end

-- A <close> guard running cleanup (idempotent).
function Solver:guard()
    return setmetatable({}, { __close = function() self:cleanup() end })
end

-- Progress while the client sleeps between polls (wire it to the
-- client's sleep): "waiting for N authorizations (x s / y s)".
function Solver:on_sleep(timeout)
    if not self.phase then return end
    local elapsed = self.now() - (self.t0 or self.now())
    local n = self.count or 0
    if self.phase == "validating" then
        self:emit("waiting", { pending = n, elapsed = tenths(elapsed),
            timeout = timeout }, string.format("waiting for %d " ..
            "authorization%s (%.1f s / %d s)", n, n == 1 and "" or "s",
            elapsed, math.floor(timeout or 0)), { progress = true })
    else
        self:emit("waiting", { pending = 0, elapsed = tenths(elapsed),
            timeout = timeout, finalizing = true }, string.format(
            "waiting for the certificate (%.1f s / %d s)", elapsed,
            math.floor(timeout or 0)), { progress = true })
    end
end

-- Tell hooks with invalid() which of their challenges the CA refused:
-- err is order.issue's error (kind "authorization", one per failed
-- authorization, or several in err.errors).
function Solver:report_invalid(err)
    if type(err) ~= "table" then return end
    local failed = { err }
    if type(err.errors) == "table" then failed = err.errors end
    for _, fe in ipairs(failed) do
        if type(fe) == "table" and fe.kind == "authorization" and fe.uri then
            for _, e in ipairs(self.entries) do
                if e.item.authz and e.item.authz.uri == fe.uri and
                    e.hook.invalid then
                    local ok, cerr = hooks.call(e.hook, "invalid", e.ch,
                        fe.cause or fe)
                    self:emit("hook_event", { hook = e.hook.name,
                        event = "invalid", ok = ok and true or false,
                        error = cerr and cerr.detail or nil }, not ok and
                        ("hook " .. e.hook.name .. ": invalid: " ..
                        tostring(cerr and cerr.detail)) or nil,
                        { warning = not ok or nil, verbose = ok or nil })
                end
            end
        end
    end
end

--
-- Sessions: startup/exit/failure of the exec hook style. One session
-- spans a whole run (several certificates with renew): startup() once
-- per hook spec, before its first use; exit() once for each, at the end.
--

local Session = {}
Session.__index = Session

-- session([list,] on_event) -> session; use as
--   local sess <close> = solve.session(on_event)
--   local ok, err = sess:add(hooks)      -- startup() of the new ones
--   sess:failure(err, hooks)             -- when an issuance failed
-- and exit() runs for every started hook on close. With a list,
-- sess:start() adds it.
function M.session(list, on_event)
    if type(list) == "function" then list, on_event = nil, list end
    return setmetatable({ pending = list or {}, on_event = on_event or noop,
        started = {}, seen = {} }, Session)
end

local function spec_key(h)
    return h.spec or h.name
end

function Session:call(h, event, ...)
    local ok, err = hooks.call(h, event, ...)
    if h[event] then
        self.on_event("hook_event", { hook = h.name, event = event,
            ok = ok and true or false, error = err and err.detail or nil },
            not ok and ("hook " .. h.name .. ": " .. event .. " failed: " ..
            tostring(err and err.detail)) or nil,
            { warning = not ok or nil, verbose = ok or nil })
    end
    return ok, err
end

-- startup() of every hook of list not started yet. Returns true or
-- nil, err (the first failure; hooks started so far still get exit()).
function Session:add(list)
    for _, h in ipairs(list or {}) do
        local k = spec_key(h)
        if not self.seen[k] then
            self.seen[k] = true
            self.started[#self.started + 1] = h
            local ok, err = self:call(h, "startup")
            if not ok then return nil, err end
        end
    end
    return true
end

function Session:start()
    return self:add(self.pending)
end

-- failure(err) of the hooks of list (default: every started one), each
-- spec once (dehydrated's request_failure).
function Session:failure(err, list)
    local done = {}
    for _, h in ipairs(list or self.started) do
        local k = spec_key(h)
        if not done[k] then
            done[k] = true
            self:call(h, "failure", err)
        end
    end
end

-- exit() of every started hook, once.
function Session:close()
    while #self.started > 0 do
        local h = table.remove(self.started, 1)
        local ok, e = pcall(self.call, self, h, "exit")
        if not ok and type(e) == "table" and e.kind == "interrupted" then
            self.interrupted = e
        end
    end
end
Session.__close = Session.close

--
-- The whole issuance.
--

-- issue(client, opts): see the top of this file. Returns order.issue's
-- result ({order, certs, pem, cert_url, items}) or nil, err. err.kind
-- "unsolvable" when no hook can answer an authorization.
function M.issue(client, opts)
    if type(opts) ~= "table" then error("solve.issue: options expected", 2) end
    if type(opts.hooks) ~= "table" then
        error("solve.issue: hooks (a list of loaded hooks) expected", 2)
    end
    local s = M.new(opts.hooks, opts)
    if opts.solver_ref then opts.solver_ref(s) end
    local guard <close> = s:guard()
    local csr = opts.csr
    local res, err = order.issue(client, {
        identifiers = opts.identifiers,
        csr = function(o)
            s.phase = "finalizing"
            s.t0 = s.now()
            s:emit("finalize", {}, "all authorizations valid; finalizing",
                { verbose = true })
            if type(csr) == "function" then return csr(o) end
            return csr
        end,
        solver = s.solver,
        deadline = opts.deadline, timeout = opts.timeout,
        not_before = opts.not_before, not_after = opts.not_after,
        profile = opts.profile, replaces = opts.replaces,
        preferred_chain = opts.preferred_chain,
    })
    s:cleanup()
    if s.interrupted then error(s.interrupted, 0) end
    if not res then
        if s.unsolvable and errors.is(err, "unsupported") then
            err = s.unsolvable
        end
        s:report_invalid(err)
        return nil, err
    end
    res.solver = s
    return res
end

return M
