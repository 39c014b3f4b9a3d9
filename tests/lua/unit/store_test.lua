local t = require "testlib"
local core = require "luacme.core"
local store = require "luacme.store"
local state = require "luacme.state"

local fails = t.fails_err      -- nil, err (an error table)

-- The mode of what a reader opens at path (a certificate's files are
-- links into its generation).
local function mode_of(path)
    local st = assert(core.stat(path))
    return st.mode & 4095
end

local function open()
    local dir = t.tmpdir() .. "/state/nested"
    local st, warnings = store.open(dir)
    t.ok(st, tostring(warnings))
    return st, dir
end

--
-- store
--

t.test("check_path accepts store paths and refuses the rest", function()
    for _, p in ipairs({ "a", "certs/example.com/cert.pem", "a/b/c",
        "accounts/127.0.0.1_14000/account.key", "x@y+z-_.", ".lock",
        "certs/_.example.com/.lock" }) do
        t.eq(store.check_path(p), true, p)
    end
    local bad = { "", "/etc/passwd", "a/../b", "..", "a/..", "../a",
        "a//b", "a/", "a/./b", ".", "a b", "a\0b", "caf\195\169", "a\\b",
        "*.example.com", "a:b", "a\nb", string.rep("a", 1025) }
    for _, p in ipairs(bad) do
        fails("invalid", nil, store.check_path(p))
    end
    t.eq(store.check_path("", true), true)
    fails("invalid", "string", store.check_path(nil))
end)

