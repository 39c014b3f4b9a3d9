-- A canned-reply transport for unit tests of the protocol client, with
-- the request method shape of core.http's client, plus a small in-memory
-- ACME CA that answers in Pebble 2.4's shapes (paths, status codes,
-- problem documents, Link and Replay-Nonce headers), checks what a real
-- CA checks (Content-Type, nonce, url, jwk/kid, signature) and records
-- every request so tests can assert what was SENT.
--
--   local fake = require "fakehttp"
--   local c, ca, clock = fake.client(key, { keys = { key } })
--   -- or by hand:
--   local clock = fake.clock()
--   local ca = fake.ca{ keys = { key }, clock = clock }
--   local c = acme.client{ directory = ca.dir_url, key = key,
--       transport = ca, now = clock.now, sleep = clock.sleep }
--   ca:once("POST", "/order-plz", "lost")     -- inject one fault
--   ca.log[i] = {method, url, headers, body, protected, payload, status}
local acme = require "luacme"
local core = require "luacme.core"
local cjson = require "cjson"

local M = {}

-- A fake clock: now() and sleep(s) that only advances time.
function M.clock(start)
    local c = { t = start or 1700000000, slept = {} }
    function c.now() return c.t end
    function c.sleep(s)
        assert(type(s) == "number" and s >= 0, "sleep: bad duration")
        c.slept[#c.slept + 1] = s
        c.t = c.t + s
    end
    return c
end

local function b64d(s)
    local v = core.b64url_decode(s)
    assert(v, "fake: bad base64url " .. tostring(s))
    return v
end

local function lower_headers(h)
    local out = {}
    for k, v in pairs(h or {}) do out[k:lower()] = v end
    return out
end

-- Decode a flattened JWS body into rec.protected (table), rec.payload
-- (string), rec.signature (bytes); rec.jws_error on a malformed one.
local function decode_jws(rec)
    local ok, doc = pcall(cjson.decode, rec.body)
    if not ok or type(doc) ~= "table" then
        rec.jws_error = "body is not JSON"
        return
    end
    local n = 0
    for _ in pairs(doc) do n = n + 1 end
    if n ~= 3 or type(doc.protected) ~= "string" or
        type(doc.payload) ~= "string" or type(doc.signature) ~= "string" then
        rec.jws_error = "not a flattened JWS with exactly 3 members"
        return
    end
    rec.protected_b64 = doc.protected
    rec.payload_b64 = doc.payload
    rec.protected = cjson.decode(b64d(doc.protected))
    rec.payload = b64d(doc.payload)
    rec.signature = b64d(doc.signature)
    if rec.payload ~= "" then
        local pok, pj = pcall(cjson.decode, rec.payload)
        if pok then rec.payload_json = pj end
    end
end

---------------------------------------------------------------------------
-- The bare transport: routes and one-shot interceptions.

local T = {}
T.__index = T

function M.new()
    return setmetatable({ log = {}, routes = {}, intercepts = {},
        requests = 0 }, T)
end

-- Route METHOD requests whose URL path matches the Lua pattern to
-- fn(rec, self) -> status, headers, body.
function T:route(method, pattern, fn)
    self.routes[#self.routes + 1] = { method = method, pattern = pattern,
        fn = fn }
end

-- Intercept the next METHOD request whose URL contains `part` (plain
-- text). action:
--   {status=, headers=, body=}  canned reply; the CA never sees it
--   "lost"                      the CA processes it, the reply is lost
--                               (nil, message, "timeout")
--   "connect"                   never reaches the CA (nil, msg, "connect")
--   function(rec, status, headers, body) -> status, headers, body
--                               rewrites the CA's reply
-- `count` repeats it (default 1).
function T:once(method, part, action, count)
    for _ = 1, count or 1 do
        self.intercepts[#self.intercepts + 1] = { method = method,
            part = part, action = action }
    end
end

function T:dispatch(rec)
    local path = rec.url:match("^https?://[^/]+(/[^?#]*)") or rec.url
    for _, r in ipairs(self.routes) do
        if r.method == rec.method then
            local caps = { path:match(r.pattern) }
            if caps[1] ~= nil then
                return r.fn(rec, self, table.unpack(caps))
            end
        end
    end
    return 404, {}, ""
end

function T:request(req)
    assert(type(req) == "table" and type(req.url) == "string" and
        type(req.method) == "string", "fake request: bad argument")
    for k in pairs(req) do
        assert(k == "method" or k == "url" or k == "headers" or k == "body"
            or k == "once",
            "fake request: unknown field " .. tostring(k))
    end
    self.requests = self.requests + 1
    local rec = { method = req.method, url = req.url,
        headers = lower_headers(req.headers), body = req.body, n = self.requests,
        once = req.once }
    if rec.method == "POST" and rec.body then decode_jws(rec) end
    self.log[#self.log + 1] = rec
    if self.on_request then self.on_request(rec) end

    local action
    for i, ic in ipairs(self.intercepts) do
        if ic.method == rec.method and rec.url:find(ic.part, 1, true) then
            action = ic.action
            table.remove(self.intercepts, i)
            break
        end
    end
    local status, headers, body
    if type(action) == "table" then
        status, headers, body = action.status, action.headers or {},
            action.body or ""
        if self.canned_headers then self:canned_headers(rec, headers) end
    elseif action == "connect" then
        rec.status = "connect"
        return nil, "fake: connection refused", "connect"
    else
        status, headers, body = self:dispatch(rec)
        if action == "lost" then
            rec.status = "lost"
            rec.lost_status = status
            return nil, "fake: timed out waiting for the reply", "timeout"
        elseif type(action) == "function" then
            status, headers, body = action(rec, status, headers, body)
            if status == nil then
                rec.status = body
                return nil, headers, body
            end
        end
    end
    rec.status = status
    rec.reply_headers = headers
    rec.reply_body = body
    return status, headers, body
end

function T:stats()
    return { requests = self.requests }
end

-- Requests of the log matching method and a plain URL part.
function T:find(method, part)
    local out = {}
    for _, r in ipairs(self.log) do
        if (not method or r.method == method) and
            (not part or r.url:find(part, 1, true)) then
            out[#out + 1] = r
        end
    end
    return out
end

---------------------------------------------------------------------------
-- The fake CA.

local PROBLEM = "application/problem+json; charset=utf-8"
local JSON = "application/json; charset=utf-8"
local URN = "urn:ietf:params:acme:error:"

local function jwk_id(jwk)
    local keys = {}
    for k in pairs(jwk) do keys[#keys + 1] = k end
    table.sort(keys)
    local parts = {}
    for _, k in ipairs(keys) do parts[#parts + 1] = k .. "=" .. tostring(jwk[k]) end
    return table.concat(parts, ",")
end

local function iso(t)
    return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t))
end

-- opts: keys = {core keys the CA may meet}, clock = M.clock(), base =
-- "https://ca.test", latency = seconds each request advances the clock,
-- validation_delay (0.02), issue_delay (0.01), validate =
-- fn(authz, chal) -> true | problem table, new_authz = bool,
-- renewal_info = bool, tos = URL, eab = {kid = raw key bytes},
-- reuse = {"name" = true} (valid authz reused), orders_per_page (3),
-- chains = {pem, alt1, ...}, reject_nonce = fn(n) -> bool,
-- strict = bool (challenge payload exactly "{}").
function M.ca(opts)
    opts = opts or {}
    local self = M.new()
    local clock = opts.clock or M.clock()
    local base = opts.base or "https://ca.test"
    local S = {
        base = base, clock = clock, opts = opts, seq = 0,
        nonces = {}, accounts = {}, by_jwk = {}, orders = {}, authzs = {},
        chals = {}, certs = {}, revoked = {}, valid_authz = {},
    }
    self.state = S
    self.clock = clock
    self.dir_url = base .. "/dir"
    self.base = base

    local function id()
        S.seq = S.seq + 1
        return string.format("%d", S.seq)
    end

    local function nonce()
        S.seq = S.seq + 1
        local n = core.b64url_encode(core.random(12)) .. "x" .. S.seq
        S.nonces[n] = true
        return n
    end
    self.nonce = nonce

    local function headers(extra)
        local h = { ["replay-nonce"] = nonce(),
            link = '<' .. base .. '/dir>;rel="index"',
            ["cache-control"] = "public, max-age=0, no-cache" }
        for k, v in pairs(extra or {}) do h[k] = v end
        return h
    end

    function self:canned_headers(rec, h)
        if rec.method == "POST" and h["replay-nonce"] == nil then
            h["replay-nonce"] = nonce()
        end
        if h["replay-nonce"] == false then h["replay-nonce"] = nil end
    end

    local function problem(status, typ, detail, extra)
        local h = headers(extra)
        h["content-type"] = PROBLEM
        return status, h, cjson.encode({ type = URN .. typ, detail = detail,
            status = status })
    end
    self.problem = problem

    local function json(status, doc, extra)
        local h = headers(extra)
        h["content-type"] = JSON
        return status, h, cjson.encode(doc)
    end

    local function key_for(jwk)
        for _, k in ipairs(opts.keys or {}) do
            if jwk_id(k:jwk()) == jwk_id(jwk) then return k end
        end
        return nil
    end

    -- Everything time-driven happens lazily, on each request.
    local function tick()
        local now = clock.now()
        for _, ch in pairs(S.chals) do
            if ch.due and ch.due <= now then
                ch.due = nil
                local a = S.authzs[ch.authz]
                local verdict = true
                if opts.validate then verdict = opts.validate(a, ch) end
                if verdict == true then
                    ch.status = "valid"
                    ch.validated = iso(now)
                    a.status = "valid"
                    S.valid_authz[a.account .. " " .. a.key] = a.id
                else
                    ch.status = "invalid"
                    ch.error = verdict
                    a.status = "invalid"
                end
            end
        end
        for _, o in pairs(S.orders) do
            if o.issue_due and o.issue_due <= now then
                o.issue_due = nil
                o.status = "valid"
                o.cert = id()
                S.certs[o.cert] = o
            end
        end
    end

    local function order_status(o)
        if o.status == "pending" or o.status == "ready" then
            local all = true
            for _, aid in ipairs(o.authzs) do
                local st = S.authzs[aid].status
                if st == "invalid" or st == "deactivated" then
                    o.status = "invalid"
                    o.error = o.error or { type = URN .. "unauthorized",
                        detail = "authorization " .. aid .. " is " .. st,
                        status = 403 }
                    return o.status
                end
                if st ~= "valid" then all = false end
            end
            o.status = all and "ready" or "pending"
        end
        return o.status
    end

    local function order_doc(o)
        order_status(o)
        local authz = {}
        for _, aid in ipairs(o.authzs) do authz[#authz + 1] = base .. "/authZ/" .. aid end
        local doc = { status = o.status, expires = iso(clock.now() + 86400),
            identifiers = o.identifiers, authorizations = authz,
            finalize = base .. "/finalize-order/" .. o.id,
            notBefore = o.notBefore, notAfter = o.notAfter, error = o.error }
        if o.cert then doc.certificate = base .. "/certZ/" .. o.cert end
        return doc
    end

    local function chal_doc(ch)
        return { type = ch.type, url = base .. "/chalZ/" .. ch.id,
            token = ch.token, status = ch.status, validated = ch.validated,
            error = ch.error }
    end

    local function authz_doc(a)
        local chals = {}
        for _, cid in ipairs(a.chals) do chals[#chals + 1] = chal_doc(S.chals[cid]) end
        return { status = a.status, identifier = a.identifier,
            challenges = chals, expires = iso(clock.now() + 86400),
            wildcard = a.wildcard or nil }
    end

    local function new_authz(acct, ident)
        local wildcard = ident.type == "dns" and ident.value:sub(1, 2) == "*."
        local value = wildcard and ident.value:sub(3) or ident.value
        local key = ident.type .. ":" .. value .. (wildcard and ":*" or "")
        local a = { id = id(), status = "pending", account = acct.id, key = key,
            identifier = { type = ident.type, value = value },
            wildcard = wildcard, chals = {} }
        local types = wildcard and { "dns-01" } or (ident.type == "ip" and
            { "http-01", "tls-alpn-01" } or { "http-01", "dns-01", "tls-alpn-01" })
        for _, ty in ipairs(types) do
            local ch = { id = id(), type = ty, status = "pending", authz = a.id,
                token = core.b64url_encode(core.random(32)) }
            S.chals[ch.id] = ch
            a.chals[#a.chals + 1] = ch.id
        end
        S.authzs[a.id] = a
        if opts.reuse and opts.reuse[ident.value] then
            a.status = "valid"
            S.valid_authz[acct.id .. " " .. key] = a.id
        end
        return a.id
    end

    -- Check a JWS POST like Pebble does; returns account (kid), or the
    -- jwk, or an error reply (status, headers, body) as its 2nd..4th.
    local function verify(rec, want_jwk)
        if rec.headers["content-type"] ~= "application/jose+json" then
            return nil, problem(415, "malformed",
                "Invalid Content-Type header on POST. Content-Type must be " ..
                "\"application/jose+json\"")
        end
        if rec.jws_error then return nil, problem(400, "malformed", rec.jws_error) end
        local p = rec.protected
        if type(p.nonce) ~= "string" or not S.nonces[p.nonce] then
            return nil, problem(400, "badNonce", "JWS has an invalid anti-replay nonce: " ..
                tostring(p.nonce))
        end
        S.nonces[p.nonce] = nil
        if opts.reject_nonce and opts.reject_nonce(p.nonce) then
            return nil, problem(400, "badNonce", "JWS has an invalid anti-replay nonce")
        end
        if p.url ~= rec.url then
            return nil, problem(400, "malformed", "JWS header parameter 'url' incorrect")
        end
        if (p.jwk ~= nil) == (p.kid ~= nil) then
            return nil, problem(400, "malformed", "jwk and kid header fields are mutually exclusive")
        end
        if want_jwk and not p.jwk then
            return nil, problem(400, "malformed", "No embedded JWK in JWS header")
        end
        local key, acct
        if p.kid then
            acct = S.accounts[p.kid:match("/my%-account/(%d+)$") or ""]
            if not acct or base .. "/my-account/" .. acct.id ~= p.kid then
                return nil, problem(400, "accountDoesNotExist",
                    "Account " .. p.kid .. " not found.")
            end
            if acct.status ~= "valid" then
                return nil, problem(403, "unauthorized", "Account has status \"" ..
                    acct.status .. "\"")
            end
            key = acct.key
        else
            key = key_for(p.jwk)
            assert(key, "fake CA: JWS signed by a key not passed in keys=")
        end
        if p.alg ~= key:alg() then
            return nil, problem(400, "malformed", "JWS alg mismatch")
        end
        if not key:verify(rec.protected_b64 .. "." .. rec.payload_b64, rec.signature) then
            return nil, problem(400, "malformed", "JWS verification error")
        end
        rec.verified = true
        return acct or { jwk = p.jwk, key = key }
    end
    self.verify = verify

    local function route(method, pattern, fn)
        self:route(method, pattern, function(rec, _, ...)
            if opts.latency then clock.t = clock.t + opts.latency end
            tick()
            return fn(rec, ...)
        end)
    end

    route("GET", "^/dir$", function()
        local d = {
            newNonce = base .. "/nonce-plz", newAccount = base .. "/sign-me-up",
            newOrder = base .. "/order-plz", revokeCert = base .. "/revoke-cert",
            keyChange = base .. "/rollover-account-key",
            meta = { termsOfService = opts.tos or "data:text/plain,Do%20what%20thou%20wilt",
                externalAccountRequired = opts.eab ~= nil },
        }
        if opts.new_authz then d.newAuthz = base .. "/new-authz" end
        if opts.renewal_info then d.renewalInfo = base .. "/renewal-info" end
        if opts.directory then opts.directory(d) end
        return 200, { ["content-type"] = JSON }, cjson.encode(d)
    end)

    route("HEAD", "^/nonce%-plz$", function()
        return 200, headers(), ""
    end)

    local function account_doc(a)
        return { status = a.status, contact = a.contact,
            orders = base .. "/list-orderz/" .. a.id, key = a.jwk }
    end

    route("POST", "^/sign%-me%-up$", function(rec)
        local who, s, h, b = verify(rec, true)
        if not who then return s, h, b end
        local req = rec.payload_json or {}
        local kid = jwk_id(who.jwk)
        local existing = S.by_jwk[kid]
        if existing then
            if existing.status ~= "valid" then
                return problem(403, "unauthorized", "account deactivated")
            end
            return json(200, account_doc(existing),
                { location = base .. "/my-account/" .. existing.id })
        end
        if req.onlyReturnExisting then
            return problem(400, "accountDoesNotExist", "unable to find existing account for only-return-existing request")
        end
        if not req.termsOfServiceAgreed then
            return problem(403, "agreementRequired",
                "Provided account did not agree to the terms of service",
                { link = { '<' .. base .. '/dir>;rel="index"',
                    '<' .. (opts.tos or "data:text/plain,Do%20what%20thou%20wilt") ..
                    '>;rel="terms-of-service"' } })
        end
        if opts.eab then
            local eab = req.externalAccountBinding
            if type(eab) ~= "table" then
                return problem(403, "externalAccountRequired", "no externalAccountBinding")
            end
            local ep = cjson.decode(b64d(eab.protected))
            if ep.nonce ~= nil or ep.url ~= rec.url then
                return problem(400, "malformed", "bad EAB protected header")
            end
            local mac = opts.eab[ep.kid]
            if not mac or core.hmac_sha256(mac, eab.protected .. "." .. eab.payload) ~=
                b64d(eab.signature) then
                return problem(403, "unauthorized", "EAB MAC mismatch")
            end
            if jwk_id(cjson.decode(b64d(eab.payload))) ~= kid then
                return problem(400, "badPublicKey", "EAB payload is not the account key")
            end
        end
        local a = { id = id(), status = "valid", contact = req.contact or {},
            key = who.key, jwk = who.jwk, orders = {} }
        S.accounts[a.id] = a
        S.by_jwk[kid] = a
        return json(201, account_doc(a), { location = base .. "/my-account/" .. a.id })
    end)

    route("POST", "^/my%-account/(%d+)$", function(rec, aid)
        local acct, s, h, b = verify(rec)
        if not acct then return s, h, b end
        if acct.id ~= aid then return problem(403, "unauthorized", "not your account") end
        local req = rec.payload_json
        if rec.payload == "" then return json(200, account_doc(acct)) end
        if type(req) ~= "table" or next(req) == nil then
            return problem(400, "malformed", "Use POST-as-GET to retrieve account data instead of doing an empty update")
        end
        if req.status == "deactivated" then acct.status = "deactivated" end
        if req.contact then acct.contact = req.contact end
        return json(200, account_doc(acct))
    end)

    route("POST", "^/rollover%-account%-key$", function(rec)
        local acct, s, h, b = verify(rec)
        if not acct then return s, h, b end
        local inner = cjson.decode(rec.payload)
        local ip = cjson.decode(b64d(inner.protected))
        if ip.url ~= rec.url or not ip.jwk or ip.kid or ip.nonce then
            return problem(400, "malformed", "bad inner JWS header")
        end
        local nk = key_for(ip.jwk)
        assert(nk, "fake CA: new key not passed in keys=")
        if not nk:verify(inner.protected .. "." .. inner.payload, b64d(inner.signature)) then
            return problem(400, "malformed", "inner JWS verification error")
        end
        local ipay = cjson.decode(b64d(inner.payload))
        if ipay.account ~= base .. "/my-account/" .. acct.id or
            jwk_id(ipay.oldKey) ~= jwk_id(acct.jwk) then
            return problem(400, "malformed", "bad inner payload")
        end
        local other = S.by_jwk[jwk_id(ip.jwk)]
        if other then
            return problem(409, "conflict", "new key in use",
                { location = base .. "/my-account/" .. other.id })
        end
        S.by_jwk[jwk_id(acct.jwk)] = nil
        acct.key, acct.jwk = nk, ip.jwk
        S.by_jwk[jwk_id(ip.jwk)] = acct
        return 200, headers(), ""
    end)

    route("POST", "^/order%-plz$", function(rec)
        local acct, s, h, b = verify(rec)
        if not acct then return s, h, b end
        local req = rec.payload_json
        if type(req) ~= "table" or type(req.identifiers) ~= "table" then
            return problem(400, "malformed", "bad newOrder")
        end
        local o = { id = id(), status = "pending", identifiers = {}, authzs = {},
            account = acct.id, notBefore = req.notBefore, notAfter = req.notAfter }
        local seen = {}
        for _, ident in ipairs(req.identifiers) do
            local v = ident.value:lower()
            if not seen[ident.type .. v] then
                seen[ident.type .. v] = true
                o.identifiers[#o.identifiers + 1] = { type = ident.type, value = v }
                o.authzs[#o.authzs + 1] = new_authz(acct, { type = ident.type, value = v })
            end
        end
        S.orders[o.id] = o
        acct.orders[#acct.orders + 1] = o.id
        return json(201, order_doc(o), { location = base .. "/my-order/" .. o.id })
    end)

    route("POST", "^/new%-authz$", function(rec)
        local acct, s, h, b = verify(rec)
        if not acct then return s, h, b end
        local req = rec.payload_json
        local aid = new_authz(acct, req.identifier)
        return json(201, authz_doc(S.authzs[aid]), { location = base .. "/authZ/" .. aid })
    end)

    route("POST", "^/list%-orderz/(%d+)$", function(rec, aid)
        return self:dispatch_orders(rec, aid, 1)
    end)
    route("POST", "^/list%-orderz/(%d+)/page/(%d+)$", function(rec, aid, page)
        return self:dispatch_orders(rec, aid, tonumber(page))
    end)
    function self.dispatch_orders(_, rec, aid, page)
        local acct, s, h, b = verify(rec)
        if not acct then return s, h, b end
        if acct.id ~= aid or rec.payload ~= "" then
            return problem(400, "malformed", "bad orders request")
        end
        local per = opts.orders_per_page or 3
        local urls = {}
        for i = (page - 1) * per + 1, math.min(#acct.orders, page * per) do
            urls[#urls + 1] = base .. "/my-order/" .. acct.orders[i]
        end
        local extra = {}
        if page * per < #acct.orders then
            extra.link = { '<' .. base .. '/dir>;rel="index"',
                '<' .. base .. '/list-orderz/' .. aid .. '/page/' .. (page + 1) ..
                '>;rel="next"' }
        end
        return json(200, { orders = urls }, extra)
    end

    route("POST", "^/my%-order/(%d+)$", function(rec, oid)
        local acct, s, h, b = verify(rec)
        if not acct then return s, h, b end
        local o = S.orders[oid]
        if not o then return 404, {}, "" end
        if o.account ~= acct.id then return problem(403, "unauthorized", "not yours") end
        if rec.payload ~= "" then return problem(400, "malformed", "POST-as-GET expected") end
        return json(200, order_doc(o))
    end)

    route("POST", "^/authZ/(%d+)$", function(rec, aid)
        local acct, s, h, b = verify(rec)
        if not acct then return s, h, b end
        local a = S.authzs[aid]
        if not a then return 404, {}, "" end
        if a.account ~= acct.id then return problem(403, "unauthorized", "not yours") end
        if rec.payload ~= "" then
            local req = rec.payload_json
            if type(req) == "table" and req.status == "deactivated" then
                a.status = "deactivated"
                S.valid_authz[a.account .. " " .. a.key] = nil
            else
                return problem(400, "malformed", "POST-as-GET expected")
            end
        end
        return json(200, authz_doc(a))
    end)

    route("POST", "^/chalZ/(%d+)$", function(rec, cid)
        local acct, s, h, b = verify(rec)
        if not acct then return s, h, b end
        local ch = S.chals[cid]
        if not ch then return 404, {}, "" end
        local a = S.authzs[ch.authz]
        if a.account ~= acct.id then return problem(403, "unauthorized", "not yours") end
        local up = { link = { '<' .. base .. '/dir>;rel="index"',
            '<' .. base .. '/authZ/' .. a.id .. '>;rel="up"' } }
        if rec.payload == "" then return json(200, chal_doc(ch), up) end
        if opts.strict and rec.payload ~= "{}" then
            return problem(400, "malformed", "challenge body must be {}")
        end
        local req = rec.payload_json
        if type(req) ~= "table" or req.keyAuthorization ~= nil then
            return problem(400, "malformed", "bad challenge response")
        end
        if ch.status ~= "pending" then
            return problem(400, "malformed", "Cannot update challenge with status " .. ch.status)
        end
        if not ch.due then
            ch.due = clock.now() + (opts.validation_delay or 0.02)
            ch.accepted = (ch.accepted or 0) + 1
        end
        return json(200, chal_doc(ch), up)
    end)

    route("POST", "^/finalize%-order/(%d+)$", function(rec, oid)
        local acct, s, h, b = verify(rec)
        if not acct then return s, h, b end
        local o = S.orders[oid]
        if not o then return 404, {}, "" end
        if order_status(o) ~= "ready" then
            return problem(403, "orderNotReady", "Order's status (\"" .. o.status ..
                "\") was not pending")
        end
        local req = rec.payload_json
        if type(req) ~= "table" or type(req.csr) ~= "string" or
            not core.b64url_decode(req.csr) then
            return problem(400, "malformed", "bad CSR")
        end
        o.csr = b64d(req.csr)
        o.finalized = (o.finalized or 0) + 1
        o.status = "processing"
        o.issue_due = clock.now() + (opts.issue_delay or 0.01)
        return json(200, order_doc(o), { location = base .. "/my-order/" .. o.id })
    end)

    local FAKE_CHAIN = "-----BEGIN CERTIFICATE-----\nbGVhZg==\n-----END CERTIFICATE-----\n" ..
        "-----BEGIN CERTIFICATE-----\naW50ZXJtZWRpYXRl\n-----END CERTIFICATE-----\n"

    local function cert_reply(rec, cid, alt)
        local acct, s, h, b = verify(rec)
        if not acct then return s, h, b end
        local o = S.certs[cid]
        if not o then return 404, {}, "" end
        if rec.payload ~= "" then return problem(400, "malformed", "POST-as-GET expected") end
        local chains = opts.chains or { FAKE_CHAIN }
        local pem = chains[(alt or 0) + 1]
        if not pem then return 404, {}, "" end
        local links = { '<' .. base .. '/dir>;rel="index"' }
        for i = 1, #chains - 1 do
            if i ~= alt then
                links[#links + 1] = '<' .. base .. '/certZ/' .. cid .. '/alternate/' ..
                    i .. '>;rel="alternate"'
            end
        end
        local hh = headers({ link = links })
        hh["content-type"] = "application/pem-certificate-chain; charset=utf-8"
        return 200, hh, pem
    end
    route("POST", "^/certZ/(%d+)$", function(rec, cid) return cert_reply(rec, cid) end)
    route("POST", "^/certZ/(%d+)/alternate/(%d+)$", function(rec, cid, n)
        return cert_reply(rec, cid, tonumber(n))
    end)

    route("POST", "^/revoke%-cert$", function(rec)
        local who, s, h, b = verify(rec)
        if not who then return s, h, b end
        local req = rec.payload_json
        if type(req) ~= "table" or type(req.certificate) ~= "string" then
            return problem(400, "malformed", "bad revocation request")
        end
        -- cjson decodes numbers as floats: check the text is an integer
        if req.reason ~= nil and (not rec.payload:find('"reason":%d+[,}]') or
            req.reason == 7 or req.reason > 10 or req.reason < 0) then
            return problem(400, "badRevocationReason", "bad reason")
        end
        local der = b64d(req.certificate)
        if S.revoked[der] then return problem(400, "alreadyRevoked", "already revoked") end
        S.revoked[der] = { reason = req.reason, by = who.id and "kid" or "jwk" }
        return 200, headers(), ""
    end)

    route("GET", "^/renewal%-info/(.+)$", function(_, certid)
        if opts.renewal then return opts.renewal(certid) end
        return 404, {}, ""
    end)

    return self
end

-- A client with account key `key` of a new fake CA (M.ca(opts); opts.keys
-- defaults to { key }) on a new fake clock. Returns client, ca, clock.
function M.client(key, opts)
    opts = opts or {}
    local clock = M.clock()
    opts.clock = clock
    opts.keys = opts.keys or { key }
    local ca = M.ca(opts)
    local c = acme.client{ directory = ca.dir_url, key = key,
        transport = ca, now = clock.now, sleep = clock.sleep }
    return c, ca, clock
end

-- M.client with the account registered (terms agreed) and, unless
-- opts.latency says otherwise, 4 ms of latency per request: what the
-- order and issuance tests start from. opts.keys is { key }.
function M.account(key, opts)
    opts = opts or {}
    opts.keys = { key }
    if opts.latency == nil then opts.latency = 0.004 end
    local c, ca, clock = M.client(key, opts)
    assert(c:register({}, acme.accept_tos))
    return c, ca, clock
end

-- Decode a JWS string (as produced by core.jws) into protected table,
-- payload string and raw signature.
function M.decode_jws(s)
    local rec = { body = s }
    decode_jws(rec)
    return rec
end

return M
