-- The operations behind the luacme command, usable from recipes too:
-- accounts, issuing, renewing, revoking and listing certificates kept in
-- the state directory (luacme.state on luacme.store).
--
--   local manage = require "luacme.manage"
--   local m = assert(manage.open{
--     state = "/var/lib/luacme",          -- default: state.default_dir
--     directory = manage.PRESETS.letsencrypt,   -- or any https URL
--     ca_file = nil, contact = { "mailto:me@example.com" }, agree_tos = true,
--     eab = { kid = ..., key = ... },           -- optional
--     out = require("luacme.output").new{},     -- where steps are told
--     lock_timeout = 60, timeout = 300,
--     -- tests: now = fn, sleep = fn, rand = fn, transport = fake CA
--   })
--   local res, err = m:issue{ domains = { "example.com" },
--     hooks = { "webroot:root=/var/www/html" } }
--   -- res = { code = 0 (issued) | 2 (a valid one exists), name=, ... }
--   local res, err = m:renew{}                  -- every certificate
--   m:close()           -- exit() of the hooks used (or: local m <close>)
--
-- Every method returns a result table (with code: 0 done, 2 nothing to
-- do) or nil, err with err a luacme.errors table. An interruption
-- (Ctrl-C, kind "interrupted") is raised on, after cleanup.
--
-- Locks: every operation on a certificate holds its lock (waiting up to
-- lock_timeout seconds); creating or changing an account holds the
-- account's lock. A failed or interrupted run never touches the working
-- certificate: state.install_cert switches to a new set only once it is
-- complete, keeping the previous one as *.prev.
local acme = require "luacme"
local core = require "luacme.core"
local errors = require "luacme.errors"
local hooks = require "luacme.hooks"
local ident = require "luacme.ident"
local output = require "luacme.output"
local renew = require "luacme.renew"
local solve = require "luacme.solve"
local state = require "luacme.state"
local store = require "luacme.store"
local util = require "luacme.util"

local M = {}

-- Directory presets (--directory NAME).
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

M.KEY_TYPES = { "ec256", "ec384", "rsa2048", "rsa3072", "rsa4096" }
M.DEFAULT_KEY_TYPE = "ec256"

-- Seconds a run waits for a certificate's or account's lock.
M.LOCK_TIMEOUT = 60
-- Seconds one issuance may take (order, validation, finalization).
M.TIMEOUT = 300

-- RFC 5280 §5.3.1 reason codes by name (lower case, no separators).
M.REASONS = {
    unspecified = 0, keycompromise = 1, cacompromise = 2,
    affiliationchanged = 3, superseded = 4, cessationofoperation = 5,
    certificatehold = 6, removefromcrl = 8, privilegewithdrawn = 9,
    aacompromise = 10,
}

local function fail(kind, detail, fields)
    return nil, errors.new(kind, detail, fields)
end

-- Raise err (an error table) unless v: the operations below run under
-- protect(), which turns the raise back into nil, err.
local function must(v, err, ...)
    if v == nil or v == false then
        if type(err) ~= "table" then
            err = errors.new("error", tostring(err or "failed"))
        end
        error(err, 0)
    end
    return v, err, ...
end

local function raise(kind, detail, fields)
    error(errors.new(kind, detail, fields), 0)
end

-- Run fn(...) and return its result, or nil, err for a raised error
-- table. Interruptions and programmer errors (strings) are raised on.
local function protect(fn, ...)
    local ok, res, extra = pcall(fn, ...)
    if ok then return res, extra end
    if type(res) == "table" and res.kind == "interrupted" then
        error(res, 0)
    end
    if errors.iserror(res) then return nil, res end
    error(res, 0)
end
M.protect = protect

--
-- Parsing helpers (also used by the command line)
--

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

local function is_key_type(t)
    for _, k in ipairs(M.KEY_TYPES) do
        if k == t then return true end
    end
    return false
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
-- The context
--

local Ctx = {}
Ctx.__index = Ctx

-- open(opts) -> context or nil, err. See the top of this file.
function M.open(opts)
    opts = opts or {}
    local out = opts.out or output.new{}
    local dir = opts.state
    if not dir then
        local err
        dir, err = state.default_dir(opts.env or core.environ(),
            core.getuid())
        if not dir then return nil, err end
    end
    local st, warnings = store.open(dir)
    if not st then return nil, warnings end
    for _, w in ipairs(warnings) do out:warn(w) end
    local directory = opts.directory or M.PRESETS[M.DEFAULT_PRESET]
    local ctx = setmetatable({
        st = st, out = out, directory = directory,
        directory_given = opts.directory_given or false,
        ca_file = opts.ca_file, contact = opts.contact,
        agree_tos = opts.agree_tos or false, eab = opts.eab,
        lock_timeout = opts.lock_timeout or M.LOCK_TIMEOUT,
        timeout = opts.timeout or M.TIMEOUT,
        now = opts.now or function() return math.floor(core.time()) end,
        sleep = opts.sleep or core.sleep,
        rand = opts.rand or renew.random,
        transport = opts.transport,       -- tests: a fake CA
    }, Ctx)
    return ctx
