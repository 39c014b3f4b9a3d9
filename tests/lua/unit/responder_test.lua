-- The challenge responders through luacme.core (core.http01_responder,
-- core.tls_alpn_responder) and the standalone / tls-alpn hooks, on
-- 127.0.0.1 with ports chosen at run time. Clients are independent of
-- the code under test: libcurl (core.http), the curl and openssl command
-- line tools, and a small python3 socket client.
local t = require "testlib"
local core = require "luacme.core"
local hooks = require "luacme.hooks"

local TOKEN = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"
local KA = TOKEN .. ".9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"
local PATH = "/.well-known/acme-challenge/"

local http = assert(core.http{ allow_http = true, timeout = 10,
    connect_timeout = 5 })

local function get(port, path, opts)
    opts = opts or {}
    return http:request{ method = opts.method or "GET",
        url = "http://127.0.0.1:" .. port .. path, headers = opts.headers }
end

local function q(s)
    return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- A port free right now (the kernel's choice for port 0).
local function free_port()
    local r = assert(core.http01_responder{ address = "127.0.0.1", port = 0 })
    local p = r:port()
    r:close()
    return p
end

------------------------------------------------------------------------
-- http-01

t.test("http01 serves added tokens, 404 for the rest", function()
    local r <close> = assert(core.http01_responder{ address = "127.0.0.1",
        port = 0 })
    local port = r:port()
    t.ok(port > 0)
    t.match(tostring(r), "^luacme%.responder %(http%-01, port %d+%)$")
    t.eq(r:add(TOKEN, KA), true)
    local status, headers, body = get(port, PATH .. TOKEN)
    t.eq(status, 200)
    t.eq(body, KA)
    t.eq(headers["content-type"], "text/plain")
    t.eq(headers["content-length"], tostring(#KA))
    status, headers, body = get(port, PATH .. TOKEN, { method = "HEAD" })
    t.eq(status, 200)
    t.eq(body, "")
    t.eq(headers["content-length"], tostring(#KA))
    for _, p in ipairs({ PATH .. "other", "/", PATH, PATH .. TOKEN .. "x",
        "/index.html", PATH .. TOKEN:lower() }) do
        t.eq((get(port, p)), 404, p)
    end
    t.eq((get(port, PATH .. TOKEN, { method = "POST" })), 405)
    -- Replace, then remove.
    t.ok(r:add(TOKEN, "second"))
    t.eq(select(3, get(port, PATH .. TOKEN)), "second")
    t.eq(r:remove(TOKEN), true)
    t.eq(r:remove(TOKEN), false)
    t.eq((get(port, PATH .. TOKEN)), 404)
    local st = r:stats()
    t.eq(st.served, 3)
    t.eq(st.not_found, 7)
    t.eq(st.bad, 1)
    t.eq(st.requests, 10)
    t.eq(st.entries, 0)
    t.eq(st.timeouts, 0)
    t.ok(st.connections >= 11)
end)

t.test("http01 add refuses bad tokens and oversize bodies", function()
    local r <close> = assert(core.http01_responder{ address = "127.0.0.1",
        port = 0 })
    t.fails("invalid", "token", r:add("../etc/passwd", "x"))
    t.fails("invalid", "token", r:add("a.b", "x"))
    t.fails("invalid", "token", r:add("", "x"))
    t.fails("invalid", "NUL", r:add("a\0b", "x"))
    t.fails("invalid", "token", r:add(("a"):rep(257), "x"))
    t.ok(r:add(("a"):rep(256), "x"))
    t.fails("too_large", "LUACME_RESPONDER_MAX_BODY",
        r:add("t", ("x"):rep(4097)))
    t.ok(r:add("t", ("x"):rep(4096)))
    t.eq(r:stats().entries, 2)
    t.raises(function() r:add("t") end, "string expected")
    t.raises(function() r:add("t", "x", "extra") end, "no value expected")
end)

t.test("http01 options are checked", function()
    t.raises(function() core.http01_responder{ prot = 80 } end,
        "unknown option 'prot'")
    t.raises(function() core.http01_responder{ port = 70000 } end,
        "'port' must be an integer")
    t.raises(function() core.http01_responder{ port = 1.5 } end, "'port'")
    t.raises(function() core.http01_responder{ max_conns = 0 } end,
        "'max_conns'")
    t.raises(function() core.http01_responder{ max_request = 100 } end,
        "'max_request'")
    t.raises(function() core.http01_responder{ timeout = 0 } end,
        "'timeout'")
    t.raises(function() core.tls_alpn_responder{ max_request = 1024 } end,
        "unknown option 'max_request'")
    t.fails("invalid", "numeric", core.http01_responder{
        address = "localhost", port = 0 })
    t.fails("bind", "192.0.2.1", core.http01_responder{
        address = "192.0.2.1", port = 0 })
    -- A port in use: "bind", naming the port.
    local r <close> = assert(core.http01_responder{ address = "127.0.0.1",
        port = 0 })
    t.fails("bind", "port " .. r:port() .. ": Address already in use",
        core.http01_responder{ address = "127.0.0.1", port = r:port() })
end)

t.test("http01 answers 431 to a request head over max_request", function()
    local r <close> = assert(core.http01_responder{ address = "127.0.0.1",
        port = 0, max_request = 512 })
    t.ok(r:add(TOKEN, KA))
    t.eq((get(r:port(), PATH .. TOKEN)), 200)
    t.eq((get(r:port(), PATH .. TOKEN,
        { headers = { ["x-pad"] = ("p"):rep(600) } })), 431)
    -- The default cap is LUACME_RESPONDER_MAX_REQUEST (8 KiB).
    local d <close> = assert(core.http01_responder{ address = "127.0.0.1",
        port = 0 })
    t.ok(d:add(TOKEN, KA))
    t.eq((get(d:port(), PATH .. TOKEN,
        { headers = { ["x-pad"] = ("p"):rep(7000) } })), 200)
    t.eq((get(d:port(), PATH .. TOKEN,
        { headers = { ["x-pad"] = ("p"):rep(8200) } })), 431)
    t.eq(d:stats().bad, 1)
end)

t.test("http01 serves many clients at once through max_conns", function()
    local r <close> = assert(core.http01_responder{ address = "127.0.0.1",
        port = 0, max_conns = 2 })
    t.ok(r:add(TOKEN, KA))
    local urls = {}
    for i = 1, 30 do
        urls[i] = q("http://127.0.0.1:" .. r:port() .. PATH .. TOKEN)
    end
    local ok, out = t.sh("curl -s -w 'code=%{http_code}\\n' " ..
        "--max-time 20 --parallel --parallel-immediate --parallel-max 30 " ..
        table.concat(urls, " "))
    t.ok(ok, out)
    local n = 0
    for code in out:gmatch("code=(%d+)") do
        t.eq(code, "200")
        n = n + 1
    end
    t.eq(n, 30)
    local st = r:stats()
    t.eq(st.served, 30)
    t.eq(st.peak, 2, "never more than max_conns open")
end)

-- A python3 client that connects, sends half a request, says "sent",
-- then reports how long until the server hung up and what it got.
local SLOW = [[
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(b"GET /.well-kn")
print("sent", flush=True)
t0 = time.monotonic()
data = b""
while True:
    b = s.recv(4096)
    if not b:
        break
    data += b
print("closed %.3f %d" % (time.monotonic() - t0, len(data)), flush=True)
]]

t.test("a slow client does not block others and times out", function()
    local r <close> = assert(core.http01_responder{ address = "127.0.0.1",
        port = 0, timeout = 1.5 })
    t.ok(r:add(TOKEN, KA))
    local dir = t.tmpdir()
    t.writefile(dir .. "/slow.py", SLOW)
    local p = assert(io.popen("exec python3 " .. q(dir .. "/slow.py") ..
        " " .. r:port()))
    local ok, err = pcall(function()
        t.eq(p:read("l"), "sent")
        -- The slow one holds a connection; others are served meanwhile.
        local t0 = core.monotonic()
        for _ = 1, 5 do
            t.eq(select(3, get(r:port(), PATH .. TOKEN)), KA)
        end
        t.ok(core.monotonic() - t0 < 1, "served while the slow one waits")
        t.eq(r:stats().active >= 1, true)
        local line = p:read("l")
        local secs, got = line:match("^closed ([%d.]+) (%d+)$")
        t.ok(secs, line)
        t.ok(tonumber(secs) > 1.0 and tonumber(secs) < 5, line)
        t.eq(got, "0", "hung up without an answer")
    end)
    p:close()
    if not ok then error(err, 0) end
    t.eq(r:stats().timeouts, 1)
end)

-- A#9.5: one peer cannot starve the validation: idle connections are
-- evicted when a peer has too many or the responder is full, and a
-- request head must arrive within LUACME_RESPONDER_HEAD_MS.
t.test("300 idle connections from one address do not starve a request",
    function()
    local r <close> = assert(core.http01_responder{ address = "127.0.0.1",
        port = 0 })
    t.ok(r:add(TOKEN, KA))
    local opened, stop = t.idle_peer(r:port(), 300)
    local ok, err = pcall(function()
        t.ok(opened and opened >= 150, "idle peer opened " ..
            tostring(opened))
        local t0 = core.monotonic()
        for _ = 1, 3 do
            local status, _, body = get(r:port(), PATH .. TOKEN)
            t.eq(status, 200)
            t.eq(body, KA)
        end
        t.ok(core.monotonic() - t0 < 2, "served within 2 s: " ..
            (core.monotonic() - t0))
        local st = r:stats()
        t.ok(st.evicted > 0, "idle connections evicted")
        t.ok(st.active <= 64, "at most max_conns open: " .. st.active)
    end)
    stop()
    if not ok then error(err, 0) end
end)

t.test("a request head must arrive within 2.5 s, whatever the timeout",
    function()
    local r <close> = assert(core.http01_responder{ address = "127.0.0.1",
        port = 0, timeout = 30 })
    t.ok(r:add(TOKEN, KA))
    local dir = t.tmpdir()
    t.writefile(dir .. "/slow.py", SLOW)
    local p = assert(io.popen("exec python3 " .. q(dir .. "/slow.py") ..
        " " .. r:port()))
    t.eq(p:read("l"), "sent")
    local line = p:read("l") or ""
    p:close()
    local secs = tonumber(line:match("^closed ([%d.]+) 0$"))
    t.ok(secs and secs > 1.5 and secs < 3.5, line)
    t.eq(r:stats().timeouts, 1)
end)

t.test("close stops serving and frees the port; stats stay", function()
    local r = assert(core.http01_responder{ address = "127.0.0.1", port = 0 })
    local port = r:port()
    t.ok(r:add(TOKEN, KA))
    t.eq((get(port, PATH .. TOKEN)), 200)
    r:close()
    r:close()                                   -- idempotent
    t.match(tostring(r), "closed")
    t.fails("connect", nil, get(port, PATH .. TOKEN))
    t.eq(r:stats().served, 1)
    t.eq(r:stats().active, 0)
    t.raises(function() r:add("a", "b") end, "closed responder")
    t.raises(function() r:port() end, "closed responder")
    t.raises(function() r:remove("a") end, "closed responder")
    -- The same port again at once.
    local r2 <close> = assert(core.http01_responder{ address = "127.0.0.1",
        port = port })
    t.eq(r2:port(), port)
end)

t.test("__close and __gc stop the responder too", function()
    local port
    do
        local r <close> = assert(core.http01_responder{
            address = "127.0.0.1", port = 0 })
        port = r:port()
        t.ok(r:add(TOKEN, KA))
        t.eq((get(port, PATH .. TOKEN)), 200)
    end
    t.fails("connect", nil, get(port, PATH .. TOKEN))
    do
        local r = assert(core.http01_responder{ address = "127.0.0.1",
            port = 0 })
        port = r:port()
    end
    collectgarbage()
    collectgarbage()
    t.fails("connect", nil, get(port, PATH .. TOKEN))
end)

t.test("address * and :: listen on IPv4 (and IPv6 where there is one)",
    function()
    for _, a in ipairs({ "*", "::" }) do
        local r <close>, msg = core.http01_responder{ address = a, port = 0 }
        if not r and a == "::" then
            print("note: no IPv6 here: " .. msg)
        else
            t.ok(r, msg)
            t.ok(r:add(TOKEN, KA))
            t.eq(select(3, get(r:port(), PATH .. TOKEN)), KA, a)
            local ok6, out = t.sh("curl -s -g --max-time 5 " ..
                q("http://[::1]:" .. r:port() .. PATH .. TOKEN))
            if ok6 then t.eq(out, KA, a .. " over IPv6") end
        end
    end
    -- 0.0.0.0 is IPv4 only.
    local r4 <close> = assert(core.http01_responder{ address = "0.0.0.0",
        port = 0 })
    t.ok(r4:add(TOKEN, KA))
    t.eq(select(3, get(r4:port(), PATH .. TOKEN)), KA)
end)

------------------------------------------------------------------------
-- tls-alpn-01, checked with openssl s_client

-- Run s_client against port; returns its output (stdout and stderr),
-- with the server certificate in PEM.
local function s_client(port, args)
    local _, out = t.sh("timeout 10 openssl s_client -connect 127.0.0.1:" ..
        port .. " " .. args .. " -showcerts </dev/null")
    return out
end

local function x509_text(pem_out)
    local pem = pem_out:match("(%-%-%-%-%-BEGIN CERTIFICATE%-%-%-%-%-.-" ..
        "%-%-%-%-%-END CERTIFICATE%-%-%-%-%-)")
    if not pem then return nil end
    local f = t.tmpdir() .. "/c.pem"
    t.writefile(f, pem .. "\n")
    local ok, text = t.sh("openssl x509 -noout -text -certopt ext_dump " ..
        "-in " .. q(f))
    assert(ok, text)
    return text
end

local function acme_digest_hex(ka)
    return t.hex(core.sha256(ka))
end

-- The acmeIdentifier extension's value from `openssl x509 -text -certopt
-- ext_dump` (a hex dump): the DER of OCTET STRING(SHA-256(key
-- authorization)), "0420..." in lower-case hex; nil when absent or not
-- critical.
local function ext_value(text)
    local block = text:match("1%.3%.6%.1%.5%.5%.7%.1%.31: critical\n(.-)\n" ..
        "%s*[%a][^\n]*")
    if not block then return nil end
    local hex = {}
    for line in block:gmatch("[^\n]+") do
        local part = line:match("^%s*%x%x%x%x %- (.-)%s%s%s+")
        if not part then break end
        hex[#hex + 1] = part:gsub("[^%x]", ""):lower()
    end
    return table.concat(hex)
end

local function tls_setup()
    local r = assert(core.tls_alpn_responder{ address = "127.0.0.1",
        port = 0 })
    local cert, key = assert(core.tls_alpn01_cert("a.example", KA))
    t.ok(r:add("a.example", cert, key))
    local ka2 = "ip-token." .. "thumb"
    local cert2, key2 = assert(core.tls_alpn01_cert("127.0.0.1", ka2))
    t.ok(r:add("127.0.0.1", cert2, key2))
    return r, ka2
end

t.test("tls-alpn presents the challenge cert for acme-tls/1 + SNI",
    function()
    local r <close>, ka2 = tls_setup()
    t.match(tostring(r), "tls%-alpn%-01, port")
    local out = s_client(r:port(), "-alpn acme-tls/1 -servername a.example")
    t.match(out, "ALPN protocol: acme%-tls/1")
    local text = t.ok(x509_text(out), out)
    t.match(text, "DNS:a%.example")
    t.eq(ext_value(text), "0420" .. acme_digest_hex(KA))
    -- Any case, trailing dot, TLS 1.2.
    out = s_client(r:port(), "-alpn acme-tls/1 -servername A.EXAMPLE. " ..
        "-tls1_2")
    t.match(out, "ALPN protocol: acme%-tls/1")
    t.match(out, "Protocol%s*: TLSv1%.2")
    -- The IP by its reverse name, without and with the trailing dot.
    for _, sni in ipairs({ "1.0.0.127.in-addr.arpa",
        "1.0.0.127.in-addr.arpa." }) do
        out = s_client(r:port(), "-alpn acme-tls/1 -servername " .. sni)
        t.match(out, "ALPN protocol: acme%-tls/1")
        text = t.ok(x509_text(out), out)
        t.match(text, "IP Address:127%.0%.0%.1")
        t.eq(ext_value(text), "0420" .. acme_digest_hex(ka2))
    end
    t.eq(r:stats().served, 4)
end)

t.test("tls-alpn: 300 idle connections do not starve a handshake",
    function()
    local r <close> = tls_setup()
    local opened, stop = t.idle_peer(r:port(), 300)
    local ok, err = pcall(function()
        t.ok(opened and opened >= 150, "idle peer opened " ..
            tostring(opened))
        local t0 = core.monotonic()
        local out = s_client(r:port(), "-alpn acme-tls/1 -servername a.example")
        t.match(out, "ALPN protocol: acme%-tls/1")
        t.ok(core.monotonic() - t0 < 2, "served within 2 s")
        t.ok(r:stats().evicted > 0)
    end)
    stop()
    if not ok then error(err, 0) end
end)

t.test("tls-alpn refuses no ALPN, other protocols, unknown SNI", function()
    local r <close> = tls_setup()
    local port = r:port()
    local out = s_client(port, "-servername a.example")
    t.match(out, "no application protocol")
    t.ok(not out:find("BEGIN CERTIFICATE"))
    out = s_client(port, "-alpn h2,http/1.1 -servername a.example")
    t.match(out, "no application protocol")
    out = s_client(port, "-alpn acme-tls/1 -servername b.example")
    t.match(out, "unrecognized name")
    t.ok(not out:find("BEGIN CERTIFICATE"))
    out = s_client(port, "-alpn acme-tls/1 -noservername")
    t.match(out, "unrecognized name")
    out = s_client(port, "-alpn acme-tls/1 -servername 127.0.0.1")
    t.match(out, "unrecognized name")
    out = s_client(port, "-alpn acme-tls/1 -servername a.example -tls1_1")
    t.ok(not out:find("BEGIN CERTIFICATE"), "below TLS 1.2 refused")
    -- Removed: unknown.
    t.eq(r:remove("A.example."), true)
    t.eq(r:remove("a.example"), false)
    out = s_client(port, "-alpn acme-tls/1 -servername a.example")
    t.match(out, "unrecognized name")
    local st = r:stats()
    t.eq(st.served, 0)
    t.eq(st.not_found, 4)
    t.ok(st.bad >= 2)
    t.eq(st.entries, 1)
end)

-- A python3 client that holds connections to the tls-alpn responder in
-- each state its loop waits in: connected and silent, half a ClientHello
-- (HANDSHAKE), and handshakes completed with acme-tls/1 over TLS 1.3 and
-- 1.2 (the server sent close_notify and waits in DRAIN for a client
-- that does not close). It says "held N", then reads the silent ones
-- until the server hangs up on them (its timeout) and exits.
local HOLD = [[
import socket, ssl, sys
port = int(sys.argv[1])
def tcp():
    return socket.create_connection(("127.0.0.1", port), timeout=20)
silent = [tcp(), tcp()]
silent[1].sendall(b"\x16\x03\x01\x02\x00\x01\x00")
done = []
for v in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ctx.maximum_version = v
    ctx.set_alpn_protocols(["acme-tls/1"])
    s = ctx.wrap_socket(tcp(), server_hostname="a.example")
    assert s.selected_alpn_protocol() == "acme-tls/1"
    done.append(s)
print("held", len(silent) + len(done), flush=True)
for s in silent:
    while s.recv(4096):
        pass
]]

-- The serving thread must sleep in poll() whatever its connections are
-- waiting for: a loop that polls busily (a readiness it never consumes,
-- a zero timeout) burns a core until the connections time out. That is
-- what a tls-alpn-01 issuance under qemu-aarch64 was reported to do, so
-- this runs in the cross builds too (tests/cross), under the emulator.
-- The process's CPU time (os.clock: every thread) over a second with four
-- connections held must stay far below that second.
t.test("tls-alpn: idle connections in every state cost no CPU", function()
    local r <close> = assert(core.tls_alpn_responder{ address = "127.0.0.1",
        port = 0, timeout = 4 })
    local cert, key = assert(core.tls_alpn01_cert("a.example", KA))
    t.ok(r:add("a.example", cert, key))
    local dir = t.tmpdir()
    t.writefile(dir .. "/hold.py", HOLD)
    local p = assert(io.popen("exec python3 " .. q(dir .. "/hold.py") ..
        " " .. r:port()))
    local ok, err = pcall(function()
        t.eq(p:read("l"), "held 4")
        t.eq(r:stats().active, 4)
        local c0, w0 = os.clock(), core.monotonic()
        core.sleep(1)
        local cpu, wall = os.clock() - c0, core.monotonic() - w0
        t.ok(cpu < 0.25 * wall, string.format("%.3f s of CPU in %.3f s " ..
            "with 4 connections held", cpu, wall))
        local st = r:stats()
        t.eq(st.served, 2, "both handshakes completed")
        t.eq(st.active, 4, "all four still held")
    end)
    p:close()
    if not ok then error(err, 0) end
    -- The two silent ones timed out; the completed ones were draining.
    t.eq(r:stats().timeouts, 2)
end)

t.test("tls-alpn add checks its arguments", function()
    local r <close> = assert(core.tls_alpn_responder{ address = "127.0.0.1",
        port = 0 })
    local cert, key = assert(core.tls_alpn01_cert("a.example", KA))
    local _, other = assert(core.tls_alpn01_cert("a.example", KA))
    t.fails("invalid", "does not match", r:add("a.example", cert, other))
    t.fails("parse", nil, r:add("a.example", "not a pem", key))
    t.fails("invalid", nil, r:add("*.a.example", cert, key))
    t.fails("invalid", nil, r:add("a b", cert, key))
    t.raises(function() r:add("a.example", cert) end, "luacme.key expected")
    t.raises(function() r:add("a.example", cert, key, 1) end,
        "no value expected")
    t.eq(r:stats().entries, 0)
end)

------------------------------------------------------------------------
-- The hooks

local function http_ch(token)
    return hooks.challenge({ type = "http-01", token = token,
        identifier = { type = "dns", value = "example.com" },
        key_authorization = token .. ".thumbprint" })
end

t.test("standalone hook: one responder per port, refcounted", function()
    local port = free_port()
    local h = assert(hooks.load("standalone:address=127.0.0.1,port=" ..
        port, "challenge"))
    t.eq(h.types[1], "http-01")
    local a, b = http_ch("tok-a"), http_ch("tok_b")
    t.ok(hooks.call(h, "deploy", a))
    t.ok(hooks.call(h, "deploy", b))
    t.eq(select(3, get(port, PATH .. "tok-a")), "tok-a.thumbprint")
    t.eq(select(3, get(port, PATH .. "tok_b")), "tok_b.thumbprint")
    t.eq(a.responder, b.responder, "one responder for the port")
    t.ok(hooks.call(h, "cleanup", a))
    t.eq((get(port, PATH .. "tok-a")), 404)
    t.eq((get(port, PATH .. "tok_b")), 200)
    t.ok(hooks.call(h, "cleanup", a))           -- twice: quiet
    t.ok(hooks.call(h, "cleanup", b))
    t.fails("connect", nil, get(port, PATH .. "tok_b"))
    t.eq(b.responder:stats().served, 3)
    -- A cleanup for something never deployed succeeds quietly.
    t.ok(hooks.call(h, "cleanup", http_ch("never")))
    -- Deploy again: a fresh responder on the same port.
    local c = http_ch("tok-c")
    t.ok(hooks.call(h, "deploy", c))
    t.eq((get(port, PATH .. "tok-c")), 200)
    t.ok(hooks.call(h, "cleanup", c))
end)

t.test("standalone hook refuses bad tokens, options, busy ports",
    function()
    local port = free_port()
    local h = assert(hooks.load("standalone:address=127.0.0.1,port=" ..
        port, "challenge"))
    local bad = http_ch("x")
    bad.token = "../../etc/passwd"
    local ok, err = hooks.call(h, "deploy", bad)
    t.eq(ok, nil)
    t.match(err.detail, "not %[A%-Za%-z0%-9_%-%]%+")
    t.ok(hooks.call(h, "cleanup", bad))
    ok, err = hooks.call(h, "deploy", hooks.challenge({ type = "dns-01",
        token = "t", identifier = { type = "dns", value = "example.com" },
        key_authorization = "t.x" }))
    t.eq(ok, nil)
    t.match(err.detail, "http%-01 only")
    t.fails(nil, "port must be", hooks.load("standalone:port=http"))
    t.fails(nil, "port must be", hooks.load("standalone:port=0"))
    t.fails(nil, "address must be", hooks.load("standalone:address=host"))
    t.fails(nil, "unknown option", hooks.load("standalone:addr=1.2.3.4"))
    -- The defaults: every address, port 80.
    local d = assert(hooks.load("standalone"))
    t.eq(d.opts.address, "*")
    t.eq(d.opts.port, "80")
    -- A port somebody else listens on.
    local other <close> = assert(core.http01_responder{
        address = "127.0.0.1", port = port })
    t.eq(other:port(), port)
    ok, err = hooks.call(h, "deploy", http_ch("busy"))
    t.eq(ok, nil)
    t.match(err.detail, "in use")
    t.match(err.detail, "webroot")
    t.ok(hooks.call(h, "cleanup", http_ch("busy")))
end)

t.test("tls-alpn hook serves hooks.challenge's certificate", function()
    local port = free_port()
    local h = assert(hooks.load("tls-alpn:address=127.0.0.1,port=" .. port,
        "challenge"))
    t.eq(h.types[1], "tls-alpn-01")
    local dns = assert(hooks.challenge({ type = "tls-alpn-01", token = "t1",
        identifier = { type = "dns", value = "b.example" },
        key_authorization = "t1.thumb" }))
    local ip = assert(hooks.challenge({ type = "tls-alpn-01", token = "t2",
        identifier = { type = "ip", value = "127.0.0.1" },
        key_authorization = "t2.thumb" }))
    t.ok(hooks.call(h, "deploy", dns))
    t.ok(hooks.call(h, "deploy", ip))
    local out = s_client(port, "-alpn acme-tls/1 -servername b.example")
    t.match(out, "ALPN protocol: acme%-tls/1")
    t.eq(ext_value(x509_text(out)), "0420" .. acme_digest_hex("t1.thumb"))
    out = s_client(port, "-alpn acme-tls/1 -servername " ..
        "1.0.0.127.in-addr.arpa")
    t.eq(ext_value(x509_text(out)), "0420" .. acme_digest_hex("t2.thumb"))
    t.ok(hooks.call(h, "cleanup", dns))
    out = s_client(port, "-alpn acme-tls/1 -servername b.example")
    t.match(out, "unrecognized name")
    t.ok(hooks.call(h, "cleanup", ip))
    t.ok(hooks.call(h, "cleanup", ip))
    out = s_client(port, "-alpn acme-tls/1 -servername " ..
        "1.0.0.127.in-addr.arpa")
    t.ok(not out:find("CONNECTED"), "closed after the last cleanup")
    t.eq(ip.responder:stats().served, 2)
end)

t.test("tls-alpn hook makes the certificate itself when not given",
    function()
    local port = free_port()
    local h = assert(hooks.load("tls-alpn:address=127.0.0.1,port=" .. port))
    -- The shape of order.issue's items: identifier is the value.
    local item = { type = "tls-alpn-01", token = "t3", identifier = "C.Example",
        key_authorization = "t3.thumb" }
    t.ok(hooks.call(h, "deploy", item))
    local out = s_client(port, "-alpn acme-tls/1 -servername c.example")
    local text = t.ok(x509_text(out), out)
    t.match(text, "DNS:c%.example")
    t.eq(ext_value(text), "0420" .. acme_digest_hex("t3.thumb"))
    t.ok(hooks.call(h, "cleanup", item))
    local ok, err = hooks.call(h, "deploy", { type = "tls-alpn-01",
        token = "t", identifier = "bad name!", key_authorization = "k" })
    t.eq(ok, nil)
    t.match(err.detail, "refusing an identifier")
    t.fails(nil, "port must be", hooks.load("tls-alpn:port=99999"))
    local d = assert(hooks.load("tls-alpn"))
    t.eq(d.opts.port, "443")
    t.eq(d.opts.address, "*")
end)
