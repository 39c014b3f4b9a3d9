-- An IP identifier (RFC 8738) validated over http-01: Pebble's VA fetches
-- http://127.0.0.1:<httpPort>/.well-known/acme-challenge/<token>.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local t = require "testlib"
local E = require "e2e"
local acme = require "luacme"

t.test("ip identifier 127.0.0.1 over http-01", function()
  local c = E.account()
  local s = E.webroot_solver()
  local r, err = E.issue(c, { "127.0.0.1" }, s)
  t.ok(r, "issue: " .. tostring(err))
  t.eq(E.list_str(E.sans(r.certs[1])), "{IP:127.0.0.1}")
  t.eq(#r.order.identifiers, 1)
  t.eq(r.order.identifiers[1].type, "ip")
  t.eq(r.order.identifiers[1].value, "127.0.0.1")
  t.eq(s.deployed[1].type, "http-01")
  t.eq(s.deployed[1].identifier.type, "ip")
  local ok, out = E.verify_chain(r.certs, E.root_pem(0))
  t.ok(ok, out)
  t.ok(#E.http_log_lines(s.deployed[1].token) >= 1, "the VA fetched it")
end)

t.test("ip_ids builds ip identifiers", function()
  local ids = acme.ip_ids("127.0.0.1", "::1")
  t.eq(#ids, 2)
  t.eq(ids[1].type, "ip")
  t.eq(ids[2].value, "::1")
end)
