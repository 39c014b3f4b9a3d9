-- Large orders (issue 11: 100 names): the authorizations of an order of
-- more than 20 names are read several at once and its challenges
-- accepted a few at once (issuance.width), against a real Pebble that
-- rejects 5% of good nonces. Every request is timed and its JWS nonce
-- read back from what was sent: reads overlap in time, never more than
-- the width, no nonce is signed twice; small orders stay serial and ask
-- for no extra nonce; a failing challenge in a large order ends in the
-- same structured error as in a small one.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local t = require "testlib"
local E = require "e2e"
local core = require "luacme.core"
local cjson = require "cjson.safe"
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

t.test("100 names: reads and accepts overlap, no nonce twice", function()
  local c = E.account()
  local log = record(c)
  local names = E.names("many", 100)
  local s = E.webroot_solver()
  local st0 = c:stats()
  local r, err = E.lib_issue(c, names, s)
  t.ok(r, "issue: " .. tostring(err))
  t.eq(E.list_str(E.sans(r.certs[1])), E.list_str(E.dns_sans(names)),
    "the certificate names all 100")
  local ok, out = E.verify_chain(r.certs, E.root_pem(0))
  t.ok(ok, "chain verifies: " .. out)
  t.eq(#s.deployed, 100, "one challenge per name")
  t.eq(#E.webroot_files(), 0, "challenge files removed")

  local reads = only(log, 0, "/authZ/")
  local accepts = only(log, 0, "/chalZ/")
  t.ok(#reads >= 100, "every authorization read: " .. #reads)
  t.ok(#accepts >= 100, "every challenge accepted: " .. #accepts)
  local rw, aw = issuance.width(100),
    issuance.width(100, issuance.ACCEPT_PARALLEL)
  t.ok(rw > 1 and aw > 1, "a 100-name order goes several at once")
  local rm, am = most_at_once(reads), most_at_once(accepts)
  t.ok(rm >= 2, "authorization reads overlapped: at most " .. rm ..
    " at once")
  t.ok(rm <= rw, rm .. " reads at once, bound " .. rw)
  t.ok(am >= 2, "accepts overlapped: at most " .. am .. " at once")
  t.ok(am <= aw, am .. " accepts at once, bound " .. aw)

  -- Every POST signed its own nonce, also the badNonce retries.
  local posts = 0
  for _, x in ipairs(log) do
    if x.method == "POST" then
      posts = posts + 1
      t.ok(x.nonce, "a POST without a nonce: " .. x.url)
    end
  end
  t.eq(#reused(log), 0, "nonces signed twice: " ..
    table.concat(reused(log), ", "))
  local st = c:stats()
  t.eq(st.requests - st0.requests, #log, "every request recorded")
  -- The ramp-up costs at most width - 1 newNonce requests per phase
  -- (the pool then holds enough); nothing else asks for nonces.
  t.ok(st.nonce_requests - st0.nonce_requests <= rw - 1,
    "newNonce requests: " .. (st.nonce_requests - st0.nonce_requests))
  io.stderr:write(string.format("many_names: %d requests (%d POSTs, %d " ..
    "newNonce, %d badNonce), %d reads / %d accepts at most at once\n",
    #log, posts, st.nonce_requests - st0.nonce_requests,
    st.bad_nonces - st0.bad_nonces, rm, am))
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
