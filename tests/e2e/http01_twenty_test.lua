-- http-01 for twenty names in one order, through the library's
-- whole-issuance helper (client:issue): every authorization is worked at
-- once; the certificate names all twenty.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local t = require "testlib"
local E = require "e2e"

t.test("twenty names over http-01", function()
  local c = E.account()
  local names = E.names("many", 20)
  local s = E.webroot_solver()
  local r, err = E.lib_issue(c, names, s)
  t.ok(r, "issue: " .. tostring(err))
  t.eq(E.list_str(E.sans(r.certs[1])), E.list_str(E.dns_sans(names)))
  local ok, out = E.verify_chain(r.certs, E.root_pem(0))
  t.ok(ok, "chain verifies to /roots/0: " .. out)
  t.eq(#s.deployed, 20, "one challenge per name")
  for _, ch in ipairs(s.deployed) do
    t.ok(#E.http_log_lines("/.well-known/acme-challenge/" .. ch.token) >= 1,
      "the VA fetched the token of " .. tostring(ch.identifier))
  end
  t.eq(#E.webroot_files(), 0, "challenge files removed")
  t.eq(r.order.status, "valid")
  t.eq(#r.order.authz_urls, 20)
end)

t.test("twenty names over the low-level calls", function()
  local c = E.account()
  local names = E.names("low", 20)
  local r, err = E.issue(c, names, E.webroot_solver())
  t.ok(r, "issue: " .. tostring(err))
  t.eq(E.list_str(E.sans(r.certs[1])), E.list_str(E.dns_sans(names)))
end)
