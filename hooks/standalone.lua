-- standalone (http-01): luacme answers the CA itself, for boxes without a
-- web server. While an order is validated it listens on address:port
-- (default every address, port 80) and serves GET/HEAD of
-- /.well-known/acme-challenge/<token> for this run's tokens, 404 for
-- everything else (core.http01_responder; limits in core/luacme_limits.h).
--
--   luacme issue -d example.com --hook standalone
--   luacme issue -d example.com --hook standalone:address=192.0.2.10,port=8080
--
-- address: the default "*" listens on every address (one IPv6 socket
-- that takes IPv4 too, or IPv4 only on hosts without IPv6), because the
-- CA connects from outside and the hook is useless otherwise. That is
-- safe to expose: what it serves is the key authorization of the
-- current challenges, which the CA fetches over plain HTTP anyway (no
-- secret), nothing else is answered, requests and connections are
-- bounded, and it listens only from the first deploy to the last
-- cleanup of a run. Give an address (e.g. "0.0.0.0" for IPv4 only, or
-- one interface's address) to narrow it; port 80 is what CAs use
-- (another port only behind a forward, e.g. Pebble's httpPort).
-- Ports below 1024 need root or CAP_NET_BIND_SERVICE; a port taken by a
-- running web server fails with "bind": use the webroot hook there.
--
-- One responder per address:port is shared by every challenge of the
-- run (luacme.responders): started at the first deploy, stopped when the
-- last challenge deployed there is cleaned up. deploy sets ch.responder
-- to it (use it only to read stats(), which stay readable after it was
-- closed).
local core = require "luacme.core"
local responders = require "luacme.responders"

local M = {
    description = "http-01: answer from luacme itself on port 80 " ..
        "(no web server needed)",
    types = { "http-01" },
    options = responders.options("80"),
}

local TOKEN = "^[A-Za-z0-9_-]+$"
local MAX_TOKEN = 256

local servers = responders.registry(core.http01_responder,
    "another web server there? use the webroot hook")

M.setup = responders.setup

function M.deploy(ch, opts)
    if ch.type ~= "http-01" then
        return nil, "standalone solves http-01 only, not " ..
            tostring(ch.type)
    end
    if type(ch.token) ~= "string" or #ch.token > MAX_TOKEN or
        not ch.token:find(TOKEN) then
        return nil, "refusing a token that is not [A-Za-z0-9_-]+"
    end
    local body = ch.body or ch.key_authorization
    if type(body) ~= "string" then
        return nil, "no key authorization to serve"
    end
    local r, err = servers.add(opts, ch.token, body)
    if not r then return nil, err end
    -- For the caller's eyes (tests, diagnostics): the responder serving
    -- this challenge; its stats() stay readable after it was closed.
    ch.responder = r
    return true
end

function M.cleanup(ch, opts)
    servers.remove(opts, ch.token)
    return true
end

return M