end

function Ctx:emit(name, fields, text, opts)
    self.out:event(name, fields, text, opts)
end

-- The run's hook session (startup once per hook, see solve.session).
function Ctx:session()
    if not self.sess then
        self.sess = solve.session(function(...) self:emit(...) end)
    end
    return self.sess
end

-- End the run: exit() of every hook started. Also on <close>.
function Ctx:close()
    if self.sess then
        self.sess:close()
        local e = self.sess.interrupted
        self.sess = nil
        if e then error(e, 0) end
    end
end
Ctx.__close = Ctx.close

-- A protocol client for the CA at url. Sleeps between polls report
-- progress through the solver of the issuance under way.
function Ctx:client(url, key, kid, ca_file)
    return acme.client{ directory = url, key = key, kid = kid,
        ca_file = ca_file or self.ca_file, transport = self.transport,
        now = self.transport and self.now or nil,
        sleep = function(d)
            if self.solver then self.solver:on_sleep(self.timeout) end
            self.sleep(d)
        end }
end

--
-- Accounts
--

local function host_of(url)
    return state.ca_host(url) or url
end

local function no_account(url)
    return errors.new("no_account", "no account for " .. host_of(url) ..
        " in the state directory")
end

-- The stored key and account.json of the CA at url, or nil, err
-- (kind "no_account" when there is none or only half of one).
function Ctx:load_account(url)
    local pem, err = state.read_account_key(self.st, url)
    if not pem then
        if err.kind == "not_found" then return nil, no_account(url) end
        return nil, err
    end
    local acct
    acct, err = state.read_account(self.st, url)
    if not acct then
        if err.kind == "not_found" then return nil, no_account(url) end
        return nil, err
    end
    if type(acct.uri) ~= "string" then return nil, no_account(url) end
    local key, msg, kind = core.key_load(pem)
    if not key then
        return fail(kind or "invalid", "account key of " .. host_of(url) ..
            ": " .. tostring(msg))
    end
    return key, acct
end

local function rel_account(url, file)
    return must(state.account_dir(url)) .. "/" .. file
end

-- Finish or undo a key rollover interrupted between the CA's answer and
-- the local write (account.key.new left behind). Account lock held.
function Ctx:recover_rollover(url)
    local rel = rel_account(url, "account.key.new")
    local pem = self.st:get(rel)
    if not pem then return end
    local key, acct = self:load_account(url)
    local newkey = core.key_load(pem)
    if key and newkey then
        local c = self:client(url, newkey, acct.uri)
        if c:get_reg() then
            must(newkey:write(self.st:path(rel_account(url, "account.key"))))
            self.out:warn("finished an interrupted key rollover of the " ..
                "account at " .. host_of(url))
        end
    end
    must(self.st:delete(rel))
end

-- Key file of a fresh account key: written (atomically, 0600) before
-- the CA hears of it, so a crash cannot lose the key of an account.
local function new_key(key_type)
    key_type = key_type or M.DEFAULT_KEY_TYPE
    if not is_key_type(key_type) then
        raise("usage", "unknown key type " .. errors.printable(key_type) ..
            " (one of: " .. table.concat(M.KEY_TYPES, ", ") .. ")")
    end
    local key, msg, kind = core.key_generate(key_type)
    if not key then raise(kind or "crypto", msg) end
    return key
end

-- Register a new account at url (account lock held). opts.key_type.
function Ctx:create_account(url, opts)
    opts = opts or {}
    local keyrel = rel_account(url, "account.key")
    local key
    local pem = self.st:get(keyrel)
    if pem then
        -- A run that died after writing the key: the CA may know it.
        key = must(core.key_load(pem))
    else
        key = new_key(opts.key_type)
        must(key:write(self.st:path(keyrel)))
    end
    -- The CA refused for sure (not a lost reply): the key is nobody's,
    -- and the next attempt may want another key type.
    local function refused(err)
        if not err.uncertain then self.st:delete(keyrel) end
        error(err, 0)
    end
    local c = self:client(url, key)
    local dir, derr = c:discover()
    if not dir then refused(derr) end
    if dir.meta.external_account_required and not self.eab then
        refused(errors.new("eab_required", "the CA at " .. host_of(url) ..
            " requires external account binding"))
    end
    local req = { contact = self.contact }
    if self.eab then
        req.external_account_binding = { kid = self.eab.kid,
            key = self.eab.key }
    end
    local agree = self.agree_tos
    local acct, err = c:register(req, function() return agree end)
    local created = true
    if not acct then
        if err.kind ~= "account_exists" then refused(err) end
        acct = err.account or {}
        acct.uri = err.uri
        created = false
    end
    local rec = {
        uri = acct.uri, directory = url, status = acct.status or "valid",
        contact = acct.contact or self.contact or {},
        key_type = key:spec(), created_at = self.now(),
        terms_of_service = dir.meta.terms_of_service,
        terms_of_service_agreed = agree or nil,
    }
    must(state.write_account(self.st, url, rec))
    self:emit("account", { ca = host_of(url), uri = rec.uri,
        created = created }, (created and "created account " or
        "found the existing account ") .. rec.uri .. " at " .. host_of(url))
    return c, rec
