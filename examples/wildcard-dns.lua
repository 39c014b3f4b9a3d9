-- A wildcard certificate (example.test and *.example.test) through a DNS
-- hook, written with the library itself rather than the state directory:
-- account, hook, order, challenges and files are all in view here.
--
--   luacme run examples/wildcard-dns.lua [GLOBAL OPTIONS] DOMAIN OUTDIR [HOOK]
--
-- HOOK is a dns-01 hook spec (luacme hooks lists the built-in ones; your
-- own DNS provider hook is a Lua file, see hooks/README.md). It defaults
-- to the challtestsrv hook, which sets TXT records through the management
-- API of pebble-challtestsrv (the test CA's DNS server) at
-- $LUACME_E2E_CHALLTESTSRV or http://127.0.0.1:8055. OUTDIR receives
-- account.key (kept for the next run), privkey.pem and fullchain.pem.
--
-- Against the test CA:
--
--   python3 tests/e2e/pebble-env.py -- sh -c 'build/luacme run \
--     examples/wildcard-dns.lua --directory "$LUACME_E2E_DIRECTORY" \
--     --ca-bundle "$LUACME_E2E_CA_FILE" example.test "$LUACME_E2E_WORKDIR/out"'
local acme = require "luacme"
local core = require "luacme.core"
local hooks = require "luacme.hooks"
local cli = require "luacme.cli"

local opts, args = cli.options(arg)
if not opts or #args < 2 then
    io.stderr:write("usage: luacme run examples/wildcard-dns.lua [GLOBAL " ..
        "OPTIONS] DOMAIN OUTDIR [HOOK]\n")
    return 1
end
local domain, outdir = args[1], args[2]
local spec = args[3] or ("challtestsrv:url=" ..
    (os.getenv("LUACME_E2E_CHALLTESTSRV") or "http://127.0.0.1:8055"))
local directory = assert(cli.directory_url(opts.directory, opts.staging))

local function fail(what, err)
    io.stderr:write("wildcard-dns: ", what, ": ", tostring(err), "\n")
    return 1
end

assert(core.mkdir_p(outdir, tonumber("700", 8)))

-- The account key: made once, then reused.
local keyfile = outdir .. "/account.key"
local key
local pem = core.read_file(keyfile)
if pem then
    key = assert(core.key_load(pem))
else
    key = assert(core.key_generate("ec256"))
    assert(key:write(keyfile))
end
local client = acme.client{ directory = directory, key = key,
    ca_file = opts.ca_bundle }
local acct, err = client:register({}, acme.accept_tos)
if not acct and not acme.is_error(err, "account_exists") then
    return fail("account", err)
end

-- The DNS hook, loaded as luacme loads --hook specs.
local dns
dns, err = hooks.load(spec, "challenge")
if not dns then return fail("hook", err) end

local names = { domain, "*." .. domain }
local certkey = assert(core.key_generate("ec256"))
local csr = assert(core.csr{ key = certkey, names = names })
local res
res, err = client:issue{
    identifiers = acme.domain_ids(names), csr = csr, hooks = { dns },
    -- The base name could use http-01 too; this recipe is about DNS.
    types = { "dns-01" },
    on_event = function(_, _, text) if text then print(text) end end,
}
if not res then return fail("issue", err) end

-- Key first, then the chain: a reader never sees a chain without its key.
assert(certkey:write(outdir .. "/privkey.pem"))
assert(core.write_file(outdir .. "/fullchain.pem", table.concat(res.pems),
    tonumber("644", 8)))
local info = assert(core.cert_info(res.certs[1]))
print("issued " .. table.concat(info.names, ", ") .. ", expires " ..
    os.date("!%Y-%m-%d", info.not_after))
print("files: " .. outdir .. "/fullchain.pem, " .. outdir .. "/privkey.pem")
return 0
