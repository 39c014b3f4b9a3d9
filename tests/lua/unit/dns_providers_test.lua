-- The dns-01 provider hooks without a DNS server: option checks, what
-- rfc2136 feeds nsupdate (a stand-in program records it), and the acmesh
-- hook's shims, environment and quoting (a stand-in dnsapi script).
-- Deploys use challenge_alias, so no DNS lookup happens. Cases needing
-- particular environment variables run in a child luacme.
local t = require "testlib"
local core = require "luacme.core"
local hooks = require "luacme.hooks"

local EXE = assert(os.getenv("LUACME_TEST_BUILD_DIR"), "run under ctest") ..
    "/luacme"

-- Run Lua code in a child luacme with env (added to ours). The code
-- raises on a failed check; returns stdout, or fails the test with the
-- child's stderr.
local function in_child(env, code)
    local dir = t.tmpdir()
    t.writefile(dir .. "/case.lua", "package.path = " ..
        string.format("%q", package.path) .. "\n" .. code)
    local e = core.environ()
    for k, v in pairs(env) do e[k] = v end
    local r = assert(core.spawn({ argv = t.luacme_argv(EXE, "run", dir .. "/case.lua"),
        env = e, timeout = 60 }))
    if r.status ~= 0 then
        error("child failed (" .. tostring(r.status) .. "): " .. r.stderr ..
            r.stdout, 2)
    end
    return r.stdout
end

local function ch(domain, token, wildcard)
    return hooks.challenge({ type = "dns-01", token = token,
        identifier = { type = "dns", value = domain },
        key_authorization = token .. ".thumbprint", wildcard = wildcard })
end

local function load_fails(spec, pat)
    local h, err = hooks.load(spec, "challenge")
    t.eq(h, nil, spec)
    t.match(tostring(err), pat)
end

t.test("every dns-01 provider is built in and takes the dns options",
    function()
    local names = {}
    for _, h in ipairs(hooks.list_builtin()) do names[h.name] = h end
    for _, n in ipairs({ "powerdns", "rfc2136", "acmesh", "httpreq" }) do
        local h = names[n]
        t.ok(h, n .. " is listed")
        t.eq(h.error, nil, n .. " loads")
        t.eq(h.types[1], "dns-01")
        local opts = {}
        for _, o in ipairs(h.options) do opts[o.name] = o end
        for _, o in ipairs({ "resolver", "dns_port", "dns_wait",
            "propagation_timeout", "challenge_alias" }) do
            t.ok(opts[o], n .. " takes " .. o)
        end
    end
end)

t.test("powerdns: option checks", function()
    load_fails("powerdns:api_url=http://127.0.0.1:1,api_key_env=" ..
        "LUACME_TEST_UNSET_KEY", "no API key: set LUACME_TEST_UNSET_KEY")
    load_fails("powerdns:api_url=ftp://x,api_key=k", "api_url must be")
    load_fails("powerdns:api_url=http://x,api_key=k,ttl=0", "ttl must be")
    load_fails("powerdns:api_url=http://x,api_key=k,ttl=60.5",
        "ttl must be a whole number from 1 to")
    load_fails("powerdns:api_url=http://x,api_key=k,timeout=",
        "timeout must be a number from 1 to 3600")
    load_fails("httpreq:endpoint=http://x,timeout=0", "timeout must be")
    local script = t.tmpdir() .. "/dns_x.sh"
    t.writefile(script, "dns_x_add() { :; }\ndns_x_rm() { :; }\n")
    load_fails("acmesh:script=" .. script .. ",name=x,timeout=90000",
        "timeout must be a number from 1 to 86400")
    load_fails("rfc2136:server=192.0.2.1,port=53.5,key_file=/etc/hosts",
        "port must be a whole number from 1 to 65535")
    load_fails("rfc2136:server=192.0.2.1,key_file=/etc/hosts,ttl=-1",
        "ttl must be a whole number from 0 to")
    load_fails("powerdns:api_url=http://x,api_key=k,dns_port=99999",
        "dns_port must be")
    load_fails("powerdns:api_url=http://x,api_key=k,bogus=1",
        "unknown option bogus")
    t.ok(hooks.load("powerdns:api_url=http://x,api_key=k,dns_wait=30",
        "challenge"))
end)

t.test("httpreq: option checks", function()
    load_fails("httpreq:endpoint=x", "endpoint must be")
    -- A user without a password (HOME is set, the other is not).
    load_fails("httpreq:endpoint=http://x,username_env=HOME,password_env=" ..
        "LUACME_TEST_UNSET_PW", "set both HOME and LUACME_TEST_UNSET_PW")
    t.ok(hooks.load("httpreq:endpoint=http://x", "challenge"))
end)

