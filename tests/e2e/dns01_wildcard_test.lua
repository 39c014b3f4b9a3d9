-- A wildcard and its base name via dns-01: two authorizations with the
-- same identifier value, two TXT values at _acme-challenge.<base> at
-- once (challtestsrv appends), cleared afterwards.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local t = require "testlib"
local E = require "e2e"

t.test("wildcard plus base name over dns-01", function()
  local c = E.account()
  local base = E.name("wild")
  local names = { "*." .. base, base }
  local s = E.dns_solver()
  local txt = "_acme-challenge." .. base .. "."
  local seen
  function s.before_accept(deployed)
    seen = E.dns_txt(txt)
    local want = {}
    for _, ch in ipairs(deployed) do want[#want + 1] = ch.value end
    t.eq(E.list_str(seen), E.list_str(E.sorted(want)),
      "both values served at once")
  end
  local r, err = E.issue(c, names, s)
  t.ok(r, "issue: " .. tostring(err))
  t.eq(#r.order.authz_urls, 2, "two authorizations")
  local wild = 0
  for _, u in ipairs(r.order.authz_urls) do
    local z = assert(c:get_authorization(u))
    t.eq(z.identifier.value, base)
    t.eq(z.status, "valid")
    if z.wildcard then wild = wild + 1 end
  end
  t.eq(wild, 1, "exactly one authorization is the wildcard's")
  t.eq(#seen, 2)
  t.ok(seen[1] ~= seen[2], "two distinct TXT values")
  t.eq(E.list_str(E.sans(r.certs[1])), E.list_str(E.dns_sans(names)))
  local ok, out = E.verify_chain(r.certs, E.root_pem(0))
  t.ok(ok, out)
  t.eq(#E.dns_txt(txt), 0, "TXT cleared after")
end)

t.test("wildcard plus base name through client:issue", function()
  local c = E.account()
  local base = E.name("libwild")
  local names = { base, "*." .. base }
  local s = E.dns_solver()
  local txt = "_acme-challenge." .. base .. "."
  local seen
  function s.before_accept()
    seen = E.dns_txt(txt)
  end
  local r, err = E.lib_issue(c, names, s)
  t.ok(r, "issue: " .. tostring(err))
  t.eq(#s.deployed, 2, "two challenges deployed")
  t.eq(s.deployed[1].name, txt)
  t.eq(s.deployed[2].name, txt)
  t.ok(s.deployed[1].wildcard ~= s.deployed[2].wildcard,
    "one of them is the wildcard's")
  t.eq(#seen, 2, "both values served at once")
  t.eq(E.list_str(E.sans(r.certs[1])), E.list_str(E.dns_sans(names)))
  t.eq(#E.dns_txt(txt), 0, "TXT cleared after")
end)
