-- X.509 bindings: csr, cert_info, pem_split, pem_encode, pem_decode,
-- cert_matches_key, tls_alpn01_cert, reverse_name. Cross-checked with the
-- openssl command line where it has an opinion.
local t = require "testlib"
local core = require "luacme.core"

local KEY_AUTH = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA." ..
  "zedj-Bd1Zshp8KLePv2MB-lJ_Hagp7wAwdkA0NUTniU"
local RFC8737_PREFIX = t.unhex("3031 0608 2b0601050507011f 0101ff 0422 0420")
local PEM_MAX = 1024 * 1024         -- LUACME_PEM_MAX
local CSR_MAX_NAMES = 1000          -- LUACME_CSR_MAX_NAMES
local NAME_MAX = 255                -- LUACME_NAME_MAX
local CHAIN_MAX_CERTS = 16          -- LUACME_CHAIN_MAX_CERTS

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- Run a shell command that must succeed; returns its output.
local function run(cmd)
  local ok, out = t.sh("(" .. cmd .. ")")
  if not ok then error("command failed: " .. cmd .. "\n" .. out, 2) end
  return out
end

-- Days since 1970-01-01 (independent of the C code under test).
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = (y >= 0 and y or y - 399) // 400
  local yoe = y - era * 400
  local mp = m > 2 and m - 3 or m + 9
  local doy = (153 * mp + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end

-- "Nov 28 21:29:10 2026 GMT" (openssl x509 -dates) -> Unix seconds.
local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6,
  Jul = 7, Aug = 8, Sep = 9, Oct = 10, Nov = 11, Dec = 12 }
local function openssl_date(s)
  local mon, d, h, mi, sec, y = s:match("(%a+)%s+(%d+) (%d+):(%d+):(%d+) (%d+) GMT")
  assert(mon, "unexpected date " .. tostring(s))
  return days_from_civil(tonumber(y), MONTHS[mon], tonumber(d)) * 86400 +
    tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(sec)
end

local function colon_hex(s) return (s:gsub(":", ""):lower()) end

