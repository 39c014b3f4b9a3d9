-- Pure helpers of the protocol client: Link, Retry-After, URI
-- resolution, dates, JSON, PEM splitting, backoff, identifiers, errors.
local t = require "testlib"
local util = require "luacme.util"
local ident = require "luacme.ident"
local errors = require "luacme.errors"

local function same(got, want, msg)
    t.eq(#got, #want, (msg or "list") .. " length")
    for i = 1, #want do t.eq(got[i], want[i], (msg or "list") .. "[" .. i .. "]") end
end

-- B.9: Go's TestLinkHeader.
local GO_LINKS = {
    '<https://example.com/acme/new-authz>;rel="next"',
    '<https://example.com/acme/recover-reg>; rel=recover',
    '<https://example.com/acme/terms>; foo=bar; rel="terms-of-service"',
    '<dup>;rel="next"',
}

local function check_go_links(h)
    local base = "https://example.com/acme/x"
    same(util.link(h, "next"), { "https://example.com/acme/new-authz", "dup" },
        "next")
    same(util.link(h, "recover"), { "https://example.com/acme/recover-reg" })
    same(util.link(h, "terms-of-service"), { "https://example.com/acme/terms" })
    same(util.link(h, "empty"), {})
    -- relative URIs resolve against the request URL
    same(util.link(h, "next", base),
        { "https://example.com/acme/new-authz", "https://example.com/acme/dup" })
end

t.test("Link: repeated header lines (B.9)", function()
    check_go_links({ link = GO_LINKS })
end)

t.test("Link: the same links comma-joined in one header", function()
    check_go_links({ link = table.concat(GO_LINKS, ", ") })
    check_go_links({ link = table.concat(GO_LINKS, ",") })
end)

t.test("Link: rel lists, quoted commas, case, Pebble's forms", function()
    local h = { link = {
        '<https://127.0.0.1:14000/dir>;rel="index"',
        '<https://h/certZ/0a/alternate/1>;rel="alternate", ' ..
            '<https://h/x,y>; title="a, b; c"; rel="Alternate index"',
        '</list-orderz/1/page/2>;rel="next"',
    } }
    local l = util.links(h, "https://h/list-orderz/1")
    same(l.index, { "https://127.0.0.1:14000/dir", "https://h/x,y" })
    same(l.alternate, { "https://h/certZ/0a/alternate/1", "https://h/x,y" })
    same(l.next, { "https://h/list-orderz/1/page/2" })
    -- garbage does not throw and yields nothing
    same(util.link({ link = "garbage, <x; rel=next" }, "next"), {})
    same(util.link({ link = "<a>, <b>;rel=up" }, "up"), { "b" })
end)

t.test("resolve follows RFC 3986 5.4 examples", function()
    local base = "http://a/b/c/d;p?q"
    local cases = {
        ["g"] = "http://a/b/c/g", ["./g"] = "http://a/b/c/g",
        ["g/"] = "http://a/b/c/g/", ["/g"] = "http://a/g",
        ["//g"] = "http://g", ["?y"] = "http://a/b/c/d;p?y",
        ["g?y"] = "http://a/b/c/g?y", ["#s"] = "http://a/b/c/d;p?q#s",
        [""] = "http://a/b/c/d;p?q", ["../g"] = "http://a/b/g",
        ["../../g"] = "http://a/g", ["../../../g"] = "http://a/g",
        ["/./g"] = "http://a/g", ["g/../h"] = "http://a/b/c/h",
        ["https://x/y"] = "https://x/y",
    }
    for ref, want in pairs(cases) do
        t.eq(util.resolve(base, ref), want, ref)
    end
end)

-- B.8 with now = 2017-04-27 10:00:00 UTC.
t.test("Retry-After: seconds and HTTP dates (B.8)", function()
    local now = util.epoch(2017, 4, 27, 10, 0, 0)
    t.eq(now, 1493287200)
    local function ra(v) return util.retry_after({ ["retry-after"] = v }, now) end
    t.eq(ra("120"), 120)
    t.eq(ra("Thu, 27 Apr 2017 11:00:00 GMT"), 3600)
    t.eq(ra("Thu Apr 27 11:00:00 2017"), 3600)
    t.eq(ra("Tue Apr 27 11:00:00 2017"), 3600) -- weekday not checked
    t.eq(ra("Thursday, 27-Apr-17 11:00:00 GMT"), 3600)
    t.eq(ra(" 7 "), 7)
    for _, bad in ipairs({ "soon", "1.5", "", "Thu, 32 Apr 2017 11:00:00 GMT",
        "Thu, 27 Foo 2017 11:00:00 GMT", "99999999999999999999" }) do
        t.eq(ra(bad), nil, bad)
    end
    t.eq(util.retry_after({}, now), nil)
end)

-- A#9.2: a hint is a floor for politeness, not a licence to hammer.
t.test("Retry-After of 0, negative or in the past waits at least 1 s", function()
    local now = util.epoch(2017, 4, 27, 10, 0, 0)
    local function ra(v) return util.retry_after({ ["retry-after"] = v }, now) end
    t.eq(util.MIN_RETRY_AFTER, 1)
    t.eq(ra("0"), 1)
    t.eq(ra("-5"), 1)
    t.eq(ra("Wed, 26 Apr 2017 11:00:00 GMT"), 1, "past date")
    t.eq(ra("Thu, 27 Apr 2017 10:00:00 GMT"), 1, "now")
    t.eq(ra("1"), 1)
    t.eq(ra("2"), 2)
end)

t.test("RFC 3339 parse and format", function()
    t.eq(util.parse_rfc3339("2017-04-27T10:00:00Z"), 1493287200)
    t.eq(util.parse_rfc3339("2017-04-27T12:00:00+02:00"), 1493287200)
    t.eq(util.parse_rfc3339("2017-04-27T09:30:00-00:30"), 1493287200)
    t.eq(util.parse_rfc3339("2017-04-27T10:00:00.5Z"), 1493287200.5)
    t.eq(util.parse_rfc3339("1970-01-01T00:00:00Z"), 0)
    t.eq(util.parse_rfc3339("2017-04-27"), nil)
    t.eq(util.parse_rfc3339("2017-04-27T10:00:00"), nil)
    t.eq(util.parse_rfc3339({}), nil)
    t.eq(util.format_rfc3339(1493287200), "2017-04-27T10:00:00Z")
    t.eq(util.format_rfc3339(951782400), "2000-02-29T00:00:00Z")
    t.eq(util.parse_rfc3339("2000-02-29T00:00:00Z"), 951782400)
end)

t.test("JSON encoder: sorted, arrays explicit, no escaped slashes", function()
    t.eq(util.json({}), "{}")
    t.eq(util.json(util.array()), "[]")
    t.eq(util.json({ b = 1, a = "x/y", c = { true, false } }),
        '{"a":"x/y","b":1,"c":[true,false]}')
    t.eq(util.json({ reason = 4.0 }), '{"reason":4}')
    t.eq(util.json({ s = 'q"\\\n\1' }), '{"s":"q\\"\\\\\\n\\u0001"}')
    t.eq(util.json({ r = util.raw('{"x":1}') }), '{"r":{"x":1}}')
    t.eq(util.json("légô"), '"légô"')
    t.raises(function() util.json({ [1] = 1, x = 2 }) end, "key is not a string")
    t.raises(function() util.json("\255") end, "UTF%-8")
    t.raises(function() util.json(0 / 0) end, "cannot encode")
end)

local PEM1 = "-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n"
local PEM2 = "-----BEGIN CERTIFICATE-----\r\n/w+A\r\n-----END CERTIFICATE-----\r\n"

t.test("pem_certs splits chains and refuses private keys", function()
    local d = assert(util.pem_certs(PEM1 .. "text between\n" .. PEM2))
    t.eq(#d, 2)
    t.eq(d[1], "\0\1\2")
    t.eq(d[2], "\255\15\128")
    t.eq(util.der_to_pem("\0\1\2"), PEM1)
    local _, e = util.pem_certs(PEM1 .. "-----BEGIN PRIVATE KEY-----\nAAEC\n" ..
        "-----END PRIVATE KEY-----\n")
    t.eq(e.kind, "private_key")
    _, e = util.pem_certs(PEM1 .. "-----BEGIN EC PRIVATE KEY-----\nAA\n-----END EC PRIVATE KEY-----\n")
    t.eq(e.kind, "private_key")
    _, e = util.pem_certs("")
    t.eq(e.kind, "response")
    _, e = util.pem_certs("-----BEGIN CERTIFICATE-----\nAAEC\n")
    t.match(e.detail, "truncated")
    _, e = util.pem_certs("-----BEGIN CERTIFICATE-----\nA-_C\n-----END CERTIFICATE-----\n")
    t.match(e.detail, "base64")
    _, e = util.pem_certs(string.rep(PEM1, util.MAX_CHAIN + 1))
    t.eq(e.kind, "too_large")
end)

local function schedule(first, cap, deadline, latency, hints)
    local clock = 0
    local next_wait = util.backoff(first, cap, deadline,
        function() return clock end)
    local at = {}
    for i = 1, 100 do
        clock = clock + (latency or 0)       -- the poll's reply
        local w = next_wait(hints and hints[i])
        if not w then break end
        clock = clock + w
        at[#at + 1] = math.floor(clock * 1000 + 0.5) / 1000
    end
    return at
end

t.test("backoff: polls from 15 ms, gently, then at most 2 a second", function()
    same(schedule(0.015, 5, 30), { 0.015, 0.05, 0.15, 0.45, 1.1, 2.1, 4.2,
        8.4, 13.4, 18.4, 23.4, 28.4 })
    -- a CA taking 2 s to validate: five polls miss, as with the doubling
    -- schedule this replaced (0.05 .. 1.55 s), and the sixth sees it
    local before2 = 0
    for _, s in ipairs(schedule(0.015, 5, 30)) do
        if s < 2 then before2 = before2 + 1 end
    end
    t.eq(before2, 5)
    -- slow replies: times already passed are skipped, and after 2 s no
    -- wait is below 0.5 s, however slow or fast the server answers
    local at = schedule(0.015, 5, 30, 0.3)
    same(at, { 0.45, 1.1, 2.1, 4.2, 8.4, 13.4, 18.4, 23.4, 28.4 })
    for _, lat in ipairs({ 0, 0.01, 0.2, 0.49, 0.7 }) do
        local prev
        for _, s in ipairs(schedule(0.015, 5, 60, lat)) do
            if prev and prev >= 2 then
                t.ok(s - prev >= 0.5 + lat - 1e-9, "gap after 2 s at latency " .. lat)
            end
            prev = s
        end
    end
    -- the cap bounds the waits; first scales the whole schedule
    same(schedule(0.015, 1, 6), { 0.015, 0.05, 0.15, 0.45, 1.1, 2.1, 3.1,
        4.1, 5.1 })
    same(schedule(0.15, 5, 30), { 0.15, 0.5, 1.5, 4.5, 11, 21, 26 })
end)

t.test("backoff: a hint replaces the wait; the deadline ends it", function()
    local clock = 0
    local next_wait = util.backoff(0.015, 5, 10, function() return clock end)
    t.eq(next_wait(0), 0.015, "a hint of 0: still the first wait")
    t.eq(next_wait(3), 3)
    clock = 3
    t.ok(math.abs(next_wait() - 1.2) < 1e-9, "on from 3 s: the 4.2 s poll")
    t.eq(next_wait(0), 0.5, "a hint of 0 after 2 s: the 0.5 s floor")
    t.eq(next_wait(11), nil) -- a hint past the deadline ends the wait
    clock = 9.5
    t.eq(next_wait(), nil) -- so does a computed wait past it
end)

t.test("punycode and IDNA: RFC 3492 samples and lego's name", function()
    t.eq(ident.domain("légô.localhost"), "xn--lg-bja9b.localhost")
    t.eq(ident.domain("LÉGÔ.LocalHost"), "xn--lg-bja9b.localhost")
    t.eq(ident.domain("bücher.example"), "xn--bcher-kva.example")
    t.eq(ident.domain("*.Bücher.Example"), "*.xn--bcher-kva.example")
    t.eq(ident.domain("ПРЕЗИДЕНТ.рф"), "xn--d1abbgf6aiiy.xn--p1ai")
    t.eq(ident.domain("пример.испытание"), "xn--e1afmkfd.xn--80akhbyknj4f")
    -- RFC 3492 7.1 (A) Arabic (Egyptian), checked against the RFC
    local cps = { 0x0644, 0x064A, 0x0647, 0x0645, 0x0627, 0x0628, 0x062A,
        0x0643, 0x0644, 0x0645, 0x0648, 0x0634, 0x0639, 0x0631, 0x0628, 0x064A,
        0x061F }
    t.eq(ident.punycode(cps), "egbpdaj6bu4bxfgehfvwxn")
    -- (L) 3<nen>B<gumi><kinpachi><sensei>
    t.eq(ident.punycode({ 0x33, 0x5E74, 0x42, 0x7D44, 0x91D1, 0x516B, 0x5148,
        0x751F }), "3B-ww4c5e180e575a65lsy2b")
    t.eq(ident.domain("Example.COM"), "example.com")
end)

t.test("domain names are refused before sending", function()
    for _, bad in ipairs({ "", "example.com.", "a..b", "-a.example",
        "a-.example", "a_b.example", "a b.example", "*.*.example", "a.*.example",
        "foo*.example", "127.0.0.1", "::1", string.rep("a", 64) .. ".example",
        string.rep("abcdefghi.", 26) .. "com", "\255.example", "x\0y.example",
        "légô .example" }) do
        t.eq(ident.domain(bad), nil, bad)
    end
    t.eq(ident.domain("a.b-c.example"), "a.b-c.example")
    t.eq(ident.domain("xn--lg-bja9b.localhost"), "xn--lg-bja9b.localhost")
    t.eq(ident.domain("localhost"), "localhost")
end)

t.test("IP addresses: canonical IPv4 and RFC 5952 IPv6", function()
    local cases = {
        ["127.0.0.1"] = "127.0.0.1",
        ["2001:DB8::1"] = "2001:db8::1",
        ["2001:0db8:0000:0000:0000:0000:0000:0001"] = "2001:db8::1",
        ["2001:db8:0:0:1:0:0:1"] = "2001:db8::1:0:0:1",
        ["2001:db8:0:1:1:1:1:1"] = "2001:db8:0:1:1:1:1:1",
        ["2001:0:0:1:0:0:0:1"] = "2001:0:0:1::1",
        ["0:0:0:0:0:0:0:0"] = "::",
        ["::1"] = "::1",
        ["1::"] = "1::",
        ["::ffff:192.0.2.1"] = "::ffff:192.0.2.1",
        ["::FFFF:c000:0201"] = "::ffff:192.0.2.1",
        ["64:ff9b::192.0.2.33"] = "64:ff9b::c000:221",
        ["fe80:0:0:0:0:0:0:1"] = "fe80::1",
    }
    for input, want in pairs(cases) do t.eq(ident.ip(input), want, input) end
    for _, bad in ipairs({ "300.1.1.1", "1.2.3", "01.2.3.4", "1.2.3.4.5",
        "1:2:3:4:5:6:7:8:9", "1::2::3", "12345::", "::1%eth0", "g::1",
        "1.2.3.4::", "", "example.com" }) do
        t.eq(ident.ip(bad), nil, bad)
    end
    t.eq(ident.normalize({ type = "ip", value = "2001:DB8::0:1" }).value, "2001:db8::1")
    t.eq(ident.normalize({ type = "email", value = "x" }), nil)
end)

t.test("errors: one metatable, is() by kind, token or URN", function()
    local e = errors.problem(400, {
        type = "urn:ietf:params:acme:error:badNonce",
        detail = "JWS has an invalid\27[2J anti-replay nonce",
        status = 400, instance = require("cjson").null,
    })
    t.ok(errors.iserror(e))
    t.eq(e.kind, "acme")
    t.eq(e.instance, nil)
    t.ok(errors.is(e, "badNonce"))
    t.ok(errors.is(e, "urn:ietf:params:acme:error:badNonce"))
    t.ok(not errors.is(e, "badnonce"))
    t.ok(not errors.is(e, "Nonce"))
    t.ok(errors.is(e, "acme"))
    t.eq(tostring(e), "badNonce: JWS has an invalid\\x1b[2J anti-replay nonce")
    local c = errors.new("timeout", "operation timed out")
    t.eq(tostring(c), "timeout: operation timed out")
    t.ok(errors.is(c, "timeout"))
    t.ok(not errors.is("x", "timeout"))
    t.ok(getmetatable(c) == getmetatable(e))
end)

t.test("loading the client modules leaves _G unchanged", function()
    local before = {}
    for k in pairs(_G) do before[k] = true end
    for _, m in ipairs({ "luacme", "luacme.client", "luacme.errors",
        "luacme.util", "luacme.ident", "luacme.issuance",
        "luacme.challenge" }) do
        package.loaded[m] = nil
        require(m)
    end
    for k in pairs(_G) do t.ok(before[k], "new global " .. tostring(k)) end
end)
