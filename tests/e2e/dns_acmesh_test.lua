-- dns-01 through the acmesh hook running our own acme.sh-style dnsapi
-- script (tests/dns/dns_luacmepdns.sh, PowerDNS API via the _get/_post
-- shims), with Pebble resolving through that PowerDNS. Run by
-- tests/dns/dns-env.py --server pdns.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. here .. "/../dns/?.lua;" .. package.path
local t = require "testlib"
local D = require "dns_e2e"

local SCRIPT = here .. "/../dns/dns_luacmepdns.sh"
-- The script's credentials under acme.sh's names, from our variables.
local function spec(token_var)
    return "acmesh:script=" .. SCRIPT .. ",env=PDNS_Url:LUACME_PDNS_API_URL,"
        .. "PDNS_Token:" .. token_var .. "," .. D.dns_opts()
end
local SPEC = spec("LUACME_PDNS_API_KEY")

t.test("acmesh: a name and its wildcard, a foreign value kept", function()
    D.case_wildcard(SPEC, "sh")
end)

t.test("acmesh: through a CNAME into another zone", function()
    D.case_alias(SPEC, "shcn")
end)

t.test("acmesh: a bad token fails clearly and leaves nothing", function()
    -- PDNS_Token gets the value of a variable that is not the key.
    D.case_bad(spec("LUACME_DNS_KIND"), { "acmesh %(dns_luacmepdns_add%)",
        "_acme%-challenge%.shbad%d+%.example%.test", "exit status 1",
        "PowerDNS refused the API key %(HTTP 401%)" }, "shbad")
end)

t.test("acmesh: missing credentials are the script's own error", function()
    local msg = D.case_bad("acmesh:script=" .. SCRIPT .. "," .. D.dns_opts(),
        { "set PDNS_Url, PDNS_ServerId and PDNS_Token" }, "shnone")
    t.ok(not msg:find(os.getenv("LUACME_PDNS_API_KEY"), 1, true),
        "the key does not leak into messages")
end)
