-- A complete dns-01 provider hook, as you would write one for your DNS
-- host: a JSON API where records are created one at a time and deleted
-- by id (the shape of most hosted DNS APIs), a bearer token for auth.
-- hooks/README.md ("Writing a DNS provider") walks through it.
--
--   LUACME_EXAMPLEDNS_TOKEN=... luacme issue -d example.com \
--     -d '*.example.com' --hook \
--     ./examples/dns-provider-example.lua:api=https://dns.example.net/v1
--
-- The API it talks to (tests/dns/api_bridge.py implements it for the
-- tests, in front of a real PowerDNS):
--   GET    <api>/zones                     -> [{"name": "example.com."}, ...]
--   POST   <api>/zones/<zone>/records      {"type": "TXT", "name": ...,
--                                           "content": ..., "ttl": 60}
--                                          -> 201 {"id": "..."}
--   DELETE <api>/zones/<zone>/records/<id> -> 204
--   errors: 4xx/5xx with {"error": "why"}
--
-- What makes it a good provider:
--  * the token comes from the environment, never from an option (options
--    are stored for renewals and show in process lists);
--  * it writes where luacme.dns says (a CNAME on _acme-challenge.<domain>
--    or the challenge_alias option move the record to another zone);
--  * it creates one record per challenge and deletes only the records it
--    created, by id: example.com and *.example.com need two TXT values
--    at the same name at the same time;
--  * ready = dns.ready waits until every authoritative server of the
--    zone serves the value, so the CA never asks one that lags;
--  * errors name the provider and the zone, and cleanup after a failure
--    removes whatever was created before it.
local core = require "luacme.core"
local cjson = require "cjson.safe"
local dns = require "luacme.dns"

local M = {
    description = "dns-01: ExampleDNS record API (token in " ..
        "LUACME_EXAMPLEDNS_TOKEN)",
    types = { "dns-01" },
    -- Our options plus luacme.dns's (resolver, dns_port, dns_wait,
    -- propagation_timeout, challenge_alias).
    options = dns.with_options({
        { name = "api", required = true, help = "the API's base URL" },
        { name = "zone", help = "zone to write in (default: the longest " ..
            "of the account's zones holding the name)" },
        { name = "ttl", default = "60", help = "TTL of the record (60)" },
    }),
}

local TOKEN_ENV = "LUACME_EXAMPLEDNS_TOKEN"

local http         -- one client for the run: connections are reused

function M.setup(opts)
    if not os.getenv(TOKEN_ENV) then return nil, "set " .. TOKEN_ENV end
    if not opts.api:find("^https?://[^/]+") then
        return nil, "api must be an http(s):// URL"
    end
    if not tonumber(opts.ttl) then return nil, "ttl must be a number" end
    return dns.setup(opts)          -- checks luacme.dns's options
end

-- One API call. `what` names the zone (or the step) for messages.
-- Returns the decoded reply (or {}), or nil, message.
local function api(opts, method, path, doc, what)
    if not http then
        local err
        http, err = core.http({ allow_http = true, timeout = 30 })
        if not http then return nil, "exampledns: " .. tostring(err) end
    end
    local status, headers, body = http:request({ method = method,
        url = opts.api:gsub("/+$", "") .. path,
        headers = { authorization = "Bearer " .. os.getenv(TOKEN_ENV),
            ["content-type"] = "application/json" },
        body = doc and cjson.encode(doc) or nil })
    if not status then
        return nil, "exampledns: " .. what .. ": " .. tostring(headers)
    end
    local reply = cjson.decode(body or "")
    if status >= 300 then
        local why = type(reply) == "table" and type(reply.error) == "string"
            and reply.error or "no reason given"
        return nil, "exampledns: " .. what .. ": HTTP " .. status .. ": " ..
            why:gsub("%c", " ")
    end
    return reply or {}
end

-- The zone holding name: the option, else the longest account zone that
-- is a suffix of it.
local function zone_for(opts, name)
    if opts.zone then return dns.fqdn(opts.zone) end
    local list, err = api(opts, "GET", "/zones", nil, "listing zones")
    if not list then return nil, err end
    local best
    for _, z in ipairs(list) do
        local zn = type(z) == "table" and type(z.name) == "string" and
            dns.fqdn(z.name)
        if zn and (name == zn or name:sub(-#zn - 1) == "." .. zn) and
            (not best or #zn > #best) then
            best = zn
        end
    end
    if not best then
        return nil, "exampledns: none of the account's zones holds " .. name
    end
    return best
end

-- Create the record; rec (kept by luacme.dns until cleanup) remembers
-- the zone and the id to delete it by.
local function add(ch, opts, name, rec)
    local zone, err = zone_for(opts, name)
    if not zone then return nil, err end
    local reply
    reply, err = api(opts, "POST", "/zones/" .. zone .. "/records",
        { type = "TXT", name = name, content = ch.value,
          ttl = tonumber(opts.ttl) }, "zone " .. zone)
    if not reply then return nil, err end
    if type(reply.id) ~= "string" and type(reply.id) ~= "number" then
        return nil, "exampledns: zone " .. zone .. ": reply without an id"
    end
    rec.zone, rec.id = zone, tostring(reply.id)
    return true
end

-- Delete exactly the record add created. remove runs for a deploy that
-- failed too: without an id (no zone, the POST failed) there is nothing
-- we can delete.
local function remove(_, opts, _, rec)
    if not rec.id then return true end
    return api(opts, "DELETE", "/zones/" .. rec.zone .. "/records/" ..
        rec.id, nil, "zone " .. rec.zone)
end

-- deploy and cleanup around them: dns.target (follows alias mode), the
-- bookkeeping of what this run created, dns.deployed/forget for ready.
M.deploy, M.cleanup = dns.provider("exampledns", add, remove)

M.ready = dns.ready

return M
