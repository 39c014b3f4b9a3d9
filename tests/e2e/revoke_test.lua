-- Revocation with a reason, by the account key and by the certificate's
-- own key; Pebble's cert-status-by-serial shows Revoked and the reason.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local t = require "testlib"
local E = require "e2e"
local acme = require "luacme"
local core = require "luacme.core"

local function issue(c)
  local r, err = E.issue(c, { E.name("rev") }, E.webroot_solver())
  t.ok(r, "issue: " .. tostring(err))
  return r
end

t.test("revoke by the account key", function()
  local c = E.account()
  local r = issue(c)
  local serial = E.serial(r.certs[1])
  t.eq(E.cert_status(serial).Status, "Valid")
  local ok, err = c:revoke_cert(nil, r.certs[1], acme.CRL_REASON_SUPERSEDED)
  t.ok(ok, "revoke: " .. tostring(err))
  local st = E.cert_status(serial)
  t.eq(st.Status, "Revoked")
  t.eq(st.Reason, 4)
  t.eq(acme.CRL_REASON_SUPERSEDED, 4)
  -- Again: the CA says it is already revoked.
  ok, err = c:revoke_cert(nil, r.certs[1], 4)
  t.ok(not ok)
  t.eq(err.type, "urn:ietf:params:acme:error:alreadyRevoked")
end)

t.test("revoke by the certificate key, without an account", function()
  local c = E.account()
  local r = issue(c)
  local serial = E.serial(r.certs[1])
  local stranger = E.client()          -- no account
  local ok, err = stranger:revoke_cert(r.key, r.certs[1],
    acme.CRL_REASON_KEY_COMPROMISE)
  t.ok(ok, "revoke with the cert key: " .. tostring(err))
  local st = E.cert_status(serial)
  t.eq(st.Status, "Revoked")
  t.eq(st.Reason, 1)
end)

t.test("another account cannot revoke", function()
  local c = E.account()
  local r = issue(c)
  local other = E.account()
  local ok, err = other:revoke_cert(nil, r.certs[1], 0)
  t.ok(not ok)
  t.eq(err.status, 403)
  t.eq(err.type, "urn:ietf:params:acme:error:unauthorized")
  t.eq(E.cert_status(E.serial(r.certs[1])).Status, "Valid")
end)

t.test("an invalid reason is the CA's problem", function()
  local c = E.account()
  local r = issue(c)
  local ok, err = c:revoke_cert(nil, r.certs[1], 7)
  t.ok(not ok)
  t.eq(err.type, "urn:ietf:params:acme:error:badRevocationReason")
end)