-- A stand-in nsupdate: records its arguments and stdin, answers like the
-- real one for a zone named "refused.test.".
local FAKE_NSUPDATE = [[#!/bin/sh
printf '%s\n' "$@" > "$0.args"
cat > "$0.stdin"
if grep -q '^zone refused.test.$' "$0.stdin"; then
  echo 'update failed: NOTAUTH(BADSIG)' >&2
  exit 2
fi
exit 0
]]

t.test("rfc2136: the update script goes in on stdin, secret included",
    function()
    local dir = t.tmpdir()
    t.writefile(dir .. "/nsupdate", FAKE_NSUPDATE)
    assert(core.chmod(dir .. "/nsupdate", 493))
    local out = in_child({ LUACME_TSIG_SECRET = "c2VjcmV0LXNlY3JldA==",
        FAKE = dir .. "/nsupdate" }, [==[
local hooks = require "luacme.hooks"
local spec = "rfc2136:server=192.0.2.53,port=5353,key_name=acme-key.," ..
  "zone=example.test,nsupdate=" .. os.getenv("FAKE") ..
  ",challenge_alias=_acme-challenge.www.example.test"
local h = assert(hooks.load(spec, "challenge"))
local ch = hooks.challenge({ type = "dns-01", token = "tok",
  identifier = { type = "dns", value = "www.example.test" },
  key_authorization = "tok.thumb" })
assert(hooks.call(h, "deploy", ch))
local f = io.open(os.getenv("FAKE") .. ".stdin"); local add = f:read("a"); f:close()
f = io.open(os.getenv("FAKE") .. ".args"); local args = f:read("a"); f:close()
assert(hooks.call(h, "cleanup", ch))
f = io.open(os.getenv("FAKE") .. ".stdin"); local del = f:read("a"); f:close()
-- A cleanup for something never deployed runs nothing.
os.remove(os.getenv("FAKE") .. ".stdin")
assert(hooks.call(h, "cleanup", ch))
assert(io.open(os.getenv("FAKE") .. ".stdin") == nil, "no second delete")
-- A refusal: named provider, zone and server; nothing to clean up.
local bad = assert(hooks.load(spec:gsub("zone=example.test",
  "zone=refused.test"), "challenge"))
local ok, err = hooks.call(bad, "deploy", ch)
assert(not ok)
print("ERR " .. tostring(err))
assert(hooks.call(bad, "cleanup", ch))
print("VALUE " .. ch.value)
io.write("ADD\n", add, "DEL\n", del, "ARGS\n", args)
]==])
    local value = out:match("VALUE (%S+)")
    t.eq(out:match("ADD\n(.-)DEL\n"), "server 192.0.2.53 5353\n" ..
        "zone example.test.\nkey hmac-sha256:acme-key. " ..
        "c2VjcmV0LXNlY3JldA==\nupdate add _acme-challenge.www.example.test. " ..
        "60 TXT \"" .. value .. "\"\nsend\n")
    t.match(out:match("DEL\n(.-)ARGS\n"), "\nupdate delete " ..
        "_acme%-challenge%.www%.example%.test%. TXT \"" ..
        value:gsub("%p", "%%%0") .. "\"\nsend\n$")
    local args = out:match("ARGS\n(.*)$")
    t.eq(args, "-t\n30\n", "nothing but the timeout on the command line")
    t.match(out, "ERR [^\n]*rfc2136: zone refused%.test%. at " ..
        "192%.0%.2%.53:5353: update failed: NOTAUTH%(BADSIG%)")
end)

t.test("rfc2136: option checks; nothing unchecked reaches the script",
    function()
    load_fails("rfc2136:server=192.0.2.1", "give key_file or key_name")
    load_fails("rfc2136:server=192.0.2.1,key_name=k.,key_file=/etc/hosts",
        "give key_file or key_name")
    load_fails("rfc2136:server=192.0.2.1,key_name=k.,key_secret_env=" ..
        "LUACME_TEST_UNSET_SECRET", "no TSIG secret: set " ..
        "LUACME_TEST_UNSET_SECRET")
    -- PATH holds ':' separators: never a base64 secret. (A build
    -- directory path such as "/work/main/build" would be valid base64.)
    t.match(os.getenv("PATH"), ":")
    load_fails("rfc2136:server=192.0.2.1,key_name=k.,key_secret_env=" ..
        "PATH", "must hold a base64 secret")
    load_fails("rfc2136:server=192.0.2.1 x,key_file=/etc/hosts",
        "server must be")
    load_fails("rfc2136:server=192.0.2.1,key_file=/etc/hosts,zone=a b",
        "zone must be")
    load_fails("rfc2136:server=192.0.2.1,key_file=/nonexistent/key",
        "cannot be read")
    load_fails("rfc2136:server=192.0.2.1,key_name=a;b,key_secret_env=HOME",
        "key_name must be")
end)

