-- Shared cases of the dns-01 provider scenarios (tests/e2e/dns_*_test.lua),
-- which run under
--   tests/dns/dns-env.py --server pdns|bind -- \
--     tests/e2e/pebble-env.py --dnsserver @DNS@ -- luacme run ... X_test.lua
-- so Pebble resolves through the real PowerDNS or BIND the provider
-- writes to. Issuances go through the issuance path (luacme.issuance) with the
-- provider loaded from its spec; what the server serves is observed with
-- dig (bind9-dnsutils), independently of luacme's own DNS code, and
-- records the tests set up themselves (CNAMEs, a foreign value) are
-- written with curl (PowerDNS API) or nsupdate (BIND).
local core = require "luacme.core"
local hooks = require "luacme.hooks"
local issuance = require "luacme.issuance"
local t = require "testlib"
local E = require "e2e"

local D = {}

local function need(k)
    local v = os.getenv(k)
    assert(v and v ~= "", k .. " is not set: run under tests/dns/dns-env.py")
    return v
end

D.addr = need("LUACME_DNS_ADDR")
D.port = need("LUACME_DNS_PORT")
D.kind = need("LUACME_DNS_KIND")

-- Options every provider spec gets: luacme.dns asks our server for the
-- zone, NS and CNAMEs, and the authoritative server on its port.
function D.dns_opts()
    return "resolver=" .. D.addr .. ",dns_port=" .. D.port
end

