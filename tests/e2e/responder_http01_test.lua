-- The standalone http-01 hook (luacme's own responder) against Pebble's
-- own validation: run with pebble-env.py --no-webroot, so nothing but our
-- responder listens on Pebble's httpPort. Pebble fetches every challenge
-- 3 times at once from 127.0.0.1:<httpPort>, for a DNS name (resolved to
-- 127.0.0.1 by challtestsrv) and for the IP identifier 127.0.0.1.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local t = require "testlib"
local E = require "e2e"
local R = require "responder_e2e"
local core = require "luacme.core"

local function spec()
  return "standalone:address=127.0.0.1,port=" .. E.env.http_port
end

t.test("nothing listens on httpPort before the hook deploys", function()
  t.ok(not R.http_port_answers(), "--no-webroot left httpPort free")
end)

t.test("standalone http-01 for a DNS name", function()
  local name = E.name("standalone")
  local res = R.issue(spec(), { name })
  t.eq(E.list_str(E.sans(res.certs[1])), "{DNS:" .. name .. "}")
  R.check_served(res, "http-01", 1)
  t.ok(not R.http_port_answers(), "stopped after the last cleanup")
end)

t.test("standalone http-01 for the IP 127.0.0.1", function()
  local res = R.issue(spec(), { "127.0.0.1" })
  t.eq(E.list_str(E.sans(res.certs[1])), "{IP:127.0.0.1}")
  t.eq(res.deployed[1].identifier.type, "ip")
  R.check_served(res, "http-01", 1)
  t.ok(not R.http_port_answers())
end)

t.test("standalone http-01: three names and the IP share one responder",
  function()
  local names = E.names("shared", 3)
  names[#names + 1] = "127.0.0.1"
  local res = R.issue(spec(), names)
  local want = E.dns_sans({ names[1], names[2], names[3] })
  want[#want + 1] = "IP:127.0.0.1"
  t.eq(E.list_str(E.sans(res.certs[1])), E.list_str(E.sorted(want)))
  R.check_served(res, "http-01", 4)
  for i = 2, #res.deployed do
    t.eq(res.deployed[i].responder, res.deployed[1].responder)
  end
  t.ok(not R.http_port_answers())
end)

-- A#9.5: one peer holding 300 idle connections to the responder cannot
-- starve Pebble's validation: it is answered within 2 s.

t.test("standalone http-01: 300 idle connections, validated within 2 s",
  function()
  local stop, opened
  local at = {}
  local ok, err = pcall(function()
    local res = R.issue(spec(), { E.name("starved") }, {
      after_deploy = function()
        opened, stop = t.idle_peer(tonumber(E.env.http_port), 300)
      end,
      on_event = function(name)
        at[name] = at[name] or core.monotonic()
      end })
    t.ok(tonumber(opened) and tonumber(opened) >= 150,
      "idle peer opened " .. tostring(opened))
    t.ok(at.validating and at.finalize, "validating and finalize seen")
    local took = at.finalize - at.validating
    t.ok(took < 2, "validated in " .. took .. " s")
    local st = res.deployed[1].responder:stats()
    t.ok(st.evicted > 0, "idle connections evicted: " .. st.evicted)
    t.eq(st.served, 3, "Pebble's three requests served")
    print(string.format("  figure: validated in %.2f s with %s idle " ..
      "connections opened, %d evicted", took, opened, st.evicted))
  end)
  if stop then stop() end
  if not ok then error(err, 0) end
end)
