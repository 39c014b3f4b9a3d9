-- Importing the state of certbot, dehydrated and acme.sh: their
-- accounts (key and URL, per CA directory: reused, never registered
-- again) and certificates (key, chain, names, key type, and the
-- challenge and deploy settings mapped to luacme hook specs), so that
-- `luacme renew` carries on where the old tool stopped.
--
--   local plan = M.read(tool, dir)    -- only reads dir; raises on errors
--   M.apply(ctx, plan)                -- writes luacme's state
--
-- A plan is { tool, dir, accounts = { { directory, uri, key_pem,
-- key_type, contact, from } }, certs = { { name, names, ips, key_pem,
-- cert_pem, chain_pem, key_type, reuse_key, must_staple,
-- preferred_chain, hooks, deploy_hooks, directory, from, not_after } },
-- unmapped = { { name, what } } }. What the source says but luacme
-- cannot do the same way goes to unmapped, in words, and is never
-- replaced by a guess. The source is only read: files are opened for
-- reading, nothing there is written, renamed or locked.
local accounts = require "luacme.accounts"
local cjson = require "cjson.safe"
local core = require "luacme.core"
local errors = require "luacme.errors"
local hooks = require "luacme.hooks"
local state = require "luacme.state"
local util = require "luacme.util"

local must, raise = errors.must, errors.raise

local M = {}

M.TOOLS = { "certbot", "dehydrated", "acme.sh" }

-- Largest file read from the source (configs, keys, chains).
local MAX_FILE = 1024 * 1024

--
-- Reading the source
--

local function read(path)
    return core.read_file(path, MAX_FILE)
end

local function must_read(path)
    local data, msg = read(path)
    if not data then raise("import", "cannot read " .. path .. ": " ..
        tostring(msg)) end
    return data
end

local function is_dir(path)
    local st = core.stat(path)
    return st and st.type == "dir"
end

local function list(dir)
    local names = core.listdir(dir) or {}
    table.sort(names)
    return names
end

local function trim(s)
    return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end

local function unquote(v)
    v = trim(v)
    local q = v:sub(1, 1)
    if (q == '"' or q == "'") and v:sub(-1) == q and #v >= 2 then
        return v:sub(2, -2)
    end
    return v
end

