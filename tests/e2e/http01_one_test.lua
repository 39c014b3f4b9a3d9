-- http-01 for one name: the key authorization is served from a webroot
-- by a real HTTP server; the certificate names exactly that name and
-- chains to Pebble's root.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local t = require "testlib"
local E = require "e2e"

t.test("one name over http-01", function()
  local c = E.account()
  local name = E.name("one")
  local s = E.webroot_solver()
  local r, err = E.issue(c, { name }, s)
  t.ok(r, "issue: " .. tostring(err))
  local leaf = r.certs[1]
  t.eq(E.list_str(E.sans(leaf)), E.list_str({ "DNS:" .. name }))
  t.ok(#r.certs >= 2, "the chain holds the intermediate")
  local ok, out = E.verify_chain(r.certs, E.root_pem(0))
  t.ok(ok, "chain verifies to /roots/0: " .. out)
  -- The certificate is for the key in the CSR.
  local pub = E.x509(leaf, "-pubkey")
  t.eq(pub:gsub("%s", ""), r.key:public_pem():gsub("%s", ""))
  -- What the VA fetched, as the webroot server logged it.
  t.eq(#s.deployed, 1)
  local got = E.http_log_lines("/.well-known/acme-challenge/"
    .. s.deployed[1].token)
  t.ok(#got >= 1, "the VA fetched the token")
  for _, line in ipairs(got) do t.match(line, '" 200 ') end
  t.eq(#E.webroot_files(), 0, "challenge files removed")
  -- The challenge and its authorization are valid now.
  local z = assert(c:get_authorization(r.order.authz_urls[1]))
  t.eq(z.status, "valid")
  t.eq(z.identifier.type, "dns")
  t.eq(z.identifier.value, name)
  local ch = assert(c:get_challenge(s.deployed[1].uri))
  t.eq(ch.status, "valid")
  t.eq(ch.type, "http-01")
  t.ok(ch.validated, "validated time set")
  -- The certificate URL serves the same chain.
  t.match(r.cert_url, "^https://127%.0%.0%.1:%d+/certZ/")
  local again = assert(c:fetch_cert(r.cert_url, true))
  t.eq(#again, #r.certs)
  for i = 1, #again do t.ok(again[i] == r.certs[i], "cert " .. i) end
end)
