-- The tls-alpn hook (luacme's own tls-alpn-01 responder) against
-- Pebble's own validation: Pebble dials 127.0.0.1:<tlsPort> 3 times at
-- once with ALPN acme-tls/1 and SNI = the name, or for an IP identifier
-- the reverse name without the trailing dot (1.0.0.127.in-addr.arpa).
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local t = require "testlib"
local E = require "e2e"
local R = require "responder_e2e"

local function spec()
  return "tls-alpn:address=127.0.0.1,port=" .. E.env.tls_port
end

t.test("tls-alpn-01 for a DNS name", function()
  local name = E.name("alpn")
  local res = R.issue(spec(), { name })
  t.eq(E.list_str(E.sans(res.certs[1])), "{DNS:" .. name .. "}")
  R.check_served(res, "tls-alpn-01", 1)
end)

t.test("tls-alpn-01 for the IP 127.0.0.1", function()
  local res = R.issue(spec(), { "127.0.0.1" })
  t.eq(E.list_str(E.sans(res.certs[1])), "{IP:127.0.0.1}")
  t.eq(res.deployed[1].identifier.type, "ip")
  R.check_served(res, "tls-alpn-01", 1)
end)

t.test("tls-alpn-01: a name and the IP in one order", function()
  local name = E.name("alpn")
  local res = R.issue(spec(), { name, "127.0.0.1" })
  t.eq(E.list_str(E.sans(res.certs[1])),
    E.list_str({ "DNS:" .. name, "IP:127.0.0.1" }))
  R.check_served(res, "tls-alpn-01", 2)
end)
