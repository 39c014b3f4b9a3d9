-- Accounts over the fake CA: register (jwk, ToS, EAB), lookup, update,
-- deactivate, key rollover, revocation; each checks what was sent.
local t = require "testlib"
local fake = require "fakehttp"
local acme = require "luacme"
local core = require "luacme.core"
local cjson = require "cjson"

local KEY = core.key_generate("ec256")
local KEY2 = core.key_generate("ec256")
local KEY3 = core.key_generate("ec384")

local function setup(opts)
    opts = opts or {}
    opts.keys = opts.keys or { KEY, KEY2, KEY3 }
    return fake.client(opts.key or KEY, opts)
end

local function sorted_keys(tb)
    local k = {}
    for name in pairs(tb) do k[#k + 1] = name end
    table.sort(k)
    return table.concat(k, ",")
end

t.test("register sends jwk, contact and the ToS answer; sets kid", function()
    local c, ca = setup()
    local asked
    local acct = assert(c:register({ contact = { "mailto:a@example.com" } },
        function(url) asked = url; return true end))
    t.eq(asked, "data:text/plain,Do%20what%20thou%20wilt")
    t.match(acct.uri, "^https://ca%.test/my%-account/%d+$")
    t.eq(c.kid, acct.uri)
    t.eq(acct.status, "valid")
    t.eq(acct.contact[1], "mailto:a@example.com")
    t.eq(acct.orders_url, ca.base .. "/list-orderz/" .. acct.uri:match("(%d+)$"))
    local r = ca:find("POST", "/sign-me-up")[1]
    t.eq(r.protected.kid, nil)
    t.eq(sorted_keys(r.protected.jwk), "crv,kty,x,y")
    t.eq(r.protected.jwk.x, KEY:jwk().x)
    t.eq(r.protected.alg, "ES256")
    t.eq(r.payload, '{"contact":["mailto:a@example.com"],"termsOfServiceAgreed":true}')
    t.ok(r.verified)
end)

t.test("register without consent gets agreementRequired and the ToS link", function()
    local c = setup{ tos = "https://ca.test/tos" }
    local acct, err = c:register({}, function() return false end)
    t.eq(acct, nil)
    t.ok(acme.is_error(err, "agreementRequired"))
    t.eq(err.terms_of_service, "https://ca.test/tos")
    t.eq(err.status, 403)
    -- no prompt at all: termsOfServiceAgreed is not sent
    local c2, ca2 = setup()
    local _, err2 = c2:register()
    t.ok(acme.is_error(err2, "agreementRequired"))
    t.eq(ca2:find("POST", "/sign-me-up")[1].payload, "{}")
end)

t.test("an existing account: account_exists with uri; get_reg finds it", function()
    local c = setup()
    local first = assert(c:register({}, acme.accept_tos))
    local c2, ca2 = setup()
    ca2.state = nil -- (separate CA: not used)
    local c3 = acme.client{ directory = c.directory_url, key = KEY,
        transport = c.transport, now = c.now, sleep = c.sleep }
    local acct, err = c3:register({}, acme.accept_tos)
    t.eq(acct, nil)
    t.eq(err.kind, "account_exists")
    t.eq(err.uri, first.uri)
    t.eq(c3.kid, first.uri)
    local c4 = acme.client{ directory = c.directory_url, key = KEY,
        transport = c.transport, now = c.now, sleep = c.sleep }
    local found = assert(c4:get_reg())
    t.eq(found.uri, first.uri)
    t.eq(c4.kid, first.uri)
    local r = c.transport:find("POST", "/sign-me-up")
    r = r[#r]
    t.eq(r.payload, '{"onlyReturnExisting":true}')
    t.ok(r.protected.jwk)
    t.eq(c2.kid, nil)
end)

t.test("get_reg with an unknown key gives no_account", function()
    local c, ca = setup{ key = KEY2 }
    local acct, err = c:get_reg()
    t.eq(acct, nil)
    t.eq(err.kind, "no_account")
    t.ok(acme.is_error(err.cause, "accountDoesNotExist"))
    t.eq(#ca:find("POST", "/sign-me-up"), 1)
    -- a kid the CA does not know
    c.kid = ca.base .. "/my-account/999"
    acct, err = c:get_reg()
    t.eq(err.kind, "no_account")
end)

t.test("a stored kid avoids the lookup; get_reg is a POST-as-GET", function()
    local c, ca = setup()
    local acct = assert(c:register({}, acme.accept_tos))
    local c2 = acme.client{ directory = ca.dir_url, key = KEY, kid = acct.uri,
        transport = ca, now = ca.clock.now, sleep = ca.clock.sleep }
    local n = #ca.log
    local got = assert(c2:get_reg())
    t.eq(got.uri, acct.uri)
    local posts = ca:find("POST")
    local last = posts[#posts]
    t.eq(last.url, acct.uri)
    t.eq(last.protected.kid, acct.uri)
    t.eq(last.payload, "")
    t.eq(#ca.log - n, 3, "dir, nonce, account: no newAccount lookup")
end)

t.test("update_reg sets contacts, [] clears them", function()
    local c, ca = setup()
    assert(c:register({ contact = { "mailto:a@example.com" } }, acme.accept_tos))
    local acct = assert(c:update_reg({ contact = { "mailto:b@example.com" } }))
    t.eq(acct.contact[1], "mailto:b@example.com")
    acct = assert(c:update_reg({ contact = {} }))
    t.eq(#acct.contact, 0)
    local posts = ca:find("POST", "/my-account/")
    t.eq(posts[1].payload, '{"contact":["mailto:b@example.com"]}')
    t.eq(posts[2].payload, '{"contact":[]}')
    t.eq(posts[2].protected.kid, c.kid)
    t.raises(function() c:update_reg({ contact = "x" }) end, "contact must be a list")
    -- no list at all is a mistake, not "remove every contact"
    local n = #ca.log
    t.raises(function() c:update_reg({}) end, "account.contact expected")
    t.eq(#ca.log, n, "nothing sent")
end)

t.test("deactivate_reg; afterwards the CA refuses the account", function()
    local c, ca = setup()
    assert(c:register({}, acme.accept_tos))
    t.eq(c:deactivate_reg(), true)
    local r = ca:find("POST", "/my-account/")[1]
    t.eq(r.payload, '{"status":"deactivated"}')
    local _, err = c:authorize_order(acme.domain_ids("a.example"))
    t.ok(acme.is_error(err, "unauthorized"))
    -- a lost reply: the state is read, and it is deactivated
    local c2, ca2 = setup()
    assert(c2:register({}, acme.accept_tos))
    ca2:once("POST", "/my-account/", "lost")
    t.eq(c2:deactivate_reg(), true)
    t.eq(#ca2:find("POST", "/my-account/"), 2, "deactivate, then a read")
end)

t.test("a lost newAccount reply is recovered by lookup", function()
    local c, ca = setup()
    ca:once("POST", "/sign-me-up", "lost")
    local acct = assert(c:register({}, acme.accept_tos))
    t.match(acct.uri, "/my%-account/")
    local posts = ca:find("POST", "/sign-me-up")
    t.eq(#posts, 2)
    t.eq(posts[2].payload, '{"onlyReturnExisting":true}')
end)

-- B.6: Pebble's example EAB key with Go's testKeyEC, via a stand-in key
-- whose JWK is testKeyEC's (the EAB payload is only the public JWK).
t.test("EAB matches the B.6 vector: MAC keyed with the decoded key", function()
    local c = acme.client{ directory = "https://127.0.0.1:14000/dir" }
    c.key = { jwk = function()
        return { crv = "P-256", kty = "EC",
            x = "5lhEug5xK4xBDZ2nAbaxLtaLiv85bxJ7ePd1dkO23HQ",
            y = "4aiK72sBeUAGkv0TaLsmwokYUYyNxGsS5EMIKwsNIKk" }
    end }
    local raw = assert(c:_eab({ kid = "kid-1",
        key = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W" },
        "https://127.0.0.1:14000/sign-me-up"))
    local j = cjson.decode(raw.text)
    t.eq(j.protected, "eyJhbGciOiJIUzI1NiIsImtpZCI6ImtpZC0xIiwidXJsIjoiaHR0cHM6Ly8xMjcuMC4wLjE6MTQwMDAvc2lnbi1tZS11cCJ9")
    t.eq(j.payload, "eyJjcnYiOiJQLTI1NiIsImt0eSI6IkVDIiwieCI6IjVsaEV1ZzV4SzR4QkRaMm5BYmF4THRhTGl2ODVieEo3ZVBkMWRrTzIzSFEiLCJ5IjoiNGFpSzcyc0JlVUFHa3YwVGFMc213b2tZVVl5TnhHc1M1RU1JS3dzTklLayJ9")
    t.eq(j.signature, "-hceR_28p898is2Ml5PBrFH2xZIhCSVMLF6KPI1irCU")
    local _, err = c:_eab({ kid = "kid-1", key = "not base64url!" }, "https://x/")
    t.eq(err.kind, "eab")
end)

t.test("register with EAB: structure and MAC verified by the CA", function()
    local mac_b64 = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"
    local mac = core.b64url_decode(mac_b64)
    local c, ca = setup{ eab = { ["kid-1"] = mac } }
    local d = assert(c:discover())
    t.eq(d.meta.external_account_required, true)
    local acct = assert(c:register({ contact = { "mailto:a@example.com" },
        external_account_binding = { kid = "kid-1", key = mac_b64 } }, acme.accept_tos))
    t.ok(acct.uri)
    local r = ca:find("POST", "/sign-me-up")[1]
    local eab = r.payload_json.externalAccountBinding
    t.eq(sorted_keys(eab), "payload,protected,signature")
    local p = cjson.decode(core.b64url_decode(eab.protected))
    t.eq(sorted_keys(p), "alg,kid,url")
    t.eq(p.alg, "HS256")
    t.eq(p.kid, "kid-1")
    t.eq(p.url, r.url)
    local payload = cjson.decode(core.b64url_decode(eab.payload))
    t.eq(payload.x, r.protected.jwk.x)
    t.eq(payload.y, r.protected.jwk.y)
    t.eq(core.b64url_decode(eab.signature),
        core.hmac_sha256(mac, eab.protected .. "." .. eab.payload))
    -- the same key string used raw (undecoded) is refused by the CA
    local c2 = setup{ eab = { ["kid-1"] = mac_b64 }, key = KEY2 }
    local _, err = c2:register({ external_account_binding = { kid = "kid-1",
        key = mac_b64 } }, acme.accept_tos)
    t.ok(acme.is_error(err, "unauthorized"))
    -- no EAB where required
    local c3 = setup{ eab = { ["kid-1"] = mac }, key = KEY3 }
    _, err = c3:register({}, acme.accept_tos)
    t.ok(acme.is_error(err, "externalAccountRequired"))
end)

t.test("key rollover: inner JWS by the new key, switch only after 200", function()
    local c, ca = setup()
    local acct = assert(c:register({}, acme.accept_tos))
    t.eq(c:account_key_rollover(KEY2), true)
    t.ok(c.key == KEY2)
    local r = ca:find("POST", "/rollover-account-key")[1]
    t.eq(r.protected.kid, acct.uri)
    t.eq(r.protected.jwk, nil)
    t.ok(r.verified, "outer signed by the old key")
    local inner = fake.decode_jws(r.payload)
    t.eq(sorted_keys(inner.protected), "alg,jwk,url")
    t.eq(inner.protected.url, r.url)
    t.eq(inner.protected.nonce, nil)
    t.eq(inner.protected.jwk.x, KEY2:jwk().x)
    t.ok(KEY2:verify(inner.protected_b64 .. "." .. inner.payload_b64, inner.signature))
    local ip = cjson.decode(inner.payload)
    t.eq(sorted_keys(ip), "account,oldKey")
    t.eq(ip.account, acct.uri)
    t.eq(ip.oldKey.x, KEY:jwk().x)
    -- the new key works (the CA verifies signatures)
    assert(c:get_reg())
    local last = ca:find("POST")
    t.ok(last[#last].verified)
    -- the key authorization follows the new key
    t.eq(c:http01_challenge_response("tok"), "tok." .. KEY2:thumbprint())
    -- a key owned by another account: 409 with its URL, key unchanged
    local other = acme.client{ directory = ca.dir_url, key = KEY3, transport = ca,
        now = ca.clock.now, sleep = ca.clock.sleep }
    local oacct = assert(other:register({}, acme.accept_tos))
    local ok, err = c:account_key_rollover(KEY3)
    t.eq(ok, nil)
    t.eq(err.status, 409)
    t.eq(err.uri, oacct.uri)
    t.ok(c.key == KEY2, "old key kept after a failure")
end)

t.test("revoke by account key (kid) and by certificate key (jwk)", function()
    local c, ca = setup()
    assert(c:register({}, acme.accept_tos))
    t.eq(c:revoke_cert(nil, "cert-der-1", acme.CRL_REASON_KEY_COMPROMISE), true)
    local r = ca:find("POST", "/revoke-cert")[1]
    t.eq(r.protected.kid, c.kid)
    t.eq(r.payload, '{"certificate":"Y2VydC1kZXItMQ","reason":1}')
    local ok2, e2 = c:revoke_cert(KEY2, "cert-der-2", acme.CRL_REASON_SUPERSEDED)
    t.eq(ok2, true, tostring(e2))
    r = ca:find("POST", "/revoke-cert")[2]
    t.eq(r.protected.kid, nil)
    t.eq(r.protected.jwk.x, KEY2:jwk().x)
    t.ok(r.verified)
    t.eq(r.payload_json.reason, 4)
    t.eq(ca.state.revoked["cert-der-2"].by, "jwk")
    -- without a reason: omitted
    assert(c:revoke_cert(nil, "cert-der-3"))
    t.eq(ca:find("POST", "/revoke-cert")[3].payload, '{"certificate":"Y2VydC1kZXItMw"}')
    local _, err = c:revoke_cert(nil, "cert-der-1", 0)
    t.ok(acme.is_error(err, "alreadyRevoked"))
    -- Asked to: alreadyRevoked is the goal reached; other errors stay.
    t.eq(c:revoke_cert(nil, "cert-der-1", 0, { already_ok = true }), true)
    _, err = c:revoke_cert(nil, "cert-der-4", 7, { already_ok = true })
    t.ok(acme.is_error(err, "badRevocationReason"))
    t.raises(function() c:revoke_cert(nil, "x", 0, "yes") end, "options")
    _, err = c:revoke_cert(nil, "cert-der-4", 7)
    t.ok(acme.is_error(err, "badRevocationReason"))
    t.raises(function() c:revoke_cert(nil, "x", 4.5) end, "integer")
    t.raises(function() c:revoke_cert("key", "x") end, "key or nil")
end)

t.test("challenge helpers: B.7 vector shapes and token checks", function()
    local c = acme.client{ key = KEY }
    local tp = acme.jwk_thumbprint(KEY)
    t.eq(tp, KEY:thumbprint())
    t.eq(c:http01_challenge_path("xxx"), "/.well-known/acme-challenge/xxx")
    t.eq(c:http01_challenge_response("xxx"), "xxx." .. tp)
    t.eq(c:dns01_challenge_record("xxx"),
        core.b64url_encode(core.sha256("xxx." .. tp)))
    local p, err = c:http01_challenge_path("../etc/passwd")
    t.eq(p, nil)
    t.eq(err.kind, "response")
    t.eq(c:http01_challenge_response("a b"), nil)
    t.eq(c:dns01_challenge_record(""), nil)
    local cert, key = assert(c:tls_alpn01_challenge_cert("xxx", "a.example"))
    t.match(cert, "BEGIN CERTIFICATE")
    t.ok(key)
    local info = core.cert_info(cert)
    t.eq(info.names[1], "a.example")
end)

-- Go's known answers (reference B.7, B.10) through the client's helpers:
-- TestHTTP01Challenge, TestDNS01ChallengeRecord, TestTLSALPN01ChallengeCert
-- with Go's testKeyEC.
t.test("challenge helpers give Go's known answers", function()
    local key = assert(core.key_load(t.readfile(
        "tests/fixtures/keys/go-testkey-ec256.pem")))
    local c = acme.client{ key = key }
    local tp = "zedj-Bd1Zshp8KLePv2MB-lJ_Hagp7wAwdkA0NUTniU"
    t.eq(acme.jwk_thumbprint(key), tp)
    t.eq(c:http01_challenge_path("xxx"), "/.well-known/acme-challenge/xxx")
    t.eq(c:http01_challenge_response("xxx"), "xxx." .. tp)
    t.eq(c:dns01_challenge_record("xxx"),
        "8DERMexQ5VcdJ_prpPiA0mVdp7imgbCgjsG4SqqNMIo")
    local token = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"
    local pem, ckey, der = assert(c:tls_alpn01_challenge_cert(token,
        "example.com"))
    t.eq(der, assert(core.pem_decode(pem)), "the DER of the same certificate")
    t.ok(ckey ~= key, "a fresh key, never the account key")
    t.eq(ckey:spec(), "ec256")
    local info = assert(core.cert_info(pem))
    t.eq(#info.names, 1)
    t.eq(info.names[1], "example.com")
    -- critical id-pe-acmeIdentifier, OCTET STRING (32) of the digest
    local ext = t.unhex("30310608" .. "2b0601050507011f" .. "0101ff" .. "04220420" ..
        "dbbd5eefe7b4d06eb9d1d9f5acb4c7cda27d320e4b30332f0b6cb441734ad7b0")
    t.ok(info.der:find(ext, 1, true), "RFC 8737 extension with Go's digest")
    t.ok(core.cert_matches_key(pem, ckey))
end)

-- A#9.6: a thumbprint from what a person holds of someone else's key:
-- its public PEM or its JWK.
t.test("jwk_thumbprint accepts a public key PEM or a JWK table", function()
    local key = assert(core.key_load(t.readfile(
        "tests/fixtures/keys/go-testkey-ec256.pem")))
    local tp = "zedj-Bd1Zshp8KLePv2MB-lJ_Hagp7wAwdkA0NUTniU"
    t.eq(acme.jwk_thumbprint(key:public_pem()), tp, "public PEM")
    t.eq(acme.jwk_thumbprint(key:jwk()), tp, "JWK table")
    local jwk = key:jwk()
    jwk.kid, jwk.use = "extra", "sig"
    t.eq(acme.jwk_thumbprint(jwk), tp, "members beyond the required ignored")
    for _, spec in ipairs({ "rsa2048", "ec384" }) do
        local k = core.key_generate(spec)
        t.eq(acme.jwk_thumbprint(k:public_pem()), k:thumbprint(), spec)
        t.eq(acme.jwk_thumbprint(k:jwk()), k:thumbprint(), spec)
    end
    local v, err = acme.jwk_thumbprint("not a key")
    t.eq(v, nil)
    t.ok(acme.errors.iserror(err))
    v, err = acme.jwk_thumbprint({ kty = "EC", crv = "P-256", x = "a" })
    t.eq(v, nil)
    t.eq(err.kind, "invalid")
    v = acme.jwk_thumbprint({ kty = "oct", k = "abc" })
    t.eq(v, nil)
end)
