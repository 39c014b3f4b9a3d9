-- dns.provider (lua/luacme/dns.lua): the deploy/cleanup every dns-01
-- provider shares, over fake add/remove steps. challenge_alias gives the
-- target without a DNS lookup; dns.now and dns.sleep are injected to see
-- when deployed/forget ran (ready with dns_wait counts from deployment).
local t = require "testlib"
local dns = require "luacme.dns"
local hooks = require "luacme.hooks"

local OPTS = { challenge_alias = "_acme-challenge.www.example.test" }
local NAME = "_acme-challenge.www.example.test."

local function ch(token)
    return hooks.challenge({ type = "dns-01", token = token,
        identifier = { type = "dns", value = "www.example.test" },
        key_authorization = token .. ".thumbprint" })
end

-- A provider whose add answers with results[value] (default true) and
-- whose calls are logged as "add NAME" / "remove NAME id".
local function provider(results)
    local log = {}
    local deploy, cleanup = dns.provider("fake",
        function(c, _, name, rec)
            log[#log + 1] = "add " .. name
            rec.id = "id-" .. c.token
            local r = results[c.token]
            if type(r) == "function" then return r() end
            if r then return table.unpack(r, 1, 3) end
            return true
        end,
        function(_, _, name, rec)
            log[#log + 1] = "remove " .. name .. " " .. rec.id
            return true
        end)
    return deploy, cleanup, log
end

-- Seconds ready(ch, { dns_wait = 10 }) sleeps at clock time `at`: 10
-- minus the time since deployment, so 10 when nothing was deployed.
local function waits(c, at)
    local now, sleep = dns.now, dns.sleep
    local slept = 0
    dns.now = function() return at end
    dns.sleep = function(s) slept = s end
    local ok, err = pcall(dns.ready, c, { dns_wait = "10" })
    dns.now, dns.sleep = now, sleep
    assert(ok, err)
    return slept
end

t.test("deploy adds at the target, cleanup removes with the same rec",
    function()
    local deploy, cleanup, log = provider({})
    local c = ch("t1")
    local now = dns.now
    dns.now = function() return 100 end
    local ok, err = deploy(c, OPTS)
    dns.now = now
    t.eq(ok, true, err)
    t.eq(waits(c, 104), 6, "deployed(ch) started the clock")
    t.ok(cleanup(c, OPTS))
    t.eq(table.concat(log, ","), "add " .. NAME .. ",remove " .. NAME ..
        " id-t1")
    t.eq(waits(c, 500), 10, "forget(ch) reset it")
    -- Cleaned once: a second cleanup and one never deployed do nothing.
    t.ok(cleanup(c, OPTS))
    t.ok(cleanup(ch("never"), OPTS))
    t.eq(#log, 2)
end)

t.test("a refused add leaves nothing; any other failure is cleaned up",
    function()
    local deploy, cleanup, log = provider({
        no = { nil, "fake: zone example.test.: HTTP 403", "refused" },
        late = { nil, "fake: timed out" },
        boom = function() error({ kind = "interrupted" }) end })
    local no, late, boom = ch("no"), ch("late"), ch("boom")
    t.fails(nil, "^fake: zone example%.test%.: HTTP 403$", deploy(no, OPTS))
    t.fails(nil, "^fake: timed out$", deploy(late, OPTS))
    local ok, e = pcall(deploy, boom, OPTS)
    t.eq(ok, false)
    t.eq(e.kind, "interrupted", "errors pass through untouched")
    t.eq(waits(late, 0), 10, "a failed deploy starts no clock")
    t.ok(cleanup(no, OPTS))
    t.ok(cleanup(late, OPTS))
    t.ok(cleanup(boom, OPTS))
    t.eq(table.concat(log, ","), "add " .. NAME .. ",add " .. NAME ..
        ",add " .. NAME .. ",remove " .. NAME .. " id-late,remove " ..
        NAME .. " id-boom")
end)

t.test("a failed remove is reported and tried again", function()
    local fail = true
    local deploy, cleanup = dns.provider("fake",
        function() return true end,
        function()
            if fail then return nil, "fake: zone z.: HTTP 500" end
            return true
        end)
    local c = ch("t2")
    t.ok(deploy(c, OPTS))
    t.fails(nil, "^fake: zone z%.: HTTP 500$", cleanup(c, OPTS))
    fail = false
    t.ok(cleanup(c, OPTS))
end)

t.test("each provider keeps its own records", function()
    local d1, c1, log1 = provider({})
    local _, c2, log2 = provider({})
    local c = ch("t3")
    t.ok(d1(c, OPTS))
    t.ok(c2(c, OPTS))
    t.eq(#log2, 0, "the other provider never deployed it")
    t.ok(c1(c, OPTS))
    t.eq(#log1, 2)
end)
