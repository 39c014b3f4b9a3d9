-- rfc2136 (dns-01): RFC 2136 dynamic updates signed with TSIG (RFC 8945),
-- for BIND, Knot, PowerDNS and any primary that accepts them.
--
--   LUACME_TSIG_SECRET=base64... luacme issue -d '*.example.com' \
--       --hook rfc2136:server=192.0.2.53,key_name=acme-key.
--   luacme issue -d example.com \
--       --hook rfc2136:server=192.0.2.53,key_file=/etc/luacme/acme.key
--
-- Through `nsupdate` (Debian: bind9-dnsutils), not a native client: TSIG
-- signs the canonical wire form of the message plus its own variables
-- and must verify the server's signed reply, with per-algorithm details
-- and time checks; glibc's libresolv has no TSIG, and nsupdate is BIND's
-- reference implementation, already installed wherever BIND tools are.
-- It is run without a shell; the whole update script, TSIG secret
-- included, goes in on stdin, so the secret is never on a command line.
-- Every value written into the script is checked against a strict
-- character set first, so nothing can inject nsupdate commands.
--
-- "update add" adds one value to the TXT RRset and "update delete NAME
-- TXT VALUE" removes exactly that value, so a name and its wildcard can
-- hold two values at once and other values at the name stay untouched.
-- The zone is the `zone` option, else found through DNS (luacme.dns)
-- from the record's name, asking `resolver` or else the update server.
local dns = require "luacme.dns"
local hooks = require "luacme.hooks"

local M = {
    description = "dns-01: RFC 2136 dynamic update with TSIG (nsupdate)",
    types = { "dns-01" },
    options = dns.with_options({
        { name = "server", required = true,
          help = "primary server accepting updates (IP or host name)" },
        { name = "port", default = "53", help = "its port (53)" },
        { name = "key_file",
          help = "TSIG key file in BIND format (key \"name\" {...};)" },
        { name = "key_name", help = "TSIG key name (secret in the " ..
            "environment variable key_secret_env)" },
        { name = "key_secret_env", default = "LUACME_TSIG_SECRET",
          help = "environment variable holding the base64 TSIG secret " ..
              "(default LUACME_TSIG_SECRET)" },
        { name = "key_alg", default = "hmac-sha256",
          help = "TSIG algorithm (default hmac-sha256)" },
        { name = "zone", help = "zone to update (default: found via DNS)" },
        { name = "ttl", default = "60", help = "TTL of the record (60)" },
        { name = "tcp", default = "no", help = "send updates over TCP" },
        { name = "timeout", default = "30",
          help = "seconds nsupdate may take (30)" },
        { name = "nsupdate", default = "nsupdate",
          help = "the nsupdate program" },
    }),
}

local NAME = "^[%w_][%w_.-]*%.?$"

local function secret(opts)
    local s = os.getenv(opts.key_secret_env)
    if s == nil or s == "" then return nil end
    return s
end

function M.setup(opts)
    if not opts.server:find("^[%w.:%-]+$") then
        return nil, "server must be an IP address or host name"
    end
    local _, perr = dns.check_number(opts, "port", 1, 65535, true)
    if perr then return nil, perr end
    local have_file = opts.key_file ~= nil and opts.key_file ~= ""
    local have_name = opts.key_name ~= nil and opts.key_name ~= ""
    if have_file == have_name then
        return nil, "give key_file or key_name (with the secret in " ..
            opts.key_secret_env .. "), one of them"
    end
    if have_name then
        if not opts.key_name:find(NAME) then
            return nil, "key_name must be a DNS name"
        end
        if not opts.key_alg:find("^[%w-]+$") then
            return nil, "key_alg must be like hmac-sha256"
        end
        if not opts.key_secret_env:find("^[A-Za-z_][A-Za-z0-9_]*$") then
            return nil, "key_secret_env must be an environment variable name"
        end
        local s = secret(opts)
        if not s then
            return nil, "no TSIG secret: set " .. opts.key_secret_env
        end
        if not s:find("^[A-Za-z0-9+/]+=*$") then
            return nil, opts.key_secret_env .. " must hold a base64 secret"
        end
    else
        local f = io.open(opts.key_file, "r")
        if not f then
            return nil, "key_file " .. hooks.printable(opts.key_file, 200) ..
                " cannot be read"
        end
        f:close()
    end
    if opts.zone and opts.zone ~= "" and not opts.zone:find(NAME) then
        return nil, "zone must be a DNS name"
    end
    local _, e = dns.check_number(opts, "ttl", 0, 2147483647, true)
    if not e then _, e = dns.check_number(opts, "timeout", 1, 3600) end
    if e then return nil, e end
    return dns.setup(opts)
