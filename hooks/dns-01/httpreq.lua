-- httpreq (dns-01): lego's "httpreq" protocol, for in-house DNS APIs:
--   POST <endpoint>/present  {"fqdn": "_acme-challenge.example.com.",
--                             "value": "<TXT value>"}
--   POST <endpoint>/cleanup  (the same body)
-- as JSON; any 2xx reply is success. Basic auth when the environment
-- variables named by username_env / password_env (default
-- LUACME_HTTPREQ_USERNAME / LUACME_HTTPREQ_PASSWORD) are set.
--
--   LUACME_HTTPREQ_USERNAME=acme LUACME_HTTPREQ_PASSWORD=... \
--       luacme issue -d '*.example.com' \
--       --hook httpreq:endpoint=https://dns.internal.example/acme
--
-- The endpoint must add and remove only the value it is given (a name
-- and its wildcard have two values at one name at once). The fqdn is
-- where luacme.dns says the record goes (CNAME alias mode,
-- challenge_alias), with the trailing dot as lego sends it. lego's RAW
-- mode (domain/token/keyAuth) is not offered.
local core = require "luacme.core"
local sched = require "luacme.sched"
local cjson = require "cjson.safe"
local dns = require "luacme.dns"
local hooks = require "luacme.hooks"

local M = {
    description = "dns-01: lego's httpreq protocol (POST /present, " ..
        "/cleanup)",
    types = { "dns-01" },
    options = dns.with_options({
        { name = "endpoint", required = true,
          help = "base URL; /present and /cleanup are appended" },
        { name = "username_env", default = "LUACME_HTTPREQ_USERNAME",
          help = "environment variable with the basic auth user" },
        { name = "password_env", default = "LUACME_HTTPREQ_PASSWORD",
          help = "environment variable with the basic auth password" },
        { name = "ca_file", help = "CA bundle for an https endpoint" },
        { name = "timeout", default = "30",
          help = "seconds per request (30)" },
    }),
}

local clients = {}

function M.setup(opts)
    if not opts.endpoint:find("^https?://[^/]+") then
        return nil, "endpoint must be an http(s):// URL"
    end
    for _, k in ipairs({ "username_env", "password_env" }) do
        if not opts[k]:find("^[A-Za-z_][A-Za-z0-9_]*$") then
            return nil, k .. " must be an environment variable name"
        end
    end
    local user, pass = os.getenv(opts.username_env),
        os.getenv(opts.password_env)
    if (user and user ~= "") ~= (pass and pass ~= "") then
        return nil, "set both " .. opts.username_env .. " and " ..
            opts.password_env .. ", or neither"
    end
    if user and user:find(":", 1, true) then
        return nil, opts.username_env .. " must not contain ':'"
    end
    local _, e = dns.check_number(opts, "timeout", 1, 3600)
    if e then return nil, e end
    return dns.setup(opts)
end

-- Standard base64 with padding (basic auth), from core's base64url.
local function b64(s)
    local u = core.b64url_encode(s):gsub("-", "+"):gsub("_", "/")
    return u .. string.rep("=", (4 - #u % 4) % 4)
end

local function post(opts, what, fqdn, value)
    local url = opts.endpoint:gsub("/+$", "") .. "/" .. what
    local c = clients[opts.endpoint]
    if not c then
        local err
        c, err = core.http({ allow_http = true, ca_file = opts.ca_file,
            timeout = tonumber(opts.timeout) })
        if not c then return nil, "httpreq: " .. tostring(err) end
        clients[opts.endpoint] = c
    end
    local headers = { ["content-type"] = "application/json",
        accept = "application/json" }
    local user = os.getenv(opts.username_env)
    if user and user ~= "" then
        headers.authorization = "Basic " .. b64(user .. ":" ..
            (os.getenv(opts.password_env) or ""))
    end
    local status, h, body = sched.request(c, { method = "POST", url = url,
        headers = headers, body = cjson.encode({ fqdn = fqdn,
            value = value }) })
    if not status then
        return nil, "httpreq: " .. url .. " (" .. fqdn .. "): " ..
            tostring(h)
    end
    if status < 200 or status >= 300 then
        local why = hooks.printable(body, 300)
        local hint = ""
        if status == 401 or status == 403 then
            hint = " (check " .. opts.username_env .. " and " ..
                opts.password_env .. ")"
        end
        return nil, "httpreq: " .. url .. " (" .. fqdn .. "): HTTP " ..
            status .. (why ~= "" and (": " .. why) or "") .. hint, "refused"
    end
    return true
end

M.deploy, M.cleanup = dns.provider("httpreq",
    function(ch, opts, fqdn)
        return post(opts, "present", fqdn, ch.value)
    end,
    function(ch, opts, fqdn)
        return post(opts, "cleanup", fqdn, ch.value)
    end)

M.ready = dns.ready

return M
