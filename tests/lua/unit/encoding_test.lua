local t = require "testlib"
local core = require "luacme.core"

t.test("b64url round trips RFC 4648 vectors", function()
  local v = { [""] = "", f = "Zg", fo = "Zm8", foo = "Zm9v", foob = "Zm9vYg",
    fooba = "Zm9vYmE", foobar = "Zm9vYmFy" }
  for plain, enc in pairs(v) do
    t.eq(core.b64url_encode(plain), enc)
    t.eq(core.b64url_decode(enc), plain)
  end
  t.eq(core.b64url_encode("\3\236\255\224\193"), "A-z_4ME")
end)

t.test("b64url_decode rejects bad input", function()
  for _, bad in ipairs({ "Zg==", "Zm9v+/", "Z", "Zm 9v", "Zm9v\n", "Zh" }) do
    t.fails("parse", "base64url", core.b64url_decode(bad))
  end
  t.raises(function() core.b64url_decode({}) end, "string expected")
end)

t.test("sha256 and hmac_sha256 known answers", function()
  t.eq(t.hex(core.sha256("abc")),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
  -- RFC 4231 test case 2
  t.eq(t.hex(core.hmac_sha256("Jefe", "what do ya want for nothing?")),
    "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
end)

t.test("sha256 and hmac_sha256 stop at LUACME_B64_MAX", function()
  local max = 8 * 1024 * 1024                       -- LUACME_B64_MAX
  local at, over = string.rep("a", max), string.rep("a", max + 1)
  t.eq(#core.sha256(at), 32)
  t.eq(#core.hmac_sha256(at, at), 32)
  t.fails("too_large", "LUACME_B64_MAX", core.sha256(over))
  t.fails("too_large", "LUACME_B64_MAX", core.hmac_sha256(over, "x"))
  t.fails("too_large", "LUACME_B64_MAX", core.hmac_sha256("k", over))
end)

t.test("random gives the asked length and refuses silly sizes", function()
  t.eq(#core.random(0), 0)
  t.eq(#core.random(32), 32)
  t.ok(core.random(16) ~= core.random(16))
  t.raises(function() core.random(-1) end, "bad argument")
  t.raises(function() core.random(1e9) end, "bad argument")
end)

t.test("versions lists every linked library", function()
  local v = core.versions()
  t.match(v.luacme, "^%d+%.%d+")
  t.match(v.lua, "^Lua 5%.4")
  t.match(v.openssl, "^OpenSSL 3")
  t.match(v.curl, "^%d+%.%d+")
end)

t.test("clock and sleep", function()
  local a = core.monotonic()
  core.sleep(0.01)
  t.ok(core.monotonic() - a >= 0.009)
  t.ok(core.time() > 1.7e9)
end)
