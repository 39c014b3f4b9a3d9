-- A whole issuance while Pebble rejects half of all good nonces
-- (PEBBLE_WFE_NONCEREJECT=50): badNonce is retried with the nonce of the
-- error reply, and every step completes.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local t = require "testlib"
local E = require "e2e"
local acme = require "luacme"
local core = require "luacme.core"

t.test("account and issuance at 50% nonce rejection", function()
  local c = E.account()
  local names = E.names("nonce", 3)
  local r, err = E.issue(c, names, E.webroot_solver())
  t.ok(r, "issue: " .. tostring(err))
  t.eq(E.list_str(E.sans(r.certs[1])), E.list_str(E.dns_sans(names)))
  local ok, out = E.verify_chain(r.certs, E.root_pem(0))
  t.ok(ok, out)
  local revoked
  revoked, err = c:revoke_cert(nil, r.certs[1], 0)
  t.ok(revoked, "revoke: " .. tostring(err))
  t.eq(E.cert_status(E.serial(r.certs[1])).Status, "Revoked")
  -- Half the POSTs were refused, so the retries were exercised ...
  local st = c:stats()
  t.ok(st.bad_nonces >= 3, "badNonce seen: " .. tostring(st.bad_nonces))
  -- ... and each retry used the nonce of the error reply: the nonce pool
  -- never ran dry, so newNonce was asked once, at the start.
  t.eq(E.pebble_count("HEAD /nonce%-plz"), 1, "one newNonce request")
  t.eq(E.pebble_count("GET /nonce%-plz"), 0)
end)
