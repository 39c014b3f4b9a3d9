-- The command line. main(arg) returns the process exit status:
-- 0 done (issued, renewed, ...), 1 failure, 2 nothing to do, 130
-- interrupted. Errors of the flow are error tables; they are caught in
-- one place (main) and shown with the CA's problem, the identifier and a
-- hint (luacme.output). The work itself is in luacme.manage.
--
-- Read from the bottom: main parses the command line (M.parse; recipes
-- use the same parser through M.options and M.open) and runs the
-- command's handler from COMMANDS, the table of commands with their
-- usage, options and help. Above them: the option values (--directory
-- presets, durations, revocation reasons) and the global options.
--
-- `luacme run FILE.lua ARGS...` runs a recipe with arg as lua.c sets it;
-- everything after FILE is the recipe's, untouched.
local core = require "luacme.core"
local errors = require "luacme.errors"
local util = require "luacme.util"

local M = {}

local function versions()
    local v = core.versions()
    local cjson = require "cjson"
    return string.format(
        "luacme %s\n%s\nOpenSSL: %s\nlibcurl: %s (%s%s)\nlua-cjson: %s",
        v.luacme, v.lua, v.openssl, v.curl, v.curl_ssl,
        v.curl_http2 and ", HTTP/2" or "", cjson._VERSION or "?")
end

-- Run a Lua file (a recipe) with `arg` set as lua.c would set it:
-- arg[0] the file, arg[1..] its arguments; also passed as varargs.
function M.run_file(path, args)
    local chunk, err = loadfile(path)
    if not chunk then
        io.stderr:write("luacme: ", err, "\n")
        return 1
    end
    local a = { [0] = path }
    for i, v in ipairs(args) do a[i] = v end
    _G.arg = a
    local res = chunk(table.unpack(a))
    if math.type(res) == "integer" then return res end
    if res == false then return 1 end
    return 0
end

--
-- Values of options
--

local function fail(kind, detail, fields)
    return nil, errors.new(kind, detail, fields)
end

-- Directory presets (--directory NAME). Let's Encrypt's are
-- client.LETSENCRYPT and client.LETSENCRYPT_STAGING (cli_args_test
-- checks), written out so that a command that never goes on the network
-- (--version, help, list) starts without loading the protocol client.
M.PRESETS = {
    letsencrypt = "https://acme-v02.api.letsencrypt.org/directory",
    ["letsencrypt-staging"] =
        "https://acme-staging-v02.api.letsencrypt.org/directory",
    zerossl = "https://acme.zerossl.com/v2/DV90",
    buypass = "https://api.buypass.com/acme/directory",
    ["buypass-staging"] = "https://api.test4.buypass.no/acme/directory",
    google = "https://dv.acme-v02.api.pki.goog/directory",
    ["google-staging"] = "https://dv.acme-v02.test-api.pki.goog/directory",
}
M.PRESET_NAMES = { "letsencrypt", "letsencrypt-staging", "zerossl",
    "buypass", "buypass-staging", "google", "google-staging" }
M.DEFAULT_PRESET = "letsencrypt"

-- RFC 5280 §5.3.1 reason codes by name (lower case, no separators).
M.REASONS = {
    unspecified = 0, keycompromise = 1, cacompromise = 2,
    affiliationchanged = 3, superseded = 4, cessationofoperation = 5,
    certificatehold = 6, removefromcrl = 8, privilegewithdrawn = 9,
    aacompromise = 10,
}

-- The directory URL for --directory v (a URL or a preset name) and
-- --staging. Returns url or nil, err.
function M.directory_url(v, staging)
    v = v or M.DEFAULT_PRESET
    if M.PRESETS[v] then
        if not staging or v:find("%-staging$") then return M.PRESETS[v] end
        local s = M.PRESETS[v .. "-staging"]
        if not s then
            return fail("usage", "--staging: " .. v .. " has no staging " ..
                "endpoint")
        end
        return s
    end
    if v:find("^[Hh][Tt][Tt][Pp][Ss]://[^/]") then
        if staging then
            return fail("usage", "--staging goes with a preset name, " ..
                "not a URL")
        end
        return v
    end
    return fail("usage", "--directory wants an https:// URL or one of: " ..
        table.concat(M.PRESET_NAMES, ", "))
end

-- A duration "90d", "12h", "30m", "45s", "1d12h" or plain seconds ->
-- seconds, or nil, err.
function M.duration(s)
    if type(s) ~= "string" or s == "" then
        return fail("usage", "empty duration")
    end
    if s:find("^%d+$") then return math.tointeger(tonumber(s)) end
    local total, rest = 0, s
    local unit = { d = 86400, h = 3600, m = 60, s = 1 }
    while rest ~= "" do
        local n, u, r = rest:match("^(%d+)([dhms])(.*)$")
        if not n then
            return fail("usage", "bad duration '" .. errors.printable(s) ..
                "' (examples: 90d, 12h, 1d12h, 3600)")
        end
        total = total + tonumber(n) * unit[u]
        rest = r
    end
    return math.tointeger(total)
end