local function sorted(list)
  local c = table.move(list, 1, #list, 1, {})
  table.sort(c)
  return table.concat(c, ",")
end

-- A small CA, and a leaf it signed with known serial, days and SANs.
local pki
local function make_pki()
  if pki then return pki end
  local d = t.tmpdir()
  run("cd " .. q(d) .. " && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-384" ..
    " -nodes -keyout ca.key -out ca.pem -subj '/O=Test Org/CN=Test CA' -days 3650" ..
    " -set_serial 1 -addext basicConstraints=critical,CA:TRUE")
  t.writefile(d .. "/leaf.ext", table.concat({
    "subjectAltName=DNS:test.example,DNS:alt.example,IP:192.0.2.7,IP:2001:db8::5",
    "tlsfeature=status_request",
    "basicConstraints=critical,CA:FALSE",
    "subjectKeyIdentifier=hash",
    "authorityKeyIdentifier=keyid",
  }, "\n") .. "\n")
  run("cd " .. q(d) .. " && openssl req -new -newkey rsa:2048 -nodes -keyout leaf.key" ..
    " -out leaf.csr -subj /CN=test.example" ..
    " && openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -set_serial 0xff0102" ..
    " -days 30 -extfile leaf.ext -out leaf.pem" ..
    " && openssl x509 -in leaf.pem -outform DER -out leaf.der")
  pki = { dir = d }
  for _, f in ipairs({ "ca.pem", "ca.key", "leaf.pem", "leaf.key", "leaf.der" }) do
    pki[f] = t.readfile(d .. "/" .. f)
  end
  return pki
end

---------------------------------------------------------------- csr

t.test("csr verifies with openssl and lists the DNS and IP SANs", function()
  local key = core.key_generate("ec256")
  local der = core.csr{ key = key, names = { "example.com", "www.example.com" },
    ips = { "192.0.2.1", "2001:db8::1" } }
  t.eq(type(der), "string")
  t.eq(der:byte(1), 0x30)
  local d = t.tmpdir()
  t.writefile(d .. "/r.der", der)
  local out = run("openssl req -inform DER -in " .. q(d .. "/r.der") .. " -verify -noout")
  t.match(out, "verify OK")
  local text = run("openssl req -inform DER -in " .. q(d .. "/r.der") .. " -noout -text")
  t.match(text, "Subject: CN = example.com")
  t.match(text, "DNS:example.com, DNS:www.example.com, IP Address:192.0.2.1, " ..
    "IP Address:2001:DB8:0:0:0:0:0:1")
  t.match(text, "ecdsa%-with%-SHA256")
  t.ok(not text:find("TLS Feature"), "no must-staple unless asked")
  -- The request carries the key's public key.
  local pub = run("openssl req -inform DER -in " .. q(d .. "/r.der") .. " -noout -pubkey")
  t.eq(pub, key:public_pem())
end)

t.test("csr_info reads back names, IPs, CN, must-staple and the key", function()
  local key = core.key_generate("ec256")
  local der = assert(core.csr{ key = key, names = { "a.test", "b.test" },
    ips = { "192.0.2.1", "2001:db8::1" }, must_staple = true })
  local info = assert(core.csr_info(der))
  t.eq(table.concat(info.names, ","), "a.test,b.test")
  t.eq(table.concat(info.ips, ","), "192.0.2.1,2001:db8::1")
  t.eq(info.cn, "a.test")
  t.eq(info.must_staple, true)
  t.eq(info.public_key, core.pem_decode(key:public_pem()))
  local ip_only = assert(core.csr_info(assert(core.csr{ key = key, ips = { "127.0.0.1" } })))
  t.eq(ip_only.cn, nil)
  t.eq(#ip_only.names, 0)
  t.eq(ip_only.must_staple, false)
  -- A changed signature byte, garbage and a truncation are refused.
  local bad = der:sub(1, -2) .. string.char(der:byte(-1) ~ 1)
  t.fails("parse", "bad signature", core.csr_info(bad))
  t.fails("parse", nil, core.csr_info("not DER"))
  t.fails("parse", nil, core.csr_info(der:sub(1, 40)))
  t.raises(function() core.csr_info(der, 1) end, "no value expected")
end)

-- A#9.6: as authorize_order does, so the CSR names what was ordered.
t.test("csr lower-cases DNS names (SANs and CN)", function()
  local key = core.key_generate("ec256")
  local info = assert(core.csr_info(assert(core.csr{ key = key,
    names = { "Example.COM", "WWW.Example.com", "*.A.example" } })))
  t.eq(info.names[1], "example.com")
  t.eq(info.names[2], "www.example.com")
  t.eq(info.names[3], "*.a.example")
  t.eq(info.cn, "example.com")
end)

-- A#9.5: the option table is read raw; an __index function once closed
-- the key or dropped the names under the C code (ASan: use-after-free).
t.test("csr reads its options raw; a metamethod cannot pull the key away", function()
  local key = core.key_generate("ec256")
  local calls = 0
  local opts = { key = key, names = { "a.example", "b.example" } }
  setmetatable(opts, { __index = function(tbl)
    calls = calls + 1
    key:close()
    rawset(tbl, "names", nil)
    collectgarbage()
    return nil
  end })
  local der = core.csr(opts)
  t.eq(calls, 0, "no metamethod ran")
  local info = assert(core.csr_info(assert(der)))
  t.eq(#info.names, 2)
  -- nor one on the names list
  local key2 = core.key_generate("ec256")
  local names = setmetatable({ "c.example" }, { __index = function()
    key2:close()
    return "x.example"
  end })
  info = assert(core.csr_info(assert(core.csr{ key = key2, names = names })))
  t.eq(#info.names, 1)
end)

t.test("csr template: subject attributes and extra extensions (Go's " ..
  "WithTemplate)", function()
  local key = core.key_generate("ec256")
  -- OCTET STRING "abc" as the value of a private extension.
  local der = assert(core.csr{ key = key, names = { "a.example" },
    subject = { O = { "Acme", "Acme Two" }, C = "DE", L = "Berlin",
      CN = "custom cn" },
    extensions = { { oid = "1.3.6.1.4.1.99999.1", value = "\4\3abc" },
      { oid = "1.3.6.1.4.1.99999.2", value = "\5\0", critical = true } } })
  local d = t.tmpdir()
  t.writefile(d .. "/r.der", der)
  t.match(run("openssl req -inform DER -in " .. q(d .. "/r.der") ..
    " -verify -noout"), "verify OK")
  local text = run("openssl req -inform DER -in " .. q(d .. "/r.der") ..
    " -noout -text")
  -- In DN order whatever the table's order; the template CN replaces ours.
  t.match(text, "Subject: C = DE, L = Berlin, O = Acme, O = Acme Two, " ..
    "CN = custom cn\n")
  t.match(text, "1%.3%.6%.1%.4%.1%.99999%.1: *\n *%.%.abc")
  t.match(text, "1%.3%.6%.1%.4%.1%.99999%.2: critical")
  -- The SAN is made from the names, not critical under a subject.
  t.match(text, "X509v3 Subject Alternative Name: *\n *DNS:a%.example")
  local info = assert(core.csr_info(der))
  t.eq(info.names[1], "a.example")
  t.eq(info.cn, "custom cn")
  -- Without a CN in the template, ours (the first name) is added.
  info = assert(core.csr_info(assert(core.csr{ key = key,
    names = { "b.example" }, subject = { O = "Acme" } })))
  t.eq(info.cn, "b.example")
end)

t.test("csr template: what a CSR cannot carry is refused as invalid",
  function()
  local key = core.key_generate("ec256")
  local function bad(opts, pat)
    opts.key, opts.names = key, { "a.example" }
    t.fails("invalid", pat, core.csr(opts))
  end
  bad({ subject = { C = "DEU" } }, "subject C")
  bad({ subject = { CN = "a\0b" } }, "NUL")
  bad({ extensions = { { oid = "2.5.29.17", value = "\48\0" } } },
    "made from names")
  bad({ extensions = { { oid = "1.3.6.1.5.5.7.1.24", value = "\48\0" } } },
    "made from names")
  bad({ extensions = { { oid = "1.2.3", value = "\48\5" } } },
    "not one DER element")
  bad({ extensions = { { oid = "1.2.3", value = "\5\0\5\0" } } },
    "not one DER element")
  bad({ extensions = { { oid = "1.2.3", value = "" } } }, "empty")
  bad({ extensions = { { oid = "not.an.oid", value = "\5\0" } } },
    "dotted OID")
  bad({ extensions = { { oid = "1.2.3", value = "\5\0" },
    { oid = "1.2.3", value = "\5\0" } } }, "twice")
  local many = {}
  for i = 1, 17 do many[i] = { oid = "1.2.3." .. i, value = "\5\0" } end
  bad({ extensions = many }, "MAX_TEMPLATE")
  many = {}
  for i = 1, 17 do many[i] = "o" .. i end
  bad({ subject = { O = many } }, "MAX_TEMPLATE")
  -- Caller mistakes raise.
  t.raises(function() core.csr{ key = key, names = { "a.example" },
    subject = { X = "y" } } end, "unknown field 'X'")
  t.raises(function() core.csr{ key = key, names = { "a.example" },
    subject = "CN=x" } end, "subject")
  t.raises(function() core.csr{ key = key, names = { "a.example" },
    extensions = { { oid = "1.2.3" } } } end, "value")
  t.raises(function() core.csr{ key = key, names = { "a.example" },
    extensions = { { oid = "1.2.3", value = "\5\0", crit = true } } } end,
    "unknown field 'crit'")
end)

t.test("csr template is read raw too", function()
  local key = core.key_generate("ec256")
  local subject = setmetatable({}, { __index = function()
    key:close()
    collectgarbage()
    return "x"
  end })
  local ext = setmetatable({ oid = "1.2.3", value = "\5\0" },
    { __index = function() key:close() return true end })
  local info = assert(core.csr_info(assert(core.csr{ key = key,
    names = { "a.example" }, subject = subject, extensions = { ext } })))
  t.eq(info.cn, "a.example", "no metamethod ran: no CN came from it")
end)

t.test("csr with must_staple carries the TLS feature", function()
  local key = core.key_generate("ec256")
  local der = core.csr{ key = key, names = { "example.com" }, must_staple = true }
  t.ok(der:find(t.unhex("0608 2b06010505070118 0405 3003 020105"), 1, true),
    "TLS Feature extension with status_request")
  local d = t.tmpdir()
  t.writefile(d .. "/r.der", der)
  local text = run("openssl req -inform DER -in " .. q(d .. "/r.der") .. " -noout -text")
  t.match(text, "TLS Feature:%s+status_request")
end)

t.test("csr: IP only, long first name, P-384 and RSA keys", function()
  local d = t.tmpdir()
  local function text_of(der)
    t.writefile(d .. "/r.der", der)
    t.match(run("openssl req -inform DER -in " .. q(d .. "/r.der") .. " -verify -noout"),
      "verify OK")
    return run("openssl req -inform DER -in " .. q(d .. "/r.der") .. " -noout -text")
  end
  local ec = core.key_generate("ec256")
  -- IP only: empty subject, critical SAN (RFC 5280 §4.2.1.6).
  local text = text_of(core.csr{ key = ec, ips = { "127.0.0.1" } })
  t.match(text, "Subject:%s*\n")
  t.match(text, "Subject Alternative Name: critical%s+IP Address:127%.0%.0%.1")
  -- A first name over 64 bytes cannot be the CN.
  local long = string.rep("a", 60) .. ".example.com"
  text = text_of(core.csr{ key = ec, names = { long, "b.example" } })
  t.match(text, "Subject:%s*\n")
  t.match(text, "DNS:" .. long .. ", DNS:b%.example")
  -- Exactly 64 bytes still is.
  local n64 = string.rep("b", 52) .. ".example.com"
  t.eq(#n64, 64)
  t.match(text_of(core.csr{ key = ec, names = { n64 } }), "Subject: CN = " .. n64)
  t.match(text_of(core.csr{ key = core.key_generate("ec384"), names = { "a.example" } }),
    "ecdsa%-with%-SHA384")
  t.match(text_of(core.csr{ key = core.key_generate("rsa2048"), names = { "a.example" } }),
    "sha256WithRSAEncryption")
end)

t.test("csr refuses bad names and IPs as invalid", function()
  local key = core.key_generate("ec256")
  t.fails("invalid", "no names", core.csr{ key = key })
  t.fails("invalid", "no names", core.csr{ key = key, names = {}, ips = {} })
  t.fails("invalid", "empty", core.csr{ key = key, names = { "" } })
  t.fails("invalid", "printable", core.csr{ key = key, names = { "a b.example" } })
  t.fails("invalid", "printable", core.csr{ key = key, names = { "caf\xc3\xa9.example" } })
  t.fails("invalid", "NUL", core.csr{ key = key, names = { "a\0.example" } })
  t.fails("invalid", "LUACME_NAME_MAX",
    core.csr{ key = key, names = { string.rep("a", NAME_MAX + 1) } })
  t.ok(core.csr{ key = key, names = { string.rep("a", NAME_MAX) } })
  t.fails("invalid", "not an IP", core.csr{ key = key, ips = { "192.0.2.256" } })
  t.fails("invalid", "not an IP", core.csr{ key = key, ips = { "example.com" } })
  t.fails("invalid", "not an IP", core.csr{ key = key, names = { "a.example" }, ips = { "" } })
  local many = {}
  for i = 1, CSR_MAX_NAMES do many[i] = "n" .. i .. ".example" end
  t.ok(core.csr{ key = key, names = many })
  t.fails("invalid", "LUACME_CSR_MAX_NAMES",
    core.csr{ key = key, names = many, ips = { "127.0.0.1" } })
  many[#many + 1] = "one-more.example"
  t.fails("invalid", "LUACME_CSR_MAX_NAMES", core.csr{ key = key, names = many })
end)

t.test("csr raises on caller mistakes", function()
  local key = core.key_generate("ec256")
  t.raises(function() core.csr("example.com") end, "table expected")
  t.raises(function() core.csr{ key = key, names = { "a.example" }, bogus = 1 } end,
    "unknown field 'bogus'")
  t.raises(function() core.csr{ key = key, names = { "a.example" }, [1] = "x" } end,
    "non%-string field")
  t.raises(function() core.csr{ names = { "a.example" } } end, "'key' must be a luacme.key")
  t.raises(function() core.csr{ key = "pem", names = { "a.example" } } end,
    "'key' must be a luacme.key")
  t.raises(function() core.csr{ key = key, names = "a.example" } end,
    "'names' must be a list")
  t.raises(function() core.csr{ key = key, ips = { 127 } } end, "ips%[1%] must be a string")
  t.raises(function() core.csr{ key = key, names = { "a.example" }, must_staple = 1 } end,
    "must_staple")
  t.raises(function() core.csr({ key = key, names = { "a.example" } }, 2) end,
    "no value expected")
  local closed = core.key_generate("ec256")
  closed:close()
  t.raises(function() core.csr{ key = closed, names = { "a.example" } } end, "closed key")
end)

---------------------------------------------------------------- cert_info

t.test("cert_info reads the RFC 9773 Appendix A certificate", function()
  local info = assert(core.cert_info(t.readfile("tests/fixtures/x509/rfc9773.pem")))
  t.eq(info.serial, "0087654321")
  t.eq(t.hex(info.aki), "69885b6b87464041e1b37b847ba0ae2cde01c8d4")
  t.eq(info.ski, nil)
  t.eq(info.not_before, -62135596800)
  t.eq(info.not_after, -62135596800)
  t.eq(math.type(info.not_before), "integer")
  t.eq(info.subject, "CN=example.com")
  t.eq(info.issuer, "CN=Example CA")
  t.eq(info.subject_cn, "example.com")
  t.eq(info.issuer_cn, "Example CA")
  t.eq(#info.names, 0)
  t.eq(#info.ips, 0)
  t.eq(info.is_ca, false)
  t.eq(info.must_staple, false)
  t.eq(info.key_type, "ec256")
  t.eq(info.sha256, t.hex(core.sha256(info.der)))
  -- RFC 9773 §4.1 CertID from these fields (B.12).
  t.eq(core.b64url_encode(info.aki) .. "." .. core.b64url_encode(t.unhex(info.serial)),
    "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE")
  -- The same certificate as DER gives the same answers.
  local again = assert(core.cert_info(info.der))
  t.eq(again.sha256, info.sha256)
  t.eq(again.serial, info.serial)
end)

t.test("cert_info matches openssl's view of a certificate it made", function()
  local p = make_pki()
  local info = assert(core.cert_info(p["leaf.pem"]))
  local leaf = q(p.dir .. "/leaf.pem")
  local out = run("openssl x509 -in " .. leaf .. " -noout -dates -serial -fingerprint -sha256")
  t.eq(info.serial, "00ff0102")             -- content octets keep the 00
  t.eq(info.serial:gsub("^00", ""):upper(), out:match("serial=(%x+)"))
  t.eq(info.not_before, openssl_date(out:match("notBefore=([^\n]+)")))
  t.eq(info.not_after, openssl_date(out:match("notAfter=([^\n]+)")))
  t.eq(info.not_after - info.not_before, 30 * 86400)
  t.ok(math.abs(info.not_before - os.time()) < 300, "issued now")
  t.eq(info.sha256, colon_hex(out:match("Fingerprint=([%x:]+)")))
  t.eq(info.der, p["leaf.der"])
  t.eq(sorted(info.names), "alt.example,test.example")
  t.eq(sorted(info.ips), "192.0.2.7,2001:db8::5")
  t.eq(info.must_staple, true)
  t.eq(info.is_ca, false)
  t.eq(info.key_type, "rsa2048")
  t.eq(info.subject, "CN=test.example")
  t.eq(info.issuer, "CN=Test CA,O=Test Org")
  t.eq(info.subject_cn, "test.example")
  t.eq(info.issuer_cn, "Test CA")
  local ext = run("openssl x509 -in " .. leaf ..
    " -noout -ext subjectKeyIdentifier,authorityKeyIdentifier")
  t.eq(t.hex(info.ski), colon_hex(ext:match("Subject Key Identifier:%s+([%x:]+)")))
  t.eq(t.hex(info.aki), colon_hex(ext:match("Authority Key Identifier:%s+([%x:]+)")))

  local ca = assert(core.cert_info(p["ca.pem"]))
  t.eq(ca.is_ca, true)
  t.eq(ca.key_type, "ec384")
  t.eq(ca.serial, "01")
  t.eq(ca.subject, ca.issuer)
  t.eq(info.aki, ca.ski)                    -- the leaf points at its issuer
  t.eq(ca.not_after - ca.not_before, 3650 * 86400)
  t.eq(#ca.names, 0)
end)

t.test("cert_info takes the first certificate of a PEM and refuses junk", function()
  local p = make_pki()
  local info = assert(core.cert_info(p["leaf.key"] .. p["ca.pem"] .. p["leaf.pem"]))
  t.eq(info.subject_cn, "Test CA")
  t.fails("parse", nil, core.cert_info("garbage"))
  t.fails("parse", nil, core.cert_info(""))
  t.fails("parse", nil, core.cert_info(p["leaf.key"]))
  t.fails("parse", nil, core.cert_info(p["leaf.der"] .. "\0"))       -- trailing byte
  t.fails("parse", nil, core.cert_info(p["leaf.der"]:sub(1, -2)))    -- truncated
  t.fails("parse", nil, core.cert_info("-----BEGIN CERTIFICATE-----\nAAAA\n" ..
    "-----END CERTIFICATE-----\n"))
  t.fails("too_large", "LUACME_PEM_MAX", core.cert_info(string.rep("x", PEM_MAX + 1)))
  t.raises(function() core.cert_info() end, "string expected")
  t.raises(function() core.cert_info({}) end, "string expected")
  t.raises(function() core.cert_info(p["leaf.pem"], 1) end, "no value expected")
end)

---------------------------------------------------------------- PEM

t.test("pem_split returns each certificate of a chain, normalised", function()
  local p = make_pki()
  local a, b = p["leaf.pem"], p["ca.pem"]
  local c = core.tls_alpn01_cert("c.example", "x")
  local list = assert(core.pem_split("some text\n" .. a .. "\n\n" .. b .. c))
  t.eq(#list, 3)
  t.eq(list[1], a)
  t.eq(list[2], b)
  t.eq(list[3], c)
  for _, pem in ipairs(list) do
    t.match(pem, "^%-%-%-%-%-BEGIN CERTIFICATE%-%-%-%-%-\n")
    t.match(pem, "\n%-%-%-%-%-END CERTIFICATE%-%-%-%-%-\n$")
  end
  -- CRLF and odd line lengths come back in the one canonical shape.
  local der = core.pem_decode(a)
  local b64 = core.b64url_encode(der):gsub("-", "+"):gsub("_", "/")
  b64 = b64 .. string.rep("=", (4 - #b64 % 4) % 4)
  local odd = "-----BEGIN CERTIFICATE-----\r\n" .. b64:gsub("(" .. string.rep(".", 76) .. ")",
    "%1\r\n") .. "\r\n-----END CERTIFICATE-----\r\n"
  list = assert(core.pem_split(odd))
  t.eq(#list, 1)
  t.eq(list[1], a)
end)

t.test("pem_split refuses private keys, junk and oversize chains", function()
  local p = make_pki()
  local key = core.key_generate("ec256")
  t.fails("private_key", nil, core.pem_split(p["leaf.pem"] .. p["leaf.key"]))
  t.fails("private_key", nil, core.pem_split(key:private_pem() .. p["ca.pem"]))
  t.fails("private_key", nil, core.pem_split(p["leaf.pem"] ..
    "-----BEGIN RSA PRIVATE KEY-----\nbroken\n-----END RSA PRIVATE KEY-----\n"))
  t.fails("private_key", nil, core.pem_split(p["leaf.pem"] ..
    "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"))
  t.fails("parse", nil, core.pem_split("garbage"))
  t.fails("parse", nil, core.pem_split(""))
  t.fails("parse", nil, core.pem_split(p["leaf.der"]))
  t.fails("parse", nil, core.pem_split(p["leaf.pem"] .. key:public_pem()))
  t.fails("parse", nil, core.pem_split("-----BEGIN CERTIFICATE-----\nAAAA\n" ..
    "-----END CERTIFICATE-----\n"))
  t.fails("parse", nil, core.pem_split(p["leaf.pem"]:sub(1, -30)))
  t.fails("too_large", "LUACME_PEM_MAX", core.pem_split(string.rep(" ", PEM_MAX + 1)))
  local list = assert(core.pem_split(string.rep(p["ca.pem"], CHAIN_MAX_CERTS)))
  t.eq(#list, CHAIN_MAX_CERTS)
  t.fails("too_large", "LUACME_CHAIN_MAX_CERTS",
    core.pem_split(string.rep(p["ca.pem"], CHAIN_MAX_CERTS + 1)))
  t.raises(function() core.pem_split(nil) end, "string expected")
end)

t.test("pem_encode and pem_decode round trip", function()
  local p = make_pki()
  local der, label = core.pem_decode(p["leaf.pem"])
  t.eq(der, p["leaf.der"])
  t.eq(label, "CERTIFICATE")
  t.eq(core.pem_encode(der), p["leaf.pem"])
  t.eq(core.pem_encode(der, "CERTIFICATE"), p["leaf.pem"])
  local crl = core.pem_encode("\48\0", "X509 CRL")
  t.eq(crl, "-----BEGIN X509 CRL-----\nMAA=\n-----END X509 CRL-----\n")
  t.eq(select(2, core.pem_decode(crl)), "X509 CRL")
  -- openssl agrees on the encoding.
  local d = t.tmpdir()
  t.writefile(d .. "/c.pem", core.pem_encode(der))
  t.eq(run("openssl x509 -in " .. q(d .. "/c.pem") .. " -noout -serial"), "serial=FF0102\n")
  t.fails("parse", nil, core.pem_decode("no pem here"))
  t.fails("parse", nil, core.pem_decode(""))
  t.fails("private_key", nil, core.pem_decode(p["leaf.key"]))
  t.fails("invalid", nil, core.pem_encode(""))
  t.fails("too_large", nil, core.pem_encode(string.rep("x", PEM_MAX + 1)))
  t.fails("too_large", nil, core.pem_decode(string.rep("x", PEM_MAX + 1)))
  t.raises(function() core.pem_encode(der, "certificate") end, "bad PEM label")
  t.raises(function() core.pem_encode(der, "A--B") end, "bad PEM label")
  t.raises(function() core.pem_encode(der, "") end, "bad PEM label")
  t.raises(function() core.pem_encode({}) end, "string expected")
  t.raises(function() core.pem_decode(1, 2) end, "no value expected")
end)

---------------------------------------------------------------- keys

t.test("cert_matches_key compares public keys", function()
  local p = make_pki()
  local leaf_key = assert(core.key_load(p["leaf.key"]))
  local ca_key = assert(core.key_load(p["ca.key"]))
  t.eq(core.cert_matches_key(p["leaf.pem"], leaf_key), true)
  t.eq(core.cert_matches_key(p["leaf.der"], leaf_key), true)
  t.eq(core.cert_matches_key(p["leaf.pem"], ca_key), false)
  t.eq(core.cert_matches_key(p["ca.pem"], ca_key), true)
  t.eq(core.cert_matches_key(p["ca.pem"], core.key_generate("ec384")), false)
  t.fails("parse", nil, core.cert_matches_key("garbage", leaf_key))
  t.raises(function() core.cert_matches_key(p["leaf.pem"], "key") end, "luacme.key expected")
  t.raises(function() core.cert_matches_key(p["leaf.pem"]) end, "luacme.key expected")
  ca_key:close()
  t.raises(function() core.cert_matches_key(p["ca.pem"], ca_key) end, "closed key")
end)

---------------------------------------------------------------- tls-alpn-01

t.test("tls_alpn01_cert: RFC 8737 extension, one SAN, openssl view", function()
  local key = core.key_generate("ec256")
  local pem, k2 = core.tls_alpn01_cert("example.com", KEY_AUTH, key)
  t.ok(rawequal(k2, key), "the given key object comes back")
  local info = assert(core.cert_info(pem))
  local digest = core.sha256(KEY_AUTH)
  t.eq(t.hex(digest), "dbbd5eefe7b4d06eb9d1d9f5acb4c7cda27d320e4b30332f0b6cb441734ad7b0")
  local at = info.der:find(RFC8737_PREFIX, 1, true)
  t.ok(at, "the whole Extension encoding is in the certificate")
  t.eq(info.der:sub(at + #RFC8737_PREFIX, at + #RFC8737_PREFIX + 31), digest)
  t.eq(t.hex(info.der:sub(at + #RFC8737_PREFIX - 2, at + #RFC8737_PREFIX + 31)),
    "0420dbbd5eefe7b4d06eb9d1d9f5acb4c7cda27d320e4b30332f0b6cb441734ad7b0")
  t.eq(#info.names, 1)
  t.eq(info.names[1], "example.com")
  t.eq(#info.ips, 0)
  t.eq(info.not_after - info.not_before, 8 * 86400)
  t.ok(math.abs(info.not_before - (os.time() - 86400)) < 300, "valid since a day ago")
  t.eq(core.cert_matches_key(pem, key), true)
  t.ok(#info.serial >= 32, "random 128-bit serial")
  t.ok(info.serial ~= assert(core.cert_info((core.tls_alpn01_cert("example.com", "x",
    key)))).serial, "serials differ")

  local d = t.tmpdir()
  t.writefile(d .. "/c.pem", pem)
  local text = run("openssl x509 -in " .. q(d .. "/c.pem") .. " -noout -text")
  t.match(text, "1%.3%.6%.1%.5%.5%.7%.1%.31: critical")
  t.match(text, "X509v3 Subject Alternative Name: %s*\n%s*DNS:example%.com\n")
  -- Self-signed: verifies against itself once openssl is told to let the
  -- critical extension pass (that it does not know it is the point).
  t.ok(not t.sh("openssl verify -CAfile " .. q(d .. "/c.pem") .. " " .. q(d .. "/c.pem")))
  t.match(run("openssl verify -ignore_critical -check_ss_sig -CAfile " .. q(d .. "/c.pem") ..
    " " .. q(d .. "/c.pem")), ": OK")
  t.eq(run("openssl x509 -in " .. q(d .. "/c.pem") .. " -noout -pubkey"), key:public_pem())
end)

t.test("tls_alpn01_cert: IP identifiers get one iPAddress SAN", function()
  local d = t.tmpdir()
  for ip, shown in pairs({ ["127.0.0.1"] = "IP Address:127%.0%.0%.1",
      ["::1"] = "IP Address:0:0:0:0:0:0:0:1" }) do
    local pem, key = core.tls_alpn01_cert(ip, KEY_AUTH)
    t.eq(getmetatable(key).__name, "luacme.key")
    t.eq(key:alg(), "ES256")                -- a fresh P-256 key
    t.eq(core.cert_matches_key(pem, key), true)
    local info = assert(core.cert_info(pem))
    t.eq(#info.ips, 1)
    t.eq(info.ips[1], ip)
    t.eq(#info.names, 0)
    t.ok(info.der:find(RFC8737_PREFIX .. core.sha256(KEY_AUTH), 1, true))
    t.writefile(d .. "/c.pem", pem)
    local text = run("openssl x509 -in " .. q(d .. "/c.pem") .. " -noout -text")
    t.match(text, "Subject Alternative Name: %s*\n%s*" .. shown .. "\n")
    t.match(text, "1%.3%.6%.1%.5%.5%.7%.1%.31: critical")
  end
end)

t.test("cert_info writes IPv6 SANs in RFC 5952 form", function()
  for given, want in pairs({ ["2001:0DB8:0000:0000:0001:0000:0000:0001"] = "2001:db8::1:0:0:1",
      ["2001:db8:0:1:1:1:1:1"] = "2001:db8:0:1:1:1:1:1",
      ["2001:0:0:1:0:0:0:1"] = "2001:0:0:1::1",
      ["::FFFF:192.0.2.1"] = "::ffff:192.0.2.1" }) do
    local info = assert(core.cert_info((core.tls_alpn01_cert(given, "x"))))
    t.eq(info.ips[1], want, given)
  end
end)

t.test("tls_alpn01_cert errors", function()
  local key = core.key_generate("ec256")
  t.fails("invalid", nil, core.tls_alpn01_cert("bad name", KEY_AUTH))
  t.fails("invalid", nil, core.tls_alpn01_cert("", KEY_AUTH, key))
  t.fails("invalid", nil, core.tls_alpn01_cert("a\0b", KEY_AUTH))
  t.fails("invalid", nil, core.tls_alpn01_cert(string.rep("a", NAME_MAX + 1), KEY_AUTH))
  t.raises(function() core.tls_alpn01_cert("example.com") end, "string expected")
  t.raises(function() core.tls_alpn01_cert("example.com", KEY_AUTH, "key") end,
    "luacme.key expected")
  t.raises(function() core.tls_alpn01_cert("example.com", KEY_AUTH, key, 1) end,
    "no value expected")
  key:close()
  t.raises(function() core.tls_alpn01_cert("example.com", KEY_AUTH, key) end, "closed key")
end)

---------------------------------------------------------------- reverse_name

t.test("reverse_name gives RFC 8738 §6 names", function()
  t.eq(core.reverse_name("127.0.0.1"), "1.0.0.127.in-addr.arpa")
  t.eq(core.reverse_name("192.0.2.5"), "5.2.0.192.in-addr.arpa")
  t.eq(core.reverse_name("2001:db8::1"),
    "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa")
  t.eq(core.reverse_name("::1"), string.rep("0.", 31):gsub("^", "1.") .. "ip6.arpa")
  t.fails("invalid", nil, core.reverse_name("example.com"))
  t.fails("invalid", nil, core.reverse_name("1.2.3"))
  t.fails("invalid", nil, core.reverse_name("127.0.0.1\0"))
  t.raises(function() core.reverse_name() end, "string expected")
end)
