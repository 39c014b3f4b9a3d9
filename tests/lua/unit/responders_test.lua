-- The shared responder registry (lua/luacme/responders.lua) behind the
-- standalone and tls-alpn hooks, over fake responders: when a responder
-- starts and stops is the whole point, so each start and close is counted.
local t = require "testlib"
local responders = require "luacme.responders"

-- A registry whose new() records what it started; port 9 is taken, port
-- 10 fails otherwise; add fails for names starting with "bad".
local function fake()
    local started = {}
    local reg = responders.registry(function(o)
        if o.port == 9 then return nil, "bind: in use", "bind" end
        if o.port == 10 then return nil, "no memory", "nomem" end
        local r = { address = o.address, port = o.port, names = {},
            closed = false }
        function r:add(name, body)
            if name:find("^bad") then return nil, "add refused" end
            self.names[name] = body
            return true
        end
        function r:remove(name) self.names[name] = nil end
        function r:close() self.closed = true end
        started[#started + 1] = r
        return r
    end, "someone there?")
    return reg, started
end

t.test("where checks and defaults the address and port", function()
    t.eq(select(2, responders.where{ port = "80" }), 80)
    t.eq(responders.where{ port = "80" }, "*")
    t.eq(responders.where{ address = "::1", port = "443" }, "::1")
    t.eq(responders.where{ address = "fe80::1%eth0", port = "1" },
        "fe80::1%eth0")
    t.fails(nil, "port must be", responders.where{ port = "0" })
    t.fails(nil, "port must be", responders.where{ port = "1.5" })
    t.fails(nil, "port must be", responders.where{ port = "65536" })
    t.fails(nil, "address must be", responders.where{ address = "host",
        port = "80" })
end)

t.test("options and setup: the same for every responder hook", function()
    local o = responders.options("443")
    t.eq(o[1].name, "address")
    t.eq(o[1].default, "*")
    t.eq(o[2].name, "port")
    t.eq(o[2].default, "443")
    t.eq(o[2].help, "listen port (default 443)")
    t.ok(responders.options("80") ~= responders.options("80"),
        "fresh tables")
    t.eq(responders.setup({ address = "*", port = "80" }), true)
    t.fails(nil, "address must be", responders.setup({ address = "x",
        port = "80" }))
end)

t.test("one responder per address:port, closed with its last name",
    function()
    local reg, started = fake()
    local o = { address = "127.0.0.1", port = "8080" }
    local r1 = assert(reg.add(o, "a", "A"))
    t.eq(assert(reg.add(o, "b", "B")), r1)
    t.eq(assert(reg.add(o, "a", "A2")), r1)    -- again: counted once
    t.eq(#started, 1)
    t.eq(r1.names.a, "A2")
    local r2 = assert(reg.add({ address = "127.0.0.1", port = "8081" },
        "a", "A"))
    t.ok(r2 ~= r1, "another port, another responder")
    reg.remove(o, "a")
    t.eq(r1.closed, false)
    reg.remove(o, "a")                          -- twice: quiet
    reg.remove(o, "never")
    reg.remove(o, nil)
    t.eq(r1.closed, false)
    reg.remove(o, "b")
    t.eq(r1.closed, true)
    t.eq(r2.closed, false)
    -- The next add starts a fresh responder.
    local r3 = assert(reg.add(o, "c", "C"))
    t.ok(r3 ~= r1)
    t.eq(#started, 3)
end)

t.test("failures: bad options, start and add", function()
    local reg, started = fake()
    t.fails(nil, "port must be", reg.add({ port = "x" }, "a", "A"))
    t.fails(nil, "^bind: in use %(someone there%?%)$",
        reg.add({ port = "9" }, "a", "A"))
    t.fails(nil, "^no memory$", reg.add({ port = "10" }, "a", "A"))
    t.eq(#started, 0)
    -- An add refused on a responder started for it closes it again ...
    local o = { port = "8080" }
    t.fails(nil, "add refused", reg.add(o, "bad1", "X"))
    t.eq(#started, 1)
    t.eq(started[1].closed, true)
    -- ... but not one that still serves other names.
    local r = assert(reg.add(o, "a", "A"))
    t.fails(nil, "add refused", reg.add(o, "bad2", "X"))
    t.eq(r.closed, false)
    reg.remove(o, "bad2")                       -- never added: ignored
    t.eq(r.closed, false)
    reg.remove({ port = "x" }, "a")             -- bad options: ignored
    reg.remove(o, "a")
    t.eq(r.closed, true)
end)
