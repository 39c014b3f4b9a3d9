-- What every request must get right, checked on what the client SENT:
-- nonces, badNonce, Content-Type, url, kid/jwk, payloads, problems,
-- Retry-After, retries and lost replies. Runs over the fake CA in
-- tests/lua/fakehttp.lua with a fake clock: no time is spent.
local t = require "testlib"
local fake = require "fakehttp"
local acme = require "luacme"
local core = require "luacme.core"
local cjson = require "cjson"

local KEY = core.key_generate("ec256")
local KEY2 = core.key_generate("ec256")

local function setup(opts)
    opts = opts or {}
    return fake.client(opts.key or KEY, opts)
end

local function registered(opts)
    local c, ca, clock = setup(opts)
    assert(c:register({ contact = { "mailto:a@example.com" } }, acme.accept_tos))
    return c, ca, clock
end

local function problem_reply(status, typ, detail, extra)
    local h = { ["content-type"] = "application/problem+json; charset=utf-8" }
    for k, v in pairs(extra or {}) do h[k] = v end
    return { status = status, headers = h, body = cjson.encode({
        type = "urn:ietf:params:acme:error:" .. typ, detail = detail, status = status }) }
end

-- Every POST in the log: exact Content-Type, url = request URL, a nonce,
-- exactly one of jwk/kid, alg of the key, verified signature.
local function check_posts(ca)
    for _, r in ipairs(ca.log) do
        if r.method == "POST" then
            t.eq(r.headers["content-type"], "application/jose+json", r.url)
            t.ok(r.protected, "JWS decoded for " .. r.url)
            t.eq(r.protected.url, r.url, "url byte-identical")
            t.ok(type(r.protected.nonce) == "string", "nonce present")
            t.ok((r.protected.jwk == nil) ~= (r.protected.kid == nil), "jwk xor kid")
            t.eq(r.headers["replay-nonce"], nil, "no Replay-Nonce request header")
            if r.status ~= 415 and r.status ~= "lost" and r.status ~= "connect" then
                -- canned replies never reached the CA's check: verify here
                local input = r.protected_b64 .. "." .. r.payload_b64
                t.ok(r.verified or r.status == 400 or KEY:verify(input, r.signature) or
                    KEY2:verify(input, r.signature), "signature checked for " .. r.url)
            end
        end
    end
end

