-- Accounts kept in the state directory: find, create, show, update,
-- deactivate and roll over the account of a CA. The functions take the
-- operations context of luacme.manage (ctx: state, output, settings)
-- and raise error tables; luacme.manage runs them under
-- errors.protect, so recipes get nil, err.
--
-- Creating or changing an account holds the account's lock (waiting up
-- to ctx.lock_timeout seconds). A fresh account key is written before
-- the CA hears of it, so a crash cannot lose the key of an account.
local core = require "luacme.core"
local errors = require "luacme.errors"
local state = require "luacme.state"
local util = require "luacme.util"

local must, raise = errors.must, errors.raise

local M = {}

M.KEY_TYPES = { "ec256", "ec384", "rsa2048", "rsa3072", "rsa4096" }
M.DEFAULT_KEY_TYPE = "ec256"

local function is_key_type(t)
    for _, k in ipairs(M.KEY_TYPES) do
        if k == t then return true end
    end
    return false
end

-- Raises a usage error unless t is one of KEY_TYPES.
function M.check_key_type(t)
    if not is_key_type(t) then
        raise("usage", "unknown key type " .. errors.printable(t) ..
            " (one of: " .. table.concat(M.KEY_TYPES, ", ") .. ")")
    end
    return t
end

-- A fresh key of key_type (default DEFAULT_KEY_TYPE).
function M.new_key(key_type)
    local key, msg, kind = core.key_generate(M.check_key_type(key_type or
        M.DEFAULT_KEY_TYPE))
    if not key then raise(kind or "crypto", msg) end
    return key
end

local function host_of(url)
    return state.ca_host(url) or url
end
M.host_of = host_of

local function no_account(url)
    return errors.new("no_account", "no account for " .. host_of(url) ..
        " in the state directory")
end

local function rel(url, file)
    return must(state.account_dir(url)) .. "/" .. file
end

-- The stored key and account.json of the CA at url, or nil, err
-- (kind "no_account" when there is none or only half of one).
function M.load(ctx, url)
    local pem, err = state.read_account_key(ctx.st, url)
    if not pem then
        if err.kind == "not_found" then return nil, no_account(url) end
        return nil, err
    end
    local acct
    acct, err = state.read_account(ctx.st, url)
    if not acct then
        if err.kind == "not_found" then return nil, no_account(url) end
        return nil, err
    end
    if type(acct.uri) ~= "string" then return nil, no_account(url) end
    local key, msg, kind = core.key_load(pem)
    if not key then
        return nil, errors.new(kind or "invalid", "account key of " ..
            host_of(url) .. ": " .. tostring(msg))
    end
    return key, acct
end

local function lock(ctx, url)
    return must(state.lock_account(ctx.st, url, ctx.lock_timeout))
end

-- Which of two keys holds the account at uri, asked of the CA by key
-- (newAccount onlyReturnExisting): "new", "old", or nil, err when
-- neither lookup gave an answer (the CA unreachable, a lost reply).
local function key_holding(ctx, url, uri, oldkey, newkey, ca_file)
    local err
    for _, k in ipairs({ { "new", newkey }, { "old", oldkey } }) do
        if k[2] then
            local acct, lerr = ctx:client(url, k[2], nil, ca_file):get_reg()
            if acct and acct.uri == uri then return k[1] end
            if not acct and lerr.kind ~= "no_account" then err = lerr end
        end
    end
    return nil, err or errors.new("no_account", "neither the old nor " ..
        "the new key holds the account " .. tostring(uri))
end

-- Put the new key in account.key (the CA holds the account with it).
local function commit_new_key(ctx, url, newkey)
    must(newkey:write(ctx.st:path(rel(url, "account.key"))))
    must(ctx.st:delete(rel(url, "account.key.new")))
end

