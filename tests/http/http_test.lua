-- core.http against a real local HTTPS server (tests/http/server.py).
-- Each test starts its own server on 127.0.0.1 at a free port, held in a
-- <close> variable so it is stopped by PID also when the test fails; the
-- server also exits by itself once this process is gone.
local t = require "testlib"
local core = require "luacme.core"
local cjson = require "cjson.safe"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local SERVER = here .. "/server.py"
local CHILD = here .. "/interrupt_child.lua"

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- This process's PID: the parent of the shell io.popen starts.
local function self_pid()
  local p = assert(io.popen("echo $PPID"))
  local pid = p:read("l")
  p:close()
  return assert(tonumber(pid))
end
local PID = self_pid()

-- Certificates made once for the file: "good" is the server's own
-- self-signed certificate (also its CA); "other" an unrelated CA; "wrong"
-- a certificate for another name.
local pki = { dir = t.tmpdir() }
for name, san in pairs({ good = "DNS:localhost,IP:127.0.0.1",
    other = "DNS:localhost,IP:127.0.0.1", wrong = "DNS:wrong.test" }) do
  local crt, key = pki.dir .. "/" .. name .. ".crt", pki.dir .. "/" .. name .. ".key"
  local ok, out = t.sh(("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256"
    .. " -nodes -days 2 -subj /CN=luacme-test-%s -addext subjectAltName=%s"
    .. " -keyout %s -out %s"):format(name, san, q(key), q(crt)))
  assert(ok, "openssl req failed: " .. out)
  pki[name] = { crt = crt, key = key }
end

local function readnum(path)
  local f = io.open(path)
  if not f then return nil end
  local n = tonumber(f:read("l"))
  f:close()
  return n
end

-- Alive unless gone or a zombie (the server is not our child, so its
-- reaper may be slow; a zombie no longer holds the port).
local function alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return false end
  local s = f:read("a")
  f:close()
  return s:match("^%d+ %b() (%a)") ~= "Z"
end

local Server = {}
Server.__index = Server

function Server:stop()
  local pid = self.pid
  if not pid then return end
  self.pid = nil
  os.execute("kill " .. pid .. " 2>/dev/null")
  local deadline = core.monotonic() + 5
  while alive(pid) and core.monotonic() < deadline do core.sleep(0.02) end
  if alive(pid) then os.execute("kill -9 " .. pid .. " 2>/dev/null") end
end

Server.__close = Server.stop
Server.__gc = Server.stop

function Server:log()
  local f = io.open(self.dir .. "/server.log")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

-- Start server.py; returns once its port file exists, which it writes
-- after the socket listens. opts.plain: HTTP; opts.cert: a pki entry;
-- opts.closed: only hold a port that refuses connections.
local function server(opts)
  opts = opts or {}
  local dir = t.tmpdir()
  local cert = opts.cert or pki.good
  local cmd = "python3 " .. q(SERVER) .. " --dir " .. q(dir) .. " --parent " .. PID
  if opts.closed then
    cmd = cmd .. " --closed"
  elseif opts.plain then
    cmd = cmd .. " --plain"
  else
    cmd = cmd .. " --cert " .. q(cert.crt) .. " --key " .. q(cert.key)
  end
  os.execute(cmd .. " </dev/null >" .. q(dir .. "/server.log") .. " 2>&1 &")
  local srv = setmetatable({ dir = dir }, Server)
  local deadline = core.monotonic() + 10
  repeat
    srv.port = readnum(dir .. "/server.port")
    if not srv.port then core.sleep(0.02) end
  until srv.port or core.monotonic() > deadline
  srv.pid = readnum(dir .. "/server.pid")
  if not srv.port then
    srv:stop()
    error("test server did not start within 10 s: " .. srv:log())
  end
  srv.base = (opts.plain and "http" or "https") .. "://127.0.0.1:" .. srv.port
  return srv
end

local function client(opts)
  opts = opts or {}
  if opts.ca_file == nil then opts.ca_file = pki.good.crt end
  return core.http(opts)
end

-- GET url and decode the JSON the server answered.
local function json(c, req)
  local status, headers, body = c:request(req)
  assert(status, headers)
  t.eq(status, 200, body)
  t.eq(headers["content-type"], "application/json")
  return assert(cjson.decode(body))
end

-- The echo endpoint's header list as name -> list of values.
local function seen(e)
  local h = {}
  for _, kv in ipairs(e.headers) do
    h[kv[1]] = h[kv[1]] or {}
    table.insert(h[kv[1]], kv[2])
  end
  return h
