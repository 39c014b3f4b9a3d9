-- One whole issuance, top to bottom, with as few requests as the
-- protocol allows:
--
--   1. newOrder
--   2. each authorization fetched once (several at once for a large
--      order: M.width); valid ones left alone; for each pending one, a
--      hook and a challenge picked (pick)
--   3. every challenge deployed through its hook, grouped per hook
--   4. the hooks' ready() asked until all say the response is visible
--   5. every challenge accepted (a few at once for a large order from a
--      CA far away), then the ORDER (not each authorization) polled; on
--      invalid, the failing authorizations read for the CA's problem
--      per identifier, and the hooks' invalid() told
--   6. cleanup of every deployed challenge (a <close> guard: also on
--      error and Ctrl-C)
--   7. finalize with the CSR, the order polled while processing
--   8. the chain downloaded (an alternate chosen by issuer CN if asked)
--
--   local issuance = require "luacme.issuance"
--   local res, err = issuance.issue(client, {
--     identifiers = acme.domain_ids("example.com", "*.example.com"),
--     csr = der,                  -- or function(order) -> der | nil, err
--     hooks = { h1, h2 },         -- hooks.load(spec, "challenge"), or
--                                 -- tables { types=, deploy=, cleanup=,
--                                 -- ready=?, invalid=?, name=?, opts=? }
--     types = { "dns-01" },       -- optional: only these challenge types
--     on_event = function(name, fields, text, opts) end,   -- optional
--     timeout = 300,              -- seconds (or deadline = client clock)
--     ready_timeout = 300,        -- seconds for every ready() to say true
--     not_before =, not_after =, profile =, replaces =,
--     preferred_chain = "Root CN",  -- issuer CN, optional
--     key = cert_key,             -- optional: the leaf must match it
--   })
--   -- res = { order=, certs = {der...}, pems = {pem...} (as the CA sent
--   -- them), pem=, cert_url=, items = {the challenge tables deployed} }
--
-- pick: the first type, in the order the hooks are given and then in
-- each hook's own order, that the CA offers and the identifier allows
-- (a wildcard only dns-01, an IP address only http-01 or tls-alpn-01).
--
-- Events (on_event(name, fields, text, opts), see luacme.output), each
-- emitted where the work or the waiting happens:
--   deployed   {identifier, wildcard, type, hook}
--   ready_wait {pending = {identifier...}, elapsed, timeout}
--   validating {count}             accepted; the CA validates now
--   waiting    {pending, elapsed, timeout[, finalizing]}  between polls
--   finalize   {}                  all valid; the CSR goes to the CA
--   cleanup    {identifier, wildcard, type, hook, ok, error?}
--   hook_event {hook, event, ok, error?}   invalid()
local core = require "luacme.core"
local client_mod = require "luacme.client"
local errors = require "luacme.errors"
local hooks = require "luacme.hooks"
local ident = require "luacme.ident"
local sched = require "luacme.sched"
local util = require "luacme.util"

local M = {}

-- First and longest wait between two rounds of ready() calls.
M.READY_FIRST = 0.5
M.READY_CAP = 5
-- Default seconds to wait for every ready() to say true.
M.READY_TIMEOUT = 300

local function noop() end

-- Seconds to one decimal, for events.
local function tenths(x)
    return math.floor(x * 10 + 0.5) / 10
end

-- "*.example.com" / "192.0.2.1": the name people wrote.
function M.display(a)
    local v = type(a.identifier) == "table" and a.identifier.value or "?"
    return (a.wildcard and "*." or "") .. errors.printable(v)
end

local function who(ch)
    return (ch.wildcard and "*." or "") .. tostring(ch.domain)
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

---------------------------------------------------------------------------
-- 1. The order.

