local t = require "testlib"
local core = require "luacme.core"
local cjson = require "cjson"
local hooks = require "luacme.hooks"

-- A stand-in for pebble-challtestsrv's management API on a free loopback
-- port: records every POST (path and JSON body), answers GET /log with
-- the record. A token or host "fail" gets a 500.
local SERVER = [[
import http.server, json, sys
log = []
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_POST(self):
        n = int(self.headers.get("content-length", 0))
        body = json.loads(self.rfile.read(n) or b"{}")
        log.append({"path": self.path, "body": body,
                    "ctype": self.headers.get("content-type")})
        bad = "fail" in (body.get("token"), body.get("host"))
        known = self.path in ("/add-http01", "/del-http01", "/set-txt",
                              "/clear-txt")
        self.send_response(500 if bad else 200 if known else 404)
        self.send_header("content-length", "0")
        self.end_headers()
    def do_GET(self):
        data = json.dumps(log).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
s = http.server.HTTPServer(("127.0.0.1", 0), H)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(s.server_address[1]))
import os
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
s.serve_forever()
]]

-- Start the server; returns its base URL and a guard that stops it (by
-- PID) when it goes out of scope, also when the test fails.
local function start()
    local dir = t.tmpdir()
    t.writefile(dir .. "/srv.py", SERVER)
    local p = assert(io.popen("python3 " .. dir .. "/srv.py " .. dir ..
        "/port >/dev/null 2>" .. dir .. "/err & echo $!"))
    local pid = assert(tonumber(p:read("l")))
    p:close()
    local guard = setmetatable({}, { __close = function()
        os.execute("kill " .. pid .. " 2>/dev/null")
    end })
    local deadline = core.monotonic() + 20
    local port
    while core.monotonic() < deadline do
        local f = io.open(dir .. "/port")
        if f then
            port = f:read("l")
            f:close()
            break
        end
        core.sleep(0.02)
    end
    assert(port, "fake challtestsrv did not start")
    return "http://127.0.0.1:" .. port, guard
end

local function log(url)
    local c = assert(core.http({ allow_http = true }))
    local status, _, body = assert(c:request({ url = url .. "/log" }))
    t.eq(status, 200)
    return cjson.decode(body)
end

local KA = "tok.thumb"

local function dns_ch(domain, token, wildcard)
    return hooks.challenge({ type = "dns-01", token = token,
        identifier = { type = "dns", value = domain },
        key_authorization = token .. ".thumb", wildcard = wildcard })
end

t.test("http-01: add-http01 and del-http01", function()
    local url, guard <close> = start()
    local h = assert(hooks.load("challtestsrv:url=" .. url))
    local ch = hooks.challenge({ type = "http-01", token = "tok",
        identifier = { type = "dns", value = "example.com" },
        key_authorization = KA })
    t.ok(hooks.call(h, "deploy", ch))
    t.ok(hooks.call(h, "cleanup", ch))
    local l = log(url)
    t.eq(#l, 2)
    t.eq(l[1].path, "/add-http01")
    t.eq(l[1].body.token, "tok")
    t.eq(l[1].body.content, KA)
    t.eq(l[1].ctype, "application/json")
    t.eq(l[2].path, "/del-http01")
    t.eq(l[2].body.token, "tok")
    t.eq(l[2].body.content, nil)
end)

t.test("dns-01: a name and its wildcard clear the TXT record once",
    function()
    local url, guard <close> = start()
    local h = assert(hooks.load("challtestsrv:url=" .. url .. "/"))
    local base = dns_ch("example.com", "t1")
    local wild = dns_ch("example.com", "t2", true)
    local other = dns_ch("other.example", "t3")
    t.ok(hooks.call(h, "deploy", base))
    t.ok(hooks.call(h, "deploy", wild))
    t.ok(hooks.call(h, "deploy", other))
    t.ok(hooks.call(h, "cleanup", base))
    local l = log(url)
    t.eq(#l, 3, "no clear-txt while the wildcard's value is in use")
    t.eq(l[1].path, "/set-txt")
    t.eq(l[1].body.host, "_acme-challenge.example.com.")
    t.eq(l[1].body.value, base.value)
    t.eq(l[2].body.value, wild.value)
    t.ok(base.value ~= wild.value)
    t.ok(hooks.call(h, "cleanup", wild))
    t.ok(hooks.call(h, "cleanup", other))
    -- cleanup of something never deployed sends nothing
    t.ok(hooks.call(h, "cleanup", dns_ch("never.example", "t4")))
    l = log(url)
    t.eq(#l, 5)
    t.eq(l[4].path, "/clear-txt")
    t.eq(l[4].body.host, "_acme-challenge.example.com.")
    t.eq(l[5].path, "/clear-txt")
    t.eq(l[5].body.host, "_acme-challenge.other.example.")
end)

t.test("server errors and unreachable servers are hook errors", function()
    local url, guard <close> = start()
    local h = assert(hooks.load("challtestsrv:url=" .. url))
    local ok, err = hooks.call(h, "deploy", hooks.challenge({
        type = "http-01", token = "fail", key_authorization = "x",
        identifier = { type = "dns", value = "e" } }))
    t.eq(ok, nil)
    t.match(err.detail, "/add%-http01: HTTP 500$")
    -- a failed set-txt takes no reference
    ok = hooks.call(h, "deploy", { type = "dns-01", name = "fail",
        value = "v", domain = "x" })
    t.eq(ok, nil)
    t.ok(hooks.call(h, "cleanup", { type = "dns-01", name = "fail",
        value = "v", domain = "x" }))
    t.eq(#log(url), 2)
    -- nothing listens on port 1
    h = assert(hooks.load("challtestsrv:url=http://127.0.0.1:1"))
    ok, err = hooks.call(h, "deploy", dns_ch("example.com", "t"))
    t.eq(ok, nil)
    t.match(err.detail, "^hook challtestsrv: deploy: " ..
        "http://127%.0%.0%.1:1/set%-txt: ")
    t.eq(hooks.load("challtestsrv:url=ftp://x"), nil)
    t.eq(hooks.load("challtestsrv:url=http://x/path"), nil)
end)
