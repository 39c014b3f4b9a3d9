-- The RFC 8555 protocol client: one object per (directory, account key).
-- Methods follow golang.org/x/crypto/acme in snake_case. Expected
-- failures return nil, err (err a luacme.errors table); caller mistakes
-- raise.
--
-- Every HTTP exchange goes through Client:_send (counting, nonce
-- harvesting); every retry decision lives in Client:_http (GET/HEAD)
-- and Client:post (JWS POST); every wait for a state change in
-- Client:poll with util.backoff.
local core = require "luacme.core"
local cjson = require "cjson.safe"
local errors = require "luacme.errors"
local util = require "luacme.util"
local sched = require "luacme.sched"
local ident = require "luacme.ident"
local values = require "luacme.challenge"

local M = {}

M.LETSENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
M.LETSENCRYPT_STAGING =
    "https://acme-staging-v02.api.letsencrypt.org/directory"

local JOSE = "application/jose+json"
local PEM_CHAIN = "application/pem-certificate-chain"

-- Defaults; each is a client option of the same name.
local DEFAULTS = {
    poll_first = 0.015,     -- first wait when polling (util.backoff)
    poll_cap = 5,           -- longest wait between polls
    poll_timeout = 300,     -- polling deadline when the caller gives none
    bad_nonce_retries = 20, -- Pebble at 50% rejection: 2^-20 per request
    max_retries = 5,        -- 5xx / 429 / transport retries per request
    max_retry_wait = 60,    -- a longer Retry-After is returned, not slept
}

local OPTIONS = {
    directory = "string", key = "userdata", kid = "string",
    ca_file = "string", user_agent = "string", timeout = "number",
    connect_timeout = "number", retry_backoff = "function",
    transport = "table", sleep = "function", now = "function",
    poll_first = "number", poll_cap = "number", poll_timeout = "number",
    bad_nonce_retries = "number", max_retries = "number",
    max_retry_wait = "number", allow_http = "boolean", deadline = "number",
}

local Client = {}
Client.__index = Client

-- Transport errors after which the request certainly did not reach the
-- server, so even a non-idempotent POST may be sent again.
local NOT_SENT = { connect = true }
-- Transport errors worth retrying at all.
local RETRYABLE = { connect = true, timeout = true, protocol = true }

local function str(v)
    if type(v) == "string" then return v end
    return nil
end

local function bool(v)
    return v == true
end

