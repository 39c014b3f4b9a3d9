-- core.dns_query against tests/dns/fakedns.py on loopback, and
-- core.dns_parse on crafted packets (the code tests/fuzz/fuzz_dns.c
-- fuzzes).
package.path = "tests/dns/?.lua;" .. package.path
local t = require "testlib"
local core = require "luacme.core"
local fake = require "fakedns"

local Z = "example.test."

local function records(extra)
    local r = fake.zone(Z, { "127.0.0.1" })
    for _, x in ipairs(extra or {}) do r[#r + 1] = x end
    return r
end

local function with_server(conf, fn, addrs)
    local srv <close> = fake.start(conf, addrs)
    fn(srv, "127.0.0.1:" .. srv.port)
end

t.test("TXT: character-strings concatenated, one entry per record",
    function()
    with_server({ ["127.0.0.1"] = { records = records({
        { "x.example.test.", "TXT", 42, { "abc", "def" } },
        { "x.example.test.", "TXT", 42, "second" },
        { "x.example.test.", "TXT", 42, "" },
    }) } }, function(_, server)
        local r = assert(core.dns_query("x.example.test", "TXT",
            { server = server }))
        t.eq(r.rcode, "NOERROR")
        t.eq(r.aa, true)
        t.eq(#r, 3)
        t.eq(r[1].name, "x.example.test.", "absolute name")
        t.eq(r[1].type, "TXT")
        t.eq(r[1].ttl, 42)
        t.eq(r[1].data, "abcdef")
        t.eq(r[2].data, "second")
        t.eq(r[3].data, "", "an empty character-string")
        t.eq(#r.authority, 0)
    end)
end)

t.test("NXDOMAIN comes back as a result with the zone's SOA", function()
    with_server({ ["127.0.0.1"] = { records = records() } },
        function(_, server)
        local r = assert(core.dns_query("nope.example.test.", "TXT",
            { server = server, recurse = false }))
        t.eq(r.rcode, "NXDOMAIN")
        t.eq(#r, 0)
        t.eq(#r.authority, 1)
        local soa = r.authority[1]
        t.eq(soa.type, "SOA")
        t.eq(soa.name, Z)
        t.eq(soa.data.mname, "ns1.example.test.")
        t.eq(soa.data.rname, "hostmaster.example.test.")
        t.eq(soa.data.serial, 1)
        t.eq(soa.data.expire, 600)
        t.eq(soa.data.minimum, 60)
        t.eq(r.rd, false, "recurse=false clears RD")
    end)
end)

t.test("A, NS, SOA and a CNAME chain", function()
    with_server({ ["127.0.0.1"] = { records = records({
        { "a.example.test.", "CNAME", 60, "b.example.test." },
        { "b.example.test.", "TXT", 60, "v" },
        { "six.example.test.", "AAAA", 60, "2001:db8::1" },
    }) } }, function(_, server)
        local o = { server = server }
        local r = assert(core.dns_query("a.example.test.", "TXT", o))
        t.eq(#r, 2)
        t.eq(r[1].type, "CNAME")
        t.eq(r[1].data, "b.example.test.")
        t.eq(r[2].name, "b.example.test.")
        t.eq(r[2].data, "v")
        t.eq(r.rd, true, "RD is set by default")
        r = assert(core.dns_query("a.example.test.", "CNAME", o))
        t.eq(#r, 1)
        t.eq(r[1].data, "b.example.test.")
        r = assert(core.dns_query(Z, "NS", o))
        t.eq(r[1].data, "ns1.example.test.")
        r = assert(core.dns_query("ns1.example.test.", "A", o))
        t.eq(r[1].data, "127.0.0.1")
        r = assert(core.dns_query("six.example.test.", "AAAA", o))
        t.eq(r[1].data, "2001:db8::1")
        r = assert(core.dns_query(Z, "SOA", o))
        t.eq(r[1].data.mname, "ns1.example.test.")
    end)
end)

t.test("SERVFAIL, REFUSED, timeout and a closed port have kinds",
    function()
    with_server({ ["127.0.0.1"] = { records = records(),
        servfail = { "sf.example.test." } },
        ["127.0.0.2"] = { silent = true } }, function(srv, server)
        t.fails("servfail", "SERVFAIL", core.dns_query("sf.example.test.",
            "TXT", { server = server }))
        t.fails("refused", "REFUSED", core.dns_query("elsewhere.test.",
            "TXT", { server = server }))
        local t0 = core.monotonic()
        t.fails("timeout", "127.0.0.2:" .. srv.port,
            core.dns_query("x.example.test.", "TXT",
                { server = "127.0.0.2:" .. srv.port, timeout = 1 }))
        t.ok(core.monotonic() - t0 < 4, "timeout honoured")
        t.fails("connect", "refused the connection",
            core.dns_query("x.example.test.", "TXT",
                { server = "127.0.0.3:" .. srv.port, timeout = 2 }))
    end, { "127.0.0.1", "127.0.0.2" })
end)

t.test("a truncated UDP answer is asked again over TCP; tcp=true",
    function()
    local big = {}
    for i = 1, 40 do big[i] = { "big.example.test.", "TXT", 60,
        string.rep(string.char(64 + i % 26), 60) } end
    with_server({ ["127.0.0.1"] = { records = records(big),
        truncate = true } }, function(_, server)
        local r = assert(core.dns_query("big.example.test.", "TXT",
            { server = server }))
        t.eq(#r, 40, "full answer after TC")
        r = assert(core.dns_query("big.example.test.", "TXT",
            { server = server, tcp = true }))
        t.eq(#r, 40)
    end)
end)

t.test("an IPv6 server", function()
    with_server({ ["::1"] = { records = records({
        { "x.example.test.", "TXT", 60, "six" } }) } }, function(srv)
        local r = assert(core.dns_query("x.example.test.", "TXT",
            { server = "[::1]:" .. srv.port }))
        t.eq(r[1].data, "six")
    end, { "::1" })
end)

t.test("LUACME_DNS_NAME_MAX (254 with the dot) and bad names", function()
    with_server({ ["127.0.0.1"] = { records = records() } },
        function(_, server)
        local label = string.rep("a", 63)
        -- 4 labels of 63 + 3 dots = 255 > 253: built to exactly 254
        -- with the trailing dot.
        local name = label .. "." .. label .. "." .. label .. "." ..
            string.rep("b", 61) .. "."
        t.eq(#name, 254)
        -- Outside the fake's zones: REFUSED, so it was asked.
        t.fails("refused", nil, core.dns_query(name, "TXT",
            { server = server }))
        t.fails("invalid", "LUACME_DNS_NAME_MAX",
            core.dns_query("c" .. name, "TXT", { server = server }))
        t.fails("invalid", "bad name", core.dns_query(
            string.rep("x", 64) .. ".example.test.", "TXT",
            { server = server }))
        t.fails("invalid", "NUL", core.dns_query("a\0b.test", "TXT",
            { server = server }))
    end)
end)

t.test("caller mistakes raise; a bad server string is invalid", function()
    t.raises(function() core.dns_query("x.test", "BOGUS") end,
        "invalid option")
    t.raises(function() core.dns_query("x.test", "TXT", { bogus = 1 }) end,
        "unknown option 'bogus'")
    t.raises(function() core.dns_query("x.test", "TXT", { timeout = 0 }) end,
        "timeout")
    t.raises(function() core.dns_query("x.test", "TXT", { timeout = 61 }) end,
        "1..60")
    t.raises(function() core.dns_query("x.test", "TXT", { tcp = 1 }) end,
        "'tcp' must be a boolean")
    t.raises(function() core.dns_query("x.test", "TXT", { server = 1 }) end,
        "'server' must be a string")
    for _, s in ipairs({ "bogus", "1.2.3.4:0", "1.2.3.4:70000",
        "1.2.3.4:x", "[::1", "[::1]x", "", "127.0.0.1\0:53" }) do
        t.fails("invalid", "server must be", core.dns_query("x.test",
            "TXT", { server = s }))
    end
end)

--
-- dns_parse on crafted packets
--

local function name(n)
    local out = {}
    for label in n:gmatch("[^.]+") do out[#out + 1] = string.pack("s1", label) end
    return table.concat(out) .. "\0"
end

local function rr(owner, ty, rdata, ttl)
    return owner .. string.pack(">I2I2I4s2", ty, 1, ttl or 60, rdata)
end

-- Header (id 1, QR AA, rcode) + question + records.
local function packet(rcode, an, ns, ar, qname)
    local q = name(qname or "x.test") .. string.pack(">I2I2", 16, 1)
    return string.pack(">I2I2I2I2I2I2", 1, 0x8400 | (rcode or 0), 1,
        #(an or {}), #(ns or {}), #(ar or {})) .. q ..
        table.concat(an or {}) .. table.concat(ns or {}) ..
        table.concat(ar or {})
end

t.test("dns_parse: compression, OPT skipped, unknown types raw", function()
    -- 12 = offset of the question's name: a pointer to "x.test".
    local ptr = "\xc0\x0c"
    local r = assert(core.dns_parse(packet(0, {
        rr(ptr, 5, "\3www" .. ptr),                         -- CNAME
        rr(ptr, 99, "raw\0bytes"),                          -- TYPE99
        rr(ptr, 16, "\2hi\0\3you"),                         -- TXT
    }, {}, { rr("\0", 41, "") })))                          -- OPT
    t.eq(#r, 3)
    t.eq(r[1].name, "x.test.")
    t.eq(r[1].data, "www.x.test.")
    t.eq(r[2].type, "TYPE99")
    t.eq(r[2].data, "raw\0bytes")
    t.eq(r[3].data, "hiyou")
    t.eq(#r.additional, 0, "OPT is not a record")
    t.eq(r.aa, true)
    r = assert(core.dns_parse(packet(3)))
    t.eq(r.rcode, "NXDOMAIN")
    r = assert(core.dns_parse(packet(5)))
    t.eq(r.rcode, "REFUSED")
    r = assert(core.dns_parse(packet(12)))
    t.eq(r.rcode, "RCODE12")
    r = assert(core.dns_parse(packet(0, { rr(name("r"), 6,
        "\0" .. "\0" .. string.pack(">I4I4I4I4I4", 1, 2, 3, 4, 5)) })))
    t.eq(r[1].name, "r.")
    t.eq(r[1].data.mname, ".", "the root name")
    t.eq(r[1].data.minimum, 5)
end)

t.test("dns_parse: malformed records are parse errors", function()
    local o = name("x.test")
    local bad = {
        ["garbage"] = "\1\2\3",
        ["A with 3 bytes"] = packet(0, { rr(o, 1, "\1\2\3") }),
        ["AAAA with 4 bytes"] = packet(0, { rr(o, 28, "\1\2\3\4") }),
        ["TXT string past its record"] = packet(0, { rr(o, 16, "\5abc") }),
        ["CNAME with trailing bytes"] = packet(0,
            { rr(o, 5, name("a.b") .. "x") }),
        ["CNAME past the record"] = packet(0, { rr(o, 5, "\3ab") }),
        ["pointer loop"] = packet(0, { rr(o, 2, "\xc0\x2a") }),
        ["SOA short"] = packet(0, { rr(o, 6, "\0\0" .. "\0\0\0\1") }),
        ["count over the records"] = packet(0, { rr(o, 1, "\1\2\3\4") }):
            gsub("^(......)..", "%1\0\2"),
        ["trailing garbage"] = packet(0) .. "x",
    }
    for what, p in pairs(bad) do
        local v, msg, kind = core.dns_parse(p)
        t.eq(v, nil, what)
        t.eq(kind, "parse", what .. ": " .. tostring(msg))
    end
end)

t.test("dns_parse: LUACME_DNS_MAX_RECORDS and LUACME_DNS_PACKET_MAX",
    function()
    local function n_records(n)
        local an = {}
        for i = 1, n do an[i] = rr("\0", 1, "\1\2\3\4") end
        return packet(0, an)
    end
    local r = assert(core.dns_parse(n_records(1024)))
    t.eq(#r, 1024)
    t.eq(r[1024].data, "1.2.3.4")
    t.fails("too_large", "LUACME_DNS_MAX_RECORDS",
        core.dns_parse(n_records(1025)))
    t.fails("too_large", "LUACME_DNS_PACKET_MAX",
        core.dns_parse(string.rep("\0", 65536)))
end)

t.test("queries in tasks wait through the loop: they overlap, others run",
    function()
    local sched = require "luacme.sched"
    local dnsmod = require "luacme.dns"
    with_server({ ["127.0.0.1"] = { records = records({
        { "x.example.test.", "TXT", 42, "v" } }) },
        ["127.0.0.2"] = { silent = true } }, function(srv, server)
        local silent = "127.0.0.2:" .. srv.port
        local done, ticks = 0, 0
        local function slow()
            local r = table.pack(sched.dns_query("x.example.test.", "TXT",
                { server = silent, timeout = 1 }))
            done = done + 1
            return table.unpack(r, 1, r.n)
        end
        local t0 = core.monotonic()
        local res = sched.all({ slow, slow, function()
            while done < 2 do
                sched.sleep(0.02)
                ticks = ticks + 1
            end
        end, function()
            -- luacme.dns's own queries go through the loop too.
            return dnsmod.query("x.example.test.", "TXT", server)
        end })
        local took = core.monotonic() - t0
        t.fails("timeout", silent, table.unpack(res[1], 1, 3))
        t.fails("timeout", silent, table.unpack(res[2], 1, 3))
        t.eq(res[4][1][1].data, "v")
        t.ok(took >= 0.9 and took < 1.7, "2 x 1 s timeouts took " .. took)
        t.ok(ticks >= 20, "a timer task ticked meanwhile: " .. ticks)
        -- The query object itself. Still running: asked of the silent
        -- server, which cannot answer before its 1 s timeout (a live
        -- one may answer before result() is called, under qemu).
        local q = assert(core.dns_start("x.example.test.", "TXT",
            { server = silent, timeout = 1 }))
        t.raises(function() q:result() end, "still running")
        -- Closing one still running returns at once; it ends by itself.
        t0 = core.monotonic()
        q:close()
        t.ok(core.monotonic() - t0 < 0.2, "close does not wait")
        q = assert(core.dns_start("x.example.test.", "TXT",
            { server = server }))
        while not q:done() do core.http_run(1, { q }) end
        local r = q:result()
        t.eq(r[1].data, "v")
        t.raises(function() q:result() end, "collected")
        q:close()
        t.fails("invalid", "NUL", core.dns_start("a\0b", "TXT"))
        t.raises(function() core.dns_start("x.", "TXT", { bogus = 1 }) end,
            "unknown option")
        -- Outside a task sched.dns_query is core.dns_query.
        t.eq(sched.dns_query("x.example.test.", "TXT", { server = server })[1]
            .data, "v")
    end, { "127.0.0.1", "127.0.0.2" })
end)