t.test("discover reads the directory once, meta included, nulls absent", function()
    local c, ca = setup{ directory = function(d)
        d.meta.website = "https://ca.test/about"
        d.meta.caaIdentities = { "ca.test" }
        d.meta.profiles = { classic = "the default", shortlived = "6 days" }
        d.newAuthz = cjson.null
        d.unknownThing = { 1, 2 }
    end }
    local d = assert(c:discover())
    t.eq(d.new_nonce, ca.base .. "/nonce-plz")
    t.eq(d.new_account, ca.base .. "/sign-me-up")
    t.eq(d.new_order, ca.base .. "/order-plz")
    t.eq(d.revoke_cert, ca.base .. "/revoke-cert")
    t.eq(d.key_change, ca.base .. "/rollover-account-key")
    t.eq(d.new_authz, nil)
    t.eq(d.renewal_info, nil)
    t.eq(d.meta.terms_of_service, "data:text/plain,Do%20what%20thou%20wilt")
    t.eq(d.meta.website, "https://ca.test/about")
    t.eq(d.meta.caa_identities[1], "ca.test")
    t.eq(d.meta.external_account_required, false)
    t.eq(d.meta.profiles.shortlived, "6 days")
    assert(c:discover())
    t.eq(#ca.log, 1)
    t.eq(ca.log[1].method, "GET")
    t.eq(ca.log[1].url, ca.dir_url)
    t.match(ca.log[1].headers["user-agent"], "^luacme/%d")
    t.eq(ca.log[1].headers["accept-language"], "en", "RFC 8555 §6.1")
end)

t.test("a directory without newNonce or not JSON is an error", function()
    local c = setup{ directory = function(d) d.newNonce = nil end }
    local d, err = c:discover()
    t.eq(d, nil)
    t.eq(err.kind, "response")
    t.match(err.detail, "new_nonce")
    local c2, ca2 = setup()
    ca2:once("GET", "/dir", { status = 200, headers = { ["content-type"] = "text/html" },
        body = "<html>" })
    d, err = c2:discover()
    t.eq(err.kind, "response")
    ca2:once("GET", "/dir", { status = 200, headers = { ["content-type"] = "application/json" },
        body = "{not json" })
    d, err = c2:discover()
    t.eq(err.kind, "response")
    t.match(err.detail, "bad JSON")
end)

t.test("nonces are pooled from every reply: one HEAD for a whole session", function()
    local c, ca = registered()
    local o = assert(c:authorize_order(acme.domain_ids("a.example")))
    assert(c:get_order(o.uri))
    assert(c:get_authorization(o.authz_urls[1]))
    t.eq(#ca:find("HEAD"), 1)
    t.eq(#ca:find("GET"), 1)
    -- each POST used the nonce of the reply just before it
    local last
    for _, r in ipairs(ca.log) do
        if r.method == "POST" then
            t.eq(r.protected.nonce, last, "nonce from the previous reply")
        end
        last = r.reply_headers and r.reply_headers["replay-nonce"]
    end
    check_posts(ca)
    t.eq(c:stats().requests, #ca.log)
    t.eq(c:stats().nonce_requests, 1)
end)

t.test("badNonce is retried with the error reply's nonce, no extra HEAD", function()
    local c, ca = registered()
    local fresh = ca.nonce()
    ca:once("POST", "/order-plz", problem_reply(400, "badNonce",
        "JWS has an invalid anti-replay nonce", { ["replay-nonce"] = fresh }))
    local fresh2 = ca.nonce()
    ca:once("POST", "/order-plz", problem_reply(400, "badNonce", "again",
        { ["replay-nonce"] = fresh2 }))
    local o = assert(c:authorize_order(acme.domain_ids("a.example")))
    t.eq(o.status, "pending")
    local posts = ca:find("POST", "/order-plz")
    t.eq(#posts, 3)
    t.eq(posts[2].protected.nonce, fresh)
    t.eq(posts[3].protected.nonce, fresh2)
    t.eq(posts[1].payload, posts[3].payload, "only the nonce changes")
    t.eq(#ca:find("HEAD"), 1)
    t.eq(c:stats().bad_nonces, 2)
    t.eq(#ca.state.orders and (function()
        local n = 0
        for _ in pairs(ca.state.orders) do n = n + 1 end
        return n
    end)(), 1)
    check_posts(ca)
end)

t.test("badNonce at every attempt fails cleanly within the budget", function()
    local c, ca = registered()
    local rejecting = true
    ca.state.opts.reject_nonce = function() return rejecting end
    local o, err = c:authorize_order(acme.domain_ids("a.example"))
    t.eq(o, nil)
    t.eq(err.kind, "acme")
    t.ok(acme.is_error(err, "badNonce"))
    t.match(tostring(err), "^badNonce: .*gave up after 21 bad nonces")
    t.eq(#ca:find("POST", "/order-plz"), 21)
    t.eq(#ca:find("HEAD"), 1, "the error replies' nonces were used")
    rejecting = false
    assert(c:authorize_order(acme.domain_ids("a.example")), "client still usable")
end)

t.test("a reply without Replay-Nonce leads to one HEAD next time", function()
    local c, ca = registered()
    ca:once("POST", "/my-account/", function(_, s, h, b)
        h["replay-nonce"] = nil
        return s, h, b
    end)
    assert(c:get_reg())
    t.eq(#ca:find("HEAD"), 1)
    assert(c:get_reg())
    t.eq(#ca:find("HEAD"), 2)
    -- a nonce that is not base64url is not pooled
    ca:once("POST", "/my-account/", function(_, s, h, b)
        h["replay-nonce"] = "###"
        return s, h, b
    end)
    assert(c:get_reg())
    assert(c:get_reg())
    t.eq(#ca:find("HEAD"), 3)
    check_posts(ca)
end)

t.test("POST-as-GET payload is empty, challenge payload is {}", function()
    local c, ca = registered{ strict = true }
    local o = assert(c:authorize_order(acme.domain_ids("a.example")))
    local a = assert(c:get_authorization(o.authz_urls[1]))
    local ch = a.challenges[1]
    assert(c:get_challenge(ch.uri))
    assert(c:get_order(o.uri))
    local got = assert(c:accept(ch))
    t.eq(got.status, "pending")
    t.eq(got.up, a.uri, "Link rel=up read")
    assert(c:list_orders())
    for _, r in ipairs(ca.log) do
        if r.method == "POST" and not r.url:find("/chalZ/", 1, true) and
            not r.url:find("/order-plz", 1, true) and
            not r.url:find("/sign-me-up", 1, true) then
            t.eq(r.payload, "", "POST-as-GET " .. r.url)
            t.eq(r.payload_b64, "", "POST-as-GET " .. r.url)
        end
    end
    local chal = ca:find("POST", "/chalZ/")
    t.eq(chal[1].payload, "", "get_challenge")
    t.eq(chal[2].payload, "{}", "accept")
    t.eq(chal[2].payload_b64, "e30")
    t.eq(chal[2].protected.kid, c.kid)
    t.eq(chal[2].protected.alg, "ES256")
    check_posts(ca)
end)

t.test("problem documents with parameters and subproblems", function()
    local c, ca = registered()
    ca:once("POST", "/order-plz", { status = 400, headers = {
        ["content-type"] = "application/problem+json; charset=utf-8" },
        body = [[{
            "type": "urn:ietf:params:acme:error:malformed",
            "detail": "Some of the identifiers requested were rejected",
            "instance": null,
            "subproblems": [
                { "type": "urn:ietf:params:acme:error:malformed",
                  "detail": "Invalid underscore in DNS name \"_example.org\"",
                  "identifier": { "type": "dns", "value": "_example.org" } },
                { "type": "urn:ietf:params:acme:error:rejectedIdentifier",
                  "detail": "This CA will not issue for \"example.net\"",
                  "identifier": { "type": "dns", "value": "example.net" } },
                null, 7
            ]
        }]] })
    local o, err = c:authorize_order(acme.domain_ids("a.example"))
    t.eq(o, nil)
    local sent = ca:find("POST", "/order-plz")
    t.eq(#sent, 1, "a problem is not retried")
    t.eq(sent[1].payload, '{"identifiers":[{"type":"dns","value":"a.example"}]}')
    t.eq(sent[1].protected.kid, c.kid)
    check_posts(ca)
    t.eq(err.kind, "acme")
    t.eq(err.type, "urn:ietf:params:acme:error:malformed")
    t.eq(err.status, 400)
    t.eq(err.instance, nil)
    t.eq(#err.subproblems, 2)
    t.eq(err.subproblems[2].identifier.value, "example.net")
    t.ok(acme.is_error(err.subproblems[2], "rejectedIdentifier"))
    local s = tostring(err)
    t.match(s, "^malformed: Some of the identifiers")
    t.match(s, "dns:example%.net: rejectedIdentifier: This CA will not issue")
    t.ok(err.headers, "headers kept")
end)

t.test("userActionRequired carries instance and the terms link", function()
    local c, ca = registered()
    ca:once("POST", "/order-plz", { status = 403, headers = {
        ["content-type"] = "application/problem+json",
        link = { '<https://ca.test/dir>;rel="index"',
            '<https://ca.test/tos-v2>;rel="terms-of-service"' } },
        body = cjson.encode({ type = "urn:ietf:params:acme:error:userActionRequired",
            detail = "Terms of service have changed",
            instance = "https://ca.test/agree-v2" }) })
    local _, err = c:authorize_order(acme.domain_ids("a.example"))
    t.ok(acme.is_error(err, "userActionRequired"))
    t.eq(err.instance, "https://ca.test/agree-v2")
    t.eq(err.terms_of_service, "https://ca.test/tos-v2")
    t.eq(err.status, 403)
    t.eq(#ca:find("POST", "/order-plz"), 1, "not retried")
    check_posts(ca)
end)

t.test("rateLimited: long Retry-After returned at once, rate_limit reads it", function()
    local c, ca, clock = registered()
    ca:once("POST", "/order-plz", problem_reply(429, "rateLimited",
        "too many new orders", { ["retry-after"] = "3600" }))
    local _, err = c:authorize_order(acme.domain_ids("a.example"))
    t.eq(err.retry_after, 3600)
    t.eq(#clock.slept, 0, "never slept an hour")
    t.eq(#ca:find("POST", "/order-plz"), 1, "not resent")
    local secs, limited = acme.rate_limit(err)
    t.eq(secs, 3600)
    t.eq(limited, true)
    -- as an HTTP date
    local date = os.date("!%a, %d %b %Y %H:%M:%S GMT", clock.now() + 7200)
    ca:once("POST", "/order-plz", problem_reply(429, "rateLimited", "slow down",
        { ["retry-after"] = date }))
    _, err = c:authorize_order(acme.domain_ids("a.example"))
    secs, limited = acme.rate_limit(err)
    t.eq(secs, 7200)
    t.eq(limited, true)
    t.eq(select(2, acme.rate_limit(acme.errors.new("timeout", "x"))), false)
    t.eq(select(2, acme.rate_limit(nil)), false)
end)

-- A#9.6: problem types are case-insensitive URNs (RFC 8141).
t.test("rate_limit matches the problem type case-insensitively", function()
    for _, ty in ipairs({ "urn:ietf:params:acme:error:rateLimited",
        "URN:IETF:PARAMS:ACME:ERROR:RATELIMITED",
        "urn:ietf:params:acme:error:ratelimited" }) do
        local e = acme.errors.new("acme", "slow down",
            { type = ty, status = 400, retry_after = 5 })
        local secs, limited = acme.rate_limit(e)
        t.eq(limited, true, ty)
        t.eq(secs, 5, ty)
    end
    local _, limited = acme.rate_limit(acme.errors.new("acme", "x",
        { type = "urn:ietf:params:acme:error:notRateLimited", status = 400 }))
    t.eq(limited, false)
end)

-- A#9.4: an unreachable CA with --timeout 5 retried silently for 27 s.
t.test("retries stop at the client's deadline", function()
  local c, ca, clock = registered()
  c.deadline = clock.now() + 5
  local t0 = clock.now()
  ca:once("GET", "/dir", "connect", 50)
  ca:once("HEAD", "/nonce", "connect", 50)
  ca:once("POST", "/order-plz", { status = 503, headers = {} }, 50)
  c.nonces = {}
  c.dir = nil
  local _, err = c:authorize_order(acme.domain_ids("a.example"))
  t.ok(err, "failed")
  t.ok(clock.now() - t0 <= 5, "gave up within the deadline: " ..
    (clock.now() - t0))
end)

t.test("rateLimited with a short Retry-After is waited out and resent", function()
    local c, ca, clock = registered()
    ca:once("POST", "/order-plz", problem_reply(429, "rateLimited", "wait",
        { ["retry-after"] = "2" }))
    local o = assert(c:authorize_order(acme.domain_ids("a.example")))
    t.eq(o.status, "pending")
    t.eq(#clock.slept, 1)
    t.ok(clock.slept[1] >= 2 and clock.slept[1] <= 2.5, "slept Retry-After")
    local sent = ca:find("POST", "/order-plz")
    t.eq(#sent, 2)
    t.eq(sent[2].payload, sent[1].payload, "the same request again")
    t.ok(sent[2].protected.nonce ~= sent[1].protected.nonce, "a fresh nonce")
    t.eq(sent[2].protected.nonce, sent[1].reply_headers["replay-nonce"],
        "the 429 reply's nonce")
    check_posts(ca)
end)

t.test("5xx and transport errors on POST-as-GET are retried with backoff", function()
    local c, ca, clock = registered()
    local o = assert(c:authorize_order(acme.domain_ids("a.example")))
    ca:once("POST", "/my-order/", problem_reply(500, "serverInternal", "oops"))
    ca:once("POST", "/my-order/", { status = 502, headers = { ["content-type"] = "text/html" },
        body = "<html>bad gateway</html>" })
    ca:once("POST", "/my-order/", "lost")
    local got = assert(c:get_order(o.uri))
    t.eq(got.status, "pending")
    t.eq(#clock.slept, 3)
    t.ok(clock.slept[1] >= 1 and clock.slept[1] < 1.3, "first backoff ~1s")
    t.ok(clock.slept[2] >= 2 and clock.slept[2] < 2.6, "then ~2s")
    t.ok(clock.slept[3] >= 4 and clock.slept[3] < 5.1, "then ~4s")
    t.eq(c:stats().retries, 3)
    -- the budget ends: max_retries (5) retries, then the error
    ca:once("POST", "/my-order/", problem_reply(503, "serverInternal", "down"), 10)
    local _, err = c:get_order(o.uri)
    t.eq(err.status, 503)
    t.eq(#ca:find("POST", "/my-order/"), 4 + 6)
    -- retry_backoff decides when given
    local calls = {}
    c.retry_backoff = function(n, status, headers)
        calls[#calls + 1] = { n, status, headers ~= nil }
        return n < 2 and 0.5 or 0
    end
    ca.intercepts = {}
    ca:once("POST", "/my-order/", problem_reply(500, "serverInternal", "x"), 3)
    _, err = c:get_order(o.uri)
    t.eq(err.status, 500)
    t.eq(#calls, 2)
    t.eq(calls[1][1], 1)
    t.eq(calls[1][2], 500)
    t.eq(calls[2][1], 2)
end)

t.test("5xx on a non-idempotent POST is read back, never resent blindly", function()
    local c, ca = registered()
    -- A 500 the CA answered without creating the order: the orders list
    -- is read, shows nothing, and newOrder is sent again.
    ca:once("POST", "/order-plz", problem_reply(500, "serverInternal", "boom"))
    local o = assert(c:authorize_order(acme.domain_ids("a.example")))
    local log = {}
    for _, r in ipairs(ca.log) do
        if r.url:find("/order-plz", 1, true) then
            log[#log + 1] = "order-plz " .. tostring(r.status)
        elseif r.url:find("/list-orderz/", 1, true) then
            log[#log + 1] = "list " .. tostring(r.status)
        end
    end
    t.eq(log[1], "order-plz 500")
    t.eq(log[2], "list 200", "the list read before the resend")
    t.eq(log[#log], "order-plz 201")
    t.eq(o.status, "pending")
    -- The transport is told never to resend a non-idempotent POST by
    -- itself; POST-as-GET it may.
    t.eq(ca:find("POST", "/order-plz")[1].once, true)
    t.eq(ca:find("POST", "/list-orderz/")[1].once, nil)
    -- A 504 from a gateway after the CA created the order: found by the
    -- read-back, not created twice.
    ca:once("POST", "/order-plz", function(_, status)
        t.eq(status, 201)
        return 504, { ["content-type"] = "text/html" }, "<html>504</html>"
    end)
    local before = #ca:find("POST", "/order-plz")
    local o2 = assert(c:authorize_order(acme.domain_ids("b.example")))
    t.eq(#ca:find("POST", "/order-plz"), before + 1, "sent once")
    t.eq(o2.identifiers[1].value, "b.example")
    local n = 0
    for _ in pairs(ca.state.orders) do n = n + 1 end
    t.eq(n, 2, "two orders at the CA, no duplicate")
end)

t.test("a lost newOrder reply is recovered without a duplicate order", function()
    local c, ca = registered()
    assert(c:authorize_order(acme.domain_ids("other.example")))
    ca:once("POST", "/order-plz", "lost")
    local o = assert(c:authorize_order(acme.domain_ids("A.example", "b.example")))
    t.eq(o.status, "pending")
    local n = 0
    for _ in pairs(ca.state.orders) do n = n + 1 end
    t.eq(n, 2, "no duplicate order")
    t.eq(#ca:find("POST", "/order-plz"), 2, "the first newOrder was not resent")
    t.match(o.uri, "/my%-order/")
    t.eq(#ca:find("POST", "/list-orderz/"), 1, "state read first")
    -- never sent at all (connect): resent directly
    ca:once("POST", "/order-plz", "connect")
    local o2 = assert(c:authorize_order(acme.domain_ids("c.example")))
    t.ok(o2.uri ~= o.uri)
    t.eq(#ca:find("POST", "/list-orderz/"), 1, "no lookup for a refused connection")
    -- lost, but the CA had not created it: looked up, then sent again
    ca:once("POST", "/order-plz", function(rec)
        rec.status = "lost"
        return nil, "fake: reset", "protocol"
    end)
    local o3 = assert(c:authorize_order(acme.domain_ids("d.example")))
    t.eq(o3.identifiers[1].value, "d.example")
    -- 4 orders at 3 per page: both pages were read
    t.eq(#ca:find("POST", "/list-orderz/"), 3)
    t.eq(#ca:find("POST", "/page/2"), 1)
    check_posts(ca)
end)

t.test("lost finalize and challenge replies read the state first", function()
    local c, ca, clock = registered()
    local o = assert(c:authorize_order(acme.domain_ids("a.example")))
    local a = assert(c:get_authorization(o.authz_urls[1]))
    ca:once("POST", "/chalZ/", "lost")
    local ch = assert(c:accept(a.challenges[1]))
    t.eq(ch.status, "pending")
    local posts = ca:find("POST", "/chalZ/")
    t.eq(#posts, 3, "accept, read, accept again (still pending)")
    t.eq(posts[2].payload, "")
    t.eq(ca.state.chals[a.challenges[1].uri:match("(%d+)$")].accepted, 1)
    clock.sleep(1)
    assert(c:wait_order(o.uri))
    ca:once("POST", "/finalize-order/", "lost")
    local certs, url = c:create_order_cert(o.finalize_url, "csr-der", true,
        { order_url = o.uri })
    t.ok(certs, tostring(url))
    t.eq(#ca:find("POST", "/finalize-order/"), 1, "finalize not resent")
    t.eq(ca.state.orders[o.uri:match("(%d+)$")].finalized, 1)
    t.eq(#certs, 2)
    t.eq(certs[1], "leaf")
    check_posts(ca)
end)

t.test("transport errors come back as error tables; interrupted is final", function()
    local c, ca = registered()
    ca:once("POST", "/my-account/", function(rec)
        rec.status = "interrupted"
        return nil, "http: interrupted by signal", "interrupted"
    end)
    local _, err = c:get_reg()
    t.eq(err.kind, "interrupted")
    t.ok(acme.errors.iserror(err))
    t.eq(#ca:find("POST", "/my-account/"), 1 + 0)
    local c2 = acme.client{ directory = "http://ca.test/dir", transport = ca }
    _, err = c2:discover()
    t.eq(err.kind, "url")
end)

t.test("client options are checked", function()
    t.raises(function() acme.client{ directroy = "x" } end, "unknown option 'directroy'")
    t.raises(function() acme.client{ timeout = "5" } end, "must be a number")
    t.raises(function() acme.client("x") end, "options table")
    local c = acme.client{}
    t.eq(c.directory_url, acme.LETSENCRYPT)
    t.raises(function() c:post("https://x/", "") end, "no account key")
    t.raises(function() c:post(nil, "") end, "url must be a string")
end)

t.test("redirects and other non-2xx replies are errors, not data", function()
    local c, ca = registered()
    local o = assert(c:authorize_order(acme.domain_ids("a.example")))
    ca:once("POST", "/my-order/", { status = 302, headers = {
        location = "https://elsewhere.test/" }, body = "" })
    local got, err = c:get_order(o.uri)
    t.eq(got, nil)
    t.eq(err.kind, "http")
    t.eq(err.status, 302)
    ca:once("POST", "/my-order/", { status = 404, headers = {}, body = "" })
    got, err = c:get_order(o.uri)
    t.eq(err.kind, "http")
    t.eq(err.status, 404)
    t.match(tostring(err), "HTTP 404")
end)

t.test("lost revoke and rollover replies are checked before resending", function()
    local c, ca = registered{ keys = { KEY, KEY2 } }
    ca:once("POST", "/revoke-cert", "lost")
    t.eq(c:revoke_cert(nil, "der", 4), true)
    t.eq(#ca:find("POST", "/revoke-cert"), 2, "resent; alreadyRevoked = done")
    ca:once("POST", "/rollover-account-key", "lost")
    t.eq(c:account_key_rollover(KEY2), true)
    t.ok(c.key == KEY2)
    t.eq(#ca:find("POST", "/rollover-account-key"), 1, "the lookup showed it done")
    local look = ca:find("POST", "/sign-me-up")
    look = look[#look]
    t.eq(look.payload, '{"onlyReturnExisting":true}')
    t.eq(look.protected.jwk.x, KEY2:jwk().x)
    assert(c:get_reg())
end)

t.test("a lost or 5xx authorization deactivation is read back", function()
    local c, ca = registered()
    local o = assert(c:authorize_order(acme.domain_ids("a.example")))
    local url = o.authz_urls[1]
    -- The CA deactivated it, then the reply was lost (before: the POST
    -- was resent, which a CA refuses for a deactivated authorization).
    ca:once("POST", "/authZ/", "lost")
    local a = assert(c:revoke_authorization(url))
    t.eq(a.status, "deactivated")
    local posts = ca:find("POST", "/authZ/")
    t.eq(#posts, 2, "the deactivation, then a read")
    t.eq(posts[2].payload, "")
    -- A 502 without the CA seeing it: read back (still pending), resent.
    local o2 = assert(c:authorize_order(acme.domain_ids("b.example")))
    local before = #ca:find("POST", "/authZ/")
    ca:once("POST", "/authZ/", { status = 502,
        headers = { ["content-type"] = "text/html" }, body = "<html/>" })
    a = assert(c:revoke_authorization(o2.authz_urls[1]))
    t.eq(a.status, "deactivated")
    posts = ca:find("POST", "/authZ/")
    t.eq(#posts - before, 3, "sent, read, sent again")
    t.eq(posts[#posts].payload, '{"status":"deactivated"}')
end)

-- RFC 8555 §6.4/§6.5 put server strings (url, kid, nonce) into the
-- protected header, which the signer raises on when they are not UTF-8.
-- Hostile or broken ones must come back as nil, err with nothing sent.
t.test("server URLs that cannot be signed give nil, err, not a raise", function()
    local function no_raise(f, ...)
        local res = table.pack(pcall(f, ...))
        t.ok(res[1], "raised: " .. tostring(res[2]))
        return table.unpack(res, 2, res.n)
    end
    -- a newAccount Location that is not UTF-8: no kid is taken from it
    local c, ca = setup()
    ca:once("POST", "/sign-me-up", function(_, s, h, b)
        h.location = ca.base .. "/my-account/1\255"
        return s, h, b
    end)
    local acct, err = no_raise(c.register, c, {}, acme.accept_tos)
    t.eq(acct, nil)
    t.eq(err.kind, "url")
    t.match(err.detail, "\\xff")
    t.eq(c.kid, nil)
    -- a newOrder Location with a line break
    assert(c:get_reg())
    local n = #ca.log
    ca:once("POST", "/order-plz", function(_, s, h, b)
        h.location = ca.base .. "/my-order/9\r\nX-Evil: 1"
        return s, h, b
    end)
    local o
    o, err = no_raise(c.authorize_order, c, acme.domain_ids("a.example"))
    t.eq(o, nil)
    t.eq(err.kind, "url")
    t.eq(#ca.log, n + 1, "only the newOrder went out")
    -- authorization URLs in an order that are not printable ASCII
    ca:once("POST", "/order-plz", function(_, s, h)
        return s, h, '{"status":"pending","finalize":"' .. ca.base ..
            '/finalize-order/1","identifiers":[],"authorizations":["' ..
            ca.base .. '/authZ/\255\254","' .. ca.base .. '/authZ/a b"]}'
    end)
    o = assert(c:authorize_order(acme.domain_ids("a.example")))
    n = #ca.log
    for _, u in ipairs(o.authz_urls) do
        local a
        a, err = no_raise(c.get_authorization, c, u)
        t.eq(a, nil)
        t.eq(err.kind, "url")
    end
    t.eq(#ca.log, n, "nothing sent to such URLs")
    -- a kid set from elsewhere, used as the account URL and in rollover
    c.kid = ca.base .. "/my-account/\200"
    err = select(2, no_raise(c.get_reg, c))
    t.eq(err.kind, "url")
    local ok
    ok, err = no_raise(c.account_key_rollover, c, KEY2)
    t.eq(ok, nil)
    t.eq(err.kind, "url")
    t.ok(c.key == KEY, "key unchanged")
    t.eq(#ca.log, n, "nothing sent with that kid")
    -- a directory entry that is not printable ASCII
    local c2, ca2 = setup{ directory = function(d)
        d.keyChange = d.keyChange .. "\0"
        d.newAccount = d.newAccount .. " "
    end }
    ok, err = no_raise(c2.register, c2, { external_account_binding = {
        kid = "k", key = "c2VjcmV0" } }, acme.accept_tos)
    t.eq(ok, nil)
    t.eq(err.kind, "url")
    c2.kid = ca2.base .. "/my-account/1"
    ok, err = no_raise(c2.account_key_rollover, c2, KEY2)
    t.eq(ok, nil)
    t.eq(err.kind, "url")
    t.eq(#ca2:find("POST"), 0, "no POST went out")
    -- an overlong URL
    local long = ca.base .. "/" .. string.rep("a", 5000)
    local _, lerr = no_raise(c.get_order, c, long)
    t.eq(lerr.kind, "url")
    t.match(lerr.detail, "4096")
end)

-- Subproblems are one level deep (RFC 8555 §6.7.1). A server nesting them
-- deeper (here 300 levels, within cjson's limit) must not make the
-- client raise ("C stack overflow" in __tostring) where it describes
-- the problem: the error comes back as nil, err and prints.
t.test("deeply nested subproblems from a server give nil, err", function()
    local function nested(depth)
        return string.rep('{"type":"urn:ietf:params:acme:error:malformed",' ..
            '"detail":"d","subproblems":[', depth) .. '{"type":"x"}' ..
            string.rep("]}", depth)
    end
    local c, ca = registered()
    ca:once("POST", "/order-plz", { status = 400, headers = {
        ["content-type"] = "application/problem+json" }, body = nested(300) })
    local ok, o, err = pcall(c.authorize_order, c, acme.domain_ids("a.example"))
    t.ok(ok, tostring(o))
    t.eq(o, nil)
    t.eq(#err.subproblems, 1)
    t.eq(err.subproblems[1].subproblems, nil, "one level only")
    t.match(tostring(err), "^malformed: d\n  %?: malformed: d$")
    -- an invalid order whose error member is nested likewise
    o = assert(c:authorize_order(acme.domain_ids("a.example")))
    ca:once("POST", "/my-order/", function(_, s, h, b)
        b = b:gsub('^{', '{"error":' .. nested(300) .. ',')
            :gsub('"status":"pending"', '"status":"invalid"')
        return s, h, b
    end)
    local w
    ok, w, err = pcall(c.wait_order, c, o.uri)
    t.ok(ok, tostring(w))
    t.eq(w, nil)
    t.eq(err.kind, "order")
    -- The type heads tostring(err); the detail does not repeat it.
    t.match(err.detail, "is invalid: d$")
    t.match(tostring(err), "^malformed: order [^\n]* is invalid: d\n")
end)

-- D.4 / G#6: header values keep no CR, LF or spaces of the header syntax:
-- a kid or nonce with a stray "\r" would break the CA's checks.
t.test("Location and Replay-Nonce values are trimmed of CR/LF and spaces", function()
    local c, ca = setup()
    local nonce = ca.nonce()
    ca:once("POST", "/sign-me-up", function(_, s, h, b)
        h.location = " " .. h.location .. "\r\n"
        h["replay-nonce"] = nonce .. "\r"
        return s, h, b
    end)
    local acct = assert(c:register({}, acme.accept_tos))
    t.match(acct.uri, "^https://ca%.test/my%-account/%d+$")
    t.eq(c.kid, acct.uri)
    assert(c:get_reg())
    local r = ca:find("POST", "/my-account/")[1]
    t.eq(r.protected.kid, acct.uri)
    t.eq(r.protected.nonce, nonce, "the nonce without its CR")
    t.ok(r.verified)
    t.eq(#ca:find("HEAD"), 1)
end)
