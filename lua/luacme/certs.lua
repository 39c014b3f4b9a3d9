-- Certificates kept in the state directory: issue, renew, revoke and
-- list. The functions take the operations context of luacme.manage
-- (ctx) and raise error tables; luacme.manage runs them under
-- errors.protect, so recipes get nil, err.
--
-- Every operation on a certificate holds its lock (waiting up to
-- ctx.lock_timeout seconds). A failed or interrupted run never touches
-- the working certificate: state.install_cert switches to a new set
-- only once it is complete (and checks it matches its key), keeping
-- the previous one as *.prev.
local accounts = require "luacme.accounts"
local client = require "luacme.client"
local core = require "luacme.core"
local errors = require "luacme.errors"
local hooks = require "luacme.hooks"
local ident = require "luacme.ident"
local issuance = require "luacme.issuance"
local output = require "luacme.output"
local renew = require "luacme.renew"
local sched = require "luacme.sched"
local state = require "luacme.state"
local util = require "luacme.util"

local must, raise = errors.must, errors.raise

local M = {}

--
-- Settings
--

-- The settings a certificate is issued with; stored in meta.json and
-- reused by renew.
M.SETTINGS = { "names", "ips", "key_type", "reuse_key", "must_staple",
    "hooks", "deploy_hooks", "preferred_chain", "profile", "valid_for",
    "directory", "ca_bundle", "types", "renew_days", "pre_hooks",
    "post_hooks" }

-- Hook paths made absolute, so a renewal from cron (another working
-- directory) still finds them.
local function absolute_spec(spec, env)
    local head, rest = spec:match("^([^:]*)(.*)$")
    if head:find("/", 1, true) and head:sub(1, 1) ~= "/" then
        local pwd = env and env.PWD
        if pwd and pwd:sub(1, 1) == "/" then
            head = pwd .. "/" .. head:gsub("^%./", "")
        end
    end
    return head .. rest
end

-- dns_wait: the hook spec with dns_wait=N added, for hooks that take
-- that option (the dns-01 providers) and were not given one; any other
-- spec unchanged. Kept in the stored spec, so renewals wait alike. The
-- hook is loaded here once and kept in loaded[spec] for the issuance.
local function with_dns_wait(spec, seconds, loaded)
    local h = hooks.load(spec, "challenge")
    if not h or h.opts.dns_wait ~= nil then return spec end
    for _, o in ipairs(h.options or {}) do
        if o.name == "dns_wait" then
            local p = hooks.parse_spec(spec)
            local sep = next(p.opts or {}) and "," or ":"
            local n = string.format("%d", seconds)
            h.opts.dns_wait = n
            spec = spec .. sep .. "dns_wait=" .. n
            break
        end
    end
    loaded[spec] = h
    return spec
end

