-- The values a challenge response is made of (RFC 8555 §8.1, §8.3, §8.4;
-- RFC 8737), derived here and nowhere else: the client's Go-style
-- helpers, the issuance and the hooks' challenge tables all call these.
--
--   local challenge = require "luacme.challenge"
--   challenge.http01_path(token)        -- "/.well-known/acme-challenge/<token>"
--   challenge.dns01_name("example.com") -- "_acme-challenge.example.com."
--   challenge.dns01_value(key_authorization)   -- base64url(SHA-256)
--   challenge.tls_alpn01_cert(identifier, key_authorization[, key])
--   challenge.derive{ type=, token=, identifier = {type=, value=},
--     key_authorization=, wildcard=, ... }  -- the table a hook receives
local core = require "luacme.core"
local errors = require "luacme.errors"

local M = {}

M.HTTP01_PREFIX = "/.well-known/acme-challenge/"

-- The URL path an http-01 response is served at.
function M.http01_path(token)
    return M.HTTP01_PREFIX .. token
end

-- The TXT record name of a dns-01 response for a domain (no trailing
-- dot needed; a wildcard's base name, without "*.").
function M.dns01_name(domain)
    return "_acme-challenge." .. domain:gsub("%.$", "") .. "."
end

-- The TXT record value: base64url(SHA-256(key authorization)).
function M.dns01_value(key_authorization)
    return core.b64url_encode(core.sha256(key_authorization))
end

-- The RFC 8737 self-signed certificate (PEM) and its key for an
-- identifier (a DNS name or an IP address). key: optional, a fresh
-- P-256 key otherwise. Returns pem, key, der (the certificate's DER, as
-- Go's tls.Certificate carries it) or nil, err.
function M.tls_alpn01_cert(identifier, key_authorization, key)
    local pem, k, kind = core.tls_alpn01_cert(identifier, key_authorization,
        key)
    if not pem then
        return nil, errors.new(kind or "x509", "tls-alpn-01 certificate " ..
            "for " .. errors.printable(tostring(identifier)) .. ": " ..
            tostring(k))
    end
    local der, msg, dkind = core.pem_decode(pem)
    if not der then
        return nil, errors.new(dkind or "x509", "tls-alpn-01 certificate: " ..
            tostring(msg))
    end
    return pem, k, der
end

-- The challenge table hooks receive (hooks/README.md), from { type=,
-- identifier = {type=, value=}, token=, key_authorization=, wildcard= }
-- plus anything else the caller adds (copied). Adds domain, and path and
-- body (http-01), name and value (dns-01), or cert_pem and key
-- (tls-alpn-01, made here unless the caller gave cert_pem).
-- Returns the table, or nil, err when the certificate cannot be made.
function M.derive(t)
    local ch = {}
    for k, v in pairs(t) do ch[k] = v end
    ch.domain = t.identifier and t.identifier.value
    ch.wildcard = t.wildcard and true or false
    if ch.type == "http-01" then
        ch.path = M.http01_path(t.token)
        ch.body = t.key_authorization
    elseif ch.type == "dns-01" then
        ch.name = M.dns01_name(ch.domain)
        ch.value = M.dns01_value(t.key_authorization)
    elseif ch.type == "tls-alpn-01" and not ch.cert_pem then
        local pem, key = M.tls_alpn01_cert(ch.domain, t.key_authorization)
        if not pem then return nil, key end
        ch.cert_pem, ch.key = pem, key
    end
    return ch
end

return M
