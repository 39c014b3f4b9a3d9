-- Every account key type signs requests Pebble accepts (ES256, ES384,
-- RS256), every certificate key type gets a certificate, and rollover
-- works across key types.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local t = require "testlib"
local E = require "e2e"
local core = require "luacme.core"

local cases = {
  { account = "ec384", cert = "rsa2048" },
  { account = "rsa2048", cert = "ec384" },
}

for _, case in ipairs(cases) do
  t.test(case.account .. " account, " .. case.cert .. " certificate", function()
    local akey = assert(core.key_generate(case.account))
    local c = E.account{ key = akey }
    local ckey = assert(core.key_generate(case.cert))
    local name = E.name(case.account)
    local r, err = E.issue(c, { name }, E.webroot_solver(), { key = ckey })
    t.ok(r, "issue: " .. tostring(err))
    t.eq(E.list_str(E.sans(r.certs[1])), "{DNS:" .. name .. "}")
    local pub = E.x509(r.certs[1], "-pubkey")
    t.eq(pub:gsub("%s", ""), ckey:public_pem():gsub("%s", ""),
      "certificate for the CSR's key")
    local ok, out = E.verify_chain(r.certs, E.root_pem(0))
    t.ok(ok, out)
  end)
end

t.test("rollover ec256 -> rsa2048 -> ec384", function()
  local c, a = E.account()
  for _, spec in ipairs({ "rsa2048", "ec384" }) do
    local k = assert(core.key_generate(spec))
    local ok, err = c:account_key_rollover(k)
    t.ok(ok, "rollover to " .. spec .. ": " .. tostring(err))
    local r
    r, err = E.client{ key = k }:get_reg()
    t.ok(r, spec .. " key finds the account: " .. tostring(err))
    t.eq(r.uri, a.uri)
  end
  local r, err = E.issue(c, { E.name("rolled") }, E.webroot_solver())
  t.ok(r, "issue after two rollovers: " .. tostring(err))
end)
