-- Issue (or keep) a certificate with the webroot hook, stored in the
-- state directory with its settings, so `luacme renew` renews it later.
--
--   luacme run examples/webroot.lua [GLOBAL OPTIONS] DOCROOT NAME [NAME...]
--
-- DOCROOT is the document root your web server serves for NAME on port
-- 80; GLOBAL OPTIONS are luacme's own (--directory, --ca-bundle, --state,
-- --agree-tos, --contact, --json, -q, -v; luacme help). Exit status as
-- luacme issue: 0 issued, 2 a valid one exists already, 1 error.
--
-- Against the test CA (Pebble and a web server for the webroot, started
-- by the test harness; the names resolve to 127.0.0.1 there):
--
--   python3 tests/e2e/pebble-env.py -- sh -c 'build/luacme run \
--     examples/webroot.lua --directory "$LUACME_E2E_DIRECTORY" \
--     --ca-bundle "$LUACME_E2E_CA_FILE" --state "$LUACME_E2E_WORKDIR/st" \
--     --agree-tos "$LUACME_E2E_WEBROOT" www.example.test example.test'
local cli = require "luacme.cli"

local m <close>, args, out = cli.open(arg)
local docroot = table.remove(args, 1)
if not docroot or #args == 0 then
    io.stderr:write("usage: luacme run examples/webroot.lua [GLOBAL " ..
        "OPTIONS] DOCROOT NAME [NAME...]\n")
    return 1
end

local res, err = m:issue{
    names = args,
    hooks = { "webroot:root=" .. docroot },
    -- Reload the web server after each new certificate, e.g.:
    -- deploy_hooks = { "command:cmd=systemctl reload nginx" },
}
if not res then
    out:error(err)
    return 1
end
local files = require("luacme.state").cert_files(m.st, res.name)
if not out.json and out.level >= 0 then
    print("certificate: " .. files.fullchain_file)
    print("key:         " .. files.key_file)
end
return res.code
