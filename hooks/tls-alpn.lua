-- tls-alpn (tls-alpn-01, RFC 8737 / RFC 8738): luacme answers the CA's
-- TLS handshake itself, for hosts whose port 443 is free (or forwarded to
-- luacme) while an order is validated. Only handshakes offering ALPN
-- "acme-tls/1" complete; the certificate is chosen by SNI (an IP
-- identifier by its reverse name, with or without the trailing dot);
-- unknown or missing SNI and any other protocol are refused, and no
-- application data is ever sent (core.tls_alpn_responder).
--
--   luacme issue -d example.com --hook tls-alpn
--   luacme issue -d example.com --hook tls-alpn:address=192.0.2.10,port=8443
--
-- address: the default "*" listens on every address (one IPv6 socket
-- that takes IPv4 too, or IPv4 only on hosts without IPv6), since the CA
-- connects from outside. What it presents is a throw-away self-signed
-- certificate per challenge, to clients that ask for acme-tls/1 only,
-- from the first deploy to the last cleanup of a run. Give an address to
-- narrow it; port 443 is what CAs use (another port only behind a
-- forward, e.g. Pebble's tlsPort). Ports below 1024 need root or
-- CAP_NET_BIND_SERVICE; a port held by a running TLS server fails with
-- "bind".
--
-- The certificate and key come from ch.cert_pem (or ch.cert) and ch.key
-- when the caller made them, else they are made here from
-- ch.key_authorization. One responder per address:port is shared by
-- every challenge of the run (luacme.responders), started at the first
-- deploy and stopped when the last challenge deployed there is cleaned
-- up. deploy sets ch.responder to it (use it only to read stats(), which
-- stay readable after it was closed).
local core = require "luacme.core"
local responders = require "luacme.responders"

local M = {
    description = "tls-alpn-01: answer the CA's TLS handshake from " ..
        "luacme itself on port 443",
    types = { "tls-alpn-01" },
    options = responders.options("443"),
}

local servers = responders.registry(core.tls_alpn_responder,
    "a TLS server running there?")

M.setup = responders.setup

-- The identifier's value: hooks get { type =, value = } and domain;
-- order.issue's items carry the value itself.
local function identifier_of(ch)
    local id = ch.domain
    if id == nil and type(ch.identifier) == "table" then
        id = ch.identifier.value
    elseif id == nil then
        id = ch.identifier
    end
    if type(id) ~= "string" or id == "" or #id > 255 or
        not id:find("^[%w.:-]+$") then
        return nil
    end
    -- One spelling per name, so cleanup finds what deploy added.
    return (id:lower():gsub("%.$", ""))
end

function M.deploy(ch, opts)
    if ch.type ~= "tls-alpn-01" then
        return nil, "tls-alpn solves tls-alpn-01 only, not " ..
            tostring(ch.type)
    end
    local id = identifier_of(ch)
    if not id then
        return nil, "refusing an identifier that is not a DNS name or " ..
            "an IP address"
    end
    local pem, key = ch.cert_pem or ch.cert, ch.key
    if type(pem) ~= "string" or key == nil then
        if type(ch.key_authorization) ~= "string" then
            return nil, "no certificate and no key authorization"
        end
        local kind
        pem, key, kind = core.tls_alpn01_cert(id, ch.key_authorization)
        if not pem then
            return nil, "certificate for " .. id .. ": " .. tostring(key) ..
                " (" .. tostring(kind) .. ")"
        end
    end
    local r, err = servers.add(opts, id, pem, key)
    if not r then return nil, err end
    ch.responder = r
    return true
end

function M.cleanup(ch, opts)
    servers.remove(opts, identifier_of(ch))
    return true
end

return M
