-- Start tests/dns/fakedns.py from a Lua test:
--   package.path = "tests/dns/?.lua;" .. package.path
--   local fake = require "fakedns"
--   local srv <close> = fake.start(conf, { "127.0.0.1", "127.0.0.2" })
--   srv.port, srv:set(conf)   -- conf: see fakedns.py
-- The server is stopped by PID when srv goes out of scope (also when the
-- test fails) or at srv:stop().
local core = require "luacme.core"
local cjson = require "cjson"

local M = {}

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."

local function tmpdir()
    local p = assert(io.popen("mktemp -d /tmp/luacme-fakedns.XXXXXX"))
    local d = p:read("l")
    p:close()
    return d
end

local Srv = {}
Srv.__index = Srv

-- Replace what the server answers (read again on every query).
function Srv:set(conf)
    assert(core.write_file(self.conf, cjson.encode(conf), 384))
end

function Srv:stop()
    if self.pid then
        os.execute("kill " .. self.pid .. " 2>/dev/null")
        self.pid = nil
    end
    if self.dir then
        os.execute("rm -rf '" .. self.dir .. "'")
        self.dir = nil
    end
end

Srv.__close = Srv.stop
Srv.__gc = Srv.stop

function M.start(conf, addrs)
    addrs = addrs or { "127.0.0.1" }
    local dir = tmpdir()
    local srv = setmetatable({ dir = dir, conf = dir .. "/conf.json" }, Srv)
    srv:set(conf or {})
    local cmd = "python3 " .. here .. "/fakedns.py " .. srv.conf .. " " ..
        dir .. "/port " .. table.concat(addrs, " ") .. " >" .. dir ..
        "/log 2>&1 & echo $!"
    local p = assert(io.popen(cmd))
    srv.pid = assert(tonumber(p:read("l")))
    p:close()
    local deadline = core.monotonic() + 20
    while core.monotonic() < deadline do
        local f = io.open(dir .. "/port")
        if f then
            srv.port = tonumber(f:read("l"))
            f:close()
            break
        end
        core.sleep(0.02)
    end
    if not srv.port then
        local f = io.open(dir .. "/log")
        local log = f and f:read("a") or ""
        if f then f:close() end
        srv:stop()
        error("fakedns did not start: " .. log, 2)
    end
    return srv
end

-- A zone's usual records: SOA, NS per server (nsN.<zone> at addrs[N]).
function M.zone(zone, addrs)
    local r = { { zone, "SOA", 60,
        "ns1." .. zone .. " hostmaster." .. zone .. " 1 60 60 600 60" } }
    for i, a in ipairs(addrs) do
        r[#r + 1] = { zone, "NS", 60, "ns" .. i .. "." .. zone }
        r[#r + 1] = { "ns" .. i .. "." .. zone, "A", 60, a }
    end
    return r
end

return M
