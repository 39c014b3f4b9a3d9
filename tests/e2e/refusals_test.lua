-- What the CA refuses comes back as its problem document, with nothing
-- sent that the client can know is wrong beforehand.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local t = require "testlib"
local E = require "e2e"
local acme = require "luacme"
local core = require "luacme.core"

t.test("a blocked name is rejectedIdentifier", function()
  local c = E.account()
  -- pebble-env.py puts blocked.test on Pebble's domainBlocklist.
  local o, err = c:authorize_order(acme.domain_ids("www.blocked.test"))
  t.ok(not o, "must be refused")
  t.eq(err.kind, "acme")
  t.eq(err.status, 400)
  t.eq(err.type, "urn:ietf:params:acme:error:rejectedIdentifier")
  t.match(err.detail, "blocked%.test")
end)

t.test("a malformed name is refused before anything is sent", function()
  local c = E.account()
  local before = E.pebble_count("POST /order%-plz")
  local o, err = c:authorize_order(acme.domain_ids("bad..name.test"))
  t.ok(not o, "must be refused")
  t.eq(err.kind, "identifier")
  t.eq(E.pebble_count("POST /order%-plz"), before, "no newOrder sent")
end)

-- An order made ready over http-01, for finalize tests.
local function ready_order(c, names)
  local order = assert(c:authorize_order(acme.domain_ids(table.unpack(names))))
  local ready, err = E.solve(c, order, E.webroot_solver())
  t.ok(ready, "solve: " .. tostring(err))
  t.eq(ready.status, "ready")
  return ready
end

t.test("finalize with other names than ordered is refused", function()
  local c = E.account()
  local name = E.name("csr")
  local o = ready_order(c, { name })
  local k = assert(core.key_generate("ec256"))
  local csr = assert(core.csr{ key = k, names = { name, E.name("extra") } })
  local certs, err = c:create_order_cert(o.finalize_url, csr, true)
  t.ok(not certs, "must be refused")
  t.eq(err.kind, "acme")
  t.eq(err.status, 403)
  t.ok(type(err.detail) == "string" and #err.detail > 0, "detail kept")
  -- The order is still ready: a correct CSR succeeds.
  t.eq(assert(c:get_order(o.uri)).status, "ready")
  csr = assert(core.csr{ key = k, names = { name } })
  local url
  certs, url = c:create_order_cert(o.finalize_url, csr, true)
  t.ok(certs, "finalize: " .. tostring(url))
  t.eq(E.list_str(E.sans(certs[1])), "{DNS:" .. name .. "}")
end)

t.test("finalize of a pending order is orderNotReady", function()
  local c = E.account()
  local name = E.name("early")
  local o = assert(c:authorize_order(acme.domain_ids(name)))
  t.eq(o.status, "pending")
  local k = assert(core.key_generate("ec256"))
  local csr = assert(core.csr{ key = k, names = { name } })
  local certs, err = c:create_order_cert(o.finalize_url, csr, true)
  t.ok(not certs, "must be refused")
  t.eq(err.status, 403)
  t.eq(err.type, "urn:ietf:params:acme:error:orderNotReady")
end)

t.test("a CSR with the account key is refused before it is sent", function()
  local c, _, key = E.account()
  local name = E.name("acctkey")
  local o = ready_order(c, { name })
  local before = E.pebble_count("POST /finalize%-order/")
  local csr = assert(core.csr{ key = key, names = { name } })
  local certs, err = c:create_order_cert(o.finalize_url, csr, true)
  t.ok(not certs, "must be refused")
  t.eq(err.kind, "csr")
  t.eq(E.pebble_count("POST /finalize%-order/"), before, "no finalize sent")
  -- Pebble itself answers such a CSR with badCSR (RFC 8555 §11.1): sent
  -- by hand, bypassing the client's check.
  local resp
  resp, err = c:post(o.finalize_url, '{"csr":"' .. core.b64url_encode(csr) ..
    '"}')
  t.ok(not resp, "Pebble must refuse it")
  t.eq(err.type, "urn:ietf:params:acme:error:badCSR")
end)

t.test("pre-authorization and ARI are reported missing", function()
  local c = E.account()
  local dir = assert(c:discover())
  t.eq(dir.new_authz, nil, "Pebble 2.4 has no newAuthz")
  t.eq(dir.renewal_info, nil, "Pebble 2.4 has no renewalInfo")
  local z, err = c:authorize(E.name("pre"))
  t.ok(not z)
  t.eq(err.kind, "unsupported")
  t.match(tostring(err), "newAuthz")
  z, err = c:authorize_ip("127.0.0.1")
  t.ok(not z)
  t.eq(err.kind, "unsupported")
  local r = assert(E.issue(c, { E.name("ari") }, E.webroot_solver()))
  local info
  info, err = c:get_renewal_info(E.readfile(E.pem_file({ r.certs[1] })))
  t.ok(not info)
  t.eq(err.kind, "unsupported")
end)