t.test("open creates the directory 0700 and reports loose modes", function()
    local st, dir = open()
    t.eq(mode_of(dir), 448)
    t.eq(#st.warnings, 0)
    t.eq(st:path(), dir)
    t.eq(st:path("a/b"), dir .. "/a/b")
    t.raises(function() st:path("../x") end, "contains %.%.")

    assert(st:put("certs/a/privkey.pem", "k"))
    assert(st:put("certs/a/cert.pem", "c"))
    assert(st:put("accounts/h/account.key", "k"))
    local _, w = store.open(dir)
    t.eq(#w, 0, table.concat(w, "\n"))

    assert(core.chmod(dir .. "/certs/a/privkey.pem", 420))       -- 0644
    assert(core.chmod(dir .. "/accounts/h/account.key", 416))    -- 0640
    assert(core.chmod(dir .. "/certs/a", 493))                   -- 0755
    assert(core.chmod(dir .. "/certs/a/cert.pem", 438))          -- 0666
    assert(core.chmod(dir, 457))                                 -- 0711
    local st2, w2 = store.open(dir)
    t.ok(st2)
    t.eq(st2.warnings, w2)
    local all = table.concat(w2, "\n")
    t.eq(#w2, 5, all)
    t.match(all, "privkey%.pem: mode 0644 is looser than 0600")
    t.match(all, "account%.key: mode 0640 is looser than 0600")
    t.match(all, "certs/a: mode 0755 is looser than 0700")
    t.match(all, "cert%.pem: mode 0666 is looser than 0644")
    t.match(all, "nested: mode 0711 is looser than 0700")
    -- reporting changes nothing
    t.eq(mode_of(dir .. "/certs/a/privkey.pem"), 420)
end)

-- A#9.5: meta.json names hooks that run as the caller; a state root,
-- certificate directory or meta.json someone else owns or may write is
-- refused, not warned about (a 0700 root owned by nobody once made root
-- run its Lua hook silently).
t.test("open refuses state others own or may write", function()
    local uid = core.getuid()
    local function setup()
        local st, dir = open()
        assert(st:put("certs/a/meta.json", "{}"))
        assert(st:put("certs/a/cert.pem", "c"))
        return dir
    end
    local cases = {
        { "root writable by group", function(dir)
            assert(core.chmod(dir, 504)) end, "nested: writable by group" },  -- 0770
        { "root writable by others", function(dir)
            assert(core.chmod(dir, 450)) end, "writable by others" },         -- 0702
        { "certs writable by others", function(dir)
            assert(core.chmod(dir .. "/certs", 455)) end, "certs: writable" },-- 0707
        { "cert dir writable by group", function(dir)
            assert(core.chmod(dir .. "/certs/a", 472)) end, "certs/a: writable" },
        { "meta.json writable by others", function(dir)
            assert(core.chmod(dir .. "/certs/a/meta.json", 386)) end,
            "meta%.json: writable by others" },                               -- 0602
        { "a generation writable by group", function(dir)
            assert(core.mkdir(dir .. "/certs/a/gen.1", 448))
            assert(core.chmod(dir .. "/certs/a/gen.1", 504)) end,             -- 0770
            "gen%.1: writable by group" },
        { "a generation's meta.json writable by others", function(dir)
            assert(core.mkdir(dir .. "/certs/a/gen.2", 448))
            t.writefile(dir .. "/certs/a/gen.2/meta.json", "{}")
            assert(core.chmod(dir .. "/certs/a/gen.2/meta.json", 386)) end,
            "gen%.2/meta%.json: writable by others" },
    }
    if uid == 0 then
        -- Ownership needs a second user: root can give files away.
        for _, c in ipairs({ { "root", "" }, { "cert dir", "/certs/a" },
            { "meta.json", "/certs/a/meta.json" } }) do
            cases[#cases + 1] = { c[1] .. " owned by nobody", function(dir)
                assert(t.sh("chown nobody " .. dir .. c[2]))
            end, "owned by uid %d+, not %d" }
        end
    end
    for _, c in ipairs(cases) do
        local dir = setup()
        c[2](dir)
        local st, err = store.open(dir)
        t.eq(st, nil, c[1])
        t.eq(type(err) == "table" and err.kind, "permission", c[1])
        t.match(tostring(err and err.detail), c[3])
    end
    -- loose modes that give nobody else control stay warnings
    local dir = setup()
    assert(core.chmod(dir, 493))                                   -- 0755
    assert(core.chmod(dir .. "/certs/a", 488))                     -- 0750
    assert(core.chmod(dir .. "/certs/a/meta.json", 416))           -- 0640
    local st, w = store.open(dir)
    t.ok(st, tostring(w))
    t.eq(#w, 3, table.concat(w, "\n"))
end)

t.test("open refuses a file where the directory should be", function()
    local base = t.tmpdir()
    t.writefile(base .. "/file", "x")
    fails(nil, "file", store.open(base .. "/file"))
    local st, err = store.open(base .. "/file/sub")
    t.eq(st, nil)
    t.eq(err.kind, "exists")
    t.raises(function() store.open("") end, "non%-empty")
end)

t.test("put and get: modes, parents, not_found, no temp files", function()
    local st, dir = open()
    t.ok(st:put("certs/x/privkey.pem", "KEY"))
    t.ok(st:put("certs/x/cert.pem", "CERT"))
    t.ok(st:put("accounts/h/account.key", "AK"))
    t.ok(st:put("certs/x/meta.json", "{}"))
    t.ok(st:put("certs/x/custom", "C", { mode = 384 }))
    t.eq(st:get("certs/x/privkey.pem"), "KEY")
    t.eq(st:get("certs/x/cert.pem"), "CERT")
    t.eq(mode_of(dir .. "/certs/x/privkey.pem"), 384)
    t.eq(mode_of(dir .. "/accounts/h/account.key"), 384)
    t.eq(mode_of(dir .. "/certs/x/meta.json"), 384)
    t.eq(mode_of(dir .. "/certs/x/cert.pem"), 420)
    t.eq(mode_of(dir .. "/certs/x/custom"), 384)
    t.eq(mode_of(dir .. "/certs"), 448)
    t.eq(mode_of(dir .. "/certs/x"), 448)
    t.ok(st:put("certs/x/cert.pem", "CERT2"))
    t.eq(st:get("certs/x/cert.pem"), "CERT2")
    local names = st:list("certs/x")
    t.eq(table.concat(names, " "), "cert.pem custom meta.json privkey.pem")
    local v, err = st:get("certs/x/nope")
    t.eq(v, nil)
    t.eq(err.kind, "not_found")
    for _, bad in ipairs({ "../x", "/etc/passwd", "a//b" }) do
        t.eq(select(2, st:get(bad)).kind, "invalid")
        t.eq(select(2, st:put(bad, "x")).kind, "invalid")
        t.eq(select(2, st:delete(bad)).kind, "invalid")
        t.eq(select(2, st:list(bad)).kind, "invalid")
        t.eq(select(2, st:lock(bad)).kind, "invalid")
        t.eq(select(2, st:rename("a", bad)).kind, "invalid")
        t.eq(select(2, st:exists(bad)).kind, "invalid")
    end
    t.raises(function() st:put("a", {}) end, "string")
    -- a file is in the way of a parent directory
    local _, e2 = st:put("certs/x/cert.pem/sub", "x")
    t.ok(e2 and e2.kind ~= nil)
end)

t.test("delete, rename, exists, list", function()
    local st = open()
    t.eq(st:exists("a"), false)
    t.ok(st:put("d/a", "1"))
    t.ok(st:put("d/c", "3"))
    t.ok(st:put("d/b", "2"))
    t.eq(st:exists("d"), "dir")
    t.eq(st:exists("d/a"), "file")
    t.eq(table.concat(st:list("d"), ","), "a,b,c")
    t.eq(table.concat(st:list(""), ","), "d")
    t.eq(#st:list("missing"), 0)
    t.ok(st:rename("d/a", "e/a2"))
    t.eq(st:get("e/a2"), "1")
    t.eq(st:exists("d/a"), false)
    local ok, err = st:rename("d/zz", "d/yy")
    t.eq(ok, nil)
    t.eq(err.kind, "not_found")
    t.ok(st:delete("d/b"))
    t.ok(st:delete("d/b"))          -- already gone: fine
    t.eq(table.concat(st:list("d"), ","), "c")
    t.ok(st:delete("d/c"))
    t.ok(st:rmdir("d"))
    t.eq(st:exists("d"), false)
end)

t.test("lock: busy names the holder, unlock and <close> release", function()
    local st = open()
    local lk = t.ok(st:lock("certs/example.com/.lock", 0,
        "certificate example.com is being renewed"))
    -- flock locks belong to the open file, so a second lock in this
    -- process conflicts just as another process would.
    local l2, err = st:lock("certs/example.com/.lock", 0,
        "certificate example.com is being renewed")
    t.eq(l2, nil)
    t.eq(err.kind, "busy")
    t.eq(err.detail, "certificate example.com is being renewed by " ..
        "another luacme run (pid " .. core.getpid() .. ")")
    t.eq(err.pid, core.getpid())
    -- a bounded wait gives up and says so
    local t0 = core.monotonic()
    l2, err = st:lock("certs/example.com/.lock", 0.2)
    t.eq(l2, nil)
    t.ok(core.monotonic() - t0 >= 0.19)
    t.match(err.detail, "^lock certs/example%.com/%.lock is held by " ..
        "another luacme run %(pid %d+%); gave up after 0%.2 s$")
    -- another process: waits its bounded time, then names us
    local dir = st:path()
    local child = t.tmpdir() .. "/child.lua"
    t.writefile(child, ([[
        local store = require "luacme.store"
        local st = assert(store.open(%q))
        local lk, err = st:lock("certs/example.com/.lock", 0.3,
            "certificate example.com is being renewed")
        io.write(lk and "LOCKED" or err.kind .. ": " .. err.detail)
        return 0
    ]]):format(dir))
    local res = assert(core.spawn({ argv = t.luacme_argv("/proc/self/exe", "run",
        child), timeout = 30 }))
    t.eq(res.stdout, "busy: certificate example.com is being renewed by " ..
        "another luacme run (pid " .. core.getpid() .. "); gave up after " ..
        "0.3 s")
    lk:unlock()
    res = assert(core.spawn({ argv = t.luacme_argv("/proc/self/exe", "run", child),
        timeout = 30 }))
    t.eq(res.stdout, "LOCKED")
    do
        local l3 <close> = t.ok(st:lock("certs/example.com/.lock"))
        t.eq(st:lock("certs/example.com/.lock"), nil)
    end
    t.ok(st:lock("certs/example.com/.lock")):unlock()
    -- the lock file stays (removing it would race with the next open)
    t.eq(st:exists("certs/example.com/.lock"), "file")
end)

--
-- state: layout helpers
--

t.test("ca_host spells a directory URL as one safe segment", function()
    local cases = {
        { "https://acme-v02.api.letsencrypt.org/directory",
          "acme-v02.api.letsencrypt.org" },
        { "https://127.0.0.1:14000/dir", "127.0.0.1_14000" },
        { "https://Example.COM:443/dir", "example.com" },
        { "https://example.com:8443", "example.com_8443" },
        { "http://localhost:80/dir", "localhost" },
        { "http://localhost:443/dir", "localhost_443" },
        { "https://[::1]:14000/dir", "--1_14000" },
        { "https://[2001:db8::1]/dir", "2001-db8--1" },
    }
    for _, c in ipairs(cases) do
        t.eq(state.ca_host(c[1]), c[2], c[1])
        t.eq(store.check_path("accounts/" .. c[2]), true)
    end
    for _, bad in ipairs({ "example.com/dir", "https://", "https:///x",
        "https://user@host/", "https://a b/", "https://../x",
        "https://ex%41mple/" }) do
        fails("invalid", nil, state.ca_host(bad))
    end
    t.eq(state.account_dir("https://127.0.0.1:14000/dir"),
        "accounts/127.0.0.1_14000")
end)

t.test("certificate names", function()
    for _, n in ipairs({ "example.com", "_.example.com", "a-b_c@d+e",
        "192.168.0.1", "2001-db8--1" }) do
        t.eq(state.check_name(n), true, n)
    end
    for _, n in ipairs({ "", ".hidden", "a/b", "..", "a..b",
        "*.example.com", string.rep("a", 256), "a b" }) do
        fails("invalid", nil, state.check_name(n))
    end
    t.eq(state.default_name("*.Example.com"), "_.example.com")
    t.eq(state.default_name("example.com"), "example.com")
    t.eq(state.default_name("2001:db8::1"), "2001-db8--1")
    t.eq(state.cert_dir("example.com"), "certs/example.com")
    fails("invalid", nil, state.cert_dir("../x"))
end)

t.test("default state directory", function()
    t.eq(state.default_dir({ LUACME_STATE = "/s" }, 0), "/s")
    t.eq(state.default_dir({}, 0), "/var/lib/luacme")
    t.eq(state.default_dir({ XDG_STATE_HOME = "/x", HOME = "/h" }, 1000),
        "/x/luacme")
    t.eq(state.default_dir({ XDG_STATE_HOME = "rel", HOME = "/h" }, 1000),
        "/h/.local/state/luacme")
    t.eq(state.default_dir({ HOME = "/h" }, 1000), "/h/.local/state/luacme")
    fails("invalid", "state", state.default_dir({}, 1000))
end)

t.test("account files: JSON, key 0600, lock", function()
    local st, dir = open()
    local url = "https://127.0.0.1:14000/dir"
    local a, err = state.read_account(st, url)
    t.eq(a, nil)
    t.eq(err.kind, "not_found")
    t.ok(state.write_account(st, url, { url = "https://x/acct/1",
        contact = {}, orders = require("cjson").null }))
    a = t.ok(state.read_account(st, url))
    t.eq(a.url, "https://x/acct/1")
    t.eq(type(a.contact), "table")
    t.eq(a.orders, nil)           -- JSON null is absent
    t.match(t.readfile(dir .. "/accounts/127.0.0.1_14000/account.json"),
        '"contact":{}')
    t.ok(state.write_account_key(st, url, "PEM"))
    t.eq(state.read_account_key(st, url), "PEM")
    local kp = state.account_key_path(st, url)
    t.eq(kp, dir .. "/accounts/127.0.0.1_14000/account.key")
    t.eq(mode_of(kp), 384)
    local lk = t.ok(state.lock_account(st, url))
    local l2
    l2, err = state.lock_account(st, url)
    t.eq(l2, nil)
    t.match(err.detail, "^the account at 127%.0%.0%.1_14000 is in use by " ..
        "another luacme run %(pid %d+%)$")
    lk:unlock()
    fails("invalid", nil, state.read_account(st, "nope"))
    t.writefile(dir .. "/accounts/127.0.0.1_14000/account.json", "[1,")
    fails(nil, nil, state.read_account(st, url))
    t.eq(select(2, state.read_account(st, url)).kind, "invalid")
end)

t.test("meta.json round trip and list_certs", function()
    local st, dir = open()
    local m, err = state.read_meta(st, "example.com")
    t.eq(m, nil)
    t.eq(err.kind, "not_found")
    local meta = { names = { "example.com", "www.example.com" }, ips = {},
        key_type = "ec256", hooks = { "webroot:root=/var/www" },
        ari = { window_start = 1700000000, window_end = 1700086400,
            renew_at = 1700001234 },
        not_after = 1707776000, last_error = { time = 1700000000.5,
            message = "boom" }, profile = require("cjson").null }
    t.ok(state.write_meta(st, "example.com", meta))
    t.eq(mode_of(dir .. "/certs/example.com/meta.json"), 384)
    m = t.ok(state.read_meta(st, "example.com"))
    t.eq(m.names[2], "www.example.com")
    t.eq(type(m.ips), "table")
    t.eq(m.ari.renew_at, 1700001234)
    t.eq(m.not_after, 1707776000)
    t.eq(m.last_error.time, 1700000000.5)
    t.eq(m.profile, nil)
    t.match(t.readfile(dir .. "/certs/example.com/meta.json"), '"ips":{}')
    t.ok(state.write_meta(st, "b.example", {}))
    t.ok(st:put("certs/.hidden/meta.json", "{}"))
    t.ok(st:put("certs/stray-file", "x"))
    t.eq(table.concat(state.list_certs(st), ","), "b.example,example.com")
    local files = state.cert_files(st, "example.com")
    t.eq(files.key_file, dir .. "/certs/example.com/privkey.pem")
    t.eq(files.fullchain_file, dir .. "/certs/example.com/fullchain.pem")
    fails("invalid", nil, state.write_meta(st, "a/b", {}))
end)

--
-- state: installing certificate sets
--

-- Three generations of (key, self-signed certificate, chain) made with
-- the openssl command, so the test does not lean on the code it checks.
local gens
local function generations()
    if gens then return gens end
    gens = {}
    local dir = t.tmpdir()
    for i = 1, 3 do
        local k, c = dir .. "/k" .. i, dir .. "/c" .. i
        local ok, out = t.sh("openssl req -x509 -newkey ec -pkeyopt " ..
            "ec_paramgen_curve:P-256 -nodes -keyout " .. k .. " -out " ..
            c .. " -days " .. (30 + i) .. " -subj /CN=gen" .. i)
        assert(ok, out)
        local cert = t.readfile(c)
        local chain = "-----BEGIN CERTIFICATE-----\nCHAIN" .. i ..
            "\n-----END CERTIFICATE-----\n"
        local info = assert(core.cert_info(cert))
        gens[i] = { key_pem = t.readfile(k), cert_pem = cert,
            chain_pem = chain, fullchain_pem = cert .. chain,
            meta = { names = { "gen" .. i .. ".example" },
                not_after = info.not_after, gen = i } }
    end
    return gens
end

local FIELDS = { key_pem = "privkey.pem", cert_pem = "cert.pem",
    chain_pem = "chain.pem", fullchain_pem = "fullchain.pem" }

-- Which generation the files on disk (suffix "" or ".prev") hold, or an
-- error naming the mix.
local function on_disk(dir, suffix)
    local g, found = generations(), nil
    for field, file in pairs(FIELDS) do
        local data = io.open(dir .. "/" .. file .. suffix, "rb")
        if not data then return nil, file .. suffix .. " missing" end
        local s = data:read("a")
        data:close()
        local which
        for i = 1, 3 do
            if g[i][field] == s then which = i end
        end
        if not which or (found and found ~= which) then
            return nil, file .. suffix .. " is from another set"
        end
        found = which
    end
    local m = require("cjson").decode(t.readfile(dir .. "/meta.json" ..
        suffix))
    if m.gen ~= found then return nil, "meta.json" .. suffix .. " differs" end
    return found
end

-- How many generation directories dir holds.
local function gen_dirs(dir)
    local n = 0
    for _, name in ipairs(assert(core.listdir(dir))) do
        if name:find("^gen%.%d+$") then n = n + 1 end
    end
    return n
end

local function no_new_files(dir)
    for _, n in ipairs(assert(core.listdir(dir))) do
        if n:find("%.new$") or n:find("%.tmp%.") then return false, n end
    end
    return true
end

local function installed(st, n)
    local g = generations()
    for i = 1, n do
        local lk <close> = assert(state.lock_cert(st, "example.com"))
        assert(state.install_cert(st, "example.com", g[i]))
    end
end

t.test("install_cert: first set, then the previous one kept as .prev",
    function()
    local g = generations()
    local st, dir = open()
    local cdir = dir .. "/certs/example.com"
    installed(st, 1)
    t.eq(on_disk(cdir, ""), 1)
    t.eq(core.lstat(cdir .. "/cert.pem.prev"), nil)
    t.eq(mode_of(cdir .. "/privkey.pem"), 384)
    t.eq(mode_of(cdir .. "/meta.json"), 384)
    t.eq(mode_of(cdir .. "/cert.pem"), 420)
    t.eq(mode_of(cdir), 448)
    local set = t.ok(state.read_cert(st, "example.com"))
    t.eq(set.key_pem, g[1].key_pem)
    t.eq(set.fullchain_pem, g[1].cert_pem .. g[1].chain_pem)
    t.eq(set.meta.gen, 1)
    installed(st, 1)               -- again: gen1 over gen1
    local lk <close> = assert(state.lock_cert(st, "example.com"))
    t.ok(state.install_cert(st, "example.com", g[2]))
    t.eq(on_disk(cdir, ""), 2)
    t.eq(on_disk(cdir, ".prev"), 1)
    t.eq(mode_of(cdir .. "/privkey.pem.prev"), 384)
    t.ok(no_new_files(cdir))
    t.eq(state.read_meta(st, "example.com").gen, 2)
    local files = state.cert_files(st, "example.com")
    t.eq(t.readfile(files.fullchain_file), g[2].fullchain_pem)
end)

t.test("install_cert refuses a certificate that does not match the key",
    function()
    local g = generations()
    local st, dir = open()
    installed(st, 1)
    local bad = { key_pem = g[2].key_pem, cert_pem = g[1].cert_pem,
        chain_pem = "", meta = {} }
    fails("invalid", "does not match the private key",
        state.install_cert(st, "example.com", bad))
    fails(nil, "private key", state.install_cert(st, "example.com",
        { key_pem = "junk", cert_pem = g[1].cert_pem, meta = {} }))
    fails(nil, nil, state.install_cert(st, "example.com",
        { key_pem = g[1].key_pem, cert_pem = "junk", meta = {} }))
    t.eq(on_disk(dir .. "/certs/example.com", ""), 1)
    t.ok(no_new_files(dir .. "/certs/example.com"))
    t.raises(function() state.install_cert(st, "example.com",
        { key_pem = g[1].key_pem }) end, "cert_pem")
    t.raises(function() state.install_cert(st, "example.com",
        { key_pem = g[1].key_pem, cert_pem = g[1].cert_pem }) end, "meta")
    fails("invalid", nil, state.install_cert(st, "../x", g[1]))
end)

t.test("recovery removes temporary files of interrupted writes", function()
    local st, dir = open()
    installed(st, 1)
    local cdir = dir .. "/certs/example.com"
    t.writefile(cdir .. "/cert.pem.tmp.Ab3_x-", "half")
    t.writefile(cdir .. "/meta.json.tmp.zzzzzz", "{")
    t.writefile(cdir .. "/notes.txt", "user's")
    t.eq(no_new_files(cdir), false)
    local lk <close> = t.ok(state.lock_cert(st, "example.com"))
    t.ok(no_new_files(cdir))
    t.eq(t.readfile(cdir .. "/notes.txt"), "user's")
    t.eq(on_disk(cdir, ""), 1)
end)

t.test("read_cert notices files that do not belong together", function()
    local g = generations()
    local st, dir = open()
    fails("not_found", nil, state.read_cert(st, "example.com"))
    installed(st, 2)
    local cdir = dir .. "/certs/example.com"
    t.writefile(cdir .. "/cert.pem", g[1].cert_pem)
    fails("invalid", "does not start with cert%.pem",
        state.read_cert(st, "example.com"))
    t.writefile(cdir .. "/fullchain.pem", g[1].fullchain_pem)
    fails("invalid", "does not match", state.read_cert(st, "example.com"))
    t.writefile(cdir .. "/privkey.pem", g[1].key_pem)
    fails("invalid", "meta%.json describes another certificate",
        state.read_cert(st, "example.com"))
end)

-- A crash: the step hook raises this at the chosen step.
local CRASH = setmetatable({}, { __tostring = function() return "crash" end })

local function crash_at(n, names)
    local count = 0
    return function(name)
        count = count + 1
        if names then names[#names + 1] = name end
        if count == n then error(CRASH, 0) end
    end
end

t.test("a crash at any step leaves the old or the new set, complete",
    function()
    local g = generations()
    -- The steps of a clean install, to know how many there are.
    local names = {}
    do
        local st = open()
        installed(st, 2)
        t.ok(state.install_cert(st, "example.com", g[3],
            { step = crash_at(0, names) }))
    end
    t.eq(#names, 8, table.concat(names, ", "))
    t.eq(names[1], "write gen.3/privkey.pem")
    t.eq(names[5], "write gen.3/meta.json")
    t.eq(names[6], "commit")
    t.eq(names[#names], "drop gen.1")

    -- Every scenario starts from a copy of one store holding gen2 with
    -- gen1 as .prev (installing afresh each time costs many fsyncs).
    local template = t.tmpdir() .. "/template"
    installed(assert(store.open(template)), 2)
    local function fresh()
        local dir = t.tmpdir() .. "/s"
        assert(t.sh("cp -a " .. template .. " " .. dir))
        return assert(store.open(dir)), dir
    end

    -- A reader's view after a crash: one complete set, gen 2 or 3.
    local function view(st)
        local set = t.ok(state.read_cert(st, "example.com"))
        local gen = set.meta.gen
        t.ok(gen == 2 or gen == 3)
        t.eq(set.cert_pem, g[gen].cert_pem)
        t.eq(set.key_pem, g[gen].key_pem)
        t.eq(set.chain_pem, g[gen].chain_pem)
        t.eq(set.fullchain_pem, g[gen].fullchain_pem)
        return gen
    end

    local outcomes = {}
    for k = 1, #names do
        local st, dir = fresh()
        local cdir = dir .. "/certs/example.com"
        local ok, err = pcall(state.install_cert, st, "example.com",
            g[3], { step = crash_at(k) })
        t.eq(ok, false)
        t.eq(err, CRASH, "install step " .. k)
        local seen = view(st)

        -- Recovery crashes too: each attempt does one step and crashes
        -- before its second, so the chain stops between every pair of
        -- recovery steps; a reader's view never changes meanwhile.
        local attempts = 0
        repeat
            local rec_steps = {}
            local rok, rerr = pcall(state.recover, st, "example.com",
                crash_at(2, rec_steps))
            if not rok then t.eq(rerr, CRASH) end
            t.eq(view(st), seen, "install step " .. k .. ", recovery " ..
                attempts)
            attempts = attempts + 1
            t.ok(attempts < 20)
        until rok

        -- lock_cert's recovery finds the set complete on disk
        local lk <close> = t.ok(state.lock_cert(st, "example.com"))
        local gen, why = on_disk(cdir, "")
        t.ok(gen, why)
        t.eq(gen, seen, "install step " .. k)
        t.eq(on_disk(cdir, ".prev"), gen - 1)
        t.ok(no_new_files(cdir))
        t.eq(gen_dirs(cdir), 2, "only the live and previous generations")
        outcomes[gen] = true
        t.eq(gen, k > 6 and 3 or 2, "commit point")
        -- and the next run installs normally
        t.ok(state.install_cert(st, "example.com", g[3]))
        t.eq(on_disk(cdir, ""), 3)
    end
    t.ok(outcomes[2] and outcomes[3], "both outcomes happen")
end)

-- What a reader (a web server reloading) gets by opening the fixed
-- paths one after the other, cert.pem then privkey.pem: the generation
-- both come from, or nil and why not.
local function fixed_pair(cdir)
    local g = generations()
    local cert = io.open(cdir .. "/cert.pem", "rb")
    if not cert then return nil, "cert.pem missing" end
    local c = cert:read("a")
    cert:close()
    local key = io.open(cdir .. "/privkey.pem", "rb")
    if not key then return nil, "privkey.pem missing" end
    local k = key:read("a")
    key:close()
    for i = 1, 3 do
        if g[i].cert_pem == c and g[i].key_pem == k then return i end
    end
    return nil, "cert.pem and privkey.pem do not match"
end

t.test("at every step of an install the fixed paths hold one set", function()
    local g = generations()
    local st, dir = open()
    local cdir = dir .. "/certs/example.com"
    installed(st, 1)
    local torn, reads = {}, 0
    local function reader(name)
        reads = reads + 1
        local gen, why = fixed_pair(cdir)
        if not gen then torn[#torn + 1] = name .. ": " .. why end
    end
    for i = 2, 3 do
        local lk <close> = assert(state.lock_cert(st, "example.com"))
        t.ok(state.install_cert(st, "example.com", g[i], { step = reader }))
        reader("after")
    end
    t.ok(reads >= 10)
    t.eq(#torn, 0, table.concat(torn, "; "))
    t.eq(fixed_pair(cdir), 3)
end)

t.test("renewals leave only the live and previous generations", function()
    local g = generations()
    local st, dir = open()
    local cdir = dir .. "/certs/example.com"
    for i = 1, 6 do
        local lk <close> = assert(state.lock_cert(st, "example.com"))
        t.ok(state.install_cert(st, "example.com", g[(i - 1) % 3 + 1]))
    end
    t.eq(gen_dirs(cdir), 2)
    t.ok(no_new_files(cdir))
    t.eq(on_disk(cdir, ""), 3)
    t.eq(on_disk(cdir, ".prev"), 2)
    local names = assert(core.listdir(cdir))
    table.sort(names)
    t.eq(table.concat(names, " "), ".lock cert.pem cert.pem.prev chain.pem " ..
        "chain.pem.prev fullchain.pem fullchain.pem.prev gen.5 gen.6 live " ..
        "meta.json meta.json.prev prev privkey.pem privkey.pem.prev")
    t.eq(core.readlink(cdir .. "/live"), "gen.6")
    t.eq(core.readlink(cdir .. "/privkey.pem"), "live/privkey.pem")
    t.eq(core.readlink(cdir .. "/privkey.pem.prev"), "prev/privkey.pem")
    -- meta.json updates land in the live generation
    local m = assert(state.read_meta(st, "example.com"))
    m.note = "ari"
    t.ok(state.write_meta(st, "example.com", m))
    t.eq(state.read_meta(st, "example.com").note, "ari")
    t.eq(assert(state.read_cert(st, "example.com")).meta.note, "ari")
    t.eq(core.lstat(cdir .. "/meta.json").type, "link")
    -- the store does not warn about its own links
    local _, warnings = store.open(dir)
    for _, w in ipairs(warnings) do
        t.ok(not w:find("symbolic link"), w)
    end
end)

-- A set in the layout before generations: plain files, *.prev, and
-- optionally an install of that layout interrupted after its commit
-- (meta.json.new written, privkey.pem already switched).
local function flat_store(interrupted)
    local g = generations()
    local st, dir = open()
    local cdir = dir .. "/certs/example.com"
    assert(core.mkdir_p(cdir, 448))
    local function put(file, data, mode)
        assert(core.write_file(cdir .. "/" .. file, data, mode))
    end
    local files = { { "privkey.pem", "key_pem", 384 },
        { "cert.pem", "cert_pem", 420 }, { "chain.pem", "chain_pem", 420 },
        { "fullchain.pem", "fullchain_pem", 420 } }
    local cjson = require "cjson"
    for _, f in ipairs(files) do
        put(f[1] .. ".prev", g[1][f[2]], f[3])
        put(f[1], g[2][f[2]], f[3])
    end
    put("meta.json.prev", cjson.encode(g[1].meta), 384)
    put("meta.json", cjson.encode(g[2].meta), 384)
    if interrupted then
        -- gen3 committed; privkey.pem switched, the rest not yet
        for _, f in ipairs(files) do put(f[1] .. ".new", g[3][f[2]], f[3]) end
        put("meta.json.new", cjson.encode(g[3].meta), 384)
        assert(core.rename(cdir .. "/privkey.pem", cdir .. "/privkey.pem.prev"))
        assert(core.rename(cdir .. "/privkey.pem.new", cdir .. "/privkey.pem"))
    end
    return st, dir, cdir
end

t.test("a set of the layout before generations is migrated", function()
    local st, _, cdir = flat_store(false)
    t.eq(on_disk(cdir, ""), 2)
    local lk <close> = t.ok(state.lock_cert(st, "example.com"))
    t.eq(core.readlink(cdir .. "/live"), "gen.1")
    t.eq(core.readlink(cdir .. "/prev"), "gen.0")
    t.eq(core.lstat(cdir .. "/cert.pem").type, "link")
    t.eq(on_disk(cdir, ""), 2)
    t.eq(on_disk(cdir, ".prev"), 1)
    t.eq(mode_of(cdir .. "/privkey.pem"), 384)
    t.ok(no_new_files(cdir))
    t.eq(assert(state.read_cert(st, "example.com")).meta.gen, 2)
    -- the next install works on generations
    t.ok(state.install_cert(st, "example.com", generations()[3]))
    t.eq(on_disk(cdir, ""), 3)
    t.eq(on_disk(cdir, ".prev"), 2)
    t.eq(gen_dirs(cdir), 2)
    -- an interrupted install of the old layout is finished first
    local st2, _, cdir2 = flat_store(true)
    local lk2 <close> = t.ok(state.lock_cert(st2, "example.com"))
    t.eq(on_disk(cdir2, ""), 3)
    t.eq(on_disk(cdir2, ".prev"), 2)
    t.ok(no_new_files(cdir2))
end)

t.test("a crash at any step of the migration leaves the set readable", function()
    -- The steps of a clean migration, to know how many there are.
    local names = {}
    do
        local st = flat_store(false)
        t.ok(state.recover(st, "example.com", crash_at(0, names)))
    end
    t.ok(#names >= 12, table.concat(names, ", "))
    for k = 1, #names do
        local st, _, cdir = flat_store(false)
        local ok, err = pcall(state.recover, st, "example.com", crash_at(k))
        t.eq(ok, false)
        t.eq(err, CRASH)
        -- what a reader sees: the same set throughout
        t.eq(fixed_pair(cdir), 2, "migration step " .. k)
        t.eq(assert(state.read_cert(st, "example.com")).meta.gen, 2)
        local lk <close> = t.ok(state.lock_cert(st, "example.com"))
        t.eq(on_disk(cdir, ""), 2, "migration step " .. k)
        t.eq(on_disk(cdir, ".prev"), 1, "migration step " .. k)
        t.eq(core.lstat(cdir .. "/cert.pem").type, "link")
        t.ok(no_new_files(cdir))
    end
end)
