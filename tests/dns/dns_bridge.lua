-- Start tests/dns/api_bridge.py (httpreq and a record API in front of the
-- PowerDNS of dns-env.py) from a Lua test; stopped by PID when the
-- returned object goes out of scope, also when the test fails.
--   local b <close> = bridge.start()   -- b.url, b:log(method)
-- Credentials: bearer token = $LUACME_EXAMPLEDNS_TOKEN; basic auth user
-- = $LUACME_DNS_KIND, password = $LUACME_PDNS_API_KEY (variables the test
-- environment already has, so hooks can name them in *_env options).
local core = require "luacme.core"
local cjson = require "cjson"
local E = require "e2e"

local M = {}
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."

local B = {}
B.__index = B

function B:stop()
    if self.pid then
        os.execute("kill " .. self.pid .. " 2>/dev/null")
        self.pid = nil
    end
end
B.__close = B.stop
B.__gc = B.stop

-- Requests the bridge saw with this method.
function B:log(method)
    local body = E.must("curl -sS --fail " .. E.q(self.url .. "/_log"))
    local out = {}
    for _, r in ipairs(cjson.decode(body)) do
        if not method or r.method == method then out[#out + 1] = r end
    end
    return out
end

function M.start()
    local dir = E.scratch()
    local cmd = "BRIDGE_TOKEN=" .. E.q(os.getenv("LUACME_EXAMPLEDNS_TOKEN")
        or "") .. " BRIDGE_USER=" .. E.q(os.getenv("LUACME_DNS_KIND")) ..
        " BRIDGE_PASS=" .. E.q(os.getenv("LUACME_PDNS_API_KEY")) ..
        " python3 " .. E.q(here .. "/api_bridge.py") .. " " ..
        E.q(os.getenv("LUACME_PDNS_API_URL")) .. " " .. E.q(dir .. "/port") ..
        " >" .. E.q(dir .. "/log") .. " 2>&1 & echo $!"
    local p = assert(io.popen(cmd))
    local b = setmetatable({ pid = assert(tonumber(p:read("l"))) }, B)
    p:close()
    local deadline = core.monotonic() + 20
    while core.monotonic() < deadline do
        local port = E.readfile(dir .. "/port")
        if port then
            b.url = "http://127.0.0.1:" .. port
            return b
        end
        core.sleep(0.02)
    end
    b:stop()
    error("api_bridge.py did not start: " .. (E.readfile(dir .. "/log") or ""))
end

return M
