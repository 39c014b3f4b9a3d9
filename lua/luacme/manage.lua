-- The operations behind the luacme command, usable from recipes too:
-- a context (state directory, CA, output, hook session) and the account
-- and certificate operations of luacme.accounts and luacme.certs as its
-- methods.
--
--   local manage = require "luacme.manage"
--   local m = assert(manage.open{
--     state = "/var/lib/luacme",          -- default: state.default_dir
--     directory = acme.LETSENCRYPT,       -- the CA: any https URL
--     ca_file = nil, contact = { "mailto:me@example.com" }, agree_tos = true,
--     eab = { kid = ..., key = ... },           -- optional
--     out = require("luacme.output").new{},     -- where steps are told
--     lock_timeout = 60, timeout = 300,
--     -- a fleet (README "Running a fleet"): the shared store, this
--     -- node's install directory, the key sealing private keys
--     storage = "etcd:endpoints=http://10.0.0.1:2379", install_dir = DIR,
--     storage_key_file = FILE, storage_plaintext_keys = false,
--     -- tests: now = fn, sleep = fn, rand = fn, transport = fake CA
--   })
--   local res, err = m:issue{ names = { "example.com" },
--     hooks = { "webroot:root=/var/www/html" } }
--   -- res = { code = 0 (issued) | 2 (a valid one exists), name, names,
--   --   serial, issuer, not_before, not_after, renewed }
--   local res, err = m:renew{}                  -- every certificate
--   -- res = { code, certs = { per certificate as above }, errors, ... }
--   local due, when, why = m:due("example.com")  -- what renew acts on
--   m:close()           -- exit() of the hooks used (or: local m <close>)
--
-- Every method returns a result table (with code: 0 done, 2 nothing to
-- do) or nil, err with err a luacme.errors table. An interruption
-- (Ctrl-C, kind "interrupted") is raised on, after cleanup. Fields of
-- errors and results: lua/luacme/API.md.
local accounts = require "luacme.accounts"
local certs = require "luacme.certs"
local client = require "luacme.client"
local core = require "luacme.core"
local errors = require "luacme.errors"
local hooks = require "luacme.hooks"
local output = require "luacme.output"
local renew = require "luacme.renew"
local sched = require "luacme.sched"
local state = require "luacme.state"
local store = require "luacme.store"
local storage = require "luacme.storage"

local M = {}

M.KEY_TYPES = accounts.KEY_TYPES
M.DEFAULT_KEY_TYPE = accounts.DEFAULT_KEY_TYPE
M.SETTINGS = certs.SETTINGS
M.csr_names = certs.csr_names
M.protect = errors.protect
-- hint(err): the luacme command's hint for an error (a string naming
-- what to do, in command-line terms) or nil.
M.hint = output.hint

-- Seconds a run waits for a certificate's or account's lock.
M.LOCK_TIMEOUT = 60
-- Seconds one issuance may take (order, validation, finalization).
M.TIMEOUT = 300

local Ctx = {}
Ctx.__index = Ctx

-- open(opts) -> context or nil, err. See the top of this file.
function M.open(opts)
    opts = opts or {}
    local out = opts.out or output.new{}
    local env = opts.env or core.environ()
    local dir = opts.state
    local spec = opts.storage or env.LUACME_STORAGE
    if spec == "" then spec = nil end
    local backend, kind, params
    if spec then
        backend, kind, params = storage.open(spec, env)
        if backend == nil then return nil, kind end
        if kind == "file" then dir = params.dir or dir end
    end
    -- With a shared store the local state is the install directory.
    if backend then dir = opts.install_dir or dir end
    if not dir then
        local err
        dir, err = state.default_dir(env, core.getuid())
        if not dir then return nil, err end
    end
    local st, warnings = store.open(dir)
    if not st then return nil, warnings end
    for _, w in ipairs(warnings) do out:warn(w) end
    local fl
    if backend then
        local skey
        local kfile = opts.storage_key_file or env.LUACME_STORAGE_KEY_FILE
        if kfile and kfile ~= "" then
            local err
            skey, err = storage.load_key(kfile)
            if not skey then return nil, err end
        elseif opts.storage_plaintext_keys then
            out:warn("private keys go to the shared store unencrypted " ..
                "(--storage-plaintext-keys): whoever can read the store " ..
                "has the keys")
        end
        -- required here: a machine without a shared store never
        -- loads it (issue 11, peak RSS)
        fl = require("luacme.fleet").open{ backend = backend, spec = spec, key = skey,
            plaintext = opts.storage_plaintext_keys, st = st,
            ttl = opts.lock_ttl }
    end
    return setmetatable({
        st = st, fleet = fl, out = out,
        directory = opts.directory or client.LETSENCRYPT,
        directory_given = opts.directory_given or false,
        ca_file = opts.ca_file, contact = opts.contact,
        agree_tos = opts.agree_tos or false, eab = opts.eab,
        lock_timeout = opts.lock_timeout or M.LOCK_TIMEOUT,
        timeout = opts.timeout or M.TIMEOUT,
        now = opts.now or function() return math.floor(core.time()) end,
        sleep = opts.sleep or sched.sleep,
        rand = opts.rand or renew.random,
        transport = opts.transport,       -- tests: a fake CA
    }, Ctx)
