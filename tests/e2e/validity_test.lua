-- notBefore/notAfter in newOrder are honoured: the certificate carries
-- exactly the requested window.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local t = require "testlib"
local E = require "e2e"
local acme = require "luacme"
local core = require "luacme.core"

t.test("requested notBefore and notAfter", function()
  local c = E.account()
  local now = os.time()
  local nb, na = now + 3600, now + 3 * 86400
  local r, err = E.issue(c, { E.name("valid") }, E.webroot_solver(),
    { order = { not_before = nb, not_after = na } })
  t.ok(r, "issue: " .. tostring(err))
  local got_nb, got_na = E.validity(r.certs[1])
  t.eq(got_nb, nb, "notBefore")
  t.eq(got_na, na, "notAfter")
end)

t.test("without a window the CA's validity period applies", function()
  local c = E.account()
  local before = os.time()
  local r, err = E.issue(c, { E.name("plain") }, E.webroot_solver())
  t.ok(r, "issue: " .. tostring(err))
  local nb, na = E.validity(r.certs[1])
  t.ok(math.abs(nb - before) < 120, "notBefore about now")
  -- pebble-env.py --validity 864000 for this scenario
  t.ok(math.abs(na - nb - 864000) < 120, "notAfter = notBefore + 10 days, got "
    .. (na - nb))
end)

t.test("client:issue passes the window on", function()
  local c = E.account()
  local now = os.time()
  local nb, na = now + 7200, now + 2 * 86400
  local r, err = E.lib_issue(c, { E.name("libvalid") }, E.webroot_solver(),
    { not_before = nb, not_after = na })
  t.ok(r, "issue: " .. tostring(err))
  local got_nb, got_na = E.validity(r.certs[1])
  t.eq(got_nb, nb, "notBefore")
  t.eq(got_na, na, "notAfter")
end)
