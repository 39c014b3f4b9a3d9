-- The harness itself: what pebble-env.py promises a scenario holds, so a
-- failing scenario points at luacme, not at the test bed.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local t = require "testlib"
local E = require "e2e"
local cjson = require "cjson.safe"
local core = require "luacme.core"

t.test("directory answers over TLS with the generated certificate", function()
  local dir = assert(cjson.decode(E.curl_get(E.env.directory)))
  t.match(dir.newNonce, "^https://127%.0%.0%.1:%d+/nonce%-plz$")
  t.match(dir.newAccount, "/sign%-me%-up$")
  t.eq(dir.meta.externalAccountRequired, false)
end)

t.test("core.http reaches the directory with ca_file", function()
  if not core.http then
    error("luacme.core has no http yet")
  end
  local h = assert(core.http{ ca_file = E.env.ca_file })
  local status, headers, body = h:request{ method = "GET",
    url = E.env.directory }
  t.eq(status, 200, tostring(headers))
  t.match(headers["content-type"], "^application/json")
  t.match(cjson.decode(body).newOrder, "/order%-plz$")
  -- Pebble offers h2 over ALPN: the transport must take it.
  t.eq(h:stats().http_version, "2")
end)

t.test("management root is a CA certificate", function()
  local pem = E.root_pem(0)
  t.match(pem, "^%-%-%-%-%-BEGIN CERTIFICATE")
  local dir = E.scratch()
  E.writefile(dir .. "/root.pem", pem)
  local out = E.must("openssl x509 -noout -subject -ext basicConstraints -in "
    .. E.q(dir .. "/root.pem"))
  t.match(out, "Pebble Root CA")
  t.match(out, "CA:TRUE")
end)

t.test("challtestsrv TXT values append and clear", function()
  local host = "_acme-challenge.harness.example.test."
  E.set_txt(host, "one")
  E.set_txt(host, "two")
  local got = E.dns_txt(host)
  t.eq(#got, 2)
  t.eq(got[1], "one")
  t.eq(got[2], "two")
  E.clear_txt(host)
  t.eq(#E.dns_txt(host), 0)
end)

t.test("webroot files are served on httpPort for any name", function()
  local dir = E.env.webroot .. "/.well-known/acme-challenge"
  E.writefile(dir .. "/harness-token", "harness-body")
  local ok, out = E.sh("curl -sS --fail http://127.0.0.1:" .. E.env.http_port
    .. "/.well-known/acme-challenge/harness-token")
  os.remove(dir .. "/harness-token")
  t.ok(ok, out)
  t.eq(out, "harness-body")
  t.ok(#E.http_log_lines("/harness-token") >= 1, "access log has the GET")
end)

t.test("the ports are free of other servers and distinct", function()
  local seen = {}
  for _, k in ipairs({ "http_port", "tls_port", "dns_port" }) do
    local p = tonumber(E.env[k])
    t.ok(p and p > 0 and p < 65536, k)
    t.ok(not seen[p], "distinct " .. k)
    seen[p] = true
  end
  -- Nothing answers on tlsPort until a tls-alpn-01 responder binds it.
  local ok = E.sh("curl -sS -k --max-time 2 https://127.0.0.1:"
    .. E.env.tls_port .. "/")
  t.ok(not ok, "tlsPort is unused")
end)

-- A#9.4: challtestsrv answers a name it has no record for with NOERROR,
-- no answer, neither AA nor RA; glibc's res_nsend looped on that at
-- 100 % CPU forever. The query comes back within its timeout.
t.test("core.dns_query of an unknown name at challtestsrv returns in time", function()
  for _, ty in ipairs({ "TXT", "CNAME" }) do
    local t0 = core.monotonic()
    local r, msg, kind = core.dns_query("_acme-challenge.x.test.", ty,
      { server = "127.0.0.1:" .. E.env.dns_port, timeout = 2 })
    local took = core.monotonic() - t0
    t.ok(took < 2.5, ty .. " took " .. took .. " s")
    if r then
      t.eq(#r, 0, ty .. ": no record")
    else
      t.eq(kind, "timeout", ty .. ": " .. tostring(msg))
    end
  end
end)
