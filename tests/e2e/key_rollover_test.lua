-- Account key rollover: afterwards the new key reaches the account and
-- the old key is refused.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local t = require "testlib"
local E = require "e2e"
local acme = require "luacme"
local core = require "luacme.core"

t.test("rollover to a new key", function()
  local old = assert(core.key_generate("ec256"))
  local c, a = E.account{ key = old }
  local new = assert(core.key_generate("ec256"))
  local ok, err = c:account_key_rollover(new)
  t.ok(ok, "rollover: " .. tostring(err))

  -- The same client goes on with the new key.
  local r
  r, err = c:get_reg()
  t.ok(r, "get_reg after rollover: " .. tostring(err))
  t.eq(r.uri, a.uri)

  -- A fresh client with the new key finds the account by key.
  local cn = E.client{ key = new }
  r, err = cn:get_reg()
  t.ok(r, "new key finds the account: " .. tostring(err))
  t.eq(r.uri, a.uri)
  local o
  o, err = cn:authorize_order(acme.domain_ids(E.name("rolled")))
  t.ok(o, "the new key can order: " .. tostring(err))

  -- The old key no longer has an account ...
  local co = E.client{ key = old }
  r, err = co:get_reg()
  t.ok(not r, "old key must not find the account")
  t.eq(err.kind, "no_account")
  -- ... and signing with it under the account URL is refused.
  local ck = E.client{ key = old }
  ck.kid = a.uri
  o, err = ck:authorize_order(acme.domain_ids(E.name("old")))
  t.ok(not o, "the old key must be refused")
  t.eq(err.kind, "acme")
  t.ok(err.status == 400 or err.status == 401 or err.status == 403,
    "refused with a 4xx: " .. tostring(err.status))
end)

t.test("rollover to a key that has an account is refused", function()
  local c = E.account()
  local _, _, taken = E.account()
  local ok, err = c:account_key_rollover(taken)
  t.ok(not ok, "must fail")
  t.eq(err.kind, "acme")
  -- The client keeps its old key: it still reaches its account.
  local r
  r, err = c:get_reg()
  t.ok(r, "old key still works: " .. tostring(err))
end)