end

-- The client and account record for the CA at url; creates the account
-- when create is true and there is none. Raises on failure.
function Ctx:account(url, create, opts)
    local key, acct = self:load_account(url)
    if not key and acct.kind ~= "no_account" then error(acct, 0) end
    local pending = self.st:exists(rel_account(url, "account.key.new"))
    if key and not pending then
        if acct.status == "deactivated" then
            raise("deactivated", "the account " .. acct.uri .. " at " ..
                host_of(url) .. " is deactivated")
        end
        self:emit("account", { ca = host_of(url), uri = acct.uri,
            created = false }, "using account " .. acct.uri,
            { verbose = true })
        return self:client(url, key, acct.uri), acct
    end
    if not key and not create then error(acct, 0) end
    local lk <close> = must(state.lock_account(self.st, url,
        self.lock_timeout))
    self:recover_rollover(url)
    key, acct = self:load_account(url)
    if key then
        if acct.status == "deactivated" then
            raise("deactivated", "the account " .. acct.uri .. " is " ..
                "deactivated")
        end
        return self:client(url, key, acct.uri), acct
    end
    if not create then error(acct, 0) end
    return self:create_account(url, opts)
end

local function account_fields(url, rec, live)
    return {
        ca = host_of(url), directory = url, uri = rec.uri,
        status = live and live.status or rec.status,
        contact = util.array(live and live.contact or rec.contact or {}),
        key_type = rec.key_type,
    }
end

-- account new: register an account (code 2 when one exists).
function Ctx:account_new(opts)
    return protect(function()
        opts = opts or {}
        local url = self.directory
        local lk <close> = must(state.lock_account(self.st, url,
            self.lock_timeout))
        self:recover_rollover(url)
        local key, acct = self:load_account(url)
        if key and acct.status ~= "deactivated" then
            self:emit("account", { ca = host_of(url), uri = acct.uri,
                created = false }, "an account exists already at " ..
                host_of(url) .. ": " .. acct.uri)
            return { code = 2, account = account_fields(url, acct) }
        end
        if key then
            -- Keep the deactivated one's files, out of the way.
            local stamp = string.format("%d", math.floor(self.now()))
            for _, f in ipairs({ "account.json", "account.key" }) do
                must(self.st:rename(rel_account(url, f),
                    rel_account(url, f .. ".deactivated-" .. stamp)))
            end
        end
        local _, rec = self:create_account(url, opts)
        return { code = 0, account = account_fields(url, rec) }
    end)
end

-- account show: the CA's view of the account.
function Ctx:account_show()
    return protect(function()
        local url = self.directory
        local key, acct = self:load_account(url)
        if not key then error(acct, 0) end
        local c = self:client(url, key, acct.uri)
        local live = must(c:get_reg())
        if live.status and live.status ~= acct.status then
            local lk <close> = must(state.lock_account(self.st, url,
                self.lock_timeout))
            acct.status = live.status
            must(state.write_account(self.st, url, acct))
        end
        local f = account_fields(url, acct, live)
        f.thumbprint = key:thumbprint()
        f.orders_url = live.orders_url
        return { code = 0, account = f }
    end)
end

-- account update: set the contacts (--contact).
function Ctx:account_update()
    return protect(function()
        local url = self.directory
        local c, acct = self:account(url, false)
        local lk <close> = must(state.lock_account(self.st, url,
            self.lock_timeout))
        local live = must(c:update_reg({ contact = self.contact or {} }))
        acct.contact = live.contact or self.contact or {}
        must(state.write_account(self.st, url, acct))
        self:emit("account_updated", { ca = host_of(url), uri = acct.uri,
            contact = util.array(acct.contact) }, "updated account " ..
            acct.uri .. ": contact " .. (#acct.contact > 0 and
            table.concat(acct.contact, ", ") or "(none)"))
        return { code = 0, account = account_fields(url, acct, live) }
    end)
end

-- account deactivate: permanently.
function Ctx:account_deactivate()
    return protect(function()
        local url = self.directory
        local c, acct = self:account(url, false)
        local lk <close> = must(state.lock_account(self.st, url,
            self.lock_timeout))
        must(c:deactivate_reg())
        acct.status = "deactivated"
        acct.deactivated_at = self.now()
        must(state.write_account(self.st, url, acct))
        self:emit("account_deactivated", { ca = host_of(url),
            uri = acct.uri }, "deactivated account " .. acct.uri)
        return { code = 0, account = account_fields(url, acct) }
    end)
end

