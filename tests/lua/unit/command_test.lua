local t = require "testlib"
local core = require "luacme.core"
local hooks = require "luacme.hooks"

-- A program that logs its arguments and environment, one per line.
local LOGGER = [[#!/bin/sh
log=%s
for a in "$@"; do printf 'arg=[%%s]\n' "$a"; done >> "$log"
env | sort | sed 's/^/env=/' >> "$log"
[ "$1" = fail ] && { echo "reload failed: bad config" >&2; exit 2; }
exit 0
]]

local function setup()
    local dir = t.tmpdir()
    local log = dir .. "/log"
    t.writefile(dir .. "/prog", LOGGER:format("'" .. log .. "'"))
    assert(core.chmod(dir .. "/prog", 493))
    return dir, log
end

local function parse(log)
    local args, env = {}, {}
    local f = io.open(log, "rb")
    if not f then return nil end
    for line in f:lines() do
        local a = line:match("^arg=%[(.*)%]$")
        if a then args[#args + 1] = a end
        local k, v = line:match("^env=([^=]*)=(.*)$")
        if k then env[k] = v end
    end
    f:close()
    return args, env
end

local CERT = { name = "example.com", domains = { "example.com",
    "www.example.com" }, key_file = "/st/privkey.pem",
    cert_file = "/st/cert.pem", fullchain_file = "/st/fullchain.pem",
    chain_file = "/st/chain.pem", timestamp = 1700000000, changed = true }

t.test("cmd is split on white space and run without a shell", function()
    local dir, log = setup()
    local cmd = dir .. "/prog  reload   $(touch " .. dir .. "/pwned) 'q' ;x"
    local h = assert(hooks.load("command:cmd=" .. cmd, "deploy"))
    t.ok(hooks.call(h, "deploy_cert", CERT))
    local args, env = parse(log)
    t.eq(table.concat(args, "|"), "reload|$(touch|" .. dir ..
        "/pwned)|'q'|;x")
    t.eq(core.lstat(dir .. "/pwned"), nil)
    t.eq(env.LUACME_CERT_NAME, "example.com")
    t.eq(env.LUACME_KEY_FILE, "/st/privkey.pem")
    t.eq(env.LUACME_CERT_FILE, "/st/cert.pem")
    t.eq(env.LUACME_FULLCHAIN_FILE, "/st/fullchain.pem")
    t.eq(env.LUACME_CHAIN_FILE, "/st/chain.pem")
    t.eq(env.LUACME_DOMAINS, "example.com www.example.com")
    t.eq(env.PATH, core.environ().PATH)
end)

t.test("a program name without / is found in PATH", function()
    local dir = t.tmpdir()
    local h = assert(hooks.load("command:cmd=touch " .. dir .. "/made"))
    t.ok(hooks.call(h, "deploy_cert", CERT))
    t.eq(assert(core.lstat(dir .. "/made")).type, "file")
end)

t.test("sh=1 runs cmd through /bin/sh -c", function()
    local dir = t.tmpdir()
    local h = assert(hooks.load("command:cmd=echo \"$LUACME_CERT_NAME " ..
        "$LUACME_DOMAINS\" > " .. dir .. "/out,sh=1"))
    t.eq(h.opts.sh, "1")
    t.ok(hooks.call(h, "deploy_cert", CERT))
    t.eq(t.readfile(dir .. "/out"), "example.com example.com " ..
        "www.example.com\n")
    -- a comma inside cmd stays part of it
    h = assert(hooks.load("command:cmd=printf a,b > " .. dir .. "/c,sh=1"))
    t.ok(hooks.call(h, "deploy_cert", CERT))
    t.eq(t.readfile(dir .. "/c"), "a,b")
end)

t.test("a non-zero exit is an error with the command's stderr", function()
    local dir, log = setup()
    local h = assert(hooks.load("command:cmd=" .. dir .. "/prog fail"))
    local ok, err = hooks.call(h, "deploy_cert", CERT)
    t.eq(ok, nil)
    t.eq(err.kind, "hook")
    t.match(err.detail, "^hook command: deploy_cert: .*/prog fail: exit " ..
        "status 2: reload failed: bad config$")
    t.ok(parse(log))
    h = assert(hooks.load("command:cmd=/nonexistent/reload"))
    ok, err = hooks.call(h, "deploy_cert", CERT)
    t.eq(ok, nil)
    t.match(err.detail, "/nonexistent/reload")
end)

t.test("an unchanged certificate runs nothing", function()
    local dir, log = setup()
    local h = assert(hooks.load("command:cmd=" .. dir .. "/prog"))
    local c = {}
    for k, v in pairs(CERT) do c[k] = v end
    c.changed = false
    t.ok(hooks.call(h, "deploy_cert", c))
    t.eq(parse(log), nil)
end)

t.test("options are checked at load", function()
    local function fails(pat, v, err)
        t.eq(v, nil)
        t.match(err.detail, pat)
    end
    fails("option cmd is required", hooks.load("command"))
    fails("cmd is required", hooks.load("command:cmd="))
    fails("cmd is empty", hooks.load("command:cmd=   "))
    fails("timeout must be", hooks.load("command:cmd=true,timeout=-1"))
    fails("unknown option shell", hooks.load("command:cmd=true,shell=1"))
end)

t.test("secrets stay out of the command's environment", function()
    local dir, log = setup()
    local driver = dir .. "/driver.lua"
    t.writefile(driver, ([[
        local hooks = require "luacme.hooks"
        local h = assert(hooks.load(%q, "deploy"))
        assert(hooks.call(h, "deploy_cert", { name = "n", domains = {},
            key_file = "/k", cert_file = "/c", chain_file = "/ch",
            fullchain_file = "/f", changed = true }))
        return 0
    ]]):format("command:cmd=" .. dir .. "/prog"))
    local res = assert(core.spawn({ argv = t.luacme_argv("/proc/self/exe",
        "run", driver), env = { PATH = "/usr/bin:/bin", LUACME_EAB_KID = "k1",
        LUACME_EAB_HMAC_KEY = "mac", LUACME_API_KEY = "key",
        LUACME_STATE = "/s", OTHER = "o" }, timeout = 30 }))
    t.eq(res.status, 0, res.stderr)
    local _, env = parse(log)
    t.eq(env.OTHER, "o")
    t.eq(env.LUACME_STATE, "/s")
    t.eq(env.LUACME_KEY_FILE, "/k")
    t.eq(env.LUACME_EAB_KID, nil)
    t.eq(env.LUACME_EAB_HMAC_KEY, nil)
    t.eq(env.LUACME_API_KEY, nil)
end)

t.test("runs of one cmd wait for each other unless parallel=yes", function()
    local sched = require "luacme.sched"
    local dir = t.tmpdir()
    -- Logs when it ran, in nanoseconds of the wall clock.
    t.writefile(dir .. "/slow", "#!/bin/sh\ns=$(date +%s%N)\nsleep 0.3\n" ..
        "echo \"$s $(date +%s%N)\" >> '" .. dir .. "/runs'\n")
    assert(core.chmod(dir .. "/slow", 493))
    local function two(spec)
        local h = assert(hooks.load(spec))
        local function one()
            assert(hooks.call(h, "deploy_cert", CERT))
        end
        os.remove(dir .. "/runs")
        sched.all({ one, one })
        local r = {}
        for l in io.lines(dir .. "/runs") do
            local s, e = l:match("^(%d+) (%d+)$")
            r[#r + 1] = { tonumber(s), tonumber(e) }
        end
        t.eq(#r, 2)
        return r[1][1] < r[2][2] and r[2][1] < r[1][2]
    end
    t.eq(two("command:cmd=" .. dir .. "/slow"), false)
    t.eq(two("command:cmd=" .. dir .. "/slow,parallel=yes"), true)
end)
