-- A node of a fleet: the shared store (luacme.storage backend) holds
-- the accounts, the certificates (key sealed, chain, meta with the
-- renewal state) and the locks; this node's local store (the install
-- directory, today's state layout) holds what its web server reads.
--
-- Shared keys (under the backend's prefix):
--   certs/NAME      JSON { gen, key = sealed, cert, chain, fullchain, meta }
--   accounts/HOST   JSON { account = account.json text, key = sealed }
--   locks/certs/NAME, locks/accounts/HOST     (storage.lock, with TTL)
--
-- One record per certificate, written in one conditional put: a reader
-- never sees half a set. gen counts the certificate's sets fleet-wide;
-- the local meta.json keeps fleet_gen, the set installed here, so a node
-- installs exactly the generations newer than its own.
--
-- Fencing: a new set is written only if the lock is still ours and the
-- record is the version read under the lock; a node whose lock expired
-- (paused, partitioned) gets "fenced" and installs nothing, so it can
-- never put an older set over a newer generation.
local core = require "luacme.core"
local errors = require "luacme.errors"
local state = require "luacme.state"
local storage = require "luacme.storage"

local M = {}

local json = state.json

local Fleet = {}
Fleet.__index = Fleet

local raise = errors.raise

-- Unlike errors.must, false passes: it is a failed condition or "absent".
local function must(v, err, ...)
    if v == nil then error(err, 0) end
    return v, err, ...
end

-- open{ backend =, spec =, key = 32 bytes or nil, plaintext = bool,
-- st = the local store, ttl = } -> fleet
function M.open(o)
    return setmetatable({ b = o.backend, spec = o.spec, key = o.key,
        plaintext = o.plaintext, st = o.st, ttl = o.ttl, held = {} }, Fleet)
end

local function decode(data, what)
    local v = json.decode(data)
    if type(v) ~= "table" then
        raise("invalid", "shared store: " .. what .. " is not a JSON object")
    end
    return v
end

-- The shared record of certificate name: rec, version, or false.
function Fleet:read_cert(name)
    local data, ver = must(self.b:get("certs/" .. name))
    if not data then return false end
    return decode(data, "certs/" .. name), ver
end

function Fleet:list_certs()
    local out = {}
    for _, k in ipairs(must(self.b:list("certs/"))) do
        local n = k:match("^certs/(.+)$")
        if n and state.check_name(n) then out[#out + 1] = n end
    end
    return out
end

-- Deep equality of decoded JSON (encodings differ in key order).
local function same(a, b, depth)
    depth = depth or 0
    if type(a) ~= "table" or type(b) ~= "table" or depth > 16 then
        return a == b
    end
    for k, v in pairs(a) do
        if not same(v, b[k], depth + 1) then return false end
    end
    for k in pairs(b) do
        if a[k] == nil then return false end
    end
    return true
end

-- The meta a shared record installs: its own, stamped with its generation.
local function rec_meta(rec)
    local m = rec.meta or {}
    m.fleet_gen = rec.gen
    return m
end

-- Install rec into the local store when it is newer than what is
-- installed here (the local lock held). Returns true when a new set was
-- installed; a same-generation record with other meta (renewal state)
-- only updates meta.json.
function Fleet:install_local(name, rec)
    local meta = state.read_meta(self.st, name)
    local lgen = meta and tonumber(meta.fleet_gen) or 0
    local m = rec_meta(rec)
    if rec.gen > lgen then
        local key = must(storage.unseal(self.key, rec.key, "certs/" .. name))
        must(state.install_cert(self.st, name, { key_pem = key,
            cert_pem = rec.cert, chain_pem = rec.chain,
            fullchain_pem = rec.fullchain, meta = m }))
        return true
    end
    if rec.gen == lgen and not same(meta, m) then
        must(state.write_meta(self.st, name, m))
    end
    return false
end

-- Sync one certificate without the shared lock (the record is one
-- value, read whole): install it if newer. Returns changed.
function Fleet:sync_one(name, timeout)
    local rec = self:read_cert(name)
    if not rec then return false end
    local meta = state.read_meta(self.st, name)
    if meta and tonumber(meta.fleet_gen) == rec.gen and
        same(meta, rec_meta(rec)) then
        return false
    end
    local lk <close> = must(state.lock_cert(self.st, name, timeout))
    return self:install_local(name, rec)
end

-- Writers must be able to seal keys: refuse before anything is made
-- (at the CA too) rather than after.
local function can_write(self)
    if not self.key and not self.plaintext then
        error(select(2, storage.seal(nil, "", "", false)), 0)
    end
end

local Held = {}
Held.__index = Held

-- Lock certificate name fleet-wide (waiting up to timeout), then
-- locally, then bring the local set up to the shared one. Returns the
-- lock (unlock, <close>) and whether a newer set was installed.
function Fleet:lock_cert(name, timeout)
    can_write(self)
    local slk = must(storage.lock(self.b, self.spec, "locks/certs/" .. name,
        timeout, "certificate " .. name .. " is being renewed",
        { ttl = self.ttl }))
    local ok, llk = pcall(function()
        return must(state.lock_cert(self.st, name, timeout))
    end)
    if not ok then
        slk:unlock()
        error(llk, 0)
    end
    local h = setmetatable({ fleet = self, name = name, slk = slk,
        llk = llk }, Held)
    local changed
    ok, changed = pcall(function()
        local rec, ver = self:read_cert(name)
        h.rec, h.version = rec or nil, rec and ver or false
        if rec then return self:install_local(name, rec) end
        return false
    end)
    if not ok then
        h:unlock()
        error(changed, 0)
    end
    self.held[name] = h
    return h, changed
end

-- Write a new set for the held certificate name to the shared store,
-- fenced. set = { key_pem, cert_pem, chain_pem, fullchain_pem, meta };
-- sets set.meta.fleet_gen. Raises "fenced" when the lock was lost or
-- the record changed since it was read.
function Fleet:publish(name, set)
    local h = self.held[name]
    if not h then error("fleet:publish: lock not held for " .. name, 2) end
    local gen = (h.rec and h.rec.gen or 0) + 1
    set.meta.fleet_gen = gen
    local rec = { gen = gen,
        key = must(storage.seal(self.key, set.key_pem, "certs/" .. name,
            self.plaintext)),
        cert = set.cert_pem, chain = set.chain_pem or "",
        fullchain = set.fullchain_pem or (set.cert_pem ..
            (set.chain_pem or "")),
        meta = set.meta }
    local ok = must(self.b:put("certs/" .. name, json.encode(rec),
        { version = h.version, lock = h.slk:handle() }))
    if not ok then
        raise("fenced", "certificate " .. name .. ": the shared lock " ..
            "expired or another node wrote a newer generation; this " ..
            "node's set is not installed")
    end
    h.rec, h.version = rec, nil
    return gen
end

-- Share the renewal state written locally while the lock was held
-- (meta.json of the same generation), then release both locks.
function Held:unlock()
    local f = self.fleet
    if self.slk and self.slk.h and self.rec then
        pcall(function()
            local meta = state.read_meta(f.st, self.name)
            if meta and tonumber(meta.fleet_gen) == self.rec.gen and
                not same(meta, self.rec.meta) then
                if self.version == nil then
                    local _, ver = f:read_cert(self.name)
                    self.version = ver
                end
                self.rec.meta = meta
                f.b:put("certs/" .. self.name, json.encode(self.rec),
                    { version = self.version, lock = self.slk:handle() })
            end
        end)
    end
    if f.held[self.name] == self then f.held[self.name] = nil end
    if self.llk then self.llk:unlock() self.llk = nil end
    if self.slk then self.slk:unlock() self.slk = nil end
end
Held.__close = Held.unlock

---------------------------------------------------------------------------
-- Accounts

local function host_of(url) return must(state.ca_host(url)) end

function Fleet:read_account(host)
    local data, ver = must(self.b:get("accounts/" .. host))
    if not data then return false end
    return decode(data, "accounts/" .. host), ver
end

-- Write the shared account of host into the local store (as
-- account.json and account.key) when it differs.
local function account_to_local(self, host, rec)
    local dir = "accounts/" .. host
    local key = must(storage.unseal(self.key, rec.key, dir))
    if self.st:get(dir .. "/account.key") ~= key then
        must(self.st:put(dir .. "/account.key", key, { mode = 384 }))
    end
    if self.st:get(dir .. "/account.json") ~= rec.account then
        must(self.st:put(dir .. "/account.json", rec.account, { mode = 384 }))
    end
end

-- Before an account is looked up: fetch it when this node has none.
function Fleet:pull_account(url)
    local host = host_of(url)
    if self.st:exists("accounts/" .. host .. "/account.key") then return end
    local rec = self:read_account(host)
    if rec then account_to_local(self, host, rec) end
end

local AccLock = {}
AccLock.__index = AccLock

-- The account lock: fleet-wide, then local; the shared account replaces
-- the local copy; unlock() shares what was written meanwhile (a new
-- account, a new key, new contacts), fenced like a certificate.
function Fleet:lock_account(url, timeout)
    can_write(self)
    local host = host_of(url)
    local slk = must(storage.lock(self.b, self.spec, "locks/accounts/" ..
        host, timeout, "the account at " .. host .. " is in use",
        { ttl = self.ttl }))
    local ok, llk = pcall(function()
        return must(state.lock_account(self.st, url, timeout))
    end)
    if not ok then
        slk:unlock()
        error(llk, 0)
    end
    local a = setmetatable({ fleet = self, host = host, slk = slk,
        llk = llk }, AccLock)
    ok, llk = pcall(function()
        local rec, ver = self:read_account(host)
        a.rec, a.version = rec or nil, rec and ver or false
        if rec then account_to_local(self, host, rec) end
    end)
    if not ok then
        a:unlock()
        error(llk, 0)
    end
    return a
end

function AccLock:unlock()
    local f = self.fleet
    if self.slk then
        local dir = "accounts/" .. self.host
        local acct = f.st:get(dir .. "/account.json")
        local key = f.st:get(dir .. "/account.key")
        local old = self.rec
        if acct and key and (not old or old.account ~= acct or
            storage.unseal(f.key, old.key, dir) ~= key) then
            local sealed, err = storage.seal(f.key, key, dir, f.plaintext)
            if not sealed then
                self:release()
                error(err, 0)
            end
            local put, perr = f.b:put(dir, json.encode({ account = acct,
                key = sealed }), { version = self.version,
                lock = self.slk:handle() })
            if not put then
                self:release()
                error(perr or errors.new("fenced", "the account at " ..
                    self.host .. ": the shared lock expired or another " ..
                    "node changed the account"), 0)
            end
        end
    end
    self:release()
end

function AccLock:release()
    if self.llk then self.llk:unlock() self.llk = nil end
    if self.slk then self.slk:unlock() self.slk = nil end
end
AccLock.__close = AccLock.unlock

---------------------------------------------------------------------------
-- storage copy: a single node's state into a shared store and back.

-- What a store holds, as records: { certs = { name = rec },
-- accounts = { host = rec } } (keys in the clear, in memory only).
local function export(src, key)
    local out = { certs = {}, accounts = {} }
    if src.st then
        for _, name in ipairs(must(state.list_certs(src.st))) do
            local set = state.read_cert(src.st, name)
            if set then
                out.certs[name] = { gen = tonumber(set.meta.fleet_gen) or 1,
                    key = set.key_pem, cert = set.cert_pem,
                    chain = set.chain_pem, fullchain = set.fullchain_pem,
                    meta = set.meta }
            end
        end
        for _, host in ipairs(must(src.st:list("accounts"))) do
            local dir = "accounts/" .. host
            local acct = src.st:get(dir .. "/account.json")
            local k = src.st:get(dir .. "/account.key")
            if acct and k then out.accounts[host] = { account = acct, key = k } end
        end
        return out
    end
    local f = M.open{ backend = src.b, key = key }
    for _, name in ipairs(f:list_certs()) do
        local rec = f:read_cert(name)
        if rec then
            rec.key = must(storage.unseal(key, rec.key, "certs/" .. name))
            out.certs[name] = rec
        end
    end
    for _, k in ipairs(must(src.b:list("accounts/"))) do
        local host = k:match("^accounts/(.+)$")
        local rec = host and f:read_account(host)
        if rec then
            rec.key = must(storage.unseal(key, rec.key, "accounts/" .. host))
            out.accounts[host] = rec
        end
    end
    return out
end

-- copy(src, dst, opts): src/dst = { st = local store } or { b = backend };
-- opts.key (storage key), opts.plaintext. Returns counts.
function M.copy(src, dst, opts)
    local data = export(src, opts.key)
    local n = { certs = 0, accounts = 0 }
    for name, rec in pairs(data.certs) do
        if dst.st then
            local lk <close> = must(state.lock_cert(dst.st, name, 10))
            rec.meta.fleet_gen = rec.gen
            must(state.install_cert(dst.st, name, { key_pem = rec.key,
                cert_pem = rec.cert, chain_pem = rec.chain,
                fullchain_pem = rec.fullchain, meta = rec.meta }))
        else
            rec.key = must(storage.seal(opts.key, rec.key, "certs/" .. name,
                opts.plaintext))
            rec.meta.fleet_gen = rec.gen
            must(dst.b:put("certs/" .. name, json.encode(rec)))
        end
        n.certs = n.certs + 1
    end
    for host, rec in pairs(data.accounts) do
        local dir = "accounts/" .. host
        if dst.st then
            must(dst.st:put(dir .. "/account.key", rec.key, { mode = 384 }))
            must(dst.st:put(dir .. "/account.json", rec.account,
                { mode = 384 }))
        else
            rec.key = must(storage.seal(opts.key, rec.key, dir,
                opts.plaintext))
            must(dst.b:put(dir, json.encode(rec)))
        end
        n.accounts = n.accounts + 1
    end
    return n
end

M.now = core.time
return M
