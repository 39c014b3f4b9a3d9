-- The etcd v3 backend of luacme.storage, through etcd's JSON gateway
-- (POST /v3/kv/range, /v3/kv/txn, /v3/lease/...) over the core's HTTP
-- client: no etcd library. Keys and values travel base64-encoded; the
-- version of a key is its mod_revision; a lock is a key bound to a
-- lease (TTL) and created only when absent, so it vanishes when its
-- holder stops keeping the lease alive.
--
-- Spec: etcd:endpoints=URL[;URL...],prefix=/luacme
-- Credentials (never in the spec): LUACME_ETCD_USER with
-- LUACME_ETCD_PASSWORD or LUACME_ETCD_PASSWORD_FILE; LUACME_ETCD_CA_FILE
-- for an https endpoint's CA.
local core = require "luacme.core"
local cjson = require "cjson.safe"
local errors = require "luacme.errors"
local sched = require "luacme.sched"

local M = {}

local B = {}
B.__index = B

local function b64(s)
    local u = core.b64url_encode(s):gsub("-", "+"):gsub("_", "/")
    return u .. string.rep("=", (4 - #u % 4) % 4)
end

local function unb64(s)
    local u = s:gsub("=+$", ""):gsub("%+", "-"):gsub("/", "_")
    return core.b64url_decode(u)
end

-- The end of the range of keys starting with prefix: the prefix with
-- its last byte raised by one.
local function range_end(prefix)
    local last = prefix:byte(-1)
    return prefix:sub(1, -2) .. string.char(last + 1)
end

function M.open(params, env)
    local eps = {}
    for u in (params.endpoints or ""):gmatch("[^;]+") do
        if not u:find("^https?://") then
            return nil, errors.new("invalid", "etcd endpoint " ..
                errors.printable(u) .. " is not an http(s) URL")
        end
        if u:find("@", 1, true) then
            return nil, errors.new("invalid", "etcd endpoint must not " ..
                "carry credentials; use LUACME_ETCD_USER/PASSWORD")
        end
        eps[#eps + 1] = u:gsub("/+$", "")
    end
    if #eps == 0 then
        return nil, errors.new("invalid", "etcd: endpoints= is needed")
    end
    local http, msg, kind = core.http{ timeout = params.timeout or 10,
        connect_timeout = 3, allow_http = true,
        ca_file = env.LUACME_ETCD_CA_FILE }
    if not http then return nil, errors.new(kind or "io", msg) end
    local self = setmetatable({ eps = eps, cur = 1, http = http,
        prefix = params.prefix or "/luacme", requests = 0 }, B)
    if self.prefix:sub(-1) ~= "/" then self.prefix = self.prefix .. "/" end
    local user = env.LUACME_ETCD_USER
    if user and user ~= "" then
        local pw = env.LUACME_ETCD_PASSWORD
        if env.LUACME_ETCD_PASSWORD_FILE then
            pw = core.read_file(env.LUACME_ETCD_PASSWORD_FILE, 4096)
            pw = pw and pw:gsub("%s+$", "")
        end
        local r, err = self:call("/v3/auth/authenticate",
            { name = user, password = pw or "" })
        if not r then return nil, err end
        self.token = r.token
    end
    return self
end

-- POST body (a table) to path at the first endpoint that answers; an
-- endpoint that cannot be reached is passed over for the next one.
-- Returns the decoded reply or nil, err.
function B:call(path, body)
    local data = cjson.encode(body)
    local last
    for i = 0, #self.eps - 1 do
        local n = (self.cur - 1 + i) % #self.eps + 1
        self.requests = self.requests + 1
        local hdr = { ["Content-Type"] = "application/json" }
        if self.token then hdr.Authorization = self.token end
        local status, _, rbody, kind = sched.request(self.http, {
            method = "POST", url = self.eps[n] .. path, headers = hdr,
            body = data })
        if status == 200 then
            self.cur = n
            local v = cjson.decode(rbody)
            if type(v) ~= "table" then
                return nil, errors.new("protocol", "etcd " .. path ..
                    ": reply is not JSON")
            end
            return v
        end
        if status then
            local v = cjson.decode(rbody or "")
            local m = type(v) == "table" and (v.message or v.error) or
                tostring(rbody):sub(1, 200)
            -- A member without a quorum answers 503; another may not.
            last = errors.new(status == 503 and "unavailable" or "store",
                "etcd " .. self.eps[n] .. path .. ": HTTP " .. status ..
                ": " .. tostring(m))
            if status ~= 503 then return nil, last end
        else
            last = errors.new("unavailable", "etcd " .. self.eps[n] ..
                ": " .. tostring(_) .. " (" .. tostring(kind) .. ")")
        end
    end
    return nil, last
end

local function k(self, key) return b64(self.prefix .. key) end

-- get(key) -> value, version | false | nil, err
function B:get(key)
    local r, err = self:call("/v3/kv/range", { key = k(self, key) })
    if not r then return nil, err end
    local kv = r.kvs and r.kvs[1]
    if not kv then return false end
    return unb64(kv.value or ""), tostring(kv.mod_revision)
end

-- Compares for cond = { version = V | false (absent), lock = handle }.
local function compares(self, key, cond)
    local c = {}
    if cond and cond.version ~= nil then
        if cond.version then
            c[#c + 1] = { key = k(self, key), target = "MOD",
                result = "EQUAL", mod_revision = cond.version }
        else
            c[#c + 1] = { key = k(self, key), target = "CREATE",
                result = "EQUAL", create_revision = "0" }
        end
    end
    if cond and cond.lock then
        c[#c + 1] = { key = k(self, cond.lock.key), target = "VALUE",
            result = "EQUAL", value = b64(cond.lock.token) }
    end
    return c
end

-- One write: the plain request at path, or under conditions a txn whose
-- success branch is that request (op names it in the txn).
local function write(self, key, cond, path, op, body)
    local c = compares(self, key, cond)
    if #c == 0 then
        local r, err = self:call(path, body)
        if not r then return nil, err end
        return true
    end
    local r, err = self:call("/v3/kv/txn",
        { compare = c, success = { { [op] = body } } })
    if not r then return nil, err end
    return r.succeeded == true
end

-- put(key, value, cond) -> true | false (a condition failed) | nil, err
function B:put(key, value, cond)
    return write(self, key, cond, "/v3/kv/put", "request_put",
        { key = k(self, key), value = b64(value) })
end

function B:delete(key, cond)
    return write(self, key, cond, "/v3/kv/deleterange",
        "request_delete_range", { key = k(self, key) })
end

-- Keys (without the prefix) starting with sub, sorted.
function B:list(sub)
    local p = self.prefix .. sub
    local r, err = self:call("/v3/kv/range", { key = b64(p),
        range_end = b64(range_end(p)), keys_only = true })
    if not r then return nil, err end
    local out = {}
    for _, kv in ipairs(r.kvs or {}) do
        out[#out + 1] = unb64(kv.key):sub(#self.prefix + 1)
    end
    table.sort(out)
    return out
end

-- lock(key, token, ttl) -> handle | false (held) | nil, err
function B:lock(key, token, ttl)
    -- A held lock costs one read to see, not a lease granted and revoked.
    local held, herr = self:get(key)
    if held == nil then return nil, herr end
    if held then return false end
    local r, err = self:call("/v3/lease/grant", { TTL = tostring(ttl) })
    if not r then return nil, err end
    local lease = r.ID
    r, err = self:call("/v3/kv/txn", {
        compare = { { key = k(self, key), target = "CREATE",
            result = "EQUAL", create_revision = "0" } },
        success = { { request_put = { key = k(self, key), value = b64(token),
            lease = lease } } } })
    if r and r.succeeded then
        return { key = key, token = token, lease = lease, ttl = ttl }
    end
    self:call("/v3/lease/revoke", { ID = lease })
    if not r then return nil, err end
    return false
end

-- refresh(handle) -> true | false (lost) | nil, err
function B:refresh(h)
    local r, err = self:call("/v3/lease/keepalive", { ID = h.lease })
    if not r then return nil, err end
    local res = r.result or r
    return tonumber(res.TTL or 0) > 0
end

function B:unlock(h)
    self:delete(h.key, { lock = h })
    return self:call("/v3/lease/revoke", { ID = h.lease })
end

function B:close()
    if self.http then self.http:close() end
    self.http = nil
end

return M
