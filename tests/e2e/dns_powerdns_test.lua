-- dns-01 through the powerdns hook against a real PowerDNS (its HTTP
-- API), with Pebble resolving through that server; and the example
-- provider of examples/ through a record API in front of the same
-- server. Run by tests/dns/dns-env.py --server pdns (see
-- tests/e2e/CMakeLists.txt).
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. here .. "/../dns/?.lua;" .. package.path
local t = require "testlib"
local D = require "dns_e2e"
local bridge = require "dns_bridge"

local API = os.getenv("LUACME_PDNS_API_URL")
local SPEC = "powerdns:api_url=" .. API .. "," .. D.dns_opts()

t.test("powerdns: a name", function()
    D.case_name(SPEC)
end)

t.test("powerdns: a name and its wildcard, a foreign value kept", function()
    D.case_wildcard(SPEC)
end)

t.test("powerdns: through a CNAME into another zone", function()
    D.case_alias(SPEC)
end)

t.test("powerdns: challenge_alias writes where the option says", function()
    local E = require "e2e"
    local name = E.name("ca")
    D.add_cname("_acme-challenge." .. name .. ".",
        "_acme-challenge.alias.test.")
    local res, err = D.issue(SPEC .. ",challenge_alias=alias.test",
        { name }, { "_acme-challenge.alias.test." })
    t.ok(res, "issue: " .. tostring(err))
    t.eq(#res.seen["_acme-challenge.alias.test."], 1)
    t.eq(#D.txt("_acme-challenge.alias.test."), 0)
end)

t.test("powerdns: a bad API key fails clearly and leaves nothing",
    function()
    -- api_key_env names a variable holding something that is not the key.
    D.case_bad("powerdns:api_url=" .. API .. ",api_key_env=LUACME_DNS_KIND,"
        .. D.dns_opts(), { "powerdns", "HTTP 401",
        "check the API key in LUACME_DNS_KIND" })
end)

t.test("powerdns: an unknown zone names it", function()
    D.case_bad(SPEC .. ",zone=nope.test", { "powerdns",
        "zone nope%.test%. not found" })
end)

t.test("powerdns: a failure after one value was written removes it",
    function()
    D.case_partial(SPEC, { "via powerdns", "powerdns: CNAME lookup of " ..
        "_acme%-challenge%.xpart%d+%.nozone%.test%..*REFUSED" })
end)

t.test("powerdns: not propagated: the server is named, values removed",
    function()
    D.case_not_propagated(SPEC)
end)

t.test("example provider: a name and its wildcard, then a CNAME alias",
    function()
    local b <close> = bridge.start()
    local spec = here .. "/../../examples/dns-provider-example.lua:api=" ..
        b.url .. "/v1," .. D.dns_opts()
    D.case_wildcard(spec, "ex")
    D.case_alias(spec, "excn")
    t.ok(#b:log("DELETE") >= 4, "records deleted by id")
end)