-- Finish or undo a key rollover interrupted between the CA's answer and
-- the local write (account.key.new left behind). Account lock held.
-- account.key.new goes only once the account was read back with one of
-- the two keys: deleting it while the CA may hold the account under it
-- would lose the account.
local function recover_rollover(ctx, url, ca_file)
    local newrel = rel(url, "account.key.new")
    local pem = ctx.st:get(newrel)
    if not pem then return end
    local key, acct = M.load(ctx, url)
    local newkey = core.key_load(pem)
    if not key or not newkey then
        -- Nothing the new key could be matched against: keep it.
        raise("rollover", "an interrupted key rollover left " ..
            ctx.st:path(newrel) .. " and the account's files cannot be " ..
            "read; keep both files and check them by hand")
    end
    local which, err = key_holding(ctx, url, acct.uri, key, newkey, ca_file)
    if which == "new" then
        commit_new_key(ctx, url, newkey)
        ctx.out:warn("finished an interrupted key rollover of the " ..
            "account at " .. host_of(url))
    elseif which == "old" then
        must(ctx.st:delete(newrel))
    else
        err.detail = "an interrupted key rollover cannot be settled " ..
            "yet (" .. ctx.st:path(newrel) .. " kept): " ..
            tostring(err.detail)
        error(err, 0)
    end
end

-- Register a new account at url (account lock held). opts.key_type,
-- opts.ca_file. Returns client, account record.
local function create(ctx, url, opts)
    local keyrel = rel(url, "account.key")
    local key
    local pem = ctx.st:get(keyrel)
    if pem then
        -- A run that died after writing the key: the CA may know it.
        key = must(core.key_load(pem))
    else
        key = M.new_key(opts.key_type)
        must(key:write(ctx.st:path(keyrel)))
    end
    -- The CA refused for sure (not a lost reply): the key is nobody's,
    -- and the next attempt may want another key type.
    local function refused(err)
        if not err.uncertain then ctx.st:delete(keyrel) end
        error(err, 0)
    end
    local c = ctx:client(url, key, nil, opts.ca_file)
    local dir, derr = c:discover()
    if not dir then refused(derr) end
    if dir.meta.external_account_required and not ctx.eab then
        refused(errors.new("eab_required", "the CA at " .. host_of(url) ..
            " requires external account binding"))
    end
    local req = { contact = ctx.contact }
    if ctx.eab then
        req.external_account_binding = { kid = ctx.eab.kid,
            key = ctx.eab.key }
    end
    local agree = ctx.agree_tos
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
        contact = acct.contact or ctx.contact or {},
        key_type = key:spec(), created_at = ctx.now(),
        terms_of_service = dir.meta.terms_of_service,
        terms_of_service_agreed = agree or nil,
    }
    must(state.write_account(ctx.st, url, rec))
    ctx:emit("account", { ca = host_of(url), uri = rec.uri,
        created = created }, (created and "created account " or
        "found the existing account ") .. rec.uri .. " at " .. host_of(url))
    return c, rec
end

local function deactivated(url, acct)
    raise("deactivated", "the account " .. acct.uri .. " at " ..
        host_of(url) .. " is deactivated")
end

