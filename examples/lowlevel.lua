-- The Go-style low-level flow (golang.org/x/crypto/acme): account,
-- order, one http-01 challenge per authorization written into a web
-- root, finalize, files. Nothing is stored in luacme's state.
--
--   luacme run examples/lowlevel.lua [GLOBAL OPTIONS] OUTDIR DOCROOT NAME...
local acme = require "luacme"
local cli = require "luacme.cli"
local core = acme.core          -- luacme.core, failing as nil, err table

local opts, args = cli.options(arg)
local outdir, docroot = args[1], args[2]
local names = table.move(args, 3, #args, 1, {})
if not opts or not docroot or #names == 0 then
    io.stderr:write("usage: lowlevel.lua [GLOBAL OPTIONS] OUTDIR DOCROOT NAME...\n")
    return 1
end

-- Every call fails alike (nil, err table): one way out.
local function check(v, err, ...)
    if v == nil then
        io.stderr:write("lowlevel: ", tostring(err), "\n")
        os.exit(1)
    end
    return v, err, ...
end

check(core.mkdir_p(outdir, tonumber("700", 8)))
local keyfile = outdir .. "/account.key"
local pem = core.read_file(keyfile)     -- made once, then reused
local key
if pem then key = check(core.key_load(pem)) else
    key = check(core.key_generate("ec256"))
    check(acme.errors.from(key:write(keyfile)))
end

local client = acme.client{ ca_file = opts.ca_bundle,
    directory = check(cli.directory_url(opts.directory, opts.staging)),
    key = key }
local _, err = client:register({}, acme.accept_tos)
if err and err.kind ~= "account_exists" then check(nil, err) end

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
        if not chal then check(nil, acme.errors.new("unsolvable",
            "no http-01 challenge for " .. authz.identifier.value)) end
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
check(acme.errors.from(certkey:write(outdir .. "/privkey.pem")))
local pems = {}
for i, der in ipairs(ders) do pems[i] = check(core.pem_encode(der)) end
check(core.write_file(outdir .. "/fullchain.pem", table.concat(pems),
    tonumber("644", 8)))
local info = check(core.cert_info(ders[1]))
print("issued " .. table.concat(info.names, ", ") .. ", serial " ..
    info.serial .. ", expires " .. os.date("!%Y-%m-%d", info.not_after))
return 0
