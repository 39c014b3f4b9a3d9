-- A challenge that fails: the webroot serves the wrong content; the
-- library's whole-issuance helper (client:issue) reports the failure
-- with the CA's problem detail, the authorization and the order end
-- invalid, and nothing is finalized.  The low-level wait_order reports
-- the same.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local t = require "testlib"
local E = require "e2e"

t.test("wrong http-01 response is reported with the CA's detail", function()
  local c = E.account()
  local name = E.name("fail")
  local s = E.webroot_solver(function() return "not-the-key-authorization" end)
  local r, err = E.lib_issue(c, { name }, s)
  t.ok(not r, "issuance must fail")
  t.eq(type(err), "table", "an error table: " .. tostring(err))
  t.eq(err.type, "urn:ietf:params:acme:error:unauthorized")
  t.match(err.detail, "not%-the%-key%-authorization",
    "the CA's detail names what it got")
  t.match(tostring(err), "unauthorized")
  t.match(tostring(err), "not%-the%-key%-authorization")
  t.eq(E.pebble_count("/finalize%-order/"), 0, "no finalize")
  t.eq(#E.webroot_files(), 0, "cleaned up also on failure")

  -- The CA's view: challenge, authorization and order invalid.
  t.eq(#s.deployed, 1)
  -- (Pebble's orders list leaves invalid orders out, RFC 8555 §7.1.2.1,
  -- so the order URL comes from the error.)
  t.ok(err.order and err.order.uri, "the error carries the order")
  local order = assert(c:get_order(err.order.uri))
  t.eq(order.status, "invalid")
  t.ok(order.error, "the order carries the problem")
  t.match(order.error.detail or "", "not%-the%-key%-authorization")
  local z = assert(c:get_authorization(order.authz_urls[1]))
  t.eq(z.status, "invalid")
  local bad
  for _, ch in ipairs(z.challenges) do
    if ch.type == "http-01" then bad = ch end
  end
  t.eq(bad.status, "invalid")
  t.match(bad.error.detail, "not%-the%-key%-authorization")
end)

t.test("wait_order stops at invalid with the CA's problem", function()
  local c = E.account()
  local s = E.webroot_solver(function() return "wrong-again" end)
  local r, err, created = E.issue(c, { E.name("fail") }, s)
  t.ok(not r, "must fail")
  t.ok(created, "an order was created")
  t.eq(err.type, "urn:ietf:params:acme:error:unauthorized")
  t.match(tostring(err), "wrong%-again")
  t.eq(E.pebble_count("/finalize%-order/"), 0, "no finalize")
end)

t.test("wait_authorization stops at invalid with the CA's problem", function()
  local c = E.account()
  local acme = require "luacme"
  local name = E.name("authzfail")
  local o = assert(c:authorize_order(acme.domain_ids(name)))
  local z = assert(c:get_authorization(o.authz_urls[1]))
  local chal
  for _, ch in ipairs(z.challenges) do
    if ch.type == "http-01" then chal = ch end
  end
  local path = E.env.webroot .. "/.well-known/acme-challenge/" .. chal.token
  E.writefile(path, "wrong-for-authz")
  local accepted, err = c:accept(chal)
  t.ok(accepted, "accept: " .. tostring(err))
  local done
  done, err = c:wait_authorization(z.uri)
  os.remove(path)
  t.ok(not done, "must fail")
  t.eq(err.kind, "authorization")
  t.eq(err.type, "urn:ietf:params:acme:error:unauthorized")
  t.match(tostring(err), "wrong%-for%-authz")
  local ch = assert(c:get_challenge(chal.uri))
  t.eq(ch.status, "invalid")
  t.match(ch.error.detail, "wrong%-for%-authz")
end)
