-- powerdns (dns-01): TXT records through the PowerDNS Authoritative
-- HTTP API (https://doc.powerdns.com/authoritative/http-api/).
--
--   LUACME_PDNS_API_KEY=... luacme issue -d example.com -d '*.example.com' \
--       --hook powerdns:api_url=http://127.0.0.1:8081
--
-- The API replaces a whole RRset at once, and a name and its wildcard
-- need two values at one name at the same time, so deploy reads the
-- zone's TXT RRset at the name and PATCHes it back (changetype REPLACE)
-- with the existing values plus ours; cleanup REPLACEs it without ours,
-- or DELETEs it when ours was the last. Only values this run added are
-- removed. The zone is the `zone` option, else the longest suffix of the
-- record's name the API knows (asked from the name upwards). The record
-- goes where luacme.dns says (CNAME alias mode, challenge_alias); ready()
-- waits until every authoritative server of the zone serves it.
--
-- The API key comes from the environment variable named by api_key_env
-- (default LUACME_PDNS_API_KEY; hidden from programs luacme starts); the
-- api_key option works too but ends up in stored specs and process lists.
local core = require "luacme.core"
local sched = require "luacme.sched"
local cjson = require "cjson.safe"
local dns = require "luacme.dns"

local M = {
    description = "dns-01: PowerDNS Authoritative HTTP API (key in " ..
        "LUACME_PDNS_API_KEY)",
    types = { "dns-01" },
    options = dns.with_options({
        { name = "api_url", required = true,
          help = "API base URL, e.g. http://127.0.0.1:8081" },
        { name = "api_key_env", default = "LUACME_PDNS_API_KEY",
          help = "environment variable holding the API key " ..
              "(default LUACME_PDNS_API_KEY)" },
        { name = "api_key",
          help = "the API key itself (prefer api_key_env: options are " ..
              "stored and visible)" },
        { name = "server_id", default = "localhost",
          help = "PowerDNS server id (default localhost)" },
        { name = "zone",
          help = "zone to write in (default: found through the API)" },
        { name = "ttl", default = "60", help = "TTL of a new RRset (60)" },
        { name = "ca_file", help = "CA bundle for an https API" },
        { name = "timeout", default = "30",
          help = "seconds per API request (30)" },
    }),
}

local clients = {}

local function key_of(opts)
    if opts.api_key and opts.api_key ~= "" then return opts.api_key end
    local v = os.getenv(opts.api_key_env)
    if v and v ~= "" then return v end
    return nil
end

function M.setup(opts)
    if not opts.api_url:find("^https?://[^/]+") then
        return nil, "api_url must be http(s)://HOST[:PORT]"
    end
    if not opts.api_key_env:find("^[A-Za-z_][A-Za-z0-9_]*$") then
        return nil, "api_key_env must be an environment variable name"
    end
    if not key_of(opts) then
        return nil, "no API key: set " .. opts.api_key_env
    end
    local _, e = dns.check_number(opts, "ttl", 1, 2147483647, true)
    if not e then _, e = dns.check_number(opts, "timeout", 1, 3600) end
    if e then return nil, e end
    return dns.setup(opts)
end

local function base(opts)
    return opts.api_url:gsub("/+$", "") .. "/api/v1/servers/" ..
        opts.server_id
end

local function client(opts)
    local k = opts.api_url .. " " .. (opts.ca_file or "")
    if not clients[k] then
        local c, err = core.http({ allow_http = true, timeout =
            tonumber(opts.timeout), ca_file = opts.ca_file,
            max_body = 64 * 1024 * 1024 })
        if not c then return nil, err end
        clients[k] = c
    end
    return clients[k]
end

-- The API's reason for an error reply: its JSON "error", else the text.
local function reason(body)
    local doc = cjson.decode(body or "")
    local r = type(doc) == "table" and type(doc.error) == "string" and
        doc.error or body or ""
    r = r:gsub("[%c]+", " "):gsub("^%s+", ""):gsub("%s+$", "")
    if #r > 300 then r = r:sub(1, 300) .. "..." end
    return r
end

-- One request. Returns status, decoded body (or {}), or nil, message.
local function api(opts, method, path, doc)
    local c, err = client(opts)
    if not c then return nil, "powerdns: " .. tostring(err) end
    local status, headers, body = sched.request(c, { method = method,
        url = base(opts) .. path,
        headers = { ["x-api-key"] = key_of(opts) or "",
            ["content-type"] = "application/json",
            accept = "application/json" },
        body = doc and cjson.encode(doc) or nil })
    if not status then
        return nil, "powerdns: " .. method .. " " .. opts.api_url .. ": " ..
            tostring(headers)
    end
    if status >= 300 then
        local r = reason(body)
        local hint = ""
        if status == 401 or status == 403 then
            hint = " (check the API key in " ..
                (opts.api_key and "api_key" or opts.api_key_env) .. ")"
        end
        return status, "HTTP " .. status .. (r ~= "" and (": " .. r) or "")
            .. hint
    end
    return status, cjson.decode(body or "") or {}
end

local function zone_path(id)
    return "/zones/" .. id
end

-- The zone document holding name: opts.zone, else the longest suffix
-- the API knows. Returns doc, or nil, message naming provider and zone.
local function find_zone(opts, name)
    local cands = {}
    if opts.zone and opts.zone ~= "" then
        cands[1] = dns.fqdn(opts.zone)
    else
        local n = name
        while n and n:find("%.", 1) and n ~= "." do
            cands[#cands + 1] = n
            n = n:match("^[^.]+%.(.+)$")
        end
    end
    for _, z in ipairs(cands) do
        local status, doc = api(opts, "GET", zone_path(z))
        if not status then return nil, doc end
        if status == 200 and type(doc) == "table" then return doc end
        if status ~= 404 and status ~= 422 then
            return nil, "powerdns: " .. ((opts.zone and opts.zone ~= "")
                and ("zone " .. z) or ("finding the zone of " .. name)) ..
                " at " .. opts.api_url .. ": " .. doc
        end
    end
    if opts.zone and opts.zone ~= "" then
        return nil, "powerdns: zone " .. cands[1] .. " not found at " ..
            opts.api_url .. " (server " .. opts.server_id .. ")"
    end
    return nil, "powerdns: no zone at " .. opts.api_url .. " (server " ..
        opts.server_id .. ") holds " .. name
end

-- The TXT RRset at name in a zone document, or nil.
local function rrset_of(zone, name)
    for _, rr in ipairs(type(zone.rrsets) == "table" and zone.rrsets or {}) do
        if type(rr) == "table" and rr.type == "TXT" and
            type(rr.name) == "string" and dns.fqdn(rr.name) == name then
            return rr
        end
    end
    return nil
end

local function content_of(value)
    return '"' .. value .. '"'
end

-- Write the RRset at name with records (a list of contents): REPLACE, or
-- DELETE when empty.
local function patch(opts, zone, name, contents, ttl)
    local records = {}
    for i, c in ipairs(contents) do
        records[i] = { content = c, disabled = false }
    end
    local rrset = { name = name, type = "TXT", changetype = "REPLACE",
        ttl = ttl, records = records }
    if #records == 0 then
        rrset = { name = name, type = "TXT", changetype = "DELETE" }
    end
    local status, err = api(opts, "PATCH", zone_path(zone.id or zone.name),
        { rrsets = { rrset } })
    if not status then return nil, err end
    if status >= 300 then
        return nil, "powerdns: zone " .. tostring(zone.name) .. ": " .. err,
            "refused"
    end
    return true
end

-- Read the RRset, write it back with ours added. A zone that cannot be
-- found means nothing was written.
local function add(ch, opts, name)
    local zone, err = find_zone(opts, name)
    if not zone then return nil, err, "refused" end
    local ours = content_of(ch.value)
    local rr = rrset_of(zone, name)
    local contents = {}
    for _, r in ipairs(rr and rr.records or {}) do
        if type(r) == "table" and type(r.content) == "string" and
            r.content ~= ours then
            contents[#contents + 1] = r.content
        end
    end
    contents[#contents + 1] = ours
    return patch(opts, zone, name, contents,
        rr and tonumber(rr.ttl) or tonumber(opts.ttl))
end

-- Read the RRset again (others may have changed it meanwhile), write it
-- back without ours, if ours is still there.
local function remove(ch, opts, name)
    local zone, err = find_zone(opts, name)
    if not zone then return nil, err end
    local ours = content_of(ch.value)
    local rr = rrset_of(zone, name)
    local contents, found = {}, false
    for _, r in ipairs(rr and rr.records or {}) do
        if type(r) == "table" and type(r.content) == "string" then
            if r.content == ours then found = true
            else contents[#contents + 1] = r.content end
        end
    end
    if not found then return true end
    return patch(opts, zone, name, contents, tonumber(rr.ttl))
end

M.deploy, M.cleanup = dns.provider("powerdns", add, remove)

M.ready = dns.ready

return M
