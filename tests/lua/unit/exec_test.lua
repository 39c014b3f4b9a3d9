local t = require "testlib"
local core = require "luacme.core"
local hooks = require "luacme.hooks"

-- A dehydrated-style hook script: logs its argv (one "arg=[...]" line
-- each) and its environment to LOG, ignores handlers it does not know,
-- and fails for the domain fail.example.
local SCRIPT = [[#!/bin/sh
log=%s
{
  echo "call $#"
  for a in "$@"; do printf 'arg=[%%s]\n' "$a"; done
  env | sort | sed 's/^/env=/'
  echo end
} >> "$log"
case "$1" in
  deploy_challenge)
    [ "$2" = fail.example ] && { printf 'boom\033[31m\n  on two lines  \n' >&2; exit 4; }
    echo "deployed $2" ;;
  clean_challenge) ;;
  *) ;;
esac
exit 0
]]

local function setup(types)
    local dir = t.tmpdir()
    local log = dir .. "/log"
    t.writefile(dir .. "/hook.sh", SCRIPT:format("'" .. log .. "'"))
    assert(core.chmod(dir .. "/hook.sh", 493))
    local spec = dir .. "/hook.sh" .. (types and (":types=" .. types) or "")
    return dir, log, spec
end

-- The calls in the log: list of { args = {...}, env = {name=value} }.
local function calls(log)
    local f = io.open(log, "rb")
    if not f then return {} end
    local out, cur = {}, nil
    for line in f:lines() do
        if line:find("^call %d+$") then
            cur = { args = {}, env = {}, argc = tonumber(line:match("%d+")) }
            out[#out + 1] = cur
        elseif line:find("^arg=%[") then
            cur.args[#cur.args + 1] = line:match("^arg=%[(.*)%]$")
        elseif line:find("^env=") then
            local k, v = line:match("^env=([^=]*)=(.*)$")
            if k then cur.env[k] = v end
        end
    end
    f:close()
    return out
end

local KA = "tok_1.zedj-Bd1Zshp8KLePv2MB-lJ_Hagp7wAwdkA0NUTniU"

local function http_ch(domain, token)
    return hooks.challenge({ type = "http-01", token = token or "tok_1",
        identifier = { type = "dns", value = domain },
        key_authorization = KA })
end

t.test("challenge handlers get dehydrated's arguments exactly", function()
    local _, log, spec = setup("http-01,dns-01")
    local h = assert(hooks.load(spec, "challenge"))
    t.ok(hooks.call(h, "deploy", http_ch("example.com")))
    local dns = hooks.challenge({ type = "dns-01", token = "tok_2",
        identifier = { type = "dns", value = "example.com" },
        key_authorization = KA, wildcard = true })
    t.ok(hooks.call(h, "deploy", dns))
    t.ok(hooks.call(h, "cleanup", dns))
    t.ok(hooks.call(h, "cleanup", http_ch("example.com")))
    local c = calls(log)
    t.eq(#c, 4)
    local want = {
        { "deploy_challenge", "example.com", "tok_1", KA },
        { "deploy_challenge", "example.com", "tok_2", dns.value },
        { "clean_challenge", "example.com", "tok_2", dns.value },
        { "clean_challenge", "example.com", "tok_1", KA },
    }
    for i, w in ipairs(want) do
        t.eq(c[i].argc, #w, "call " .. i)
        for j = 1, #w do t.eq(c[i].args[j], w[j], "call " .. i) end
    end
    t.eq(#dns.value, 43)
end)

t.test("no shell: $(...), quotes and ; arrive verbatim", function()
    local dir, log, spec = setup()
    local h = assert(hooks.load(spec))
    local evil = "$(touch " .. dir .. "/pwned); `touch " .. dir ..
        "/pwned2` 'q' \"d\" * ; exit 1"
    t.ok(hooks.call(h, "deploy", http_ch(evil)))
    local c = calls(log)
    t.eq(c[1].args[2], evil)
    t.eq(c[1].argc, 4)
    t.eq(core.lstat(dir .. "/pwned"), nil)
    t.eq(core.lstat(dir .. "/pwned2"), nil)
end)

t.test("deploy and event handlers", function()
    local _, log, spec = setup()
    local h = assert(hooks.load(spec))
    local cert = { name = "example.com", domains = { "example.com",
        "www.example.com" }, key_file = "/s/privkey.pem",
        cert_file = "/s/cert.pem", fullchain_file = "/s/fullchain.pem",
        chain_file = "/s/chain.pem", timestamp = 1700000000,
        changed = true }
    t.ok(hooks.call(h, "deploy_cert", cert))
    t.ok(hooks.call(h, "unchanged_cert", cert))
    t.ok(hooks.call(h, "invalid", http_ch("example.com"),
        { type = "urn:ietf:params:acme:error:unauthorized",
          detail = "404 at http://example.com/x", status = 403 }))
    t.ok(hooks.call(h, "failure", { status = 503, detail = "try later",
        uri = "https://ca/new-order",
        headers = { ["retry-after"] = "30", link = { "<a>", "<b>" } } }))
    t.ok(hooks.call(h, "startup"))
    t.ok(hooks.call(h, "exit"))
    local c = calls(log)
    t.eq(#c, 6)
    local want = {
        { "deploy_cert", "example.com", "/s/privkey.pem", "/s/cert.pem",
          "/s/fullchain.pem", "/s/chain.pem", "1700000000" },
        { "unchanged_cert", "example.com", "/s/privkey.pem", "/s/cert.pem",
          "/s/fullchain.pem", "/s/chain.pem" },
        { "invalid_challenge", "example.com" },
        { "request_failure", "503", "try later", "https://ca/new-order" },
        { "startup_hook" },
        { "exit_hook" },
    }
    for i, w in ipairs(want) do
        for j = 1, #w do t.eq(c[i].args[j], w[j], "call " .. i) end
    end
    t.eq(c[3].argc, 3)
    local doc = require("cjson").decode(c[3].args[3])
    t.eq(doc.detail, "404 at http://example.com/x")
    t.eq(doc.status, 403)
    t.eq(c[4].argc, 5)
    -- HEADERS spans lines; the log shows only its first
    t.eq(c[5].argc, 1)
    t.eq(c[6].argc, 1)
end)

t.test("a failing script is an error showing its stderr", function()
    local _, log, spec = setup()
    local h = assert(hooks.load(spec))
    local ok, err = hooks.call(h, "deploy", http_ch("fail.example"))
    t.eq(ok, nil)
    t.eq(err.kind, "hook")
    t.match(err.detail, "^hook exec: deploy: .*/hook%.sh deploy_challenge: " ..
        "exit status 4: boom\\x1b%[31m   on two lines$")
    t.eq(#calls(log), 1)
    -- a script that hangs is stopped
    local dir = t.tmpdir()
    t.writefile(dir .. "/slow.sh", "#!/bin/sh\nsleep 10\n")
    assert(core.chmod(dir .. "/slow.sh", 493))
    h = assert(hooks.load(dir .. "/slow.sh:timeout=0.3"))
    local t0 = core.monotonic()
    ok, err = hooks.call(h, "deploy", http_ch("example.com"))
    t.eq(ok, nil)
    t.match(err.detail, "timed out after 0%.3 s")
    t.ok(core.monotonic() - t0 < 5)
end)

t.test("the script's environment lacks luacme's secrets", function()
    -- Run a second luacme with secrets in its environment; it runs the
    -- script through the exec hook.
    local dir, log, spec = setup()
    local driver = dir .. "/driver.lua"
    t.writefile(driver, ([[
        local hooks = require "luacme.hooks"
        local h = assert(hooks.load(%q))
        local ch = hooks.challenge({ type = "http-01", token = "tok",
            identifier = { type = "dns", value = "example.com" },
            key_authorization = "tok.x" })
        assert(hooks.call(h, "deploy", ch))
        return 0
    ]]):format(spec))
    local res = assert(core.spawn({ argv = t.luacme_argv("/proc/self/exe",
        "run", driver), env = {
            PATH = "/usr/bin:/bin", HOME = "/root", KEEP_ME = "yes",
            LUACME_STATE = "/var/lib/luacme",
            LUACME_EAB_KID = "kid-1", LUACME_EAB_HMAC_KEY = "c2VjcmV0",
            LUACME_ACCOUNT_KEY = "acct", LUACME_API_TOKEN = "tok",
            LUACME_DNS_SECRET = "s", LUACME_DB_PASSWORD = "p",
        }, timeout = 30 }))
    t.eq(res.status, 0, res.stderr)
    local c = calls(log)
    t.eq(#c, 1)
    local env = c[1].env
    t.eq(env.KEEP_ME, "yes")
    t.eq(env.LUACME_STATE, "/var/lib/luacme")
    t.eq(env.PATH, "/usr/bin:/bin")
    for _, k in ipairs({ "LUACME_EAB_KID", "LUACME_EAB_HMAC_KEY",
        "LUACME_ACCOUNT_KEY", "LUACME_API_TOKEN", "LUACME_DNS_SECRET",
        "LUACME_DB_PASSWORD" }) do
        t.eq(env[k], nil, k)
    end
    local all = t.readfile(log)
    t.ok(not all:find("c2VjcmV0", 1, true), "secret value absent")
end)

t.test("dns_wait: a dns-01 script's record counts as visible that late",
    function()
    local dns = require "luacme.dns"
    local _, _, spec = setup("dns-01")
    local h = assert(hooks.load(spec .. ",dns_wait=30"))
    local clock, slept = 1000, {}
    local now0, sleep0 = dns.now, dns.sleep
    dns.now = function() return clock end
    dns.sleep = function(s) slept[#slept + 1] = s; clock = clock + s end
    local ch = hooks.challenge({ type = "dns-01", token = "tok_2",
        identifier = { type = "dns", value = "w.example" },
        key_authorization = KA })
    local ok, err = hooks.call(h, "deploy", ch)
    t.ok(ok, tostring(err))
    clock = clock + 10
    ok = hooks.call(h, "ready", ch)
    dns.now, dns.sleep = now0, sleep0
    t.eq(ok, true)
    t.eq(#slept, 1)
    t.eq(slept[1], 20, "30 s after deploy_challenge, 10 of them gone")
    t.ok(hooks.call(h, "cleanup", ch))
    -- Without dns_wait ready is at once; a bad value is refused.
    local plain = assert(hooks.load(spec))
    t.eq(hooks.call(plain, "ready", ch), true)
    local bad, berr = hooks.load(spec .. ",dns_wait=soon")
    t.eq(bad, nil)
    t.match(berr.detail, "dns_wait must be seconds")
end)

t.test("chain=yes: one deploy_challenge and one clean_challenge for all",
    function()
    local _, log, spec = setup("http-01")
    local h = assert(hooks.load(spec .. ",chain=yes"))
    local a, b = http_ch("a.example", "tok_a"), http_ch("b.example", "tok_b")
    t.ok(hooks.call(h, "deploy", a))
    t.ok(hooks.call(h, "deploy", b))
    t.eq(#calls(log), 0, "nothing before ready()")
    t.ok(hooks.call(h, "ready", a))
    t.ok(hooks.call(h, "ready", b))
    local c = calls(log)
    t.eq(#c, 1, "one call")
    t.eq(table.concat(c[1].args, " "), "deploy_challenge a.example tok_a " ..
      KA .. " b.example tok_b " .. KA)
    t.ok(hooks.call(h, "cleanup", a))
    t.ok(hooks.call(h, "cleanup", b))
    c = calls(log)
    t.eq(#c, 2, "one clean call")
    t.eq(table.concat(c[2].args, " "), "clean_challenge a.example tok_a " ..
      KA .. " b.example tok_b " .. KA)
    -- A chain never handed over (another hook failed first): no calls.
    t.ok(hooks.call(h, "deploy", a))
    t.ok(hooks.call(h, "cleanup", a))
    t.eq(#calls(log), 2)
end)

-- A script whose every call takes 0.3 s and logs when it ran, in
-- nanoseconds of the wall clock (one line per call: "START END").
local SLOW = [[#!/bin/sh
s=$(date +%%s%%N)
sleep 0.3
echo "$s $(date +%%s%%N)" >> %s
]]

-- Did two runs logged by SLOW (or alike) in file overlap?
local function overlapped(file)
    local r = {}
    for l in io.lines(file) do
        local s, e = l:match("^(%d+) (%d+)$")
        r[#r + 1] = { tonumber(s), tonumber(e) }
    end
    assert(#r == 2, "two runs logged")
    return r[1][1] < r[2][2] and r[2][1] < r[1][2]
end

-- Deploy two challenges through hook h, in two tasks; returns the time.
local function two_deploys(h)
    local sched = require "luacme.sched"
    local function one(ch)
        return function() assert(hooks.call(h, "deploy", ch)) end
    end
    local t0 = core.monotonic()
    sched.all({ one(http_ch("a.example", "tok_a")),
        one(http_ch("b.example", "tok_b")) })
    return core.monotonic() - t0
end

t.test("calls are serial by default; parallel=yes lets them overlap",
    function()
    local dir = t.tmpdir()
    t.writefile(dir .. "/slow.sh", SLOW:format("'" .. dir .. "/runs'"))
    assert(core.chmod(dir .. "/slow.sh", 493))
    local h = assert(hooks.load(dir .. "/slow.sh"))
    t.eq(h.serial, true)
    local took = two_deploys(h)
    t.eq(overlapped(dir .. "/runs"), false, "serial runs overlap")
    t.ok(took >= 0.6, "serial: 2 x 0.3 s took " .. took)
    os.remove(dir .. "/runs")
    h = assert(hooks.load("exec:script=" .. dir .. "/slow.sh,parallel=yes"))
    t.eq(h.serial, nil)
    took = two_deploys(h)
    t.eq(overlapped(dir .. "/runs"), true, "parallel runs overlap")
    t.ok(took < 0.55, "parallel: 2 x 0.3 s took " .. took)
    local v, err = hooks.load("exec:script=" .. dir ..
        "/slow.sh,parallel=yes,chain=yes")
    t.eq(v, nil)
    t.match(err.detail, "parallel=yes cannot be combined with chain=yes")
end)
