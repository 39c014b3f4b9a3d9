-- dns-01 through the rfc2136 hook (nsupdate, TSIG) against a real BIND 9
-- that Pebble resolves through. Run by tests/dns/dns-env.py --server bind.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. here .. "/../dns/?.lua;" .. package.path
local t = require "testlib"
local D = require "dns_e2e"

local BASE = "rfc2136:server=127.0.0.1,port=" .. D.port .. "," .. D.dns_opts()
-- The secret from LUACME_TSIG_SECRET (key_secret_env's default).
local SPEC = BASE .. ",key_name=" .. os.getenv("LUACME_TSIG_KEY_NAME")
local SPEC_FILE = BASE .. ",key_file=" .. os.getenv("LUACME_TSIG_KEY_FILE")

t.test("rfc2136: a name (key file)", function()
    D.case_name(SPEC_FILE, "kf")
end)

t.test("rfc2136: a name and its wildcard, a foreign value kept", function()
    D.case_wildcard(SPEC, "ns")
end)

t.test("rfc2136: through a CNAME (to a name in the same zone)", function()
    D.case_alias(SPEC, "nscn", true)
end)

t.test("rfc2136: a CNAME into another zone: written there, removed",
    function()
    -- Without Pebble: BIND does not follow a CNAME into another zone for
    -- it, but the hook must find and update the target's zone.
    local hooks = require "luacme.hooks"
    local E = require "e2e"
    local h = D.hook(SPEC)
    local name = E.name("nsx")
    local label = name:gsub("%.example%.test$", "")
    local target = "_acme-challenge." .. label .. ".alias.test."
    D.add_cname("_acme-challenge." .. name .. ".", target)
    local ch = hooks.challenge({ type = "dns-01", token = "tok" .. label,
        identifier = { type = "dns", value = name },
        key_authorization = "tok" .. label .. ".thumb" })
    t.ok(hooks.call(h, "deploy", ch))
    t.ok(hooks.call(h, "ready", ch))
    t.eq(E.list_str(D.txt(target)), "{" .. ch.value .. "}")
    t.ok(hooks.call(h, "cleanup", ch))
    t.eq(#D.txt(target), 0)
end)

t.test("rfc2136: not propagated: the server is named, values removed",
    function()
    D.case_not_propagated(SPEC)
end)

t.test("rfc2136: a wrong TSIG secret fails clearly and leaves nothing",
    function()
    -- key_secret_env names a variable holding a wrong (base64) secret.
    D.case_bad(SPEC .. ",key_secret_env=LUACME_TSIG_WRONG_SECRET", { "rfc2136: " ..
        "zone example%.test%. at 127%.0%.0%.1:" .. D.port,
        "NOTAUTH%(BADSIG%)" }, "nsbad")
end)

t.test("rfc2136: a zone the server does not have", function()
    D.case_bad(SPEC .. ",zone=nope.test", { "rfc2136: zone nope%.test%.",
        "NOTAUTH" }, "nszone")
end)