-- The TXT values at name as the server serves them (dig, no recursion),
-- sorted; a CNAME's own line is left out.
function D.txt(name)
    local out = E.must("dig +short +norec +time=2 +tries=2 -p " .. D.port ..
        " @127.0.0.1 TXT " .. E.q(name))
    local vals = {}
    for line in out:gmatch("[^\n]+") do
        if line:sub(1, 1) == '"' then
            vals[#vals + 1] = (line:gsub('"%s*"', ""):gsub('"', ""))
        end
    end
    table.sort(vals)
    return vals
end

function D.cname_of(name)
    local out = E.must("dig +short +norec -p " .. D.port .. " @127.0.0.1 " ..
        "CNAME " .. E.q(name))
    return (out:match("^(%S+)"))
end

local function pdns(method, zone, doc)
    return E.must("curl -sS --fail -X " .. method .. " -H " ..
        E.q("X-API-Key: " .. need("LUACME_PDNS_API_KEY")) .. " --data-binary "
        .. E.q(require("cjson").encode(doc)) .. " " ..
        E.q(need("LUACME_PDNS_API_URL") .. "/api/v1/servers/localhost/zones/"
        .. zone))
end

local function nsupdate(lines)
    local script = "server 127.0.0.1 " .. D.port .. "\n" ..
        table.concat(lines, "\n") .. "\nsend\n"
    local dir = E.scratch()
    E.writefile(dir .. "/upd", script)
    E.must("nsupdate -t 5 -k " .. E.q(need("LUACME_TSIG_KEY_FILE")) .. " " ..
        E.q(dir .. "/upd"))
end

local function zone_of(name)
    return name:find("%.alias%.test%.$") and "alias.test." or "example.test."
end

-- Point name at target with a CNAME (test setup, not the code under test).
function D.add_cname(name, target)
    if D.kind == "pdns" then
        pdns("PATCH", zone_of(name), { rrsets = { { name = name,
            type = "CNAME", ttl = 60, changetype = "REPLACE",
            records = { { content = target, disabled = false } } } } })
    else
        nsupdate({ "update add " .. name .. " 60 CNAME " .. target })
    end
    t.eq(D.cname_of(name), target, "CNAME in place")
end

-- Set (values = list) or remove (empty list) the TXT RRset at name.
function D.set_txt(name, values)
    if D.kind == "pdns" then
        local recs = {}
        for i, v in ipairs(values) do
            recs[i] = { content = '"' .. v .. '"', disabled = false }
        end
        local rr = { name = name, type = "TXT", ttl = 60,
            changetype = "REPLACE", records = recs }
        if #values == 0 then
            rr = { name = name, type = "TXT", changetype = "DELETE" }
        end
        pdns("PATCH", zone_of(name), { rrsets = { rr } })
    else
        local lines = { "update delete " .. name .. " TXT" }
        for _, v in ipairs(values) do
            lines[#lines + 1] = "update add " .. name .. " 60 TXT \"" .. v ..
                "\""
        end
        nsupdate(lines)
    end
end

function D.hook(spec)
    local h, err = hooks.load(spec, "challenge")
    assert(h, tostring(err))
    return h
end

-- Issue for names through the hook engine with the hooks of specs.
-- watch: names whose TXT values are read (dig) when every ready() said
-- true, just before the challenges are accepted. Returns res (with
-- res.seen[name] = values), or nil, err, seen, events.
function D.issue(specs, names, watch)
    if type(specs) == "string" then specs = { specs } end
    local list = {}
    for i, s in ipairs(specs) do list[i] = D.hook(s) end
    local c = E.account()
    local ids, dnsnames = E.ids(names)
    local key = assert(core.key_generate("ec256"))
    local csr = assert(core.csr({ key = key, names = dnsnames }))
    local seen, events = {}, {}
    local res, err = issuance.issue(c, {
        identifiers = ids, csr = csr, hooks = list, timeout = 90,
        ready_timeout = 60,
        on_event = function(name, fields, text)
            events[#events + 1] = { name = name, fields = fields,
                text = text }
            if name == "validating" then
                for _, n in ipairs(watch or {}) do seen[n] = D.txt(n) end
            end
        end,
    })
    if not res then return nil, err, seen, events end
    res.seen, res.events = seen, events
    return res
end

-- Cleanup warnings the engine reported.
function D.cleanup_failures(events)
    local out = {}
    for _, e in ipairs(events or {}) do
        if e.name == "cleanup" and not e.fields.ok then
            out[#out + 1] = e.text
        end
    end
    return out
end

local function check_cert(res, names)
    t.eq(E.list_str(E.sans(res.certs[1])), E.list_str(E.dns_sans(names)))
    local ok, out = E.verify_chain(res.certs, E.root_pem(0))
    t.ok(ok, out)
    t.eq(#D.cleanup_failures(res.events), 0, "cleanup ran cleanly")
end

local function values_of(res)
    local v = {}
    for _, it in ipairs(res.items) do
        v[#v + 1] = core.b64url_encode(core.sha256(it.key_authorization))
    end
    table.sort(v)
    return v
end

--
-- The cases each provider runs. spec: the provider's hook spec.
--

-- One name: the value served while Pebble validates, gone afterwards.
function D.case_name(spec, prefix)
    local name = E.name(prefix or "one")
    local txt = "_acme-challenge." .. name .. "."
    local res, err = D.issue(spec, { name }, { txt })
    t.ok(res, "issue: " .. tostring(err))
    check_cert(res, { name })
    t.eq(E.list_str(res.seen[txt]), E.list_str(values_of(res)),
        "our value served at validation")
    t.eq(#D.txt(txt), 0, "no record left")
end

-- A name and its wildcard: two values at one name at once; a value
-- someone else keeps there survives.
function D.case_wildcard(spec, prefix)
    local base = E.name(prefix or "wild")
    local txt = "_acme-challenge." .. base .. "."
    D.set_txt(txt, { "someone-elses-value" })
    local res, err = D.issue(spec, { base, "*." .. base }, { txt })
    t.ok(res, "issue: " .. tostring(err))
    check_cert(res, { base, "*." .. base })
    local want = values_of(res)
    t.eq(#want, 2, "two challenges")
    want[#want + 1] = "someone-elses-value"
    table.sort(want)
    t.eq(E.list_str(res.seen[txt]), E.list_str(want),
        "both values (and the foreign one) served at once")
    t.eq(E.list_str(D.txt(txt)), "{someone-elses-value}",
        "only our values removed")
    D.set_txt(txt, {})
    t.eq(#D.txt(txt), 0)
end

-- Alias mode: _acme-challenge.<name> is a CNAME into alias.test. (or,
-- with same_zone, to another name in example.test.: BIND answers a
-- CNAME into another of its zones without the target's records, and
-- Pebble does not chase it itself); the record is written at the
-- target, and removed again; the CNAME stays.
function D.case_alias(spec, prefix, same_zone)
    local name = E.name(prefix or "cn")
    local txt = "_acme-challenge." .. name .. "."
    local label = name:gsub("%.example%.test$", "")
    local target = "_acme-challenge." .. label .. ".alias.test."
    if same_zone then
        target = "_acme-challenge." .. label .. "-target.example.test."
    end
    D.add_cname(txt, target)
    local res, err = D.issue(spec, { name, "*." .. name }, { target })
    t.ok(res, "issue: " .. tostring(err))
    check_cert(res, { name, "*." .. name })
    t.eq(E.list_str(res.seen[target]), E.list_str(values_of(res)),
        "values written at the CNAME's target")
    t.eq(#D.txt(target), 0, "no record left at the target")
    t.eq(D.cname_of(txt), target, "the CNAME itself untouched")
end

-- A bad credential: the issuance fails with a message matching every
-- pattern in pats, and nothing is left at the name.
function D.case_bad(spec, pats, prefix)
    local name = E.name(prefix or "bad")
    local txt = "_acme-challenge." .. name .. "."
    local res, err, _, events = D.issue(spec, { name, "*." .. name })
    t.eq(res, nil, "issuance must fail")
    local msg = tostring(err)
    for _, p in ipairs(pats) do t.match(msg, p) end
    t.eq(#D.txt(txt), 0, "nothing left")
    return msg, events
end

-- A failure after a first value was written (the second identifier is
-- in no zone of the server): the engine's cleanup removes the first.
-- The CA hands out the authorizations in no fixed order, so the order is
-- placed again (a failed one costs no validation) until the good name's
-- challenge was deployed first.
function D.case_partial(spec, pats)
    for _ = 1, 12 do
        local good = E.name("part")
        local txt = "_acme-challenge." .. good .. "."
        local res, err, _, events = D.issue(spec, { good,
            "x" .. good:gsub("%.example%.test$", "") .. ".nozone.test" })
        t.eq(res, nil, "issuance must fail")
        for _, p in ipairs(pats) do t.match(tostring(err), p) end
        local deployed = 0
        for _, e in ipairs(events) do
            if e.name == "deployed" then deployed = deployed + 1 end
        end
        if deployed == 1 then
            t.eq(#D.txt(txt), 0, "the first value was cleaned up")
            return
        end
    end
    error("the good name was never deployed first in 12 orders")
end

-- The propagation check fails (nothing answers on dns_port): the error
-- names the server, both values written before are removed.
function D.case_not_propagated(spec)
    local base = E.name("np")
    local txt = "_acme-challenge." .. base .. "."
    spec = spec:gsub("dns_port=%d+", "dns_port=" .. D.closed_port())
    local res, err, _, events = D.issue(spec .. ",propagation_timeout=2",
        { base, "*." .. base })
    t.eq(res, nil, "issuance must fail")
    local deployed = 0
    for _, e in ipairs(events) do
        if e.name == "deployed" then deployed = deployed + 1 end
    end
    t.eq(deployed, 2, "both deployed before ready()")
    t.match(tostring(err), "ready: not propagated after 2 s: " ..
        "ns1%.example%.test%. %(127%.0%.0%.1:%d+%): .*refused the connection")
    t.eq(#D.txt(txt), 0, "both values cleaned up")
end

-- A loopback port nothing listens on (UDP): bound and closed again.
function D.closed_port()
    local out = E.must("python3 -c 'import socket; s = socket.socket(" ..
        "socket.AF_INET, socket.SOCK_DGRAM); s.bind((\"127.0.0.1\", 0)); " ..
        "print(s.getsockname()[1])'")
    return (out:match("%d+"))
end

return D