local function list_of_str(v)
    local out = {}
    if type(v) ~= "table" then return out end
    for _, s in ipairs(v) do
        if type(s) == "string" then out[#out + 1] = s end
    end
    return out
end

-- acme.client{...}: see lua/luacme/init.lua for the options.
function M.new(opts)
    opts = opts or {}
    if type(opts) ~= "table" then
        error("acme.client: options table expected", 2)
    end
    for k, v in pairs(opts) do
        local want = OPTIONS[k]
        if not want then
            error("acme.client: unknown option '" .. tostring(k) .. "'", 2)
        end
        local got = type(v)
        if want == "table" and got == "userdata" then got = "table" end
        if got ~= want then
            error("acme.client: option '" .. k .. "' must be a " .. want, 2)
        end
    end
    local c = {
        directory_url = opts.directory or M.LETSENCRYPT,
        key = opts.key,
        kid = opts.kid,
        ca_file = opts.ca_file,
        user_agent = opts.user_agent,
        timeout = opts.timeout,
        connect_timeout = opts.connect_timeout,
        allow_http = opts.allow_http,
        retry_backoff = opts.retry_backoff,
        transport = opts.transport,
        sleep = opts.sleep or sched.sleep,
        now = opts.now or core.time,
        deadline = opts.deadline,   -- no retry waits past it (client clock)
        nonces = {},
        counters = { requests = 0, nonce_requests = 0, bad_nonces = 0,
            retries = 0 },
    }
    for k, v in pairs(DEFAULTS) do c[k] = opts[k] or v end
    return setmetatable(c, Client)
end

-- {requests=, nonce_requests=, bad_nonces=, retries=}: a copy.
function Client:stats()
    local s = {}
    for k, v in pairs(self.counters) do s[k] = v end
    return s
end

---------------------------------------------------------------------------
-- Transport.

local function user_agent(self)
    local v = core.versions()
    local ua = "luacme/" .. v.luacme .. " libcurl/" .. v.curl
    if self.user_agent then ua = self.user_agent .. " " .. ua end
    return ua
end

function Client:_transport()
    if self.transport then return self.transport end
    local t, msg, kind = core.http{
        ca_file = self.ca_file, user_agent = user_agent(self),
        timeout = self.timeout, connect_timeout = self.connect_timeout,
        allow_http = self.allow_http,
    }
    if not t then return nil, errors.new(kind or "transport", msg) end
    self.transport = t
    return t
end

-- One HTTP exchange: counts it, keeps the Replay-Nonce, returns
-- resp = {status=, headers=, body=, url=} or nil, err. once: the
-- transport must not send it a second time by itself (a POST the CA
-- may act on: see core http's once).
function Client:_send(method, url, headers, body, once)
    local ok, uerr = util.check_url(url)
    if not ok then return nil, uerr end
    if not (url:match("^[Hh][Tt][Tt][Pp][Ss]://") or
        (self.allow_http and url:match("^[Hh][Tt][Tt][Pp]://"))) then
        return nil, errors.new("url", "refusing a non-https URL: " ..
            errors.printable(url), { url = url })
    end
    local t, err = self:_transport()
    if not t then return nil, err end
    local h = { ["User-Agent"] = self.ua or user_agent(self),
        ["Accept-Language"] = "en" }
    self.ua = h["User-Agent"]
    for k, v in pairs(headers or {}) do h[k] = v end
    self.counters.requests = self.counters.requests + 1
    local status, rh, rb = sched.request(t, { method = method, url = url,
        headers = h, body = body, once = once or nil })
    if not status then
        -- ca= names the CA whose server failed (luacme.certs skips the
        -- rest of a run's certificates of a CA that is down).
        return nil, errors.new(rb or "transport", tostring(rh),
            { url = url, ca = self.directory_url })
    end
    rh = rh or {}
    local nonce = util.header(rh, "replay-nonce")
    if util.is_token(nonce, 256) then
        local pool = self.nonces
        if #pool >= 32 then table.remove(pool, 1) end
        pool[#pool + 1] = nonce
    end
    return { status = status, headers = rh, body = rb or "", url = url }
end

-- The error for a non-2xx reply: a problem document when there is one.
function Client:_error(resp)
    local ra = util.retry_after(resp.headers, self.now())
    local mt = util.media_type(resp.headers)
    if mt == "application/problem+json" or mt == "application/json" then
        local doc = cjson.decode(resp.body)
        if type(doc) == "table" and (mt == "application/problem+json" or
            type(doc.type) == "string") then
            local e = errors.problem(resp.status, doc, resp.headers, ra)
            e.url, e.ca = resp.url, self.directory_url
            e.terms_of_service = util.link(resp.headers, "terms-of-service",
                resp.url)[1]
            if e.detail == nil then
                e.detail = "HTTP " .. resp.status .. " from " .. resp.url
            end
            return e
        end
    end
    return errors.new("http", "HTTP " .. resp.status .. " from " .. resp.url,
        { status = resp.status, headers = resp.headers, retry_after = ra,
            url = resp.url, ca = self.directory_url })
end

-- Decode a successful reply's JSON body into resp.json; Location and
-- links are resolved against the request URL.
local function finish(resp)
    local mt = util.media_type(resp.headers)
    if mt == "application/json" or mt == "application/problem+json" then
        local doc, derr = cjson.decode(resp.body)
        if type(doc) ~= "table" then
            return nil, errors.new("response", "bad JSON from " .. resp.url ..
                ": " .. tostring(derr or "not an object"),
                { status = resp.status, url = resp.url })
        end
        resp.json = doc
    end
    local loc = util.header(resp.headers, "location")
    if loc then
        -- A Location becomes a kid or the URL of later requests.
        local ok, err = util.check_url(util.resolve(resp.url, loc))
        if not ok then
            err.detail = "Location from " .. resp.url .. ": " .. err.detail
            return nil, err
        end
        resp.location = ok
    end
    return resp
end

-- Seconds to wait before retry n after a failed attempt (status nil for
-- a transport error), or nil to give up: also when the wait would end
-- past self.deadline (an unreachable CA retried silently for 27 s under
-- --timeout 5, A#9.4).
function Client:_retry_wait(n, status, headers)
    local w = self:_retry_delay(n, status, headers)
    if w and self.deadline and self.now() + w > self.deadline then
        return nil
    end
    return w
end

function Client:_retry_delay(n, status, headers)
    local w
    if self.retry_backoff then
        w = self.retry_backoff(n, status, headers)
        if type(w) ~= "number" or w <= 0 then return nil end
        return w
    end
    if n > self.max_retries then return nil end
    local ra = util.retry_after(headers, self.now())
    if ra then
        if ra > self.max_retry_wait then return nil end
        w = ra
    else
        w = math.min(2 ^ (n - 1), 10)
    end
    return w + math.random() * math.min(1, w / 4)
end

local function retryable_status(status)
    return status == 429 or status >= 500
end

-- A plain GET or HEAD (directory, newNonce, renewalInfo): retried on
-- transport errors, 5xx and 429 per _retry_wait. Returns resp (status
-- < 400, JSON decoded) or nil, err.
function Client:_http(method, url, headers)
    local n = 0
    while true do
        local resp, err = self:_send(method, url, headers)
        local status, rh
        if resp and resp.status >= 200 and resp.status < 300 then
            return finish(resp)
        end
        if resp then
            err = self:_error(resp)
            status, rh = resp.status, resp.headers
            if not retryable_status(status) then return nil, err end
        elseif not RETRYABLE[err.kind] then
            return nil, err
        end
        n = n + 1
        local w = self:_retry_wait(n, status, rh)
        if not w then return nil, err end
        self.counters.retries = self.counters.retries + 1
        self.sleep(w)
    end
end

-- A nonce from the pool (most recent first), or from HEAD newNonce.
function Client:_nonce()
    local n = table.remove(self.nonces)
    if n then return n end
    local dir, err = self:discover()
    if not dir then return nil, err end
    self.counters.nonce_requests = self.counters.nonce_requests + 1
    local resp
    resp, err = self:_http("HEAD", dir.new_nonce)
    if not resp then return nil, err end
    n = table.remove(self.nonces)
    if not n then
        return nil, errors.new("response", "newNonce reply carried no " ..
            "usable Replay-Nonce", { url = dir.new_nonce })
    end
    return n
end

-- The account URL (kid), looked up by key when not known yet. A kid
-- that could not go into a protected header is refused here, so server
-- data never makes the signer raise.
function Client:_account_url()
    if not self.kid then
        local acct, err = self:get_reg()
        if not acct then return nil, err end
    end
    return util.check_url(self.kid)
end

-- core.jws as body or nil, err. Every server string in a protected
-- header (url, kid: util.check_url; nonce: util.is_token) is checked
-- before it gets here, so the signer's raise on unencodable input stays
-- a programmer error; a signer that reports failures as nil, message,
-- kind instead is handled too.
local function sign(key, protected, payload)
    local body, msg, kind = core.jws(key, protected, payload)
    if not body then return nil, errors.new(kind or "jws", tostring(msg)) end
    return body
end

-- POST a JWS with `payload` (a string: "" for POST-as-GET) to url.
-- opts: jwk=true signs with the JWK instead of the kid; key= signs with
-- another key (with its JWK); accept= Accept header; idempotent=true
-- allows resending after transport errors and 5xx.
-- badNonce is retried with the nonce of the error reply (bounded by
-- bad_nonce_retries); 429 (not processed) and, when idempotent, 5xx
-- and transport errors per _retry_wait. On a non-idempotent POST a
-- transport error that may have reached the server (anything but a
-- failed connect: a reply cut after its status line or in its body, an
-- empty reply, a reset, a timeout) and any 5xx are returned with
-- err.uncertain = true: the caller reads the state back before
-- resending (Client:_post_uncertain).
-- Returns resp {status, headers, body, json, location, url} or nil, err.
function Client:post(url, payload, opts)
    opts = opts or {}
    if type(url) ~= "string" then error("post: url must be a string", 2) end
    if type(payload) ~= "string" then
        error("post: payload must be a string", 2)
    end
    local key = opts.key or self.key
    if not key then error("acme client: no account key set", 2) end
    local use_jwk = opts.jwk or (opts.key ~= nil and opts.key ~= self.key)
    local kid, err
    if not use_jwk then
        kid, err = self:_account_url()
        if not kid then return nil, err end
    end
    local ok
    ok, err = util.check_url(url)
    if not ok then return nil, err end
    local bad_nonces, n = 0, 0
    local headers = { ["Content-Type"] = JOSE, Accept = opts.accept }
    while true do
        local nonce
        nonce, err = self:_nonce()
        if not nonce then return nil, err end
        local protected = { nonce = nonce, url = url }
        if use_jwk then protected.jwk = key:jwk() else protected.kid = kid end
        local body
        body, err = sign(key, protected, payload)
        if not body then return nil, err end
        local resp
        resp, err = self:_send("POST", url, headers, body,
            not opts.idempotent)
        local status, rh
        if resp and resp.status >= 200 and resp.status < 300 then
            return finish(resp)
        end
        if resp then
            err = self:_error(resp)
            status, rh = resp.status, resp.headers
            if resp.status == 400 and errors.is(err, "badNonce") then
                self.counters.bad_nonces = self.counters.bad_nonces + 1
                bad_nonces = bad_nonces + 1
                if bad_nonces > self.bad_nonce_retries then
                    err.detail = (err.detail or "") .. " (gave up after " ..
                        bad_nonces .. " bad nonces)"
                    return nil, err
                end
                goto continue
            end
            if status >= 500 and not opts.idempotent then
                -- A gateway's 502/504, or a 500/503 from a CA that may
                -- have committed before failing: the work may be done.
                err.uncertain = true
                return nil, err
            end
            if not (status == 429 or (opts.idempotent and status >= 500)) then
                return nil, err
            end
        else
            if not RETRYABLE[err.kind] then return nil, err end
            if not opts.idempotent and not NOT_SENT[err.kind] then
                err.uncertain = true
                return nil, err
            end
        end
        n = n + 1
        do
            local w = self:_retry_wait(n, status, rh)
            if not w then return nil, err end
            self.counters.retries = self.counters.retries + 1
            self.sleep(w)
        end
        ::continue::
    end
end

-- A non-idempotent POST whose reply may be lost: post(), and when the
-- outcome is uncertain, check(err) reads the CA's state: it returns a
-- value when the CA has done the work, false when it has not (the POST
-- is sent again after a backoff), or nil, err when the state could not
-- be read. At most max_retries resends. Returns resp (a reply came),
-- or nil, nil, value (the work was found done), or nil, err.
function Client:_post_uncertain(url, payload, opts, check)
    local n = 0
    while true do
        local resp, err = self:post(url, payload, opts)
        if resp or not err.uncertain then return resp, err end
        local done, cerr = check(err)
        if done then return nil, nil, done end
        if done == nil then
            -- The outcome stays unknown: report the first failure, with
            -- what the read-back hit.
            err.detail = (err.detail or "") .. "; reading the state " ..
                "back failed too: " .. tostring(cerr)
            return nil, err
        end
        -- The read-back reached the CA: the first resend goes at once,
        -- unless the CA asked for a pause (Retry-After).
        n = n + 1
        local w = 0
        if n > 1 or err.retry_after then
            w = self:_retry_wait(n, err.status, err.headers)
            if not w then return nil, err end
        end
        self.counters.retries = self.counters.retries + 1
        if w > 0 then self.sleep(w) end
    end
end

-- POST-as-GET.
function Client:_get(url, accept)
    return self:post(url, "", { idempotent = true, accept = accept })
end

---------------------------------------------------------------------------
-- Parsing server objects. Every member is type-checked; cjson.null and
-- wrong types count as absent.

local function problem_of(v, status)
    if type(v) ~= "table" then return nil end
    return errors.problem(status, v)
end

local function identifier_of(v)
    if type(v) ~= "table" then return nil end
    local t, val = str(v.type), str(v.value)
    if not t or not val then return nil end
    return { type = t, value = val }
end

local function account_of(doc, uri)
    doc = type(doc) == "table" and doc or {}
    return {
        uri = uri,
        status = str(doc.status),
        contact = list_of_str(doc.contact),
        orders_url = str(doc.orders),
        terms_of_service_agreed = doc.termsOfServiceAgreed == true or nil,
    }
end

local function order_of(doc, uri, resp)
    if type(doc) ~= "table" then
        return nil, errors.new("response", "order reply is not JSON",
            { uri = uri })
    end
    local ids = {}
    if type(doc.identifiers) == "table" then
        for _, v in ipairs(doc.identifiers) do
            local id = identifier_of(v)
            if id then ids[#ids + 1] = id end
        end
    end
    local o = {
        uri = uri,
        status = str(doc.status),
        expires = str(doc.expires),
        identifiers = ids,
        not_before = str(doc.notBefore),
        not_after = str(doc.notAfter),
        authz_urls = list_of_str(doc.authorizations),
        finalize_url = str(doc.finalize),
        cert_url = str(doc.certificate),
        profile = str(doc.profile),
        replaces = str(doc.replaces),
        error = problem_of(doc.error),
    }
    if resp then
        for _, k in ipairs({ "finalize_url", "cert_url" }) do
            if o[k] then o[k] = util.resolve(resp.url, o[k]) end
        end
        for i, u in ipairs(o.authz_urls) do
            o.authz_urls[i] = util.resolve(resp.url, u)
        end
    end
    if not o.status or not o.finalize_url then
        return nil, errors.new("response", "order reply lacks status or " ..
            "finalize", { uri = uri })
    end
    return o
end

local function challenge_of(doc, base)
    if type(doc) ~= "table" then return nil end
    local c = {
        type = str(doc.type),
        uri = str(doc.url),
        token = str(doc.token),
        status = str(doc.status),
        validated = str(doc.validated),
        error = problem_of(doc.error),
    }
    if not c.type or not c.uri then return nil end
    c.uri = util.resolve(base, c.uri)
    return c
end

local function authz_of(doc, uri)
    if type(doc) ~= "table" then
        return nil, errors.new("response", "authorization reply is not " ..
            "JSON", { uri = uri })
    end
    local a = {
        uri = uri,
        status = str(doc.status),
        identifier = identifier_of(doc.identifier),
        wildcard = bool(doc.wildcard),
        expires = str(doc.expires),
        challenges = {},
    }
    if type(doc.challenges) == "table" then
        for _, v in ipairs(doc.challenges) do
            local ch = challenge_of(v, uri)
            if ch then a.challenges[#a.challenges + 1] = ch end
        end
    end
    if not a.status or not a.identifier then
        return nil, errors.new("response", "authorization reply lacks " ..
            "status or identifier", { uri = uri })
    end
    return a
end

M.parse = { account = account_of, order = order_of, authz = authz_of,
    challenge = challenge_of }

---------------------------------------------------------------------------
-- Directory.

-- The directory, fetched once and cached:
-- {new_nonce, new_account, new_order, new_authz, revoke_cert, key_change,
--  renewal_info, meta = {terms_of_service, website, caa_identities,
--  external_account_required, profiles}}.
function Client:discover()
    if self.dir then return self.dir end
    local resp, err = self:_http("GET", self.directory_url,
        { Accept = "application/json" })
    if not resp then return nil, err end
    local doc = resp.json
    if type(doc) ~= "table" then
        return nil, errors.new("response", "directory is not JSON",
            { url = self.directory_url })
    end
    local base = self.directory_url
    local function u(v)
        v = str(v)
        return v and util.resolve(base, v)
    end
    local meta = type(doc.meta) == "table" and doc.meta or {}
    local profiles
    if type(meta.profiles) == "table" then
        profiles = {}
        for k, v in pairs(meta.profiles) do
            if type(k) == "string" then profiles[k] = str(v) or "" end
        end
    end
    local dir = {
        new_nonce = u(doc.newNonce),
        new_account = u(doc.newAccount),
        new_order = u(doc.newOrder),
        new_authz = u(doc.newAuthz),
        revoke_cert = u(doc.revokeCert),
        key_change = u(doc.keyChange),
        renewal_info = u(doc.renewalInfo),
        meta = {
            terms_of_service = str(meta.termsOfService),
            website = str(meta.website),
            caa_identities = list_of_str(meta.caaIdentities),
            external_account_required =
                meta.externalAccountRequired == true,
            profiles = profiles,
        },
    }
    for _, k in ipairs({ "new_nonce", "new_account", "new_order" }) do
        if not dir[k] then
            return nil, errors.new("response", "directory lacks " .. k,
                { url = base })
        end
    end
    self.dir = dir
    return dir
end

---------------------------------------------------------------------------
-- Accounts.

local function check_contact(contact)
    if contact == nil then return nil end
    if type(contact) ~= "table" then error("contact must be a list", 3) end
    local out = util.array()
    for _, c in ipairs(contact) do
        if type(c) ~= "string" then error("contact entries are strings", 3) end
        out[#out + 1] = c
    end
    return out
end

-- The external account binding JWS (RFC 8555 §7.3.4): HS256 keyed with
-- the base64url-decoded MAC key, protected {alg, kid, url}, no nonce,
-- payload the account's public JWK.
function Client:_eab(eab, url)
    if type(eab) ~= "table" or type(eab.kid) ~= "string" or
        type(eab.key) ~= "string" then
        error("external_account_binding = {kid=, key=} of strings expected",
            3)
    end
    local mac = core.b64url_decode(eab.key)
    if not mac or #mac == 0 then
        return nil, errors.new("eab", "the EAB key is not base64url " ..
            "(give the key as the CA printed it)")
    end
    local ok, err = util.check_url(url)
    if not ok then return nil, err end
    local jwk = util.json(self.key:jwk())
    local s, msg, kind = core.jws_hmac(mac, { alg = "HS256", kid = eab.kid,
        url = url }, jwk)
    if not s then return nil, errors.new(kind or "jws", tostring(msg)) end
    return util.raw(s)
end

local function account_exists(resp, acct)
    return errors.new("account_exists", "an account already exists for " ..
        "this key: " .. tostring(resp.location), { uri = resp.location,
            account = acct })
end

-- register(account, prompt): creates the account of the client's key.
-- account = {contact = {"mailto:..."}, external_account_binding =
-- {kid=, key=base64url}}; prompt(tos_url) -> boolean is asked when the
-- directory names terms of service. Returns the account table {uri,
-- status, contact, orders_url} and sets client.kid; an existing account
-- gives nil, err with err.kind "account_exists" and err.uri.
function Client:register(account, prompt)
    account = account or {}
    if type(account) ~= "table" then error("register: table expected", 2) end
    if prompt ~= nil and type(prompt) ~= "function" then
        error("register: prompt must be a function", 2)
    end
    local dir, err = self:discover()
    if not dir then return nil, err end
    local req = { contact = check_contact(account.contact) }
    local tos = dir.meta.terms_of_service
    if tos and prompt then
        req.termsOfServiceAgreed = prompt(tos) == true
    end
    if account.external_account_binding then
        req.externalAccountBinding, err =
            self:_eab(account.external_account_binding, dir.new_account)
        if not req.externalAccountBinding then return nil, err end
    end
    local payload = util.json(req)
    local resp, found
    resp, err, found = self:_post_uncertain(dir.new_account, payload,
        { jwk = true }, function()
            -- The account may exist now: look it up by key.
            local acct, lerr = self:_find_account(nil)
            if acct then return acct end
            if lerr.kind == "no_account" then return false end
            return nil, lerr
        end)
    if found then
        self.kid = found.uri
        return found
    end
    if not resp then
        if errors.is(err, "agreementRequired") then
            err.terms_of_service = err.terms_of_service or tos
        end
        return nil, err
    end
    if not resp.location then
        return nil, errors.new("response", "newAccount reply has no Location")
    end
    self.kid = resp.location
    local acct = account_of(resp.json, resp.location)
    if resp.status == 200 then return nil, account_exists(resp, acct) end
    return acct
end

-- Looks up the account by key (newAccount with onlyReturnExisting).
function Client:_find_account(key)
    local dir, err = self:discover()
    if not dir then return nil, err end
    local resp
    resp, err = self:post(dir.new_account, '{"onlyReturnExisting":true}',
        { jwk = true, key = key, idempotent = true })
    if not resp then
        if errors.is(err, "accountDoesNotExist") then
            return nil, errors.new("no_account", "no account exists for " ..
                "this key", { cause = err })
        end
        return nil, err
    end
    if not resp.location then
        return nil, errors.new("response", "newAccount reply has no Location")
    end
    return account_of(resp.json, resp.location)
end

-- get_reg(): the account of the client's key. With client.kid set, a
-- POST-as-GET of that URL; otherwise a lookup by key. An unknown key
-- gives err.kind "no_account".
function Client:get_reg()
    if self.kid then
        local resp, err = self:post(self.kid, "", { idempotent = true })
        if not resp then
            if errors.is(err, "accountDoesNotExist") then
                return nil, errors.new("no_account", "no account at " ..
                    self.kid, { cause = err, uri = self.kid })
            end
            return nil, err
        end
        return account_of(resp.json, self.kid)
    end
    local acct, err = self:_find_account(nil)
    if not acct then return nil, err end
    self.kid = acct.uri
    return acct
end

-- update_reg(account): sets the contacts of the client's account to
-- account.contact; an empty list removes them all. Unlike Go, where a
-- nil Contact sends no change, a missing list raises: sending [] for it
-- would silently drop every contact.
function Client:update_reg(account)
    if type(account) ~= "table" then error("update_reg: table expected", 2) end
    if account.contact == nil then
        error("update_reg: account.contact expected (a list; {} removes " ..
            "every contact)", 2)
    end
    local contact = check_contact(account.contact)
    local kid, err = self:_account_url()
    if not kid then return nil, err end
    local resp
    resp, err = self:post(kid, util.json({ contact = contact }),
        { idempotent = true })
    if not resp then return nil, err end
    return account_of(resp.json, kid)
end

-- deactivate_reg(): permanently disables the account. Returns true.
function Client:deactivate_reg()
    local kid, err = self:_account_url()
    if not kid then return nil, err end
    local payload = '{"status":"deactivated"}'
    local resp, done
    resp, err, done = self:_post_uncertain(kid, payload, nil, function()
        local acct, gerr = self:get_reg()
        if acct then return acct.status == "deactivated" end
        -- A deactivated account's requests are refused (RFC 8555
        -- §7.3.6: 401; Pebble: 403 unauthorized).
        if errors.is(gerr, "unauthorized") or gerr.status == 401 then
            return true
        end
        return nil, gerr
    end)
    if not resp and not done then return nil, err end
    return true
end

-- account_key_rollover(new_key): RFC 8555 §7.3.5. The inner JWS is
-- signed by the new key with its jwk, url = keyChange and no nonce; the
-- outer by the old key with kid. The client switches to new_key only
-- after the CA's success. A conflict (409) gives err.uri = the account
-- already using new_key.
function Client:account_key_rollover(new_key)
    if type(new_key) ~= "userdata" then
        error("account_key_rollover: key expected", 2)
    end
    if self.key and new_key:thumbprint() == self.key:thumbprint() then
        return nil, errors.new("key", "the new account key is the " ..
            "current one; a rollover needs a fresh key")
    end
    local dir, err = self:discover()
    if not dir then return nil, err end
    if not dir.key_change then
        return nil, errors.new("unsupported", "the CA's directory has no " ..
            "keyChange")
    end
    local kid
    kid, err = self:_account_url()
    if not kid then return nil, err end
    local ok
    ok, err = util.check_url(dir.key_change)
    if not ok then return nil, err end
    local inner
    inner, err = sign(new_key, { jwk = new_key:jwk(), url = dir.key_change },
        util.json({ account = kid, oldKey = self.key:jwk() }))
    if not inner then return nil, err end
    local resp, done
    resp, err, done = self:_post_uncertain(dir.key_change, inner, nil,
        function()
            -- Which key holds the account now? The new one: done; the
            -- old one: not done; neither answering: unknown.
            local acct, ferr = self:_find_account(new_key)
            if acct and acct.uri == kid then return true end
            if acct then
                return nil, errors.new("key", "the new key belongs to " ..
                    "another account: " .. tostring(acct.uri))
            end
            if ferr.kind ~= "no_account" then return nil, ferr end
            local old
            old, ferr = self:_find_account(self.key)
            if old then return false end
            return nil, ferr
        end)
    if done then
        self.key = new_key
        return true
    end
    if not resp then
        if err.status == 409 then
            err.uri = util.header(err.headers, "location")
        end
        return nil, err
    end
    self.key = new_key
    return true
end

---------------------------------------------------------------------------
-- Orders.

local function time_field(v, name)
    if v == nil then return nil end
    if type(v) == "number" then return util.format_rfc3339(v) end
    if type(v) == "string" and util.parse_rfc3339(v) then return v end
    error(name .. " must be epoch seconds or an RFC 3339 string", 3)
end

local function normalized_ids(ids)
    if type(ids) ~= "table" or #ids == 0 then
        error("identifiers: a non-empty list expected", 3)
    end
    local out = util.array()
    for _, id in ipairs(ids) do
        local n, why = ident.normalize(id)
        if not n then
            return nil, errors.new("identifier", "bad identifier '" ..
                errors.printable(type(id) == "table" and tostring(id.value) or
                    tostring(id)) .. "': " .. why,
                { identifier = type(id) == "table" and id or nil })
        end
        out[#out + 1] = n
    end
    return out
end

local function id_set(ids)
    local keys = {}
    for _, id in ipairs(ids) do
        keys[#keys + 1] = id.type .. ":" .. id.value:lower()
    end
    table.sort(keys)
    return table.concat(keys, " ")
end

-- After a lost newOrder reply: the most recent order of the account for
-- the same identifiers (and validity and profile, when asked for) that
-- is still pending or ready, as a new order is; false when there is
-- none; nil, err when the CA's list cannot be read. A valid order of an
-- earlier issuance for the same names is not the one asked for.
function Client:_find_order(ids, req)
    local urls, err = self:list_orders()
    if not urls then return nil, err end
    local want = id_set(ids)
    local tried = 0
    for i = #urls, 1, -1 do
        if tried >= 10 then break end
        tried = tried + 1
        local o
        o, err = self:get_order(urls[i])
        if not o then return nil, err end
        if (o.status == "pending" or o.status == "ready") and
            id_set(o.identifiers) == want and
            (not req.profile or o.profile == nil or
                o.profile == req.profile) and
            (not req.notBefore or o.not_before == nil or
                util.parse_rfc3339(o.not_before) ==
                util.parse_rfc3339(req.notBefore)) and
            (not req.notAfter or o.not_after == nil or
                util.parse_rfc3339(o.not_after) ==
                util.parse_rfc3339(req.notAfter)) then
            return o
        end
    end
    return false
end

-- authorize_order(ids, opts): newOrder. ids = acme.domain_ids(...) /
-- acme.ip_ids(...); names are normalised (lower-case A-labels, canonical
-- IPs) and bad ones refused before anything is sent (err.kind
-- "identifier"). opts: not_before, not_after (epoch seconds or RFC 3339),
-- profile, replaces (sent only when the CA offers renewalInfo; on
-- alreadyReplaced the order is asked for once more without it, and the
-- order gets replaces_dropped = true).
-- Returns the order {uri, status, expires, identifiers, authz_urls,
-- finalize_url, cert_url, error, ...}.
function Client:authorize_order(ids, opts)
    opts = opts or {}
    local norm, err = normalized_ids(ids)
    if not norm then return nil, err end
    local dir
    dir, err = self:discover()
    if not dir then return nil, err end
    local req = {
        identifiers = norm,
        notBefore = time_field(opts.not_before, "not_before"),
        notAfter = time_field(opts.not_after, "not_after"),
    }
    if opts.profile ~= nil then
        if type(opts.profile) ~= "string" then
            error("profile must be a string", 2)
        end
        req.profile = opts.profile
    end
    if opts.replaces ~= nil and dir.renewal_info then
        if type(opts.replaces) ~= "string" then
            error("replaces must be a certID string", 2)
        end
        req.replaces = opts.replaces
    end
    local function new_order()
        return self:_post_uncertain(dir.new_order, util.json(req), nil,
            function()
                -- The order may have been created: find it before
                -- asking again.
                return self:_find_order(norm, req)
            end)
    end
    local resp, found
    resp, err, found = new_order()
    if not resp and not found and req.replaces and
        errors.is(err, "alreadyReplaced") then
        -- RFC 9773 §5: that certificate was already replaced; a new
        -- certificate is still wanted, so ask once without the claim.
        req.replaces = nil
        resp, err, found = new_order()
        if resp then resp.replaces_dropped = true end
        if found then found.replaces_dropped = true end
    end
    if found then return found end
    if not resp then return nil, err end
    if not resp.location then
        return nil, errors.new("response", "newOrder reply has no Location")
    end
    local o
    o, err = order_of(resp.json, resp.location, resp)
    if o and resp.replaces_dropped then o.replaces_dropped = true end
    return o, err
end

-- get_order(url): the order at url.
function Client:get_order(url)
    local resp, err = self:_get(url)
    if not resp then return nil, err end
    local o
    o, err = order_of(resp.json, url, resp)
    if not o then return nil, err end
    o.retry_after = util.retry_after(resp.headers, self.now())
    return o
end

-- poll(url, fetch, classify[, opts]): the one polling loop. Calls
-- fetch(client, url) until classify(obj) returns true (obj is returned)
-- or an error table (returned as nil, err, obj); "wait" keeps polling
-- with util.backoff within opts.deadline (client clock; default now +
-- poll_timeout). opts.wait_first sleeps before the first fetch;
-- opts.on_wait(seconds) is called before every sleep, so a caller can
-- tell the user what it waits for. Retry-After on a reply replaces the
-- computed delay.
function Client:poll(url, fetch, classify, opts)
    opts = opts or {}
    local deadline = opts.deadline or (self.now() + self.poll_timeout)
    if self.deadline then deadline = math.min(deadline, self.deadline) end
    local next_wait = util.backoff(self.poll_first, self.poll_cap, deadline,
        self.now)
    local on_wait = opts.on_wait or function() end
    if opts.wait_first then
        local w = next_wait()
        if not w then
            return nil, errors.new("deadline", "deadline passed before " ..
                "polling " .. url, { uri = url })
        end
        on_wait(w)
        self.sleep(w)
    end
    while true do
        local obj, err = fetch(self, url)
        if not obj then return nil, err end
        local verdict = classify(obj)
        if verdict == true then return obj end
        if verdict ~= "wait" then return nil, verdict, obj end
        local w = next_wait(obj.retry_after)
        if not w then
            return nil, errors.new("deadline", "gave up waiting for " .. url ..
                " (status " .. tostring(obj.status) .. ")",
                { uri = url, status_value = obj.status,
                    retry_after = obj.retry_after }), obj
        end
        on_wait(w)
        self.sleep(w)
    end
end

-- order_error(order): the error for an order that went invalid (kind
-- "order", the CA's problem as cause/type/subproblems).
local function order_error(o)
    local e = errors.new("order", "order " .. tostring(o.uri) .. " is " ..
        tostring(o.status), { uri = o.uri, order = o, cause = o.error })
    if o.error then
        e.detail = e.detail .. ": " .. errors.printable(o.error.detail or
            errors.short_type(o.error.type) or "(no detail)")
        e.type = o.error.type
        e.subproblems = o.error.subproblems
    end
    return e
end
M.order_error = order_error

-- wait_order(url[, deadline]): polls until ready or valid (returned);
-- invalid gives err.kind "order" with the CA's problem in err.cause.
function Client:wait_order(url, deadline, wait_first)
    return self:poll(url, Client.get_order, function(o)
        if o.status == "ready" or o.status == "valid" then return true end
        if o.status == "pending" or o.status == "processing" then
            return "wait"
        end
        return order_error(o)
    end, { deadline = deadline, wait_first = wait_first })
end

-- Most pages of an orders list followed (rel="next"): a server handing
-- out new page URLs forever must not keep the client busy forever.
M.MAX_ORDER_PAGES = 100

-- list_orders(): URLs of all orders of the account, every page (at most
-- M.MAX_ORDER_PAGES; more is err.kind "too_large").
function Client:list_orders()
    local acct, err = self:get_reg()
    if not acct then return nil, err end
    if not acct.orders_url then
        return nil, errors.new("unsupported", "the account has no orders URL")
    end
    local urls, seen, pages = {}, {}, 0
    local url = acct.orders_url
    while url and not seen[url] do
        seen[url] = true
        pages = pages + 1
        if pages > M.MAX_ORDER_PAGES then
            return nil, errors.new("too_large", "the orders list has more " ..
                "than " .. M.MAX_ORDER_PAGES .. " pages", { url = url })
        end
        local resp
        resp, err = self:_get(url)
        if not resp then return nil, err end
        local doc = resp.json
        if type(doc) ~= "table" then
            return nil, errors.new("response", "orders list is not JSON")
        end
        for _, u in ipairs(list_of_str(doc.orders)) do
            urls[#urls + 1] = util.resolve(url, u)
        end
        url = util.link(resp.headers, "next", url)[1]
    end
    return urls
end

---------------------------------------------------------------------------
-- Authorizations and challenges.

-- get_authorization(url).
function Client:get_authorization(url)
    local resp, err = self:_get(url)
    if not resp then return nil, err end
    local a
    a, err = authz_of(resp.json, url)
    if not a then return nil, err end
    a.retry_after = util.retry_after(resp.headers, self.now())
    return a
end

-- authz_error(authz): the error for an authorization that did not
-- become valid: kind "authorization", identifier, wildcard, uri, authz,
-- the first challenge's problem as cause (and its type), and errors: the
-- per-identifier list, here the one entry for this identifier, as an
-- order with several failing names lists one per name.
local function authz_error(a)
    local id = a.identifier or {}
    local cause
    for _, ch in ipairs(a.challenges or {}) do
        if ch.error then cause = ch.error break end
    end
    local name = (a.wildcard and "*." or "") .. tostring(id.value)
    local fields = { uri = a.uri, identifier = a.identifier,
        wildcard = a.wildcard, authz = a }
    local detail = "authorization for " .. errors.printable(name) ..
        " is " .. tostring(a.status)
    if cause then
        detail = detail .. ": " .. errors.printable(cause.detail or
            errors.short_type(cause.type) or "(no detail)")
        fields.type, fields.cause = cause.type, cause
    end
    local one = {}
    for k, v in pairs(fields) do one[k] = v end
    fields.errors = { errors.new("authorization", detail, one) }
    return errors.new("authorization", detail, fields)
end
M.authz_error = authz_error

-- wait_authorization(url[, deadline]): polls until valid (returned);
-- invalid, deactivated, expired or revoked give err.kind
-- "authorization" with the challenges' problems.
function Client:wait_authorization(url, deadline, wait_first)
    return self:poll(url, Client.get_authorization, function(a)
        if a.status == "valid" then return true end
        if a.status == "pending" or a.status == "processing" then
            return "wait"
        end
        return authz_error(a)
    end, { deadline = deadline, wait_first = wait_first })
end

-- revoke_authorization(url): deactivates the authorization; returns it.
function Client:revoke_authorization(url)
    local resp, err, done = self:_post_uncertain(url,
        '{"status":"deactivated"}', nil, function()
            -- Sent again to a deactivated authorization the POST would
            -- be refused: read it first.
            local a, gerr = self:get_authorization(url)
            if not a then return nil, gerr end
            if a.status == "deactivated" then return a end
            return false
        end)
    if done then return done end
    if not resp then return nil, err end
    return authz_of(resp.json, url)
end

local function pre_authorize(self, id)
    local dir, err = self:discover()
    if not dir then return nil, err end
    if not dir.new_authz then
        return nil, errors.new("unsupported", "this CA does not offer " ..
            "pre-authorization (no newAuthz in its directory); use " ..
            "authorize_order")
    end
    local norm
    norm, err = normalized_ids({ id })
    if not norm then return nil, err end
    local resp
    resp, err = self:post(dir.new_authz, util.json({ identifier = norm[1] }))
    if not resp then return nil, err end
    if not resp.location then
        return nil, errors.new("response", "newAuthz reply has no Location")
    end
    return authz_of(resp.json, resp.location)
end

-- authorize(domain) / authorize_ip(addr): pre-authorization (newAuthz).
function Client:authorize(domain)
    if type(domain) ~= "string" then error("authorize: name expected", 2) end
    return pre_authorize(self, { type = "dns", value = domain })
end

function Client:authorize_ip(addr)
    if type(addr) ~= "string" then
        error("authorize_ip: address expected", 2)
    end
    return pre_authorize(self, { type = "ip", value = addr })
end

-- get_challenge(url).
function Client:get_challenge(url)
    local resp, err = self:_get(url)
    if not resp then return nil, err end
    local ch = challenge_of(resp.json, url)
    if not ch then
        return nil, errors.new("response", "bad challenge from " .. url)
    end
    return ch
end

-- accept(challenge): tells the CA to validate (POST {} to the
-- challenge URL). challenge is a challenge table or its URL. Returns the
-- updated challenge.
function Client:accept(challenge)
    local url = type(challenge) == "table" and challenge.uri or challenge
    if type(url) ~= "string" then error("accept: challenge expected", 2) end
    local resp, err, done = self:_post_uncertain(url, "{}", nil, function()
        -- A challenge the CA works on or has finished needs no second
        -- request; some CAs (Pebble) show "pending" until the result,
        -- and a second POST {} to a pending challenge only asks again.
        local ch, gerr = self:get_challenge(url)
        if not ch then return nil, gerr end
        if ch.status ~= "pending" then return ch end
        return false
    end)
    if done then return done end
    if not resp and err.kind == "acme" and err.status == 400 then
        -- The resend met a challenge that finished meanwhile.
        local ch = self:get_challenge(url)
        if ch and ch.status ~= "pending" then return ch end
    end
    if not resp then return nil, err end
    local ch = challenge_of(resp.json, url)
    if not ch then
        return nil, errors.new("response", "bad challenge from " .. url)
    end
    ch.up = util.link(resp.headers, "up", url)[1]
    return ch
end

---------------------------------------------------------------------------
-- Certificates.

-- fetch_cert(url, bundle): the certificate chain at url as a list of DER
-- strings (only the leaf unless bundle), and {pem=, alternates=, url=}.
-- A reply holding anything but CERTIFICATE blocks is refused.
function Client:fetch_cert(url, bundle)
    if type(url) ~= "string" then error("fetch_cert: url expected", 2) end
    local resp, err = self:_get(url, PEM_CHAIN)
    if not resp then return nil, err end
    local ders, pems = util.pem_certs(resp.body)
    if not ders then return nil, pems end
    if not bundle then ders, pems = { ders[1] }, { pems[1] } end
    return ders, { pem = resp.body, pems = pems, url = url,
        alternates = util.link(resp.headers, "alternate", url) }
end

-- Most alternate chains fetched for one certificate: a server listing
-- endless alternates must not keep the client downloading (A#9.2).
M.MAX_ALTERNATES = 10

-- list_cert_alternates(url): URLs of the alternate chains of the
-- certificate at url.
function Client:list_cert_alternates(url)
    local resp, err = self:_get(url, PEM_CHAIN)
    if not resp then return nil, err end
    return util.link(resp.headers, "alternate", url)
end

-- create_order_cert(finalize_url, csr_der, bundle[, opts]): finalizes,
-- polls the order URL while it is processing, downloads the chain.
-- opts: order_url (for recovery when the reply is lost and when the CA
-- sends no Location), deadline, on_wait (see poll). Returns a list of DER certificates and
-- the certificate URL.
function Client:create_order_cert(finalize_url, csr_der, bundle, opts)
    opts = opts or {}
    if type(finalize_url) ~= "string" or type(csr_der) ~= "string" then
        error("create_order_cert: finalize URL and DER CSR expected", 2)
    end
    -- RFC 8555 §11.1: the account key must not be a certificate key. The
    -- CA would refuse (badCSR); checked here so the CSR is not sent.
    local info = core.csr_info(csr_der)
    if info and self.key and
        info.public_key == core.pem_decode(self.key:public_pem()) then
        return nil, errors.new("csr", "the CSR carries the account key; " ..
            "a certificate needs a key of its own")
    end
    local payload = util.json({ csr = core.b64url_encode(csr_der) })
    local resp, err, o = self:_post_uncertain(finalize_url, payload, nil,
        function(ferr)
            -- Without the order URL the state cannot be read: resending
            -- would meet orderNotReady if the first one arrived.
            if not opts.order_url then return nil, ferr end
            local x, gerr = self:get_order(opts.order_url)
            if not x then return nil, gerr end
            if x.status == "ready" then return false end
            return x
        end)
    if not o then
        if not resp then return nil, err end
        o, err = order_of(resp.json, resp.location or opts.order_url, resp)
        if not o then return nil, err end
    end
    if o.status ~= "valid" then
        if o.status == "invalid" then return nil, order_error(o) end
        if not o.uri then
            return nil, errors.new("response", "finalize reply has no " ..
                "Location and no order URL was given")
        end
        o, err = self:poll(o.uri, Client.get_order, function(x)
            if x.status == "valid" then return true end
            if x.status == "processing" or x.status == "ready" then
                return "wait"
            end
            return order_error(x)
        end, { deadline = opts.deadline, wait_first = true,
            on_wait = opts.on_wait })
        if not o then return nil, err end
    end
    if not o.cert_url then
        return nil, errors.new("response", "valid order has no certificate")
    end
    local ders, meta = self:fetch_cert(o.cert_url, bundle)
    if not ders then return nil, meta end
    return ders, o.cert_url, meta, o
end

-- revoke_cert(key_or_nil, cert_der, reason[, opts]): revokes by the account key
-- (key nil: kid) or by another key (the certificate's: jwk). reason is
-- an RFC 5280 code (acme.CRL_REASON_*), omitted when nil. opts:
-- { already_ok = true } takes alreadyRevoked as success.
function Client:revoke_cert(key, cert_der, reason, opts)
    if key ~= nil and type(key) ~= "userdata" then
        error("revoke_cert: key or nil expected", 2)
    end
    if opts ~= nil and type(opts) ~= "table" then
        error("revoke_cert: options table or nil expected", 2)
    end
    local already_ok = opts and opts.already_ok
    if type(cert_der) ~= "string" then
        error("revoke_cert: DER certificate expected", 2)
    end
    if reason ~= nil and math.type(reason) ~= "integer" then
        error("revoke_cert: reason must be an integer", 2)
    end
    local dir, err = self:discover()
    if not dir then return nil, err end
    if not dir.revoke_cert then
        return nil, errors.new("unsupported", "the directory has no revokeCert")
    end
    local payload = util.json({ certificate = core.b64url_encode(cert_der),
        reason = reason })
    local popts = { key = key }
    -- ACME has no authenticated read of a certificate's status: the
    -- request itself is the read-back. Sent again, a revocation that
    -- arrived the first time answers alreadyRevoked.
    local resp, resent
    resp, err = self:_post_uncertain(dir.revoke_cert, payload, popts,
        function()
            resent = true
            return false
        end)
    if not resp and resent and errors.is(err, "alreadyRevoked") then
        return true
    end
    if not resp then
        -- Asked for: the goal (a revoked certificate) is reached.
        if already_ok and errors.is(err, "alreadyRevoked") then
            return true
        end
        return nil, err
    end
    return true
end

---------------------------------------------------------------------------
-- Challenge helpers.

local function check_token(token)
    if not util.is_token(token) then
        return nil, errors.new("response", "challenge token is not " ..
            "base64url: '" .. errors.printable(tostring(token)) .. "'")
    end
    return token
end

-- key_authorization(token): token "." thumbprint of the account key.
function Client:key_authorization(token)
    local ok, err = check_token(token)
    if not ok then return nil, err end
    if not self.key then error("acme client: no account key set", 2) end
    return token .. "." .. self.key:thumbprint()
end

-- http01_challenge_path(token): "/.well-known/acme-challenge/<token>".
function Client:http01_challenge_path(token)
    local ok, err = check_token(token)
    if not ok then return nil, err end
    return values.http01_path(token)
end

-- http01_challenge_response(token): the body to serve.
function Client:http01_challenge_response(token)
    return self:key_authorization(token)
end

-- dns01_challenge_record(token): the TXT value for
-- _acme-challenge.<domain>.
function Client:dns01_challenge_record(token)
    local ka, err = self:key_authorization(token)
    if not ka then return nil, err end
    return values.dns01_value(ka)
end

-- tls_alpn01_challenge_cert(token, identifier[, key]): the self-signed
-- RFC 8737 certificate (PEM), its key and the certificate's DER.
function Client:tls_alpn01_challenge_cert(token, identifier, key)
    if type(identifier) ~= "string" then
        error("tls_alpn01_challenge_cert: identifier expected", 2)
    end
    local ka, err = self:key_authorization(token)
    if not ka then return nil, err end
    return values.tls_alpn01_cert(identifier, ka, key)
end

-- challenge_for(authz, ch): the table a hook receives for challenge ch
-- of authorization authz (hooks/README.md; luacme.challenge.derive):
-- type, token, uri, identifier, domain, wildcard, key_authorization,
-- authz, and path/body, name/value or cert_pem/key by type. nil, err
-- for a token that is not base64url.
function Client:challenge_for(a, ch)
    local ka, err = self:key_authorization(ch.token)
    if not ka then return nil, err end
    return values.derive{ type = ch.type, token = ch.token, uri = ch.uri,
        identifier = a.identifier, wildcard = a.wildcard,
        key_authorization = ka, authz = a }
end

---------------------------------------------------------------------------
-- Renewal information (RFC 9773).

-- The ARI certID of a certificate (PEM or DER): base64url(AKI key id)
-- "." base64url(serial DER content bytes, leading zero kept).
function M.cert_id(cert)
    if type(cert) ~= "string" then error("cert_id: certificate expected", 2) end
    local info, msg, kind = core.cert_info(cert)
    if not info then return nil, errors.new(kind or "parse", msg) end
    if type(info.aki) ~= "string" or #info.aki == 0 then
        return nil, errors.new("unsupported", "certificate has no " ..
            "authority key identifier")
    end
    local serial = info.serial
    if #serial % 2 == 1 then serial = "0" .. serial end
    serial = serial:gsub("%x%x", function(h)
        return string.char(tonumber(h, 16))
    end)
    return core.b64url_encode(info.aki) .. "." .. core.b64url_encode(serial)
end

-- ARI clamps for Retry-After (RFC 9773 §4.3) and the default when the
-- CA sends none.
M.ARI_RETRY_MIN, M.ARI_RETRY_MAX, M.ARI_RETRY_DEFAULT = 60, 86400, 21600

-- ari_retry(seconds): seconds until renewal information is fetched
-- again: seconds clamped to [ARI_RETRY_MIN, ARI_RETRY_MAX], or
-- ARI_RETRY_DEFAULT when there is no usable number (nil, NaN).
function M.ari_retry(seconds)
    if type(seconds) ~= "number" or seconds ~= seconds then
        return M.ARI_RETRY_DEFAULT
    end
    return math.max(M.ARI_RETRY_MIN, math.min(M.ARI_RETRY_MAX, seconds))
end

-- get_renewal_info(cert_pem): {start=, ["end"]=, explanation_url=,
-- retry_after=} with start/end as epoch seconds; an unauthenticated GET
-- of <renewalInfo>/<certID>. err.kind "unsupported" when the CA has no
-- renewalInfo.
function Client:get_renewal_info(cert_pem)
    local dir, err = self:discover()
    if not dir then return nil, err end
    if not dir.renewal_info then
        return nil, errors.new("unsupported", "the CA's directory has no " ..
            "renewalInfo")
    end
    local id
    id, err = M.cert_id(cert_pem)
    if not id then return nil, err end
    local url = dir.renewal_info:gsub("/+$", "") .. "/" .. id
    local resp
    resp, err = self:_http("GET", url, { Accept = "application/json" })
    if not resp then return nil, err end
    local doc = resp.json
    local win = type(doc) == "table" and doc.suggestedWindow
    local s = type(win) == "table" and util.parse_rfc3339(win.start)
    local e = type(win) == "table" and util.parse_rfc3339(win["end"])
    if not s or not e or e <= s then
        return nil, errors.new("response", "renewalInfo has no valid " ..
            "suggestedWindow", { url = url })
    end
    local ra = M.ari_retry(util.retry_after(resp.headers, self.now()))
    return { start = s, ["end"] = e, explanation_url =
        type(doc) == "table" and str(doc.explanationURL) or nil,
        retry_after = ra, cert_id = id }
end

M.Client = Client
return M