end

function Ctx:emit(name, fields, text, opts)
    self.out:event(name, fields, text, opts)
end

-- The run's hook session (startup once per hook, see hooks.session).
function Ctx:session()
    if not self.sess then
        self.sess = hooks.session(function(...) self:emit(...) end)
    end
    return self.sess
end

-- Before an order: run each command of pre (a list of shell command
-- lines) not run yet in this run, and remember post's for the end of the
-- run (certbot's --pre-hook and --post-hook: once per run, only when
-- something is ordered). A failing one is a warning, as in certbot.
function Ctx:around(pre, post)
    self.pre_done = self.pre_done or {}
    self.post_todo = self.post_todo or {}
    for _, cmd in ipairs(pre or {}) do
        if not self.pre_done[cmd] then
            self.pre_done[cmd] = true
            self:command("pre_hook", cmd)
        end
    end
    for _, cmd in ipairs(post or {}) do
        if not self.post_todo[cmd] then
            self.post_todo[cmd] = true
            self.post_todo[#self.post_todo + 1] = cmd
        end
    end
end

function Ctx:command(event, cmd)
    local ok, err = hooks.run({ "/bin/sh", "-c", cmd })
    self:emit(event, { command = cmd, ok = ok and true or false,
        error = err }, not ok and (event:gsub("_", "-") .. " '" .. cmd ..
        "' failed: " .. tostring(err)) or nil,
        { warning = not ok or nil })
end

-- End the run: the post hooks, exit() of every hook started. Also on
-- <close>.
function Ctx:close()
    if self.fleet then self.fleet.b:close() end
    local post = self.post_todo
    self.post_todo = nil
    for _, cmd in ipairs(post or {}) do self:command("post_hook", cmd) end
    if self.sess then
        self.sess:close()
        local e = self.sess.interrupted
        self.sess = nil
        if e then error(e, 0) end
    end
end
Ctx.__close = Ctx.close

-- Longest single HTTP exchange and connect (seconds) of a client, as
-- core.http's defaults; a shorter --timeout shortens them.
M.HTTP_TIMEOUT, M.CONNECT_TIMEOUT = 30, 10

-- A protocol client for the CA at url (ca_file: its bundle, default the
-- context's). During an issuance (self.deadline set) it waits for
-- nothing past the deadline.
function Ctx:client(url, key, kid, ca_file)
    local limit = self.deadline and math.max(1, self.deadline - self.now())
    return client.new{ directory = url, key = key, kid = kid,
        ca_file = ca_file or self.ca_file, transport = self.transport,
        now = self.transport and self.now or nil, sleep = self.sleep,
        deadline = self.deadline,
        timeout = limit and math.min(M.HTTP_TIMEOUT, limit) or nil,
        connect_timeout = limit and math.min(M.CONNECT_TIMEOUT, limit) or nil }
end

-- The operations: each runs under errors.protect, so a failure is
-- nil, err.
local function op(fn)
    return function(self, ...) return errors.protect(fn, self, ...) end
end

Ctx.account_new = op(accounts.new)               -- {key_type}
Ctx.account_show = op(accounts.show)
Ctx.account_update = op(accounts.update)
Ctx.account_deactivate = op(accounts.deactivate)
Ctx.account_rollover = op(accounts.rollover)     -- {key_type}
Ctx.issue = op(certs.issue)                      -- (settings, {force})
Ctx.renew = op(certs.renew)      -- {names, force, jitter, hooks, deploy..}
Ctx.due = op(certs.due)                          -- (name, {renewal_info})
Ctx.revoke = op(certs.revoke)    -- {name | cert_file, reason, cert_key_file}
Ctx.list = op(certs.list)
Ctx.sync = op(certs.sync)                        -- {names}
Ctx.reconfigure = op(certs.reconfigure)         -- (name, settings)
Ctx.delete = op(certs.delete)                   -- (name, purge)

M.Ctx = Ctx
return M