end

local function pattern(n)
  return (("0123456789abcdef"):rep(n // 16 + 1)):sub(1, n)
end

t.test("custom CA accepted; default user agent", function()
  local srv <close> = server()
  local c <close> = client()
  local e = json(c, { url = srv.base .. "/echo?x=1" })
  t.eq(e.method, "GET")
  t.eq(e.path, "/echo?x=1")
  t.eq(seen(e)["user-agent"][1], "luacme/" .. core.VERSION .. " libcurl/"
    .. core.versions().curl)
  t.eq(seen(e)["expect"], nil)
end)

t.test("4xx and 5xx are responses, not failures", function()
  local srv <close> = server()
  local c <close> = client()
  for _, code in ipairs({ 404, 503, 400 }) do
    local status, h, body = c:request{ url = srv.base .. "/status?code=" .. code }
    t.eq(status, code)
    t.eq(h["x-status"], tostring(code))
    t.eq(body, "status " .. code)
  end
end)

t.test("wrong CA refused with kind tls", function()
  local srv <close> = server()
  local c <close> = client{ ca_file = pki.other.crt }
  t.fails("tls", "certificate", c:request{ url = srv.base .. "/echo" })
  -- The system store does not know our test CA either.
  local sys <close> = core.http{}
  t.fails("tls", nil, sys:request{ url = srv.base .. "/echo" })
  -- Same client, right server afterwards: the handle is still usable.
  local ok <close> = client()
  t.eq((ok:request{ url = srv.base .. "/echo" }), 200)
end)

t.test("host name verified against the certificate", function()
  local srv <close> = server{ cert = pki.wrong }
  local c <close> = client{ ca_file = pki.wrong.crt }
  t.fails("tls", "127%.0%.0%.1", c:request{ url = srv.base .. "/echo" })
end)

t.test("unreadable ca_file and plain-text peer are tls failures", function()
  local srv <close> = server{ plain = true }
  local c <close> = client()
  t.fails("tls", nil, c:request{ url = "https://127.0.0.1:" .. srv.port .. "/echo" })
  local bad <close> = client{ ca_file = pki.dir .. "/missing.crt" }
  t.fails("tls", nil, bad:request{ url = "https://127.0.0.1:" .. srv.port .. "/echo" })
end)

t.test("body cap with Content-Length (max_body and CURLOPT_MAXFILESIZE)", function()
  local srv <close> = server()
  local c <close> = client{ max_body = 1000 }
  local status, h, body = c:request{ url = srv.base .. "/big?n=1000" }
  t.eq(status, 200)
  t.eq(h["content-length"], "1000")
  t.eq(body, pattern(1000))
  t.fails("too_large", "Content%-Length over max_body %(1000 bytes%)",
    c:request{ url = srv.base .. "/big?n=1001" })
end)

t.test("body cap without Content-Length: chunked and close-delimited", function()
  local srv <close> = server()
  local c <close> = client{ max_body = 1000 }
  local status, h, body = c:request{ url = srv.base .. "/chunked?n=1000" }
  t.eq(status, 200)
  t.eq(h["transfer-encoding"], "chunked")
  t.eq(body, pattern(1000))
  t.fails("too_large", "body over max_body %(1000 bytes%)",
    c:request{ url = srv.base .. "/chunked?n=1001" })
  status, h, body = c:request{ url = srv.base .. "/close?n=1000" }
  t.eq(status, 200, h)
  t.eq(h["content-length"], nil)
  t.eq(body, pattern(1000))
  t.fails("too_large", "body over max_body",
    c:request{ url = srv.base .. "/close?n=200000" })
  -- The client still works after an aborted transfer.
  t.eq((c:request{ url = srv.base .. "/big?n=10" }), 200)
end)

t.test("default body cap is LUACME_HTTP_MAX_BODY (2 MiB)", function()
  local srv <close> = server()
  local c <close> = client()
  local max = 2 * 1024 * 1024
  local status, _, body = c:request{ url = srv.base .. "/chunked?n=" .. max }
  t.eq(status, 200)
  t.eq(#body, max)
  t.fails("too_large", "%(" .. max .. " bytes%)",
    c:request{ url = srv.base .. "/chunked?n=" .. (max + 1) })
  t.fails("too_large", "Content%-Length",
    c:request{ url = srv.base .. "/big?n=" .. (max + 1) })
end)

t.test("max_body is clamped to LUACME_HTTP_MAX_BODY_CEIL (64 MiB)", function()
  local srv <close> = server()
  local c <close> = client{ max_body = 1 << 40 }
  local ceil = 64 * 1024 * 1024
  -- Refused from the Content-Length alone: without the clamp this
  -- would download 64 MiB and succeed.
  t.fails("too_large", "Content%-Length over max_body %(" .. ceil .. " bytes%)",
    c:request{ url = srv.base .. "/big?n=" .. (ceil + 1) })
end)

t.test("response headers capped at LUACME_HTTP_MAX_HEADERS (64 KiB)", function()
  local srv <close> = server()
  local c <close> = client()
  local status, h = c:request{ url = srv.base .. "/headers?n=50&size=1000" }
  t.eq(status, 200)
  t.eq(h["x-h-0"], ("h"):rep(1000))
  t.eq(h["x-h-49"], ("h"):rep(1000))
  t.fails("too_large", "LUACME_HTTP_MAX_HEADERS",
    c:request{ url = srv.base .. "/headers?n=70&size=1000" })
end)

t.test("timeout enforced with kind timeout, within a bound", function()
  local srv <close> = server()
  local c <close> = client{ timeout = 1 }
  local t0 = core.monotonic()
  t.fails("timeout", nil, c:request{ url = srv.base .. "/slow?s=20" })
  local dt = core.monotonic() - t0
  t.ok(dt >= 0.9 and dt < 5, "timed out after " .. dt .. " s")
  -- A fractional timeout is honoured, not rounded down to "none".
  local c2 <close> = client{ timeout = 0.3 }
  t0 = core.monotonic()
  t.fails("timeout", nil, c2:request{ url = srv.base .. "/slow?s=20" })
  dt = core.monotonic() - t0
  t.ok(dt >= 0.25 and dt < 4, "timed out after " .. dt .. " s")
  -- Below a millisecond rounds up to 1 ms, not down to libcurl's 0
  -- ("no timeout"), which would wait for the server's 20 s.
  local c3 <close> = client{ timeout = 0.0004 }
  t0 = core.monotonic()
  t.fails("timeout", nil, c3:request{ url = srv.base .. "/slow?s=20" })
  dt = core.monotonic() - t0
  t.ok(dt < 4, "timed out after " .. dt .. " s")
end)

t.test("connection refused gives kind connect", function()
  -- A port bound but not listening, held by the helper meanwhile so no
  -- other process on the machine can start listening there.
  local srv <close> = server{ closed = true }
  local c <close> = client{ connect_timeout = 5 }
  t.fails("connect", "127%.0%.0%.1", c:request{ url = "https://127.0.0.1:" .. srv.port .. "/" })
  t.eq(c:stats().connects, 0)
  t.eq(c:stats().http_version, nil)
end)

t.test("two requests on one client use one TCP connection", function()
  local srv <close> = server()
  local c <close> = client()
  local a = json(c, { url = srv.base .. "/conn?tag=reuse" })
  local b = json(c, { url = srv.base .. "/conn?tag=reuse" })
  t.eq(a.count, 1)
  t.eq(b.count, 1, "server saw a second connection")
  t.eq(a.port, b.port)
  local st = c:stats()
  t.eq(st.requests, 2)
  t.eq(st.connects, 1)
  -- The test server speaks HTTP/1.1 only (Pebble offers h2, which the
  -- e2e tests see in the same field).
  t.eq(st.http_version, "1.1")
  -- Clients share the process's one pool: a second client with the
  -- same TLS settings reuses the connection too.
  local c2 <close> = client()
  t.eq(json(c2, { url = srv.base .. "/conn?tag=reuse" }).count, 1)
  t.eq(c2:stats().connects, 0)
  -- Control: other TLS settings (the same CA from another file) never
  -- share a connection, so the count is real.
  local copy = t.tmpdir() .. "/ca.crt"
  assert(core.write_file(copy, assert(core.read_file(pki.good.crt)), 420))
  local c3 <close> = client{ ca_file = copy }
  t.eq(json(c3, { url = srv.base .. "/conn?tag=reuse" }).count, 2)
  t.eq(c3:stats().connects, 1)
end)

t.test("once: a request on a reused connection that died is not resent", function()
  local srv <close> = server()
  -- Control: libcurl sends a request again by itself on a fresh
  -- connection when a reused one closes without a reply byte.
  local c <close> = client()
  json(c, { url = srv.base .. "/echo" })
  local st, msg, kind = c:request{ method = "POST", url = srv.base ..
    "/hangup?tag=plain", body = "x" }
  t.eq(st, nil)
  t.eq(kind, "protocol", msg)
  local hits = json(c, { url = srv.base .. "/hits?tag=plain" }).hits
  t.eq(hits, 2, "libcurl resent the POST on its own")
  -- once = true: sent a single time, the failure comes back instead.
  local c2 <close> = client()
  json(c2, { url = srv.base .. "/echo" })
  st, msg, kind = c2:request{ method = "POST", url = srv.base ..
    "/hangup?tag=once", body = "x", once = true }
  t.eq(st, nil)
  t.eq(kind, "protocol", msg)
  t.eq(json(c2, { url = srv.base .. "/hits?tag=once" }).hits, 1,
    "the once POST reached the server once")
  -- A once request still carries its body with a Content-Length.
  local e = json(c2, { method = "POST", url = srv.base .. "/echo",
    body = "hello", once = true })
  t.eq(e.content_length, "5")
  t.eq(e.body_len, 5)
  t.eq(e.transfer_encoding, cjson.null)
  t.raises(function() c2:request{ url = srv.base, once = 1 } end,
    "'once' must be a boolean")
end)

t.test("a reply that ends after its status line is an error", function()
  local srv <close> = server()
  local c <close> = client()
  local st, msg, kind = c:request{ method = "POST", url = srv.base ..
    "/cutstatus", body = "x" }
  t.eq(st, nil, "not a 201 without headers")
  t.eq(kind, "protocol")
  t.match(msg, "header block")
end)

t.test("repeated Link headers come back as a list in order", function()
  local srv <close> = server()
  local c <close> = client()
  local status, h, body = c:request{ url = srv.base .. "/links" }
  t.eq(status, 200)
  t.eq(body, "links")
  t.eq(type(h.link), "table")
  t.eq(#h.link, 3)
  t.eq(h.link[1], '<https://a.test/1>;rel="next"')
  t.eq(h.link[2], '<https://a.test/2>;rel="up"')
  t.eq(h.link[3], '<https://a.test/3>;rel="alternate"')
  t.eq(h["x-pad"], "padded value")
  t.eq(h["x-mixed-case"], "Kept-Case")
  t.eq(h["X-Mixed-Case"], nil)
  t.eq(h["content-type"], "text/plain")
end)

t.test("only the final response's headers are kept (1xx, trailers)", function()
  local srv <close> = server()
  local c <close> = client()
  local status, h, body = c:request{ url = srv.base .. "/early" }
  t.eq(status, 200)
  t.eq(body, "final")
  t.eq(h.link, "</final>; rel=next")
  t.eq(h["x-interim"], nil)
  -- Chunked trailers come after the header block: not headers.
  status, h, body = c:request{ url = srv.base .. "/chunked?n=5&trailer=1" }
  t.eq(status, 200)
  t.eq(body, pattern(5))
  t.eq(h.trailer, "X-Trailer")
  t.eq(h["x-trailer"], nil)
end)

t.test("POST: Content-Length, no chunking, exact Content-Type, no Expect", function()
  local srv <close> = server()
  local c <close> = client()
  -- Over 1 MiB (libcurl 7.88 would add Expect: 100-continue) and with
  -- NULs (a strlen would cut it short).
  local payload = ("{\"a\":\0\1\2}"):rep(130000)
  local e = json(c, { method = "POST", url = srv.base .. "/echo", body = payload,
    headers = { ["Content-Type"] = "application/jose+json" } })
  local h = seen(e)
  t.eq(e.method, "POST")
  t.eq(e.content_length, tostring(#payload))
  t.eq(e.transfer_encoding, cjson.null)
  t.eq(#h["content-type"], 1)
  t.eq(h["content-type"][1], "application/jose+json")
  t.eq(h["expect"], nil)
  t.eq(e.body_len, #payload)
  t.eq(e.body_sha256, t.hex(core.sha256(payload)))
end)

t.test("POST without Content-Type sends none; empty POST says length 0", function()
  local srv <close> = server()
  local c <close> = client()
  local e = json(c, { method = "POST", url = srv.base .. "/echo", body = "x=1" })
  t.eq(seen(e)["content-type"], nil)
  t.eq(e.content_length, "3")
  e = json(c, { method = "POST", url = srv.base .. "/echo" })
  t.eq(e.method, "POST")
  t.eq(e.content_length, "0")
  t.eq(seen(e)["content-type"], nil)
  -- A GET after a POST on the same handle is a GET again.
  e = json(c, { url = srv.base .. "/echo" })
  t.eq(e.method, "GET")
  t.eq(e.content_length, cjson.null)
end)

t.test("other methods, custom headers and user_agent", function()
  local srv <close> = server()
  local c <close> = client{ user_agent = "custom-agent/1" }
  local e = json(c, { method = "PUT", url = srv.base .. "/echo", body = "put-body",
    headers = { ["X-One"] = "1", ["X-Empty"] = "" } })
  local h = seen(e)
  t.eq(e.method, "PUT")
  t.eq(e.body_sha256, t.hex(core.sha256("put-body")))
  t.eq(h["x-one"][1], "1")
  t.eq(h["x-empty"][1], "")
  t.eq(h["user-agent"][1], "custom-agent/1")
  e = json(c, { method = "DELETE", url = srv.base .. "/echo" })
  t.eq(e.method, "DELETE")
  t.eq(e.body_len, 0)
end)

t.test("HEAD returns headers without waiting for a body", function()
  local srv <close> = server()
  -- The declared length is over max_body: a HEAD reads no body, so
  -- that is no error; were the body awaited, the timeout would hit.
  local c <close> = client{ timeout = 5, max_body = 1000 }
  local t0 = core.monotonic()
  local status, h, body = c:request{ method = "HEAD", url = srv.base .. "/big?n=5000000" }
  t.eq(status, 200, h)
  t.eq(h["content-length"], "5000000")
  t.eq(body, "")
  t.ok(core.monotonic() - t0 < 4)
  -- And the connection is fine for a GET afterwards.
  local s2, _, b2 = c:request{ url = srv.base .. "/big?n=7" }
  t.eq(s2, 200)
  t.eq(b2, pattern(7))
  t.eq(c:stats().connects, 1)
end)

t.test("http:// refused before connecting unless allow_http", function()
  local srv <close> = server{ plain = true }
  local c <close> = client()
  t.fails("protocol", "only https://", c:request{ url = srv.base .. "/echo" })
  t.fails("protocol", "only https://.*allow_http = true",
    c:request{ url = "HTTP://127.0.0.1:" .. srv.port })
  t.eq(c:stats().connects, 0)
  local plain <close> = client{ allow_http = true }
  -- The server accepted exactly one connection: this query's.
  t.eq(json(plain, { url = srv.base .. "/stats" }).accepted, 1)
  t.eq(json(plain, { url = srv.base .. "/echo" }).method, "GET")
  for _, url in ipairs({ "ftp://127.0.0.1:" .. srv.port .. "/", "file:///etc/passwd",
      "127.0.0.1:" .. srv.port .. "/echo", "//127.0.0.1/" }) do
    t.fails("protocol", nil, plain:request{ url = url })
  end
end)

t.test("Ctrl-C aborts a transfer with kind interrupted", function()
  local srv <close> = server()
  local exe = assert(io.popen("readlink /proc/" .. PID .. "/exe")):read("l")
  local ok, out = t.sh(q(exe) .. " run " .. q(CHILD) .. " " .. q(srv.base) .. " "
    .. q(pki.good.crt))
  t.ok(ok, out)
  t.match(out, "kind=interrupted\n")
  t.match(out, "raised=interrupted\n")
  t.match(out, "again=200\n")
  local dt = tonumber(out:match("elapsed=([%d.]+)"))
  t.ok(dt and dt < 10, "aborted after " .. tostring(dt) .. " s")
end)

t.test("bad arguments raise", function()
  local c <close> = client()
  local u = "https://127.0.0.1:1/"
  t.raises(function() c:request() end, "table expected")
  t.raises(function() c:request(u) end, "table expected")
  t.raises(function() c:request{} end, "'url' must be a string")
  t.raises(function() c:request{ url = 1 } end, "'url' must be a string")
  t.raises(function() c:request{ url = u .. "\0x" } end, "NUL")
  t.raises(function() c:request{ url = u, method = 1 } end, "'method' must be a string")
  t.raises(function() c:request{ url = u, method = "get" } end, "bad method")
  t.raises(function() c:request{ url = u, method = "GET\r\nX: y" } end, "bad method")
  t.raises(function() c:request{ url = u, headers = "x" } end, "'headers' must be a table")
  t.raises(function() c:request{ url = u, headers = { X = 1 } } end, "header 'X' must be a string")
  t.raises(function() c:request{ url = u, headers = { "x" } } end, "header names must be strings")
  t.raises(function() c:request{ url = u, headers = { X = "a\r\nB: c" } } end, "bad name or value")
  t.raises(function() c:request{ url = u, headers = { ["X Y"] = "a" } } end, "bad name or value")
  t.raises(function() c:request{ url = u, headers = { ["X:"] = "a" } } end, "bad name or value")
  t.raises(function() c:request{ url = u, body = {} } end, "'body' must be a string")
  t.raises(function() c:request{ url = u, method = "HEAD", body = "" } end, "HEAD")
  t.raises(function() c:request{ url = u, bogus = 1 } end, "unknown option 'bogus'")
  t.raises(function() c.request({}, { url = u }) end, "luacme.http expected")
  -- Options of the client.
  t.raises(function() core.http("x") end, "table expected")
  t.raises(function() core.http{ bogus = 1 } end, "unknown option 'bogus'")
  t.raises(function() core.http{ [1] = true } end, "unknown option")
  t.raises(function() core.http{ ca_file = 1 } end, "'ca_file' must be a string")
  t.raises(function() core.http{ user_agent = false } end, "'user_agent' must be a string")
  t.raises(function() core.http{ timeout = "5" } end, "'timeout' must be a number")
  t.raises(function() core.http{ timeout = 0 } end, "'timeout' must be > 0")
  t.raises(function() core.http{ timeout = -1 } end, "'timeout' must be > 0")
  t.raises(function() core.http{ timeout = 0 / 0 } end, "'timeout' must be > 0")
  -- LUACME_HTTP_TIMEOUT_MAX_S is one day.
  t.raises(function() core.http{ connect_timeout = 86401 } end, "'connect_timeout' must be")
  t.ok(core.http{ timeout = 86400, connect_timeout = 0.5 })
  t.raises(function() core.http{ max_body = 0 } end, "'max_body' must be a positive integer")
  t.raises(function() core.http{ max_body = 1.5 } end, "'max_body' must be a positive integer")
  t.raises(function() core.http{ max_body = "1" } end, "'max_body' must be a positive integer")
  t.raises(function() core.http{ allow_http = "yes" } end, "'allow_http' must be a boolean")
  t.ok(core.http())
end)

t.test("a closed client raises; close is idempotent; __close closes", function()
  local c = client()
  t.match(tostring(c), "^luacme%.http %(0x")
  c:close()
  c:close()
  t.eq(tostring(c), "luacme.http (closed)")
  t.raises(function() c:request{ url = "https://127.0.0.1:1/" } end,
    "attempt to use a closed http client")
  t.raises(function() c:stats() end, "closed http client")
  local held
  do
    local d <close> = client()
    held = d
  end
  t.eq(tostring(held), "luacme.http (closed)")
  t.raises(function() held:request{ url = "https://127.0.0.1:1/" } end, "closed")
  -- Clients dropped without close are freed by the collector (checked
  -- by the sanitizer build for leaks).
  for _ = 1, 20 do client() end
  collectgarbage()
  collectgarbage()
end)

t.test("started transfers run at once on the shared pool (core.http_run)",
  function()
  local srv <close> = server()
  local c <close> = client()
  local xs = {}
  local t0 = core.monotonic()
  for i = 1, 5 do
    xs[i] = assert(c:start{ url = srv.base .. "/slow?s=0.5" })
  end
  t.raises(function() xs[1]:result() end, "not finished")
  local left = 5
  while left > 0 do
    assert(core.monotonic() - t0 < 10, "transfers never finished")
    left = left - assert(core.http_run(1))
  end
  local took = core.monotonic() - t0
  for i = 1, 5 do
    t.ok(xs[i]:done())
    local status, _, body = xs[i]:result()
    t.eq(status, 200)
    t.eq(body, "slow")
    t.raises(function() xs[i]:result() end, "collected")
  end
  t.ok(took < 2, "5 requests of 0.5 s took " .. took .. " s")
  t.eq(c:stats().requests, 5)
  -- Refused before any connection: nil, message, kind, as request.
  t.fails("protocol", "only https", c:start{ url = "http://127.0.0.1:1/" })
  -- A transfer cancelled (or collected) while running leaves the pool
  -- usable.
  local x = assert(c:start{ url = srv.base .. "/slow?s=5" })
  core.http_run(0.1)
  x:cancel()
  t.eq(c:request{ url = srv.base .. "/conn?tag=after" }, 200)
end)
