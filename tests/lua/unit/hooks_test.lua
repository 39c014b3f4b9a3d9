local t = require "testlib"
local core = require "luacme.core"
local hooks = require "luacme.hooks"

local fails = t.fails_err      -- nil, err (an error table)

local function keys(tbl)
    local out = {}
    for k, v in pairs(tbl) do out[#out + 1] = k .. "=" .. tostring(v) end
    table.sort(out)
    return table.concat(out, ";")
end

-- Write a Lua hook file into a fresh directory; returns its path.
local function hook_file(src, name)
    local path = t.tmpdir() .. "/" .. (name or "h.lua")
    t.writefile(path, src)
    return path
end

t.test("parse_spec: names, paths and options", function()
    local cases = {
        { "webroot", "webroot", nil, "" },
        { "webroot:root=/var/www/html", "webroot", nil, "root=/var/www/html" },
        { "challtestsrv:url=http://127.0.0.1:8055", "challtestsrv", nil,
          "url=http://127.0.0.1:8055" },
        { "./hook.sh", "hook.sh", "./hook.sh", "" },
        { "/etc/luacme/dns.lua:zone=example.com,ttl=60", "dns",
          "/etc/luacme/dns.lua", "ttl=60;zone=example.com" },
        { "exec:script=/x/y.sh,types=http-01,dns-01", "exec", nil,
          "script=/x/y.sh;types=http-01,dns-01" },
        { "command:cmd=systemctl reload nginx", "command", nil,
          "cmd=systemctl reload nginx" },
        { "command:cmd=echo a,b,c,sh=1", "command", nil,
          "cmd=echo a,b,c;sh=1" },
        { "x:empty=", "x", nil, "empty=" },
        { "x:a=b=c", "x", nil, "a=b=c" },
    }
    for _, c in ipairs(cases) do
        local s = t.ok(hooks.parse_spec(c[1]))
        t.eq(s.name, c[2], c[1])
        t.eq(s.path, c[3], c[1])
        t.eq(keys(s.opts), c[4], c[1])
        t.eq(s.spec, c[1])
    end
end)

t.test("parse_spec: bad specs name themselves", function()
    local bad = {
        { "", "empty" },
        { "webroot:", "nothing after" },
        { "webroot:root", "expected k=v" },
        { "webroot:root=a,root=b", "given twice" },
        { "webroot:=x", "bad option name" },
        { "web root", "not a hook name" },
        { "../up", nil },
        { "..", "not a hook name" },
        { "dir/", "directory" },
        { "web\nroot", "control" },
        { string.rep("a", 5000), "longer" },
    }
    for _, c in ipairs(bad) do
        if c[1] == "../up" then
            -- a path: fine for parse_spec, load says the file is missing
            t.ok(hooks.parse_spec(c[1]).path)
        else
            local e = fails("hook", c[2], hooks.parse_spec(c[1]))
            t.match(e.detail, "^hook ")
        end
    end
    fails("hook", "string", hooks.parse_spec(42))
end)

t.test("load: built-in hooks and their options", function()
    local h = t.ok(hooks.load("webroot:root=/var/www"))
    t.eq(h.name, "webroot")
    t.eq(h.opts.root, "/var/www")
    t.eq(table.concat(h.types, ","), "http-01")
    t.eq(type(h.deploy), "function")
    t.eq(type(h.cleanup), "function")
    t.match(h.file, "/hooks/webroot%.lua$")
    t.ok(hooks.solves(h, "http-01"))
    t.ok(not hooks.solves(h, "dns-01"))
    fails("hook", "^hook webroot: option root is required",
        hooks.load("webroot"))
    fails("hook", "^hook webroot:rot=/x: unknown option rot %(known: root, flat%)",
        hooks.load("webroot:rot=/x"))
    fails("hook", "absolute", hooks.load("webroot:root=relative"))
    fails("hook", "no built%-in hook named nosuch", hooks.load("nosuch"))
    -- defaults fill in
    h = t.ok(hooks.load("challtestsrv"))
    t.eq(h.opts.url, "http://127.0.0.1:8055")
    t.eq(table.concat(h.types, ","), "http-01,dns-01")
    -- roles
    fails("hook", "not a deploy hook", hooks.load("webroot:root=/x",
        "deploy"))
    fails("hook", "not a challenge hook", hooks.load("command:cmd=true",
        "challenge"))
    t.ok(hooks.load("command:cmd=true", "deploy"))
    -- a parsed spec table works too, and the caller's opts are copied
    local spec = t.ok(hooks.parse_spec("webroot:root=/srv"))
    h = t.ok(hooks.load(spec))
    h.opts.root = "/changed"
    t.eq(spec.opts.root, "/srv")
end)

t.test("load: a user's Lua hook file is checked", function()
    local good = hook_file([[
        return { types = { "dns-01" }, description = "test",
          deploy = function(ch, opts) return true end,
          cleanup = function(ch, opts) return true end }
    ]], "mydns.lua")
    local h = t.ok(hooks.load(good .. ":zone=example.com"))
    t.eq(h.name, "mydns")
    t.eq(h.opts.zone, "example.com")     -- no declared options: anything
    t.eq(h.description, "test")
    local cases = {
        { "return 42", "returned number, not a table" },
        { "return {", "unexpected symbol" },
        { "error('boom')", "boom" },
        { "return { types = {}, deploy = print, cleanup = print }",
          "non%-empty list" },
        { "return { types = { 'http-02' }, deploy = print, cleanup = print }",
          "unknown challenge type http%-02" },
        { "return { types = { 'dns-01' }, deploy = print }",
          "needs deploy and cleanup" },
        { "return { types = { 'dns-01' }, deploy = 1, cleanup = print }",
          "deploy must be a function" },
        { "return { deploy_cert = 'x' }", "deploy_cert must be a function" },
        { "return { description = 'nothing' }", "neither types" },
        { "return { deploy_cert = print, options = { { help = 'x' } } }",
          "options%[1%]" },
        { "return { types = 'dns-01', deploy = print, cleanup = print }",
          "types must be a list" },
        { "return { deploy_cert = print, setup = function() " ..
          "return nil, 'zone missing' end }", "zone missing" },
    }
    for i, c in ipairs(cases) do
        local path = hook_file(c[1], "bad" .. i .. ".lua")
        local e = fails("hook", c[2], hooks.load(path))
        t.eq(e.detail:sub(1, #("hook " .. path)), "hook " .. path)
    end
    fails("hook", "no such file", hooks.load("/nonexistent/x.lua"))
    fails("hook", "no such file", hooks.load("../up.lua"))
end)

t.test("load: hook files run once, in their own environment", function()
    local path = hook_file([[
        counter = (counter or 0) + 1     -- a global of the hook
        local M = { types = { "dns-01" } }
        function M.deploy() counter = counter + 1 return counter end
        function M.cleanup() return true end
        return M
    ]], "g.lua")
    local a = t.ok(hooks.load(path .. ":x=1"))
    local b = t.ok(hooks.load(path .. ":x=2"))
    t.eq(rawget(_G, "counter"), nil)
    -- one run of the file: both specs share its state
    t.eq(a.deploy(), 2)
    t.eq(b.deploy(), 3)
    t.eq(a.opts.x, "1")
    t.eq(b.opts.x, "2")
end)

t.test("load: an executable that is not Lua becomes the exec hook", function()
    local dir = t.tmpdir()
    t.writefile(dir .. "/hook.sh", "#!/bin/sh\nexit 0\n")
    t.ok(core.chmod(dir .. "/hook.sh", 493))
    local h = t.ok(hooks.load(dir .. "/hook.sh"))
    t.eq(h.name, "exec")
    t.eq(h.opts.script, dir .. "/hook.sh")
    t.eq(table.concat(h.types, ","), "http-01")
    t.eq(type(h.deploy_cert), "function")
    h = t.ok(hooks.load(dir .. "/hook.sh:types=dns-01,http-01"))
    t.eq(table.concat(h.types, ","), "dns-01,http-01")
    fails("hook", "unknown challenge type dns%-02",
        hooks.load(dir .. "/hook.sh:types=dns-02"))
    fails("hook", "a script path and a script option",
        hooks.load(dir .. "/hook.sh:script=/bin/true"))
    t.writefile(dir .. "/plain", "x")
    t.ok(core.chmod(dir .. "/plain", 420))
    fails("hook", "not executable", hooks.load(dir .. "/plain"))
    fails("hook", "is not a file", hooks.load(dir .. "/missing"))
    fails("hook", "is not a file", hooks.load("exec:script=" .. dir))
    fails("hook", "timeout", hooks.load(dir .. "/hook.sh:timeout=soon"))
end)

t.test("list_builtin describes every built-in hook", function()
    local list = hooks.list_builtin()
    local by = {}
    for _, h in ipairs(list) do by[h.name] = h end
    for _, n in ipairs({ "webroot", "exec", "command", "challtestsrv" }) do
        t.ok(by[n], n .. " listed")
        t.eq(by[n].error, nil, n)
        t.eq(type(by[n].description), "string")
        t.ok(#by[n].description > 10)
    end
    t.eq(by.webroot.types[1], "http-01")
    t.eq(by.webroot.options[1].name, "root")
    t.eq(by.webroot.options[1].required, true)
    t.eq(by.webroot.deploy, false)
    t.eq(by.command.deploy, true)
    t.eq(by.exec.types, "depends on options")
    for i = 2, #list do t.ok(list[i - 1].name < list[i].name, "sorted") end
end)

t.test("environment drops luacme secrets only", function()
    local env = {
        PATH = "/bin", HOME = "/root", API_KEY = "not ours",
        LUACME_STATE = "/s", LUACME_DIRECTORY = "x",
        LUACME_EAB_KID = "kid", LUACME_EAB_HMAC_KEY = "mac",
        LUACME_ACCOUNT_KEY = "k", LUACME_PDNS_API_KEY = "k",
        LUACME_DNS_TOKEN = "t", LUACME_CF_SECRET = "s",
        LUACME_SMTP_PASSWORD = "p", LUACME_HMAC = "h",
        luacme_api_token = "lower case too", LUACME_eab_x = "y",
    }
    local out = hooks.environment(env)
    t.eq(keys(out), "API_KEY=not ours;HOME=/root;LUACME_DIRECTORY=x;" ..
        "LUACME_STATE=/s;PATH=/bin")
    t.eq(env.LUACME_EAB_KID, "kid")          -- the input is untouched
    -- without an argument: the real environment, filtered
    local real = hooks.environment()
    t.eq(real.PATH, core.environ().PATH)
    for k in pairs(real) do t.ok(not hooks.is_secret(k), k) end
    t.ok(hooks.is_secret("LUACME_KEY_FILE"))   -- deploy hooks add it back
    t.ok(not hooks.is_secret("KEY"))
end)

t.test("call: results, errors, raises, interruption, opts last", function()
    local seen
    local h = { name = "t", opts = { o = 1 },
        deploy = function(ch, opts) seen = { ch, opts } return true end,
        ready = function() return nil, "not yet" end,
        cleanup = function() error("exploded") end,
        startup = function() error({ kind = "interrupted" }) end,
        exit = function() return false end,
    }
    t.eq(hooks.call(h, "deploy", "CH"), true)
    t.eq(seen[1], "CH")
    t.eq(seen[2].o, 1)
    local e = fails("hook", "^hook t: ready: not yet$", hooks.call(h, "ready"))
    t.eq(e.hook, "t")
    t.eq(e.cause, "not yet")
    fails("hook", "^hook t: cleanup: .*exploded", hooks.call(h, "cleanup"))
    fails("hook", "no reason given", hooks.call(h, "exit"))
    t.eq(hooks.call(h, "failure", "x"), true)         -- not defined
    local ok, err = pcall(hooks.call, h, "startup")
    t.eq(ok, false)
    t.eq(err.kind, "interrupted")
end)

t.test("challenge derives path, body, name and value", function()
    -- Go TestHTTP01Challenge / TestDNS01ChallengeRecord (reference B.7)
    local ka = "xxx.zedj-Bd1Zshp8KLePv2MB-lJ_Hagp7wAwdkA0NUTniU"
    local ch = hooks.challenge({ type = "http-01", token = "xxx",
        identifier = { type = "dns", value = "example.com" },
        key_authorization = ka })
    t.eq(ch.path, "/.well-known/acme-challenge/xxx")
    t.eq(ch.body, ka)
    t.eq(ch.domain, "example.com")
    t.eq(ch.wildcard, false)
    ch = hooks.challenge({ type = "dns-01", token = "xxx",
        identifier = { type = "dns", value = "example.com" },
        key_authorization = ka, wildcard = true })
    t.eq(ch.name, "_acme-challenge.example.com.")
    t.eq(ch.value, "8DERMexQ5VcdJ_prpPiA0mVdp7imgbCgjsG4SqqNMIo")
    t.eq(ch.wildcard, true)
    t.eq(ch.identifier.value, "example.com")
    for _, id in ipairs({ { "dns", "example.com" }, { "ip", "192.0.2.1" } }) do
        ch = t.ok(hooks.challenge({ type = "tls-alpn-01", token = "xxx",
            identifier = { type = id[1], value = id[2] },
            key_authorization = ka }))
        local info = t.ok(core.cert_info(ch.cert_pem))
        t.ok(core.cert_matches_key(ch.cert_pem, ch.key))
        local sans = table.concat(info.names or {}, ",") ..
            table.concat(info.ips or {}, ",")
        t.eq(sans, id[2])
    end
    fails("invalid", "tls%-alpn%-01 certificate for bad name",
        hooks.challenge({ type = "tls-alpn-01", token = "x",
            identifier = { type = "dns", value = "bad name" },
            key_authorization = ka }))
end)

t.test("printable and run", function()
    t.eq(hooks.printable("  a\27[31mb\r\n  "), "a\\x1b[31mb")
    t.eq(hooks.printable(string.rep("x", 50), 10), "xxxxxxxxxx...")
    local res = t.ok(hooks.run({ "/bin/sh", "-c", "echo out; exit 0" },
        { env = {} }))
    t.eq(res.stdout, "out\n")
    local r, err = hooks.run({ "/bin/sh", "-c", "echo bad >&2; exit 3" },
        { env = {} })
    t.eq(r, nil)
    t.eq(err, "/bin/sh -c: exit status 3: bad")
    local _
    _, err = hooks.run({ "/bin/sh", "-c", "echo only-stdout; exit 1" })
    t.match(err, "exit status 1: only%-stdout$")
    _, err = hooks.run({ "/bin/sh", "-c", "kill -9 $$" })
    t.match(err, "killed by signal 9")
    _, err = hooks.run({ "/bin/sh", "-c", "sleep 5" }, { timeout = 0.3 })
    t.match(err, "timed out after 0%.3 s")
    _, err = hooks.run({ "/nonexistent/prog" })
    t.match(err, "^/nonexistent/prog: ")
    t.eq(hooks.seconds(nil, 300), 300)
    t.eq(hooks.seconds("12", 300), 12)
    t.eq(hooks.seconds("0", 300), nil)
    t.ok(hooks.truthy("1") and hooks.truthy("YES") and hooks.truthy(true))
    t.ok(not hooks.truthy("0") and not hooks.truthy(nil))
end)

t.test("the README's example provider loads and checks its options",
    function()
    local readme = t.readfile("hooks/README.md")
    local src = readme:match("```lua\n(%-%- /etc/luacme/exampledns%.lua.-)```")
    t.ok(src, "example found")
    local path = hook_file(src, "exampledns.lua")
    local e = fails("hook", "zone is required", hooks.load(path))
    t.match(e.detail, "^hook .*exampledns%.lua: option ")
    if os.getenv("LUACME_EXAMPLEDNS_TOKEN") == nil then
        fails("hook", "set LUACME_EXAMPLEDNS_TOKEN",
            hooks.load(path .. ":zone=example.com"))
    end
end)