-- A stand-in acme.sh dnsapi script: reports what it sees and exercises
-- the shims; fails for the value "bad".
local FAKE_DNSAPI = [[
dns_fake_add() {
  {
    echo "args=$1|$2"
    echo "mapped=$MAPPED"
    echo "secret=${LUACME_FAKE_TOKEN:-unset}"
    echo "conf=$(_readaccountconf_mutable MAPPED)"
    echo "math=$(_math 2 + 3)"
    _contains "abcdef" "cde" && echo "contains=yes"
    echo "egrep=$(printf 'id":"42"' | _egrep_o '[0-9]+')"
    echo "lower=$(echo ABC | _lower_case)"
    echo "head=$(printf 'a\nb\n' | _head_n 1)"
    _saveaccountconf_mutable MAPPED "$MAPPED" && echo "save=ok"
    _debug "not shown"
    _info "info to stderr"
  } > "$REPORT"
}
dns_fake_rm() {
  echo "rm=$1|$2" >> "$REPORT"
}
]]

t.test("acmesh: shims, arguments, environment and a quoted path",
    function()
    local dir = t.tmpdir() .. "/a b'c"
    assert(core.mkdir(dir))
    t.writefile(dir .. "/dns_fake.sh", FAKE_DNSAPI)
    local out = in_child({ LUACME_FAKE_TOKEN = "s3cret", REPORT = dir ..
        "/report", SCRIPT = dir .. "/dns_fake.sh" }, [==[
local hooks = require "luacme.hooks"
local h = assert(hooks.load({ name = "acmesh", opts = {
  script = os.getenv("SCRIPT"), env = "MAPPED:LUACME_FAKE_TOKEN",
  challenge_alias = "_acme-challenge.www.example.test" } }, "challenge"))
local ch = hooks.challenge({ type = "dns-01", token = "tok",
  identifier = { type = "dns", value = "www.example.test" },
  key_authorization = "tok.thumb" })
assert(hooks.call(h, "deploy", ch))
assert(hooks.call(h, "cleanup", ch))
print("VALUE " .. ch.value)
local f = io.open(os.getenv("REPORT")); io.write(f:read("a")); f:close()
]==])
    local value = out:match("VALUE (%S+)")
    t.ok(out:find("args=_acme-challenge.www.example.test|" .. value, 1,
        true), "FQDN without the dot, then the value: " .. out)
    t.ok(out:find("\nmapped=s3cret\n", 1, true), "env=NAME:FROM maps")
    t.ok(out:find("\nsecret=unset\n", 1, true), "luacme secrets hidden")
    t.ok(out:find("\nconf=s3cret\n", 1, true), "_readaccountconf_mutable")
    t.ok(out:find("\nmath=5\n", 1, true), "_math")
    t.ok(out:find("\ncontains=yes\n", 1, true), "_contains")
    t.ok(out:find("\negrep=42\n", 1, true), "_egrep_o")
    t.ok(out:find("\nlower=abc\n", 1, true), "_lower_case")
    t.ok(out:find("\nhead=a\n", 1, true), "_head_n")
    t.ok(out:find("\nsave=ok\n", 1, true), "_saveaccountconf_mutable")
    t.ok(out:find("\nrm=_acme-challenge.www.example.test|" .. value .. "\n",
        1, true), "dns_fake_rm with the same arguments")
end)

t.test("acmesh: a failing script's message; option checks", function()
    local dir = t.tmpdir()
    t.writefile(dir .. "/dns_fail.sh", [[
dns_fail_add() { _err "no zone for $1"; return 1; }
dns_fail_rm() { return 0; }
]])
    local h = assert(hooks.load("acmesh:script=" .. dir .. "/dns_fail.sh," ..
        "challenge_alias=_acme-challenge.x.example.test", "challenge"))
    local c = ch("x.example.test", "tok")
    local ok, err = hooks.call(h, "deploy", c)
    t.eq(ok, nil)
    t.match(tostring(err), "acmesh %(dns_fail_add%): " ..
        "_acme%-challenge%.x%.example%.test: exit status 1: error: no zone " ..
        "for _acme%-challenge%.x%.example%.test")
    t.ok(hooks.call(h, "cleanup", c))
    t.writefile(dir .. "/dns_half.sh", "dns_half_add() { :; }\n")
    load_fails("acmesh:script=" .. dir .. "/dns_half.sh",
        "defines no dns_half_rm%(%)")
    load_fails("acmesh:script=" .. dir .. "/missing.sh", "cannot be read")
    load_fails("acmesh:script=" .. dir .. "/dns_fail.sh,env=A-B",
        "env: A%-B is not a variable name")
    t.writefile(dir .. "/provider.sh", "dns_x_add() { :; }\n")
    load_fails("acmesh:script=" .. dir .. "/provider.sh",
        "name must be the provider")
end)
