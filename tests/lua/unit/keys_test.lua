-- core.key_generate / core.key_load and the luacme.key methods: shapes,
-- known answers from the fixtures, every error path, atomic write().
local t = require "testlib"
local core = require "luacme.core"

local FIX = "tests/fixtures/keys/"
local PEM_MAX = 1024 * 1024          -- LUACME_PEM_MAX in core/luacme_limits.h

local function fixture(name) return t.readfile(FIX .. name) end

local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local SPECS = {
  ec256 = { alg = "ES256", crv = "P-256", width = 32, sig = 64 },
  ec384 = { alg = "ES384", crv = "P-384", width = 48, sig = 96 },
  ec521 = { alg = "ES512", crv = "P-521", width = 66, sig = 132 },
  rsa2048 = { alg = "RS256", bytes = 256 },
  rsa3072 = { alg = "RS256", bytes = 384 },
  rsa4096 = { alg = "RS256", bytes = 512 },
}

local function keys_of(tbl)
  local ks = {}
  for k in pairs(tbl) do ks[#ks + 1] = k end
  table.sort(ks)
  return table.concat(ks, ",")
end

-- The canonical JWK JSON, rebuilt in Lua to cross-check thumbprint().
local function canonical(j)
  if j.kty == "RSA" then
    return string.format('{"e":"%s","kty":"RSA","n":"%s"}', j.e, j.n)
  end
  return string.format('{"crv":"%s","kty":"EC","x":"%s","y":"%s"}',
    j.crv, j.x, j.y)
end

t.test("every spec generates, describes itself and signs", function()
  for spec, want in pairs(SPECS) do
    local k = assert(core.key_generate(spec))
    t.eq(k:alg(), want.alg, spec)
    t.eq(k:spec(), spec)
    t.eq(tostring(k), "luacme.key (" .. want.alg .. ")")
    local j = k:jwk()
    if want.crv then
      t.eq(keys_of(j), "crv,kty,x,y")
      t.eq(j.kty, "EC")
      t.eq(j.crv, want.crv)
      t.eq(#core.b64url_decode(j.x), want.width, spec .. " x width")
      t.eq(#core.b64url_decode(j.y), want.width, spec .. " y width")
    else
      t.eq(keys_of(j), "e,kty,n")
      t.eq(j.kty, "RSA")
      t.eq(j.e, "AQAB")
      local n = core.b64url_decode(j.n)
      t.eq(#n, want.bytes, spec .. " modulus length")
      t.ok(n:byte(1) >= 0x80, "modulus high bit set, no 00 sign byte")
    end
    local tp = k:thumbprint()
    t.match(tp, "^[A-Za-z0-9_-]+$")
    t.eq(#tp, 43)
    t.eq(tp, core.b64url_encode(core.sha256(canonical(j))))
    local sig = k:sign("data")
    t.eq(#sig, want.sig or want.bytes, spec .. " signature length")
    t.eq(k:verify("data", sig), true)
    t.eq(k:verify("datA", sig), false)
    t.eq(k:verify("data", sig:sub(2)), false)
    k:close()
  end
end)

t.test("fixtures give the published thumbprints and JWKs", function()
  local rsa = assert(core.key_load(fixture("go-testkey-rsa.pem")))
  t.eq(rsa:thumbprint(), "6nicxzh6WETQlrvdchkz-U3e3DOQZ4heJKU63rfqMqQ")
  t.eq(rsa:spec(), "rsa2048")
  local ec = assert(core.key_load(fixture("go-testkey-ec256.pem")))
  t.eq(ec:thumbprint(), "zedj-Bd1Zshp8KLePv2MB-lJ_Hagp7wAwdkA0NUTniU")
  local j = ec:jwk()
  t.eq(j.x, "5lhEug5xK4xBDZ2nAbaxLtaLiv85bxJ7ePd1dkO23HQ")
  t.eq(j.y, "4aiK72sBeUAGkv0TaLsmwokYUYyNxGsS5EMIKwsNIKk")
  local z = assert(core.key_load(fixture("ec256-x-leading-zero.pem")))
  local x = core.b64url_decode(z:jwk().x)
  t.eq(#x, 32)
  t.eq(x:byte(1), 0)
  t.eq(z:thumbprint(), "03L5nVW0pAJpBljy2Z1tmg9zZDb3TQQDUbBRzoWWXzM")
  local p521 = assert(core.key_load(fixture("go-testkey-ec521.pem")))
  t.eq(p521:alg(), "ES512")
  t.eq(p521:spec(), "ec521")
  t.eq(p521:jwk().x, "AdQ0pvHsnALsfqlraxXS0RFaEeEHcmZb44_pJSAxavK8gpqOXHvd5"
    .. "Lbh3LhA8atY738AGwMWpxFKQ1VNeci_r7SY")
  local odd = assert(core.key_load(fixture("rsa2560-pkcs1.pem")))
  t.eq(odd:spec(), "rsa2560")
  t.eq(odd:alg(), "RS256")
end)

t.test("loads PKCS#8, SEC1 and PKCS#1 made by the openssl CLI", function()
  local d = t.tmpdir()
  local cmds = {
    { "p8.pem", "openssl genpkey -algorithm EC -pkeyopt "
      .. "ec_paramgen_curve:P-384 -out " .. quote(d .. "/p8.pem"),
      "-----BEGIN PRIVATE KEY-----", "ES384" },
    { "sec1.pem", "openssl ec -in " .. quote(d .. "/p8.pem") .. " -out "
      .. quote(d .. "/sec1.pem"), "-----BEGIN EC PRIVATE KEY-----", "ES384" },
    { "rsa8.pem", "openssl genpkey -algorithm RSA -pkeyopt "
      .. "rsa_keygen_bits:2048 -out " .. quote(d .. "/rsa8.pem"),
      "-----BEGIN PRIVATE KEY-----", "RS256" },
    { "pkcs1.pem", "openssl rsa -traditional -in " .. quote(d .. "/rsa8.pem")
      .. " -out " .. quote(d .. "/pkcs1.pem"),
      "-----BEGIN RSA PRIVATE KEY-----", "RS256" },
  }
  for _, c in ipairs(cmds) do
    local ok, out = t.sh(c[2])
    t.ok(ok, c[2] .. ": " .. out)
    local pem = t.readfile(d .. "/" .. c[1])
    t.eq(pem:sub(1, #c[3]), c[3], c[1] .. " header")
    local k = assert(core.key_load(pem))
    t.eq(k:alg(), c[4])
    -- Same key as openssl sees it: the public PEMs agree byte for byte.
    local ok2, pub = t.sh("openssl pkey -pubout -in " .. quote(d .. "/" .. c[1]))
    t.ok(ok2, pub)
    t.eq(k:public_pem(), pub, c[1] .. " public key")
  end
  -- SEC1 and PKCS#8 of one key give one thumbprint.
  t.eq(core.key_load(t.readfile(d .. "/p8.pem")):thumbprint(),
    core.key_load(t.readfile(d .. "/sec1.pem")):thumbprint())
end)

t.test("private_pem is PKCS#8 and round trips", function()
  local k = assert(core.key_load(fixture("go-testkey-rsa.pem")))
  local pem = k:private_pem()
  t.match(pem, "^%-%-%-%-%-BEGIN PRIVATE KEY%-%-%-%-%-\n")
  t.eq(core.key_load(pem):thumbprint(), k:thumbprint())
  t.match(k:public_pem(), "^%-%-%-%-%-BEGIN PUBLIC KEY%-%-%-%-%-\n")
end)

t.test("bad PEM is nil, message, kind", function()
  t.fails("parse", "no private key", core.key_load("garbage"))
  t.fails("parse", nil, core.key_load(""))
  local pem = fixture("go-testkey-ec256.pem")
  t.fails("parse", nil, core.key_load(pem:sub(1, 100)))     -- truncated
  -- A public key alone is not a key we can sign with.
  local pub = core.key_load(pem):public_pem()
  t.fails("parse", nil, core.key_load(pub))
  t.fails("unsupported", "encrypted", core.key_load(fixture("encrypted-ec256.pem")))
  t.fails("unsupported", "LUACME_RSA_MIN_BITS", core.key_load(fixture("rsa1024.pem")))
  t.fails("unsupported", "curve", core.key_load(fixture("secp256k1.pem")))
  t.fails("unsupported", "not supported", core.key_load(fixture("ed25519.pem")))
  t.fails("parse", "consistency",
    core.key_load(fixture("ec256-mismatched-public.pem")))
end)

t.test("PEM size cap is LUACME_PEM_MAX", function()
  local pem = fixture("go-testkey-ec256.pem")
  -- Exactly at the cap still loads (the padding after the block is
  -- ignored); one byte more is refused before parsing.
  local at = pem .. string.rep("\n", PEM_MAX - #pem)
  t.eq(#at, PEM_MAX)
  t.ok(core.key_load(at))
  t.fails("too_large", "LUACME_PEM_MAX", core.key_load(at .. "\n"))
end)

t.test("caller mistakes raise", function()
  t.raises(function() core.key_generate("ec999") end, "invalid option")
  t.raises(function() core.key_generate("rsa1024") end, "invalid option")
  t.raises(function() core.key_generate() end, "bad argument")
  t.raises(function() core.key_load() end, "bad argument")
  t.raises(function() core.key_load({}) end, "string expected")
  local k = core.key_generate("ec256")
  t.raises(function() k.alg({}) end, "luacme.key expected")
  t.raises(function() k:sign() end, "bad argument")
  t.raises(function() k:verify("x") end, "bad argument")
  t.raises(function() k:write() end, "bad argument")
  -- A NUL would cut the path short: "d/key\0.bak" is "d/key".
  local d = t.tmpdir()
  t.raises(function() k:write(d .. "/key\0.bak") end, "NUL")
  t.eq(#core.listdir(d), 0)
end)

t.test("closed keys raise on every method; close is idempotent", function()
  local k = core.key_generate("ec256")
  k:close()
  k:close()
  t.eq(tostring(k), "luacme.key (closed)")
  for _, m in ipairs({ "alg", "spec", "jwk", "thumbprint", "public_pem",
      "private_pem" }) do
    t.raises(function() return k[m](k) end, "attempt to use a closed key")
  end
  t.raises(function() k:sign("x") end, "attempt to use a closed key")
  t.raises(function() k:verify("x", "y") end, "attempt to use a closed key")
  t.raises(function() k:write("/tmp/x") end, "attempt to use a closed key")
  t.raises(function() core.jws(k, {}, "") end, "attempt to use a closed key")
  -- __gc after close is harmless.
  k = nil
  collectgarbage()
  collectgarbage()
end)

t.test("<close> frees the key at scope end", function()
  local outer
  do
    local k <close> = core.key_generate("ec256")
    outer = k
    t.eq(k:alg(), "ES256")
  end
  t.eq(tostring(outer), "luacme.key (closed)")
  t.raises(function() outer:alg() end, "closed key")
  -- Also when the scope is left by an error.
  local ok = pcall(function()
    local k <close> = core.key_generate("ec256")
    outer = k
    error("boom")
  end)
  t.eq(ok, false)
  t.eq(tostring(outer), "luacme.key (closed)")
end)

t.test("the metatable is named and has the methods", function()
  local k = core.key_generate("ec256")
  local mt = getmetatable(k)
  t.eq(mt.__name, "luacme.key")
  t.eq(type(mt.__index), "table")
  for _, m in ipairs({ "alg", "spec", "jwk", "thumbprint", "sign", "verify",
      "public_pem", "private_pem", "write", "close" }) do
    t.eq(type(mt.__index[m]), "function", m)
  end
  t.eq(mt.__gc, mt.__close)
end)

local function mode(path)
  local ok, out = t.sh("stat -c %a " .. quote(path))
  t.ok(ok, out)
  return (out:gsub("%s+$", ""))
end

local function listing(dir)
  local ok, out = t.sh("ls -A " .. quote(dir))
  t.ok(ok, out)
  return (out:gsub("%s+$", ""))
end

t.test("write() is atomic and leaves mode 0600", function()
  local d = t.tmpdir()
  local path = d .. "/account.key"
  local k = core.key_generate("ec256")
  t.eq(k:write(path), true)
  t.eq(mode(path), "600")
  t.eq(listing(d), "account.key")        -- no temporary file left
  t.eq(core.key_load(t.readfile(path)):thumbprint(), k:thumbprint())
  -- Over an existing, wider file: replaced, and 0600 again.
  t.writefile(path, "old contents")
  t.ok(t.sh("chmod 644 " .. quote(path)))
  local k2 = core.key_generate("rsa2048")
  t.eq(k2:write(path), true)
  t.eq(mode(path), "600")
  t.eq(listing(d), "account.key")
  t.eq(core.key_load(t.readfile(path)):thumbprint(), k2:thumbprint())
end)

t.test("write() into a missing directory fails cleanly", function()
  local d = t.tmpdir()
  local k = core.key_generate("ec256")
  t.fails("io", "nope", k:write(d .. "/nope/account.key"))
  t.eq(listing(d), "")
  -- The target is a directory: the rename fails, the temp file goes.
  t.ok(t.sh("mkdir " .. quote(d .. "/sub")))
  t.fails("io", "rename", k:write(d .. "/sub"))
  t.eq(listing(d), "sub")
  t.fails("io", nil, k:write(""))
end)
