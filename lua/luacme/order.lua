-- One whole issuance, done with as few requests as the protocol allows:
-- newOrder; each authorization fetched once; valid ones left alone;
-- every pending challenge handed to the solver at once, then all
-- accepted; the ORDER (not each authorization) polled with backoff from
-- a short first interval within a deadline; on invalid, the failing
-- authorizations read for the CA's problem per identifier; finalize;
-- the order polled while processing; the chain downloaded (and an
-- alternate chosen by issuer CN when asked).
--
--   local res, err = require("luacme.order").issue(client, {
--     identifiers = acme.domain_ids("a.example", "*.a.example"),
--     csr = der_or_function(order) -> der | nil, err,
--     solver = {
--       types = { "http-01", "dns-01" },      -- preference, optional
--       choose = function(authz) -> challenge, -- optional, overrides types
--       deploy = function(items) -> true | nil, err,   -- all at once
--       cleanup = function(items),             -- always, after deploy
--     },
--     deadline = client.now() + 120,          -- or timeout = seconds
--     not_before =, not_after =, profile =, replaces =,
--     preferred_chain = "Root CN",             -- issuer CN, optional
--     key = cert_key,                -- optional: leaf must match this key
--   })
--   -- res = {order=, certs={der...}, pem=, cert_url=, items=}
--
-- Each item handed to deploy/cleanup: {authz=, challenge=, type=,
-- identifier= (authz value, base name for wildcards), wildcard=, token=,
-- key_authorization=, uri=, and per type: path/body (http-01), name/value
-- (dns-01), cert/key (tls-alpn-01)}.
local core = require "luacme.core"
local errors = require "luacme.errors"
local ident = require "luacme.ident"
local util = require "luacme.util"
local client_mod = require "luacme.client"

local M = {}

M.DEFAULT_TYPES = { "http-01", "dns-01", "tls-alpn-01" }

-- The item (what a hook needs) for challenge ch of authorization a.
function M.challenge_info(client, a, ch)
    local ka, err = client:key_authorization(ch.token)
    if not ka then return nil, err end
    local item = {
        authz = a, challenge = ch, type = ch.type, uri = ch.uri,
        identifier = a.identifier.value, identifier_type = a.identifier.type,
        wildcard = a.wildcard, token = ch.token, key_authorization = ka,
    }
    if ch.type == "http-01" then
        item.path = "/.well-known/acme-challenge/" .. ch.token
        item.body = ka
    elseif ch.type == "dns-01" then
        item.name = "_acme-challenge." .. a.identifier.value .. "."
        item.value = core.b64url_encode(core.sha256(ka))
    elseif ch.type == "tls-alpn-01" then
        local cert, key = client:tls_alpn01_challenge_cert(ch.token,
            a.identifier.value)
        if not cert then return nil, key end
        item.cert, item.key = cert, key
    end
    return item
end

local function choose(solver, a)
    if solver.choose then return solver.choose(a) end
    for _, t in ipairs(solver.types or M.DEFAULT_TYPES) do
        for _, ch in ipairs(a.challenges) do
            if ch.type == t then return ch end
        end
    end
    return nil
end

