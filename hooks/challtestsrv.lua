-- challtestsrv (http-01, dns-01): publishes responses through
-- pebble-challtestsrv's management API, for tests and the quick start:
--   http-01  POST /add-http01 {"token","content"}, /del-http01 {"token"}
--   dns-01   POST /set-txt {"host","value"}, /clear-txt {"host"}
-- /clear-txt drops every value of a host, and a name and its wildcard
-- share one host (_acme-challenge.<domain>.), so the TXT record is
-- cleared only when the last value deployed at that host is cleaned up
-- (a reference count per server and host, kept in this module).
local core = require "luacme.core"
local sched = require "luacme.sched"
local cjson = require "cjson.safe"

local M = {
    description = "http-01, dns-01: pebble-challtestsrv's management " ..
        "API (tests, quick start)",
    types = { "http-01", "dns-01" },
    options = {
        { name = "url", default = "http://127.0.0.1:8055",
          help = "management API base URL (default http://127.0.0.1:8055)" },
    },
}

local clients = {}
local txt_refs = {}

function M.setup(opts)
    if not opts.url:find("^https?://[^/]+$") and
        not opts.url:find("^https?://[^/]+/$") then
        return nil, "url must be http(s)://HOST:PORT"
    end
    return true
end

local function post(opts, path, doc)
    local base = opts.url:gsub("/$", "")
    local c = clients[base]
    if not c then
        local err
        c, err = core.http({ allow_http = true, timeout = 10 })
        if not c then return nil, err end
        clients[base] = c
    end
    local status, msg = sched.request(c, { method = "POST",
        url = base .. path, body = cjson.encode(doc),
        headers = { ["content-type"] = "application/json" } })
    if not status then
        return nil, base .. path .. ": " .. tostring(msg)
    end
    if status ~= 200 then
        return nil, base .. path .. ": HTTP " .. status
    end
    return true
end

local function host_key(opts, ch)
    return opts.url:gsub("/$", "") .. " " .. ch.name
end

function M.deploy(ch, opts)
    if ch.type == "http-01" then
        return post(opts, "/add-http01",
            { token = ch.token, content = ch.key_authorization })
    elseif ch.type == "dns-01" then
        local ok, err = post(opts, "/set-txt",
            { host = ch.name, value = ch.value })
        if not ok then return nil, err end
        local k = host_key(opts, ch)
        txt_refs[k] = (txt_refs[k] or 0) + 1
        return true
    end
    return nil, "challtestsrv does not solve " .. tostring(ch.type)
end

function M.cleanup(ch, opts)
    if ch.type == "http-01" then
        return post(opts, "/del-http01", { token = ch.token })
    elseif ch.type == "dns-01" then
        local k = host_key(opts, ch)
        local n = txt_refs[k]
        if not n then return true end               -- never deployed
        if n > 1 then
            txt_refs[k] = n - 1
            return true
        end
        txt_refs[k] = nil
        return post(opts, "/clear-txt", { host = ch.name })
    end
    return true
end

return M
