-- Where luacme keeps its state: --storage SPEC (env LUACME_STORAGE).
--
--   file:dir=PATH                       the default: luacme.store, the
--                                       state directory as it always was
--   etcd:endpoints=URL[;URL...],prefix=/luacme      (luacme.storage_etcd)
--   redis:url=redis://HOST:PORT/DB,prefix=luacme:   (luacme.storage_redis)
--   lua:module=NAME[,k=v...]            a backend written in Lua
--
-- A spec names a place, never a secret: specs are stored and show in
-- process lists. Credentials come from the environment or files (see
-- each backend).
--
-- The shared backend interface. A backend is a table with these methods
-- (keys are relative, e.g. "certs/example.com"; the backend adds its
-- prefix). A version is an opaque string that changes on every write.
--
--   get(key)                -> value, version | false (absent) | nil, err
--   put(key, value, cond)   -> true | false (cond failed) | nil, err
--   delete(key, cond)       -> true | false | nil, err
--       cond (optional) = { version = V (unchanged since read) or false
--       (absent), lock = handle (the lock is still held: the fence) };
--       the check and the write must be one atomic step
--   list(prefix)            -> { key, ... } sorted | nil, err
--   lock(key, token, ttl)   -> handle | false (held by another) | nil, err
--       create key holding token, expiring after ttl seconds, only when
--       absent; handle is a table of strings/numbers (it is handed to
--       the lock keeper process as JSON) with at least key and token
--   refresh(handle)         -> true | false (lost) | nil, err
--   unlock(handle)          -> release only if still ours
--   close()
--   requests                a counter of requests sent (for figures)
--
-- A Lua backend module exports open(params, env) -> backend | nil, err
-- (params: the spec's k=v, env: the environment).
local core = require "luacme.core"
local cjson = require "cjson.safe"
local errors = require "luacme.errors"
local sched = require "luacme.sched"

local M = {}

-- Seconds a shared lock lives without a refresh; the keeper refreshes
-- it every TTL/3.
M.LOCK_TTL = 30

local BACKENDS = { etcd = "luacme.storage_etcd",
    redis = "luacme.storage_redis" }

-- Parse "kind:k=v,k=v" -> kind, params. Values may not contain ",".
function M.parse(spec)
    if type(spec) ~= "string" or spec == "" then
        return nil, errors.new("invalid", "empty storage spec")
    end
    local kind, rest = spec:match("^(%a[%w_]*):?(.*)$")
    if not kind then
        return nil, errors.new("invalid", "storage spec " ..
            errors.printable(spec) .. " is not KIND:key=value,...")
    end
    local params = {}
    for item in rest:gmatch("[^,]+") do
        local key, v = item:match("^%s*([%w_]+)=(.*)$")
        if not key then
            return nil, errors.new("invalid", "storage spec item " ..
                errors.printable(item) .. " is not key=value")
        end
        if key:find("pass") or key == "token" or key == "secret" then
            return nil, errors.new("invalid", "storage spec must not " ..
                "carry credentials (" .. key .. "=); use the environment " ..
                "or a file")
        end
        params[key] = v
    end
    return kind, params
end

-- open(spec, env) -> backend, kind | nil, err. For "file" the backend is
-- nil and params.dir is returned: the caller opens luacme.store.
function M.open(spec, env)
    env = env or core.environ()
    local kind, params = M.parse(spec)
    if not kind then return nil, params end
    if kind == "file" then return false, "file", params end
    local modname = BACKENDS[kind]
    if kind == "lua" then modname = params.module end
    if not modname then
        return nil, errors.new("invalid", "unknown storage kind " ..
            errors.printable(kind) .. " (file, etcd, redis, lua)")
    end
    local ok, mod = pcall(require, modname)
    if not ok then
        return nil, errors.new("invalid", "storage backend " .. modname ..
            ": " .. tostring(mod))
    end
    local b, err = mod.open(params, env)
    if not b then return nil, err end
    b.requests = b.requests or 0
    return b, kind, params
end

-- The storage key (32 bytes) from file, or nil, err. The file holds 32
-- raw bytes, or them as 64 hex digits or base64url.
function M.load_key(file)
    local data, msg, kind = core.read_file(file, 4096)
    if not data then
        return nil, errors.new(kind or "io", "storage key file " .. file ..
            ": " .. tostring(msg))
    end
    if #data == 32 then return data end
    local text = data:gsub("%s+", "")
    if #text == 64 and not text:find("[^%x]") then
        return (text:gsub("%x%x", function(h)
            return string.char(tonumber(h, 16))
        end))
    end
    local raw = core.b64url_decode((text:gsub("=+$", ""):gsub("%+", "-")
        :gsub("/", "_")))
    if raw and #raw == 32 then return raw end
    return nil, errors.new("invalid", "storage key file " .. file ..
        " must hold 32 bytes (raw, 64 hex digits or base64)")
end

-- A private key for the shared store: sealed with the storage key (AAD:
-- the record's key, so a sealed key cannot be moved to another record),
-- or kept as is with plaintext allowed.
function M.seal(skey, pem, where, plaintext)
    if skey then
        return { enc = "A256GCM",
            data = core.b64url_encode(assert(core.aead_seal(skey, pem,
                where))) }
    end
    if plaintext then return { plain = pem } end
    return nil, errors.new("usage", "a private key would go to the " ..
        "shared store unencrypted: give --storage-key-file (or " ..
        "LUACME_STORAGE_KEY_FILE), or --storage-plaintext-keys")
end

function M.unseal(skey, box, where)
    if type(box) ~= "table" then
        return nil, errors.new("invalid", where .. ": no private key")
    end
    if box.plain then return box.plain end
    if box.enc ~= "A256GCM" or type(box.data) ~= "string" then
        return nil, errors.new("invalid", where .. ": unknown key sealing")
    end
    if not skey then
        return nil, errors.new("usage", where .. ": the private key is " ..
            "encrypted; give --storage-key-file (or LUACME_STORAGE_KEY_FILE)")
    end
    local sealed = core.b64url_decode(box.data)
    local pem, msg, kind = core.aead_open(skey, sealed or "", where)
    if not pem then
        return nil, errors.new(kind or "crypto", where .. ": " .. msg)
    end
    return pem
end

---------------------------------------------------------------------------
-- Locks held while a run works: a backend lock plus a keeper process
-- that refreshes it (see core.spawn_bg) until unlock() or our death.

local Lock = {}
Lock.__index = Lock

-- In the luacme executable? Its luacme.site (core/main.c) serves the
-- compiled-in files from C; the library's site.lua has none.
local function in_executable()
    local ok, site = pcall(require, "luacme.site")
    return ok and type(site) == "table" and
        type(site.embedded) == "function" and
        debug.getinfo(site.embedded, "S").what == "C"
end

-- The keeper's command line: in the luacme executable an internal
-- command; in a Lua interpreter that loaded luacme as a library, that
-- interpreter with our module paths.
local function keeper_argv(spec, hjson)
    local exe = core.readlink("/proc/self/exe")
    if not exe then return nil end
    if in_executable() then
        return { exe, "__lock-keeper", spec, hjson }
    end
    return { exe, "-e", string.format("package.path = %q " ..
        "package.cpath = %q os.exit(require('luacme.storage')" ..
        ".keeper_main(%q, %q))", package.path, package.cpath, spec, hjson) }
end

-- Take lock key on backend b (opened from spec), waiting up to timeout
-- seconds, polling. what names the thing for the busy message. Returns
-- the lock (unlock(), <close>) or nil, err ("busy" when still held).
function M.lock(b, spec, key, timeout, what, opts)
    opts = opts or {}
    local ttl = opts.ttl or M.LOCK_TTL
    local token = core.b64url_encode(core.random(18)) .. "." ..
        core.getpid()
    local deadline = core.monotonic() + (timeout or 0)
    local pause = 0.05
    while true do
        local h, err = b:lock(key, token, ttl)
        if h == nil then return nil, err end
        if h then
            local lk = setmetatable({ b = b, h = h }, Lock)
            local argv = not opts.no_keeper and
                keeper_argv(spec, assert(cjson.encode(h)))
            if argv then lk.pid = core.spawn_bg(argv) end
            return lk
        end
        if core.monotonic() >= deadline then
            return nil, errors.new("busy", (what or ("lock " .. key ..
                " is held")) .. " by another luacme node" ..
                ((timeout and timeout > 0) and ("; gave up after " ..
                timeout .. " s") or ""), { key = key })
        end
        -- In a parallel renew the other certificates go on meanwhile.
        sched.sleep(math.min(pause, math.max(0, deadline -
            core.monotonic())))
        pause = math.min(pause * 2, 1)
    end
end

-- The fence of this lock for a conditional write.
function Lock:handle() return self.h end

function Lock:unlock()
    if self.pid then
        core.kill(self.pid, 9)
        core.reap(self.pid, true)
        self.pid = nil
    end
    if self.h then
        self.b:unlock(self.h)
        self.h = nil
    end
end
Lock.__close = Lock.unlock

-- The keeper: `luacme __lock-keeper SPEC HANDLE-JSON`, started by
-- M.lock. Refreshes every TTL/3; exits when the lock is found lost, or
-- after a whole TTL without a successful refresh (it is gone by then).
-- The kernel kills it when the holder dies (PR_SET_PDEATHSIG).
function M.keeper_main(spec, hjson)
    local b = M.open(spec)
    local h = cjson.decode(hjson or "")
    if not b or type(h) ~= "table" then return 1 end
    local last = core.monotonic()
    while true do
        core.sleep(h.ttl / 3)
        local ok = b:refresh(h)
        if ok == false then return 0 end
        if ok then
            last = core.monotonic()
        elseif core.monotonic() - last > h.ttl then
            return 0
        end
    end
end

return M
