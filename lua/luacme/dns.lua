-- DNS for dns-01 providers: where to write the TXT record (following a
-- CNAME on _acme-challenge.<domain>, acme.sh's "DNS alias mode", or an
-- explicit challenge_alias), which zone holds it, its authoritative
-- servers, and whether every one of them serves the value yet.
--
--   local dns = require "luacme.dns"
--   local fqdn = dns.target(ch, opts)        -- where the provider writes
--   local ok, detail = dns.check(fqdn, ch.value, opts)
--   hook.ready = dns.ready                   -- true once propagated
--   hook.deploy, hook.cleanup = dns.provider("name", add, remove)
--
-- Options (strings, as hook options arrive; providers add dns.OPTIONS to
-- their declared options and call dns.setup(opts) from their setup):
--   resolver             IP[:PORT] for the SOA/NS/CNAME/address lookups
--                        (default: the servers of /etc/resolv.conf)
--   dns_port             port of the zone's authoritative servers (53)
--   dns_wait             seconds: do not check, just wait that long after
--                        deploying (for hidden primaries whose public
--                        servers cannot be asked)
--   propagation_timeout  seconds after deploying when ready() gives up
--                        waiting for every authoritative server to serve
--                        the value (default 120)
--   challenge_alias      write at _acme-challenge.<alias>. instead of
--                        following CNAMEs (a value starting with "_" is
--                        taken as the whole name)
--
-- Queries go through core.dns_query (glibc libresolv). Names handed back
-- are lower case with the trailing dot.
local core = require "luacme.core"
local errors = require "luacme.errors"
local sched = require "luacme.sched"
local util = require "luacme.util"

local M = {}

M.OPTIONS = {
    { name = "resolver",
      help = "IP[:PORT] of the resolver for zone, NS and CNAME lookups " ..
          "(default: /etc/resolv.conf)" },
    { name = "dns_port",
      help = "port the zone's authoritative servers answer on (default 53)" },
    { name = "dns_wait",
      help = "seconds to wait after deploying instead of checking the " ..
          "authoritative servers (hidden primaries)" },
    { name = "propagation_timeout", default = "120",
      help = "seconds after deploying to give up waiting for every " ..
          "authoritative server to serve the value (default 120)" },
    { name = "challenge_alias",
      help = "write the record at _acme-challenge.<alias> (a CNAME from " ..
          "_acme-challenge.<domain> points there)" },
}