-- A shell file of assignments (dehydrated's config, acme.sh's .conf
-- files): VAR=value, VAR="value", VAR='value', export VAR=... Values
-- using $(...) or backquotes are code, not settings: they are left out
-- and named in the second return value. ${VAR} and $VAR of variables
-- set before (or in vars) are expanded.
local function shell_vars(text, vars)
    vars = vars or {}
    local code = {}
    for line in text:gmatch("[^\n]+") do
        line = trim(line)
        local k, v = line:match("^export%s+([%a_][%w_]*)=(.*)$")
        if not k then k, v = line:match("^([%a_][%w_]*)=(.*)$") end
        if k then
            local single = v:match("^'(.*)'$")
            if single then
                vars[k] = single
            elseif v:find("%$%(") or v:find("`") then
                code[#code + 1] = k
            else
                v = unquote(v:gsub("%s+#.*$", ""))
                v = v:gsub("%${([%a_][%w_]*)}", function(n)
                    return vars[n] or ""
                end):gsub("%$([%a_][%w_]*)", function(n)
                    return vars[n] or ""
                end)
                vars[k] = v
            end
        end
    end
    return vars, code
end

-- certbot's renewal/*.conf (configobj): top-level keys, [renewalparams]
-- and [[webroot_map]]. Returns { top = {}, renewalparams = {},
-- webroot_map = {} }.
local function configobj(text)
    local out = { top = {} }
    local cur = out.top
    for line in text:gmatch("[^\n]+") do
        line = trim(line)
        local sec = line:match("^%[+([^%]]+)%]+$")
        if sec then
            out[sec] = out[sec] or {}
            cur = out[sec]
        elseif line ~= "" and line:sub(1, 1) ~= "#" then
            local k, v = line:match("^([^=]-)%s*=%s*(.*)$")
            if k then cur[trim(k)] = unquote(v) end
        end
    end
    return out
end

-- Standard base64 (acme.sh's __ACME_BASE64__ values) to bytes.
local function b64decode(s)
    s = s:gsub("%s", ""):gsub("=+$", ""):gsub("%+", "-"):gsub("/", "_")
    return core.b64url_decode(s)
end

--
-- Keys: certbot keeps its account key as a JWK; luacme as PEM
--

local function der_len(n)
    if n < 128 then return string.char(n) end
    local s = ""
    while n > 0 do
        s = string.char(n & 255) .. s
        n = n >> 8
    end
    return string.char(0x80 | #s) .. s
end

local function tlv(tag, body)
    return string.char(tag) .. der_len(#body) .. body
end

local function der_uint(bytes)
    bytes = bytes:gsub("^%z+", "")
    if bytes == "" or bytes:byte(1) >= 128 then bytes = "\0" .. bytes end
    return tlv(0x02, bytes)
end

local CURVES = {
    ["P-256"] = { oid = "\6\8\42\134\72\206\61\3\1\7", size = 32 },
    ["P-384"] = { oid = "\6\5\43\129\4\0\34", size = 48 },
}

-- A private JWK (table) as a key object; the public part the core
-- derives must be the JWK's own, so a damaged file is caught here.
function M.jwk_key(jwk)
    local function b(name)
        local v = type(jwk[name]) == "string" and core.b64url_decode(jwk[name])
        if not v or v == "" then
            raise("invalid", "the JWK lacks its " .. name .. " member")
        end
        return v
    end
    local pem
    if jwk.kty == "RSA" then
        local body = der_uint("\0")
        for _, f in ipairs({ "n", "e", "d", "p", "q", "dp", "dq", "qi" }) do
            body = body .. der_uint(b(f))
        end
        pem = must(core.pem_encode(tlv(0x30, body), "RSA PRIVATE KEY"))
    elseif jwk.kty == "EC" and CURVES[jwk.crv] then
        local c = CURVES[jwk.crv]
        local d = b("d")
        d = string.rep("\0", c.size - #d) .. d
        local body = der_uint("\1") .. tlv(0x04, d) .. tlv(0xa0, c.oid) ..
            tlv(0xa1, tlv(0x03, "\0\4" .. b("x") .. b("y")))
        pem = must(core.pem_encode(tlv(0x30, body), "EC PRIVATE KEY"))
    else
        raise("invalid", "unsupported JWK key type " ..
            errors.printable(tostring(jwk.kty) .. " " .. tostring(jwk.crv)))
    end
    local key, msg, kind = core.key_load(pem)
    if not key then raise(kind or "invalid", "JWK: " .. tostring(msg)) end
    local pub = key:jwk()
    for _, f in ipairs({ "n", "e", "x", "y" }) do
        if pub[f] ~= nil and pub[f] ~= jwk[f] then
            raise("invalid", "the JWK's private and public parts differ")
        end
    end
    return key
end

-- A key PEM (any format OpenSSL reads) -> key object, PKCS#8 PEM.
local function load_key(pem, what)
    local key, msg, kind = core.key_load(pem)
    if not key then raise(kind or "invalid", what .. ": " .. tostring(msg)) end
    return key
end

--
-- What all three share
--

local function new_plan(tool, dir)
    return { tool = tool, dir = dir, accounts = {}, certs = {},
        unmapped = {} }
end

local function unmapped(plan, name, what)
    plan.unmapped[#plan.unmapped + 1] = { name = name, what = what }
end

local function add_account(plan, url, uri, key, contact, from)
    for _, a in ipairs(plan.accounts) do
        if state.ca_host(a.directory) == state.ca_host(url) then
            if a.uri ~= uri then
                unmapped(plan, nil, "account " .. uri .. " (" .. from ..
                    "): luacme keeps one account per CA and takes " ..
                    a.uri .. " for " .. state.ca_host(url))
            end
            return
        end
    end
    if type(uri) ~= "string" or not util.check_url(uri) then
        unmapped(plan, nil, "account in " .. from .. ": no account URL")
        return
    end
    plan.accounts[#plan.accounts + 1] = { directory = url, uri = uri,
        key_pem = key:private_pem(), key_type = key:spec(),
        contact = contact or {}, from = from }
end

-- A command run after a new certificate: a shell command line, as the
-- tool ran it. The spec round-trips through the hook spec parser, or
-- the command is listed instead.
local function command_spec(plan, name, cmd, what)
    cmd = trim(cmd or "")
    if cmd == "" then return nil end
    local spec = "command:sh=1,cmd=" .. cmd
    local p = hooks.parse_spec(spec)
    if not p or p.opts.cmd ~= cmd or cmd:find("[%z\1-\31]") then
        unmapped(plan, name, what .. " '" .. errors.printable(cmd) ..
            "' cannot be written as a hook spec; give it with " ..
            "--deploy-hook yourself")
        return nil
    end
    return spec
end

-- The certificate found at cert_path / key_path etc. Returns the entry
-- (not yet in the plan) or nil after listing why.
local function cert_entry(plan, name, files, from)
    local cert = read(files.cert)
    local keypem = read(files.key)
    if not cert or not keypem then
        unmapped(plan, name, "certificate in " .. from .. ": cert or key " ..
            "file missing; nothing to import")
        return nil
    end
    local _, blocks = util.pem_certs(cert)
    local chain = files.chain and read(files.chain) or ""
    local info = core.cert_info(cert)
    local key = core.key_load(keypem)
    if not info or not key or not core.cert_matches_key(cert, key) then
        unmapped(plan, name, "certificate in " .. from .. ": its " ..
            "certificate and key do not belong together; not imported")
        return nil
    end
    if blocks and #blocks > 1 then
        -- A certificate file holding its chain too: the leaf is the first.
        cert = blocks[1]
        if chain == "" then chain = table.concat(blocks, "", 2) end
    end
    local ok = state.check_name(name)
    if not ok then
        unmapped(plan, name, "certificate in " .. from .. ": the name " ..
            "is not a luacme certificate name; not imported")
        return nil
    end
    local e = { name = name, names = info.names or {}, ips = info.ips or {},
        key_pem = key:private_pem(), cert_pem = cert, chain_pem = chain,
        key_type = key:spec(), not_after = info.not_after, hooks = {},
        deploy_hooks = {}, from = from }
    local known = false
    for _, k in ipairs(accounts.KEY_TYPES) do
        if k == e.key_type then known = true end
    end
    if not known then
        unmapped(plan, name, "key type " .. e.key_type .. " is not one " ..
            "luacme makes; renewals use " .. accounts.DEFAULT_KEY_TYPE)
        e.key_type = accounts.DEFAULT_KEY_TYPE
    end
    return e
end

-- Walk the directories under root (a path ending in "/") up to 6 deep
-- and call visit(rel, path) for each one holding the file marker,
-- without descending into it.
local function find_leaves(root, marker, visit)
    local function walk(rel, depth)
        local path = root .. rel
        if core.stat(path .. "/" .. marker) then
            return visit(rel, path)
        end
        if depth > 6 then return end
        for _, n in ipairs(list(path)) do
            if is_dir(path .. "/" .. n) then
                walk(rel == "" and n or (rel .. "/" .. n), depth + 1)
            end
        end
    end
    walk("", 0)
end

--
-- certbot: CONFIG_DIR/accounts/<host[:port]>/<path>/<id>/{regr.json,
-- private_key.json, meta.json}, renewal/<name>.conf, live/<name>/*.pem,
-- renewal-hooks/{pre,deploy,post}/
--

local function certbot_accounts(dir)
    local found = {}             -- id -> { url, uri, key, contact, from }
    local function visit(rel, path)
        local id = rel:match("([^/]+)$")
        local url = "https://" .. rel:match("^(.*)/[^/]+$")
        local regr = cjson.decode(must_read(path .. "/regr.json")) or {}
        local jwk = cjson.decode(must_read(path .. "/private_key.json"))
        if type(jwk) ~= "table" then
            raise("import", path .. "/private_key.json is not JSON")
        end
        local body = type(regr.body) == "table" and regr.body or {}
        found[id] = { url = url, uri = regr.uri, key = M.jwk_key(jwk),
            contact = body.contact, from = path }
    end
    if is_dir(dir .. "/accounts") then
        find_leaves(dir .. "/accounts/", "regr.json", visit)
    end
    return found
end

local function certbot_hook_dir(dir, which)
    local out = {}
    local d = dir .. "/renewal-hooks/" .. which
    for _, n in ipairs(list(d)) do
        local st = core.stat(d .. "/" .. n)
        if st and st.type == "file" and st.mode & 73 ~= 0 then
            out[#out + 1] = d .. "/" .. n
        end
    end
    return out
end

-- The challenge hook of a certbot lineage, or nil after listing why.
local function certbot_challenge(plan, name, rp, map, names)
    local auth = rp.authenticator
    if auth == "webroot" then
        local roots = {}
        for _, n in ipairs(names) do
            local r = map and map[n]
            if r then roots[r] = true end
        end
        for p in (rp.webroot_path or ""):gmatch("[^,]+") do
            if next(roots) == nil then roots[trim(p)] = true end
        end
        local list_ = {}
        for r in pairs(roots) do list_[#list_ + 1] = r end
        if #list_ == 1 then return "webroot:root=" .. list_[1] end
        unmapped(plan, name, "webroot with " .. #list_ .. " document " ..
            "roots (one per name): luacme's webroot hook takes one root; " ..
            "give --hook yourself")
        return nil
    elseif auth == "standalone" then
        return "standalone"
    elseif auth == "manual" then
        unmapped(plan, name, "manual authenticator (--manual-auth-hook " ..
            tostring(rp.manual_auth_hook) .. "): certbot's CERTBOT_* hook " ..
            "protocol has no luacme counterpart; give --hook yourself")
        return nil
    end
    unmapped(plan, name, "authenticator " .. tostring(auth) .. " has no " ..
        "luacme counterpart; give --hook yourself")
    return nil
end

-- Shell command lines: cmd (unless empty) and the files of list.
local function shell_list(cmd, files)
    local out = {}
    if cmd and trim(cmd) ~= "" then out[1] = trim(cmd) end
    for _, f in ipairs(files or {}) do out[#out + 1] = f end
    return out
end

local function read_certbot(dir)
    local plan = new_plan("certbot", dir)
    if not is_dir(dir .. "/renewal") and not is_dir(dir .. "/accounts") then
        raise("import", dir .. " holds no certbot state (no renewal/ or " ..
            "accounts/)")
    end
    local accts = certbot_accounts(dir)
    local hook_deploy = certbot_hook_dir(dir, "deploy")
    local hook_pre = certbot_hook_dir(dir, "pre")
    local hook_post = certbot_hook_dir(dir, "post")
    local used = {}
    for _, f in ipairs(list(dir .. "/renewal")) do
        local name = f:match("^(.+)%.conf$")
        if name then
            local conf = configobj(must_read(dir .. "/renewal/" .. f))
            local rp = conf.renewalparams or {}
            local e = cert_entry(plan, name, { cert = conf.top.cert,
                key = conf.top.privkey, chain = conf.top.chain },
                dir .. "/renewal/" .. f)
            if e then
                e.directory = rp.server
                local a = accts[rp.account or ""]
                if a then
                    used[#used + 1] = a
                else
                    unmapped(plan, name, "account " .. tostring(rp.account) ..
                        " not found under " .. dir .. "/accounts")
                end
                e.hooks[1] = certbot_challenge(plan, name, rp,
                    conf.webroot_map, e.names)
                e.deploy_hooks[#e.deploy_hooks + 1] = command_spec(plan, name,
                    rp.renew_hook or rp.deploy_hook, "deploy hook")
                for _, h in ipairs(hook_deploy) do
                    e.deploy_hooks[#e.deploy_hooks + 1] =
                        command_spec(plan, name, h, "deploy hook")
                end
                e.pre_hooks = shell_list(rp.pre_hook, hook_pre)
                e.post_hooks = shell_list(rp.post_hook, hook_post)
                local days = (conf.top.renew_before_expiry or ""):match(
                    "^(%d+)%s*days?$")
                if days then
                    e.renew_days = math.tointeger(tonumber(days))
                elseif conf.top.renew_before_expiry then
                    unmapped(plan, name, "renew_before_expiry = " ..
                        errors.printable(conf.top.renew_before_expiry) ..
                        ": only N days maps (to --days)")
                end
                e.reuse_key = rp.reuse_key == "True"
                e.must_staple = rp.must_staple == "True"
                if rp.preferred_chain and rp.preferred_chain ~= "" then
                    e.preferred_chain = rp.preferred_chain
                end
                plan.certs[#plan.certs + 1] = e
            end
        end
    end
    -- Accounts no lineage uses still move over: they are the user's.
    local ids = {}
    for id in pairs(accts) do ids[#ids + 1] = id end
    table.sort(ids)
    for _, id in ipairs(ids) do used[#used + 1] = accts[id] end
    for _, a in ipairs(used) do
        add_account(plan, a.url, a.uri, a.key, a.contact, a.from)
    end
    return plan
end

--
-- dehydrated: BASEDIR/config (or the file given), accounts/<base64url
-- of the CA URL>/{account_key.pem, account_id.json,
-- registration_info.json}, domains.txt, certs/<name>/{privkey,cert,
-- chain}.pem and an optional certs/<name>/config
--

local function dehydrated_challenge(plan, name, v)
    local ty = v.CHALLENGETYPE or "http-01"
    local chain = v.HOOK_CHAIN == "yes" and ",chain=yes" or ""
    if ty == "http-01" then
        local wk = v.WELLKNOWN or "/var/www/dehydrated"
        if v.HOOK and v.HOOK ~= "" then
            return "exec:script=" .. v.HOOK .. ",types=http-01,wellknown=" ..
                wk .. chain
        end
        return "webroot:root=" .. wk .. ",flat=yes"
    elseif ty == "dns-01" or ty == "tls-alpn-01" then
        if v.HOOK and v.HOOK ~= "" then
            return "exec:script=" .. v.HOOK .. ",types=" .. ty .. chain
        end
        unmapped(plan, name, ty .. " without HOOK: nothing answers the " ..
            "challenge; give --hook yourself")
        return nil
    end
    unmapped(plan, name, "CHALLENGETYPE " .. errors.printable(ty) ..
        " is unknown; give --hook yourself")
    return nil
end

local function read_dehydrated(dir)
    local plan = new_plan("dehydrated", dir)
    local cfgfile = dir .. "/config"
    local st = core.stat(dir)
    if st and st.type == "file" then
        cfgfile, dir = dir, dir:match("^(.*)/[^/]*$") or "."
    end
    local v = {}
    if core.stat(cfgfile) then
        local code
        v, code = shell_vars(must_read(cfgfile), { BASEDIR = dir })
        for _, k in ipairs(code) do
            unmapped(plan, nil, "config " .. cfgfile .. ": " .. k .. " is " ..
                "computed by shell code; not read")
        end
    end
    local base = v.BASEDIR or dir
    v.BASEDIR = base
    local accdir = v.ACCOUNTDIR or (base .. "/accounts")
    local certdir = v.CERTDIR or (base .. "/certs")
    local domains_txt = v.DOMAINS_TXT or (base .. "/domains.txt")
    if not is_dir(accdir) and not core.stat(domains_txt) then
        raise("import", dir .. " holds no dehydrated state (no accounts/ " ..
            "or domains.txt)")
    end
    for _, n in ipairs(list(accdir)) do
        local path = accdir .. "/" .. n
        local url = core.b64url_decode(n)
        url = url and url:gsub("\n$", "")
        local keypem = read(path .. "/account_key.pem")
        if url and keypem and util.check_url(url) then
            local id = cjson.decode(read(path .. "/account_id.json") or "")
            local reg = cjson.decode(read(path ..
                "/registration_info.json") or "") or {}
            local uri = type(id) == "table" and (id.url or id.id) or nil
            if type(uri) ~= "string" or not uri:find("^https://") then
                uri = nil
            end
            if uri then
                add_account(plan, url, uri, load_key(keypem, path ..
                    "/account_key.pem"), reg.contact, path)
            else
                unmapped(plan, nil, "account " .. path .. ": no account " ..
                    "URL (account_id.json); run dehydrated once to " ..
                    "record it, or let luacme find it")
            end
        end
    end
    for line in (read(domains_txt) or ""):gmatch("[^\n]+") do
        line = trim(line:gsub("#.*$", ""))
        if line ~= "" then
            local names, alias = line:match("^(.-)%s*>%s*(%S+)$")
            names = names or line
            local first = names:match("^(%S+)")
            local name = alias or first
            local cv = {}
            for k, val in pairs(v) do cv[k] = val end
            if core.stat(certdir .. "/" .. name .. "/config") then
                shell_vars(must_read(certdir .. "/" .. name .. "/config"), cv)
            end
            local from = domains_txt .. ": " .. line
            local e = cert_entry(plan, name:gsub("^%*%.", "_."), {
                cert = certdir .. "/" .. name .. "/cert.pem",
                key = certdir .. "/" .. name .. "/privkey.pem",
                chain = certdir .. "/" .. name .. "/chain.pem" }, from)
            if e then
                e.directory = cv.CA
                if e.directory == nil and #plan.accounts == 1 then
                    e.directory = plan.accounts[1].directory
                end
                e.hooks[1] = dehydrated_challenge(plan, e.name, cv)
                e.reuse_key = cv.PRIVATE_KEY_RENEW == "no"
                if cv.PREFERRED_CHAIN and cv.PREFERRED_CHAIN ~= "" then
                    e.preferred_chain = cv.PREFERRED_CHAIN
                end
                plan.certs[#plan.certs + 1] = e
            end
        end
    end
    return plan
end

--
-- acme.sh: ~/.acme.sh/ca/<host>/<path>/{account.key, account.json,
-- ca.conf}, <domain>[_ecc]/<domain>.{key,cer,conf}, ca.cer,
-- fullchain.cer
--

local function acmesh_value(s)
    if not s then return nil end
    local b = s:match("^__ACME_BASE64__START_(.*)__ACME_BASE64__END_$")
    if b then return b64decode(b) end
    return s
end

local function acmesh_challenge(plan, name, home, w)
    if not w or w == "" then
        unmapped(plan, name, "no Le_Webroot: the challenge method is " ..
            "unknown; give --hook yourself")
        return nil
    end
    if w == "no" then return "standalone" end
    if w == "alpn" then return "tls-alpn" end
    local dns = w:match("^(dns_[%w_]+)$")
    if dns then
        unmapped(plan, name, "DNS provider " .. dns .. ": its " ..
            "credentials (account.conf SAVED_*) are not copied; set them " ..
            "in the environment and pass them with env=")
        return "acmesh:script=" .. home .. "/dnsapi/" .. dns .. ".sh"
    end
    if w:sub(1, 1) == "/" and not w:find(",", 1, true) then
        return "webroot:root=" .. w
    end
    unmapped(plan, name, "Le_Webroot '" .. errors.printable(w) .. "' " ..
        "(apache, nginx, manual dns or several roots) has no luacme " ..
        "counterpart; give --hook yourself")
    return nil
end

local function read_acmesh(dir)
    local plan = new_plan("acme.sh", dir)
    if not is_dir(dir .. "/ca") then
        raise("import", dir .. " holds no acme.sh state (no ca/)")
    end
    -- acme.sh files an account under ca/<host>/<path>, the host without
    -- its port: the certificates' Le_API gives the full URL back.
    local apis = {}
    for _, n in ipairs(list(dir)) do
        local domain = n:gsub("_ecc$", "")
        local f = dir .. "/" .. n .. "/" .. domain .. ".conf"
        local api = core.stat(f) and shell_vars(must_read(f)).Le_API
        if api then
            local host, path = api:match("^https://([^/:]+)[^/]*/(.*)$")
            if host then apis[host .. "/" .. path] = api end
        end
    end
    find_leaves(dir .. "/ca/", "account.key", function(rel, path)
        local conf = shell_vars(read(path .. "/ca.conf") or "")
        local acct = cjson.decode(read(path .. "/account.json") or "")
        local uri = conf.ACCOUNT_URL
        if uri then
            add_account(plan, apis[rel] or ("https://" .. rel), uri,
                load_key(must_read(
                path .. "/account.key"), path .. "/account.key"),
                type(acct) == "table" and acct.contact or nil, path)
        else
            unmapped(plan, nil, "account " .. path .. ": no " ..
                "ACCOUNT_URL in ca.conf")
        end
    end)
    for _, n in ipairs(list(dir)) do
        local domain = n:gsub("_ecc$", "")
        local cd = dir .. "/" .. n
        local conffile = cd .. "/" .. domain .. ".conf"
        if n ~= "ca" and is_dir(cd) and core.stat(conffile) then
            local c = shell_vars(must_read(conffile))
            local name = domain:gsub("^%*%.", "_.")
            local e = cert_entry(plan, name, {
                cert = cd .. "/" .. domain .. ".cer",
                key = cd .. "/" .. domain .. ".key",
                chain = cd .. "/ca.cer" }, conffile)
            if e then
                e.directory = c.Le_API
                e.hooks[1] = acmesh_challenge(plan, name, dir, c.Le_Webroot)
                e.deploy_hooks[#e.deploy_hooks + 1] = command_spec(plan, name,
                    acmesh_value(c.Le_ReloadCmd), "Le_ReloadCmd")
                e.deploy_hooks[#e.deploy_hooks + 1] = command_spec(plan, name,
                    acmesh_value(c.Le_RenewHook), "Le_RenewHook")
                e.pre_hooks = shell_list(acmesh_value(c.Le_PreHook))
                e.post_hooks = shell_list(acmesh_value(c.Le_PostHook))
                local dh = acmesh_value(c.Le_DeployHook)
                if dh and dh ~= "" then
                    unmapped(plan, name, "Le_DeployHook '" ..
                        errors.printable(dh) .. "' (acme.sh's deploy " ..
                        "scripts) has no luacme counterpart; give " ..
                        "--deploy-hook yourself")
                end
                if c.Le_RenewalDays and c.Le_RenewalDays ~= "" then
                    unmapped(plan, name, "Le_RenewalDays " ..
                        errors.printable(c.Le_RenewalDays) .. " (renew N " ..
                        "days after issue): luacme renews by what is left " ..
                        "(--days N: fewer than N days left)")
                end
                e.reuse_key = c.Le_ReuseKey == "1"
                if c.Le_Preferred_Chain and c.Le_Preferred_Chain ~= "" then
                    e.preferred_chain = acmesh_value(c.Le_Preferred_Chain)
                end
                plan.certs[#plan.certs + 1] = e
            end
        end
    end
    return plan
end

local READERS = { certbot = read_certbot, dehydrated = read_dehydrated,
    ["acme.sh"] = read_acmesh }
M.DEFAULT_DIRS = { certbot = "/etc/letsencrypt",
    dehydrated = "/etc/dehydrated", ["acme.sh"] = "~/.acme.sh" }

-- The plan for importing tool's state from dir (default: the tool's
-- usual place; ~ is env.HOME). Raises error tables.
function M.read(tool, dir, env)
    local reader = READERS[tool]
    if not reader then
        raise("usage", "import knows " .. table.concat(M.TOOLS, ", ") ..
            ", not " .. errors.printable(tostring(tool)))
    end
    dir = dir or M.DEFAULT_DIRS[tool]
    if dir:sub(1, 2) == "~/" then
        dir = ((env or core.environ()).HOME or "") .. dir:sub(2)
    end
    dir = dir:gsub("(.)/+$", "%1")
    if not core.stat(dir) then
        raise("not_found", dir .. " does not exist")
    end
    local plan = reader(dir)
    for _, e in ipairs(plan.certs) do
        if not e.directory then
            unmapped(plan, e.name, "the CA is not recorded; renewals use " ..
                "the CA given then (--directory)")
        end
    end
    return plan
end

--
-- Writing luacme's state
--

-- Apply plan to the context's state. Each account and certificate
-- already there is left alone (reported as "exists"; an account of
-- another URL for the same CA as a conflict). Returns { accounts = {
-- { directory, uri, status } }, certs = { { name, status } } } with
-- status "imported", "exists" or "conflict".
function M.apply(ctx, plan)
    local res = { accounts = {}, certs = {} }
    for _, a in ipairs(plan.accounts) do
        local lk <close> = must(state.lock_account(ctx.st, a.directory,
            ctx.lock_timeout))
        local cur = state.read_account(ctx.st, a.directory)
        local status = "imported"
        if cur and cur.uri == a.uri then
            status = "exists"
        elseif cur or ctx.st:exists(must(state.account_dir(a.directory)) ..
            "/account.key") then
            status = "conflict"
        else
            local key = must(core.key_load(a.key_pem))
            must(key:write(must(state.account_key_path(ctx.st,
                a.directory))))
            must(state.write_account(ctx.st, a.directory, {
                uri = a.uri, directory = a.directory, status = "valid",
                contact = util.array(a.contact or {}), key_type = a.key_type,
                created_at = ctx.now(),
                imported_from = { tool = plan.tool, path = a.from } }))
        end
        res.accounts[#res.accounts + 1] = { directory = a.directory,
            uri = a.uri, status = status, existing = cur and cur.uri }
    end
    for _, e in ipairs(plan.certs) do
        local lk <close> = must(state.lock_cert(ctx.st, e.name,
            ctx.lock_timeout))
        local status = "imported"
        if state.read_meta(ctx.st, e.name) then
            status = "exists"
        else
            local info = must(core.cert_info(e.cert_pem))
            local meta = {
                names = util.array(e.names), ips = util.array(e.ips),
                key_type = e.key_type, reuse_key = e.reuse_key or false,
                must_staple = e.must_staple or false,
                hooks = util.array(e.hooks),
                deploy_hooks = util.array(e.deploy_hooks),
                preferred_chain = e.preferred_chain, directory = e.directory,
                pre_hooks = e.pre_hooks and #e.pre_hooks > 0 and
                    util.array(e.pre_hooks) or nil,
                post_hooks = e.post_hooks and #e.post_hooks > 0 and
                    util.array(e.post_hooks) or nil,
                renew_days = e.renew_days,
                issued_at = info.not_before, not_before = info.not_before,
                not_after = info.not_after, serial = info.serial,
                issuer = info.issuer_cn or info.issuer,
                imported_from = { tool = plan.tool, path = e.from,
                    time = ctx.now() },
            }
            must(state.install_cert(ctx.st, e.name, { key_pem = e.key_pem,
                cert_pem = e.cert_pem, chain_pem = e.chain_pem,
                meta = meta }))
        end
        res.certs[#res.certs + 1] = { name = e.name, status = status }
    end
    return res
end

return M
