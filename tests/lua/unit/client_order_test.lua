-- Orders, authorizations and whole issuances over the fake CA: request
-- budgets, reuse, wildcard + base name, failures, finalize, chains,
-- pre-authorization and renewal information.
local t = require "testlib"
local fake = require "fakehttp"
local acme = require "luacme"
local core = require "luacme.core"
local cjson = require "cjson"

local KEY = core.key_generate("ec256")
local URN = "urn:ietf:params:acme:error:"

local function setup(opts)
    return fake.account(KEY, opts)
end

-- A fresh client for an existing account (stored kid), cold: no
-- directory, no nonce yet.
local function cold(c, ca)
    return acme.client{ directory = ca.dir_url, key = KEY, kid = c.kid,
        transport = ca, now = c.now, sleep = c.sleep }
end

local function names(n)
    local out = {}
    for i = 1, n do out[i] = "host" .. i .. ".example" end
    return out
end

-- A hook that records what it was given.
local function recorder(ca, types)
    local r = { deploys = 0, cleanups = 0, items = {}, cleaned = {} }
    r.hook = {
        types = types or { "http-01", "dns-01", "tls-alpn-01" },
        deploy = function(ch)
            r.deploys = r.deploys + 1
            r.items[#r.items + 1] = ch
            r.at_deploy = #ca.log
            return true
        end,
        cleanup = function(ch)
            r.cleanups = r.cleanups + 1
            r.cleaned[#r.cleaned + 1] = ch
            r.at_cleanup = #ca.log
            return true
        end,
    }
    return r
end

local function count(ca, method, part, from)
    local n = 0
    for i = (from or 0) + 1, #ca.log do
        local rec = ca.log[i]
        if rec.method == method and (not part or rec.url:find(part, 1, true)) then
            n = n + 1
        end
    end
    return n
end

-- A CA near by validates in a few milliseconds (Pebble: 4-10 ms for 1
-- to 20 names), which the first poll at 15 ms catches.
local function issue_budget(nnames, budget, validation_delay)
    local c0, ca = setup{ validation_delay = validation_delay or 0.005 }
    local c = cold(c0, ca)
    local rec = recorder(ca)
    local from = #ca.log
    local res = assert(c:issue{ identifiers = acme.domain_ids(names(nnames)),
        csr = "csr-der", hooks = { rec.hook }, timeout = 60 })
    local used = #ca.log - from
    t.eq(c:stats().requests, used, "client count = requests seen")
    t.ok(used <= budget, nnames .. " names took " .. used .. " requests (budget " ..
        budget .. ")")
    t.eq(count(ca, "GET", "/dir", from), 1)
    t.eq(count(ca, "HEAD", nil, from), 1)
    t.eq(count(ca, "POST", "/order-plz", from), 1)
    t.eq(count(ca, "POST", "/authZ/", from), nnames, "each authz read once")
    t.eq(count(ca, "POST", "/chalZ/", from), nnames, "one accept per name")
    t.eq(count(ca, "POST", "/finalize-order/", from), 1)
    t.eq(count(ca, "POST", "/certZ/", from), 1)
    t.eq(rec.deploys, nnames, "each challenge deployed once")
    t.eq(#rec.items, nnames)
    t.eq(rec.cleanups, nnames)
    t.eq(#res.certs, 2)
    t.eq(res.order.status, "valid")
    t.match(res.pem, "BEGIN CERTIFICATE")
    -- every accept came after the last deploy
    for i = 1, rec.at_deploy do
        t.ok(not (ca.log[i].url:find("/chalZ/", 1, true) and
            ca.log[i].payload == "{}"), "no accept before deploy")
    end
    -- the CSR went out as base64url
    local fin = ca:find("POST", "/finalize-order/")[1]
    t.eq(fin.payload, '{"csr":"Y3NyLWRlcg"}')
    return used, ca, c
end

t.test("one name: a whole issuance in at most 9 requests", function()
    local used = issue_budget(1, 9)
    t.eq(used, 9)
end)

t.test("20 names: a whole issuance in at most 48 requests", function()
    local used = issue_budget(20, 48)
    t.eq(used, 47)
end)

t.test("a CA done after the first poll costs one poll more", function()
    -- validated in 20 ms: the poll at 15 ms misses, the one at 50 ms
    -- hits (the doubling schedule's first poll at 50 ms did not miss)
    local used = issue_budget(1, 10, 0.02)
    t.eq(used, 10)
end)

t.test("the order is polled from a short interval, not each authorization", function()
    local c, ca, clock = setup{ validation_delay = 0.3, issue_delay = 0.2 }
    local rec = recorder(ca)
    ca.on_request = function(r) r.t = clock.now() end
    clock.slept = {}
    assert(c:issue{ identifiers = acme.domain_ids("a.example", "b.example"),
        csr = "x", hooks = { rec.hook } })
    -- the poll times since the reply to the last accept (resp. the
    -- finalize): 15, 50, 150, 450 ms; validated at 300 ms, issued at 200
    local polls = ca:find("POST", "/my-order/")
    t.eq(#polls, 8)
    local function since(pattern, upto)
        local last
        for _, r in ipairs(ca.log) do
            if r == upto then break end
            if r.url:find(pattern) then last = r end
        end
        return math.floor((upto.t - last.t - 0.004) * 1000 + 0.5)
    end
    local want = { 15, 50, 150, 450, 15, 50, 150, 450 }
    for i, p in ipairs(polls) do
        t.eq(since(i <= 4 and "/chalZ/" or "/finalize%-order/", p), want[i],
            "poll " .. i .. " (ms)")
    end
    t.eq(#clock.slept, 8)
    -- authorizations were read once each, never polled
    t.eq(#ca:find("POST", "/authZ/"), 2)
end)

t.test("items carry what hooks need, per challenge type", function()
    local c, ca = setup()
    local rec = recorder(ca, { "dns-01" })
    assert(c:issue{ identifiers = acme.domain_ids("a.example"), csr = "x",
        hooks = { rec.hook } })
    local it = rec.items[1]
    t.eq(it.type, "dns-01")
    t.eq(it.domain, "a.example")
    t.eq(it.name, "_acme-challenge.a.example.")
    t.eq(it.key_authorization, it.token .. "." .. KEY:thumbprint())
    t.eq(it.value, core.b64url_encode(core.sha256(it.key_authorization)))
    t.eq(it.authz.identifier.value, "a.example")
    local rec2 = recorder(ca, { "http-01" })
    assert(c:issue{ identifiers = acme.domain_ids("b.example"), csr = "x",
        hooks = { rec2.hook } })
    it = rec2.items[1]
    t.eq(it.path, "/.well-known/acme-challenge/" .. it.token)
    t.eq(it.body, it.key_authorization)
    local rec3 = recorder(ca, { "tls-alpn-01" })
    assert(c:issue{ identifiers = acme.ip_ids("192.0.2.1"), csr = "x",
        hooks = { rec3.hook } })
    it = rec3.items[1]
    t.eq(it.type, "tls-alpn-01")
    t.eq(it.identifier.type, "ip")
    t.match(it.cert_pem, "BEGIN CERTIFICATE")
    t.eq(core.cert_info(it.cert_pem).ips[1], "192.0.2.1")
end)

t.test("wildcard and base name are separate authorizations", function()
    local c, ca = setup()
    local rec = recorder(ca, { "dns-01" })
    local res = assert(c:issue{ identifiers = acme.domain_ids("Example.com",
        "*.example.com"), csr = "x", hooks = { rec.hook } })
    t.eq(#rec.items, 2)
    local a, b = rec.items[1], rec.items[2]
    t.eq(a.domain, "example.com")
    t.eq(b.domain, "example.com")
    t.ok(a.wildcard ~= b.wildcard, "one wildcard, one not")
    t.eq(a.name, b.name)
    t.ok(a.value ~= b.value, "two TXT values at one name")
    t.ok(a.authz.uri ~= b.authz.uri)
    t.eq(#ca:find("POST", "/chalZ/"), 2, "both accepted")
    t.eq(res.order.status, "valid")
    local sent = ca:find("POST", "/order-plz")[1].payload_json.identifiers
    t.eq(sent[1].value, "example.com")
    t.eq(sent[2].value, "*.example.com")
end)

t.test("already-valid authorizations are not touched", function()
    local c, ca = setup{ reuse = { ["a.example"] = true } }
    local rec = recorder(ca)
    assert(c:issue{ identifiers = acme.domain_ids("a.example", "b.example"),
        csr = "x", hooks = { rec.hook } })
    t.eq(#rec.items, 1)
    t.eq(rec.items[1].domain, "b.example")
    t.eq(#ca:find("POST", "/chalZ/"), 1)
    -- every authorization valid: the order is ready at once, no authz read
    local c2, ca2 = setup{ reuse = { ["a.example"] = true, ["b.example"] = true } }
    local rec2 = recorder(ca2)
    local from = #ca2.log
    assert(c2:issue{ identifiers = acme.domain_ids("a.example", "b.example"),
        csr = "x", hooks = { rec2.hook } })
    t.eq(rec2.deploys, 0)
    t.eq(count(ca2, "POST", "/authZ/", from), 0)
    t.eq(count(ca2, "POST", "/chalZ/", from), 0)
    t.eq(count(ca2, "POST", "/finalize-order/", from), 1)
end)

t.test("an invalid authorization is reported with the CA's detail, no finalize", function()
    local c, ca = setup{ validate = function(a)
        if a.identifier.value == "bad.example" then
            return { type = URN .. "unauthorized", status = 403,
                detail = "Invalid response from http://bad.example/.well-known/" ..
                    "acme-challenge/x: 404" }
        end
        return true
    end }
    local rec = recorder(ca)
    local res, err = c:issue{ identifiers = acme.domain_ids("good.example",
        "bad.example"), csr = "x", hooks = { rec.hook } }
    t.eq(res, nil)
    t.eq(err.kind, "authorization")
    t.eq(err.identifier.value, "bad.example")
    t.eq(err.type, URN .. "unauthorized")
    t.match(tostring(err), "bad%.example")
    t.match(tostring(err), "Invalid response from http://bad%.example")
    t.eq(#ca:find("POST", "/finalize-order/"), 0)
    t.eq(rec.cleanups, 2, "both deployed challenges cleaned up")
    t.ok(err.order and err.order.status == "invalid")
    -- A#9.6: the challenge problems as a list, also when there is one
    t.eq(type(err.errors), "table")
    t.eq(#err.errors, 1)
    t.eq(err.errors[1].type, URN .. "unauthorized")
    t.eq(err.errors[1].cause, err.cause)
    local _, n = tostring(err):gsub("Invalid response", "")
    t.eq(n, 1, "the problem shown once: " .. tostring(err))
end)

t.test("deploy failure and deadline: cleanup runs, nothing finalized", function()
    local c, ca, clock = setup{ validation_delay = 1e6 }
    local cleaned = 0
    local res, err = c:issue{ identifiers = acme.domain_ids("a.example"), csr = "x",
        hooks = { { types = { "http-01" },
            deploy = function() return nil, "webroot not writable" end,
            cleanup = function() cleaned = cleaned + 1; return true end } } }
    t.eq(res, nil)
    t.eq(err.kind, "hook")
    t.match(err.detail, "webroot not writable")
    t.eq(cleaned, 1)
    t.eq(#ca:find("POST", "/chalZ/"), 0, "nothing accepted")
    local start = clock.now()
    res, err = c:issue{ identifiers = acme.domain_ids("b.example"), csr = "x",
        timeout = 10, hooks = { { types = { "http-01" },
            deploy = function() return true end,
            cleanup = function() cleaned = cleaned + 1; return true end } } }
    t.eq(err.kind, "deadline")
    t.eq(cleaned, 2)
    t.ok(clock.now() - start <= 10, "stopped within the deadline")
    t.eq(#ca:find("POST", "/finalize-order/"), 0)
    -- a raising hook is a failed deploy (hooks.call) and still gets
    -- cleanup
    res, err = c:issue{ identifiers = acme.domain_ids("c.example"), csr = "x",
        hooks = { { types = { "http-01" },
            deploy = function() error("boom") end,
            cleanup = function() cleaned = cleaned + 1; return true end } } }
    t.eq(res, nil)
    t.eq(err.kind, "hook")
    t.match(err.detail, "boom")
    t.eq(cleaned, 3)
end)

t.test("no supported challenge gives a clear error", function()
    local c, ca = setup()
    local res, err = c:issue{ identifiers = acme.domain_ids("*.w.example"), csr = "x",
        hooks = { recorder(ca, { "http-01" }).hook } }
    t.eq(res, nil)
    t.eq(err.kind, "unsolvable")
    t.match(err.detail, "no hook solves dns%-01 for %*%.w%.example")
end)

t.test("bad identifiers are refused before anything is sent", function()
    local c, ca = setup()
    local n = #ca.log
    local o, err = c:authorize_order(acme.domain_ids("ok.example", "bad_name.example"))
    t.eq(o, nil)
    t.eq(err.kind, "identifier")
    t.match(err.detail, "bad_name")
    o, err = c:authorize_order(acme.ip_ids("300.1.1.1"))
    t.eq(err.kind, "identifier")
    o, err = c:authorize_order({ { type = "dns", value = "trailing.example." } })
    t.eq(err.kind, "identifier")
    t.eq(#ca.log, n)
    t.raises(function() c:authorize_order({}) end, "non%-empty list")
    -- IDNA and IPv6 canonical forms are what is sent
    assert(c:authorize_order(acme.domain_ids("LÉGÔ.localhost")))
    assert(c:authorize_order({ { type = "ip", value = "2001:DB8:0:0:0:0:0:1" } }))
    local sent = ca:find("POST", "/order-plz")
    t.eq(sent[1].payload, '{"identifiers":[{"type":"dns","value":"xn--lg-bja9b.localhost"}]}')
    t.eq(sent[2].payload_json.identifiers[1].value, "2001:db8::1")
end)

t.test("order options: notBefore/notAfter, profile; replaces only with ARI", function()
    local c, ca = setup()
    local o = assert(c:authorize_order(acme.domain_ids("a.example"), {
        not_before = 1700000000, not_after = "2023-12-14T22:13:20Z",
        profile = "shortlived", replaces = "aaa.bbb" }))
    t.eq(o.not_before, "2023-11-14T22:13:20Z")
    local p = ca:find("POST", "/order-plz")[1].payload_json
    t.eq(p.notBefore, "2023-11-14T22:13:20Z")
    t.eq(p.notAfter, "2023-12-14T22:13:20Z")
    t.eq(p.profile, "shortlived")
    t.eq(p.replaces, nil, "no renewalInfo in the directory: no replaces")
    local c2, ca2 = setup{ renewal_info = true }
    assert(c2:authorize_order(acme.domain_ids("a.example"), { replaces = "aaa.bbb" }))
    t.eq(ca2:find("POST", "/order-plz")[1].payload_json.replaces, "aaa.bbb")
    t.raises(function()
        c:authorize_order(acme.domain_ids("a.example"), { not_before = "yesterday" })
    end, "RFC 3339")
end)

t.test("get/wait authorization and order; invalid stops with the problem", function()
    local c, ca, clock = setup{ validate = function()
        return { type = URN .. "connection", detail = "Connection refused", status = 400 }
    end }
    local o = assert(c:authorize_order(acme.domain_ids("a.example")))
    t.eq(#o.authz_urls, 1)
    t.match(o.finalize_url, "/finalize%-order/")
    local a = assert(c:get_authorization(o.authz_urls[1]))
    t.eq(a.status, "pending")
    t.eq(a.identifier.type, "dns")
    t.eq(a.wildcard, false)
    t.eq(#a.challenges, 3)
    t.ok(a.expires)
    assert(c:accept(a.challenges[1]))
    local got, err = c:wait_authorization(a.uri)
    t.eq(got, nil)
    t.eq(err.kind, "authorization")
    t.eq(err.type, URN .. "connection")
    t.match(err.detail, "Connection refused")
    got, err = c:wait_order(o.uri)
    t.eq(err.kind, "order")
    t.eq(err.order.status, "invalid")
    t.ok(clock.now() > 0)
end)

t.test("wait_* honour Retry-After, capped by the deadline", function()
    local c, ca, clock = setup{ validation_delay = 1e6 }
    local o = assert(c:authorize_order(acme.domain_ids("a.example")))
    ca:once("POST", "/my-order/", function(_, s, h, b)
        h["retry-after"] = "3"
        return s, h, b
    end)
    clock.slept = {}
    local got, err = c:wait_order(o.uri, clock.now() + 10)
    t.eq(got, nil)
    t.eq(err.kind, "deadline")
    t.eq(clock.slept[1], 3, "Retry-After used as the next wait")
    t.ok(math.abs(clock.slept[1] + clock.slept[2] - 4.2) < 0.02,
        "the schedule went on from there (4.2 s after the start)")
    for _, r in ipairs(ca:find("POST", "/my-order/")) do
        t.eq(r.url, o.uri, "the order URL is polled")
        t.eq(r.payload, "", "as POST-as-GET")
        t.eq(r.protected.kid, c.kid)
    end
    local total = 0
    for _, s in ipairs(clock.slept) do total = total + s end
    t.ok(total <= 10)
    -- a Retry-After beyond the deadline ends the wait at once
    ca:once("POST", "/my-order/", function(_, s, h, b)
        h["retry-after"] = "3600"
        return s, h, b
    end)
    clock.slept = {}
    got, err = c:wait_order(o.uri, clock.now() + 60)
    t.eq(err.kind, "deadline")
    t.eq(err.retry_after, 3600)
    t.eq(#clock.slept, 0)
end)

-- A#9.2: Retry-After: 0 on every poll reply once made 5,616
-- authorization polls in one second.
t.test("polls with Retry-After 0, negative or past wait at least 1 s", function()
    for _, hint in ipairs({ "0", "-3", "Thu, 01 Jan 1970 00:00:00 GMT" }) do
        local c, ca, clock = setup{ validation_delay = 1e6 }
        local o = assert(c:authorize_order(acme.domain_ids("a.example")))
        ca:once("POST", "/authZ/", function(_, s, h, b)
            h["retry-after"] = hint
            return s, h, b
        end, 50)
        clock.slept = {}
        local got, err = c:wait_authorization(o.authz_urls[1],
            clock.now() + 20)
        t.eq(got, nil, hint)
        t.eq(err.kind, "deadline", hint)
        t.ok(#clock.slept > 0 and #clock.slept <= 20, hint .. ": " ..
            #clock.slept .. " polls in 20 s")
        for _, s in ipairs(clock.slept) do
            t.ok(s >= 1, hint .. ": slept " .. s)
        end
    end
end)

t.test("finalize handles processing by polling the order URL", function()
    local c, ca = setup{ issue_delay = 0.3 }
    local rec = recorder(ca)
    local res = assert(c:issue{ identifiers = acme.domain_ids("a.example"),
        csr = function(order)
            t.eq(order.status, "ready")
            return "csr"
        end, hooks = { rec.hook } })
    t.eq(res.order.status, "valid")
    local fin = ca:find("POST", "/finalize-order/")
    t.eq(#fin, 1, "never re-finalized")
    local polls = ca:find("POST", "/my-order/")
    t.ok(#polls >= 3)
    t.eq(#ca:find("POST", "/finalize-order/"), 1)
    -- create_order_cert directly: bundle=false gives the leaf only
    local o = assert(c:authorize_order(acme.domain_ids("b.example")))
    local a = assert(c:get_authorization(o.authz_urls[1]))
    assert(c:accept(a.challenges[1]))
    assert(c:wait_order(o.uri))
    local certs, url = c:create_order_cert(o.finalize_url, "csr", false)
    t.eq(#certs, 1)
    t.eq(certs[1], "leaf")
    t.match(url, "/certZ/")
    local all = assert(c:fetch_cert(url, true))
    t.eq(#all, 2)
    t.eq(all[2], "intermediate")
    -- RFC 8555 §7.4.2: downloads ask for the PEM chain, as POST-as-GET
    for _, r in ipairs(ca:find("POST", "/certZ/")) do
        t.eq(r.headers.accept, "application/pem-certificate-chain")
        t.eq(r.payload, "")
    end
end)

t.test("a certificate response holding a private key is refused", function()
    local c, ca = setup{ chains = { "-----BEGIN CERTIFICATE-----\nbGVhZg==\n" ..
        "-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nAAAA\n" ..
        "-----END PRIVATE KEY-----\n" } }
    local res, err = c:issue{ identifiers = acme.domain_ids("a.example"), csr = "x",
        hooks = { recorder(ca).hook } }
    t.eq(res, nil)
    t.eq(err.kind, "private_key")
end)

local function selfsigned(dir, cn)
    local base = dir .. "/" .. cn:gsub("%W", "")
    local ok, out = t.sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 " ..
        "-nodes -keyout " .. base .. ".key -out " .. base .. ".pem -days 2 -subj '/CN=" ..
        cn .. "'")
    assert(ok, out)
    return t.readfile(base .. ".pem")
end

t.test("alternate chains: listed, and chosen by issuer CN", function()
    local dir = t.tmpdir()
    local a, b, cc = selfsigned(dir, "Root A"), selfsigned(dir, "Root B"),
        selfsigned(dir, "Root C")
    local c, ca = setup{ chains = { a, b, cc } }
    local res = assert(c:issue{ identifiers = acme.domain_ids("a.example"), csr = "x",
        hooks = { recorder(ca).hook }, preferred_chain = "Root C" })
    t.eq(core.cert_info(res.certs[1]).issuer_cn, "Root C")
    t.match(res.cert_url, "/alternate/2$")
    local alts = assert(c:list_cert_alternates(res.order.cert_url))
    t.eq(#alts, 2)
    t.match(alts[1], "/certZ/%d+/alternate/1$")
    -- no match: the default chain
    res = assert(c:issue{ identifiers = acme.domain_ids("b.example"), csr = "x",
        hooks = { recorder(ca).hook }, preferred_chain = "Nobody" })
    t.eq(core.cert_info(res.certs[1]).issuer_cn, "Root A")
    -- the default matches: no alternate fetched
    local before = #ca:find("POST", "/alternate/")
    res = assert(c:issue{ identifiers = acme.domain_ids("c.example"), csr = "x",
        hooks = { recorder(ca).hook }, preferred_chain = "Root A" })
    t.eq(#ca:find("POST", "/alternate/"), before)
end)

-- A#9.2: lists from the server are bounded.
t.test("at most MAX_ALTERNATES alternate chains are fetched", function()
    local dir = t.tmpdir()
    local c, ca = setup{ chains = { selfsigned(dir, "Root A"),
        selfsigned(dir, "Root B") } }
    ca:once("POST", "/certZ/", function(_, s, h, b)
        local links = { h.link[1] }
        for i = 1, 40 do
            links[#links + 1] = "<" .. ca.base .. "/certZ/9/alternate/1?n=" ..
                i .. '>;rel="alternate"'
        end
        h.link = links
        return s, h, b
    end)
    local res = assert(c:issue{ identifiers = acme.domain_ids("a.example"),
        csr = "x", hooks = { recorder(ca).hook }, preferred_chain = "Nobody" })
    t.eq(core.cert_info(res.certs[1]).issuer_cn, "Root A", "the default")
    t.eq(require("luacme.client").MAX_ALTERNATES, 10)
    t.eq(#ca:find("POST", "/alternate/"), 10, "10 of 40 alternates fetched")
end)

t.test("an order with more authorizations than identifiers is refused", function()
    local c, ca = setup()
    ca:once("POST", "/order-plz", function(_, s, h, b)
        local doc = cjson.decode(b)
        for i = 1, 5 do
            doc.authorizations[#doc.authorizations + 1] =
                ca.base .. "/authZ/90" .. i
        end
        return s, h, cjson.encode(doc)
    end)
    local rec = recorder(ca)
    local res, err = c:issue{ identifiers = acme.domain_ids("a.example",
        "b.example"), csr = "x", hooks = { rec.hook } }
    t.eq(res, nil)
    t.eq(err.kind, "response")
    t.match(err.detail, "7 authorizations for 2 identifiers")
    t.eq(#ca:find("POST", "/authZ/"), 0, "no authorization fetched")
    t.eq(rec.deploys, 0)
end)

t.test("orders listed across pages", function()
    local c, ca = setup{ orders_per_page = 2 }
    local made = {}
    for i = 1, 5 do
        made[i] = assert(c:authorize_order(acme.domain_ids("n" .. i .. ".example"))).uri
    end
    local urls = assert(c:list_orders())
    t.eq(#urls, 5)
    for i = 1, 5 do t.eq(urls[i], made[i]) end
    t.eq(#ca:find("POST", "/list-orderz/"), 3)
end)

t.test("pre-authorization with newAuthz; a clear error without it", function()
    local c, ca = setup{ new_authz = true }
    local a = assert(c:authorize("WWW.Example.com"))
    t.eq(a.status, "pending")
    t.eq(a.identifier.value, "www.example.com")
    t.match(a.uri, "/authZ/%d+$")
    local r = ca:find("POST", "/new-authz")[1]
    t.eq(r.payload, '{"identifier":{"type":"dns","value":"www.example.com"}}')
    t.eq(r.protected.kid, c.kid)
    a = assert(c:authorize_ip("2001:DB8::1"))
    t.eq(a.identifier.type, "ip")
    t.eq(ca:find("POST", "/new-authz")[2].payload_json.identifier.value, "2001:db8::1")
    local got = assert(c:revoke_authorization(a.uri))
    t.eq(got.status, "deactivated")
    t.eq(ca:find("POST", a.uri)[1].payload, '{"status":"deactivated"}')
    local c2, ca2 = setup()
    local n = #ca2.log
    local none, err = c2:authorize("a.example")
    t.eq(none, nil)
    t.eq(err.kind, "unsupported")
    t.match(err.detail, "newAuthz")
    t.eq(#ca2.log, n, "nothing sent")
    _, err = c:authorize("bad..example")
    t.eq(err.kind, "identifier")
end)

-- RFC 9773 Appendix A.
local ARI_PEM = [[
-----BEGIN CERTIFICATE-----
MIIBQzCB66ADAgECAgUAh2VDITAKBggqhkjOPQQDAjAVMRMwEQYDVQQDEwpFeGFt
cGxlIENBMCIYDzAwMDEwMTAxMDAwMDAwWhgPMDAwMTAxMDEwMDAwMDBaMBYxFDAS
BgNVBAMTC2V4YW1wbGUuY29tMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEeBZu
7cbpAYNXZLbbh8rNIzuOoqOOtmxA1v7cRm//AwyMwWxyHz4zfwmBhcSrf47NUAFf
qzLQ2PPQxdTXREYEnKMjMCEwHwYDVR0jBBgwFoAUaYhba4dGQEHhs3uEe6CuLN4B
yNQwCgYIKoZIzj0EAwIDRwAwRAIge09+S5TZAlw5tgtiVvuERV6cT4mfutXIlwTb
+FYN/8oCIClDsqBklhB9KAelFiYt9+6FDj3z4KGVelYM5MdsO3pK
-----END CERTIFICATE-----
]]
local ARI_ID = "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"

t.test("cert_id: the RFC 9773 vector, leading zero kept", function()
    t.eq(acme.cert_id(ARI_PEM), ARI_ID)
    local der = core.pem_decode(ARI_PEM)
    t.eq(acme.cert_id(der), ARI_ID)
    local id, err = acme.cert_id("not a cert")
    t.eq(id, nil)
    t.ok(acme.errors.iserror(err))
end)

t.test("renewal info: unauthenticated GET, window, Retry-After clamped", function()
    local reply = {}
    local c, ca, clock = setup{ renewal_info = true, renewal = function(certid)
        reply.certid = certid
        local h = { ["content-type"] = "application/json" }
        if reply.retry then h["retry-after"] = reply.retry end
        return 200, h, reply.body or cjson.encode({
            suggestedWindow = { start = "2025-01-02T04:00:00Z", ["end"] = "2025-01-03T04:00:00Z" },
            explanationURL = "https://ca.test/why" })
    end }
    local ri = assert(c:get_renewal_info(ARI_PEM))
    t.eq(reply.certid, ARI_ID)
    t.eq(ri.start, 1735790400)
    t.eq(ri["end"], 1735876800)
    t.eq(ri.explanation_url, "https://ca.test/why")
    t.eq(ri.retry_after, 21600, "no Retry-After: 6 hours")
    local r = ca.log[#ca.log]
    t.eq(r.method, "GET")
    t.eq(r.url, ca.base .. "/renewal-info/" .. ARI_ID)
    t.eq(r.body, nil)
    reply.retry = "10"
    t.eq(assert(c:get_renewal_info(ARI_PEM)).retry_after, 60)
    reply.retry = "999999"
    t.eq(assert(c:get_renewal_info(ARI_PEM)).retry_after, 86400)
    reply.retry = os.date("!%a, %d %b %Y %H:%M:%S GMT", math.floor(clock.now()) + 7200)
    t.eq(assert(c:get_renewal_info(ARI_PEM)).retry_after, 7200)
    reply.retry = nil
    reply.body = cjson.encode({ suggestedWindow = { start = "2025-01-03T04:00:00Z",
        ["end"] = "2025-01-02T04:00:00Z" } })
    local _, err = c:get_renewal_info(ARI_PEM)
    t.eq(err.kind, "response")
    reply.body = '{"suggestedWindow":null}'
    _, err = c:get_renewal_info(ARI_PEM)
    t.eq(err.kind, "response")
    local c2 = setup()
    _, err = c2:get_renewal_info(ARI_PEM)
    t.eq(err.kind, "unsupported")
end)

t.test("parsers treat cjson.null and wrong types as absent", function()
    local parse = require("luacme.client").parse
    local o = assert(parse.order({ status = "pending", finalize = "https://x/f",
        authorizations = { "https://x/a", cjson.null, 5 }, certificate = cjson.null,
        error = cjson.null, identifiers = { { type = "dns", value = cjson.null },
            { type = "dns", value = "a" } }, expires = 12 }, "https://x/o"))
    t.eq(#o.authz_urls, 1)
    t.eq(o.cert_url, nil)
    t.eq(o.error, nil)
    t.eq(#o.identifiers, 1)
    t.eq(o.expires, nil)
    local _, err = parse.order({ status = cjson.null, finalize = "f" }, "u")
    t.eq(err.kind, "response")
    local a = assert(parse.authz({ status = "valid", identifier = { type = "dns",
        value = "a" }, wildcard = cjson.null, challenges = { cjson.null,
        { type = "http-01", url = "https://x/c", token = cjson.null } } }, "https://x/a"))
    t.eq(a.wildcard, false)
    t.eq(#a.challenges, 1)
    t.eq(a.challenges[1].token, nil)
    _, err = parse.authz("nope", "u")
    t.eq(err.kind, "response")
    local acct = parse.account({ status = "valid", contact = cjson.null, orders = 3 }, "u")
    t.eq(#acct.contact, 0)
    t.eq(acct.orders_url, nil)
end)

t.test("the leaf must match the certificate key when one is given", function()
    local dir = t.tmpdir()
    local pem = selfsigned(dir, "Leaf A")
    local leaf_key = assert(core.key_load(t.readfile(dir .. "/LeafA.key")))
    local c, ca = setup{ chains = { pem } }
    local res = assert(c:issue{ identifiers = acme.domain_ids("a.example"),
        csr = "x", hooks = { recorder(ca).hook }, key = leaf_key })
    t.eq(#res.certs, 1)
    local _, err = c:issue{ identifiers = acme.domain_ids("b.example"),
        csr = "x", hooks = { recorder(ca).hook }, key = KEY }
    t.eq(err.kind, "response")
    t.match(err.detail, "not for the CSR's key")
end)

t.test("an order that has already expired is not worked on", function()
    local c, ca = setup()
    ca:once("POST", "/order-plz", function(_, s, h, b)
        local doc = cjson.decode(b)
        doc.expires = "2001-01-01T00:00:00Z"
        return s, h, cjson.encode(doc)
    end)
    local rec = recorder(ca)
    local res, err = c:issue{ identifiers = acme.domain_ids("a.example"),
        csr = "x", hooks = { rec.hook } }
    t.eq(res, nil)
    t.eq(err.kind, "order")
    t.match(err.detail, "expired")
    t.eq(rec.deploys, 0)
    t.eq(#ca:find("POST", "/authZ/"), 0)
end)

t.test("alreadyReplaced: the order is asked for again without replaces", function()
    local c, ca = setup{ renewal_info = true }
    ca:once("POST", "/order-plz", { status = 409, headers = {
        ["content-type"] = "application/problem+json" },
        body = cjson.encode({ type = URN .. "alreadyReplaced",
            detail = "already replaced by another order" }) })
    local o = assert(c:authorize_order(acme.domain_ids("a.example"),
        { replaces = "aaa.bbb" }))
    t.eq(o.replaces_dropped, true)
    local sent = ca:find("POST", "/order-plz")
    t.eq(#sent, 2)
    t.eq(sent[1].payload_json.replaces, "aaa.bbb")
    t.eq(sent[2].payload_json.replaces, nil)
    -- any other error is not retried
    ca:once("POST", "/order-plz", { status = 403, headers = {
        ["content-type"] = "application/problem+json" },
        body = cjson.encode({ type = URN .. "unauthorized", detail = "no" }) })
    local _, err = c:authorize_order(acme.domain_ids("a.example"),
        { replaces = "aaa.bbb" })
    t.ok(acme.is_error(err, "unauthorized"))
    t.eq(#ca:find("POST", "/order-plz"), 3)
end)

-- RFC 8555 §7.1.3 (A#44): identifiers and authorizations of an order are
-- immutable; an order that changes them between polls is treated as
-- invalid: nothing is finalized, the challenges are cleaned up.
t.test("an order whose identifiers or authorizations change is invalid", function()
    for _, case in ipairs({
        { "identifiers", function(doc)
            doc.identifiers[1].value = "other.example"
        end },
        { "authorizations", function(doc)
            doc.authorizations[#doc.authorizations + 1] =
                "https://ca.test/authZ/999"
        end },
    }) do
        local c, ca = setup{ validation_delay = 0.2 }
        ca:once("POST", "/my-order/", function(_, s, h, b)
            local doc = cjson.decode(b)
            case[2](doc)
            return s, h, cjson.encode(doc)
        end)
        local rec = recorder(ca)
        local res, err = c:issue{ identifiers = acme.domain_ids("a.example",
            "b.example"), csr = "x", hooks = { rec.hook } }
        t.eq(res, nil, case[1])
        t.eq(err.kind, "order", case[1])
        t.eq(err.changed, true, case[1])
        t.match(err.detail, "changed the identifiers or authorizations")
        t.eq(#ca:find("POST", "/my-order/"), 1, "stopped at the first poll")
        t.eq(#ca:find("POST", "/finalize-order/"), 0, "nothing finalized")
        t.eq(rec.cleanups, 2, "both deployed challenges cleaned up")
    end
    -- the same sets in another order are no change (Pebble shuffles)
    local c, ca = setup{ validation_delay = 0.2 }
    ca:once("POST", "/my-order/", function(_, s, h, b)
        local doc = cjson.decode(b)
        local ids, az = doc.identifiers, doc.authorizations
        ids[1], ids[2] = ids[2], ids[1]
        az[1], az[2] = az[2], az[1]
        ids[1].value = ids[1].value:upper()
        return s, h, cjson.encode(doc)
    end)
    assert(c:issue{ identifiers = acme.domain_ids("a.example", "b.example"),
        csr = "x", hooks = { recorder(ca).hook } })
end)

-- A#9.6: the order's identifiers are checked also when no
-- authorization needs solving, and after finalize.
t.test("a ready order for other names, or one changed by finalize, is refused", function()
    -- ready at creation (authorization reused) but for another name
    local c, ca = setup{ reuse = { ["a.example"] = true } }
    ca:once("POST", "/order-plz", function(_, s, h, b)
        local doc = cjson.decode(b)
        t.eq(doc.status, "ready")
        doc.identifiers[1].value = "victim.example"
        return s, h, cjson.encode(doc)
    end)
    local res, err = c:issue{ identifiers = acme.domain_ids("a.example"),
        csr = "x", hooks = { recorder(ca).hook } }
    t.eq(res, nil)
    t.eq(err.kind, "response")
    t.match(err.detail, "victim.example")
    t.eq(#ca:find("POST", "/finalize-order/"), 0, "nothing finalized")
    -- ready at creation with one name fewer than asked
    c, ca = setup{ reuse = { ["a.example"] = true, ["b.example"] = true } }
    ca:once("POST", "/order-plz", function(_, s, h, b)
        local doc = cjson.decode(b)
        table.remove(doc.identifiers)
        return s, h, cjson.encode(doc)
    end)
    res, err = c:issue{ identifiers = acme.domain_ids("a.example",
        "b.example"), csr = "x", hooks = { recorder(ca).hook } }
    t.eq(res, nil)
    t.eq(err.kind, "response")
    t.eq(#ca:find("POST", "/finalize-order/"), 0, "nothing finalized")
    -- the order names another identifier from finalize on
    c, ca = setup()
    local function victim(_, s, h, b)
        local doc = cjson.decode(b)
        doc.identifiers[1].value = "victim.example"
        return s, h, cjson.encode(doc)
    end
    ca:once("POST", "/finalize-order/", function(...)
        ca:once("POST", "/my-order/", victim, 20)
        return victim(...)
    end)
    res, err = c:issue{ identifiers = acme.domain_ids("a.example"),
        csr = "x", hooks = { recorder(ca).hook } }
    t.eq(res, nil)
    t.eq(err.kind, "order")
    t.eq(err.changed, true)
    -- and unchanged, both paths issue
    c, ca = setup{ reuse = { ["a.example"] = true } }
    assert(c:issue{ identifiers = acme.domain_ids("A.example"), csr = "x",
        hooks = { recorder(ca).hook } })
end)

-- A#42 with hostile data: a pending authorization for a name that was
-- not ordered is refused before any hook is asked to publish a response.
t.test("an authorization for a name not ordered is refused, nothing deployed", function()
    for _, rewrite in ipairs({
        function(doc) doc.identifier.value = "victim.example" end,
        function(doc) doc.identifier.value = "../../etc" end,
        function(doc) doc.wildcard = true end,
        function(doc) doc.identifier.type = "ip" end,
    }) do
        local c, ca = setup()
        ca:once("POST", "/authZ/", function(_, s, h, b)
            local doc = cjson.decode(b)
            rewrite(doc)
            return s, h, cjson.encode(doc)
        end)
        local rec = recorder(ca)
        local res, err = c:issue{ identifiers = acme.domain_ids("a.example"),
            csr = "x", hooks = { rec.hook } }
        t.eq(res, nil)
        t.eq(err.kind, "response")
        t.match(err.detail, "did not ask for")
        t.eq(rec.deploys, 0)
        t.eq(#ca:find("POST", "/chalZ/"), 0)
        t.eq(#ca:find("POST", "/finalize-order/"), 0)
    end
    -- what was ordered passes in every spelling a CA may use
    local c, ca = setup()
    ca:once("POST", "/authZ/", function(_, s, h, b)
        local doc = cjson.decode(b)
        doc.identifier.value = doc.identifier.value:upper()
        return s, h, cjson.encode(doc)
    end)
    local rec = recorder(ca, { "dns-01" })
    assert(c:issue{ identifiers = acme.domain_ids("a.example", "*.a.example",
        "Légô.example"), csr = "x", hooks = { rec.hook } })
    t.eq(#rec.items, 3)
    local c2, ca2 = setup()
    ca2:once("POST", "/authZ/", function(_, s, h, b)
        local doc = cjson.decode(b)
        doc.identifier.value = "2001:0db8:0:0:0:0:0:1"
        return s, h, cjson.encode(doc)
    end)
    assert(c2:issue{ identifiers = acme.ip_ids("2001:db8::1"), csr = "x",
        hooks = { recorder(ca2).hook } })
end)

-- A#38 (RFC 8555 §11.1): an account key is never a certificate key. A
-- CSR for it is refused before it is sent; so is a rollover to the key
-- already in use.
t.test("the account key is refused in a CSR and as a rollover target", function()
    local rsa = core.key_generate("rsa2048")
    local function spki(der) return (core.csr_info(der) or {}).public_key end
    for _, k in ipairs({ KEY, rsa }) do
        local csr = assert(core.csr{ key = k, names = { "a.example" } })
        t.eq(spki(csr), core.pem_decode(k:public_pem()))
    end
    t.eq(spki("not DER"), nil)
    local good = assert(core.csr{ key = rsa, names = { "a.example" } })
    t.eq(spki(good:sub(1, #good - 80)), nil, "truncated")
    t.eq(spki(""), nil)

    local c, ca = setup()
    local rec = recorder(ca)
    local bad = assert(core.csr{ key = KEY, names = { "a.example" } })
    local res, err = c:issue{ identifiers = acme.domain_ids("a.example"),
        csr = bad, hooks = { rec.hook } }
    t.eq(res, nil)
    t.eq(err.kind, "csr")
    t.match(err.detail, "account key")
    t.eq(#ca:find("POST", "/finalize-order/"), 0, "the CSR was not sent")
    t.eq(rec.cleanups, 1)
    -- the order is still ready: a CSR with another key is finalized
    local o = assert(c:get_order(
        ca:find("POST", "/order-plz")[1].reply_headers.location))
    t.eq(o.status, "ready")
    local certs = assert(c:create_order_cert(o.finalize_url, good, false))
    t.eq(#certs, 1)
    t.eq(ca:find("POST", "/finalize-order/")[1].payload_json.csr,
        core.b64url_encode(good))

    local n = #ca.log
    local ok
    ok, err = c:account_key_rollover(KEY)
    t.eq(ok, nil)
    t.eq(err.kind, "key")
    t.eq(#ca.log, n, "nothing sent")
end)

-- A#46: challenge types the client does not know (newer drafts) and
-- challenge objects it cannot use are ignored, not errors.
t.test("unknown challenge types and broken challenge objects are ignored", function()
    local c, ca = setup()
    ca:once("POST", "/authZ/", function(_, s, h, b)
        local doc = cjson.decode(b)
        table.insert(doc.challenges, 1, { type = "dns-account-01",
            url = ca.base .. "/chalZ/777", token = "tok", status = "pending" })
        table.insert(doc.challenges, 1, { type = "http-01", status = "pending" })
        table.insert(doc.challenges, 1, "not an object")
        return s, h, cjson.encode(doc)
    end)
    local rec = recorder(ca)
    assert(c:issue{ identifiers = acme.domain_ids("a.example"), csr = "x",
        hooks = { rec.hook } })
    t.eq(#rec.items, 1)
    t.eq(rec.items[1].type, "http-01")
    t.match(rec.items[1].uri, "/chalZ/%d+$")
    t.eq(#ca:find("POST", "/chalZ/777"), 0, "the unknown one is left alone")
end)

-- A#80: every wait is bounded, also the walk through an orders list whose
-- server hands out a new "next" page every time.
t.test("an orders list that never ends is cut at MAX_ORDER_PAGES", function()
    local client_mod = require "luacme.client"
    local c, ca = setup()
    local served = 0
    ca:route("POST", "^/endless/(%d+)$", function(rec, _, n)
        served = served + 1
        local h = { ["content-type"] = "application/json",
            ["replay-nonce"] = ca.nonce() }
        -- (ends after 300 pages, so a client without the cap fails here
        -- instead of hanging)
        if tonumber(n) < 300 then
            h.link = '<' .. ca.base .. '/endless/' .. (n + 1) .. '>;rel="next"'
        end
        t.eq(rec.payload, "")
        return 200, h, '{"orders":[]}'
    end)
    table.insert(ca.routes, 1, table.remove(ca.routes))
    ca:once("POST", "/my-account/", function(_, s, h, b)
        local doc = cjson.decode(b)
        doc.orders = ca.base .. "/endless/1"
        return s, h, cjson.encode(doc)
    end)
    local urls, err = c:list_orders()
    t.eq(urls, nil)
    t.eq(err.kind, "too_large")
    t.eq(served, client_mod.MAX_ORDER_PAGES)
end)

-- A#45: a pending authorization past its expires is not worked on.
t.test("an authorization that has already expired is not worked on", function()
    local c, ca = setup()
    ca:once("POST", "/authZ/", function(_, s, h, b)
        local doc = cjson.decode(b)
        doc.expires = "2001-01-01T00:00:00Z"
        return s, h, cjson.encode(doc)
    end)
    local rec = recorder(ca)
    local res, err = c:issue{ identifiers = acme.domain_ids("a.example"),
        csr = "x", hooks = { rec.hook } }
    t.eq(res, nil)
    t.eq(err.kind, "authorization")
    t.match(err.detail, "a%.example is expired")
    t.eq(rec.deploys, 0)
    t.eq(#ca:find("POST", "/chalZ/"), 0)
    t.eq(#ca:find("POST", "/finalize-order/"), 0)
end)
