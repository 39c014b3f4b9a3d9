-- Renew the stored certificates that are due and deploy each one that
-- changed: its key and chain copied into DESTDIR/<name>.pem (0600), as
-- a proxy such as HAProxy reads them. Certificates not renewed are left
-- alone; a failed one is reported and the others go on.
--
--   luacme run examples/renew-deploy.lua [GLOBAL OPTIONS] [--force] DESTDIR
--
-- Exit status: 0 something renewed, 2 nothing due, 1 a failure.
local acme = require "luacme"
local cli = require "luacme.cli"
local core = acme.core

local m <close>, args = cli.open(arg)
local force = args[1] == "--force"
if force then table.remove(args, 1) end
local dest = args[1] or error("renew-deploy: DESTDIR expected", 0)

-- Called for each certificate renewed in this run, after it is stored.
local function deploy(cert)
    local key, err = core.read_file(cert.key_file)
    local chain = key and core.read_file(cert.fullchain_file)
    if not chain then return nil, err end
    return core.write_file(dest .. "/" .. cert.name .. ".pem", chain .. key,
        tonumber("600", 8))
end

local res = assert(m:renew{ force = force, deploy = deploy })
for _, c in ipairs(res.certs) do
    print(c.name .. ": " .. (c.error and ("failed: " .. tostring(c.error))
        or c.renewed and "renewed, deployed" or ("not due (" .. c.reason .. ")")))
end
return res.code
