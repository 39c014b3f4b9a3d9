-- local acme = require "luacme"
--
-- The ACME (RFC 8555) client API, after golang.org/x/crypto/acme with
-- methods in snake_case. Expected failures return nil, err where err is
-- a table (lua/luacme/errors.lua); caller mistakes raise. acme.core is
-- the C core with the same convention: its functions return nil, err
-- table (kind as the core names it) where luacme.core itself returns
-- nil, message, kind; for the methods of core objects (key:write, ...)
-- acme.errors.from(key:write(path)) does the same. lua/luacme/API.md
-- lists every error kind and field.
--
-- acme.client{
--   directory = URL,            -- default acme.LETSENCRYPT
--   key = core key,             -- the account key (luacme.core)
--   kid = account URL,          -- optional: a stored account URL
--   ca_file =, user_agent =, timeout =, connect_timeout =, allow_http =,
--   retry_backoff = fn(n, status, headers) -> seconds (<= 0: give up),
--   transport = obj,            -- obj:request{method,url,headers,body}
--   sleep = fn(s), now = fn() -> epoch seconds,
--   poll_first =, poll_cap =, poll_timeout =, bad_nonce_retries =,
--   max_retries =, max_retry_wait =,
--   deadline = epoch seconds,   -- no retry or poll waits past it
-- }
--
-- client:issue{...} is the whole issuance of luacme.issuance (a method
-- given to every client here, at the top of the library, so the
-- protocol client itself never requires the issuance above it).
local core = require "luacme.core"
local client = require "luacme.client"
local errors = require "luacme.errors"
local ident = require "luacme.ident"
local issuance = require "luacme.issuance"

local M = {}

M.client = client.new
M.LETSENCRYPT = client.LETSENCRYPT
M.LETSENCRYPT_STAGING = client.LETSENCRYPT_STAGING
M.ALPN_PROTO = "acme-tls/1"

M.STATUS_PENDING = "pending"
M.STATUS_READY = "ready"
M.STATUS_PROCESSING = "processing"
M.STATUS_VALID = "valid"
M.STATUS_INVALID = "invalid"
M.STATUS_DEACTIVATED = "deactivated"
M.STATUS_EXPIRED = "expired"
M.STATUS_REVOKED = "revoked"
M.STATUS_UNKNOWN = "unknown"

-- RFC 5280 §5.3.1 (7 is unused).
M.CRL_REASON_UNSPECIFIED = 0
M.CRL_REASON_KEY_COMPROMISE = 1
M.CRL_REASON_CA_COMPROMISE = 2
M.CRL_REASON_AFFILIATION_CHANGED = 3
M.CRL_REASON_SUPERSEDED = 4
M.CRL_REASON_CESSATION_OF_OPERATION = 5
M.CRL_REASON_CERTIFICATE_HOLD = 6
M.CRL_REASON_REMOVE_FROM_CRL = 8
M.CRL_REASON_PRIVILEGE_WITHDRAWN = 9
M.CRL_REASON_AA_COMPROMISE = 10

M.errors = errors
M.is_error = errors.is

local function args(...)
    local first = ...
    if type(first) == "table" then return first end
    return { ... }
end

-- domain_ids("a.example", ...) or domain_ids{...}: dns identifiers.
-- Valid names come back as lower-case A-labels; others unchanged, so
-- authorize_order reports them.
function M.domain_ids(...)
    local out = {}
    for _, n in ipairs(args(...)) do
        if type(n) ~= "string" then error("domain_ids: names expected", 2) end
        out[#out + 1] = { type = "dns", value = ident.domain(n) or n }
    end
    return out
end

-- ip_ids("192.0.2.1", "2001:DB8::1", ...): ip identifiers, canonical.
function M.ip_ids(...)
    local out = {}
    for _, a in ipairs(args(...)) do
        if type(a) ~= "string" then error("ip_ids: addresses expected", 2) end
        out[#out + 1] = { type = "ip", value = ident.ip(a) or a }
    end
    return out
end

-- accept_tos(url) -> true: a prompt that always agrees.
function M.accept_tos()
    return true
end

-- The members of a public JWK that its RFC 7638 thumbprint covers, in
-- lexicographic order, per key type.
local JWK_MEMBERS = { EC = { "crv", "kty", "x", "y" }, RSA = { "e", "kty", "n" } }

-- jwk_thumbprint(key): RFC 7638 thumbprint (base64url) of a key object,
-- a public key PEM ("PUBLIC KEY") or a public JWK table; nil, err for a
-- PEM or JWK that is no usable public key.
function M.jwk_thumbprint(key)
    if type(key) == "string" then
        local tp, msg, kind = core.public_thumbprint(key)
        if not tp then return nil, errors.new(kind or "parse", msg) end
        return tp
    end
    if type(key) ~= "table" then return key:thumbprint() end
    local members = JWK_MEMBERS[key.kty]
    if not members then
        return nil, errors.new("invalid", "JWK: kty EC or RSA expected")
    end
    -- The canonical JSON by hand (RFC 7638 §3): the values are
    -- base64url or fixed names, so none needs escaping.
    local parts = {}
    for i, m in ipairs(members) do
        local v = key[m]
        if type(v) ~= "string" or not v:match("^[%w%-_]+$") then
            return nil, errors.new("invalid", "JWK: member " .. m ..
                " missing or not base64url")
        end
        parts[i] = '"' .. m .. '":"' .. v .. '"'
    end
    return core.b64url_encode(core.sha256("{" .. table.concat(parts, ",") ..
        "}"))
end

-- rate_limit(err) -> seconds, true when err is a rate limit (HTTP 429 or
-- rateLimited, the URN in any case: RFC 8141 URNs are case-insensitive);
-- 0, false otherwise.
function M.rate_limit(err)
    if type(err) ~= "table" then return 0, false end
    local ty = type(err.type) == "string" and err.type:lower() or ""
    if err.status == 429 or err.kind == "rateLimited" or
        ty == "ratelimited" or ty:sub(-12) == ":ratelimited" then
        return err.retry_after or 0, true
    end
    return 0, false
end

-- cert_id(cert_pem_or_der): the RFC 9773 certID.
M.cert_id = client.cert_id

-- The identifier helpers: acme.ident.domain(name), .ip(addr).
M.ident = ident

-- acme.core: luacme.core with failures as error tables. Values that
-- are not functions (and functions that do not fail) are the core's own.
M.core = setmetatable({}, { __index = function(t, k)
    local v = core[k]
    if type(v) == "function" then
        local f = v
        v = function(...) return errors.from(f(...)) end
    end
    rawset(t, k, v)
    return v
end })

-- client:issue(opts): issuance.issue(client, opts), see luacme.issuance.
M.issue = issuance.issue
client.Client.issue = issuance.issue

return M
