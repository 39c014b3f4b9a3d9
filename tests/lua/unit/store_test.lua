local t = require "testlib"
local core = require "luacme.core"
local store = require "luacme.store"
local state = require "luacme.state"

-- An expected failure of a Lua module: nil, err (an error table).
local function fails(kind, pat, v, err)
    if v ~= nil then error("expected nil, err; got " .. tostring(v), 2) end
    if type(err) ~= "table" then
        error("expected an error table, got " .. tostring(err), 2)
    end
    if kind and err.kind ~= kind then
        error("expected kind " .. kind .. ", got " .. tostring(err.kind) ..
            " (" .. tostring(err.detail) .. ")", 2)
    end
    if pat and not tostring(err.detail):find(pat) then
        error("detail " .. tostring(err.detail) .. " does not match " ..
            pat, 2)
    end
    return err
end

local function mode_of(path)
    local st = assert(core.lstat(path))
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
    lk:unlock()
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
