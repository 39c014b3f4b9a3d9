-- Alternate chains (PEBBLE_ALTERNATE_ROOTS=2, PEBBLE_CHAIN_LENGTH=3):
-- two alternates are listed; each chains to a different root, and one
-- can be chosen by its top issuer.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local t = require "testlib"
local E = require "e2e"
local acme = require "luacme"
local core = require "luacme.core"

local function top_issuer(ders)
  return E.issuer(ders[#ders])
end

t.test("two alternates, each ending at its own root", function()
  local c = E.account()
  local r, err = E.issue(c, { E.name("alt") }, E.webroot_solver())
  t.ok(r, "issue: " .. tostring(err))
  local roots = {}
  for i = 0, 2 do roots[i] = E.root_pem(i) end
  local ok, out = E.verify_chain(r.certs, roots[0])
  t.ok(ok, "default chain verifies to /roots/0: " .. out)

  local alts
  alts, err = c:list_cert_alternates(r.cert_url)
  t.ok(alts, "list_cert_alternates: " .. tostring(err))
  t.eq(#alts, 2)

  local root_subject = {}
  for i = 0, 2 do
    local d = E.scratch()
    E.writefile(d .. "/r.pem", roots[i])
    root_subject[i] = E.must("openssl x509 -noout -subject -nameopt RFC2253 -in "
      .. E.q(d .. "/r.pem")):match("subject=([^\n]*)")
  end
  t.ok(root_subject[0] ~= root_subject[1] and root_subject[1] ~= root_subject[2],
    "three distinct roots")
  t.eq(top_issuer(r.certs), root_subject[0])

  local leaf_serial = E.serial(r.certs[1])
  local by_issuer = {}
  for _, url in ipairs(alts) do
    local chain
    chain, err = c:fetch_cert(url, true)
    t.ok(chain, "fetch alternate: " .. tostring(err))
    t.eq(E.serial(chain[1]), leaf_serial, "same leaf")
    t.eq(#chain, #r.certs, "same chain length")
    local top = top_issuer(chain)
    t.ok(top ~= root_subject[0], "alternate ends at another root")
    by_issuer[top] = chain
  end
  -- Choose by issuer: each alternate root has exactly one chain, and it
  -- verifies against that root only.
  for i = 1, 2 do
    local chain = by_issuer[root_subject[i]]
    t.ok(chain, "a chain to root " .. i)
    ok, out = E.verify_chain(chain, roots[i])
    t.ok(ok, "alternate verifies to /roots/" .. i .. ": " .. out)
    ok = E.verify_chain(chain, roots[0])
    t.ok(not ok, "and not to /roots/0")
  end
end)

t.test("client:issue picks the chain of a preferred root", function()
  local c = E.account()
  local d = E.scratch()
  E.writefile(d .. "/r2.pem", E.root_pem(2))
  local cn = E.must("openssl x509 -noout -subject -nameopt RFC2253,sep_multiline -in "
    .. E.q(d .. "/r2.pem")):match("CN=([^\n]+)")
  t.ok(cn, "root 2 has a CN")
  local r, err = E.lib_issue(c, { E.name("pref") }, E.webroot_solver(),
    { preferred_chain = cn })
  t.ok(r, "issue: " .. tostring(err))
  local ok, out = E.verify_chain(r.certs, E.root_pem(2))
  t.ok(ok, "the chosen chain verifies to /roots/2: " .. out)
  t.match(E.issuer(r.certs[#r.certs]), "CN=" .. cn:gsub("%p", "%%%0"))
end)

-- Issue 4: the settings a certificate was issued with (key type, chain
-- preference, profile, must-staple) are stored and reused by renew.
t.test("the luacme command keeps key type and chain preference on renew",
  function()
  local cjson = require "cjson"
  local L = require "cli_lib"
  local state = L.state()
  local d = E.scratch()
  E.writefile(d .. "/r1.pem", E.root_pem(1))
  local cn = E.must("openssl x509 -noout -subject -nameopt RFC2253,sep_multiline -in "
    .. E.q(d .. "/r1.pem")):match("CN=([^\n]+)")
  local n = E.name("settings")
  L.must(state, { "issue", "-d", n, "--hook", L.webroot(), "--agree-tos",
    "--key-type", "rsa2048", "--preferred-chain", cn, "--profile", "classic",
    "--must-staple" })
  local function check(set, label)
    L.check_set(set, label)
    local key = assert(core.key_load(set["privkey.pem"]))
    t.eq(key:spec(), "rsa2048", label .. ": key type")
    local certs = assert(require("luacme.util").pem_certs(
      set["fullchain.pem"]))
    local ok, out = E.verify_chain(certs, E.root_pem(1))
    t.ok(ok, label .. ": the preferred chain (to /roots/1): " .. out)
    local meta = cjson.decode(set["meta.json"])
    t.eq(meta.key_type, "rsa2048", label)
    t.eq(meta.preferred_chain, cn, label)
    t.eq(meta.profile, "classic", label)
    t.eq(meta.must_staple, true, label)
  end
  local first = L.files(state, n)
  check(first, "issued")
  L.must(state, { "renew", "--force", n })
  local again = L.files(state, n)
  check(again, "renewed")
  t.ok(again["cert.pem"] ~= first["cert.pem"], "a new certificate")
end)
