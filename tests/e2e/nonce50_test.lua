-- A whole issuance while Pebble rejects half of all good nonces
-- (PEBBLE_WFE_NONCEREJECT=50): badNonce is retried with the nonce of the
-- error reply, and every step completes.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local t = require "testlib"
local E = require "e2e"
local acme = require "luacme"
local core = require "luacme.core"

t.test("account and issuance at 50% nonce rejection", function()
  local c = E.account()
  local names = E.names("nonce", 3)
  local r, err = E.issue(c, names, E.webroot_solver())
  t.ok(r, "issue: " .. tostring(err))
  t.eq(E.list_str(E.sans(r.certs[1])), E.list_str(E.dns_sans(names)))
  local ok, out = E.verify_chain(r.certs, E.root_pem(0))
  t.ok(ok, out)
  local revoked
  revoked, err = c:revoke_cert(nil, r.certs[1], 0)
  t.ok(revoked, "revoke: " .. tostring(err))
  t.eq(E.cert_status(E.serial(r.certs[1])).Status, "Revoked")
  -- Half the POSTs were refused, so the retries were exercised ...
  local st = c:stats()
  t.ok(st.bad_nonces >= 3, "badNonce seen: " .. tostring(st.bad_nonces))
  -- ... and each retry used the nonce of the error reply: the nonce pool
  -- never ran dry, so newNonce was asked once, at the start.
  t.eq(E.pebble_count("HEAD /nonce%-plz"), 1, "one newNonce request")
  t.eq(E.pebble_count("GET /nonce%-plz"), 0)
end)

t.test("a 40-name order at 50% nonce rejection, requests in flight",
  function()
  local issuance = require "luacme.issuance"
  local cjson = require "cjson.safe"
  local c = E.account()
  -- Every nonce signed, read from the bodies sent.
  local used, twice, inflight, most = {}, 0, 0, 0
  local send = c._send
  c._send = function(self, method, url, headers, body, ...)
    if body then
      local doc = cjson.decode(body)
      local n = cjson.decode(core.b64url_decode(doc.protected)).nonce
      if used[n] then twice = twice + 1 end
      used[n] = true
    end
    local read = url:find("/authZ/", 1, true) ~= nil
    if read then inflight = inflight + 1 most = math.max(most, inflight) end
    local resp, err = send(self, method, url, headers, body, ...)
    if read then inflight = inflight - 1 end
    return resp, err
  end
  local names = E.names("nonce40x", 40)
  local st0 = c:stats()
  local r, err = E.lib_issue(c, names, E.webroot_solver())
  t.ok(r, "issue: " .. tostring(err))
  t.eq(E.list_str(E.sans(r.certs[1])), E.list_str(E.dns_sans(names)))
  local st = c:stats()
  t.ok(st.bad_nonces - st0.bad_nonces >= 10, "badNonce seen: " ..
    (st.bad_nonces - st0.bad_nonces))
  t.eq(twice, 0, "no nonce signed twice")
  t.eq(most, issuance.width(40), "authorization reads in flight together")
  -- The retries used their error replies' nonces: newNonce only to let
  -- the second read start.
  t.ok(st.nonce_requests - st0.nonce_requests <= issuance.width(40) - 1,
    "newNonce requests: " .. (st.nonce_requests - st0.nonce_requests))
end)
