-- luacme.import without a CA: certbot's JWK account keys made into keys
-- (RSA through the real certbot in e2e/cli_import; EC here, from an
-- openssl key), and what the readers list instead of guessing. The
-- e2e scenario covers the state the real tools write.
local t = require "testlib"
local core = require "luacme.core"
local import = require "luacme.import"

local function b64(hex)
  return core.b64url_encode(t.unhex(hex))
end

-- An EC private key's d, x, y (hex) through the openssl command line.
local function ec_parts(curve)
  local dir = t.tmpdir()
  local ok, out = t.sh("openssl ecparam -name " .. curve .. " -genkey " ..
    "-noout -out " .. dir .. "/k.pem && openssl ec -in " .. dir ..
    "/k.pem -text -noout 2>/dev/null")
  t.ok(ok, out)
  local priv = out:match("priv:%s*(.-)%s*pub:"):gsub("[%s:]", "")
  local pub = out:match("pub:%s*(.-)%s*ASN1"):gsub("[%s:]", "")
  return priv, pub
end

t.test("an EC JWK (P-256, P-384) becomes the same key", function()
  for curve, crv in pairs({ prime256v1 = "P-256", secp384r1 = "P-384" }) do
    local priv, pub = ec_parts(curve)
    local size = crv == "P-256" and 32 or 48
    pub = pub:sub(3)                                 -- drop the 04
    local x, y = pub:sub(1, size * 2), pub:sub(size * 2 + 1)
    local key = import.jwk_key({ kty = "EC", crv = crv, d = b64(priv),
      x = b64(x), y = b64(y) })
    local jwk = key:jwk()
    t.eq(jwk.x, b64(x), crv)
    t.eq(jwk.y, b64(y), crv)
    t.eq(key:spec(), crv == "P-256" and "ec256" or "ec384")
  end
end)

t.test("a JWK whose parts do not belong together is refused", function()
  local priv = ec_parts("prime256v1")
  local _, pub2 = ec_parts("prime256v1")
  pub2 = pub2:sub(3)
  local ok, err = pcall(import.jwk_key, { kty = "EC", crv = "P-256",
    d = b64(priv), x = b64(pub2:sub(1, 64)), y = b64(pub2:sub(65)) })
  t.eq(ok, false, "a public part of another key")
  t.match(tostring(err), "JWK")
  ok, err = pcall(import.jwk_key, { kty = "OKP", crv = "Ed25519" })
  t.eq(ok, false)
  t.match(tostring(err), "unsupported JWK key type")
  ok, err = pcall(import.jwk_key, { kty = "RSA", n = "AQAB" })
  t.eq(ok, false)
  t.match(tostring(err), "lacks its e member")
end)

-- A self-signed certificate and its key, as the old tools keep them.
local function cert_and_key(dir, name)
  local ok, out = t.sh("openssl req -x509 -newkey ec -pkeyopt " ..
    "ec_paramgen_curve:prime256v1 -nodes -subj /CN=" .. name ..
    " -addext subjectAltName=DNS:" .. name .. " -days 30 -keyout " ..
    dir .. "/key.pem -out " .. dir .. "/cert.pem 2>&1")
  t.ok(ok, out)
  return t.readfile(dir .. "/cert.pem"), t.readfile(dir .. "/key.pem")
end

local function by_name(list, name)
  for _, e in ipairs(list) do if e.name == name then return e end end
end

-- Is there a line in list matching pat?
local function has(list, pat)
  for _, l in ipairs(list) do if l:find(pat) then return true end end
  return false
end

local function unmapped_for(plan, name)
  local out = {}
  for _, u in ipairs(plan.unmapped) do
    if u.name == name then out[#out + 1] = u.what end
  end
  return out
end

t.test("certbot: what has no counterpart is listed, not guessed", function()
  local dir = t.tmpdir() .. "/le"
  assert(core.mkdir_p(dir .. "/renewal", 448))
  for _, n in ipairs({ "manual.example", "roots.example", "nginx.example" }) do
    local live = dir .. "/live/" .. n
    assert(core.mkdir_p(live, 448))
    cert_and_key(live, n)
  end
  local function conf(n, params)
    t.writefile(dir .. "/renewal/" .. n .. ".conf", table.concat({
      "cert = " .. dir .. "/live/" .. n .. "/cert.pem",
      "privkey = " .. dir .. "/live/" .. n .. "/key.pem",
      "[renewalparams]", "server = https://ca.example/dir",
      params, "" }, "\n"))
  end
  conf("manual.example", "authenticator = manual\n" ..
    "manual_auth_hook = /usr/local/bin/auth.sh")
  conf("roots.example", "authenticator = webroot\n[[webroot_map]]\n" ..
    "roots.example = /srv/a\nwww.roots.example = /srv/b")
  conf("nginx.example", "authenticator = nginx\ninstaller = nginx\n" ..
    "deploy_hook = echo a,b=c")
  local plan = import.read("certbot", dir)
  t.eq(#plan.certs, 3)
  for _, n in ipairs({ "manual.example", "nginx.example" }) do
    t.eq(#by_name(plan.certs, n).hooks, 0, n .. ": no hook guessed")
  end
  t.ok(has(unmapped_for(plan, "manual.example"), "^manual authenticator"))
  local u = unmapped_for(plan, "nginx.example")
  t.ok(has(u, "^authenticator nginx has no luacme counterpart"))
  t.ok(has(u, "^deploy hook 'echo a,b=c' cannot be written as a hook spec"),
    "a command the spec cannot carry is listed")
  t.ok(has(u, "^account nil not found"), "no account: said so")
  local roots = by_name(plan.certs, "roots.example")
  t.eq(roots.hooks[1], "webroot:root=/srv/a", "one root: its names' map")
end)

t.test("acme.sh: DNS providers map to acmesh; deploy scripts are listed",
  function()
  local home = t.tmpdir() .. "/.acme.sh"
  local d = home .. "/dns.example_ecc"
  assert(core.mkdir_p(home .. "/ca", 448))
  assert(core.mkdir_p(d, 448))
  cert_and_key(d, "dns.example")
  assert(core.rename(d .. "/cert.pem", d .. "/dns.example.cer"))
  assert(core.rename(d .. "/key.pem", d .. "/dns.example.key"))
  t.writefile(d .. "/dns.example.conf", table.concat({
    "Le_Domain='dns.example'", "Le_Webroot='dns_cf'",
    "Le_API='https://ca.example/dir'", "Le_DeployHook='haproxy,'",
    "Le_ReloadCmd='__ACME_BASE64__START_c2VydmljZSBuZ2lueCByZWxvYWQ=" ..
    "__ACME_BASE64__END_'", "" }, "\n"))
  local plan = import.read("acme.sh", home)
  local e = plan.certs[1]
  t.eq(e.hooks[1], "acmesh:script=" .. home .. "/dnsapi/dns_cf.sh")
  t.eq(e.deploy_hooks[1], "command:sh=1,cmd=service nginx reload")
  local u = unmapped_for(plan, "dns.example")
  t.ok(has(u, "^DNS provider dns_cf: its credentials"))
  t.ok(has(u, "^Le_DeployHook 'haproxy,'"))
  t.eq(#plan.accounts, 0)
end)

t.test("import reads nothing that is not the tool's state", function()
  local ok, err = pcall(import.read, "dehydrated", t.tmpdir())
  t.eq(ok, false)
  t.match(tostring(err), "holds no dehydrated state")
  ok, err = pcall(import.read, "certbot", "/nonexistent/le")
  t.eq(ok, false)
  t.match(tostring(err), "does not exist")
end)