-- account rollover: a new account key (opts.key_type).
function Ctx:account_rollover(opts)
    return protect(function()
        opts = opts or {}
        local url = self.directory
        local c, acct = self:account(url, false)
        local lk <close> = must(state.lock_account(self.st, url,
            self.lock_timeout))
        local newkey = new_key(opts.key_type)
        local newrel = rel_account(url, "account.key.new")
        -- Kept until the CA answered and account.key holds it, so an
        -- interrupted rollover can be finished (recover_rollover).
        must(newkey:write(self.st:path(newrel)))
        local ok, err = c:account_key_rollover(newkey)
        if not ok then
            self.st:delete(newrel)
            error(err, 0)
        end
        must(newkey:write(self.st:path(rel_account(url, "account.key"))))
        must(self.st:delete(newrel))
        acct.key_type = newkey:spec()
        acct.rolled_over_at = self.now()
        must(state.write_account(self.st, url, acct))
        self:emit("account_rollover", { ca = host_of(url), uri = acct.uri,
            key_type = acct.key_type }, "rolled the key of account " ..
            acct.uri .. " over to a new " .. acct.key_type .. " key")
        local f = account_fields(url, acct)
        f.thumbprint = newkey:thumbprint()
        return { code = 0, account = f }
    end)
end

--
-- Certificates
--

-- The settings a certificate is issued with; stored in meta.json and
-- reused by renew. Checks and normalises s (a fresh table back).
local SETTINGS = { "names", "ips", "key_type", "reuse_key", "must_staple",
    "hooks", "deploy_hooks", "preferred_chain", "profile", "valid_for",
    "directory", "ca_bundle" }
M.SETTINGS = SETTINGS

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

-- --dns-wait: the hook spec with dns_wait=N added, for hooks that take
-- that option (the dns-01 providers) and were not given one; any other
-- spec unchanged. Kept in the stored spec, so renewals wait alike.
local function with_dns_wait(spec, seconds)
    local h = hooks.load(spec, "challenge")
    if not h or h.opts.dns_wait ~= nil then return spec end
    for _, o in ipairs(h.options or {}) do
        if o.name == "dns_wait" then
            local p = hooks.parse_spec(spec)
            local sep = next(p.opts or {}) and "," or ":"
            return spec .. sep .. "dns_wait=" .. string.format("%d", seconds)
        end
    end
    return spec
end

