-- luacme.storage without servers: specs, the storage key, sealing keys
-- with AES-256-GCM, and a backend written in Lua (the documented
-- interface) under luacme.fleet's fenced publish and local installs.
-- The etcd and Redis backends run against real servers in e2e/fleet
-- and fleet/backends.
local t = require "testlib"
local core = require "luacme.core"
local storage = require "luacme.storage"
local fleet = require "luacme.fleet"
local store = require "luacme.store"
local state = require "luacme.state"

t.test("specs: kind and key=value; credentials are refused", function()
    local kind, p = storage.parse("etcd:endpoints=http://a:1;http://b:2," ..
        "prefix=/x")
    t.eq(kind, "etcd")
    t.eq(p.endpoints, "http://a:1;http://b:2")
    t.eq(p.prefix, "/x")
    t.eq(storage.parse("file:dir=/var/lib/luacme"), "file")
    local _, err = storage.parse("redis:url=redis://h:1/0,password=x")
    t.eq(err.kind, "invalid")
    t.match(err.detail, "credentials")
    _, err = storage.parse("etcd:endpoints")
    t.eq(err.kind, "invalid")
    _, err = storage.open("consul:addr=x", {})
    t.match(err.detail, "unknown storage kind")
    _, err = storage.open("etcd:endpoints=http://u:pw@h:1", {})
    t.match(err.detail, "credentials")
    _, err = storage.open("redis:url=redis://user:pw@h:1/0", {})
    t.eq(err.kind, "invalid")
    local b, k, params = storage.open("file:dir=/tmp/x", {})
    t.eq(b, false)
    t.eq(k, "file")
    t.eq(params.dir, "/tmp/x")
end)