-- A revocation reason (a code 0-10 but 7, or a name such as
-- keyCompromise / key-compromise) -> code, or nil, err.
function M.reason(v)
    if v == nil then return nil end
    local n = tonumber(v)
    if n then
        n = math.tointeger(n)
        if n and n >= 0 and n <= 10 and n ~= 7 then return n end
        return fail("usage", "reason code must be 0-10 but not 7")
    end
    local key = tostring(v):lower():gsub("[%-_ ]", "")
    if M.REASONS[key] then return M.REASONS[key] end
    local names = {}
    for k in pairs(M.REASONS) do names[#names + 1] = k end
    table.sort(names)
    return fail("usage", "unknown reason '" .. errors.printable(v) ..
        "' (one of: " .. table.concat(names, ", ") .. ")")
end

--
-- Options
--

-- Each option: long name, short letter, arg (metavar; nil for a flag),
-- multi (repeatable, collected in a list), help.
local GLOBAL = {
    { "directory", arg = "URL|PRESET", help = "the CA: an https URL or " ..
        M.DEFAULT_PRESET .. " (default), " ..
        table.concat(M.PRESET_NAMES, ", ", 2) },
    { "staging", help = "the preset's staging CA (letsencrypt-staging " ..
        "without --directory)" },
    { "ca-bundle", arg = "FILE", help = "trust these CA certificates for " ..
        "the ACME server instead of the system's" },
    { "state", arg = "DIR", help = "the state directory (env LUACME_STATE; " ..
        "default /var/lib/luacme for root, else $XDG_STATE_HOME/luacme " ..
        "or ~/.local/state/luacme)" },
    { "storage", arg = "SPEC", help = "where the state is kept (env " ..
        "LUACME_STORAGE): file:dir=PATH (default), " ..
        "etcd:endpoints=URL[;URL...],prefix=/luacme or " ..
        "redis:url=redis://HOST:PORT/DB,prefix=luacme: (README: Running " ..
        "a fleet); credentials only from the environment" },
    { "install-dir", arg = "DIR", help = "with a shared --storage: where " ..
        "this node installs its certificates (default: the state " ..
        "directory)" },
    { "storage-key-file", arg = "FILE", help = "the 32-byte key sealing " ..
        "private keys in a shared store (env LUACME_STORAGE_KEY_FILE)" },
    { "lock-ttl", arg = "SECONDS", help = "with a shared --storage: a " ..
        "lock's lifetime without a refresh, so a node that died holds " ..
        "nothing for longer (default 30)" },
    { "storage-plaintext-keys", help = "allow private keys in a shared " ..
        "store without encryption (not recommended)" },
    { "verbose", short = "v", help = "more detail" },
    { "quiet", short = "q", help = "only errors" },
    { "json", help = "one JSON object per line (luacme help json)" },
    { "contact", arg = "EMAIL", multi = true, help = "account contact " ..
        "(repeatable); mailto: is added" },
    { "agree-tos", help = "agree to the CA's terms of service when " ..
        "creating the account" },
    { "eab-kid", arg = "KID", help = "external account binding key id " ..
        "(env LUACME_EAB_KID)" },
    { "eab-hmac-key-file", arg = "FILE", help = "file holding the EAB " ..
        "HMAC key (or env LUACME_EAB_HMAC_KEY; never on the command line)" },
    { "lock-timeout", arg = "SECONDS", help = "how long to wait for " ..
        "another run holding a lock (default 60)" },
    { "help", short = "h", help = "help" },
    { "version", help = "versions of luacme and its libraries" },
}

local KEY_TYPE_HELP = "ec256 (default), ec384, rsa2048, rsa3072, rsa4096"

-- Key types as certbot, acme.sh and dehydrated write them.
local KEY_TYPE_WORDS = {
    ["ec-256"] = "ec256", ["ec-384"] = "ec384", ecdsa = "ec256",
    prime256v1 = "ec256", secp256r1 = "ec256", ["p-256"] = "ec256",
    secp384r1 = "ec384", ["p-384"] = "ec384", rsa = "rsa2048",
    ["2048"] = "rsa2048", ["3072"] = "rsa3072", ["4096"] = "rsa4096",
}

-- The key type for --key-type v (luacme's names or the other clients'),
-- with certbot's --elliptic-curve / --rsa-key-size refining ecdsa / rsa.
-- Unknown values pass through for accounts.check_key_type to refuse.
function M.key_type(v, curve, rsa_size)
    if v == nil and curve == nil and rsa_size == nil then return nil end
    local k = v and tostring(v):lower()
    if (k == nil or k == "ecdsa") and curve then
        return KEY_TYPE_WORDS[tostring(curve):lower()] or curve
    end
    if (k == nil or k == "rsa") and rsa_size then
        return KEY_TYPE_WORDS[tostring(rsa_size)] or ("rsa" .. rsa_size)
    end
    return KEY_TYPE_WORDS[k] or v
end

-- Spellings people type from habit (certbot, acme.sh, dehydrated), each
-- meaning one of luacme's options: { long, short, arg, to = the option
-- it stands for, value = function(v) -> that option's value }. Shown in
-- help under "also accepted".
local function webroot_spec(v) return "webroot:root=" .. v end
local GLOBAL_ALIASES = {
    { "email", short = "m", arg = "EMAIL", to = "contact" },
    { "server", arg = "URL", to = "directory" },
    { "accept-tos", to = "agree-tos" },
}
local ISSUE_ALIASES = {
    { "cert-name", arg = "CERTNAME", to = "name" },
    { "webroot", short = "w", arg = "PATH", to = "hook",
      value = webroot_spec, shows = "--hook webroot:root=PATH" },
    { "webroot-path", arg = "PATH", to = "hook", value = webroot_spec,
      shows = "--hook webroot:root=PATH" },
    { "standalone", to = "hook", value = function() return "standalone" end,
      shows = "--hook standalone" },
    { "keylength", short = "k", arg = "LENGTH", to = "key-type",
      shows = "--key-type (2048, 3072, 4096, ec-256, ec-384)" },
    { "elliptic-curve", arg = "CURVE",
      shows = "with --key-type ecdsa: secp256r1 = ec256, secp384r1 = ec384" },
    { "rsa-key-size", arg = "BITS",
      shows = "with --key-type rsa: 2048, 3072, 4096 = rsa2048, ..." },
}

--
-- What commands share
--

local function number_opt(v, what, min, max)
    if v == nil then return nil end
    local n = util.number(v, min, max)
    if not n then
        error(errors.new("usage", what .. " must be a " ..
            "number " .. min .. ".." .. max), 0)
    end
    return n
end

local function trim(s)
    return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end

-- The manage context from the global options o.
local function context(o, out, env, dry)
    local manage = require "luacme.manage"
    local url, err = M.directory_url(o.directory, o.staging)
    if not url then error(err, 0) end
    if dry and not (o.directory or ""):find("^[Hh][Tt][Tt][Pp][Ss]://") then
        -- A dry run talks to the preset's staging CA; a URL given is
        -- taken as the test CA it is.
        url, err = M.directory_url(o.directory, true)
        if not url then error(err, 0) end
    end
    local contact
    if o.contact then
        contact = {}
        for _, c in ipairs(o.contact) do
            if c ~= "" then
                contact[#contact + 1] = c:find("^mailto:") and c or
                    ("mailto:" .. c)
            end
        end
    end
    local eab
    local kid = o.eab_kid or env.LUACME_EAB_KID
    local mac = env.LUACME_EAB_HMAC_KEY
    if o.eab_hmac_key_file then
        local data, msg = core.read_file(o.eab_hmac_key_file, 4096)
        if not data then
            error(errors.new("usage", "--eab-hmac-key-file: " ..
                tostring(msg)), 0)
        end
        mac = trim(data)
    end
    if (kid and kid ~= "") or (mac and mac ~= "") then
        if not kid or kid == "" or not mac or mac == "" then
            error(errors.new("usage", "external account binding needs " ..
                "both the key id (--eab-kid or LUACME_EAB_KID) and the " ..
                "HMAC key (LUACME_EAB_HMAC_KEY or --eab-hmac-key-file)"), 0)
        end
        eab = { kid = kid, key = mac }
    end
    local m
    m, err = manage.open{
        state = dry and dry.state or o.state, env = env, out = out,
        storage = o.storage, install_dir = o.install_dir,
        storage_key_file = o.storage_key_file,
        storage_plaintext_keys = o.storage_plaintext_keys,
        lock_ttl = number_opt(o.lock_ttl, "--lock-ttl", 3, 3600),
        directory = url, directory_given = o.directory ~= nil or
            o.staging == true or dry ~= nil,
        ca_file = o.ca_bundle, contact = contact,
        agree_tos = o.agree_tos, eab = eab,
        lock_timeout = number_opt(o.lock_timeout, "--lock-timeout", 0,
            7 * 86400),
        timeout = number_opt(o.timeout, "--timeout", 1, 86400),
    }
    if not m then error(err, 0) end
    return m
end

local function list_text(certs)
    local output = require "luacme.output"
    local lines = {}
    if #certs == 0 then return "no certificates" end
    for _, c in ipairs(certs) do
        local head = c.name .. ":"
        if c.not_after then
            head = head .. " expires " .. output.date(c.not_after)
        end
        if c.revoked then head = head .. ", revoked" end
        if c.due then
            head = head .. ", due now (" .. c.reason .. ")"
        else
            head = head .. ", due " .. output.date(c.due_at)
        end
        lines[#lines + 1] = head
        lines[#lines + 1] = "  names: " .. table.concat(c.names, ", ")
        if c.error then
            lines[#lines + 1] = "  problem: " ..
                errors.printable(c.error.detail or c.error.kind)
        end
        if c.last_error then
            lines[#lines + 1] = "  last error (" ..
                (output.time(c.last_error.time) or "?") .. "): " ..
                errors.printable(c.last_error.message or "?")
        end
    end
    return table.concat(lines, "\n")
end

local function cert_fields(c)
    local output = require "luacme.output"
    return {
        name = c.name, names = util.array(c.names),
        not_before = output.time(c.not_before),
        not_after = output.time(c.not_after),
        serial = c.serial, issuer = c.issuer, due = c.due,
        due_at = output.time(c.due_at), reason = c.reason,
        last_error = c.last_error and {
            time = output.time(c.last_error.time),
            message = c.last_error.message, kind = c.last_error.kind,
            type = c.last_error.type } or nil,
        revoked = c.revoked and { time = output.time(c.revoked.time),
            reason = c.revoked.reason } or nil,
        error = c.error and c.error.detail, directory = c.directory,
        key_type = c.key_type,
    }
end

local function account_text(a)
    local lines = {
        "account: " .. tostring(a.uri),
        "  CA: " .. tostring(a.directory),
        "  status: " .. tostring(a.status),
        "  contact: " .. ((a.contact and #a.contact > 0) and
            table.concat(a.contact, ", ") or "(none)"),
        "  key: " .. tostring(a.key_type),
    }
    if a.thumbprint then
        lines[#lines + 1] = "  key thumbprint: " .. a.thumbprint
    end
    return table.concat(lines, "\n")
end

--
-- The commands
--

local COMMANDS -- the table of commands, below the handlers

-- v, or raise err (an error table) for main to show.
local function check(v, err)
    if v == nil then error(err, 0) end
    return v
end

-- Raise a usage error: the command line asks for something impossible.
local function usage(msg)
    error(errors.new("usage", msg), 0)
end

-- Text for a person (not with --json, not with -q).
local function say(out, text)
    if not out.json and out.level >= 0 then
        io.stdout:write(text, "\n")
        io.stdout:flush()
    end
end

-- The account subcommands: sub(m, opts, out) returns manage's result.
local ACCOUNT = {
    new = function(m, o)
        return check(m:account_new{ key_type = M.key_type(o.key_type) })
    end,
    show = function(m, _, out)
        local res = check(m:account_show())
        say(out, account_text(res.account))
        return res
    end,
    update = function(m, o)
        if not o.contact then
            usage("account update needs --contact EMAIL (repeatable)")
        end
        return check(m:account_update())
    end,
    deactivate = function(m, o)
        if not o.yes then
            usage("account deactivate disables the account for good; " ..
                "add --yes to confirm")
        end
        return check(m:account_deactivate())
    end,
    rollover = function(m, o)
        return check(m:account_rollover{ key_type = M.key_type(o.key_type) })
    end,
}

-- The handlers of the commands that work on the state or the CA:
-- cmd_X(p, out, env) runs the parsed command line p, tells out, and
-- returns the exit code; failures are raised as error tables, shown by
-- execute. Each opens the manage context first; closing it runs the hooks'
-- exit(), also on errors.

local function cmd_account(p, out, env)
    local m <close> = context(p.opts, out, env)
    local res = ACCOUNT[p.sub](m, p.opts, out)
    out:result{ ok = true, command = "account", action = p.sub,
        account = res.account, exit = res.code }
    return res.code
end

-- --preferred-challenges values (certbot's http, dns, or the full
-- names), commas allowed, as challenge types.
local CHALLENGE_WORDS = { http = "http-01", dns = "dns-01",
    ["tls-alpn"] = "tls-alpn-01", ["http01"] = "http-01",
    ["dns01"] = "dns-01", ["tls-alpn01"] = "tls-alpn-01" }
local function challenge_types(list)
    if not list then return nil end
    local out = {}
    local known = {}
    for _, ty in ipairs(require("luacme.hooks").TYPES) do known[ty] = true end
    for _, v in ipairs(list) do
        for w in v:gmatch("[^,%s]+") do
            local ty = CHALLENGE_WORDS[w:lower()] or w:lower()
            if not known[ty] then
                usage("--preferred-challenges: unknown challenge type '" ..
                    errors.printable(w) .. "' (http-01, dns-01, " ..
                    "tls-alpn-01; or http, dns, tls-alpn)")
            end
            out[#out + 1] = ty
        end
    end
    return out
end

-- Settings that issue and reconfigure share: --days, challenge types,
-- pre and post hooks.
local function renewal_opts(o, into)
    into.renew_days = number_opt(o.days, "--days", 1, 3650)
    into.types = challenge_types(o.preferred_challenges)
    into.pre_hooks = o.pre_hook
    into.post_hooks = o.post_hook
    return into
end

-- --deploy-hook values: a hook spec, or a command line as certbot takes
-- it (--deploy-hook "systemctl reload nginx"), run by the shell as
-- certbot runs it. A command the spec syntax cannot carry stays as
-- given, and its error says what is wrong.
local function deploy_specs(list)
    local out = {}
    for i, v in ipairs(list or {}) do
        out[i] = v
        local head = v:match("^([^:]*)")
        if head:find("%s") and not core.stat(head) then
            local spec = "command:sh=1,cmd=" .. v
            local p = require("luacme.hooks").parse_spec(spec)
            if p and p.opts.cmd == v then out[i] = spec end
        end
    end
    return out
end

-- Remove dir and everything under it (a dry run's throwaway state).
local function remove_tree(dir)
    for _, n in ipairs(core.listdir(dir) or {}) do
        local path = dir .. "/" .. n
        local st = core.lstat(path)
        if st and st.type == "dir" then remove_tree(path)
        else core.unlink(path) end
    end
    core.rmdir(dir)
end

-- --dry-run (certbot's meaning): run(m, real) with m a context on a
-- throwaway state and the CA's staging directory (or the CA given),
-- holding a copy of the real state's account for that CA when there is
-- one; real is the context of the real state, which is only read. No
-- deploy hooks run (the callers leave them out). The throwaway state is
-- removed afterwards, also on failure.
local function dry_run(o, out, env, run)
    local state = require "luacme.state"
    local real <close> = context(o, out, env)
    local tmp = os.tmpname()
    os.remove(tmp)
    check(core.mkdir(tmp, 448))
    local ok, res = pcall(function()
        local m <close> = context(o, out, env, { state = tmp })
        local key = state.read_account_key(real.st, m.directory)
        local acct = state.read_account(real.st, m.directory)
        if key and acct then
            local lk <close> = check(state.lock_account(m.st, m.directory, 5))
            check(state.write_account_key(m.st, m.directory, key))
            check(state.write_account(m.st, m.directory, acct))
        end
        out:event("dry_run", { directory = m.directory }, "dry run " ..
            "against " .. m.directory .. ": nothing is kept, no deploy " ..
            "hook runs")
        return run(m, real)
    end)
    remove_tree(tmp)
    if not ok then error(res, 0) end
    return res
end

local function cmd_issue(p, out, env)
    local output = require "luacme.output"
    local o = p.opts
    local m <close> = context(o, out, env)
    local valid_for
    if o.valid_for then
        valid_for = check(M.duration(o.valid_for))
    end
    if (o.domain == nil and o.ip == nil) and not o.csr then
        usage("issue needs -d NAME (or --ip ADDR, or --csr FILE); usage: " ..
            COMMANDS.issue.usage)
    end
    if o.out and not o.csr then usage("--out goes with --csr") end
    if o.dry_run and o.csr then usage("--dry-run goes without --csr") end
    local issue = function(ctx, s, f) return ctx:issue(s, f) end
    if o.dry_run then
        issue = function(_, s)
            s.deploy_hooks = {}
            return dry_run(o, out, env, function(dm)
                return dm:issue(s, { force = true })
            end)
        end
    end
    local res = check(issue(m, renewal_opts(o, {
        names = o.domain, ips = o.ip, name = o.name,
        key_type = M.key_type(o.key_type, o.elliptic_curve, o.rsa_key_size),
        reuse_key = o.reuse_key,
        must_staple = o.must_staple, csr = o.csr, out_file = o.out,
        preferred_chain = o.preferred_chain, profile = o.profile,
        valid_for = valid_for, hooks = o.hook,
        deploy_hooks = deploy_specs(o.deploy_hook),
        dns_wait = number_opt(o.dns_wait, "--dns-wait", 0, 3600),
    }), { force = o.force }))
    out:result{ ok = true, command = "issue", name = res.name,
        dry_run = o.dry_run or nil,
        names = util.array(res.names), serial = res.serial,
        not_after = output.time(res.not_after),
        unchanged = res.unchanged or false, file = res.file,
        exit = res.code }
    return res.code
end

-- Most certificates renew --parallel works on at once (certs.lua has
-- the same bound for recipes).
local PARALLEL_MAX = 64

-- renew --dry-run: every stored certificate (or the ones named) is
-- issued again at the staging CA with its settings, due or not, and
-- without its deploy hooks; nothing is kept.
local function renew_dry(p, out, env)
    return dry_run(p.opts, out, env, function(m, real)
        local state = require "luacme.state"
        local res = { renewed = {}, not_due = {}, failed = {} }
        local names = p.args
        if #names == 0 then
            names = {}
            for _, c in ipairs(check(real:list()).certs) do
                names[#names + 1] = c.name
            end
        end
        for _, name in ipairs(names) do
            local meta, err = state.read_meta(real.st, name)
            local r
            if meta then
                local s = { name = name }
                for _, k in ipairs(require("luacme.certs").SETTINGS) do
                    s[k] = meta[k]
                end
                s.deploy_hooks, s.directory = {}, nil
                if p.opts.ca_bundle then s.ca_bundle = p.opts.ca_bundle end
                r, err = m:issue(s, { force = true })
            end
            if r then
                res.renewed[#res.renewed + 1] = name
            else
                res.failed[#res.failed + 1] = name
                out:error(err, name)
            end
        end
        res.code = #res.failed > 0 and 1 or (#res.renewed > 0 and 0 or 2)
        return res
    end)
end

local function cmd_renew(p, out, env)
    local res
    if p.opts.dry_run then
        res = renew_dry(p, out, env)
        out:result{ ok = res.code ~= 1, command = "renew", dry_run = true,
            renewed = util.array(res.renewed), not_due = util.array({}),
            failed = util.array(res.failed), exit = res.code }
        return res.code
    end
    local m <close> = context(p.opts, out, env)
    local jitter = number_opt(p.opts.jitter, "--jitter", 0, 86400)
    local parallel
    if p.opts.parallel then
        parallel = math.tointeger(util.number(p.opts.parallel, 1,
            PARALLEL_MAX, true))
        if not parallel then
            error(errors.new("usage", "--parallel must be a whole number " ..
                "1.." .. PARALLEL_MAX), 0)
        end
    end
    res = check(m:renew{ names = p.args, force = p.opts.force,
        jitter = jitter, parallel = parallel })
    -- m:renew returns its failures; showing them is the command's part.
    for _, e in ipairs(res.errors) do out:error(e.err, e.name) end
    out:result{ ok = res.code ~= 1, command = "renew",
        renewed = util.array(res.renewed),
        not_due = util.array(res.not_due),
        failed = util.array(res.failed), exit = res.code }
    return res.code
end

local function cmd_sync(p, out, env)
    local m <close> = context(p.opts, out, env)
    local res = check(m:sync{ names = p.args })
    for _, e in ipairs(res.errors) do out:error(e.err, e.name) end
    out:result{ ok = res.code ~= 1, command = "sync",
        installed = util.array(res.installed),
        failed = util.array(res.failed), exit = res.code }
    return res.code
end

-- storage copy --from SPEC --to SPEC
local function cmd_storage(p, out, env)
    local storage = require "luacme.storage"
    local store_mod = require "luacme.store"
    local fleet = require "luacme.fleet"
    local o = p.opts
    if not o.from or not o.to then
        usage("storage copy needs --from SPEC and --to SPEC")
    end
    local function side(spec)
        local b, kind, params = storage.open(spec, env)
        if b == nil then error(kind, 0) end
        if kind == "file" then
            if not params.dir then usage("file: needs dir=PATH") end
            return { st = check(store_mod.open(params.dir)) }
        end
        return { b = b }
    end
    local skey
    local kfile = o.storage_key_file or env.LUACME_STORAGE_KEY_FILE
    if kfile and kfile ~= "" then skey = check(storage.load_key(kfile)) end
    if o.storage_plaintext_keys and not skey then
        out:warn("private keys go to the shared store unencrypted")
    end
    local src, dst = side(o.from), side(o.to)
    local n = check(errors.protect(fleet.copy, src, dst,
        { key = skey, plaintext = o.storage_plaintext_keys }))
    if src.b then src.b:close() end
    if dst.b then dst.b:close() end
    say(out, "copied " .. n.certs .. " certificate(s) and " .. n.accounts ..
        " account(s)")
    out:result{ ok = true, command = "storage", action = "copy",
        certs = n.certs, accounts = n.accounts, exit = 0 }
    return 0
end

local function cmd_revoke(p, out, env)
    local o = p.opts
    local m <close> = context(o, out, env)
    local reason = o.reason and check(M.reason(o.reason)) or nil
    if (p.args[1] == nil) == (o.cert == nil) then
        usage("give CERTNAME or --cert FILE (one of them); usage: " ..
            COMMANDS.revoke.usage)
    end
    local res = check(m:revoke{ name = p.args[1], cert_file = o.cert,
        reason = reason, cert_key_file = o.cert_key })
    out:result{ ok = true, command = "revoke", name = res.name,
        serial = res.serial, exit = res.code }
    return res.code
end

local function cmd_list(p, out, env)
    local m <close> = context(p.opts, out, env)
    local res = check(m:list())
    for _, c in ipairs(res.certs) do
        out:event("cert", cert_fields(c), nil)
    end
    say(out, list_text(res.certs))
    out:result{ ok = true, command = "list", count = #res.certs, exit = 0 }
    return 0
end

local function cmd_reconfigure(p, out, env)
    local o = p.opts
    local m <close> = context(o, out, env)
    if o.reuse_key and o.no_reuse_key then
        usage("--reuse-key or --no-reuse-key, not both")
    end
    local reuse
    if o.reuse_key then reuse = true elseif o.no_reuse_key then reuse = false end
    local res = check(m:reconfigure(p.args[1], renewal_opts(o, {
        hooks = o.hook, deploy_hooks = deploy_specs(o.deploy_hook),
        key_type = M.key_type(o.key_type), reuse_key = reuse,
        preferred_chain = o.preferred_chain, profile = o.profile,
        dns_wait = number_opt(o.dns_wait, "--dns-wait", 0, 3600),
    })))
    out:result{ ok = true, command = "reconfigure", name = res.name,
        changed = util.array(res.changed), exit = res.code }
    return res.code
end

local function cmd_delete(p, out, env)
    local m <close> = context(p.opts, out, env)
    local res = check(m:delete(p.args[1], p.opts.purge))
    out:result{ ok = true, command = "delete", name = res.name,
        purged = res.purged, exit = res.code }
    return res.code
end

-- import TOOL [DIR]: read the plan (the source is only read), tell it,
-- and apply it unless --dry-run.
local function cmd_import(p, out, env)
    local import = require "luacme.import"
    local output = require "luacme.output"
    local m <close> = context(p.opts, out, env)
    local plan = import.read(p.args[1], p.args[2], env)
    local dry = p.opts.dry_run
    local res = { accounts = {}, certs = {} }
    if not dry then res = import.apply(m, plan) end
    local verb = dry and "would import" or "imported"
    local new = 0
    for i, a in ipairs(plan.accounts) do
        local status = res.accounts[i] and res.accounts[i].status or verb
        if status == "imported" or status == verb then new = new + 1 end
        local text = "account " .. a.uri .. " for " ..
            tostring(require("luacme.state").ca_host(a.directory)) ..
            ": " .. status
        if status == "conflict" then
            text = text .. " (the state has another account for this CA: " ..
                tostring(res.accounts[i].existing) .. "; kept)"
        end
        out:event("import_account", { directory = a.directory, uri = a.uri,
            key_type = a.key_type, from = a.from, status = status }, text)
    end
    for i, e in ipairs(plan.certs) do
        local status = res.certs[i] and res.certs[i].status or verb
        if status == "imported" or status == verb then new = new + 1 end
        local names = util.array(e.names)
        for _, ip in ipairs(e.ips) do names[#names + 1] = ip end
        local lines = { "certificate " .. e.name .. " (" ..
            table.concat(names, ", ") .. "; " .. e.key_type .. "; expires " ..
            output.date(e.not_after) .. "): " .. status }
        for _, h in ipairs(e.hooks) do
            lines[#lines + 1] = "  hook: " .. h
        end
        for _, h in ipairs(e.deploy_hooks) do
            lines[#lines + 1] = "  deploy hook: " .. h
        end
        for _, h in ipairs(e.pre_hooks or {}) do
            lines[#lines + 1] = "  pre hook: " .. h
        end
        for _, h in ipairs(e.post_hooks or {}) do
            lines[#lines + 1] = "  post hook: " .. h
        end
        if e.renew_days then
            lines[#lines + 1] = "  renew " .. e.renew_days ..
                " days before expiry"
        end
        out:event("import_cert", { name = e.name, names = names,
            key_type = e.key_type, directory = e.directory,
            hooks = util.array(e.hooks),
            deploy_hooks = util.array(e.deploy_hooks),
            pre_hooks = util.array(e.pre_hooks or {}),
            post_hooks = util.array(e.post_hooks or {}),
            renew_days = e.renew_days,
            not_after = output.time(e.not_after), from = e.from,
            status = status }, lines[1])
        if #lines > 1 then say(out, table.concat(lines, "\n", 2)) end
    end
    for _, u in ipairs(plan.unmapped) do
        out:event("unmapped", { name = u.name, what = u.what },
            "not mapped" .. (u.name and (" (" .. u.name .. ")") or "") ..
            ": " .. u.what)
    end
    local code = new > 0 and 0 or 2
    out:result{ ok = true, command = "import", tool = plan.tool,
        dry_run = dry or false, accounts = #plan.accounts,
        certs = #plan.certs, unmapped = #plan.unmapped, exit = code }
    return code
end

-- The only one that needs neither the state nor the CA.
local function cmd_hooks(_, out)
    local list = require("luacme.hooks").list_builtin()
    for _, h in ipairs(list) do
        out:event("hook", { name = h.name, types = h.types,
            deploy = h.deploy, description = h.description,
            options = h.options, error = h.error }, nil)
    end
    say(out, M.help("hooks"))
    out:result{ ok = true, command = "hooks", count = #list, exit = 0 }
    return 0
end

-- The direct commands: cmd_X(p) returns the exit code, with no output
-- object and no handler of failures.

local function cmd_help(p)
    local topic = p.command == "help" and p.args[1] or nil
    local text = M.help(topic)
    if not text then
        io.stderr:write("luacme: no help on '", topic, "'\n")
        return 1
    end
    print(text)
    return 0
end

local function cmd_version()
    print(versions())
    return 0
end

local function cmd_run(p)
    return M.run_file(p.run.file, p.run.args)
end

-- The settings issue and reconfigure both take, kept for renewals.
local function renewal_options()
    return {
        { "days", arg = "N", help = "renew when fewer than N days " ..
            "are left (default: a third of the lifetime, or the CA's " ..
            "renewal window); kept for renewals" },
        { "preferred-challenges", arg = "TYPE[,TYPE]", multi = true,
          help = "use only these challenge types (http-01, dns-01, " ..
              "tls-alpn-01; certbot's http, dns) among those the " ..
              "hooks offer; kept for renewals" },
        { "pre-hook", arg = "CMD", multi = true, help = "shell " ..
            "command run once per run before the first order, only " ..
            "when something is ordered; kept for renewals" },
        { "post-hook", arg = "CMD", multi = true, help = "shell " ..
            "command run once at the end of a run that ordered " ..
            "something; kept for renewals" },
    }
end

-- The list a with the elements of b appended.
local function join(a, b)
    for _, v in ipairs(b) do a[#a + 1] = v end
    return a
end

-- The commands, as a luaL_Reg with its documentation. For each: usage
-- (the line of its help and of usage errors), positional (how many
-- arguments: min, max), opts (as GLOBAL), help (the text between usage
-- and the options in `luacme help COMMAND`), subs (account's
-- subcommands) and run, the handler. direct: run(p) comes before --help
-- and without the output object (help, version, run). run's words after
-- FILE are the recipe's: the parser stops there.
COMMANDS = {
    account = {
        usage = "luacme account new|show|update|deactivate|rollover " ..
            "[--key-type TYPE]",
        subs = ACCOUNT,
        positional = { min = 1, max = 1 },
        opts = {
            { "key-type", arg = "TYPE", help = "account key for new and " ..
                "rollover: " .. KEY_TYPE_HELP },
            { "yes", help = "confirm deactivate (it cannot be undone)" },
        },
        help = [[
  new         register an account (key type --key-type); exit 2 if one exists
  show        the CA's view: URL, status, contacts
  update      set the contacts to the --contact options given
  deactivate  disable the account at the CA for good (needs --yes)
  rollover    replace the account key with a new one (--key-type)
One account per CA, in STATE/accounts/<CA host>/. External account
binding: --eab-kid KID with LUACME_EAB_HMAC_KEY or --eab-hmac-key-file.]],
        run = cmd_account,
    },
    issue = {
        usage = "luacme issue -d NAME [-d NAME ...] [--ip ADDR ...] " ..
            "--hook SPEC [options]",
        positional = { min = 0, max = 0 },
        opts = join({
            { "domain", short = "d", arg = "NAME", multi = true,
              help = "a DNS name (repeatable, or a,b,c); *.NAME for a " ..
                  "wildcard (needs a dns-01 hook)" },
            { "ip", arg = "ADDR", multi = true, help = "an IP address " ..
                "(repeatable)" },
            { "name", arg = "CERTNAME", help = "the certificate's name in " ..
                "the state (default: the first name; *. becomes _.)" },
            { "key-type", arg = "TYPE", help = KEY_TYPE_HELP },
            { "reuse-key", help = "keep the private key on renewal" },
            { "must-staple", help = "ask for the OCSP must-staple extension" },
            { "csr", arg = "FILE", help = "use this CSR (PEM or DER); " ..
                "its key stays yours, the chain goes to --out, nothing " ..
                "is stored" },
            { "out", arg = "FILE", help = "with --csr: where the chain goes" },
            { "preferred-chain", arg = "ISSUER", help = "pick the chain " ..
                "whose top issuer has this common name" },
            { "profile", arg = "NAME", help = "certificate profile, when " ..
                "the CA offers profiles" },
            { "valid-for", arg = "DURATION", help = "ask for this lifetime " ..
                "(e.g. 7d, 12h); CAs may ignore it" },
            { "hook", arg = "SPEC", multi = true, help = "challenge hook " ..
                "(repeatable), e.g. webroot:root=/var/www/html" },
            { "deploy-hook", arg = "SPEC", multi = true, help = "run after " ..
                "a new certificate is installed (repeatable), e.g. " ..
                "\"command:cmd=systemctl reload nginx\"" },
            { "force", help = "issue even if a valid certificate with " ..
                "these names exists" },
            { "dns-wait", arg = "SECONDS", help = "dns-01 hooks wait this " ..
                "long instead of checking the authoritative servers (hidden " ..
                "primaries); kept for renewals" },
            { "timeout", arg = "SECONDS", help = "limit for one issuance " ..
                "(default 300)" },
            { "dry-run", help = "the whole flow at the CA's staging " ..
                "directory (or the --directory URL given), keeping " ..
                "nothing and running no deploy hook" },
        }, renewal_options()),
        help = [[
Gets a certificate for the names and stores it under STATE/certs/CERTNAME/
(privkey.pem, cert.pem, chain.pem, fullchain.pem, meta.json), with the
settings used (names, hooks, key type, chain, profile), which renew reuses.
Nothing happens when a valid certificate with the same names exists
(exit 2) unless --force. The account for the CA is created when missing
(add --agree-tos, and --contact). The previous certificate stays in place
until the new one is complete, then remains as *.prev.]],
        aliases = ISSUE_ALIASES,
        also = {
            { "key-type", arg = "TYPE", help = "also as ecdsa, rsa, " ..
                "ec-256, ec-384, 2048, 3072, 4096, prime256v1, secp384r1" },
            { "deploy-hook", arg = '"CMD ARGS"', help = "a command line " ..
                "instead of a hook spec runs with /bin/sh -c, as certbot " ..
                "runs it (= command:sh=1,cmd=CMD ARGS)" },
        },
        run = cmd_issue,
    },
    renew = {
        usage = "luacme renew [CERTNAME ...] [--force] [--jitter SECONDS] " ..
            "[--parallel N]",
        positional = { min = 0, max = math.huge },
        opts = {
            { "force", help = "renew even when not due" },
            { "jitter", arg = "SECONDS", help = "first wait a random time " ..
                "up to SECONDS (for cron and timers)" },
            { "parallel", arg = "N", help = "work on up to N certificates " ..
                "at once (default 4, at most 64)" },
            { "dry-run", help = "the whole flow at the CA's staging " ..
                "directory (or the --directory URL given), keeping " ..
                "nothing and running no deploy hook" },
            { "timeout", arg = "SECONDS", help = "limit for one issuance " ..
                "(default 300)" },
        },
        help = [[
Renews every stored certificate (or the ones named) that is due: inside
the CA's renewal window when the CA offers ARI (a random moment in it),
otherwise once a third of the lifetime remains (half for certificates
valid under 10 days). Uses the settings the certificate was issued with.
Exit 0 when something was renewed, 2 when nothing was due, 1 on any error
(the others are still tried). A revoked certificate is renewed only when
named (luacme renew NAME) or with --force, so cron does not bring back a
retired domain. Several certificates are worked on at once (--parallel,
default 4), each under its own lock, in one process with one connection
pool; their output lines start with the certificate name. With a shared
--storage it first installs what other nodes renewed and renews under a
lock held fleet-wide; it exits 0 too when only such an install changed
something.]],
        run = cmd_renew,
    },
    sync = {
        usage = "luacme sync [CERTNAME ...]",
        positional = { min = 0, max = math.huge },
        opts = {},
        help = [[
With a shared --storage: installs into this node's --install-dir every
certificate (or the ones named) whose generation in the store is newer
than the installed one, and runs its deploy hooks. Exit 0 when something
was installed, 2 when nothing changed, 1 on an error (the store
unreachable: installed files stay as they are).]],
        run = cmd_sync,
    },
    storage = {
        usage = "luacme storage copy --from SPEC --to SPEC",
        subs = { copy = true },
        positional = { min = 1, max = 1 },
        opts = {
            { "from", arg = "SPEC", help = "the store to copy from" },
            { "to", arg = "SPEC", help = "the store to copy to" },
        },
        help = [[
Copies accounts and certificates between stores, e.g. a single node's
state directory (file:dir=/var/lib/luacme) into a fleet's etcd or Redis,
and back. Private keys are sealed with --storage-key-file on the way in
and opened with it on the way out.]],
        run = cmd_storage,
    },
    revoke = {
        usage = "luacme revoke CERTNAME|--cert FILE [--reason CODE|NAME] " ..
            "[--cert-key FILE]",
        positional = { min = 0, max = 1 },
        opts = {
            { "cert", arg = "FILE", help = "revoke this certificate file " ..
                "instead of a stored one" },
            { "reason", arg = "CODE|NAME", help = "RFC 5280 reason: " ..
                "unspecified, keyCompromise, affiliationChanged, " ..
                "superseded, " ..
                "cessationOfOperation, ... or its number" },
            { "cert-key", arg = "FILE", help = "sign with the certificate's " ..
                "key instead of the account (e.g. after losing the account)" },
        },
        help = [[
Revokes a stored certificate (signed with the account, or with the stored
certificate key when there is no account) or a certificate file.]],
        run = cmd_revoke,
    },
    list = {
        usage = "luacme list",
        positional = { min = 0, max = 0 },
        opts = {},
        help = [[
Every stored certificate: names, expiry, when it is due, and the last
error. With --json one "cert" event per certificate.]],
        run = cmd_list,
    },
    reconfigure = {
        usage = "luacme reconfigure CERTNAME [--hook SPEC ...] " ..
            "[--deploy-hook SPEC ...] [--key-type TYPE] [options]",
        positional = { min = 1, max = 1 },
        opts = join({
            { "hook", arg = "SPEC", multi = true, help = "challenge hooks " ..
                "(replace the stored ones)" },
            { "deploy-hook", arg = "SPEC", multi = true, help = "deploy " ..
                "hooks (replace the stored ones); a command line works too" },
            { "key-type", arg = "TYPE", help = KEY_TYPE_HELP },
            { "reuse-key", help = "keep the private key on renewal" },
            { "no-reuse-key", help = "a new key on each renewal" },
            { "preferred-chain", arg = "ISSUER", help = "pick the chain " ..
                "whose top issuer has this common name" },
            { "profile", arg = "NAME", help = "certificate profile" },
            { "dns-wait", arg = "SECONDS", help = "with --hook: dns-01 " ..
                "hooks wait this long" },
        }, renewal_options()),
        help = [[
Changes the settings a stored certificate is renewed with, without
issuing now: what is given replaces what is stored, the rest stays.
Hooks are checked at once. Exit 2 when nothing changed.]],
        run = cmd_reconfigure,
    },
    delete = {
        usage = "luacme delete CERTNAME [--purge]",
        positional = { min = 1, max = 1 },
        opts = {
            { "purge", help = "also remove its files (key, certificate, " ..
                "chain)" },
        },
        help = [[
Stops renewing a certificate. Its files stay where your servers read them
(meta.json records the deletion; list and renew skip it) unless --purge.
It is not revoked: luacme revoke CERTNAME first for that. Issuing its
names again makes it a certificate luacme renews again.]],
        run = cmd_delete,
    },
    import = {
        usage = "luacme import certbot|dehydrated|acme.sh [DIR] [--dry-run]",
        positional = { min = 1, max = 2 },
        opts = {
            { "dry-run", help = "show what would be imported; write nothing" },
        },
        help = [[
Takes over the accounts and certificates of another ACME client, from DIR
(default: certbot /etc/letsencrypt, dehydrated /etc/dehydrated (its
BASEDIR, or its config file), acme.sh ~/.acme.sh). Accounts are reused
(never registered again), one per CA; each certificate keeps its key,
chain and names, and its challenge method and deploy/reload command
become luacme hook specs, so luacme renew carries on as the old tool
would have. What cannot be mapped is listed ("not mapped"), never
guessed. The source is only read; what luacme's state holds already is
kept. Exit 0 when something was (or with --dry-run would be) imported,
2 when everything was there already.]],
        run = cmd_import,
    },
    hooks = {
        usage = "luacme hooks",
        positional = { min = 0, max = 0 },
        opts = {},
        help = [[
Lists the built-in hooks and their options (see also luacme help hooks).]],
        run = cmd_hooks,
    },
    help = {
        usage = "luacme help [COMMAND|json|hooks|exit-codes]",
        positional = { min = 0, max = 1 },
        opts = {},
        direct = true, run = cmd_help,
    },
    version = {
        usage = "luacme --version",
        positional = { min = 0, max = 0 },
        opts = {},
        direct = true, run = cmd_version,
    },
    run = {
        usage = "luacme run RECIPE.lua [ARGS...]",
        opts = {},
        help = [[
Runs a Lua file with the whole API (require "luacme", "luacme.manage",
"luacme.solve", ...); arg[0] is the file, arg[1..] its arguments. The
exit status is the recipe's return value (an integer; false is 1, else 0).
Examples are in examples/.]],
        direct = true, run = cmd_run,
    },
}
M.COMMANDS = COMMANDS
M.GLOBAL = GLOBAL

local function key_of(long)
    return (long:gsub("%-", "_"))
end

local function find_opt(list, long, short)
    for _, o in ipairs(list or {}) do
        if (long and o[1] == long) or (short and o.short == short) then
            return o
        end
    end
    return nil
end

-- Options whose values are lists split on commas.
local COMMA = { domain = true, ip = true }

--
-- The option parser, one for the command line (parse) and for recipes
-- (options). A scan is { argv, i (the word read), strict, p = { command,
-- args, opts } }. Strict, the command line: the first word is the
-- command, whose options join the global ones; unknown options, a value
-- for a flag and a single value given twice are errors; short options
-- bundle (-vq, -dNAME). Lax, for recipes: only the global options, and
-- anything that is not exactly one of them (-x, --name, --name=value)
-- goes to args untouched, as do all words; the last of a repeated value
-- wins, a flag ignores "=value". In both, "--" ends the options.
--

-- The option long or short known where the scan stands: the command's
-- own, then the global ones.
local function lookup(s, long, short)
    local cmd = COMMANDS[s.p.command or ""]
    return find_opt(cmd and cmd.opts, long, short) or
        find_opt(GLOBAL, long, short) or
        find_opt(cmd and cmd.aliases, long, short) or
        find_opt(GLOBAL_ALIASES, long, short)
end

-- Every long option known where the scan stands (for "did you mean").
local function known_longs(s)
    local cmd = COMMANDS[s.p.command or ""]
    local out = {}
    for _, l in ipairs({ cmd and cmd.opts or {}, GLOBAL,
        cmd and cmd.aliases or {}, GLOBAL_ALIASES }) do
        for _, o in ipairs(l) do out[#out + 1] = o[1] end
    end
    return out
end

-- Edit distance of a and b (Levenshtein), for "did you mean".
local function distance(a, b)
    local prev = {}
    for j = 0, #b do prev[j] = j end
    for i = 1, #a do
        local cur = { [0] = i }
        for j = 1, #b do
            local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
            cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
        end
        prev = cur
    end
    return prev[#b]
end

-- "; did you mean --X?" for the known option closest to long, or "".
local function did_you_mean(s, long)
    local best, bd
    for _, k in ipairs(known_longs(s)) do
        local d = distance(long, k)
        if not bd or d < bd then best, bd = k, d end
    end
    if best and bd <= math.max(2, #long // 3) then
        return "; did you mean --" .. best .. "?"
    end
    return ""
end

local function for_command(s)
    return s.p.command and (" for " .. s.p.command) or ""
end

-- Record option o with value val (nil for a flag). Returns true or nil,
-- message.
local function store(s, o, val)
    if o.to then
        local target = lookup(s, o.to) or { o.to, arg = o.arg }
        if o.value then val = o.value(val) end
        if target.arg and val == nil then val = "" end
        o = target
    end
    local opts, k = s.p.opts, key_of(o[1])
    if o.arg == nil then
        opts[k] = true
    elseif o.multi then
        opts[k] = opts[k] or {}
        if COMMA[o[1]] then
            -- Commas only: "exa mple.test" is one (bad) name, refused
            -- later with its reason, not two names.
            for piece in val:gmatch("[^,]+") do
                piece = trim(piece)
                if piece ~= "" then table.insert(opts[k], piece) end
            end
        else
            table.insert(opts[k], val)
        end
    else
        if s.strict and opts[k] ~= nil then
            return nil, "--" .. o[1] .. " given twice"
        end
        opts[k] = val
    end
    return true
end

-- Option o's value: inline (after "=" or the letter) or the next word.
local function value(s, o, name, inline)
    if inline ~= nil then return inline end
    s.i = s.i + 1
    local v = s.argv[s.i]
    if v == nil then return nil, name .. " needs " .. o.arg end
    return v
end

-- --name or --name=value. Returns true, false when lax and not a global
-- option, or nil, message.
local function long_option(s, a)
    local long, val = a:match("^%-%-([^=]+)=(.*)$")
    long = long or a:sub(3)
    local o = lookup(s, long)
    if not o then
        if not s.strict then return false end
        if long:find("^eab%-hmac%-key") then
            return nil, "--" .. long .. ": the EAB HMAC key is never " ..
                "taken on the command line (others can read it there); " ..
                "use LUACME_EAB_HMAC_KEY or --eab-hmac-key-file FILE"
        end
        return nil, "unknown option --" .. long .. for_command(s) ..
            did_you_mean(s, long)
    end
    if o.arg then
        local err
        val, err = value(s, o, "--" .. long, val)
        if val == nil then return nil, err end
    elseif val ~= nil and s.strict then
        return nil, "--" .. long .. " takes no value"
    end
    return store(s, o, val)
end

-- -v, -vq, -d NAME, -dNAME (lax: a lone -x only). Returns as long_option.
local function short_options(s, a)
    if not s.strict and #a ~= 2 then return false end
    for j = 2, #a do
        local c = a:sub(j, j)
        local o = lookup(s, nil, c)
        if not o then
            if not s.strict then return false end
            return nil, "unknown option -" .. c .. for_command(s)
        end
        if o.arg then
            local inline = a:sub(j + 1)
            local val, err = value(s, o, "-" .. c, inline ~= "" and inline
                or nil)
            if val == nil then return nil, err end
            return store(s, o, val)
        end
        local ok, err = store(s, o, nil)
        if not ok then return nil, err end
    end
    return true
end

-- A word that is no option: in strict mode the first one before "--" is
-- the command, after `run` the next is the file and the rest is the
-- recipe's; any other word is an argument. Returns true, "stop" (run:
-- nothing more to parse) or nil, message.
local function word(s, a, plain)
    local p = s.p
    if plain or p.command or not s.strict then
        p.args[#p.args + 1] = a
        return true
    end
    if not COMMANDS[a] then
        return nil, "unknown command '" .. a .. "'"
    end
    p.command = a
    if a == "run" then
        local file = s.argv[s.i + 1]
        if not file then return nil, "usage: luacme run FILE.lua [ARGS...]" end
        p.run = { file = file, args = table.move(s.argv, s.i + 2, #s.argv,
            1, {}) }
        return "stop"
    end
    return true
end

-- Read argv: returns { command=, args=, opts=, run= } (see the block
-- comment above) or nil, message.
local function scan(argv, strict)
    local s = { argv = argv, i = 1, strict = strict,
        p = { opts = {}, args = {} } }
    local only_args = false
    while s.i <= #argv do
        local a = argv[s.i]
        local ok, err
        if only_args or a == "-" or a:sub(1, 1) ~= "-" then
            ok, err = word(s, a, only_args)
        elseif a == "--" then
            only_args, ok = true, true
        elseif a:sub(1, 2) == "--" then
            ok, err = long_option(s, a)
        else
            ok, err = short_options(s, a)
        end
        if ok == false then ok, err = word(s, a, true) end
        if ok == nil then return nil, err end
        if ok == "stop" then break end
        s.i = s.i + 1
    end
    return s.p
end

-- parse(argv) -> { command=, sub=, args = {positional...}, opts = {...},
-- run = { file=, args= } } or nil, message. Global options may come
-- before or after the command. After `run FILE` nothing is parsed.
function M.parse(argv)
    local p, err = scan(argv, true)
    if not p or p.run then return p, err end
    if p.opts.version and not p.command then p.command = "version" end
    local cmd = COMMANDS[p.command or ""]
    if cmd and not p.opts.help then
        local pos = cmd.positional
        if #p.args < pos.min or #p.args > pos.max then
            return nil, "usage: " .. cmd.usage
        end
        if cmd.subs then
            p.sub = p.args[1]
            if not cmd.subs[p.sub] then
                return nil, "unknown " .. p.command .. " command '" ..
                    tostring(p.sub) .. "'; usage: " .. cmd.usage
            end
        end
    end
    return p
end

-- For recipes: the global options (as luacme takes them) out of argv,
-- and the other arguments. Returns opts, rest or nil, message. "--"
-- ends the options; everything after it goes to rest.
function M.options(argv)
    local p, err = scan(argv, false)
    if not p then return nil, err end
    return p.opts, p.args
end

--
-- Help
--

-- Words of text in lines of at most width columns.
local function wrap(text, width)
    local lines, cur = {}, ""
    for w in text:gmatch("%S+") do
        if cur ~= "" and #cur + 1 + #w > width then
            lines[#lines + 1] = cur
            cur = w
        else
            cur = cur == "" and w or (cur .. " " .. w)
        end
    end
    if cur ~= "" then lines[#lines + 1] = cur end
    return lines
end

-- Help lines for options: the option in 28 columns, the text wrapped
-- to 78.
local function opt_lines(list)
    local lines, col = {}, 28
    for _, o in ipairs(list) do
        local head = "  " .. (o.short and ("-" .. o.short .. ", ") or "") ..
            "--" .. o[1] .. (o.arg and (" " .. o.arg) or "")
        local body = wrap(o.help, 78 - col)
        if #head < col then
            lines[#lines + 1] = head .. string.rep(" ", col - #head) ..
                body[1]
        else
            lines[#lines + 1] = head
            lines[#lines + 1] = string.rep(" ", col) .. body[1]
        end
        for i = 2, #body do
            lines[#lines + 1] = string.rep(" ", col) .. body[i]
        end
    end
    return table.concat(lines, "\n")
end

-- Help lines for aliases: "also accepted" and what each means.
local function alias_lines(list)
    for _, o in ipairs(list) do
        o.help = o.help or "= " .. (o.shows or ("--" .. o.to .. (o.arg and
            (" " .. o.arg) or "")))
    end
    return opt_lines(list)
end

M.HELP_EXIT = [[
Exit codes:
  0    done: a certificate was issued or renewed, an account created, ...
  1    error (the message says what failed, and often what to try)
  2    nothing to do: renew found nothing due, issue found a valid
       certificate with the same names, account new found an account
  130  interrupted (Ctrl-C or SIGTERM); hooks were cleaned up

So from cron:  luacme renew -q && systemctl reload nginx
With several certificates one failure makes it 1 even when another was
renewed: give each its reload as --deploy-hook "systemctl reload nginx"
(run right after that certificate is installed). certbot's renew exits 0
when nothing is due; where only 0 counts as success use
  luacme renew -q || [ $? -eq 2 ]
A revoked certificate is left alone by renew unless named.]]

M.HELP_MAIN = [[
luacme: an ACME (RFC 8555) certificate client

Usage: luacme [GLOBAL OPTIONS] COMMAND [OPTIONS]

Commands:
  issue -d NAME... --hook SPEC   get a certificate (and keep its settings)
  renew [CERTNAME...]            renew what is due (all when none given)
  revoke CERTNAME|--cert FILE    revoke a certificate
  list                           certificates, expiry, when due, last error
  reconfigure CERTNAME [--hook SPEC] [--deploy-hook SPEC] [--key-type T]
                                 change how it is renewed, without issuing
  delete CERTNAME [--purge]      stop renewing it (files kept unless --purge)
  import certbot|dehydrated|acme.sh [DIR]
                                 take over another client's state
  account new|show|update|deactivate|rollover
  hooks                          the built-in hooks and their options
  run RECIPE.lua [ARGS...]       run a Lua recipe with the whole API
  help [COMMAND|json|hooks|exit-codes]
  --version

Global options (before or after the command):
%s

%s

Example:
  luacme issue -d example.com -d www.example.com \
      --hook webroot:root=/var/www/html --agree-tos --contact me@example.com \
      --deploy-hook "command:cmd=systemctl reload nginx"
  luacme renew -q        # from cron or a systemd timer, daily]]

M.HELP_JSON = [[
With --json every step is one JSON object on its own line (stdout), and
the last line is the result. Field names are stable. Times are RFC 3339
UTC strings, durations seconds. When renew works on several certificates
at once, each event of one of them also has "cert" (its name).

Events ("event": NAME):
  account      ca, uri, created (bool)
  order        name, identifiers [..], reason
  deployed     identifier, wildcard, type (http-01, ...), hook
  ready_wait   pending [identifier..], elapsed, timeout, reason (what
               the hook's ready() said)
  validating   count
  waiting      pending (count), elapsed, timeout, finalizing (bool)
  finalize     (no fields)
  cleanup      identifier, wildcard, type, hook, ok, error
  issued       name, names [..], serial, not_before, not_after, issuer, dir
  deploy_hook  hook, name, ok, error
  hook_event   hook, event (startup|exit|invalid|failure), ok, error
  unchanged    name, not_after          (issue: a valid one exists)
  due          name, reason             (renew, with -v)
  not_due      name, due_at, reason     (renew)
  revoked      name | file, serial, reason, already
  cert         name, names, not_before, not_after, serial, issuer, due,
               due_at, reason, last_error {time, message, kind, type},
               revoked, error           (list)
  hook         name, types, deploy, description, options [..]  (hooks)
  reconfigured name, changed [..]        (reconfigure)
  deleted      name, purged              (delete)
  import_account  directory, uri, key_type, from, status (imported,
               exists, conflict, would import)              (import)
  import_cert  name, names, key_type, directory, hooks, deploy_hooks,
               not_after, from, status                      (import)
  unmapped     name, what: a setting of the old client luacme cannot
               carry over the same way (import)
  account_updated, account_deactivated, account_rollover: ca, uri, ...
  warning      message
  debug        message                  (with -v)
  error        kind, type, detail, status, identifier {type, value},
               wildcard, subproblems [..], errors [..], hint, context,
               instance, terms_of_service (when the CA gave them)
  result       ok (bool), command, exit (the exit code), and per command:
               issue: name, names, serial, not_after, unchanged
               renew: renewed [..], not_due [..], failed [..]
               revoke: name, serial
               import: tool, dry_run, accounts, certs, unmapped (counts)
               list: count;  account: action, account {ca, uri, status,
               contact, key_type, thumbprint}
               on failure: error {as above}]]

M.HELP_HOOKS = [[
A hook answers challenges (--hook SPEC) or acts on a new certificate
(--deploy-hook SPEC). A SPEC is NAME[:key=value,key=value...]:
  NAME      a built-in hook (listed below), or a path containing a "/":
            ./myhook.lua is loaded as a Lua hook, any other file is run as
            a dehydrated-style hook script (the exec hook)
  options   e.g. webroot:root=/var/www/html or
            exec:script=/etc/hook.sh,types=dns-01

Challenges: for each name luacme uses the first hook (in the order given)
that solves a type the CA offers; a wildcard needs dns-01, an IP address
http-01 or tls-alpn-01. All challenges are deployed, then checked with
ready() where a hook has it, then validated by the CA; cleanup always
runs, also on failure or Ctrl-C. Hooks never see the account key, and
their environment lacks luacme's secrets (LUACME_EAB_*, ...).
The contract for writing your own is hooks/README.md.]]

local function hooks_text()
    local hooks = require "luacme.hooks"
    local lines = {}
    for _, h in ipairs(hooks.list_builtin()) do
        if h.error then
            lines[#lines + 1] = h.name .. ": (does not load: " .. h.error .. ")"
        else
            local what = {}
            if type(h.types) == "table" then
                what[#what + 1] = table.concat(h.types, ", ")
            elseif h.types then
                what[#what + 1] = "challenges: " .. h.types
            end
            if h.deploy then what[#what + 1] = "deploy" end
            lines[#lines + 1] = h.name .. " (" .. table.concat(what, "; ") ..
                ")"
            for _, l in ipairs(wrap(h.description or "", 74)) do
                lines[#lines + 1] = "    " .. l
            end
            for _, o in ipairs(h.options or {}) do
                local body = wrap(o.name .. (o.required and " (required)"
                    or "") .. (o.help and (": " .. o.help) or ""), 72)
                for i, l in ipairs(body) do
                    lines[#lines + 1] = (i == 1 and "    - " or "      ") .. l
                end
            end
        end
    end
    return table.concat(lines, "\n")
end

-- The help text for topic (nil: the overview).
function M.help(topic)
    if topic == nil or topic == "" then
        return string.format(M.HELP_MAIN, opt_lines(GLOBAL) ..
            "\n\nAlso accepted (as certbot and acme.sh spell them):\n" ..
            alias_lines(GLOBAL_ALIASES), M.HELP_EXIT)
    end
    if topic == "json" then return M.HELP_JSON end
    if topic == "exit-codes" or topic == "exit" then return M.HELP_EXIT end
    if topic == "hooks" then
        return M.HELP_HOOKS .. "\n\nBuilt-in hooks:\n" .. hooks_text()
    end
    local cmd = COMMANDS[topic]
    if not cmd then return nil end
    local text = "Usage: " .. cmd.usage
    if cmd.help then text = text .. "\n\n" .. cmd.help end
    if #cmd.opts > 0 then
        text = text .. "\n\nOptions:\n" .. opt_lines(cmd.opts)
    end
    if cmd.aliases then
        local all = {}
        for _, l in ipairs({ cmd.aliases, GLOBAL_ALIASES }) do
            for _, o in ipairs(l) do all[#all + 1] = o end
        end
        for _, o in ipairs(cmd.also or {}) do all[#all + 1] = o end
        text = text .. "\n\nAlso accepted (as certbot, acme.sh and " ..
            "dehydrated users type them):\n" .. alias_lines(all)
    end
    -- After run FILE everything is the recipe's: no global options.
    if topic == "run" then return text end
    return text .. "\n\nGlobal options: see luacme help; exit codes: " ..
        "luacme help exit-codes."
end

--
-- Running
--

-- The output object for the global options -q, -v and --json.
local function new_output(o)
    local output = require "luacme.output"
    local level = 0
    if o.quiet then level = -1 elseif o.verbose then level = 1 end
    return output.new{ json = o.json, level = level }
end

-- For recipes: open(argv) -> manage context (luacme.manage), the
-- arguments that are not global options, and the output object; with
-- the same global options and defaults as the luacme command. Raises
-- a readable error for bad options. Close the context at the end (it
-- runs the hooks' exit()):
--   local m <close>, args, out = require("luacme.cli").open(arg)
function M.open(argv)
    local opts, rest = M.options(argv or {})
    if not opts then error("luacme: " .. rest, 0) end
    local out = new_output(opts)
    local ok, m = pcall(context, opts, out, core.environ())
    if not ok then
        out:error(m)
        error("luacme: bad options", 0)
    end
    return m, rest, out
end

local function interrupted(e)
    return type(e) == "table" and e.kind == "interrupted"
end

-- Run command cmd for the parsed command line p under the one handler
-- of failures. Returns its exit code, or shows the failure (text or
-- JSON) and returns 1, or 130 when interrupted.
local function execute(cmd, p)
    local output = require "luacme.output"
    local out = new_output(p.opts)
    local ok, res = xpcall(cmd.run, function(e)
        if type(e) == "table" then return e end
        return debug.traceback(tostring(e), 2)
    end, p, out, core.environ())
    if ok then return res end
    -- The one place where the failures of a command are shown.
    local code = 1
    if interrupted(res) then
        code = 130
        res = errors.new("interrupted", "interrupted by a signal; " ..
            "hooks were cleaned up and the working certificate is " ..
            "untouched")
    elseif type(res) ~= "table" then
        res = errors.new("internal", "internal error: " .. tostring(res))
    end
    out:error(res)
    out:result{ ok = false, command = p.command, action = p.sub,
        error = output.error_fields(res), exit = code }
    return code
end

function M.main(arg)
    local argv = {}
    for i = 1, #arg do argv[i] = arg[i] end
    -- The lock keeper luacme.storage starts for a held shared lock.
    if argv[1] == "__lock-keeper" then
        return require("luacme.storage").keeper_main(argv[2], argv[3])
    end
    local p, perr = M.parse(argv)
    if not p then
        -- --json asked for JSON: a usage error is one too.
        for _, a in ipairs(argv) do
            if a == "--" then break end
            if a == "--json" then
                local output = require "luacme.output"
                local out = output.new{ json = true, level = 0 }
                local err = errors.new("usage", perr)
                out:error(err)
                out:result{ ok = false, error = output.error_fields(err),
                    exit = 1 }
                return 1
            end
        end
        io.stderr:write("luacme: ", perr, "\n(luacme help shows the " ..
            "commands and options)\n")
        return 1
    end
    -- --help without a command is the help command.
    local cmd = COMMANDS[p.command or (p.opts.help and "help") or ""]
    if not cmd then
        io.stderr:write("usage: luacme [OPTIONS] COMMAND ...; luacme help " ..
            "lists the commands\n")
        return 1
    end
    if cmd.direct then return cmd.run(p) end
    if p.opts.help then
        print(M.help(p.command))
        return 0
    end
    return execute(cmd, p)
end

return M
