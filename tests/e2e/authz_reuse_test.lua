-- Authorization reuse (PEBBLE_AUTHZREUSE=100): the second order for a
-- name the account already validated is ready at creation, and no
-- challenge is POSTed for it.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local t = require "testlib"
local E = require "e2e"

t.test("a valid authorization is reused, no challenge posted", function()
  local c = E.account()
  local name = E.name("reuse")
  local r1, err = E.issue(c, { name }, E.webroot_solver())
  t.ok(r1, "first issue: " .. tostring(err))
  local chal_posts = E.pebble_count("POST /chalZ/")
  t.ok(chal_posts >= 1, "the first order POSTed its challenge")

  local acme = require "luacme"
  local order = assert(c:authorize_order(acme.domain_ids(name)))
  t.eq(order.status, "ready", "ready at creation")
  local z = assert(c:get_authorization(order.authz_urls[1]))
  t.eq(z.status, "valid")

  -- The library's whole-issuance helper leaves valid ones alone.
  local s = E.webroot_solver()
  local r2
  r2, err = E.lib_issue(c, { name }, s)
  t.ok(r2, "second issue: " .. tostring(err))
  t.eq(#s.deployed, 0, "nothing deployed")
  t.eq(E.pebble_count("POST /chalZ/"), chal_posts, "no challenge POSTed")
  t.eq(E.list_str(E.sans(r2.certs[1])), "{DNS:" .. name .. "}")
  t.ok(E.serial(r2.certs[1]) ~= E.serial(r1.certs[1]), "a new certificate")
end)

t.test("a deactivated authorization is not reused", function()
  local c = E.account()
  local name = E.name("deact")
  local r, err = E.issue(c, { name }, E.webroot_solver())
  t.ok(r, "issue: " .. tostring(err))
  local url = r.order.authz_urls[1]
  local z
  z, err = c:revoke_authorization(url)
  t.ok(z, "revoke_authorization: " .. tostring(err))
  t.eq(z.status, "deactivated")
  t.eq(assert(c:get_authorization(url)).status, "deactivated")
  local acme = require "luacme"
  local o = assert(c:authorize_order(acme.domain_ids(name)))
  t.eq(o.status, "pending", "a fresh authorization is needed")
  t.ok(o.authz_urls[1] ~= url, "not the deactivated one")
end)
