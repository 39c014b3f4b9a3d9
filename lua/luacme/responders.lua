-- Shared challenge responders for the hooks that answer the CA themselves
-- (hooks/standalone.lua, hooks/tls-alpn.lua): one responder per
-- address:port, started at the first deploy there and stopped when the
-- last name deployed there is removed, so every challenge of a run goes
-- through one listening socket. The hooks' address/port options and
-- their check live here too, so both hooks take them alike.
--
--   local responders = require "luacme.responders"
--   M.options = responders.options("80")       -- address=*, port=80
--   M.setup = responders.setup                 -- checks them
--   local servers = responders.registry(core.http01_responder, "hint")
--   local r, err = servers.add(opts, name, ...) -- r:add(name, ...) on it
--   servers.remove(opts, name)                  -- r:remove(name), maybe close
local core = require "luacme.core"

local M = {}

-- The listen address and port in a responder hook's options ("address",
-- default "*" for every address; "port"). Returns address, port (an
-- integer), or nil and a message a user can act on.
function M.where(opts)
    local port = tonumber(opts.port)
    if not port or port ~= math.floor(port) or port < 1 or port > 65535 then
        return nil, "port must be 1..65535"
    end
    local address = opts.address or "*"
    -- A zone suffix ("fe80::1%eth0") is no part of the literal.
    if address ~= "*" and (type(address) ~= "string" or
        not core.reverse_name((address:gsub("%%[%w_.-]+$", "")))) then
        return nil, "address must be an IP address or *"
    end
    return address, math.floor(port)
end

-- The options of a hook that listens, for its `options` field: address
-- (default "*", every address) and port (default port, a string).
function M.options(port)
    return {
        { name = "address", default = "*",
          help = "listen address: an IPv4/IPv6 literal, or * for every " ..
              "address (default)" },
        { name = "port", default = port,
          help = "listen port (default " .. port .. ")" },
    }
end

-- A hook's setup(opts): true, or nil and what is wrong with the address
-- or port, so a bad option fails when the hook is loaded.
function M.setup(opts)
    local address, err = M.where(opts)
    if not address then return nil, err end
    return true
end

-- A registry of running responders, one per hook file, so the kinds never
-- share a socket. new{ address =, port = } starts a responder (with add,
-- remove, close) or returns nil, message, kind (core.http01_responder,
-- core.tls_alpn_responder); bind_hint is added to a "bind" failure's
-- message, to say what probably holds the port.
--
-- reg.add(opts, name, ...) starts the responder for opts if none runs,
-- calls r:add(name, ...) and returns r, or nil and a message (a responder
-- that was started for nothing is closed again). reg.remove(opts, name)
-- undoes an add; names never added there (nil too) are ignored, so cleanup
-- may call it after a failed deploy. Each name counts once however often
-- it is added.
function M.registry(new, bind_hint)
    -- Running responders by "address|port": { r =, names = { [name] =
    -- true }, n = count of names }.
    local servers = {}
    local reg = {}

    local function release(key, s)
        if s.n == 0 then
            s.r:close()
            servers[key] = nil
        end
    end

    function reg.add(opts, name, ...)
        local address, port = M.where(opts)
        if not address then return nil, port end
        local key = address .. "|" .. port
        local s = servers[key]
        if not s then
            local r, msg, kind = new{ address = address, port = port }
            if not r then
                if kind == "bind" then
                    msg = msg .. " (" .. bind_hint .. ")"
                end
                return nil, msg
            end
            s = { r = r, names = {}, n = 0 }
            servers[key] = s
        end
        local ok, msg = s.r:add(name, ...)
        if not ok then
            release(key, s)
            return nil, msg
        end
        if not s.names[name] then
            s.names[name] = true
            s.n = s.n + 1
        end
        return s.r
    end

    function reg.remove(opts, name)
        local address, port = M.where(opts)
        if not address then return end
        local key = address .. "|" .. port
        local s = servers[key]
        if not s or not s.names[name] then
            return                              -- never deployed here
        end
        s.r:remove(name)
        s.names[name] = nil
        s.n = s.n - 1
        release(key, s)
    end

    return reg
end

return M