-- A provider's own option list followed by OPTIONS (fresh tables), for
-- its `options` field.
function M.with_options(list)
    local out = {}
    for _, o in ipairs(list) do out[#out + 1] = o end
    for _, o in ipairs(M.OPTIONS) do
        local c = {}
        for k, v in pairs(o) do c[k] = v end
        out[#out + 1] = c
    end
    return out
end

-- Most CNAMEs followed from _acme-challenge.<domain>.
M.MAX_CNAMES = 8

-- Seconds per DNS query (core.dns_query's timeout).
M.QUERY_TIMEOUT = 5

-- Polling of wait(): first interval and cap, in seconds.
M.POLL_FIRST, M.POLL_CAP = 0.5, 5

-- Injected for tests: a clock in seconds and a sleep.
M.now = core.monotonic
M.sleep = sched.sleep

-- Lower case, one trailing dot.
function M.fqdn(name)
    return (name:lower():gsub("%.+$", "")) .. "."
end

local function parent(name)
    return name:match("^[^.]+%.(.+)$")
end

local function under(name, zone)
    return zone == "." or name == zone or
        name:sub(-(#zone + 1)) == "." .. zone
end

-- Option k of a provider as a number in [min, max] (whole when integer):
-- n, or nil, "k must be ...". Providers check their ttl, timeout and
-- port options with it, so the messages read alike.
function M.check_number(opts, k, min, max, integer)
    local n = util.number(opts[k], min, max, integer)
    if not n then
        return nil, k .. " must be a " .. (integer and "whole " or "") ..
            "number from " .. min .. " to " .. max
    end
    return n
end

-- The same for an option that may be absent (nil, no message then).
local function number_opt(opts, k, min, max, integer)
    if opts[k] == nil or opts[k] == "" then return nil end
    return M.check_number(opts, k, min, max, integer)
end

local function server_ok(s)
    return s:find("^%d+%.%d+%.%d+%.%d+$") or
        s:find("^%d+%.%d+%.%d+%.%d+:%d+$") or
        s:find("^[%x:]+$") or s:find("^%[[%x:]+%]:%d+$")
end

-- Check the options above. Returns true or nil, message.
function M.setup(opts)
    local _, err
    if opts.resolver ~= nil and opts.resolver ~= "" and
        not server_ok(opts.resolver) then
        return nil, "resolver must be IP, IP:PORT or [IPv6]:PORT"
    end
    _, err = number_opt(opts, "dns_port", 1, 65535, true)
    if err then return nil, err end
    _, err = number_opt(opts, "dns_wait", 0, 86400)
    if err then return nil, err end
    _, err = number_opt(opts, "propagation_timeout", 0, 86400)
    if err then return nil, err end
    local a = opts.challenge_alias
    if a ~= nil and a ~= "" and
        not a:find("^[%w_][%w_.-]*%.?$") then
        return nil, "challenge_alias must be a domain name"
    end
    return true
end

local function resolver(opts)
    local r = opts and opts.resolver
    if r == "" then r = nil end
    return r
end

local function where(server)
    return server or "the system resolver"
end

-- core.dns_query with our timeout; returns the result or nil, message.
-- In a task (luacme.sched) the other tasks run while it waits.
function M.query(name, qtype, server, recurse)
    local r, err = sched.dns_query(name, qtype, { server = server,
        timeout = M.QUERY_TIMEOUT, recurse = recurse ~= false })
    if not r then return nil, err end
    return r
end

-- Is name (an fqdn) a host name: labels of letters, digits, "-" and
-- "_" (for _acme-challenge), 1..63 bytes each, 253 in all? A CNAME
-- target comes from whoever answers DNS and goes on to provider APIs,
-- nsupdate scripts and acme.sh shell functions; libresolv hands other
-- bytes over escaped ("\$", "\032"), which fail here too.
function M.is_host_name(name)
    if type(name) ~= "string" or #name > 254 or
        not name:find("^[%w_%-][%w_.%-]*%.$") then
        return false
    end
    for label in name:gmatch("([^.]*)%.") do
        if #label == 0 or #label > 63 then return false end
    end
    return true
end

-- Follow CNAMEs from name (at most MAX_CNAMES). Returns the final name
-- (fqdn) and the list of names passed, or nil, message. Every target
-- must be a host name (M.is_host_name) before anyone sees it.
function M.follow_cname(name, opts)
    name = M.fqdn(name)
    local chain = { name }
    for _ = 1, M.MAX_CNAMES do
        local r, err = M.query(name, "CNAME", resolver(opts))
        if not r then
            return nil, "CNAME lookup of " .. name .. " at " ..
                where(resolver(opts)) .. ": " .. err
        end
        local target
        for _, rec in ipairs(r) do
            if rec.type == "CNAME" and M.fqdn(rec.name) == name then
                target = M.fqdn(rec.data)
            end
        end
        if not target then return name, chain end
        if not M.is_host_name(target) then
            return nil, "the CNAME of " .. name .. " points to " ..
                errors.printable(target) .. ", which is not a host name"
        end
        for _, seen in ipairs(chain) do
            if seen == target then
                return nil, "CNAME loop at " .. target
            end
        end
        name = target
        chain[#chain + 1] = name
    end
    return nil, "more than " .. M.MAX_CNAMES .. " CNAMEs from " .. chain[1]
end

local targets = {}

-- The name the provider must write ch's TXT value at: the
-- challenge_alias when given, else _acme-challenge.<domain> after its
-- CNAMEs. Returns the fqdn, or nil, message. Remembered per name for the
-- run, so deploy and cleanup agree.
function M.target(ch, opts)
    opts = opts or {}
    local alias = opts.challenge_alias
    if alias ~= nil and alias ~= "" then
        if alias:sub(1, 1) == "_" then return M.fqdn(alias) end
        return M.fqdn("_acme-challenge." .. alias)
    end
    local key = M.fqdn(ch.name) .. " " .. (resolver(opts) or "")
    if targets[key] then return targets[key] end
    local name, err = M.follow_cname(ch.name, opts)
    if not name then return nil, err end
    targets[key] = name
    return name
end

-- The zone (fqdn) holding name: walk up until an SOA answers, using the
-- SOA an NXDOMAIN or NODATA answer carries as a shortcut. Returns the
-- zone, or nil, message.
function M.zone(name, opts)
    name = M.fqdn(name)
    local n = name
    while n do
        local r, err = M.query(n, "SOA", resolver(opts))
        if not r then
            return nil, "cannot find the zone of " .. name .. ": " .. err
        end
        for _, rec in ipairs(r) do
            if rec.type == "SOA" and M.fqdn(rec.name) == n then
                return n
            end
        end
        for _, rec in ipairs(r.authority) do
            if rec.type == "SOA" and under(n, M.fqdn(rec.name)) then
                return M.fqdn(rec.name)
            end
        end
        n = parent(n)
    end
    return nil, "no zone found for " .. name
end

local function addresses(host, r, opts)
    local addrs = {}
    for _, rec in ipairs(r and r.additional or {}) do
        if (rec.type == "A" or rec.type == "AAAA") and
            M.fqdn(rec.name) == host then
            addrs[#addrs + 1] = rec.data
        end
    end
    if #addrs > 0 then return addrs end
    for _, ty in ipairs({ "A", "AAAA" }) do
        local a, err = M.query(host, ty, resolver(opts))
        if not a and ty == "A" then
            return nil, "address of name server " .. host .. ": " .. err
        end
        for _, rec in ipairs(a or {}) do
            if rec.type == ty then addrs[#addrs + 1] = rec.data end
        end
    end
    if #addrs == 0 then
        return nil, "name server " .. host .. " has no address"
    end
    return addrs
end

-- The authoritative servers of zone: a list of { name=, addrs={...} }
-- from its NS records, or nil, message.
function M.nameservers(zone, opts)
    zone = M.fqdn(zone)
    local r, err = M.query(zone, "NS", resolver(opts))
    if not r then
        return nil, "NS lookup of " .. zone .. " at " ..
            where(resolver(opts)) .. ": " .. err
    end
    local list = {}
    for _, rec in ipairs(r) do
        if rec.type == "NS" and M.fqdn(rec.name) == zone then
            local host = M.fqdn(rec.data)
            local addrs, e = addresses(host, r, opts)
            if not addrs then return nil, e end
            list[#list + 1] = { name = host, addrs = addrs }
        end
    end
    if #list == 0 then return nil, "zone " .. zone .. " has no NS records" end
    table.sort(list, function(a, b) return a.name < b.name end)
    return list
end

local function server_addr(addr, port)
    if addr:find(":", 1, true) then
        return "[" .. addr .. "]:" .. port
    end
    return addr .. ":" .. port
end

-- Does every authoritative server of name's zone serve the TXT value at
-- name? Returns true, or false and a detail naming a server that does
-- not (or the lookup that failed), and "unworkable" when there is no
-- zone or no server to ask at all.
function M.check(name, value, opts)
    opts = opts or {}
    name = M.fqdn(name)
    local zone, err = M.zone(name, opts)
    -- No zone, or a zone without servers to ask: waiting cannot help,
    -- so the third value says so ("unworkable").
    if not zone then
        -- No SOA anywhere up the tree, or a resolver refusing to say:
        -- neither changes while we wait. A timeout may.
        return false, err, (err:find("^no zone found") or
            err:find("REFUSED")) and "unworkable" or nil
    end
    local nss
    nss, err = M.nameservers(zone, opts)
    if not nss then
        return false, err, (err:find("has no NS records$") or
            err:find("has no address$")) and "unworkable" or nil
    end
    local port = tonumber(opts.dns_port) or 53
    for _, ns in ipairs(nss) do
        for _, addr in ipairs(ns.addrs) do
            local label = ns.name .. " (" .. server_addr(addr, port) .. ")"
            local r, e = M.query(name, "TXT", server_addr(addr, port), false)
            if not r then return false, label .. ": " .. e end
            if not r.aa then
                return false, label .. " is not authoritative for " .. zone
            end
            local found, others = false, 0
            for _, rec in ipairs(r) do
                if rec.type == "TXT" then
                    if rec.data == value then found = true
                    else others = others + 1 end
                end
            end
            if not found then
                local state = r.rcode ~= "NOERROR" and r.rcode or
                    (others > 0 and (others .. " other value" ..
                        (others > 1 and "s" or "")) or "no TXT record")
                return false, label .. " does not serve TXT \"" .. value ..
                    "\" at " .. name .. " yet (" .. state .. ")"
            end
        end
    end
    return true
end

-- When each challenge was deployed (providers call deployed(ch)); ready
-- counts dns_wait and propagation_timeout from there (or from its first
-- call for a challenge it never saw deployed).
local started = {}

local function key(ch)
    return M.fqdn(ch.name) .. " " .. tostring(ch.value)
end

-- Note that ch's record was just written.
function M.deployed(ch)
    started[key(ch)] = M.now()
end

-- Forget ch (from cleanup), so a later order starts afresh.
function M.forget(ch)
    started[key(ch)] = nil
end

-- deploy and cleanup for a provider that adds one TXT value and removes
-- exactly that value, from the two steps that differ between providers:
--   add(ch, opts, name, rec)     writes ch.value at name (M.target's)
--   remove(ch, opts, name, rec)  removes it again
-- Each returns true, or nil and a message naming label and the zone.
-- rec is a table kept from deploy to cleanup, where add stores what
-- remove needs (a zone, a record id). It is kept before add runs, since
-- a write that timed out or was interrupted may still have landed, and
-- cleanup (which runs after a failed deploy too) then calls remove; add
-- returns nil, message, "refused" when it is sure nothing was written
-- (the server said no, or it stopped before sending). cleanup of a
-- challenge never deployed is a quiet true. deployed/forget are called
-- for the provider.
function M.provider(label, add, remove)
    -- Deployed by this run: [name .. " " .. value] = rec.
    local recs = {}

    local function deploy(ch, opts)
        local name, err = M.target(ch, opts)
        if not name then return nil, label .. ": " .. err end
        local k = name .. " " .. tostring(ch.value)
        local rec = {}
        recs[k] = rec
        local ok, how
        -- Challenges run at once (luacme.sched); a provider's change
        -- of one name (read the RRset, write it back) must not overlap
        -- another's of the same name, as a wildcard's and its base's do.
        ok, err, how = sched.serial(label .. " " .. name, add, ch, opts,
            name, rec)
        if not ok then
            if how == "refused" then recs[k] = nil end
            return nil, err
        end
        M.deployed(ch)
        return true
    end

    local function cleanup(ch, opts)
        local name = M.target(ch, opts)
        local k = name and (name .. " " .. tostring(ch.value))
        local rec = k and recs[k]
        if not rec then return true end             -- never deployed
        local ok, err = sched.serial(label .. " " .. name, remove, ch,
            opts, name, rec)
        if not ok then return nil, err end
        recs[k] = nil
        M.forget(ch)
        return true
    end

    return deploy, cleanup
end

-- A hook's ready(ch, opts), following the hook contract: true once every
-- authoritative server of the target's zone serves ch.value; nil and a
-- detail naming a server that does not yet (the engine asks again);
-- raises "not propagated after N s: <detail>" once propagation_timeout
-- seconds have passed since the deployment, so a record that will not
-- show fails early and says where. With dns_wait it checks nothing: it
-- sleeps until that many seconds after the deployment and says true
-- (or, when that is past ch.deadline, sleeps until then and says not
-- yet).
function M.ready(ch, opts)
    opts = opts or {}
    local t0 = started[key(ch)]
    if not t0 then
        t0 = M.now()
        started[key(ch)] = t0
    end
    local wait = tonumber(opts.dns_wait)
    if wait then
        local left = t0 + wait - M.now()
        -- Never past the issuance's deadline (ch.deadline, our clock).
        local room = ch.deadline and (ch.deadline - M.now()) or left
        if left > room then
            if room > 0 then M.sleep(room) end
            return nil, "waiting " .. wait .. " s after deploying " ..
                "(dns_wait) would pass the deadline"
        end
        if left > 0 then M.sleep(left) end
        return true
    end
    local function unworkable(detail)
        error(detail .. ": the record cannot be checked; point " ..
            "resolver=IP:PORT at a server that knows the zone, or give " ..
            "dns_wait=SECONDS (--dns-wait) to wait instead of checking", 0)
    end
    local name, err = M.target(ch, opts)
    if not name then
        if err:find("REFUSED") then unworkable(err) end
        return nil, err
    end
    local ok, detail, how = M.check(name, ch.value, opts)
    if ok then return true end
    if how == "unworkable" then unworkable(detail) end
    local limit = tonumber(opts.propagation_timeout) or 120
    if M.now() - t0 >= limit then
        error("not propagated after " .. limit .. " s: " .. detail, 0)
    end
    return nil, detail
end

-- ready() in a loop, for callers without the hook engine: polls with
-- backoff (POLL_FIRST doubling to POLL_CAP) until true, or until ready
-- raises. Returns true, or nil and the message.
function M.wait(ch, opts)
    local delay = M.POLL_FIRST
    while true do
        local ok, r = pcall(M.ready, ch, opts)
        if not ok then
            if type(r) == "table" and r.kind == "interrupted" then
                error(r, 0)
            end
            return nil, tostring(r)
        end
        if r then return true end
        M.sleep(delay)
        delay = math.min(delay * 2, M.POLL_CAP)
    end
end

return M