function Ctx:settings(s)
    local out = {}
    out.names, out.ips = {}, {}
    local seen = {}
    for _, n in ipairs(s.names or s.domains or {}) do
        local d, why = ident.domain(n)
        if not d then
            raise("usage", "bad domain name '" .. errors.printable(n) ..
                "': " .. why)
        end
        if not seen[d] then
            seen[d] = true
            out.names[#out.names + 1] = d
        end
    end
    for _, a in ipairs(s.ips or {}) do
        local ip, why = ident.ip(a)
        if not ip then
            raise("usage", "bad IP address '" .. errors.printable(a) ..
                "': " .. why)
        end
        if not seen[ip] then
            seen[ip] = true
            out.ips[#out.ips + 1] = ip
        end
    end
    if #out.names + #out.ips == 0 then
        raise("usage", "no names: give -d NAME (and/or --ip ADDR)")
    end
    out.name = s.name or state.default_name(out.names[1] or out.ips[1])
    must(state.check_name(out.name))
    out.key_type = s.key_type or M.DEFAULT_KEY_TYPE
    if not is_key_type(out.key_type) then
        raise("usage", "unknown key type " ..
            errors.printable(out.key_type) .. " (one of: " ..
            table.concat(M.KEY_TYPES, ", ") .. ")")
    end
    out.reuse_key = s.reuse_key and true or false
    out.must_staple = s.must_staple and true or false
    out.preferred_chain = s.preferred_chain
    out.profile = s.profile
    out.valid_for = s.valid_for
    out.directory = s.directory or self.directory
    out.ca_bundle = s.ca_bundle or self.ca_file
    local env = core.environ()
    out.hooks, out.deploy_hooks = {}, {}
    for _, h in ipairs(s.hooks or {}) do
        h = absolute_spec(h, env)
        if s.dns_wait then h = with_dns_wait(h, s.dns_wait) end
        out.hooks[#out.hooks + 1] = h
    end
    for _, h in ipairs(s.deploy_hooks or {}) do
        out.deploy_hooks[#out.deploy_hooks + 1] = absolute_spec(h, env)
    end
    return out
end

local function load_hooks(specs, role)
    local list = {}
    for _, spec in ipairs(specs or {}) do
        list[#list + 1] = must(hooks.load(spec, role))
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
function Ctx:record_error(name, err)
    local meta = state.read_meta(self.st, name)
    if not meta then return end
    meta.last_error = error_record(err, self.now())
    local ok, werr = state.write_meta(self.st, name, meta)
    if not ok then self.out:warn("cannot record the error: " ..
        tostring(werr)) end
end

-- Fetch ARI for cert_pem when the CA offers it and it is time (meta.ari
-- updated in place). Failures only delay the next check.
function Ctx:refresh_ari(url, ca_file, cert_pem, meta, client)
    local now = self.now()
    local ari = meta.ari
    if type(ari) == "table" and ari.next_check and now < ari.next_check then
        return false
    end
    local c = client or self:client(url, nil, nil, ca_file)
    local dir = c:discover()
    if not dir or not dir.renewal_info then return false end
    local info, err = c:get_renewal_info(cert_pem)
    ari = type(ari) == "table" and ari or {}
    if info then
        ari.cert_id = info.cert_id
        ari.window_start, ari.window_end = info.start, info["end"]
        ari.explanation_url = info.explanation_url
        ari.next_check = renew.next_ari_check(info.retry_after, now)
    else
        ari.next_check = renew.next_ari_check(nil, now)
        self.out:debug("renewal information: " .. tostring(err))
    end
    meta.ari = ari
    return true
end

-- The deploy_cert / unchanged_cert argument for certificate name.
function Ctx:cert_arg(name, s, changed)
    local files = must(state.cert_files(self.st, name))
    return { name = name, domains = all_names(s), key_file = files.key_file,
        cert_file = files.cert_file, fullchain_file = files.fullchain_file,
        chain_file = files.chain_file, timestamp = self.now(),
        changed = changed }
end

-- The issuance itself (certificate lock held). existing is the current
-- set (or nil). Returns the result table; raises on failure.
function Ctx:do_issue(s, existing, why)
    local chooks = load_hooks(s.hooks, "challenge")
    local dhooks = load_hooks(s.deploy_hooks, "deploy")
    if #chooks == 0 then
        raise("usage", "no challenge hook: give one with --hook, e.g. " ..
            "--hook webroot:root=/var/www/html (luacme hooks lists them)")
    end
    local client, acct = self:account(s.directory, true)
    local key
    if s.reuse_key and existing then
        key = must(core.key_load(existing.key_pem))
    else
        key = new_key(s.key_type)
    end
    if key:thumbprint() == client.key:thumbprint() then
        raise("usage", "the certificate key is the account key; refusing")
    end
    local csr, msg, kind = core.csr{ key = key, names = s.names, ips = s.ips,
        must_staple = s.must_staple }
    if not csr then raise(kind or "invalid", msg) end
    local dir = must(client:discover())
    local replaces
    if existing and dir.renewal_info then
        replaces = acme.cert_id(existing.cert_pem)
    end
    local all = {}
    for _, h in ipairs(chooks) do all[#all + 1] = h end
    for _, h in ipairs(dhooks) do all[#all + 1] = h end
    local sess = self:session()
    must(sess:add(all))
    local names = all_names(s)
    self:emit("order", { name = s.name, identifiers = util.array(names),
        reason = why }, s.name .. ": ordering a certificate for " ..
        table.concat(names, ", ") .. (why and (" (" .. why .. ")") or ""))
    local not_after
    if s.valid_for then not_after = self.now() + s.valid_for end
    local res, err = solve.issue(client, {
        identifiers = identifiers(s), csr = csr, hooks = chooks,
        on_event = function(...) self:emit(...) end,
        timeout = self.timeout, not_after = not_after,
        profile = s.profile, replaces = replaces,
        preferred_chain = s.preferred_chain,
        solver_ref = function(x) self.solver = x end,
    })
    self.solver = nil
    if not res then
        sess:failure(err, all)
        error(err, 0)
    end

    local cert_pem = util.der_to_pem(res.certs[1])
    local parts = {}
    for i = 2, #res.certs do
        parts[#parts + 1] = util.der_to_pem(res.certs[i])
    end
    local chain_pem = table.concat(parts)
    local info = must(core.cert_info(cert_pem))
    if not core.cert_matches_key(cert_pem, key) then
        raise("response", "the CA's certificate does not match our key")
    end
    if not same_set(info.names, s.names) or not same_set(info.ips, s.ips) then
        raise("response", "the CA's certificate names " ..
            table.concat(info.names, ", ") .. " differ from the request")
    end
    local meta = {}
    for _, k in ipairs(SETTINGS) do meta[k] = s[k] end
    meta.names, meta.ips = util.array(s.names), util.array(s.ips)
    meta.hooks = util.array(s.hooks)
    meta.deploy_hooks = util.array(s.deploy_hooks)
    meta.cert_url = res.cert_url
    meta.order_url = res.order and res.order.uri
    meta.account = acct.uri
    meta.issued_at = self.now()
    meta.not_before, meta.not_after = info.not_before, info.not_after
    meta.serial = info.serial
    meta.issuer = info.issuer_cn or info.issuer
    if dir.renewal_info then
        self:refresh_ari(s.directory, s.ca_bundle, cert_pem, meta, client)
    end
    must(state.install_cert(self.st, s.name, { key_pem = key:private_pem(),
        cert_pem = cert_pem, chain_pem = chain_pem, meta = meta }))
    key:close()
    self:emit("issued", { name = s.name, names = util.array(names),
        serial = info.serial, not_before = output.time(info.not_before),
        not_after = output.time(info.not_after), issuer = meta.issuer,
        dir = self.st:path(must(state.cert_dir(s.name))) },
        "issued " .. s.name .. ", expires " .. output.date(info.not_after))

    local failed
    local arg = self:cert_arg(s.name, s, true)
    for _, h in ipairs(dhooks) do
        local ok, derr = hooks.call(h, "deploy_cert", arg)
        self:emit("deploy_hook", { hook = h.name, name = s.name,
            ok = ok and true or false, error = derr and derr.detail or nil },
            ok and (s.name .. ": deploy hook " .. h.name .. " done") or nil)
        if not ok then failed = failed or derr end
    end
    if failed then
        raise("deploy", s.name .. " was issued and installed, but a " ..
            "deploy hook failed: " .. tostring(failed.detail),
            { cause = failed, hook = failed.hook })
    end
    return { code = 0, name = s.name, names = names,
        serial = info.serial, not_after = info.not_after,
        not_before = info.not_before, issuer = meta.issuer }
end

-- Issue with settings s under the certificate lock (held). opts.force
-- skips the "a valid one exists" check; opts.reason says why.
function Ctx:issue_locked(s, opts)
    opts = opts or {}
    local existing, rerr = state.read_cert(self.st, s.name)
    if not existing and rerr.kind ~= "not_found" then
        self.out:warn("certificate " .. s.name .. ": " .. tostring(rerr) ..
            "; issuing a new one")
    end
    if existing and not opts.force then
        local info = core.cert_info(existing.cert_pem)
        if info and self.now() < info.not_after and
            same_set(info.names, s.names) and same_set(info.ips, s.ips) and
            not existing.meta.revoked then
            self:emit("unchanged", { name = s.name,
                not_after = output.time(info.not_after) }, s.name ..
                ": a valid certificate with these names exists (expires " ..
                output.date(info.not_after) .. "); nothing to do " ..
                "(--force issues anyway; renew renews when due)")
            return { code = 2, name = s.name, not_after = info.not_after,
                unchanged = true, names = all_names(s) }
        end
    end
    local ok, res = pcall(self.do_issue, self, s, existing, opts.reason)
    if not ok then
        self:record_error(s.name, res)
        error(res, 0)
    end
    return res
end

-- With --csr: issue for a CSR whose key is not ours; the chain goes to
-- s.out_file, nothing is stored for renewal.
function Ctx:issue_csr(s)
    local data = s.csr_pem or must(core.read_file(s.csr))
    local der = data
    if data:find("-----BEGIN", 1, true) then
        local d, msg, kind = core.pem_decode(data)
        if not d then raise(kind or "invalid", "CSR: " .. tostring(msg)) end
        der = d
    end
    local names, ips = M.csr_names(der)
    if not names then error(ips, 0) end
    local want = self:settings({ names = names, ips = ips, name = s.name,
        hooks = s.hooks })
    if s.names and #s.names > 0 then
        local given = self:settings({ names = s.names, ips = s.ips,
            hooks = {} })
        if not same_set(given.names, want.names) or
            not same_set(given.ips, want.ips) then
            raise("usage", "the -d/--ip names differ from the CSR's: " ..
                table.concat(all_names(want), ", "))
        end
    end
    if not s.out_file then
        raise("usage", "--csr needs --out FILE for the certificate chain")
    end
    local lk <close> = must(state.lock_cert(self.st, want.name,
        self.lock_timeout))
    local chooks = load_hooks(want.hooks, "challenge")
    if #chooks == 0 then
        raise("usage", "no challenge hook: give one with --hook")
    end
    local client = self:account(self.directory, true)
    local sess = self:session()
    must(sess:add(chooks))
    local all = all_names(want)
    self:emit("order", { name = want.name, identifiers = util.array(all) },
        want.name .. ": ordering a certificate for " ..
        table.concat(all, ", ") .. " (CSR)")
    local res, err = solve.issue(client, {
        identifiers = identifiers(want), csr = der, hooks = chooks,
        on_event = function(...) self:emit(...) end,
        timeout = self.timeout,
        not_after = s.valid_for and (self.now() + s.valid_for) or nil,
        profile = s.profile, preferred_chain = s.preferred_chain,
        solver_ref = function(x) self.solver = x end,
    })
    self.solver = nil
    if not res then
        sess:failure(err, chooks)
        error(err, 0)
    end
    local pems = {}
    for i, d in ipairs(res.certs) do pems[i] = util.der_to_pem(d) end
    must(core.write_file(s.out_file, table.concat(pems), 420))
    local info = must(core.cert_info(res.certs[1]))
    self:emit("issued", { name = want.name, names = util.array(all),
        serial = info.serial, not_after = output.time(info.not_after),
        file = s.out_file }, "issued " .. want.name .. ", expires " ..
        output.date(info.not_after) .. "; chain written to " .. s.out_file)
    return { code = 0, name = want.name, names = all, serial = info.serial,
        not_after = info.not_after, file = s.out_file }
end

-- issue(s, opts): s = { names/domains, ips, name, key_type, reuse_key,
-- must_staple, preferred_chain, profile, valid_for (seconds), hooks,
-- deploy_hooks (spec strings), csr (file), out_file }; opts.force.
-- Returns { code = 0 | 2, name, names, serial, not_after, ... } or nil,
-- err.
function Ctx:issue(s, opts)
    return protect(function()
        if s.csr or s.csr_pem then return self:issue_csr(s) end
        local set = self:settings(s)
        local lk <close> = must(state.lock_cert(self.st, set.name,
            self.lock_timeout))
        return self:issue_locked(set, opts)
    end)
end

-- The stored settings of a certificate (meta.json) as issue settings.
local function settings_of(name, meta)
    local s = { name = name }
    for _, k in ipairs(SETTINGS) do s[k] = meta[k] end
    s.names = s.names or {}
    s.ips = s.ips or {}
    s.hooks = s.hooks or {}
    s.deploy_hooks = s.deploy_hooks or {}
    return s
end

-- Names of the stored certificates that have a meta.json.
function Ctx:cert_names()
    local out = {}
    for _, n in ipairs(must(state.list_certs(self.st))) do
        if state.read_meta(self.st, n) then out[#out + 1] = n end
    end
    return out
end

-- Renew one certificate when due (lock held inside). Returns the result
-- table: code 0 renewed, 2 not due.
function Ctx:renew_one(name, opts)
    local lk <close> = must(state.lock_cert(self.st, name, self.lock_timeout))
    local meta, err = state.read_meta(self.st, name)
    if not meta then
        if err.kind == "not_found" then
            raise("not_found", "no certificate named " .. name ..
                " (luacme list shows them)")
        end
        error(err, 0)
    end
    local s = settings_of(name, meta)
    if self.directory_given then s.directory = self.directory end
    s.directory = s.directory or self.directory
    if self.ca_file then s.ca_bundle = self.ca_file end
    local saved_ca = self.ca_file
    self.ca_file = s.ca_bundle
    local ok, res = pcall(function()
        local set, rerr = state.read_cert(self.st, name)
        local info = set and core.cert_info(set.cert_pem)
        local due, when, reason
        if not set then
            due, when, reason = true, self.now(), "no usable certificate: " ..
                tostring(rerr.detail)
        else
            local ari_before = meta.ari and meta.ari.renew_at
            local changed = false
            if not opts.force then
                local rok, r = pcall(self.refresh_ari, self, s.directory,
                    s.ca_bundle, set.cert_pem, meta)
                if rok then changed = r
                elseif type(r) == "table" and r.kind == "interrupted" then
                    error(r, 0)
                end
            end
            due, when, reason = renew.due(info, meta, self.now(), self.rand)
            if meta.revoked then
                due, reason = true, "it was revoked"
            end
            if changed or (meta.ari and meta.ari.renew_at ~= ari_before) then
                must(state.write_meta(self.st, name, meta))
            end
        end
        if not due and not opts.force then
            self:emit("not_due", { name = name, due_at = output.time(when),
                reason = reason }, name .. ": not due (" .. reason .. ")")
            for _, spec in ipairs(s.deploy_hooks) do
                local h, lerr = hooks.load(spec, "deploy")
                if h and h.unchanged_cert then
                    local hok, herr = self:session():add({ h })
                    if hok then
                        hok, herr = hooks.call(h, "unchanged_cert",
                            self:cert_arg(name, s, false))
                    end
                    if not hok then self.out:warn(herr.detail) end
                elseif not h then
                    self.out:warn(lerr.detail)
                end
            end
            return { code = 2, name = name, due = false,
                due_at = when, not_after = info and info.not_after }
        end
        local why = opts.force and "forced" or reason
        self:emit("due", { name = name, reason = why }, name ..
            ": renewing (" .. why .. ")", { verbose = true })
        local set2 = self:settings(s)
        set2.name = name
        local r = self:issue_locked(set2, { force = true, reason = why })
        r.renewed = true
        return r
    end)
    self.ca_file = saved_ca
    if not ok then error(res, 0) end
    return res
end

-- renew{ names = {...} (default all), force =, jitter = seconds }.
-- Returns { code = 0 (something renewed) | 2 (nothing due) | 1 (a
-- failure; errors = {{name=, err=}}), renewed = {}, not_due = {},
-- failed = {} }. Each certificate is tried, failures do not stop the
-- others.
function Ctx:renew(opts)
    return protect(function()
        opts = opts or {}
        if opts.jitter and opts.jitter > 0 then
            local wait = renew.jitter(opts.jitter, self.rand)
            self:emit("jitter", { seconds = wait }, "waiting " .. wait ..
                " s first (--jitter)", { verbose = true })
            self.sleep(wait)
        end
        local names = opts.names
        if not names or #names == 0 then names = self:cert_names() end
        local res = { renewed = {}, not_due = {}, failed = {}, errors = {} }
        if #names == 0 then
            self:emit("nothing", {}, "no certificates to renew")
        end
        for _, name in ipairs(names) do
            local r, err = protect(self.renew_one, self, name, opts)
            if not r then
                res.failed[#res.failed + 1] = name
                res.errors[#res.errors + 1] = { name = name, err = err }
                self.out:error(err, name)
            elseif r.code == 0 then
                res.renewed[#res.renewed + 1] = name
            else
                res.not_due[#res.not_due + 1] = name
            end
        end
        if #res.failed > 0 then res.code = 1
        elseif #res.renewed > 0 then res.code = 0
        else res.code = 2 end
        return res
    end)
end

-- revoke{ name = CERTNAME | cert_file = FILE, reason = code,
-- cert_key_file = FILE }. Signs with the account unless a certificate
-- key is given (or the account is missing and the stored key is there).
function Ctx:revoke(opts)
    return protect(function()
        local lk, set, cert_pem, url, label
        if opts.name then
            lk = must(state.lock_cert(self.st, opts.name, self.lock_timeout))
            set = must(state.read_cert(self.st, opts.name))
            cert_pem = set.cert_pem
            url = (not self.directory_given and set.meta.directory) or
                self.directory
            if set.meta.ca_bundle and not self.ca_file then
                self.ca_file = set.meta.ca_bundle
            end
            label = opts.name
        elseif opts.cert_file then
            cert_pem = must(core.read_file(opts.cert_file))
            url = self.directory
            label = opts.cert_file
        else
            raise("usage", "revoke needs CERTNAME or --cert FILE")
        end
        local der = cert_pem
        if cert_pem:find("-----BEGIN", 1, true) then
            local d, msg, kind = core.pem_decode(cert_pem)
            if not d then raise(kind or "invalid", tostring(msg)) end
            der = d
        end
        local info = must(core.cert_info(der))
        local certkey
        if opts.cert_key_file then
            local pem = must(core.read_file(opts.cert_key_file))
            local k, msg, kind = core.key_load(pem)
            if not k then raise(kind or "invalid", "--cert-key: " ..
                tostring(msg)) end
            certkey = k
        end
        -- Signed by the certificate key: a client without an account
        -- key, so the request carries that key's jwk (RFC 8555 §7.6).
        local client
        if certkey then
            client = self:client(url)
        else
            local ok, c = pcall(self.account, self, url, false)
            if ok then
                client = c
            elseif set and type(c) == "table" and c.kind == "no_account" then
                certkey = must(core.key_load(set.key_pem))
                client = self:client(url)
                self.out:debug("no account: signing with the " ..
                    "certificate's own key")
            else
                error(c, 0)
            end
        end
        local ok, err = client:revoke_cert(certkey, der, opts.reason)
        local code = 0
        if not ok then
            if not errors.is(err, "alreadyRevoked") then error(err, 0) end
            code = 2
        end
        if set and not (code == 2 and set.meta.revoked) then
            local meta = set.meta
            meta.revoked = { time = self.now(), reason = opts.reason }
            must(state.write_meta(self.st, opts.name, meta))
        end
        if lk then lk:unlock() end
        self:emit("revoked", { name = opts.name, file = opts.cert_file,
            serial = info.serial, reason = opts.reason,
            already = code == 2 or nil }, (code == 2 and
            (label .. " was revoked already") or ("revoked " .. label)) ..
            " (serial " .. info.serial .. ")")
        return { code = code, name = opts.name, serial = info.serial }
    end)
end

-- list() -> { code = 0, certs = { { name, names, not_before, not_after,
-- serial, issuer, due, due_at, reason, last_error, revoked, error } } }.
function Ctx:list()
    return protect(function()
        local out = {}
        for _, name in ipairs(must(state.list_certs(self.st))) do
            local meta = state.read_meta(self.st, name)
            if meta then
                local e = { name = name,
                    names = all_names({ names = meta.names, ips = meta.ips }),
                    directory = meta.directory, key_type = meta.key_type,
                    last_error = meta.last_error, revoked = meta.revoked }
                local set, err = state.read_cert(self.st, name)
                local info = set and core.cert_info(set.cert_pem)
                if info then
                    e.not_before, e.not_after = info.not_before, info.not_after
                    e.serial = info.serial
                    e.issuer = info.issuer_cn or info.issuer
                else
                    e.error = err and err.detail or "unreadable certificate"
                end
                -- Without a stored moment the ARI window's start shows.
                local due, when, reason = renew.due(info, meta, self.now(),
                    function() return 0 end)
                if meta.revoked then due, reason = true, "revoked" end
                e.due, e.due_at, e.reason = due, when, reason
                out[#out + 1] = e
            end
        end
        return { code = 0, certs = out }
    end)
end

M.Ctx = Ctx
return M
