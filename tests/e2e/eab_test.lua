-- External account binding against a Pebble that requires it (MAC keys
-- of Pebble's example config): a good MAC creates the account; a MAC
-- keyed with the base64url text instead of its decoded bytes is refused.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local t = require "testlib"
local E = require "e2e"
local acme = require "luacme"
local core = require "luacme.core"
local cjson = require "cjson"

local function mac_keys()
  local cfg = cjson.decode(E.readfile(E.env.config))
  return cfg.pebble.externalAccountMACKeys
end

t.test("the directory says EAB is required", function()
  local c = E.client()
  local dir = assert(c:discover())
  t.eq(dir.meta.external_account_required, true)
end)

t.test("no binding is refused", function()
  local c = E.client()
  local a, err = c:register({ contact = { "mailto:e@example.test" } },
    acme.accept_tos)
  t.ok(not a)
  t.eq(err.status, 403)
  t.eq(err.type, "urn:ietf:params:acme:error:externalAccountRequired")
end)

t.test("a good MAC creates the account", function()
  local keys = mac_keys()
  local c = E.client()
  local a, err = c:register({ contact = { "mailto:e@example.test" },
    external_account_binding = { kid = "kid-1", key = keys["kid-1"] } },
    acme.accept_tos)
  t.ok(a, "register with EAB: " .. tostring(err))
  t.eq(a.status, "valid")
  local r = assert(c:get_reg())
  t.eq(r.uri, a.uri)
end)

t.test("a MAC keyed with the undecoded string is refused", function()
  local keys = mac_keys()
  local c = E.client()
  -- Hand the client a key whose decoding is the base64url text itself:
  -- it then MACs with the text, the mistake this test is about.
  local wrong = core.b64url_encode(keys["kid-2"])
  local a, err = c:register({ contact = { "mailto:e@example.test" },
    external_account_binding = { kid = "kid-2", key = wrong } },
    acme.accept_tos)
  t.ok(not a, "must be refused")
  t.eq(err.status, 403)
  t.eq(err.type, "urn:ietf:params:acme:error:unauthorized")
end)

t.test("an unknown kid is refused", function()
  local keys = mac_keys()
  local c = E.client()
  local a, err = c:register({ external_account_binding = { kid = "kid-9",
    key = keys["kid-1"] } }, acme.accept_tos)
  t.ok(not a)
  t.eq(err.status, 403)
end)
