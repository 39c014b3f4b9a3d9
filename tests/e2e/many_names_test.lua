-- Large orders (issue 11: 100 names): the authorizations of an order of
-- more than 20 names are read several at once (issuance.width), and its
-- challenges accepted a few at once when the CA is far away (here:
-- tests/e2e/faultproxy.py holding Pebble's replies 30 ms), against a
-- real Pebble that rejects 5% of good nonces. Every request is timed
-- and its JWS nonce read back from what was sent: requests overlap in
-- time, never more than the width, no nonce is signed twice; small
-- orders stay serial and ask for no extra nonce; a failing challenge in
-- a large order ends in the same structured error as in a small one.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local t = require "testlib"
local E = require "e2e"
local core = require "luacme.core"
local cjson = require "cjson.safe"
local acme = require "luacme"
local issuance = require "luacme.issuance"

-- Every exchange of client c: {s =, e = (monotonic start and end), url,
-- method, nonce = (the nonce of a JWS POST, from the body sent)}.
local function record(c)
  local log = {}
  local send = c._send
  c._send = function(self, method, url, headers, body, ...)
    local x = { s = core.monotonic(), url = url, method = method }
    if body then
      local doc = cjson.decode(body)
      local prot = doc and cjson.decode(core.b64url_decode(doc.protected))
      x.nonce = prot and prot.nonce
    end
    log[#log + 1] = x
    local resp, err = send(self, method, url, headers, body, ...)
    x.e = core.monotonic()
    return resp, err
  end
  return log
end

-- The exchanges of log from index `from` on whose URL has `part`.
local function only(log, from, part)
  local out = {}
  for i = from + 1, #log do
    if log[i].url:find(part, 1, true) then out[#out + 1] = log[i] end
  end
  return out
end

-- Most exchanges of list in flight at the same moment.
local function most_at_once(list)
  local most = 0
  for _, a in ipairs(list) do
    local n = 0
    for _, b in ipairs(list) do
      if b.s <= a.s and a.s < b.e then n = n + 1 end
    end
    most = math.max(most, n)
  end
  return most
end

-- Nonces signed more than once in log (a list of "nonce xN").
local function reused(log)
  local seen, out = {}, {}
  for _, x in ipairs(log) do
    if x.nonce then seen[x.nonce] = (seen[x.nonce] or 0) + 1 end
  end
  for n, k in pairs(seen) do
    if k > 1 then out[#out + 1] = n .. " x" .. k end
  end
  return out
end

-- Issues for n names with client c (its requests recorded in log) and
-- checks what every large order must show; returns the reads, the
-- accepts and the newNonce requests it made.
local function large_order(c, log, n, prefix)
  local names = E.names(prefix, n)
  local s = E.webroot_solver()
  local st0 = c:stats()
  local from = #log
  local r, err = E.lib_issue(c, names, s)
  t.ok(r, "issue: " .. tostring(err))
  t.eq(E.list_str(E.sans(r.certs[1])), E.list_str(E.dns_sans(names)),
    "the certificate names all " .. n)
  local ok, out = E.verify_chain(r.certs, E.root_pem(0))
  t.ok(ok, "chain verifies: " .. out)
  t.eq(#s.deployed, n, "one challenge per name")
  t.eq(#E.webroot_files(), 0, "challenge files removed")
  local reads = only(log, from, "/authZ/")
  local accepts = only(log, from, "/chalZ/")
  t.ok(#reads >= n, "every authorization read: " .. #reads)
  t.ok(#accepts >= n, "every challenge accepted: " .. #accepts)
  local rw = issuance.width(n)
  t.ok(rw > 1, "a " .. n .. "-name order reads several at once")
  local rm = most_at_once(reads)
  t.ok(rm >= 2, "authorization reads overlapped: at most " .. rm ..
    " at once")
  t.ok(rm <= rw, rm .. " reads at once, bound " .. rw)
  -- Every POST signed its own nonce, also the badNonce retries.
  local posts = 0
  for i = from + 1, #log do
    if log[i].method == "POST" then
      posts = posts + 1
      t.ok(log[i].nonce, "a POST without a nonce: " .. log[i].url)
    end
  end
  t.eq(#reused(log), 0, "nonces signed twice: " ..
    table.concat(reused(log), ", "))
  local st = c:stats()
  t.eq(st.requests - st0.requests, #log - from, "every request recorded")
  -- The ramp-up costs at most width - 1 newNonce requests (the pool
  -- then holds enough); nothing else asks for nonces.
  local heads = st.nonce_requests - st0.nonce_requests
  t.ok(heads <= rw - 1, "newNonce requests: " .. heads)
  local am = most_at_once(accepts)
  io.stderr:write(string.format("many_names: %d names, %d requests (%d " ..
    "POSTs, %d newNonce, %d badNonce), %d reads / %d accepts at most at " ..
    "once\n", n, #log - from, posts, heads, st.bad_nonces - st0.bad_nonces,
    rm, am))
  return am
end

t.test("100 names: reads overlap, accepts paced by a CA close by",
  function()
  local c = E.account()
  local log = record(c)
  local am = large_order(c, log, 100, "many")
  -- Pebble on loopback answers in a few ms: the accepts go one at a
  -- time, so validations are not started faster than it does them.
  t.eq(am, 1, "accepts one at a time")
end)

t.test("60 names from a CA 30 ms away: accepts overlap too", function()
  -- Every authorization read and challenge POST held 30 ms by the
  -- proxy: a CA far away.
  E.curl_post_json(E.env.proxy_control .. "/rules", { rules = { {
    path = "^/(authZ|chalZ)/", action = "delay", delay = 0.03,
    count = 100000 } } })
  local c = acme.client{ directory = E.env.proxy_directory,
    key = assert(core.key_generate("ec256")), ca_file = E.env.ca_file }
  assert(c:register({ contact = { "mailto:far@example.test" } },
    acme.accept_tos))
  local log = record(c)
  local am = large_order(c, log, 60, "far")
  E.curl_post_json(E.env.proxy_control .. "/rules", { rules = {} })
  local aw = issuance.width(60, issuance.ACCEPT_PARALLEL)
  t.ok(aw > 1)
  t.ok(am >= 2, "accepts overlapped: at most " .. am .. " at once")
  t.ok(am <= aw, am .. " accepts at once, bound " .. aw)
end)

t.test("20 names stay serial and ask for no extra nonce", function()
  local c = E.account()
  local log = record(c)
  local names = E.names("twenty", 20)
  local st0 = c:stats()
  local r, err = E.lib_issue(c, names, E.webroot_solver())
  t.ok(r, "issue: " .. tostring(err))
  t.eq(E.list_str(E.sans(r.certs[1])), E.list_str(E.dns_sans(names)))
  t.eq(most_at_once(only(log, 0, "/authZ/")), 1, "reads one at a time")
  t.eq(most_at_once(only(log, 0, "/chalZ/")), 1, "accepts one at a time")
  t.eq(c:stats().nonce_requests - st0.nonce_requests, 0,
    "the pool's nonce from registering carries the whole order")
  t.eq(#reused(log), 0)
end)

t.test("a failing challenge in a 40-name order: the same error", function()
  local c = E.account()
  local names = E.names("bad", 40)
  local bad = names[23]
  local s = E.webroot_solver(function(ch)
    if ch.domain == bad then return "not-the-key-authorization" end
    return ch.key_authorization
  end)
  local finals = E.pebble_count("/finalize%-order/")
  local r, err = E.lib_issue(c, names, s)
  t.ok(not r, "issuance must fail")
  t.eq(type(err), "table", "an error table: " .. tostring(err))
  t.eq(err.kind, "authorization")
  t.eq(err.type, "urn:ietf:params:acme:error:unauthorized")
  t.eq(err.identifier and err.identifier.value, bad,
    "the failing name is named")
  t.match(err.detail, "not%-the%-key%-authorization")
  t.eq(#err.errors, 1, "only the one authorization failed")
  t.ok(err.order and err.order.uri, "the error carries the order")
  t.eq(E.pebble_count("/finalize%-order/"), finals, "no finalize")
  t.eq(#s.deployed, 40)
  t.eq(#E.webroot_files(), 0, "cleaned up also on failure")
  local o = assert(c:get_order(err.order.uri))
  t.eq(o.status, "invalid")
end)