-- The client and account record for the CA at url; creates the account
-- when create is true and there is none. opts: key_type, ca_file (the
-- CA's bundle; default ctx.ca_file). Raises on failure.
function M.open(ctx, url, create_it, opts)
    opts = opts or {}
    local key, acct = M.load(ctx, url)
    if not key and acct.kind ~= "no_account" then error(acct, 0) end
    local pending = ctx.st:exists(rel(url, "account.key.new"))
    if key and not pending then
        if acct.status == "deactivated" then deactivated(url, acct) end
        ctx:emit("account", { ca = host_of(url), uri = acct.uri,
            created = false }, "using account " .. acct.uri,
            { verbose = true })
        return ctx:client(url, key, acct.uri, opts.ca_file), acct
    end
    if not key and not create_it then error(acct, 0) end
    local lk <close> = lock(ctx, url)
    recover_rollover(ctx, url, opts.ca_file)
    key, acct = M.load(ctx, url)
    if key then
        if acct.status == "deactivated" then deactivated(url, acct) end
        return ctx:client(url, key, acct.uri, opts.ca_file), acct
    end
    if not create_it then error(acct, 0) end
    return create(ctx, url, opts)
end

local function fields(url, rec, live)
    return {
        ca = host_of(url), directory = url, uri = rec.uri,
        status = live and live.status or rec.status,
        contact = util.array(live and live.contact or rec.contact or {}),
        key_type = rec.key_type,
    }
end

--
-- The operations (the `luacme account` commands), on ctx.directory.
--

-- Register an account (code 2 when one exists). opts.key_type.
function M.new(ctx, opts)
    opts = opts or {}
    local url = ctx.directory
    local lk <close> = lock(ctx, url)
    recover_rollover(ctx, url)
    local key, acct = M.load(ctx, url)
    if key and acct.status ~= "deactivated" then
        ctx:emit("account", { ca = host_of(url), uri = acct.uri,
            created = false }, "an account exists already at " ..
            host_of(url) .. ": " .. acct.uri)
        return { code = 2, account = fields(url, acct) }
    end
    if key then
        -- Keep the deactivated one's files, out of the way.
        local stamp = string.format("%d", math.floor(ctx.now()))
        for _, f in ipairs({ "account.json", "account.key" }) do
            must(ctx.st:rename(rel(url, f),
                rel(url, f .. ".deactivated-" .. stamp)))
        end
    end
    local _, rec = create(ctx, url, opts)
    return { code = 0, account = fields(url, rec) }
end

-- The CA's view of the account.
function M.show(ctx)
    local url = ctx.directory
    -- open settles an interrupted rollover first, so the key shown is
    -- the one the CA holds.
    local c, acct = M.open(ctx, url, false)
    local key = c.key
    local live = must(c:get_reg())
    if live.status and live.status ~= acct.status then
        local lk <close> = lock(ctx, url)
        acct.status = live.status
        must(state.write_account(ctx.st, url, acct))
    end
    local f = fields(url, acct, live)
    f.thumbprint = key:thumbprint()
    f.orders_url = live.orders_url
    return { code = 0, account = f }
end

-- Set the contacts to ctx.contact.
function M.update(ctx)
    local url = ctx.directory
    local c, acct = M.open(ctx, url, false)
    local lk <close> = lock(ctx, url)
    local live = must(c:update_reg({ contact = ctx.contact or {} }))
    acct.contact = live.contact or ctx.contact or {}
    must(state.write_account(ctx.st, url, acct))
    ctx:emit("account_updated", { ca = host_of(url), uri = acct.uri,
        contact = util.array(acct.contact) }, "updated account " ..
        acct.uri .. ": contact " .. (#acct.contact > 0 and
        table.concat(acct.contact, ", ") or "(none)"))
    return { code = 0, account = fields(url, acct, live) }
end

-- Deactivate the account, permanently.
function M.deactivate(ctx)
    local url = ctx.directory
    local c, acct = M.open(ctx, url, false)
    local lk <close> = lock(ctx, url)
    must(c:deactivate_reg())
    acct.status = "deactivated"
    acct.deactivated_at = ctx.now()
    must(state.write_account(ctx.st, url, acct))
    ctx:emit("account_deactivated", { ca = host_of(url),
        uri = acct.uri }, "deactivated account " .. acct.uri)
    return { code = 0, account = fields(url, acct) }
end

-- A new account key (opts.key_type).
function M.rollover(ctx, opts)
    opts = opts or {}
    local url = ctx.directory
    local c, acct = M.open(ctx, url, false)
    local lk <close> = lock(ctx, url)
    local newkey = M.new_key(opts.key_type)
    local newrel = rel(url, "account.key.new")
    -- Kept until the CA answered and account.key holds it, so an
    -- interrupted rollover can be finished (recover_rollover).
    must(newkey:write(ctx.st:path(newrel)))
    local oldkey = c.key
    local ok, err = c:account_key_rollover(newkey)
    if not ok then
        -- The new key goes only when the CA shows the account still
        -- under the old one; a 504 or a lost reply may hide a rollover
        -- that happened.
        local which = key_holding(ctx, url, acct.uri, oldkey, newkey)
        if which == "old" then
            ctx.st:delete(newrel)
        elseif which == "new" then
            ok = true
        end
        if not ok then error(err, 0) end
    end
    commit_new_key(ctx, url, newkey)
    acct.key_type = newkey:spec()
    acct.rolled_over_at = ctx.now()
    must(state.write_account(ctx.st, url, acct))
    ctx:emit("account_rollover", { ca = host_of(url), uri = acct.uri,
        key_type = acct.key_type }, "rolled the key of account " ..
        acct.uri .. " over to a new " .. acct.key_type .. " key")
    local f = fields(url, acct)
    f.thumbprint = newkey:thumbprint()
    return { code = 0, account = f }
end

return M
