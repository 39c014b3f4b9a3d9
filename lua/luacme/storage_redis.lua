-- The Redis backend of luacme.storage, over the core's RESP client
-- (core.redis: TCP, or TLS for rediss://). A value is a hash
-- { v = version, d = data }; conditional writes and locks are small Lua
-- scripts run by Redis itself (EVAL), so a check and its write are one
-- atomic step. A lock is SET NX PX; its refresh and release only touch
-- a key that still holds the holder's token.
--
-- Spec: redis:url=redis://HOST:PORT/DB,prefix=luacme:  (rediss:// TLS)
-- Credentials (never in the spec): LUACME_REDIS_USER (ACL user, optional)
-- with LUACME_REDIS_PASSWORD or LUACME_REDIS_PASSWORD_FILE;
-- LUACME_REDIS_CA_FILE for rediss://.
local core = require "luacme.core"
local errors = require "luacme.errors"

local M = {}

local B = {}
B.__index = B

-- KEYS[1] value, KEYS[2] lock; ARGV: want version ("" any, "0" absent),
-- token ("" none), new data.
local PUT = [[
if ARGV[2] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[2] then return 0 end
local v = redis.call('HGET', KEYS[1], 'v') or '0'
if ARGV[1] ~= '' and v ~= ARGV[1] then return 0 end
if ARGV[4] == 'del' then redis.call('DEL', KEYS[1]) return 1 end
redis.call('HSET', KEYS[1], 'v', tostring(tonumber(v) + 1), 'd', ARGV[3])
return 1
]]

local REFRESH = [[
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
]]

local UNLOCK = [[
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
]]

function M.open(params, env)
    local url = params.url or ""
    local scheme, host, port, db = url:match(
        "^(rediss?)://([%w%.%-]+):?(%d*)/?(%d*)$")
    if not scheme then
        return nil, errors.new("invalid", "redis: url=redis://HOST:PORT/DB " ..
            "is needed (no user or password in it), got " ..
            errors.printable(url))
    end
    local self = setmetatable({ scheme = scheme, host = host,
        port = tonumber(port) or 6379, db = db ~= "" and db or nil,
        prefix = params.prefix or "luacme:", requests = 0,
        timeout = tonumber(params.timeout) or 10, env = env }, B)
    local ok, err = self:connect()
    if not ok then return nil, err end
    return self
end

function B:connect()
    local c, msg, kind = core.redis{ host = self.host, port = self.port,
        tls = self.scheme == "rediss", ca_file = self.env.LUACME_REDIS_CA_FILE,
        timeout = self.timeout }
    if not c then
        return nil, errors.new("unavailable", "redis " .. self.host .. ":" ..
            self.port .. ": " .. tostring(msg) .. " (" .. tostring(kind) .. ")")
    end
    self.c = c
    local env = self.env
    local pw = env.LUACME_REDIS_PASSWORD
    if env.LUACME_REDIS_PASSWORD_FILE then
        pw = core.read_file(env.LUACME_REDIS_PASSWORD_FILE, 4096)
        pw = pw and pw:gsub("%s+$", "")
    end
    if pw and pw ~= "" then
        local r, err
        if env.LUACME_REDIS_USER and env.LUACME_REDIS_USER ~= "" then
            r, err = self:cmd("AUTH", env.LUACME_REDIS_USER, pw)
        else
            r, err = self:cmd("AUTH", pw)
        end
        if not r then return nil, err end
    end
    if self.db then
        local r, err = self:cmd("SELECT", self.db)
        if not r then return nil, err end
    end
    return true
end

-- One command; a dropped connection is made again once (every command
-- we send is safe to repeat: reads, or writes guarded by a version).
function B:cmd(...)
    for attempt = 1, 2 do
        if not self.c then
            local ok, err = self:connect()
            if not ok then return nil, err end
        end
        self.requests = self.requests + 1
        local r, msg, kind = self.c:call(...)
        if r ~= nil then return r end
        if kind == "redis" then
            return nil, errors.new("store", "redis: " .. tostring(msg))
        end
        self.c = nil
        if attempt == 2 then
            return nil, errors.new("unavailable", "redis " .. self.host ..
                ":" .. self.port .. ": " .. tostring(msg))
        end
    end
end

function B:get(key)
    local r, err = self:cmd("HMGET", self.prefix .. key, "d", "v")
    if not r then return nil, err end
    if not r[1] then return false end
    return r[1], r[2]
end

local function want(cond)
    if not cond or cond.version == nil then return "" end
    return cond.version or "0"
end

function B:put(key, value, cond)
    local lk = cond and cond.lock
    local r, err = self:cmd("EVAL", PUT, "2", self.prefix .. key,
        self.prefix .. (lk and lk.key or "-"), want(cond),
        lk and lk.token or "", value, "put")
    if not r then return nil, err end
    return r == 1
end

function B:delete(key, cond)
    local lk = cond and cond.lock
    local r, err = self:cmd("EVAL", PUT, "2", self.prefix .. key,
        self.prefix .. (lk and lk.key or "-"), want(cond),
        lk and lk.token or "", "", "del")
    if not r then return nil, err end
    return r == 1
end

-- SCAN, not KEYS: a big shared database is not blocked while we look.
function B:list(sub)
    local out, cursor = {}, "0"
    local pat = (self.prefix .. sub):gsub("[%*%?%[%]\\]", "\\%0") .. "*"
    repeat
        local r, err = self:cmd("SCAN", cursor, "MATCH", pat, "COUNT", "1000")
        if not r then return nil, err end
        cursor = r[1]
        for _, key in ipairs(r[2]) do
            out[#out + 1] = key:sub(#self.prefix + 1)
        end
    until cursor == "0"
    table.sort(out)
    return out
end

function B:lock(key, token, ttl)
    local r, err = self:cmd("SET", self.prefix .. key, token, "NX", "PX",
        tostring(math.floor(ttl * 1000)))
    if r == nil then return nil, err end
    if r == false then return false end
    return { key = key, token = token, ttl = ttl }
end

function B:refresh(h)
    local r, err = self:cmd("EVAL", REFRESH, "1", self.prefix .. h.key,
        h.token, tostring(math.floor(h.ttl * 1000)))
    if not r then return nil, err end
    return r == 1
end

function B:unlock(h)
    return self:cmd("EVAL", UNLOCK, "1", self.prefix .. h.key, h.token)
end

function B:close()
    if self.c then self.c:close() end
    self.c = nil
end

return M