-- The identifiers and authorizations of an order as one comparable
-- string: sets, since a CA may list them in any order (Pebble shuffles
-- them on every rendering), names compared in canonical form.
local function contents(o)
    local ids, urls = {}, {}
    for _, id in ipairs(o.identifiers or {}) do
        local n = ident.normalize(id)
        ids[#ids + 1] = id.type .. ":" .. (n and n.value or id.value)
    end
    for _, u in ipairs(o.authz_urls or {}) do urls[#urls + 1] = u end
    table.sort(ids)
    table.sort(urls)
    return table.concat(ids, " ") .. "\n" .. table.concat(urls, " ")
end

-- RFC 8555 §7.1.3: identifiers and authorizations of an order do not
-- change; an order whose did is treated as invalid (the client SHOULD).
-- nil when `now` (a later reply for the order) still matches `first`.
local function changed(first, now)
    if contents(first) == contents(now) then return nil end
    return errors.new("order", "the CA changed the identifiers or " ..
        "authorizations of order " .. tostring(first.uri) ..
        " between replies; treating it as invalid",
        { uri = first.uri, order = now, changed = true })
end

-- The canonical "type:value" of an authorization's identifier, with
-- "*." for a wildcard authorization, or nil when it is no valid name.
local function authz_key(a)
    local id = a.identifier
    if type(id) ~= "table" or type(id.value) ~= "string" then return nil end
    local n = ident.normalize({ type = id.type, value = (a.wildcard and
        id.type == "dns" and "*." or "") .. id.value })
    return n and (n.type .. ":" .. n.value)
end

-- Why an order must not be worked on because of what it lists, or nil:
-- identifiers other than those asked for (a ready order needs no
-- authorization, so nothing else would check its names), or more
-- authorizations than identifiers (each one is a request; RFC 8555
-- §7.1.3 gives one per identifier).
local function foreign(run, order)
    local got, n = {}, 0
    for _, id in ipairs(order.identifiers) do
        local k = authz_key({ identifier = id })
        if not run.wanted[k or ""] then
            return errors.new("response", "order " .. tostring(order.uri) ..
                " is for " .. errors.printable(tostring(id.value)) ..
                ", which this order did not ask for; refused",
                { uri = order.uri, order = order, identifier = id })
        end
        if not got[k] then n = n + 1 end
        got[k] = true
    end
    if n ~= run.nwanted then
        return errors.new("response", "order " .. tostring(order.uri) ..
            " names " .. n .. " of the " .. run.nwanted .. " identifiers " ..
            "asked for; refused", { uri = order.uri, order = order })
    end
    if #order.authz_urls > run.nwanted then
        return errors.new("response", "order " .. tostring(order.uri) ..
            " lists " .. #order.authz_urls .. " authorizations for " ..
            run.nwanted .. " identifiers; refused",
            { uri = order.uri, order = order })
    end
    return nil
end

local function new_order(run)
    local c, opts = run.client, run.opts
    local order, err = c:authorize_order(opts.identifiers, {
        not_before = opts.not_before, not_after = opts.not_after,
        profile = opts.profile, replaces = opts.replaces })
    if not order then return nil, err end
    err = foreign(run, order)
    if err then return nil, err end
    local expires = util.parse_rfc3339(order.expires)
    if expires and expires <= c.now() and order.status ~= "valid" then
        return nil, errors.new("order", "order " .. tostring(order.uri) ..
            " expired at " .. order.expires, { uri = order.uri, order = order })
    end
    return order
end

---------------------------------------------------------------------------
-- 2. Authorizations, and a hook and challenge for each pending one.

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

-- Why pending authorization a must not be worked on, or nil.
local function refuse(run, a)
    if not run.wanted[authz_key(a) or ""] then
        -- Hooks would publish a response for a name nobody asked for
        -- (RFC 8555 §7.1.3: authorizations are for the order's
        -- identifiers).
        return errors.new("response", "the CA asks to validate " ..
            errors.printable((a.wildcard and "*." or "") ..
                tostring(a.identifier.value)) .. " (" ..
            tostring(a.identifier.type) .. "), which this order " ..
            "did not ask for; refused", { identifier = a.identifier,
                uri = a.uri, authz = a })
    end
    local expires = util.parse_rfc3339(a.expires)
    if expires and expires <= run.client.now() then
        -- RFC 8555 §7.1.4: past expires the authorization is dead;
        -- deploying for it only leaves the hooks work to undo.
        a.status = "expired"
        return client_mod.authz_error(a)
    end
    return nil
end

-- How many of an order's requests of one kind are in flight at once.
-- Each request signs a nonce of its own and every reply brings one
-- back, so k at once cost k - 1 newNonce requests once per client (the
-- pool keeps them for the next phase and order); against a CA far away
-- they cut the phase's round trips k-fold. One extra nonce per
-- PARALLEL_PER requests keeps that under 1 in 20 and leaves orders of
-- up to 20 names as serial as before (the same request counts, also
-- against a slow CA). PARALLEL bounds the authorization reads (and the
-- reads after a failure).
--
-- ACCEPT_PARALLEL bounds the accepts, and only for a CA at least
-- REMOTE_RTT away (the quickest authorization read): each accept starts
-- a validation, and a CA close by validates more slowly than one
-- client accepts (Pebble on the bench's machine: about 2 ms of CPU per
-- challenge). Accepted faster than that, the last accept goes out well
-- before the validations are done, the order misses the poll 150 ms
-- after it and waits for the one at 450 ms: 100 names on the bench, 3
-- accepts at once, median 0.74 s on a loaded machine against 0.51 s
-- one at a time (and 1.25 s at worst with 8 at once). One at a time,
-- the CA's replies pace the accepts. A CA far away validates in
-- parallel long before n round trips are over: there 3 at once save
-- two thirds of them.
M.PARALLEL = 8
M.ACCEPT_PARALLEL = 3
M.REMOTE_RTT = 0.02
M.PARALLEL_PER = 20

-- width(n[, cap]): how many of n requests go at once, at most cap
-- (default M.PARALLEL).
function M.width(n, cap)
    if n <= 1 then return 1 end
    return math.max(1, math.min(cap or M.PARALLEL, n,
        (n - 1) // M.PARALLEL_PER + 1))
end

-- each(list, fn[, cap]) -> results: fn(x) for every x of list,
-- M.width(#list, cap) at once (luacme.sched tasks), started in list
-- order; results[i] = table.pack(fn(list[i])), or nil for those never
-- started: once one returns nil, no further one starts (those in
-- flight finish). The first failure in list order is then the one a
-- serial loop would have met: every earlier one was started before it
-- and ran to its end.
-- A raise (Ctrl-C) stops every task (sched.all).
local function each(list, fn, cap)
    local stop = false
    local fns = {}
    for i, x in ipairs(list) do
        fns[i] = function()
            if stop then return nil end
            local r = table.pack(fn(x))
            if r[1] == nil then stop = true end
            return r
        end
    end
    local out = {}
    for i, r in ipairs(sched.all(fns, M.width(#list, cap))) do
        out[i] = r[1]
    end
    return out
end

-- The work of the order: a list of { hook=, ch= (the hook's challenge
-- table), authz=, chal= (the challenge object) } for its pending
-- authorizations, or nil, err. The authorizations are read several at
-- once (each); the first failure in the order's list is returned.
local function plan(run, order)
    local results = each(order.authz_urls, function(url)
        local t0 = run.now()
        local a, err = run.client:get_authorization(url)
        if not a then return nil, err end
        -- The quickest read: the CA's distance, free of queueing.
        run.rtt = math.min(run.rtt or math.huge, run.now() - t0)
        if a.status == "pending" then
            err = refuse(run, a)
            if err then return nil, err end
            local chal, h = M.pick(run.hooks, a, run.only)
            if not chal then return nil, h end
            local ch
            ch, err = run.client:challenge_for(a, chal)
            if not ch then return nil, err end
            return { hook = h, ch = ch, authz = a, chal = chal }
        elseif a.status ~= "valid" then
            return nil, client_mod.authz_error(a)
        end
        return false
    end)
    local work = {}
    for i = 1, #order.authz_urls do
        local r = results[i]
        if r[1] == nil then return nil, r[2] end
        if r[1] then work[#work + 1] = r[1] end
    end
    return work
end

---------------------------------------------------------------------------
-- 3. Deploy: every challenge at once (luacme.sched tasks), grouped per
-- hook in the order the hooks were given; a hook with serial = true
-- gets its calls one after the other.

local function deploy_one(run, w)
    local ch, h = w.ch, w.hook
    -- Recorded before deploy runs: a half-done deploy is cleaned up too.
    run.live[#run.live + 1] = w
    local ok, err = hooks.call(h, "deploy", ch)
    if not ok then
        err.identifier = ch.identifier
        err.wildcard = ch.wildcard
        err.detail = who(ch) .. ": " .. ch.type .. " via " ..
            h.name .. ": " .. tostring(err.detail)
        return nil, err
    end
    run.emit("deployed", { identifier = ch.domain,
        wildcard = ch.wildcard, type = ch.type,
        hook = h.name }, who(ch) .. ": " .. ch.type ..
        " deployed via " .. h.name)
    return true
end

local function deploy(run, work)
    local fns = {}
    for _, h in ipairs(run.hooks) do
        for _, w in ipairs(work) do
            if w.hook == h then
                fns[#fns + 1] = function() return deploy_one(run, w) end
            end
        end
    end
    -- The first failure in that order is the one reported; the others
    -- went on meanwhile and are cleaned up with the rest.
    for _, r in ipairs(sched.all(fns)) do
        if not r[1] then return nil, r[2] end
    end
    return true
end

---------------------------------------------------------------------------
-- 4. Wait until every response whose hook has ready() is visible.

-- Call ready(ch, opts) (hooks/README.md): true once visible; false or
-- nil, "why" while not yet (asked again until the deadline; the reason
-- is kept for the message); raising is a failure. Returns true, or
-- false, why, or nil, err. An interruption is raised on.
local function call_ready(w)
    local ok, r, why = hooks.serialized(w.hook, pcall, w.hook.ready, w.ch,
        w.hook.opts)
    if not ok then
        if type(r) == "table" and r.kind == "interrupted" then error(r, 0) end
        return nil, errors.new("hook", "hook " .. w.hook.name ..
            ": ready: " .. tostring(r), { hook = w.hook.name,
                identifier = w.ch.identifier })
    end
    if r == true then return true end
    if why ~= nil then
        why = type(why) == "table" and (why.detail or why.kind) or why
    end
    return false, why
end

local function not_visible(pending, elapsed)
    local names = {}
    for _, w in ipairs(pending) do names[#names + 1] = who(w.ch) end
    local why = pending[1].why and (": " ..
        errors.printable(tostring(pending[1].why))) or
        " (the hook's ready() never said so)"
    return errors.new("deadline", "the challenge response for " ..
        table.concat(names, ", ") .. " was not visible after " ..
        math.floor(elapsed) .. " s" .. why, { pending = names,
            identifier = pending[1].ch.identifier,
            wildcard = pending[1].ch.wildcard })
end

local function wait_ready(run, work)
    local pending = {}
    for _, w in ipairs(work) do
        if w.hook.ready then pending[#pending + 1] = w end
    end
    local start = run.now()
    -- The run's deadline bounds the ready waits too; hooks that wait
    -- inside ready() (dns_wait) get it as ch.deadline (run.now clock).
    local limit = math.max(0, math.min(run.ready_timeout,
        run.deadline - run.client.now()))
    for _, w in ipairs(pending) do w.ch.deadline = start + limit end
    local delay = M.READY_FIRST
    while #pending > 0 do
        local still, fns = {}, {}
        for i, w in ipairs(pending) do
            fns[i] = function() return call_ready(w) end
        end
        -- Every ready() of the round at once (DNS lookups, API calls).
        for i, res in ipairs(sched.all(fns)) do
            local r, why = res[1], res[2]
            if r == nil then return nil, why end
            if not r then
                pending[i].why = why
                still[#still + 1] = pending[i]
            end
        end
        pending = still
        if #pending == 0 then break end
        local elapsed = run.now() - start
        if elapsed + delay > limit then
            return nil, not_visible(pending, elapsed)
        end
        local names = {}
        for _, w in ipairs(pending) do names[#names + 1] = who(w.ch) end
        -- What the hook said is what the user can act on.
        local why = pending[1].why and
            errors.printable(tostring(pending[1].why)) or nil
        run.emit("ready_wait", { pending = names, elapsed = tenths(elapsed),
            timeout = tenths(limit), reason = why }, string.format(
            "waiting for %d challenge response%s to become visible " ..
            "(%.1f s / %d s)%s", #names, #names == 1 and "" or "s", elapsed,
            math.floor(limit), why and (": " .. why) or ""),
            { progress = true })
        run.sleep(delay)
        delay = math.min(delay * 2, M.READY_CAP)
    end
    return true
end

---------------------------------------------------------------------------
-- 5. Accept every challenge, then poll the order until it is decided.

-- Statuses of an authorization that did not fail (RFC 8555 §7.1.6):
-- valid, or still being validated when another one made the order
-- invalid.
local UNDECIDED = { pending = true, processing = true, valid = true }

-- Read every worked-on authorization after the order went invalid and
-- report the failing ones with the CA's problem per identifier.
local function failure(run, order, work)
    local errs = {}
    -- Read several at once; one that cannot be read is left out.
    local fns = {}
    for i, w in ipairs(work) do
        fns[i] = function()
            return run.client:get_authorization(w.authz.uri)
        end
    end
    local got = sched.all(fns, M.width(#work))
    for i, w in ipairs(work) do
        local a = got[i][1]
        if a and not UNDECIDED[a.status] then
            local e = client_mod.authz_error(a)
            e.hook = w.hook.name          -- hints fit the hook used
            errs[#errs + 1] = e
        end
    end
    if #errs == 0 then return client_mod.order_error(order) end
    local e = errs[1]
    if #errs > 1 then
        e = errors.new("authorization", #errs .. " authorizations failed",
            { errors = errs, uri = order.uri, order = order })
        e.type = errs[1].type
        e.cause = errs[1].cause
    else
        e.order = order
    end
    return e
end

-- "waiting for N authorizations (x s / y s)" before each poll's sleep.
local function progress(run, what, count, since)
    return function()
        local elapsed = run.now() - since
        local fields = { pending = count, elapsed = tenths(elapsed),
            timeout = run.timeout }
        local text
        if what == "certificate" then
            fields.finalizing = true
            text = string.format("waiting for the certificate (%.1f s / " ..
                "%d s)", elapsed, math.floor(run.timeout))
        else
            text = string.format("waiting for %d authorization%s (%.1f s " ..
                "/ %d s)", count, count == 1 and "" or "s", elapsed,
                math.floor(run.timeout))
        end
        run.emit("waiting", fields, text, { progress = true })
    end
end

local function validate(run, order, work)
    local c = run.client
    run.emit("validating", { count = #work }, nil)
    -- Several accepts at once (each) for a CA far away (M.REMOTE_RTT),
    -- as a serial loop would see them: the first failure or refusal in
    -- the work's order ends the step.
    local pending = {}
    for _, w in ipairs(work) do
        if w.chal.status == "pending" then pending[#pending + 1] = w end
    end
    local results = each(pending, function(w)
        local res, err = c:accept(w.chal)
        if not res then return nil, err end
        -- An invalid challenge stops further accepts as an error does.
        if res.status == "invalid" then return nil, nil, res end
        return res
    end, (run.rtt or 0) >= M.REMOTE_RTT and M.ACCEPT_PARALLEL or 1)
    for i, w in ipairs(pending) do
        local r = results[i]
        if r[1] == nil and r[3] then
            w.authz.status = "invalid"
            return nil, failure(run, order, work)
        end
        if r[1] == nil then return nil, r[2] end
    end
    local o, err = c:poll(order.uri, client_mod.Client.get_order,
        function(x)
            local moved = changed(order, x)
            if moved then return moved end
            if x.status == "pending" then return "wait" end
            return true
        end, { deadline = run.deadline, wait_first = true,
            on_wait = progress(run, "authorizations", #work, run.now()) })
    if not o then return nil, err end
    if o.status == "invalid" then return nil, failure(run, o, work) end
    return o
end

-- Tell the hooks with invalid() which of their challenges the CA
-- refused: err is validate's error (kind "authorization", one per
-- failed authorization, or several in err.errors).
local function report_invalid(run, work, err)
    if type(err) ~= "table" then return end
    local failed = type(err.errors) == "table" and err.errors or { err }
    for _, fe in ipairs(failed) do
        if type(fe) == "table" and fe.kind == "authorization" and fe.uri then
            for _, w in ipairs(work) do
                if w.authz.uri == fe.uri and w.hook.invalid then
                    local ok, cerr = hooks.call(w.hook, "invalid", w.ch,
                        fe.cause or fe)
                    run.emit("hook_event", { hook = w.hook.name,
                        event = "invalid", ok = ok and true or false,
                        error = cerr and cerr.detail or nil }, not ok and
                        ("hook " .. w.hook.name .. ": invalid: " ..
                        tostring(cerr and cerr.detail)) or nil,
                        { warning = not ok or nil, verbose = ok or nil })
                end
            end
        end
    end
end

---------------------------------------------------------------------------
-- 6. Cleanup: once per deployed challenge, last deployed first.

local function cleanup_one(run, w)
    local ch, h = w.ch, w.hook
    local ok, r, err = pcall(hooks.call, h, "cleanup", ch)
    if not ok then
        if type(r) == "table" and r.kind == "interrupted" then
            run.interrupted = run.interrupted or r
        end
        r, err = nil, r
    end
    local fields = { identifier = ch.domain, wildcard = ch.wildcard,
        type = ch.type, hook = h.name, ok = r and true or false }
    if r then
        run.emit("cleanup", fields, who(ch) .. ": " .. ch.type ..
            " cleaned up via " .. h.name, { verbose = true })
        return
    end
    fields.error = tostring(type(err) == "table" and
        (err.detail or err.kind) or err)
    run.emit("cleanup", fields, who(ch) .. ": cleanup via " .. h.name ..
        " failed: " .. fields.error, { warning = true })
end

-- The one cleanup guard: its __close cleans every live challenge, all
-- at once (last deployed started first), on success, error or Ctrl-C. A
-- failing cleanup is reported and does not stop the others; an
-- interruption during cleanup is raised once all are done, so Ctrl-C
-- still ends the run.
local function cleanup_guard(run)
    return setmetatable({}, { __close = function()
        local fns = {}
        while #run.live > 0 do
            local w = table.remove(run.live)
            fns[#fns + 1] = function() cleanup_one(run, w) end
        end
        sched.all(fns)
        local e = run.interrupted
        run.interrupted = nil
        if e then error(e, 0) end
    end })
end

-- Steps 2 to 6 for a pending order: returns the order once every
-- authorization is valid, or nil, err; everything deployed is cleaned
-- up before this returns.
local function solve(run, order)
    local work, err = plan(run, order)
    if not work then return nil, err end
    if #work == 0 then return order end
    local o
    do
        local guard <close> = cleanup_guard(run)
        local ok
        ok, err = deploy(run, work)
        if ok then ok, err = wait_ready(run, work) end
        if ok then o, err = validate(run, order, work) end
    end
    run.items = {}
    for i, w in ipairs(work) do run.items[i] = w.ch end
    if not o then
        report_invalid(run, work, err)
        return nil, err
    end
    return o
end

---------------------------------------------------------------------------
-- 7. Finalize, and 8. the chain.

-- Among a chain and its alternates, the one whose top issuer CN is
-- `want` (then: any certificate's issuer CN); else the default.
local function pick_chain(c, ders, meta, want)
    local function matches(list, any)
        for i = #list, 1, -1 do
            local info = core.cert_info(list[i])
            if info and info.issuer_cn == want then return true end
            if not any then return false end
        end
        return false
    end
    if matches(ders, false) then return ders, meta end
    local alts, fetched = {}, 0
    for _, url in ipairs(meta.alternates or {}) do
        if fetched >= client_mod.MAX_ALTERNATES then break end
        fetched = fetched + 1
        local d, m = c:fetch_cert(url, true)
        if d then
            if matches(d, false) then return d, m end
            alts[#alts + 1] = { d, m }
        end
    end
    if matches(ders, true) then return ders, meta end
    for _, alt in ipairs(alts) do
        if matches(alt[1], true) then return alt[1], alt[2] end
    end
    return ders, meta
end

-- The certificate of a ready order (finalized here) or of one already
-- valid or processing. Returns ders, meta (fetch_cert's), order.
local function certificate(run, order, first)
    local c, opts = run.client, run.opts
    if order.status == "ready" then
        run.emit("finalize", {}, "all authorizations valid; finalizing",
            { verbose = true })
        local csr, err = opts.csr
        if type(csr) == "function" then
            csr, err = csr(order)
            if not csr then return nil, err end
        end
        local ders, cert_url, meta, o = c:create_order_cert(
            order.finalize_url, csr, true, { order_url = order.uri,
                deadline = run.deadline,
                on_wait = progress(run, "certificate", 0, run.now()) })
        if not ders then return nil, cert_url end
        err = changed(first, o)
        if err then return nil, err end
        return ders, meta, o
    end
    local err
    if order.status ~= "valid" then
        order, err = c:wait_order(order.uri, run.deadline, true)
        if not order then return nil, err end
    end
    err = changed(first, order)
    if err then return nil, err end
    local ders, meta = c:fetch_cert(order.cert_url, true)
    if not ders then return nil, meta end
    return ders, meta, order
end

---------------------------------------------------------------------------
-- The whole issuance.

-- Hook tables as the steps use them: loaded hooks as they are; a table
-- written inline gets a name and options.
local function hook_list(opts)
    if opts.solver ~= nil then
        error("issue: opts.solver was replaced by opts.hooks, a list of " ..
            "hook tables (hooks/README.md)", 3)
    end
    local list = opts.hooks or { opts.hook }
    if type(list) ~= "table" then error("issue: hooks list expected", 3) end
    local out = {}
    for i, h in ipairs(list) do
        if type(h) ~= "table" or type(h.deploy) ~= "function" or
            type(h.types) ~= "table" then
            error("issue: hook " .. i .. " needs types and deploy " ..
                "(hooks/README.md)", 3)
        end
        if h.name and h.opts then
            out[i] = h
        else
            -- serial = true holds across issuances given the same table.
            out[i] = setmetatable({ name = h.name or ("hook " .. i),
                opts = h.opts or {}, serial_key = h }, { __index = h })
        end
    end
    return out
end

-- The state of one run, passed to every step.
local function new_run(c, opts)
    if type(opts) ~= "table" then error("issue: options table expected", 3) end
    if opts.csr == nil then error("issue: csr expected", 3) end
    -- timeout: the seconds progress events show; deadline: the end.
    local timeout = opts.timeout or (opts.deadline and
        opts.deadline - c.now()) or c.poll_timeout
    local deadline = opts.deadline or (c.now() + timeout)
    -- A client deadline (the command's --timeout) that ends sooner wins,
    -- and progress shows what is really left.
    if c.deadline and c.deadline < deadline then
        deadline = c.deadline
        timeout = deadline - c.now()
    end
    local run = {
        client = c, opts = opts, hooks = hook_list(opts),
        emit = opts.on_event or noop,
        now = opts.now or core.monotonic,
        sleep = opts.sleep or sched.sleep,
        ready_timeout = opts.ready_timeout or M.READY_TIMEOUT,
        timeout = timeout,
        deadline = deadline,
        wanted = {},
        live = {},            -- deployed (or being deployed), to clean up
        items = {},
    }
    if opts.types then
        run.only = {}
        for _, ty in ipairs(opts.types) do run.only[ty] = true end
    end
    run.nwanted = 0
    for _, id in ipairs(opts.identifiers or {}) do
        local n = ident.normalize(id)
        local k = n and (n.type .. ":" .. n.value)
        if k and not run.wanted[k] then
            run.wanted[k] = true
            run.nwanted = run.nwanted + 1
        end
    end
    return run
end

-- issue(client, opts): see the top of this file. Returns { order=,
-- certs = (DER list, leaf first), pems = (the same as the CA's PEM
-- blocks), pem = (the chain as sent), cert_url=, items= } or nil, err.
-- err.kind "unsolvable" when no hook can answer an authorization.
function M.issue(c, opts)
    local run = new_run(c, opts)
    -- Every retry and poll of the client stops at the run's deadline
    -- too, for this run only.
    local saved = c.deadline
    local _ <close> = setmetatable({}, { __close = function()
        c.deadline = saved
    end })
    c.deadline = run.deadline
    return M._issue(c, run, opts)
end

-- The steps of issue, with the run made.
function M._issue(c, run, opts)
    local order, err = new_order(run)
    if not order then return nil, err end
    local first = order
    if order.status == "pending" then
        order, err = solve(run, order)
        if not order then return nil, err end
    end
    if order.status == "invalid" then
        return nil, client_mod.order_error(order)
    end
    local ders, meta
    ders, meta, order = certificate(run, order, first)
    if not ders then return nil, meta end
    if opts.preferred_chain then
        ders, meta = pick_chain(c, ders, meta, opts.preferred_chain)
    end
    if opts.key then
        local same, msg, kind = core.cert_matches_key(ders[1], opts.key)
        if not same then
            return nil, errors.new(kind or "response", msg or ("the issued " ..
                "certificate is not for the CSR's key; refused"),
                { cert_url = meta.url })
        end
    end
    return { order = order, certs = ders, pems = meta.pems, pem = meta.pem,
        cert_url = meta.url, items = run.items }
end

return M
