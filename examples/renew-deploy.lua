-- Renew the stored certificates that are due and deploy each one that
-- changed: its key and chain copied into DESTDIR/<name>.pem (0600), as
-- a proxy such as HAProxy reads them. Certificates not renewed are left
-- alone; a failed one is reported and the others go on.
--
--   luacme run examples/renew-deploy.lua [GLOBAL OPTIONS] [--force] DESTDIR
--
-- Exit status: 0 something renewed, 2 nothing due, 1 a failure.
local cli = require "luacme.cli"
local core = require "luacme.core"
local state = require "luacme.state"

local m <close>, args, out = cli.open(arg)
local force = args[1] == "--force"
if force then table.remove(args, 1) end
local dest = args[1]
if not dest then error("renew-deploy: DESTDIR expected", 0) end

local function deploy(name)
    local files = assert(state.cert_files(m.st, name))
    local key = assert(core.read_file(files.key_file))
    local chain = assert(core.read_file(files.fullchain_file))
    local ok, msg = core.write_file(dest .. "/" .. name .. ".pem",
        chain .. key, tonumber("600", 8))
    if not ok then return nil, msg end
    return true
end

local list = assert(m:list())
local code = 2
for _, c in ipairs(list.certs) do
    -- m:renew prints a failure itself; the result says which failed.
    local res, err = m:renew{ names = { c.name }, force = force }
    if not res then
        out:error(err, c.name)
        code = 1
    elseif #res.renewed > 0 then
        local ok, derr = deploy(c.name)
        print(c.name .. ": renewed" .. (ok and ", deployed" or
            (", deploy failed: " .. tostring(derr))))
        if not ok then code = 1 elseif code == 2 then code = 0 end
    elseif #res.failed > 0 then
        code = 1
    else
        -- The list's reason was computed without a fresh ARI check.
        print(c.name .. ": not due (" .. tostring(c.reason) .. ")")
    end
end
return code
