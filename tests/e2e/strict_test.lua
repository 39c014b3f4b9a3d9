-- A whole issuance against Pebble -strict (challenge payload exactly
-- "{}", no ACME v1 "resource", ...).
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local t = require "testlib"
local E = require "e2e"
local acme = require "luacme"
local core = require "luacme.core"

t.test("issuance with -strict", function()
  t.eq(E.env.strict, "1", "harness started Pebble with -strict")
  local c = E.account()
  local names = { E.name("strict"), E.name("strict") }
  local r, err = E.issue(c, names, E.webroot_solver())
  t.ok(r, "issue: " .. tostring(err))
  t.eq(E.list_str(E.sans(r.certs[1])), E.list_str(E.dns_sans(names)))
  local ok, out = E.verify_chain(r.certs, E.root_pem(0))
  t.ok(ok, out)
  local up
  up, err = c:update_reg{ contact = { "mailto:strict@example.test" } }
  t.ok(up, "update_reg: " .. tostring(err))
  ok, err = c:revoke_cert(nil, r.certs[1], 1)
  t.ok(ok, "revoke: " .. tostring(err))
end)
