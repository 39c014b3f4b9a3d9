-- dns-01 through the httpreq hook (lego's protocol) against
-- tests/dns/api_bridge.py, which writes to the PowerDNS that Pebble
-- resolves through. Run by tests/dns/dns-env.py --server pdns.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. here .. "/../dns/?.lua;" .. package.path
local t = require "testlib"
local D = require "dns_e2e"
local bridge = require "dns_bridge"

-- The bridge wants user $LUACME_DNS_KIND, password $LUACME_PDNS_API_KEY.
local function spec(b, pass_var)
    return "httpreq:endpoint=" .. b.url .. "/httpreq,username_env=" ..
        "LUACME_DNS_KIND,password_env=" .. pass_var .. "," .. D.dns_opts()
end

t.test("httpreq: a name and its wildcard, a foreign value kept", function()
    local b <close> = bridge.start()
    D.case_wildcard(spec(b, "LUACME_PDNS_API_KEY"), "hr")
    local posts = b:log("POST")
    t.eq(#posts, 4, "two /present, two /cleanup")
    for _, r in ipairs(posts) do t.ok(r.auth, "basic auth sent") end
end)

t.test("httpreq: through a CNAME into another zone", function()
    local b <close> = bridge.start()
    D.case_alias(spec(b, "LUACME_PDNS_API_KEY"), "hrcn")
end)

t.test("httpreq: a bad password fails clearly and leaves nothing",
    function()
    local b <close> = bridge.start()
    D.case_bad(spec(b, "LUACME_DNS_PORT"), { "httpreq: http://127%.0%.0%.1:"
        .. "%d+/httpreq/present %(_acme%-challenge%.hrbad%d+%.example%.test%." ..
        "%): HTTP 401", "check LUACME_DNS_KIND and LUACME_DNS_PORT" }, "hrbad")
    -- The name's and the wildcard's challenges are deployed at once, so
    -- both presents are tried; a refused present gets no cleanup call.
    local posts = b:log("POST")
    t.ok(#posts >= 1 and #posts <= 2, "one or two presents, got " .. #posts)
    for _, r in ipairs(posts) do
        t.match(r.path, "/present$", "no cleanup call for a refused present")
    end
end)