t.test("aead: sealed data opens with the key and aad only", function()
    local key = core.random(32)
    local s1 = assert(core.aead_seal(key, "secret", "certs/a"))
    local s2 = assert(core.aead_seal(key, "secret", "certs/a"))
    t.ok(s1 ~= s2, "a fresh nonce each time")
    t.eq(#s1, 12 + 6 + 16)
    t.eq(core.aead_open(key, s1, "certs/a"), "secret")
    local v, msg, kind = core.aead_open(key, s1, "certs/b")
    t.eq(v, nil)
    t.eq(kind, "crypto")
    t.match(msg, "cannot decrypt")
    t.eq(core.aead_open(core.random(32), s1, "certs/a"), nil)
    local flipped = s1:sub(1, 14) .. string.char(s1:byte(15) ~ 1) ..
        s1:sub(16)
    t.eq(core.aead_open(key, flipped, "certs/a"), nil)
    t.eq(core.aead_open(key, s1:sub(1, 20), "certs/a"), nil)
    t.raises(function() core.aead_seal("short", "x") end, "32 bytes")
    t.eq(core.aead_open(key, assert(core.aead_seal(key, "", "")), ""), "")
end)

t.test("the storage key file: raw, hex or base64, else refused", function()
    local dir = t.tmpdir()
    local raw = core.random(32)
    t.writefile(dir .. "/raw", raw)
    t.eq(storage.load_key(dir .. "/raw"), raw)
    t.writefile(dir .. "/hex", t.hex(raw) .. "\n")
    t.eq(storage.load_key(dir .. "/hex"), raw)
    t.writefile(dir .. "/b64", core.b64url_encode(raw) .. "\n")
    t.eq(storage.load_key(dir .. "/b64"), raw)
    t.writefile(dir .. "/short", "abc")
    local _, err = storage.load_key(dir .. "/short")
    t.eq(err.kind, "invalid")
    _, err = storage.load_key(dir .. "/missing")
    t.eq(err.kind, "not_found")
end)

t.test("seal/unseal: no key means no usable key, plaintext only on " ..
    "request", function()
    local key = core.random(32)
    local box = assert(storage.seal(key, "PEM", "certs/a"))
    t.eq(box.enc, "A256GCM")
    t.ok(not box.data:find("PEM"))
    t.eq(storage.unseal(key, box, "certs/a"), "PEM")
    local _, err = storage.unseal(nil, box, "certs/a")
    t.eq(err.kind, "usage")
    t.match(err.detail, "storage%-key%-file")
    _, err = storage.unseal(key, box, "certs/b")
    t.eq(err.kind, "crypto")
    _, err = storage.seal(nil, "PEM", "certs/a")
    t.match(err.detail, "unencrypted")
    t.eq(storage.seal(nil, "PEM", "certs/a", true).plain, "PEM")
end)

-- A backend in Lua, as a user would write one: in memory, versions
-- counting, locks without expiry.
local function mem_backend()
    local data, ver, locks = {}, {}, {}
    local B = { requests = 0 }
    local function ok_cond(key, cond)
        if not cond then return true end
        if cond.lock and locks[cond.lock.key] ~= cond.lock.token then
            return false
        end
        if cond.version ~= nil and (ver[key] or false) ~= cond.version then
            return false
        end
        return true
    end
    function B:get(key)
        if data[key] == nil then return false end
        return data[key], ver[key]
    end
    function B:put(key, value, cond)
        if not ok_cond(key, cond) then return false end
        data[key] = value
        ver[key] = tostring((tonumber(ver[key]) or 0) + 1)
        return true
    end
    function B:delete(key, cond)
        if not ok_cond(key, cond) then return false end
        data[key], ver[key] = nil, nil
        return true
    end
    function B:list(prefix)
        local out = {}
        for k in pairs(data) do
            if k:sub(1, #prefix) == prefix then out[#out + 1] = k end
        end
        table.sort(out)
        return out
    end
    function B:lock(key, token, ttl)
        if locks[key] then return false end
        locks[key] = token
        return { key = key, token = token, ttl = ttl }
    end
    function B:refresh(h) return locks[h.key] == h.token end
    function B:unlock(h)
        if locks[h.key] == h.token then locks[h.key] = nil end
        return true
    end
    function B:close() end
    B.locks = locks
    return B
end

t.test("a Lua backend: fenced publish, install on other nodes by " ..
    "generation", function()
    local b = mem_backend()
    local skey = core.random(32)
    local d = t.tmpdir()
    t.sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 " ..
        "-nodes -keyout " .. d .. "/k.pem -out " .. d .. "/c.pem " ..
        "-days 30 -subj /CN=a.test -addext subjectAltName=DNS:a.test " ..
        "2>/dev/null")
    local cert_pem = assert(core.read_file(d .. "/c.pem"))
    local key_pem = assert(core.read_file(d .. "/k.pem"))
    local st1 = assert(store.open(t.tmpdir() .. "/n1"))
    local st2 = assert(store.open(t.tmpdir() .. "/n2"))
    local f1 = fleet.open{ backend = b, spec = "lua:module=none", key = skey,
        st = st1 }
    local f2 = fleet.open{ backend = b, spec = "lua:module=none", key = skey,
        st = st2 }
    local lk = f1:lock_cert("a.test", 0)
    -- Another node cannot take the lock meanwhile.
    local ok, err = pcall(f2.lock_cert, f2, "a.test", 0)
    t.ok(not ok)
    t.eq(err.kind, "busy")
    local set = { key_pem = key_pem, cert_pem = cert_pem, chain_pem = "",
        meta = { names = { "a.test" } } }
    t.eq(f1:publish("a.test", set), 1)
    assert(state.install_cert(st1, "a.test", set))
    lk:unlock()
    t.ok(not b:get("certs/a.test"):find("PRIVATE KEY", 1, true))
    -- Node 2 installs generation 1 once.
    t.eq(f2:sync_one("a.test", 0), true)
    t.eq(f2:sync_one("a.test", 0), false)
    t.eq(state.read_cert(st2, "a.test").key_pem, key_pem)
    t.eq(state.read_meta(st2, "a.test").fleet_gen, 1)
    -- A node whose lock was lost (taken over) is fenced: nothing written.
    local lk2 = f2:lock_cert("a.test", 0)
    b.locks["locks/certs/a.test"] = "someone else"
    ok, err = pcall(f2.publish, f2, "a.test", { key_pem = key_pem,
        cert_pem = cert_pem, chain_pem = "", meta = {} })
    t.ok(not ok)
    t.eq(err.kind, "fenced")
    t.eq(f1:read_cert("a.test").gen, 1)
    b.locks["locks/certs/a.test"] = nil
    lk2:unlock()
    -- So is one whose record moved on since it read it.
    local lk3 = f1:lock_cert("a.test", 0)
    local rec = f1:read_cert("a.test")
    rec.gen = 5
    assert(b:put("certs/a.test", require("cjson").encode(rec)))
    ok, err = pcall(f1.publish, f1, "a.test", { key_pem = key_pem,
        cert_pem = cert_pem, chain_pem = "", meta = {} })
    t.eq(err.kind, "fenced")
    lk3:unlock()
    -- A node without the storage key cannot install the sealed key.
    local st3 = assert(store.open(t.tmpdir() .. "/n3"))
    local f3 = fleet.open{ backend = b, spec = "x", st = st3 }
    ok, err = pcall(f3.sync_one, f3, "a.test", 0)
    t.ok(not ok)
    t.eq(err.kind, "usage")
    t.eq(core.stat(st3:path("certs/a.test/privkey.pem")), nil)
end)
