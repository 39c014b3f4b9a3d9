-- core.jws / core.jws_hmac: exact known answers, the flattened shape,
-- the protected-header encoder, and signatures checked by the openssl
-- command line.
local t = require "testlib"
local core = require "luacme.core"
local cjson = require "cjson"

local FIX = "tests/fixtures/keys/"
local B64_MAX = 8 * 1024 * 1024      -- LUACME_B64_MAX in core/luacme_limits.h
local JSON_MAX_DEPTH = 16            -- LUACME_JSON_MAX_DEPTH

local function key(name) return assert(core.key_load(t.readfile(FIX .. name))) end

local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function decode(jws)
  local j = cjson.decode(jws)
  return j, cjson.decode(core.b64url_decode(j.protected))
end

-- The encoded protected header of jws(key, tbl, "").
local function header(k, tbl)
  local j = cjson.decode(core.jws(k, tbl, ""))
  return core.b64url_decode(j.protected)
end

t.test("golang.org/x/crypto TestJWSEncodeJSON, byte for byte", function()
  local k = key("go-testkey-rsa.pem")
  local got = core.jws(k, { jwk = k:jwk(), nonce = "nonce", url = "url" },
    '{"Msg":"Hello JWS"}')
  t.eq(got, '{"protected":"'
    .. "eyJhbGciOiJSUzI1NiIsImp3ayI6eyJlIjoiQVFBQiIsImt0eSI6IlJTQSIsIm4iOiI0eGdaM2VSUGt3b1J2eTdxZVJVYm1NRGUwVi14SDllV0xkdTBpaGVlTGxybUQybXFXWGZQOUllU0tBcGJuMzRnOFR1QVM5ZzV6aHE4RUxRM2ttanItS1Y4NkdBTWdJNlZBY0dscTNRcnpwVENmXzMwQWI3LXphd3JmUmFGT05hMUh3RXpQWTFLSG5HVmt4SmM4NWdOa3dZSTlTWTJSSFh0dmxuM3pzNXdJVE5yZG9zcUVYZWFJa1ZZQkVoYmhOdTU0cHAza3hvNlR1V0xpOWU2cFhlV2V0RXdtbEJ3dFdabFBvaWIyajNUeExCa3NLWmZveUZ5ZWszODBtSGdKQXVtUV9JMmZqajk4Xzk3bWszaWhPWTRBZ1ZkQ0RqMXpfR0NvWmtHNVJxN25iQ0d5b3N5S1d5RFgwMFpzLW5OcVZob0xlSXZYQzRubldkSk1aNnJvZ3h5UVEifSwibm9uY2UiOiJub25jZSIsInVybCI6InVybCJ9"
    .. '","payload":"eyJNc2ciOiJIZWxsbyBKV1MifQ","signature":"'
    .. "YFyl_xz1E7TR-3E1bIuASTr424EgCvBHjt25WUFC2VaDjXYV0Rj_Hd3dJ_2IRqBrXDZZ2n4ZeA_4mm3QFwmwyeDwe2sWElhb82lCZ8iXuFnjeOmSOjx-nWwPa5ibCXzLq13zZ-OBV1Z4oN_TuailQeRoSfA3nO8gG52mv1x2OMQ5MAFtt8jcngBLzts4AyhI6mBJ2w7Yaj3ZCriqDWA3GLFvvHdW1Ba9Z01wtGT2CuZI7DUk_6Qj1b3BkBGcoKur5C9ibUJtCkABwBMvBQNyD3MmXsrRFRTgvVlyU_yMaucYm7nmzEr_2PaQ50rFt_9qOfJ4sfbLtG1Wwae57BQx1g"
    .. '"}')
end)

