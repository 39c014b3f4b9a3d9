-- luacme.dns: zone and name servers, CNAME (alias mode) and
-- challenge_alias, the propagation check and ready() with dns_wait,
-- against tests/dns/fakedns.py playing two authoritative servers of one
-- zone (127.0.0.1 and 127.0.0.2, one port) that can disagree.
package.path = "tests/dns/?.lua;" .. package.path
local t = require "testlib"
local dns = require "luacme.dns"
local fake = require "fakedns"

local ADDRS = { "127.0.0.1", "127.0.0.2" }
local VALUE = "LPsIwTo7o8BoG0-vjCyGQGBWSVIPxI-i_X336eUOQZo"

dns.QUERY_TIMEOUT = 1

-- Zone example.test. (ns1 = 127.0.0.1, ns2 = 127.0.0.2) and alias.test.
-- on both servers; extra[addr] adds records to one server.
local function conf(extra, flags)
    local c = {}
    for _, a in ipairs(ADDRS) do
        local r = fake.zone("example.test.", ADDRS)
        for _, x in ipairs(fake.zone("alias.test.", ADDRS)) do
            r[#r + 1] = x
        end
        r[#r + 1] = { "_acme-challenge.cn.example.test.", "CNAME", 60,
            "_acme-challenge.cn.alias.test." }
        r[#r + 1] = { "_acme-challenge.two.example.test.", "CNAME", 60,
            "hop.example.test." }
        r[#r + 1] = { "hop.example.test.", "CNAME", 60,
            "_acme-challenge.two.alias.test." }
        r[#r + 1] = { "_acme-challenge.loop.example.test.", "CNAME", 60,
            "_acme-challenge.loop.example.test." }
        for _, x in ipairs((extra or {})[a] or {}) do r[#r + 1] = x end
        c[a] = { records = r }
        for k, v in pairs((flags or {})[a] or {}) do c[a][k] = v end
    end
    return c
end

local function both(records)
    return { ["127.0.0.1"] = records, ["127.0.0.2"] = records }
end

local function opts(srv, more)
    local o = { resolver = "127.0.0.1:" .. srv.port,
        dns_port = tostring(srv.port) }
    for k, v in pairs(more or {}) do o[k] = v end
    return o
end

local function ch(domain, value)
    return { type = "dns-01", name = "_acme-challenge." .. domain .. ".",
        value = value or VALUE, domain = domain }
end

t.test("zone, name servers and their addresses", function()
    local srv <close> = fake.start(conf(), ADDRS)
    local o = opts(srv)
    t.eq(dns.zone("_acme-challenge.www.example.test.", o), "example.test.")
    t.eq(dns.zone("example.test", o), "example.test.")
    t.eq(dns.zone("deep.er.alias.test.", o), "alias.test.")
    local nss = assert(dns.nameservers("example.test.", o))
    t.eq(#nss, 2)
    t.eq(nss[1].name, "ns1.example.test.")
    t.eq(nss[1].addrs[1], "127.0.0.1")
    t.eq(nss[2].name, "ns2.example.test.")
    t.eq(nss[2].addrs[1], "127.0.0.2")
    local z, err = dns.zone("x.nowhere.", o)
    t.eq(z, nil)
    t.match(err, "cannot find the zone of x%.nowhere%..*REFUSED")
end)

t.test("check: every server serves the value", function()
    local txt = { { "_acme-challenge.www.example.test.", "TXT", 60, VALUE },
        { "_acme-challenge.www.example.test.", "TXT", 60, "other" } }
    local srv <close> = fake.start(conf(both(txt)), ADDRS)
    t.eq(dns.check("_acme-challenge.www.example.test.", VALUE, opts(srv)),
        true)
end)

t.test("check: a server lacking the value is named", function()
    local txt = { { "_acme-challenge.www.example.test.", "TXT", 60, VALUE } }
    local srv <close> = fake.start(conf({ ["127.0.0.1"] = txt }), ADDRS)
    local ok, detail = dns.check("_acme-challenge.www.example.test.", VALUE,
        opts(srv))
    t.eq(ok, false)
    t.match(detail, "^ns2%.example%.test%. %(127%.0%.0%.2:" .. srv.port ..
        "%) does not serve TXT \"" .. VALUE:gsub("%-", "%%-") ..
        "\" at _acme%-challenge%.www%.example%.test%. yet %(NXDOMAIN%)")
    -- Another value only (the wildcard's): said so.
    srv:set(conf({ ["127.0.0.1"] = txt, ["127.0.0.2"] = {
        { "_acme-challenge.www.example.test.", "TXT", 60, "else" } } }))
    ok, detail = dns.check("_acme-challenge.www.example.test.", VALUE,
        opts(srv))
    t.eq(ok, false)
    t.match(detail, "ns2.*%(1 other value%)")
end)

t.test("check: silent and non-authoritative servers are named", function()
    local txt = { { "_acme-challenge.www.example.test.", "TXT", 60, VALUE } }
    local srv <close> = fake.start(conf(both(txt),
        { ["127.0.0.2"] = { noaa = true } }), ADDRS)
    local ok, detail = dns.check("_acme-challenge.www.example.test.", VALUE,
        opts(srv))
    t.eq(ok, false)
    t.match(detail, "^ns2%.example%.test%. .* is not authoritative for " ..
        "example%.test%.")
    srv:set(conf(both(txt), { ["127.0.0.2"] = { silent = true } }))
    ok, detail = dns.check("_acme-challenge.www.example.test.", VALUE,
        opts(srv))
    t.eq(ok, false)
    t.match(detail, "^ns2%.example%.test%. %(127%.0%.0%.2:%d+%): .*no answer")
end)

t.test("alias mode: CNAMEs followed; challenge_alias", function()
    local srv <close> = fake.start(conf(), ADDRS)
    local o = opts(srv)
    t.eq(dns.target(ch("cn.example.test"), o),
        "_acme-challenge.cn.alias.test.")
    t.eq(dns.target(ch("two.example.test"), o),
        "_acme-challenge.two.alias.test.", "two hops")
    t.eq(dns.target(ch("plain.example.test"), o),
        "_acme-challenge.plain.example.test.", "no CNAME: the name itself")
    local name, err = dns.target(ch("loop.example.test"), o)
    t.eq(name, nil)
    t.match(err, "CNAME loop")
    t.eq(dns.target(ch("cn.example.test"),
        opts(srv, { challenge_alias = "alias.test" })),
        "_acme-challenge.alias.test.")
    t.eq(dns.target(ch("cn.example.test"),
        opts(srv, { challenge_alias = "_acme-challenge.Other.test." })),
        "_acme-challenge.other.test.")
    -- The check follows the alias: the value at the CNAME's target.
    srv:set(conf(both({ { "_acme-challenge.cn.alias.test.", "TXT", 60,
        VALUE } })))
    t.eq(dns.check(dns.target(ch("cn.example.test"), o), VALUE, o), true)
    t.eq(dns.ready(ch("cn.example.test"), o), true)
end)

-- A#9.5: a CNAME target comes from DNS, which anyone on the path may
-- answer; it reaches provider APIs, nsupdate scripts and acme.sh
-- shell functions. rfc2136 checked it; now the shared layer does, for
-- every provider.
t.test("alias mode: a CNAME target that is no host name is refused", function()
    local bad = { "evil$(id).alias.test.", "a;b.alias.test.",
        "sp ace.alias.test.", "quo'te.alias.test.", "nl\n.alias.test.",
        "back\\slash.alias.test." }
    local extra = {}
    for i, target in ipairs(bad) do
        extra[#extra + 1] = { "_acme-challenge.bad" .. i .. ".example.test.",
            "CNAME", 60, target }
    end
    -- one hop fine, the second hostile
    extra[#extra + 1] = { "_acme-challenge.hop.example.test.", "CNAME", 60,
        "ok-hop.example.test." }
    extra[#extra + 1] = { "ok-hop.example.test.", "CNAME", 60,
        "x$(id).alias.test." }
    local srv <close> = fake.start(conf(both(extra)), ADDRS)
    local o = opts(srv)
    local names = {}
    for i = 1, #bad do names[#names + 1] = "bad" .. i .. ".example.test" end
    names[#names + 1] = "hop.example.test"
    local added = 0
    local deploy = dns.provider("test", function()
        added = added + 1
        return true
    end, function() return true end)
    for _, n in ipairs(names) do
        local name, err = dns.target(ch(n), o)
        t.eq(name, nil, n)
        t.match(tostring(err), "not a host name")
        local ok, derr = deploy(ch(n), o)
        t.eq(ok, nil, n)
        t.match(tostring(derr), "^test: .*not a host name")
    end
    t.eq(added, 0, "no provider saw a hostile name")
    -- names with _ and - pass
    srv:set(conf(both({ { "_acme-challenge.u.example.test.", "CNAME", 60,
        "_acme-challenge.u-x_y.alias.test." } })))
    t.eq(dns.target(ch("u.example.test"), o),
        "_acme-challenge.u-x_y.alias.test.")
end)

t.test("setup checks the options", function()
    t.eq(dns.setup({}), true)
    t.eq(dns.setup({ resolver = "127.0.0.1:53", dns_port = "5353",
        dns_wait = "30", propagation_timeout = "60",
        challenge_alias = "alias.example." }), true)
    t.eq(dns.setup({ resolver = "[::1]:53" }), true)
    local bad = {
        { resolver = "ns.example.com" }, { dns_port = "0" },
        { dns_port = "1.5" }, { dns_wait = "-1" }, { dns_wait = "x" },
        { propagation_timeout = "100000" },
        { challenge_alias = "a b" },
    }
    for _, o in ipairs(bad) do
        local k = next(o)
        local ok, err = dns.setup(o)
        t.eq(ok, nil, k)
        t.match(err, k)
    end
end)

-- ready() with a fake clock: sleep advances it.
local function fake_clock()
    local now, slept = 1000, {}
    dns.now = function() return now end
    dns.sleep = function(s) slept[#slept + 1] = s; now = now + s end
    return slept, function(d) now = now + d end
end

local function real_clock()
    local core = require "luacme.core"
    dns.now, dns.sleep = core.monotonic, core.sleep
end

t.test("ready: nil and the lagging server until propagated, then true",
    function()
    local srv <close> = fake.start(conf({ ["127.0.0.1"] = {
        { "_acme-challenge.soon.example.test.", "TXT", 60, VALUE } } }),
        ADDRS)
    local slept, advance = fake_clock()
    local c = ch("soon.example.test")
    dns.deployed(c)
    local ok, r, detail = pcall(dns.ready, c, opts(srv))
    t.ok(ok, r)
    t.eq(r, nil, "not yet")
    t.match(detail, "^ns2%.example%.test%. .* does not serve")
    t.eq(#slept, 0, "ready() itself does not wait")
    advance(30)
    srv:set(conf(both({ { c.name, "TXT", 60, VALUE } })))
    ok, r = pcall(dns.ready, c, opts(srv))
    real_clock()
    dns.forget(c)
    t.ok(ok, r)
    t.eq(r, true)
end)

t.test("wait: polls ready() with backoff until every server has it",
    function()
    local srv <close> = fake.start(conf(), ADDRS)
    local slept = fake_clock()
    local c = ch("late.example.test")
    local polls = 0
    local check = dns.check
    dns.check = function(name, value, o)
        polls = polls + 1
        if polls == 4 then
            srv:set(conf(both({ { c.name, "TXT", 60, VALUE } })))
        end
        return check(name, value, o)
    end
    local ok, err = pcall(dns.wait, c, opts(srv))
    dns.check = check
    real_clock()
    dns.forget(c)
    t.ok(ok, err)
    t.eq(err, true)
    t.eq(polls, 4)
    t.eq(table.concat(slept, ","), "0.5,1.0,2.0")
end)

t.test("ready raises after propagation_timeout naming the server",
    function()
    local srv <close> = fake.start(conf({ ["127.0.0.1"] = {
        { "_acme-challenge.lag.example.test.", "TXT", 60, VALUE } } }),
        ADDRS)
    local slept = fake_clock()
    local c = ch("lag.example.test")
    dns.deployed(c)
    local r, err = dns.wait(c, opts(srv, { propagation_timeout = "12" }))
    real_clock()
    dns.forget(c)
    t.eq(r, nil)
    t.match(err, "^not propagated after 12 s: ns2%.example%.test%. " ..
        "%(127%.0%.0%.2:%d+%) does not serve")
    local total = 0
    for _, s in ipairs(slept) do total = total + s end
    t.ok(total >= 12 and total < 12 + dns.POLL_CAP, "about the timeout: " ..
        total)
end)

t.test("ready with dns_wait: no queries, waits from the deployment",
    function()
    local slept, advance = fake_clock()
    local query = dns.query
    local asked = 0
    dns.query = function() asked = asked + 1; return nil, "no" end
    local c = ch("hidden.example.test")
    dns.deployed(c)
    advance(3)
    local ok, r = pcall(dns.ready, c, { dns_wait = "10" })
    local again = dns.ready(c, { dns_wait = "10" })
    dns.query = query
    real_clock()
    dns.forget(c)
    t.ok(ok, r)
    t.eq(r, true)
    t.eq(again, true)
    t.eq(asked, 0, "dns_wait asks no server")
    t.eq(table.concat(slept, ","), "7", "10 s after deploy, not after ready")
end)

t.test("ready fails at once, with a hint, when the zone cannot be found",
    function()
    local srv <close> = fake.start(conf(), ADDRS)
    local slept = fake_clock()
    local c = ch("x.nowhere")
    local ok, err = pcall(dns.ready, c, opts(srv))
    real_clock()
    dns.forget(c)
    t.eq(ok, false, "raised: waiting cannot help")
    t.match(err, "_acme%-challenge%.x%.nowhere%..*REFUSED")
    t.match(err, "resolver=IP:PORT")
    t.match(err, "dns_wait=SECONDS")
    t.eq(#slept, 0, "no waiting")
end)