end

local function server_label(opts)
    return opts.server .. ":" .. opts.port
end

-- The zone of name: the option, else the SOA found via DNS.
local function zone_of(opts, name)
    if opts.zone and opts.zone ~= "" then return dns.fqdn(opts.zone) end
    local ropts = {}
    for k, v in pairs(opts) do ropts[k] = v end
    if not ropts.resolver or ropts.resolver == "" then
        ropts.resolver = opts.server:find(":") and
            ("[" .. opts.server .. "]:" .. opts.port) or
            (opts.server .. ":" .. opts.port)
    end
    local z, err = dns.zone(name, ropts)
    if not z then return nil, "rfc2136: " .. err end
    return z
end

-- Run one update (the "update ..." line) in zone. Returns true or nil,
-- message naming the provider, the zone and the server.
local function update(opts, zone, line)
    local script = { "server " .. opts.server .. " " .. opts.port,
        "zone " .. zone }
    local argv = { opts.nsupdate, "-t", tostring(math.floor(
        tonumber(opts.timeout))) }
    if opts.key_name and opts.key_name ~= "" then
        script[#script + 1] = "key " .. opts.key_alg .. ":" ..
            opts.key_name .. " " .. secret(opts)
    else
        argv[#argv + 1] = "-k"
        argv[#argv + 1] = opts.key_file
    end
    if hooks.truthy(opts.tcp) then argv[#argv + 1] = "-v" end
    script[#script + 1] = line
    script[#script + 1] = "send"
    script[#script + 1] = ""
    local res, err = hooks.run(argv, { stdin = table.concat(script, "\n"),
        timeout = tonumber(opts.timeout) + 5 })
    if not res then
        err = tostring(err):gsub("^[^:]*: exit status %d+: ", "")
        return nil, "rfc2136: zone " .. zone .. " at " ..
            server_label(opts) .. ": " .. err
    end
    return true
end

local function check_value(v)
    if type(v) ~= "string" or not v:find("^[A-Za-z0-9_-]+$") then
        return nil, "rfc2136: refusing a TXT value that is not base64url"
    end
    return true
end

-- Refusals up to the zone lookup mean nothing was sent; so does the
-- server's answer to the update ("update failed: ..." with an rcode, or a
-- TSIG error), unlike a timeout, after which the update may have landed.
local function add(ch, opts, name, rec)
    local ok, err = check_value(ch.value)
    if not ok then return nil, err, "refused" end
    if not name:find(NAME) then
        return nil, "rfc2136: refusing to write at " ..
            hooks.printable(name, 300) .. " (not a plain DNS name)",
            "refused"
    end
    local zone
    zone, err = zone_of(opts, name)
    if not zone then return nil, err, "refused" end
    rec.zone = zone                             -- where cleanup deletes
    ok, err = update(opts, zone, "update add " .. name .. " " ..
        math.floor(tonumber(opts.ttl)) .. " TXT \"" .. ch.value .. "\"")
    if not ok and (err:find("update failed:", 1, true) or
        err:find("TSIG error", 1, true)) then
        return nil, err, "refused"
    end
    return ok, err
end

local function remove(ch, opts, name, rec)
    if not rec.zone then return true end       -- stopped before sending
    return update(opts, rec.zone, "update delete " .. name ..
        " TXT \"" .. ch.value .. "\"")
end

M.deploy, M.cleanup = dns.provider("rfc2136", add, remove)

M.ready = dns.ready

return M