t.test("TestJWSEncodeKID protected header; the ES256 signature verifies", function()
  local k = key("go-testkey-ec256.pem")
  local j = cjson.decode(core.jws(k, { kid = "https://example.org/account/1",
    nonce = "nonce", url = "url" }, '{"Msg":"Hello JWS"}'))
  t.eq(j.protected, "eyJhbGciOiJFUzI1NiIsImtpZCI6Imh0dHBzOi8vZXhhbXBsZS5vcmcvYWNjb3VudC8xIiwibm9uY2UiOiJub25jZSIsInVybCI6InVybCJ9")
  t.eq(j.payload, "eyJNc2ciOiJIZWxsbyBKV1MifQ")
  local sig = core.b64url_decode(j.signature)
  t.eq(#sig, 64)
  t.ok(k:verify(j.protected .. "." .. j.payload, sig))
end)

t.test("jws output has exactly three members and round trips", function()
  for _, spec in ipairs({ "ec256", "ec384", "ec521", "rsa2048" }) do
    local k = core.key_generate(spec)
    local prot = { nonce = "n0nce", url = "https://ca.example/acme/new-acct",
      jwk = k:jwk() }
    local payload = '{"termsOfServiceAgreed":true}'
    local out = core.jws(k, prot, payload)
    local j, h = decode(out)
    local n = 0
    for m in pairs(j) do
      n = n + 1
      t.ok(m == "protected" or m == "payload" or m == "signature", m)
    end
    t.eq(n, 3)
    t.eq(out:sub(1, 14), '{"protected":"')   -- and in that order
    t.match(out, '^{"protected":"[%w_-]+","payload":"[%w_-]*","signature":"[%w_-]+"}$')
    t.eq(h.alg, k:alg())
    t.eq(h.nonce, prot.nonce)
    t.eq(h.url, prot.url)
    local want = k:jwk()
    for m, v in pairs(want) do t.eq(h.jwk[m], v, "jwk." .. m) end
    for m in pairs(h.jwk) do t.ok(want[m], "extra jwk member " .. m) end
    t.eq(prot.alg, nil, "the caller's table is left alone")
    t.eq(core.b64url_decode(j.payload), payload)
    t.ok(k:verify(j.protected .. "." .. j.payload,
      core.b64url_decode(j.signature)), spec)
  end
end)

t.test("POST-as-GET payload is empty; an explicit alg is kept", function()
  local k = key("go-testkey-ec256.pem")
  local j, h = decode(core.jws(k, { kid = "k", alg = "ES256" }, ""))
  t.eq(j.payload, "")
  t.eq(h.alg, "ES256")
end)

-- A#9.5: a header naming another algorithm than the one signing would
-- be rejected by the CA at best, misread at worst.
t.test("an alg that does not match the key is refused", function()
  local ec, rsa = key("go-testkey-ec256.pem"), key("go-testkey-rsa.pem")
  t.fails("invalid", "does not match", core.jws(ec, { alg = "XX" }, ""))
  t.fails("invalid", "does not match", core.jws(ec, { alg = "ES384" }, ""))
  t.fails("invalid", "does not match", core.jws(ec, { alg = "RS256" }, ""))
  t.fails("invalid", "does not match", core.jws(ec, { alg = "none" }, ""))
  t.fails("invalid", "does not match", core.jws(rsa, { alg = "ES256" }, ""))
  t.fails("invalid", "does not match", core.jws(ec, { alg = 1 }, ""))
  t.fails("invalid", "does not match", core.jws_hmac("k", { alg = "ES256" }, ""))
  t.ok(core.jws(rsa, { alg = "RS256" }, ""))
  t.ok(core.jws_hmac("k", { alg = "HS256" }, ""))
end)

t.test("the protected header encoder is deterministic JSON", function()
  local k = key("go-testkey-ec256.pem")
  t.eq(header(k, {}), '{"alg":"ES256"}')
  t.eq(header(k, { url = "https://a/b", nonce = "x", b = true, a = false }),
    '{"a":false,"alg":"ES256","b":true,"nonce":"x","url":"https://a/b"}')
  -- Escapes: quote, backslash, control characters; '/' and UTF-8 as is.
  t.eq(header(k, { alg = "ES256", s = 'q"b\\s/\n\r\t\b\f\1\31\127é€' }),
    '{"alg":"ES256","s":"q\\"b\\\\s/\\n\\r\\t\\b\\f\\u0001\\u001f\127é€"}')
  -- Integers; floats with integral values become integers.
  t.eq(header(k, { alg = "ES256", i = 42, n = -7, f = 3.0, z = 0,
    big = math.maxinteger }),
    '{"alg":"ES256","big":9223372036854775807,"f":3,"i":42,"n":-7,"z":0}')
  -- Nested tables are sorted too; keys sort bytewise (upper case first).
  t.eq(header(k, { alg = "ES256", jwk = { y = "2", x = "1", kty = "EC",
    crv = "P-256" }, B = 1, ["b"] = 2, [""] = 3 }),
    '{"":3,"B":1,"alg":"ES256","b":2,"jwk":{"crv":"P-256","kty":"EC","x":"1","y":"2"}}')
  t.eq(header(k, { alg = "ES256", e = {} }), '{"alg":"ES256","e":{}}')
  -- A key with a NUL and one that is a prefix of another.
  t.eq(header(k, { alg = "ES256", ab = 1, a = 2, ["a\0"] = 3 }),
    '{"a":2,"a\\u0000":3,"ab":1,"alg":"ES256"}')
end)

local function nest(n)
  local top = { alg = "ES256" }
  local c = top
  for _ = 2, n do c.x = {}; c = c.x end
  return top
end

t.test("the encoder refuses what it cannot encode", function()
  local k = key("go-testkey-ec256.pem")
  t.raises(function() core.jws(k, { f = print }, "") end, "cannot encode a function")
  t.raises(function() core.jws(k, { [1] = "x" }, "") end, "number key")
  t.raises(function() core.jws(k, { "x" }, "") end, "number key")
  t.raises(function() core.jws(k, { [true] = 1 }, "") end, "boolean key")
  t.raises(function() core.jws(k, { n = 1.5 }, "") end, "non%-integral")
  t.raises(function() core.jws(k, { n = 0 / 0 }, "") end, "non%-integral")
  t.raises(function() core.jws(k, { n = math.huge }, "") end, "non%-integral")
  t.raises(function() core.jws(k, { n = 2.0 ^ 63 }, "") end, "non%-integral")
  t.raises(function() core.jws(k, { u = k }, "") end, "cannot encode a userdata")
  -- Depth: LUACME_JSON_MAX_DEPTH levels of tables pass, one more does not;
  -- a table that contains itself is caught by the same limit.
  t.ok(core.jws(k, nest(JSON_MAX_DEPTH), ""))
  t.raises(function() core.jws(k, nest(JSON_MAX_DEPTH + 1), "") end, "LUACME_JSON_MAX_DEPTH")
  local loop = { alg = "ES256" }
  loop.self = loop
  t.raises(function() core.jws(k, loop, "") end, "LUACME_JSON_MAX_DEPTH")
  -- Argument types.
  t.raises(function() core.jws(k, "{}", "") end, "table expected")
  t.raises(function() core.jws(k, {}, nil) end, "string expected")
  t.raises(function() core.jws("k", {}, "") end, "luacme.key expected")
end)

-- The nonce and the URLs in a protected header come from the server: bytes
-- that are not UTF-8 there are the world's doing, so they fail as nil,
-- message, kind rather than raise (a raise would end the whole run).
t.test("strings that are not UTF-8 fail as invalid", function()
  local k = key("go-testkey-ec256.pem")
  for _, bad in ipairs({ "\xff", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
    "ok\xe2\x82", "\x80" }) do
    t.fails("invalid", "not UTF%-8", core.jws(k, { nonce = bad }, ""))
    t.fails("invalid", "not UTF%-8", core.jws(k, { url = "https://ca/" .. bad,
      jwk = k:jwk() }, ""))
    t.fails("invalid", "not UTF%-8", core.jws(k, { [bad] = 1 }, ""))
    t.fails("invalid", "not UTF%-8", core.jws(k, { x = { y = bad } }, ""))
    t.fails("invalid", "not UTF%-8", core.jws_hmac("k", { kid = bad }, ""))
  end
  -- Programmer errors still raise, also after a bad string was seen.
  t.raises(function() core.jws(k, { a = "\xff", b = print }, "") end,
    "cannot encode a function")
  -- The boundaries of valid UTF-8 pass.
  t.ok(core.jws(k, { s = "\x7f\xc2\x80\xef\xbf\xbf\xf4\x8f\xbf\xbf" }, ""))
end)

t.test("a protected header over LUACME_B64_MAX is too_large", function()
  local k = key("go-testkey-ec256.pem")
  local big = string.rep("a", B64_MAX)
  t.fails("too_large", "LUACME_B64_MAX", core.jws(k, { url = big }, ""))
  t.fails("too_large", "LUACME_B64_MAX", core.jws_hmac("k", { url = big }, ""))
end)

t.test("payload over LUACME_B64_MAX is too_large", function()
  local k = key("go-testkey-ec256.pem")
  local big = string.rep("a", B64_MAX + 1)
  t.fails("too_large", "LUACME_B64_MAX", core.jws(k, {}, big))
  t.fails("too_large", "LUACME_B64_MAX", core.jws_hmac("k", {}, big))
  t.fails("too_large", "LUACME_B64_MAX", k:sign(big))
end)

t.test("jws_hmac: RFC 7520 §4.4.3 HS256", function()
  local mac = core.b64url_decode("hJtXIZ2uSN5kbQfbtTNWbpdmhkV8FJG-Onbc6mxCcYg")
  local payload = "It\u{2019}s a dangerous business, Frodo, going out your door. "
    .. "You step onto the road, and if you don't keep your feet, there\u{2019}s "
    .. "no knowing where you might be swept off to."
  local j = cjson.decode(core.jws_hmac(mac,
    { kid = "018c0ae5-4d9b-471b-bfd6-eef314bc7037" }, payload))
  t.eq(j.protected, "eyJhbGciOiJIUzI1NiIsImtpZCI6IjAxOGMwYWU1LTRkOWItNDcxYi1iZmQ2LWVlZjMxNGJjNzAzNyJ9")
  t.eq(j.signature, "s0h6KThzkfBBBkLspW1h84VsJZFTsPPqMDA7g1Md7p0")
  t.eq(core.b64url_decode(j.payload), payload)
end)

t.test("jws_hmac: the EAB vector, and it is HMAC over protected.payload", function()
  local mac = core.b64url_decode("zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W")
  t.eq(#mac, 48)
  local acct = key("go-testkey-ec256.pem")
  local jwk = acct:jwk()
  local payload = string.format('{"crv":"%s","kty":"%s","x":"%s","y":"%s"}',
    jwk.crv, jwk.kty, jwk.x, jwk.y)
  local out = core.jws_hmac(mac, { kid = "kid-1",
    url = "https://127.0.0.1:14000/sign-me-up" }, payload)
  local j, h = decode(out)
  t.eq(j.protected, "eyJhbGciOiJIUzI1NiIsImtpZCI6ImtpZC0xIiwidXJsIjoiaHR0cHM6Ly8xMjcuMC4wLjE6MTQwMDAvc2lnbi1tZS11cCJ9")
  t.eq(j.payload, "eyJjcnYiOiJQLTI1NiIsImt0eSI6IkVDIiwieCI6IjVsaEV1ZzV4SzR4QkRaMm5BYmF4THRhTGl2ODVieEo3ZVBkMWRrTzIzSFEiLCJ5IjoiNGFpSzcyc0JlVUFHa3YwVGFMc213b2tZVVl5TnhHc1M1RU1JS3dzTklLayJ9")
  t.eq(j.signature, "-hceR_28p898is2Ml5PBrFH2xZIhCSVMLF6KPI1irCU")
  t.eq(h.alg, "HS256")
  t.eq(j.signature, core.b64url_encode(core.hmac_sha256(mac,
    j.protected .. "." .. j.payload)))
  -- Keyed with the base64url text instead of the bytes: a different MAC.
  local wrong = cjson.decode(core.jws_hmac("zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W",
    { kid = "kid-1", url = "https://127.0.0.1:14000/sign-me-up" }, payload))
  t.eq(wrong.signature, "cUSo8R9RumBoyeJt9XVK7PMtMQzzGG1YBkJ0r5cEeTg")
  t.raises(function() core.jws_hmac("", {}, "") end, "empty MAC key")
  t.raises(function() core.jws_hmac(mac, nil, "") end, "table expected")
end)

-- A minimal DER encoder for the test: JWS R||S -> ECDSA-Sig-Value.
local function der_int(b)
  b = b:gsub("^%z+", "")
  if b == "" or b:byte(1) >= 0x80 then b = "\0" .. b end
  return "\2" .. string.char(#b) .. b
end

local function raw_to_der(raw)
  local h = #raw // 2
  local body = der_int(raw:sub(1, h)) .. der_int(raw:sub(h + 1))
  local len = #body < 128 and string.char(#body) or "\129" .. string.char(#body)
  return "\48" .. len .. body
end

t.test("the test's DER encoder matches the RFC 7515 A.3 vector", function()
  local raw = core.b64url_decode("DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q")
  t.eq(t.hex(raw_to_der(raw)), "304502200ed1215379636c483c2f7f155807d402a3b228033af97c7e17819ac3169ea665022100c50a07d38c3c70e5d8f12daf084a5480a66590c5f293509a8f3f7f8a83a354d5")
end)

t.test("signatures verify with openssl dgst", function()
  local d = t.tmpdir()
  local cases = {
    { "rsa2048", "-sha256", false },
    { "ec256", "-sha256", true },
    { "ec384", "-sha384", true },
    { "ec521", "-sha512", true },
  }
  for _, c in ipairs(cases) do
    local k = core.key_generate(c[1])
    local out = core.jws(k, { nonce = "abc", url = "https://x/y" }, '{"a":1}')
    local j = cjson.decode(out)
    local input = j.protected .. "." .. j.payload
    local sig = core.b64url_decode(j.signature)
    if c[3] then sig = raw_to_der(sig) end
    t.writefile(d .. "/pub.pem", k:public_pem())
    t.writefile(d .. "/data", input)
    t.writefile(d .. "/sig", sig)
    local cmd = "openssl dgst " .. c[2] .. " -verify " .. quote(d .. "/pub.pem")
      .. " -signature " .. quote(d .. "/sig") .. " " .. quote(d .. "/data")
    local ok, res = t.sh(cmd)
    t.ok(ok, c[1] .. ": " .. res)
    t.match(res, "Verified OK", c[1])
    -- And openssl rejects it for other data.
    t.writefile(d .. "/data", input .. "x")
    local ok2, res2 = t.sh(cmd)
    t.ok(not ok2, c[1] .. " must not verify: " .. res2)
  end
end)

t.test("an RS256 signature made by openssl equals key:sign", function()
  -- RS256 is deterministic: openssl's signature over the same input is
  -- the same bytes.
  local d = t.tmpdir()
  local k = key("go-testkey-rsa.pem")
  t.writefile(d .. "/data", "signing input")
  local ok, out = t.sh("openssl dgst -sha256 -sign " .. quote(FIX .. "go-testkey-rsa.pem")
    .. " -out " .. quote(d .. "/sig") .. " " .. quote(d .. "/data"))
  t.ok(ok, out)
  t.eq(k:sign("signing input"), t.readfile(d .. "/sig"))
end)
