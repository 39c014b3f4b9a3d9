-- The Go-style low-level flow (golang.org/x/crypto/acme): account,
-- order, one http-01 challenge per authorization written into a web
-- root, finalize, files. Nothing is stored in luacme's state.
--
--   luacme run examples/lowlevel.lua [GLOBAL OPTIONS] OUTDIR DOCROOT NAME...
local acme = require "luacme"
local core = require "luacme.core"
local cli = require "luacme.cli"

local opts, args = cli.options(arg)
local outdir, docroot = args[1], args[2]
local names = table.move(args, 3, #args, 1, {})
if not opts or not docroot or #names == 0 then
    io.stderr:write("usage: lowlevel.lua [GLOBAL OPTIONS] OUTDIR DOCROOT NAME...\n")
    return 1
end

-- Client calls fail with nil, err (a table); core calls with nil,
-- message, kind; both end the recipe here.
local function check(v, err, kind, ...)
    if v then return v, err, kind, ... end
    if type(err) == "string" then
        err = acme.errors.new(kind or "error", err)
    end
    io.stderr:write("lowlevel: ", tostring(err), "\n")
    os.exit(1)
end

check(core.mkdir_p(outdir, tonumber("700", 8)))
local keyfile = outdir .. "/account.key"
local pem = core.read_file(keyfile)
local key = pem and check(core.key_load(pem)) or
    check(core.key_generate("ec256"))
if not pem then check(key:write(keyfile)) end

local client = acme.client{ ca_file = opts.ca_bundle,
    directory = check(cli.directory_url(opts.directory, opts.staging)),
    key = key }
local _, err = client:register({}, acme.accept_tos)
if err and not acme.is_error(err, "account_exists") then check(nil, err) end

local order = check(client:authorize_order(acme.domain_ids(names)))
local wk = docroot .. "/.well-known/acme-challenge"
check(core.mkdir_p(wk, tonumber("755", 8)))
for _, url in ipairs(order.authz_urls) do
    local authz = check(client:get_authorization(url))
    if authz.status == "pending" then
        local chal
        for _, c in ipairs(authz.challenges) do
            if c.type == "http-01" then chal = c end
        end
        if not chal then check(nil, "no http-01 challenge for " ..
            authz.identifier.value, "unsolvable") end
        local file = wk .. "/" .. chal.token
        check(core.write_file(file,
            client:http01_challenge_response(chal.token), tonumber("644", 8)))
        local ok, aerr = client:accept(chal)
        if ok then ok, aerr = client:wait_authorization(url) end
        os.remove(file)
        check(ok, aerr)
    end
end

local certkey = check(core.key_generate("ec256"))
local csr = check(core.csr{ key = certkey, names = names })
local ders = check(client:create_order_cert(order.finalize_url, csr, true,
    { order_url = order.uri }))
check(certkey:write(outdir .. "/privkey.pem"))
local pems = {}
for i, der in ipairs(ders) do pems[i] = check(core.pem_encode(der, "CERTIFICATE")) end
check(core.write_file(outdir .. "/fullchain.pem", table.concat(pems),
    tonumber("644", 8)))
local info = check(core.cert_info(ders[1]))
print("issued " .. table.concat(info.names, ", ") .. ", serial " ..
    info.serial .. ", expires " .. os.date("!%Y-%m-%d", info.not_after))
return 0
