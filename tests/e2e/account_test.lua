-- Accounts: create, find by key, update the contact, deactivate (after
-- which the CA refuses the account).
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local t = require "testlib"
local E = require "e2e"
local acme = require "luacme"
local core = require "luacme.core"

local function tos_prompt(seen)
  return function(url)
    seen.url = url
    return true
  end
end

t.test("create, find, update, deactivate", function()
  local key = assert(core.key_generate("ec256"))
  local c = E.client{ key = key }
  local dir = assert(c:discover())
  t.match(dir.new_account, "/sign%-me%-up$")
  t.eq(dir.meta.terms_of_service, "data:text/plain,Do%20what%20thou%20wilt")

  local seen = {}
  local a, err = c:register({ contact = { "mailto:first@example.test" } },
    tos_prompt(seen))
  t.ok(a, "register: " .. tostring(err))
  t.eq(seen.url, dir.meta.terms_of_service, "prompt saw the ToS URL")
  t.match(a.uri, "^https://127%.0%.0%.1:%d+/my%-account/")
  t.eq(a.status, "valid")
  t.eq(a.contact[1], "mailto:first@example.test")
  t.eq(c.kid, a.uri, "the client uses the account URL as kid")

  -- Find: a second client with the same key and no kid looks it up.
  local c2 = E.client{ key = key }
  local found
  found, err = c2:get_reg()
  t.ok(found, "get_reg by key: " .. tostring(err))
  t.eq(found.uri, a.uri)
  t.eq(found.contact[1], "mailto:first@example.test")

  -- Registering the same key again: account_exists with its URL.
  local c3 = E.client{ key = key }
  local again
  again, err = c3:register({ contact = { "mailto:x@example.test" } },
    acme.accept_tos)
  t.ok(not again, "second register must fail")
  t.eq(err.kind, "account_exists")
  t.eq(err.uri, a.uri)

  -- Update the contact; the CA's view changes.
  local up
  up, err = c:update_reg{ contact = { "mailto:second@example.test" } }
  t.ok(up, "update_reg: " .. tostring(err))
  t.eq(up.contact[1], "mailto:second@example.test")
  local now = assert(c2:get_reg())
  t.eq(now.contact[1], "mailto:second@example.test")
  t.eq(#now.contact, 1)

  -- Deactivate; afterwards the CA refuses the account.
  local gone
  gone, err = c:deactivate_reg()
  t.eq(gone, true, "deactivate_reg: " .. tostring(err))
  local o
  o, err = c:authorize_order(acme.domain_ids(E.name("after")))
  t.ok(not o, "an order by a deactivated account must be refused")
  t.eq(err.kind, "acme")
  t.eq(err.status, 403)
  t.eq(err.type, "urn:ietf:params:acme:error:unauthorized")
  local r
  r, err = c:get_reg()
  t.ok(not r, "get_reg of a deactivated account must fail")
end)

t.test("an unknown key has no account", function()
  local c = E.client()
  local a, err = c:get_reg()
  t.ok(not a, "get_reg must fail")
  t.eq(err.kind, "no_account")
end)

t.test("declining the terms registers nothing", function()
  local key = assert(core.key_generate("ec256"))
  local c = E.client{ key = key }
  local a, err = c:register({}, function() return false end)
  t.ok(not a, "register must fail when the prompt declines")
  t.ok(err, "with an error")
  local _, err2 = E.client{ key = key }:get_reg()
  t.eq(err2 and err2.kind, "no_account", "nothing was created")
end)

t.test("a bad contact is the CA's problem document", function()
  local c = E.client()
  local a, err = c:register({ contact = { "tel:+1555" } }, acme.accept_tos)
  t.ok(not a)
  t.eq(err.kind, "acme")
  t.eq(err.status, 400)
  t.eq(err.type, "urn:ietf:params:acme:error:unsupportedContact")
  t.ok(type(err.detail) == "string" and #err.detail > 0, "detail kept")
end)

t.test("a stored account URL avoids the lookup", function()
  local c, a, key = E.account()
  local lookups = E.pebble_count("POST /sign%-me%-up")
  local c2 = acme.client{ directory = E.env.directory, key = key,
    ca_file = E.env.ca_file, kid = a.uri }
  t.eq(c2.kid, a.uri)
  local o, err = c2:authorize_order(acme.domain_ids(E.name("kid")))
  t.ok(o, "order with a stored kid: " .. tostring(err))
  t.eq(E.pebble_count("POST /sign%-me%-up"), lookups, "no newAccount lookup")
  -- Settable after creation too.
  local c3 = E.client{ key = key }
  c3.kid = a.uri
  o, err = c3:authorize_order(acme.domain_ids(E.name("kid")))
  t.ok(o, "order with kid set later: " .. tostring(err))
  t.eq(E.pebble_count("POST /sign%-me%-up"), lookups, "still no lookup")
end)