-- A bad name is kind "identifier", as the protocol client says it
-- (client:authorize_order), so a recipe branches on one kind.
local function unique_names(list, check, what, seen, itype)
    local out = {}
    for _, n in ipairs(list or {}) do
        local v, why = check(n)
        if not v then
            raise("identifier", "bad " .. what .. " '" ..
                errors.printable(n) .. "': " .. why,
                { identifier = { type = itype, value = tostring(n) } })
        end
        if not seen[v] then
            seen[v] = true
            out[#out + 1] = v
        end
    end
    return out
end

-- The challenge types a settings' types = { ... } may name.
local TYPES = { ["http-01"] = true, ["dns-01"] = true,
    ["tls-alpn-01"] = true }

local function check_types(list)
    if type(list) ~= "table" or #list == 0 then
        error("types: a non-empty list of challenge types expected", 0)
    end
    for _, ty in ipairs(list) do
        if not TYPES[ty] then
            error("types: unknown challenge type " .. tostring(ty), 0)
        end
    end
    return list
end

-- inline_hook(h, role, i): a hook table given by a recipe for one run
-- (not stored in meta.json), as the loaded ones look: a challenge hook
-- { types, deploy, cleanup, ready?, ... } or a deploy hook { deploy_cert }
-- or, for role "deploy", a function(cert) -> true | nil, err. A wrong
-- shape is the caller's mistake and raises.
function M.inline_hook(h, role, i)
    if role == "deploy" and type(h) == "function" then
        local fn = h
        h = { name = "deploy function",
            deploy_cert = function(cert) return fn(cert) end }
    end
    if type(h) ~= "table" then
        error(role .. " hook " .. tostring(i) .. ": " .. (role == "deploy"
            and "a table with deploy_cert or a function" or "a table") ..
            " expected", 0)
    end
    if role == "challenge" and (type(h.types) ~= "table" or
        type(h.deploy) ~= "function" or type(h.cleanup) ~= "function") then
        error("hook " .. tostring(i) .. ": a challenge hook table needs " ..
            "types, deploy and cleanup (hooks/README.md)", 0)
    end
    if role == "deploy" and type(h.deploy_cert) ~= "function" then
        error("deploy hook " .. tostring(i) .. ": a table with deploy_cert " ..
            "or a function expected", 0)
    end
    local hook = { name = h.name or ("lua " .. role .. " hook " ..
        tostring(i)), opts = h.opts or {}, types = h.types }
    for _, f in ipairs(hooks.FUNCTIONS) do hook[f] = h[f] end
    return hook
end

-- Check and normalise settings s (a fresh table back). ctx gives the
-- defaults (directory, CA bundle).
-- A DNS name a CA can issue for: ident.domain's checks, and at least
-- two labels (a single label is no name in the public DNS).
local function cert_domain(n)
    local v, why = ident.domain(n)
    if v and not v:gsub("^%*%.", ""):find(".", 1, true) then
        return nil, "a single label; CAs issue only for names with a " ..
            "dot (e.g. host.example.com)"
    end
    return v, why
end

function M.settings(ctx, s)
    local out, seen = {}, {}
    out.names = unique_names(s.names or s.domains, cert_domain,
        "domain name", seen, "dns")
    out.ips = unique_names(s.ips, ident.ip, "IP address", seen, "ip")
    if #out.names + #out.ips == 0 then
        raise("usage", "no names to issue for", { option = "domain" })
    end
    out.name = s.name or state.default_name(out.names[1] or out.ips[1])
    must(state.check_name(out.name))
    out.key_type = accounts.check_key_type(s.key_type or
        accounts.DEFAULT_KEY_TYPE)
    out.reuse_key = s.reuse_key and true or false
    out.must_staple = s.must_staple and true or false
    out.preferred_chain = s.preferred_chain
    out.profile = s.profile
    out.valid_for = s.valid_for
    out.renew_days = s.renew_days
    -- Commands run once per run around all orders (certbot's pre and
    -- post hooks), only when something is ordered.
    out.pre_hooks = s.pre_hooks and #s.pre_hooks > 0 and s.pre_hooks or nil
    out.post_hooks = s.post_hooks and #s.post_hooks > 0 and s.post_hooks or
        nil
    out.directory = s.directory or ctx.directory
    out.ca_bundle = s.ca_bundle or ctx.ca_file
    out.types = s.types and util.array(check_types(s.types)) or nil
    local env = core.environ()
    out.hooks, out.deploy_hooks, out.loaded = {}, {}, {}
    out.inline, out.inline_deploy = {}, {}
    for i, h in ipairs(s.hooks or {}) do
        if type(h) == "table" then
            out.inline[#out.inline + 1] = M.inline_hook(h, "challenge", i)
        else
            h = absolute_spec(h, env)
            if s.dns_wait then h = with_dns_wait(h, s.dns_wait, out.loaded) end
            out.hooks[#out.hooks + 1] = h
        end
    end
    for i, h in ipairs(s.deploy_hooks or {}) do
        if type(h) == "table" then
            out.inline_deploy[#out.inline_deploy + 1] =
                M.inline_hook(h, "deploy", i)
        else
            out.deploy_hooks[#out.deploy_hooks + 1] = absolute_spec(h, env)
        end
    end
    if s.deploy ~= nil then
        out.inline_deploy[#out.inline_deploy + 1] =
            M.inline_hook(s.deploy, "deploy", "deploy")
    end
    return out
end

-- The stored settings of a certificate (meta.json) as issue settings.
local function settings_of(name, meta)
    local s = { name = name }
    for _, k in ipairs(M.SETTINGS) do s[k] = meta[k] end
    s.names = s.names or {}
    s.ips = s.ips or {}
    s.hooks = s.hooks or {}
    s.deploy_hooks = s.deploy_hooks or {}
    return s
end

local function load_hooks(specs, role, loaded)
    local list = {}
    for _, spec in ipairs(specs or {}) do
        list[#list + 1] = (loaded or {})[spec] or must(hooks.load(spec, role))
    end
    return list
end

local function same_set(a, b)
    local set = {}
    for _, v in ipairs(a or {}) do set[v:lower()] = true end
    local n = 0
    for _, v in ipairs(b or {}) do
        if not set[v:lower()] then return false end
        n = n + 1
    end
    local m = 0
    for _ in pairs(set) do m = m + 1 end
    return m == n
end

local function all_names(s)
    local t = {}
    for _, n in ipairs(s.names or {}) do t[#t + 1] = n end
    for _, n in ipairs(s.ips or {}) do t[#t + 1] = n end
    return t
end

local function identifiers(s)
    local ids = {}
    for _, n in ipairs(s.names) do
        ids[#ids + 1] = { type = "dns", value = n }
    end
    for _, a in ipairs(s.ips) do ids[#ids + 1] = { type = "ip", value = a } end
    return ids
end

-- Names and IP addresses of a DER PKCS#10 CSR (its subjectAltName; the
-- subject CN when there is none), read by the C core after it checked
-- the CSR's self-signature. Returns names, ips or nil, err.
function M.csr_names(der)
    local info = core.csr_info(der)
    if not info then
        return nil, errors.new("invalid", "the CSR is not a DER or PEM " ..
            "PKCS#10 request")
    end
    local names, ips = info.names, info.ips
    if #names == 0 and #ips == 0 and info.cn then names = { info.cn } end
    if #names == 0 and #ips == 0 then
        return nil, errors.new("invalid", "the CSR names no domain or IP " ..
            "address")
    end
    return names, ips
end

--
-- State kept beside a certificate
--

-- A short text of an error for meta.json's last_error.
local function error_record(err, now)
    local rec = { time = now }
    if type(err) == "table" then
        rec.message = (output.error_lines(err))[1]
        rec.kind = err.kind
        rec.type = err.type
        if type(err.identifier) == "table" then
            rec.identifier = err.identifier.value
        end
    else
        rec.message = tostring(err)
    end
    return rec
end

-- Record a failure in meta.json of certificate name (lock held); only
-- for certificates that exist.
local function record_error(ctx, name, err)
    local meta = state.read_meta(ctx.st, name)
    if not meta then return end
    meta.last_error = error_record(err, ctx.now())
    local ok, werr = state.write_meta(ctx.st, name, meta)
    if not ok then ctx.out:warn("cannot record the error: " ..
        tostring(werr)) end
end

-- Fetch ARI for cert_pem when the CA offers it and it is time (meta.ari
-- updated in place). Failures only delay the next check. c: a client of
-- the CA (made from url and ca_file when nil). Returns true when
-- meta.ari changed.
local function refresh_ari(ctx, url, ca_file, cert_pem, meta, c)
    local now = ctx.now()
    local ari = meta.ari
    if type(ari) == "table" and ari.next_check and now < ari.next_check then
        return false
    end
    c = c or ctx:client(url, nil, nil, ca_file)
    local dir, derr = c:discover()
    if not dir then return false, derr end
    if not dir.renewal_info then return false end
    local info, err = c:get_renewal_info(cert_pem)
    ari = type(ari) == "table" and ari or {}
    if info then
        ari.cert_id = info.cert_id
        ari.window_start, ari.window_end = info.start, info["end"]
        ari.explanation_url = info.explanation_url
        ari.next_check = renew.next_ari_check(info.retry_after, now)
    else
        ari.next_check = renew.next_ari_check(nil, now)
        ctx.out:debug("renewal information: " .. tostring(err))
    end
    meta.ari = ari
    return true, err
end

-- The deploy_cert / unchanged_cert argument for certificate name.
local function cert_arg(ctx, name, s, changed)
    local files = must(state.cert_files(ctx.st, name))
    -- domains: the older name of names, kept for hooks written for it.
    local names = all_names(s)
    return { name = name, names = names, domains = names,
        key_file = files.key_file,
        cert_file = files.cert_file, fullchain_file = files.fullchain_file,
        chain_file = files.chain_file, timestamp = ctx.now(),
        changed = changed }
end

--
-- Issuing
--

-- The key and CSR of a new certificate: the stored key with reuse_key,
-- else a fresh one; never the account key.
local function key_and_csr(s, existing, account_key)
    local key
    if s.reuse_key and existing then
        key = must(core.key_load(existing.key_pem))
    else
        key = accounts.new_key(s.key_type)
    end
    if key:thumbprint() == account_key:thumbprint() then
        raise("usage", "the certificate key is the account key; refusing")
    end
    local csr, msg, kind = core.csr{ key = key, names = s.names, ips = s.ips,
        must_staple = s.must_staple }
    if not csr then raise(kind or "invalid", msg) end
    return key, csr
end

-- Store what the CA issued for s (lock held) and run the deploy hooks.
local function install(ctx, s, res, key, acct, c, dhooks)
    local cert_pem = res.pems[1]
    local chain_pem = table.concat(res.pems, "", 2)
    local info = must(core.cert_info(cert_pem))
    if not same_set(info.names, s.names) or not same_set(info.ips, s.ips) then
        raise("response", "the CA's certificate names " ..
            table.concat(info.names, ", ") .. " differ from the request")
    end
    local meta = {}
    for _, k in ipairs(M.SETTINGS) do meta[k] = s[k] end
    for _, k in ipairs({ "pre_hooks", "post_hooks" }) do
        if meta[k] then meta[k] = util.array(meta[k]) end
    end
    meta.names, meta.ips = util.array(s.names), util.array(s.ips)
    meta.hooks = util.array(s.hooks)
    meta.deploy_hooks = util.array(s.deploy_hooks)
    meta.cert_url = res.cert_url
    meta.order_url = res.order and res.order.uri
    meta.account = acct.uri
    meta.issued_at = ctx.now()
    meta.not_before, meta.not_after = info.not_before, info.not_after
    meta.serial = info.serial
    meta.issuer = info.issuer_cn or info.issuer
    refresh_ari(ctx, s.directory, s.ca_bundle, cert_pem, meta, c)
    local set = { key_pem = key:private_pem(), cert_pem = cert_pem,
        chain_pem = chain_pem, meta = meta }
    -- A fleet: the shared store first, fenced; a node that lost its
    -- lock installs nothing.
    if ctx.fleet then ctx.fleet:publish(s.name, set) end
    must(state.install_cert(ctx.st, s.name, set))
    key:close()
    ctx:emit("issued", { name = s.name, names = util.array(all_names(s)),
        serial = info.serial, not_before = output.time(info.not_before),
        not_after = output.time(info.not_after), issuer = meta.issuer,
        dir = ctx.st:path(must(state.cert_dir(s.name))) },
        "issued " .. s.name .. ", expires " .. output.date(info.not_after))

    local failed
    local arg = cert_arg(ctx, s.name, s, true)
    for _, h in ipairs(dhooks) do
        local ok, derr = hooks.call(h, "deploy_cert", arg)
        ctx:emit("deploy_hook", { hook = h.name, name = s.name,
            ok = ok and true or false, error = derr and derr.detail or nil },
            ok and (s.name .. ": deploy hook " .. h.name .. " done") or nil)
        if not ok then failed = failed or derr end
    end
    if failed then
        raise("deploy", s.name .. " was issued and installed, but a " ..
            "deploy hook failed: " .. tostring(failed.detail),
            { cause = failed, hook = failed.hook })
    end
    return { code = 0, name = s.name, names = all_names(s),
        serial = info.serial, not_after = info.not_after,
        not_before = info.not_before, issuer = meta.issuer, renewed = true }
end

-- A given CSR's chain written to s.out_file; nothing stored.
local function write_chain(ctx, s, res)
    must(core.write_file(s.out_file, table.concat(res.pems), 420))
    local info = must(core.cert_info(res.pems[1]))
    local all = all_names(s)
    ctx:emit("issued", { name = s.name, names = util.array(all),
        serial = info.serial, not_after = output.time(info.not_after),
        file = s.out_file }, "issued " .. s.name .. ", expires " ..
        output.date(info.not_after) .. "; chain written to " .. s.out_file)
    return { code = 0, name = s.name, names = all, serial = info.serial,
        not_after = info.not_after, file = s.out_file }
end

-- One issuance for settings s (certificate lock held). existing: the
-- current set or nil; why: the reason told. With csr (DER of a CSR
-- whose key is not ours) the chain goes to s.out_file instead of the
-- state. Returns the result table; raises on failure.
local function issue_cert(ctx, s, existing, why, csr)
    local chooks = load_hooks(s.hooks, "challenge", s.loaded)
    for i, h in ipairs(s.inline or {}) do table.insert(chooks, i, h) end
    local dhooks = csr and {} or load_hooks(s.deploy_hooks, "deploy")
    for _, h in ipairs(s.inline_deploy or {}) do dhooks[#dhooks + 1] = h end
    if #chooks == 0 then
        raise("usage", "no challenge hook given", { option = "hook" })
    end
    if not csr then dhooks = hooks.deploy_list(chooks, dhooks) end
    -- --timeout bounds the whole issuance from here: the clients made
    -- for it stop retrying and polling at ctx.deadline (A#9.4).
    ctx.deadline = ctx.now() + ctx.timeout
    local _ <close> = setmetatable({}, { __close = function()
        ctx.deadline = nil
    end })
    local c, acct = accounts.open(ctx, s.directory, true,
        { ca_file = s.ca_bundle })
    local key
    if not csr then key, csr = key_and_csr(s, existing, c.key) end
    local dir = must(c:discover())
    local replaces
    if existing and dir.renewal_info then
        replaces = client.cert_id(existing.cert_pem)
    end
    local all = {}
    for _, h in ipairs(chooks) do all[#all + 1] = h end
    for _, h in ipairs(dhooks) do all[#all + 1] = h end
    local sess = ctx:session()
    must(sess:add(all))
    ctx:around(s.pre_hooks, s.post_hooks)
    local names = all_names(s)
    ctx:emit("order", { name = s.name, identifiers = util.array(names),
        reason = why }, s.name .. ": ordering a certificate for " ..
        table.concat(names, ", ") .. (why and (" (" .. why .. ")") or ""))
    local res, err = issuance.issue(c, {
        identifiers = identifiers(s), csr = csr, hooks = chooks,
        types = s.run_types or s.types,
        on_event = function(...) ctx:emit(...) end,
        timeout = ctx.timeout,
        not_after = s.valid_for and (ctx.now() + s.valid_for) or nil,
        profile = s.profile, replaces = replaces,
        preferred_chain = s.preferred_chain,
    })
    if not res then
        sess:failure(err, all)
        error(err, 0)
    end
    if not key then return write_chain(ctx, s, res) end
    return install(ctx, s, res, key, acct, c, dhooks)
end

-- Hooks given to issue for a certificate that is valid already are
-- stored for its renewals, never dropped: a list given and different
-- from the stored one replaces it (lock held). Returns what changed
-- ("hooks", "deploy hooks", "hooks and deploy hooks") or nil.
local function keep_hooks(ctx, s, meta)
    local what = {}
    for _, k in ipairs({ "hooks", "deploy_hooks", "pre_hooks",
        "post_hooks" }) do
        local new, old = s[k] or {}, meta[k] or {}
        if #new > 0 and table.concat(new, "\n") ~= table.concat(old, "\n") then
            meta[k] = util.array(new)
            what[#what + 1] = (k:gsub("_", " "))
        end
    end
    if #what == 0 then return nil end
    must(state.write_meta(ctx.st, s.name, meta))
    return table.concat(what, " and ")
end

-- Issue with settings s under the certificate lock (held). opts.force
-- skips the "a valid one exists" check; opts.reason says why.
local function issue_locked(ctx, s, opts)
    opts = opts or {}
    local existing, rerr = state.read_cert(ctx.st, s.name)
    -- A deleted certificate's files are no certificate to keep.
    if existing and existing.meta.deleted then existing = nil end
    if not existing and rerr and rerr.kind ~= "not_found" then
        ctx.out:warn("certificate " .. s.name .. ": " .. tostring(rerr) ..
            "; issuing a new one")
    end
    if existing and not opts.force then
        local info = core.cert_info(existing.cert_pem)
        if info and ctx.now() < info.not_after and
            same_set(info.names, s.names) and same_set(info.ips, s.ips) and
            not existing.meta.revoked then
            local kept = keep_hooks(ctx, s, existing.meta)
            ctx:emit("unchanged", { name = s.name,
                not_after = output.time(info.not_after),
                settings_updated = kept or nil }, s.name ..
                ": a valid certificate with these names exists (expires " ..
                output.date(info.not_after) .. "); " .. (kept and
                ("not issued again; its " .. kept .. " now apply to " ..
                "renewals (--force issues now)") or "nothing to do"))
            return { code = 2, name = s.name, names = all_names(s),
                serial = info.serial, not_before = info.not_before,
                not_after = info.not_after, issuer = existing.meta.issuer or
                info.issuer_cn or info.issuer, renewed = false,
                unchanged = true, settings_updated = kept }
        end
    end
    local ok, res = pcall(issue_cert, ctx, s, existing, opts.reason)
    if not ok then
        record_error(ctx, s.name, res)
        error(res, 0)
    end
    return res
end

-- Set below (it needs the stored settings).
local deploy_synced

local function lock_cert(ctx, name)
    if ctx.fleet then
        local lk, changed = ctx.fleet:lock_cert(name, ctx.lock_timeout)
        if changed then
            ctx.fleet_installed = (ctx.fleet_installed or 0) + 1
            local ok, err = pcall(deploy_synced, ctx, name)
            if not ok then
                lk:unlock()
                error(err, 0)
            end
        end
        return lk
    end
    return must(state.lock_cert(ctx.st, name, ctx.lock_timeout))
end

-- With s.csr (a file) or s.csr_pem: issue for a CSR whose key is not
-- ours; the chain goes to s.out_file, nothing is stored for renewal.
local function issue_for_csr(ctx, s)
    local data = s.csr_pem or must(core.read_file(s.csr))
    local der = data
    if data:find("-----BEGIN", 1, true) then
        local d, msg, kind = core.pem_decode(data)
        if not d then raise(kind or "invalid", "CSR: " .. tostring(msg)) end
        der = d
    end
    local names, ips = M.csr_names(der)
    if not names then error(ips, 0) end
    local want = M.settings(ctx, { names = names, ips = ips, name = s.name,
        hooks = s.hooks })
    if s.names and #s.names > 0 then
        local given = M.settings(ctx, { names = s.names, ips = s.ips,
            hooks = {} })
        if not same_set(given.names, want.names) or
            not same_set(given.ips, want.ips) then
            raise("usage", "the names given differ from the CSR's: " ..
                table.concat(all_names(want), ", "), { option = "domain" })
        end
    end
    if not s.out_file then
        raise("usage", "a CSR's certificate chain needs a file to go to",
            { option = "out" })
    end
    want.out_file = s.out_file
    local lk <close> = lock_cert(ctx, want.name)
    return issue_cert(ctx, want, nil, "CSR", der)
end

-- issue(ctx, s, opts): s = { names (domains: older name), ips, name, key_type,
-- reuse_key, must_staple, preferred_chain, profile, valid_for
-- (seconds), hooks, deploy_hooks (spec strings), dns_wait, csr (file)
-- or csr_pem, out_file }; opts.force. Returns { code = 0 | 2, name,
-- names, serial, not_after, ... }.
function M.issue(ctx, s, opts)
    if s.csr or s.csr_pem then return issue_for_csr(ctx, s) end
    local set = M.settings(ctx, s)
    if not s.name then
        -- The same names in another order are the same certificate.
        for _, n in ipairs(must(state.list_certs(ctx.st))) do
            local meta = state.read_meta(ctx.st, n)
            if meta and not meta.deleted and
                same_set(meta.names, set.names) and
                same_set(meta.ips, set.ips) then
                set.name = n
                break
            end
        end
    end
    local lk <close> = lock_cert(ctx, set.name)
    return issue_locked(ctx, set, opts)
end

--
-- Renewing
--

-- Names of the stored certificates that have a meta.json.
local function cert_names(ctx)
    local out, dirs = {}, {}
    for _, n in ipairs(must(state.list_certs(ctx.st))) do
        local meta = state.read_meta(ctx.st, n)
        if meta and not meta.deleted then
            out[#out + 1] = n
            dirs[n] = meta.directory or false
        end
    end
    return out, dirs
end

-- unchanged_cert() of the deploy hooks of a certificate not due.
local function tell_unchanged(ctx, name, s)
    local dlist, clist = {}, {}
    for _, spec in ipairs(s.deploy_hooks) do
        local h, lerr = hooks.load(spec, "deploy")
        dlist[#dlist + 1] = h
        if not h then ctx.out:warn(lerr.detail) end
    end
    for _, spec in ipairs(s.hooks) do
        clist[#clist + 1] = hooks.load(spec, "challenge")
    end
    for _, h in ipairs(hooks.deploy_list(clist, dlist)) do
        if h.unchanged_cert then
            local hok, herr = ctx:session():add({ h })
            if hok then
                hok, herr = hooks.call(h, "unchanged_cert",
                    cert_arg(ctx, name, s, false))
            end
            if not hok then ctx.out:warn(herr.detail) end
        end
    end
end

--
-- A CA that is down
--
-- A run that finds a CA down (its server unreachable after the client's
-- retries, or answering 502/503/504) tries none of that CA's other
-- certificates: one timeout per run, not one per certificate. The CAs
-- a run found down are ctx.ca_down[directory URL] = { since, retry_at,
-- reason } (false: up, its ca.json already read), one table for the
-- whole run. A Retry-After that came with
-- the failure is kept in the state (the CA's ca.json; a 429's in the
-- certificate's meta.hold), so later runs leave the CA alone until then.

local DOWN_KINDS = { connect = true, timeout = true, tls = true }
local DOWN_STATUS = { [502] = true, [503] = true, [504] = true }
-- A remembered wait is capped: a CA's word must not stop renewals for
-- good, and asking again once a day is polite enough.
local HOLD_MAX = 86400

local function ca_down(ctx)
    ctx.ca_down = ctx.ca_down or {}
    return ctx.ca_down
end

-- The first error in err and its causes for which pred holds, or nil.
local function find_cause(err, pred)
    for _ = 1, 8 do
        if type(err) ~= "table" then return nil end
        if pred(err) then return err end
        err = err.cause
    end
    return nil
end

-- The error (err or a cause) saying its CA (err.ca) is down, or nil.
local function outage(err)
    return find_cause(err, function(e)
        return e.ca ~= nil and (DOWN_KINDS[e.kind] or
            DOWN_STATUS[e.status]) and true or false
    end)
end

local function clock(t)
    return os.date("!%H:%M:%S UTC", math.floor(t))
end

local function short(err)
    return (output.error_lines(err))[1]
end

-- Remember in this run (and, with a Retry-After, in the state) that the
-- CA at url is down; err is the outage error.
local function mark_down(ctx, url, err)
    local now = ctx.now()
    local down = ca_down(ctx)
    if down[url] then return end
    local rec = { since = now, reason = short(err) }
    local ra = tonumber(err.retry_after)
    if ra and ra > 0 then
        rec.retry_at = now + math.min(math.ceil(ra), HOLD_MAX)
        local ok, werr = state.write_ca(ctx.st, url, { directory = url,
            retry_at = rec.retry_at, time = now, reason = rec.reason,
            status = err.status })
        if not ok then
            ctx.out:warn("cannot remember the CA's Retry-After: " ..
                tostring(werr))
        end
    end
    down[url] = rec
end

-- Why the CA must not be asked for certificate name (settings s, meta)
-- now: a text, or nil. Looks at this run's findings, the CA's
-- remembered Retry-After and the certificate's hold.
local function held(ctx, s, meta)
    local url, now = s.directory, ctx.now()
    local down = ca_down(ctx)
    if down[url] == nil then
        -- ca.json is read once a run; false: read, nothing remembered.
        local rec = state.read_ca(ctx.st, url)
        down[url] = false
        if rec and rec.directory == url and tonumber(rec.retry_at) and
            rec.retry_at > now then
            down[url] = { since = tonumber(rec.time) or now,
                retry_at = rec.retry_at, reason = rec.reason,
                remembered = true }
        end
    end
    local d = down[url]
    if d and d.remembered then
        return "CA " .. url .. " asked to be left alone until " ..
            output.time(d.retry_at) .. " (" .. tostring(d.reason) ..
            "); not contacted"
    elseif d then
        return "CA " .. url .. " unreachable since " .. clock(d.since)
    end
    local h = meta.hold
    if type(h) == "table" and tonumber(h.retry_at) and h.retry_at > now then
        return "the CA asked not to be asked for it before " ..
            output.time(h.retry_at) .. " (" .. tostring(h.reason) ..
            "); not contacted"
    end
    return nil
end

-- After a failed renewal of certificate name: mark its CA down, or
-- keep a 429's Retry-After in meta.hold.
local function note_failure(ctx, name, s, err)
    local o = outage(err)
    if o then return mark_down(ctx, s.directory, o) end
    local limited = find_cause(err, function(e)
        return e.ca ~= nil and e.status == 429 and
            (tonumber(e.retry_after) or 0) > 0
    end)
    if not limited then return end
    local meta = state.read_meta(ctx.st, name)
    if not meta then return end
    local now = ctx.now()
    meta.hold = { retry_at = now + math.min(math.ceil(
        limited.retry_after), HOLD_MAX), time = now,
        reason = short(limited), status = 429 }
    local ok, werr = state.write_meta(ctx.st, name, meta)
    if not ok then
        ctx.out:warn("cannot remember the CA's Retry-After: " ..
            tostring(werr))
    end
end

-- renew.due's answer (is_due, when, reason) with meta.renew_days, the
-- "renew when fewer than N days are left" of --days: without a renewal
-- window from the CA it replaces the lifetime rule; with one, it can only
-- make the renewal earlier.
local function with_days(info, meta, now, is_due, when, reason)
    local days = math.tointeger(meta.renew_days)
    if not days or not info or not info.not_after or meta.revoked then
        return is_due, when, reason
    end
    local at = info.not_after - days * 86400
    if now >= at then
        if is_due and when <= at then return is_due, when, reason end
        return true, at, string.format("fewer than %d days left", days)
    end
    local ari = type(meta.ari) == "table" and meta.ari.window_start
    if ari or now >= info.not_after then return is_due, when, reason end
    return false, at, string.format("due at %s, %d days before expiry",
        output.date(at), days)
end

-- Is certificate name (settings s, meta) due? Fetches ARI first unless
-- forced or the CA is not to be asked (opts.no_ari), or given
-- opts.renewal_info (a get_renewal_info result to use instead of
-- fetching); saves meta when ARI changed it. The one decision: m:due
-- and renew both come here. Returns due, when, reason, info (the
-- certificate's cert_info or nil).
local function decide(ctx, name, s, meta, opts)
    local set, rerr = state.read_cert(ctx.st, name)
    local info = set and core.cert_info(set.cert_pem)
    if not set then
        return true, ctx.now(), "no usable certificate: " ..
            tostring(rerr.detail)
    end
    local ari_before = meta.ari and meta.ari.renew_at
    local changed = false
    local ri = opts.renewal_info
    if ri then
        local ari = type(meta.ari) == "table" and meta.ari or {}
        ari.cert_id = ri.cert_id or ari.cert_id
        ari.window_start, ari.window_end = ri.start, ri["end"]
        ari.explanation_url = ri.explanation_url
        ari.next_check = renew.next_ari_check(ri.retry_after, ctx.now())
        meta.ari, changed = ari, true
    elseif not (opts.force or opts.no_ari) then
        local rok, r, aerr = pcall(refresh_ari, ctx, s.directory,
            s.ca_bundle, set.cert_pem, meta)
        if rok then
            changed = r
        elseif type(r) == "table" and r.kind == "interrupted" then
            error(r, 0)
        else
            aerr = r
        end
        local o = outage(aerr)
        if o then
            -- Not due by what is known: only a warning, once a CA.
            if not ca_down(ctx)[s.directory] then
                ctx.out:warn("renewal information not refreshed: " ..
                    short(o))
            end
            mark_down(ctx, s.directory, o)
        end
    end
    local is_due, when, reason = with_days(info, meta, ctx.now(),
        renew.due(info, meta, ctx.now(), ctx.rand))
    if changed or (meta.ari and meta.ari.renew_at ~= ari_before) then
        must(state.write_meta(ctx.st, name, meta))
    end
    if opts.force then return true, ctx.now(), "forced", info end
    return is_due, when, reason, info
end

-- meta.json of certificate name (lock held). Raises not_found "no
-- certificate named ..." also for a deleted one.
local function stored_meta(ctx, name)
    local meta, err = state.read_meta(ctx.st, name)
    if meta and meta.deleted then
        raise("not_found", "no certificate named " .. name .. " (it was " ..
            "deleted)", { what = "certificate", name = name })
    end
    if not meta then
        if err.kind == "not_found" then
            raise("not_found", "no certificate named " .. name,
                { what = "certificate", name = name })
        end
        error(err, 0)
    end
    return meta
end

-- The stored settings of certificate name, with the context's CA
-- overrides (lock held), and its meta.
local function stored(ctx, name)
    local meta = stored_meta(ctx, name)
    local s = settings_of(name, meta)
    if ctx.directory_given then s.directory = ctx.directory end
    s.directory = s.directory or ctx.directory
    if ctx.ca_file then s.ca_bundle = ctx.ca_file end
    return s, meta
end

-- The deploy hooks of certificate name, after this node installed a
-- newer set from the fleet's store.
deploy_synced = function(ctx, name)
    local s = stored(ctx, name)
    local dhooks = load_hooks(s.deploy_hooks, "deploy")
    ctx:emit("synced", { name = name, dir = ctx.st:path(
        must(state.cert_dir(name))) }, name ..
        ": installed the fleet's newer certificate")
    if #dhooks == 0 then return end
    must(ctx:session():add(dhooks))
    local arg = cert_arg(ctx, name, s, true)
    local failed
    for _, h in ipairs(dhooks) do
        local ok, derr = hooks.call(h, "deploy_cert", arg)
        ctx:emit("deploy_hook", { hook = h.name, name = name,
            ok = ok and true or false, error = derr and derr.detail or nil },
            ok and (name .. ": deploy hook " .. h.name .. " done") or nil)
        if not ok then failed = failed or derr end
    end
    if failed then
        raise("deploy", name .. " was installed from the fleet's store, " ..
            "but a deploy hook failed: " .. tostring(failed.detail),
            { cause = failed, hook = failed.hook })
    end
end

-- sync(ctx, { names }) -> { code = 0 (installed something) | 2 (nothing
-- newer) | 1, installed = {names}, failed = {names}, errors }: install
-- whatever the fleet's store has newer than this node, running deploy
-- hooks. Needs a shared store.
function M.sync(ctx, opts)
    opts = opts or {}
    if not ctx.fleet then
        raise("usage", "sync needs a shared store", { option = "storage" })
    end
    local names = opts.names
    if not names or #names == 0 then names = ctx.fleet:list_certs() end
    local res = { installed = {}, unchanged = {}, failed = {}, errors = {} }
    for _, name in ipairs(names) do
        local ok, err = errors.protect(function()
            if ctx.fleet:sync_one(name, ctx.lock_timeout) then
                deploy_synced(ctx, name)
                return true
            end
            return false
        end)
        if ok == nil then
            res.failed[#res.failed + 1] = name
            res.errors[#res.errors + 1] = { name = name, err = err }
        elseif ok then
            res.installed[#res.installed + 1] = name
        else
            res.unchanged[#res.unchanged + 1] = name
        end
    end
    if #res.failed > 0 then res.code = 1
    elseif #res.installed > 0 then res.code = 0
    else res.code = 2 end
    return res
end

-- due(ctx, name[, opts]) -> due, when, reason: exactly what renew acts
-- on (the CA's renewal window fetched when it is time, the moment in it
-- drawn once and kept, revocation, the lifetime rule; a CA this run
-- found down or that asked to be left alone is not asked). opts.force:
-- due now; opts.renewal_info: a client:get_renewal_info result to
-- decide with, instead of fetching one.
function M.due(ctx, name, opts)
    opts = opts or {}
    local lk <close> = lock_cert(ctx, name)
    local s, meta = stored(ctx, name)
    local is_due, when, reason = decide(ctx, name, s, meta, {
        force = opts.force, renewal_info = opts.renewal_info,
        no_ari = held(ctx, s, meta) ~= nil })
    return is_due, when, reason
end

-- Renew one certificate when due (lock held inside). Returns the result
-- table: code 0 renewed, 2 not due.
local function renew_one(ctx, name, opts, named)
    local lk <close> = lock_cert(ctx, name)
    local s, meta = stored(ctx, name)
    -- A revoked certificate was retired on purpose: a run over all
    -- certificates (cron) must not bring it back; naming it does.
    if meta.revoked and not opts.force and not named then
        ctx:emit("not_due", { name = name, reason = "revoked" }, name ..
            ": revoked, not renewed (luacme renew " .. name ..
            " gets a new one)")
        return { code = 2, name = name, names = all_names(s),
            renewed = false, due = false, reason = "revoked" }
    end
    local hold = held(ctx, s, meta)
    local is_due, when, reason, info = decide(ctx, name, s, meta, {
        force = opts.force, no_ari = hold ~= nil })
    -- decide() may have found the CA down just now.
    hold = hold or held(ctx, s, meta)
    if not is_due then
        ctx:emit("not_due", { name = name, due_at = output.time(when),
            reason = reason }, name .. ": not due (" .. reason .. ")")
        tell_unchanged(ctx, name, s)
        return { code = 2, name = name, names = all_names(s),
            serial = info and info.serial, issuer = meta.issuer,
            not_before = info and info.not_before,
            not_after = info and info.not_after, renewed = false,
            due = false, due_at = when, reason = reason }
    end
    if hold then
        local skip = errors.new("ca_down", "skipped: " .. hold,
            { skipped = true })
        record_error(ctx, name, skip)
        error(skip, 0)
    end
    ctx:emit("due", { name = name, reason = reason }, name ..
        ": renewing (" .. reason .. ")", { verbose = true })
    local set = M.settings(ctx, s)
    set.name = name
    -- Hooks given for this run come first and are not stored.
    for i, h in ipairs(opts.hooks or {}) do
        table.insert(set.inline, i, type(h) == "string" and
            must(hooks.load(h, "challenge")) or
            M.inline_hook(h, "challenge", i))
    end
    for i, h in ipairs(opts.deploy_hooks or {}) do
        set.inline_deploy[#set.inline_deploy + 1] = type(h) == "string" and
            must(hooks.load(h, "deploy")) or M.inline_hook(h, "deploy", i)
    end
    if opts.deploy ~= nil then
        set.inline_deploy[#set.inline_deploy + 1] =
            M.inline_hook(opts.deploy, "deploy", "deploy")
    end
    set.run_types = opts.types and check_types(opts.types)
    local ok, r = pcall(issue_locked, ctx, set, { force = true,
        reason = reason })
    if not ok then
        note_failure(ctx, name, s, r)
        error(r, 0)
    end
    r.due, r.due_at, r.reason = true, when, reason
    return r
end

-- Certificates renewed at once by default, and at most.
M.PARALLEL = 4
M.PARALLEL_MAX = 64

-- The context of one certificate among several renewed at once: its
-- output lines say whose they are; everything else is the run's, read
-- and written through to it (the state, the one hook session, the CA
-- settings, the table of CAs found down, the pre and post hooks run
-- once per run).
local function cert_ctx(ctx, name)
    ctx:session()           -- made now, so every certificate shares it
    ca_down(ctx)
    return setmetatable({ out = ctx.out:prefixed(name) },
        { __index = ctx, __newindex = ctx })
end

-- renew(ctx, { names = {...} (default all), force =, jitter = seconds,
-- parallel = N, hooks =, deploy_hooks =, deploy =, types = (for this
-- run) }). Returns { code = 0 (something renewed) | 2 (nothing due) | 1
-- (a failure), certs = { one result table per certificate, failed ones
-- { code = 1, name =, error = err } }, renewed = {names}, not_due =
-- {names}, failed = {names}, errors = { {name =, err =} } }. Each
-- certificate is tried, failures do not stop the others; they are
-- returned, not printed (the caller decides; the luacme command shows
-- them). Up to parallel (default M.PARALLEL, at most M.PARALLEL_MAX)
-- certificates are worked on at once, as luacme.sched tasks of this
-- one process (one connection pool), each under its own lock, their
-- output lines prefixed with the certificate name; a CA one of them
-- finds down is skipped by all the others.
function M.renew(ctx, opts)
    opts = opts or {}
    if opts.jitter and opts.jitter > 0 then
        local wait = renew.jitter(opts.jitter, ctx.rand)
        ctx:emit("jitter", { seconds = wait }, "waiting " .. wait ..
            " s first", { verbose = true })
        ctx.sleep(wait)
    end
    local names = opts.names
    local synced
    if ctx.fleet then
        -- A fleet node first installs what others renewed; a store it
        -- cannot read fails the run before anything is touched.
        synced = M.sync(ctx, { names = names })
        if synced.code == 1 then error(synced.errors[1].err, 0) end
    end
    -- The CA of each certificate as listed (false: none stored), so
    -- that grouping by CA reads no meta.json a second time.
    local listed_dirs = {}
    if not names or #names == 0 then names, listed_dirs = cert_names(ctx) end
    -- What a run finds of its CAs holds for that run only.
    ctx.ca_down = {}
    ctx.fleet_installed = 0
    local res = { certs = {}, renewed = {}, not_due = {}, failed = {},
        errors = {} }
    if #names == 0 then
        ctx:emit("nothing", {}, "no certificates to renew")
    end
    local parallel = opts.parallel or M.PARALLEL
    if math.type(parallel) ~= "integer" or parallel < 1 or
        parallel > M.PARALLEL_MAX then
        raise("usage", "parallel must be a whole number from 1 to " ..
            M.PARALLEL_MAX, { option = "parallel" })
    end
    -- A name given twice would be worked on twice at once.
    local uniq, seen = {}, {}
    for _, name in ipairs(names) do
        if not seen[name] then
            seen[name] = true
            uniq[#uniq + 1] = name
        end
    end
    names = uniq
    parallel = math.min(parallel, #names)
    -- The first certificate of each CA goes alone: while it runs, the
    -- others of that CA wait, so a CA that is down costs one retry
    -- budget and its other certificates are skipped (ctx.ca_down), not
    -- tried by every worker at once. Once one came back without an
    -- error, that CA's certificates run in parallel.
    local answered = {}
    local named = opts.names ~= nil and #opts.names > 0
    local function ca_of(name)
        local dir = listed_dirs[name]
        if dir == nil then
            local meta = state.read_meta(ctx.st, name)
            dir = meta and meta.directory
        end
        return (ctx.directory_given and ctx.directory) or dir or
            ctx.directory or "?"
    end
    local function one(c, name)
        local url = ca_of(name)
        if not answered[url] then
            local r = table.pack(sched.serial("renew: first of " .. url,
                function()
                    if answered[url] then return false end
                    local r, err = errors.protect(renew_one, c, name, opts,
                        named)
                    if r then answered[url] = true end
                    return true, r, err
                end))
            if r[1] then return r[2], r[3] end
        end
        return errors.protect(renew_one, c, name, opts, named)
    end
    local fns = {}
    for i, name in ipairs(names) do
        fns[i] = function()
            return one(parallel > 1 and cert_ctx(ctx, name) or ctx, name)
        end
    end
    for i, out in ipairs(sched.all(fns, parallel)) do
        local name, r, err = names[i], out[1], out[2]
        if not r then
            res.failed[#res.failed + 1] = name
            res.errors[#res.errors + 1] = { name = name, err = err }
            r = { code = 1, name = name, renewed = false, error = err }
        elseif r.code == 0 then
            res.renewed[#res.renewed + 1] = name
        else
            res.not_due[#res.not_due + 1] = name
        end
        res.certs[#res.certs + 1] = r
    end
    res.synced = synced and synced.installed
    -- A node that installed what another renewed changed too: exit 0,
    -- so `renew && reload` works on every node of a fleet.
    local installed = (synced and #synced.installed or 0) +
        (ctx.fleet_installed or 0)
    if #res.failed > 0 then res.code = 1
    elseif #res.renewed > 0 or installed > 0 then res.code = 0
    else res.code = 2 end
    return res
end

--
-- Revoking and listing
--

local function to_der(pem)
    if not pem:find("-----BEGIN", 1, true) then return pem end
    local d, msg, kind = core.pem_decode(pem)
    if not d then raise(kind or "invalid", tostring(msg)) end
    return d
end

-- The client that signs a revocation: the account's, or (certkey
-- given, or no account but the stored key) one without an account key,
-- so the request carries the certificate key's jwk (RFC 8555 §7.6).
-- Returns client, certkey.
local function revoker(ctx, url, ca_file, certkey, set)
    if certkey then return ctx:client(url, nil, nil, ca_file), certkey end
    local ok, c = pcall(accounts.open, ctx, url, false, { ca_file = ca_file })
    if ok then return c end
    if set and type(c) == "table" and c.kind == "no_account" then
        ctx.out:debug("no account: signing with the certificate's own key")
        return ctx:client(url, nil, nil, ca_file),
            must(core.key_load(set.key_pem))
    end
    error(c, 0)
end

-- revoke(ctx, { name = CERTNAME | cert_file = FILE, reason = code,
-- cert_key_file = FILE }).
function M.revoke(ctx, opts)
    local lk, set, cert_pem, url, label
    local ca_file = ctx.ca_file
    if opts.name then
        lk = lock_cert(ctx, opts.name)
        local rerr
        set, rerr = state.read_cert(ctx.st, opts.name)
        if not set and rerr.kind == "not_found" then
            raise("not_found", "no certificate named " .. opts.name,
                { what = "certificate", name = opts.name })
        end
        must(set, rerr)
        cert_pem = set.cert_pem
        url = (not ctx.directory_given and set.meta.directory) or
            ctx.directory
        ca_file = ca_file or set.meta.ca_bundle
        label = opts.name
    elseif opts.cert_file then
        cert_pem = must(core.read_file(opts.cert_file))
        url = ctx.directory
        label = opts.cert_file
    else
        raise("usage", "revoke needs a certificate name or file")
    end
    local der = to_der(cert_pem)
    local info = must(core.cert_info(der))
    local certkey
    if opts.cert_key_file then
        local pem = must(core.read_file(opts.cert_key_file))
        local k, msg, kind = core.key_load(pem)
        if not k then raise(kind or "invalid", "certificate key: " ..
            tostring(msg), { option = "cert-key" }) end
        certkey = k
    end
    local c
    c, certkey = revoker(ctx, url, ca_file, certkey, set)
    local ok, err = c:revoke_cert(certkey, der, opts.reason)
    local code = 0
    if not ok then
        if not errors.is(err, "alreadyRevoked") then error(err, 0) end
        code = 2
    end
    if set and not (code == 2 and set.meta.revoked) then
        local meta = set.meta
        meta.revoked = { time = ctx.now(), reason = opts.reason }
        must(state.write_meta(ctx.st, opts.name, meta))
    end
    if lk then lk:unlock() end
    ctx:emit("revoked", { name = opts.name, file = opts.cert_file,
        serial = info.serial, reason = opts.reason,
        already = code == 2 or nil }, (code == 2 and
        (label .. " was revoked already") or ("revoked " .. label)) ..
        " (serial " .. info.serial .. ")")
    return { code = code, name = opts.name, serial = info.serial }
end

-- list(ctx) -> { code = 0, certs = { { name, names, not_before,
-- not_after, serial, issuer, due, due_at, reason, last_error, revoked,
-- error } } }.
function M.list(ctx)
    local out = {}
    for _, name in ipairs(must(state.list_certs(ctx.st))) do
        local meta = state.read_meta(ctx.st, name)
        if meta and not meta.deleted then
            local e = { name = name,
                names = all_names({ names = meta.names, ips = meta.ips }),
                directory = meta.directory, key_type = meta.key_type,
                last_error = meta.last_error, revoked = meta.revoked }
            local set, err = state.read_cert(ctx.st, name)
            local info = set and core.cert_info(set.cert_pem)
            if info then
                e.not_before, e.not_after = info.not_before, info.not_after
                e.serial = info.serial
                e.issuer = info.issuer_cn or info.issuer
            else
                -- An error table, as in renew's per-certificate results.
                e.error = err or errors.new("invalid",
                    "unreadable certificate")
            end
            -- Without a stored moment the ARI window's start shows.
            -- This is the stored view, no request: m:due(name) is the decision
            -- renew acts on (it fetches the window when it is time).
            local is_due, when, reason = with_days(info, meta, ctx.now(),
                renew.due(info, meta, ctx.now(), function() return 0 end))
            e.due, e.due_at, e.reason = is_due, when, reason
            out[#out + 1] = e
        end
    end
    return { code = 0, certs = out }
end

--
-- Changing and retiring a certificate
--

-- Everything under dir in the store (generations, links, files), and
-- dir itself unless keep_lock (its .lock stays, for the holder).
local function remove_tree(st, dir, keep_lock)
    for _, f in ipairs(must(st:list(dir))) do
        local p = dir .. "/" .. f
        if not (keep_lock and f == ".lock") then
            if st:exists(p) == "dir" then
                remove_tree(st, p)
            else
                must(st:delete(p))
            end
        end
    end
    if not keep_lock then must(st:rmdir(dir)) end
end

-- reconfigure(ctx, name, s): new settings for certificate name's
-- renewals, without issuing. s.hooks, s.deploy_hooks (lists that
-- replace the stored ones), s.key_type, s.reuse_key (true/false),
-- s.preferred_chain, s.profile, s.dns_wait; what is nil stays. Every
-- hook is loaded now, so a spec that cannot work is refused here and
-- not by the next renewal from cron. Returns { code = 0 (changed) | 2
-- (nothing to change), name, changed = { setting names } }.
function M.reconfigure(ctx, name, s)
    local lk <close> = lock_cert(ctx, name)
    local meta = stored_meta(ctx, name)
    local env = core.environ()
    local new = {}
    if s.hooks and #s.hooks > 0 then
        new.hooks = {}
        for _, h in ipairs(s.hooks) do
            h = absolute_spec(h, env)
            if s.dns_wait then h = with_dns_wait(h, s.dns_wait, {}) end
            must(hooks.load(h, "challenge"))
            new.hooks[#new.hooks + 1] = h
        end
    end
    if s.deploy_hooks and #s.deploy_hooks > 0 then
        new.deploy_hooks = {}
        for _, h in ipairs(s.deploy_hooks) do
            h = absolute_spec(h, env)
            must(hooks.load(h, "deploy"))
            new.deploy_hooks[#new.deploy_hooks + 1] = h
        end
    end
    if s.key_type then new.key_type = accounts.check_key_type(s.key_type) end
    new.reuse_key = s.reuse_key
    new.preferred_chain = s.preferred_chain
    new.profile = s.profile
    local checked = M.settings(ctx, { names = meta.names, ips = meta.ips,
        name = name, types = s.types })
    new.types = checked.types
    new.renew_days = s.renew_days
    new.pre_hooks = s.pre_hooks and #s.pre_hooks > 0 and s.pre_hooks or nil
    new.post_hooks = s.post_hooks and #s.post_hooks > 0 and s.post_hooks or
        nil
    local changed = {}
    for _, k in ipairs(M.SETTINGS) do
        local v = new[k]
        if v ~= nil then
            local same = v == meta[k]
            if type(v) == "table" then
                same = table.concat(v, "\n") ==
                    table.concat(meta[k] or {}, "\n")
                v = util.array(v)
            end
            if not same then
                meta[k] = v
                changed[#changed + 1] = k
            end
        end
    end
    if #changed == 0 then
        ctx:emit("reconfigured", { name = name, changed = util.array({}) },
            name .. ": these are its settings already; nothing to change")
        return { code = 2, name = name, changed = changed }
    end
    must(state.write_meta(ctx.st, name, meta))
    ctx:emit("reconfigured", { name = name, changed = util.array(changed) },
        name .. ": " .. table.concat(changed, ", "):gsub("_", " ") ..
        " changed; they apply from its next renewal (not issued now)")
    return { code = 0, name = name, changed = changed }
end

-- delete(ctx, name, purge): certificate name is renewed no more. Its
-- files stay where servers read them (meta.json records deleted = {
-- time }, and list, renew and reconfigure pass it by; issuing its names
-- again makes it a live certificate), or with purge are removed.
-- Returns { code = 0, name, purged }.
function M.delete(ctx, name, purge)
    local lk = lock_cert(ctx, name)
    local meta = stored_meta(ctx, name)
    local dir = must(state.cert_dir(name))
    if purge then
        remove_tree(ctx.st, dir, true)
    else
        meta.deleted = { time = ctx.now() }
        must(state.write_meta(ctx.st, name, meta))
    end
    lk:unlock()
    if purge then
        ctx.st:delete(dir .. "/.lock")
        ctx.st:rmdir(dir)
    end
    ctx:emit("deleted", { name = name, purged = purge or false },
        name .. ": deleted; not renewed any more" .. (purge and
        ", its files removed" or ("; its files stay in " ..
        ctx.st:path(dir))))
    return { code = 0, name = name, purged = purge or false }
end

return M
