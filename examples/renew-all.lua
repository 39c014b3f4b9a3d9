-- Renew every stored certificate that is due, then run one deploy step
-- for all of them (one web server reload, not one per certificate).
--
--   luacme run examples/renew-all.lua [GLOBAL OPTIONS] [--force] \
--       [--] [COMMAND ARGS...]
--
-- COMMAND runs (without a shell) only when at least one certificate was
-- renewed, with LUACME_RENEWED set to their names; e.g.
-- `-- systemctl reload nginx`. Exit status as luacme renew: 0 renewed
-- (and the command succeeded), 2 nothing due, 1 an error. Each
-- certificate still runs its own --deploy-hook settings first.
--
-- Against the test CA, after issuing with examples/webroot.lua into the
-- same --state (add --force: nothing is due right after issuing):
--
--   python3 tests/e2e/pebble-env.py -- sh -c 'G="--directory \
--     $LUACME_E2E_DIRECTORY --ca-bundle $LUACME_E2E_CA_FILE --state \
--     $LUACME_E2E_WORKDIR/st"; build/luacme run examples/webroot.lua $G \
--     --agree-tos "$LUACME_E2E_WEBROOT" www.example.test &&
--     build/luacme run examples/renew-all.lua $G --force -- echo reload'
local cli = require "luacme.cli"
local core = require "luacme.core"
local hooks = require "luacme.hooks"

local m <close>, args, out = cli.open(arg)
local force = false
if args[1] == "--force" then
    force = true
    table.remove(args, 1)
end

local res, err = m:renew{ force = force }
if not res then
    out:error(err)
    return 1
end
if #res.renewed == 0 or #args == 0 then return res.code end

-- The deploy step: once, for everything renewed.
local env = hooks.environment()
env.LUACME_RENEWED = table.concat(res.renewed, " ")
local r, msg = core.spawn{ argv = args, env = env, timeout = 300 }
if not r then
    out:warn("deploy step: " .. tostring(msg))
    return 1
end
io.stdout:write(r.stdout)
io.stderr:write(r.stderr)
if r.status ~= 0 then
    out:warn("deploy step " .. args[1] .. " exited with " ..
        tostring(r.status or ("signal " .. tostring(r.signal))))
    return 1
end
out:event("deployed_all", { renewed = res.renewed, command = args[1] },
    "renewed " .. table.concat(res.renewed, ", ") .. "; ran " .. args[1])
return res.code