local function offered(a)
    local t = {}
    for _, ch in ipairs(a.challenges) do t[#t + 1] = ch.type end
    return table.concat(t, ", ")
end

-- Read every worked-on authorization after the order went invalid and
-- report the failing ones with the CA's problem per identifier.
local function failure(client, order, items)
    local errs = {}
    for _, it in ipairs(items) do
        local a = client:get_authorization(it.authz.uri)
        if a and a.status ~= "valid" then
            errs[#errs + 1] = client_mod.authz_error(a)
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

-- Guard whose __close runs the solver's cleanup exactly once, on
-- success, error or interruption.
local function cleanup_guard(solver, items)
    local done = false
    return setmetatable({}, { __close = function()
        if done or not solver.cleanup then return end
        done = true
        local ok, e = pcall(solver.cleanup, items)
        -- Ctrl-C during cleanup still ends the run once cleanup is over;
        -- any other cleanup failure must not hide the issuance result.
        if not ok and type(e) == "table" and e.kind == "interrupted" then
            error(e, 0)
        elseif not ok then
            io.stderr:write("luacme: cleanup failed: ", tostring(e), "\n")
        end
    end })
end

-- Among a chain and its alternates, the one whose top issuer CN is
-- `want` (then: any certificate's issuer CN); else the default.
local function pick_chain(client, ders, meta, want)
    local function matches(list, any)
        for i = #list, 1, -1 do
            local info = core.cert_info(list[i])
            if info and info.issuer_cn == want then return true end
            if not any then return false end
        end
        return false
    end
    if matches(ders, false) then return ders, meta end
    local alts = {}
    for _, url in ipairs(meta.alternates or {}) do
        local d, m = client:fetch_cert(url, true)
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

local function solve(client, order, solver, deadline, wanted)
    local items = {}
    for _, url in ipairs(order.authz_urls) do
        local a, err = client:get_authorization(url)
        if not a then return nil, err end
        if a.status == "pending" and not wanted[authz_key(a) or ""] then
            -- Hooks would publish a response for a name nobody asked
            -- for (RFC 8555 §7.1.3: authorizations are for the order's
            -- identifiers).
            return nil, errors.new("response", "the CA asks to validate " ..
                errors.printable((a.wildcard and "*." or "") ..
                    tostring(a.identifier.value)) .. " (" ..
                tostring(a.identifier.type) .. "), which this order " ..
                "did not ask for; refused", { identifier = a.identifier,
                    uri = a.uri, authz = a })
        end
        local expires = util.parse_rfc3339(a.expires)
        if a.status == "pending" and expires and expires <= client.now() then
            -- RFC 8555 §7.1.4: past expires the authorization is dead;
            -- deploying for it only leaves the hooks work to undo.
            a.status = "expired"
            return nil, client_mod.authz_error(a)
        end
        if a.status == "pending" then
            local ch = choose(solver, a)
            if not ch then
                return nil, errors.new("unsupported", "no supported " ..
                    "challenge for " .. (a.wildcard and "*." or "") ..
                    a.identifier.value .. " (offered: " .. offered(a) .. ")",
                    { identifier = a.identifier, uri = a.uri })
            end
            local item
            item, err = M.challenge_info(client, a, ch)
            if not item then return nil, err end
            items[#items + 1] = item
        elseif a.status ~= "valid" then
            return nil, client_mod.authz_error(a)
        end
    end
    if #items == 0 then return order, items end

    local guard <close> = cleanup_guard(solver, items)
    local ok, err = solver.deploy(items)
    if not ok then
        if not errors.iserror(err) then
            err = errors.new("hook", tostring(err or "deploy failed"))
        end
        return nil, err
    end
    for _, it in ipairs(items) do
        if it.challenge.status == "pending" then
            local ch
            ch, err = client:accept(it.challenge)
            if not ch then return nil, err end
            if ch.status == "invalid" then
                it.authz.status = "invalid"
                return nil, failure(client, order, items)
            end
        end
    end
    local o
    o, err = client:_poll(order.uri, client_mod.Client.get_order,
        function(x)
            local moved = changed(order, x)
            if moved then return moved end
            if x.status == "pending" then return "wait" end
            return true
        end, deadline, true)
    if not o then return nil, err end
    if o.status == "invalid" then return nil, failure(client, o, items) end
    return o, items
end

-- issue(client, opts): see the top of this file. Returns {order=,
-- certs= (DER list, leaf first), pem= (the chain as sent), cert_url=,
-- items=} or nil, err.
function M.issue(client, opts)
    if type(opts) ~= "table" then error("issue: options table expected", 2) end
    local solver = opts.solver or {}
    if type(solver) ~= "table" then error("issue: solver table expected", 2) end
    if opts.csr == nil then error("issue: csr expected", 2) end
    local deadline = opts.deadline or
        (client.now() + (opts.timeout or client.poll_timeout))

    local order, err = client:authorize_order(opts.identifiers, {
        not_before = opts.not_before, not_after = opts.not_after,
        profile = opts.profile, replaces = opts.replaces })
    if not order then return nil, err end
    local expires = util.parse_rfc3339(order.expires)
    if expires and expires <= client.now() and order.status ~= "valid" then
        return nil, errors.new("order", "order " .. tostring(order.uri) ..
            " expired at " .. order.expires, { uri = order.uri, order = order })
    end

    local first = order
    local items = {}
    if order.status == "pending" then
        if type(solver.deploy) ~= "function" then
            error("issue: solver.deploy expected", 2)
        end
        local wanted = {}
        for _, id in ipairs(opts.identifiers) do
            local n = ident.normalize(id)
            if n then wanted[n.type .. ":" .. n.value] = true end
        end
        order, items = solve(client, order, solver, deadline, wanted)
        if not order then return nil, items end
    end
    if order.status == "invalid" then
        return nil, client_mod.order_error(order)
    end

    local ders, cert_url, meta
    if order.status == "ready" then
        local csr = opts.csr
        if type(csr) == "function" then
            csr, err = csr(order)
            if not csr then return nil, err end
        end
        ders, cert_url, meta, order = client:create_order_cert(
            order.finalize_url, csr, true,
            { order_url = order.uri, deadline = deadline })
        if not ders then return nil, cert_url end
    else
        if order.status ~= "valid" then
            order, err = client:wait_order(order.uri, deadline, true)
            if not order then return nil, err end
        end
        err = changed(first, order)
        if err then return nil, err end
        cert_url = order.cert_url
        ders, meta = client:fetch_cert(cert_url, true)
        if not ders then return nil, meta end
    end
    if opts.preferred_chain then
        ders, meta = pick_chain(client, ders, meta, opts.preferred_chain)
    end
    if opts.key then
        local same, msg, kind = core.cert_matches_key(ders[1], opts.key)
        if not same then
            return nil, errors.new(kind or "response", msg or ("the issued " ..
                "certificate is not for the CSR's key; refused"),
                { cert_url = cert_url })
        end
    end
    return { order = order, certs = ders, pem = meta.pem,
        cert_url = meta.url or cert_url, items = items }
end

return M
