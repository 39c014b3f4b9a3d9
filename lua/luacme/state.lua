-- The layout of luacme's state on top of a store (luacme.store):
--
--   accounts/<CA host>/account.json, account.key (0600), .lock,
--                      ca.json (the CA's remembered Retry-After)
--   certs/<CERTNAME>/privkey.pem (0600), cert.pem, chain.pem,
--                    fullchain.pem, meta.json (0600), .lock
--                    and the previous set as *.prev
--                    (links into the generations gen.N: see
--                    "Installing a certificate" below)
--
-- Certificates are installed so that the whole set switches at once and
-- a crash at any moment leaves either the complete old set or the
-- complete new set (see install_cert).
--
-- meta.json (read_meta / write_meta) is a JSON object:
--   names, ips            lists of the certificate's identifiers
--   key_type, reuse_key, must_staple, hooks, deploy_hooks,
--   preferred_chain, profile, valid_for, directory
--                         the settings it was issued with, reused on renew
--   cert_url, order_url   ACME URLs of the certificate and its order
--   ari = { cert_id, window_start, window_end, explanation_url,
--           next_check, renew_at, renew_at_start, renew_at_end }
--                         renewal information; times in unix seconds
--                         (renew_at: see luacme.renew)
--   issued_at, not_before, not_after   unix seconds
--   last_error = { time, message, kind, type, identifier }
--   hold = { retry_at, time, reason, status }
--                         the CA asked (429/503 + Retry-After) not to be
--                         asked for this certificate before retry_at
-- Unknown members are kept as they are.
local core = require "luacme.core"
local cjson = require "cjson.safe"
local errors = require "luacme.errors"

local M = {}

local json = cjson.new()
if json.encode_empty_table_as_object then
    json.encode_empty_table_as_object(true)
end
-- Times are unix seconds: 14 digits keep them to the millisecond.
json.encode_number_precision(14)
-- The one configured encoder/decoder for stored records (fleet uses it too).
M.json = json

-- The files of one certificate, meta.json last: it is the commit record.
M.CERT_FILES = { "privkey.pem", "cert.pem", "chain.pem", "fullchain.pem" }
M.META = "meta.json"

local function fail(kind, detail)
    return nil, errors.new(kind, detail)
end

-- Default state directory: /var/lib/luacme for root, otherwise
-- $XDG_STATE_HOME/luacme or ~/.local/state/luacme. env is a name->value
-- table (core.environ()), uid a number; LUACME_STATE wins.
function M.default_dir(env, uid)
    if env.LUACME_STATE and env.LUACME_STATE ~= "" then
        return env.LUACME_STATE
    end
    if uid == 0 then return "/var/lib/luacme" end
    local xdg = env.XDG_STATE_HOME
    if xdg and xdg:sub(1, 1) == "/" then return xdg .. "/luacme" end
    if env.HOME and env.HOME ~= "" then
        return env.HOME .. "/.local/state/luacme"
    end
    return nil, errors.new("invalid",
        "no state directory: set --state, LUACME_STATE or HOME")
end

-- A certificate name is one store path segment: [A-Za-z0-9._@+-], not
-- starting with a dot, at most 255 bytes. Returns true or nil, err.
function M.check_name(name)
    if type(name) ~= "string" or name == "" then
        return fail("invalid", "certificate name must be a non-empty string")
    end
    if #name > 255 or name:find("[^A-Za-z0-9._@+%-]") or
        name:sub(1, 1) == "." or name:find("..", 1, true) then
        return fail("invalid", "certificate name " ..
            errors.printable(name) .. " is not allowed: use letters, " ..
            "digits and . _ @ + - (not starting with a dot)")
    end
    return true
end

-- The default certificate name for a first identifier: lower-cased, a
-- wildcard "*.example.com" becomes "_.example.com" (as lego does), an
-- IPv6 address has its colons turned into dashes.
function M.default_name(first)
    local n = first:lower():gsub("^%*%.", "_."):gsub(":", "-")
    return n
end

-- The directory name for a CA: the host of its directory URL, plus
-- "_PORT" when the port is not the scheme's default. IPv6 literals lose
-- their brackets and have ":" turned into "-". E.g.
-- https://acme-v02.api.letsencrypt.org/directory -> acme-v02.api.letsencrypt.org
-- https://127.0.0.1:14000/dir -> 127.0.0.1_14000
-- https://[::1]:14000/dir -> --1_14000
function M.ca_host(url)
    if type(url) ~= "string" then
        return fail("invalid", "directory URL must be a string")
    end
    local scheme, authority = url:match("^(%a[%w+.-]*)://([^/?#]*)")
    if not scheme then
        return fail("invalid", "directory URL " .. errors.printable(url) ..
            " is not an absolute URL")
    end
    scheme = scheme:lower()
    if authority:find("@", 1, true) then
        return fail("invalid", "directory URL must not carry a user name")
    end
    local host, port = authority:match("^%[([%x:.]+)%]:?(%d*)$")
    if host then
        host = host:gsub(":", "-")
    else
        host, port = authority:match("^([^:]+):?(%d*)$")
    end
    if not host or host == "" then
        return fail("invalid", "directory URL " .. errors.printable(url) ..
            " has no host")
    end
    host = host:lower()
    if host:find("[^a-z0-9._-]") or host:find("..", 1, true) or
        host:sub(1, 1) == "." then
        return fail("invalid", "directory URL host " ..
            errors.printable(host) .. " is not a plain host name")
    end
    local default = (scheme == "http") and "80" or "443"
    if port ~= "" and port ~= default then host = host .. "_" .. port end
    return host
end

-- Relative path of the account directory for a directory URL.
function M.account_dir(url)
    local host, err = M.ca_host(url)
    if not host then return nil, err end
    return "accounts/" .. host
end

local function account_file(url, file)
    local dir, err = M.account_dir(url)
    if not dir then return nil, err end
    return dir .. "/" .. file
end

local function decode(data, what)
    local v, err = json.decode(data)
    if type(v) ~= "table" then
        return fail("invalid", what .. " is not a JSON object" ..
            (err and (": " .. err) or ""))
    end
    return v
end

-- cjson.null means absent: drop it everywhere so callers test for nil.
local function strip_null(t, depth)
    if depth > 16 then return t end
    for k, v in pairs(t) do
        if v == cjson.null then
            t[k] = nil
        elseif type(v) == "table" then
            strip_null(v, depth + 1)
        end
    end
    return t
end

local function read_json(st, rel)
    local data, err = st:get(rel)
    if not data then return nil, err end
    local v
    v, err = decode(data, st:path(rel))
    if not v then return nil, err end
    return strip_null(v, 0)
end

local function encode(v)
    local s, err = json.encode(v)
    if not s then return fail("invalid", "cannot encode JSON: " ..
        tostring(err)) end
    return s .. "\n"
end

-- account.json of the CA at url: a table or nil, err ("not_found").
function M.read_account(st, url)
    local rel, err = account_file(url, "account.json")
    if not rel then return nil, err end
    return read_json(st, rel)
end

function M.write_account(st, url, acct)
    local rel, err = account_file(url, "account.json")
    if not rel then return nil, err end
    local data
    data, err = encode(acct)
    if not data then return nil, err end
    return st:put(rel, data, { mode = 384 })
end

-- The account key PEM (written 0600) and its absolute path.
function M.read_account_key(st, url)
    local rel, err = account_file(url, "account.key")
    if not rel then return nil, err end
    return st:get(rel)
end

function M.write_account_key(st, url, pem)
    local rel, err = account_file(url, "account.key")
    if not rel then return nil, err end
    return st:put(rel, pem, { mode = 384 })
end

function M.account_key_path(st, url)
    local rel, err = account_file(url, "account.key")
    if not rel then return nil, err end
    return st:path(rel)
end

-- ca.json beside the account: what luacme remembers of the CA itself
-- across runs, e.g. { directory, retry_at, time, reason, status } when
-- the CA asked to be left alone until retry_at (luacme.certs). A table,
-- or nil, err ("not_found" when there is none).
function M.read_ca(st, url)
    local rel, err = account_file(url, "ca.json")
    if not rel then return nil, err end
    return read_json(st, rel)
end

function M.write_ca(st, url, rec)
    local rel, err = account_file(url, "ca.json")
    if not rel then return nil, err end
    local data
    data, err = encode(rec)
    if not data then return nil, err end
    return st:put(rel, data)
end

-- Lock the account of the CA at url (see store:lock).
function M.lock_account(st, url, timeout)
    local rel, err = account_file(url, ".lock")
    if not rel then return nil, err end
    local host = M.ca_host(url)
    return st:lock(rel, timeout, "the account at " .. host ..
        " is in use")
end

-- Relative directory of certificate name.
function M.cert_dir(name)
    local ok, err = M.check_name(name)
    if not ok then return nil, err end
    return "certs/" .. name
end

-- Names of the stored certificates (directories under certs/).
function M.list_certs(st)
    local names, err = st:list("certs")
    if not names then return nil, err end
    local out = {}
    for _, n in ipairs(names) do
        if M.check_name(n) and st:exists("certs/" .. n) == "dir" then
            out[#out + 1] = n
        end
    end
    return out
end

-- Absolute paths of a certificate's files, for deploy hooks.
function M.cert_files(st, name)
    local dir, err = M.cert_dir(name)
    if not dir then return nil, err end
    return {
        key_file = st:path(dir .. "/privkey.pem"),
        cert_file = st:path(dir .. "/cert.pem"),
        chain_file = st:path(dir .. "/chain.pem"),
        fullchain_file = st:path(dir .. "/fullchain.pem"),
        meta_file = st:path(dir .. "/meta.json"),
    }
end

--[[
Installing a certificate.

Each set lives in a generation directory of its own, written in full
before anything points at it:

  certs/NAME/gen.N/privkey.pem cert.pem chain.pem fullchain.pem meta.json
  certs/NAME/live -> gen.N        the current set
  certs/NAME/prev -> gen.M        the set before it (M < N), if any
  certs/NAME/privkey.pem -> live/privkey.pem    (and the other four)
  certs/NAME/privkey.pem.prev -> prev/privkey.pem   (and the others)

The paths users configure stay what they were; they are symbolic links
now. A new set becomes current with one rename(2) of a link over live:
the whole set switches at once, so every file opened after that moment
is from the new set and every one opened before from the old one. (A
reader that opens cert.pem and privkey.pem in two steps can still have
the switch fall between its two opens; one that resolves live once, or
reads one file holding both, cannot.) meta.json is the set's record and
write_meta updates it inside the live generation.

install_cert, with the certificate's lock held:
  1. recover() (below);
  2. write gen.N (N = highest generation + 1), each file atomic and
     durable, meta.json last;
  3. commit: a link live.new -> gen.N renamed over live (the directory
     fsync'd): the moment it lands the new set is current;
  4. a link prev.new -> the old live target renamed over prev;
  5. the fixed links that do not exist yet are made; every generation
     but live and prev is deleted.

recover() (run by lock_cert and install_cert) makes the directory
whole again whatever step a run died in: temporary files and link
temps go; without live, generations are half-made first installs and
go, and a set in the layout before generations (plain files, *.prev,
an interrupted *.new install finished or undone as that layout did) is
migrated: copied into gen.1 (and its *.prev into gen.0), committed by
the live link, then each plain file replaced by its link; with live,
prev is pointed at the highest generation below live, every other
generation is deleted and missing links are made. So after a crash at
any point readers see the old or the new complete set, and nothing
stale accumulates.
]]

local function no_step() end

local GEN_PAT = "^gen%.(%d+)$"

local function gen_name(n) return "gen." .. n end

-- The generation number live (or prev) points at, false when the link
-- does not exist, nil, err when it cannot be read or is not ours.
local function link_gen(st, dir, which)
    local kind, err = st:exists(dir .. "/" .. which)
    if kind == nil then return nil, err end
    if not kind then return false end
    local target
    target, err = st:readlink(dir .. "/" .. which)
    if not target then return nil, err end
    local n = target:match(GEN_PAT)
    if not n then
        return fail("invalid", st:path(dir .. "/" .. which) ..
            " points at " .. errors.printable(target) ..
            ", not at a generation")
    end
    return tonumber(n)
end

-- Generation numbers present in dir, ascending.
local function generations(st, dir)
    local names, err = st:list(dir)
    if not names then return nil, err end
    local out = {}
    for _, n in ipairs(names) do
        local g = n:match(GEN_PAT)
        if g and st:exists(dir .. "/" .. n) == "dir" then
            out[#out + 1] = tonumber(g)
        end
    end
    table.sort(out)
    return out
end

-- Remove temporary files (core.write_file's "FILE.tmp.XXXXXX") that a
-- write killed midway left in dir; nobody else writes there while we
-- hold the lock.
local function remove_temps(st, dir)
    local names, err = st:list(dir)
    if not names then return nil, err end
    for _, n in ipairs(names) do
        if n:find("%.tmp%.[%w_-]+$") then
            local ok
            ok, err = st:delete(dir .. "/" .. n)
            if not ok then return nil, err end
        end
    end
    return true
end

-- Delete generation g of dir (its files, then the directory).
local function drop_gen(st, dir, g, step)
    step("drop " .. gen_name(g))
    local gdir = dir .. "/" .. gen_name(g)
    local names, err = st:list(gdir)
    if not names then return nil, err end
    for _, n in ipairs(names) do
        local ok
        ok, err = st:delete(gdir .. "/" .. n)
        if not ok then return nil, err end
    end
    return st:rmdir(gdir)
end

-- Point link `which` of dir at generation g: a fresh link renamed over
-- the old one, so it is never missing.
local function set_link(st, dir, which, g)
    local tmp = dir .. "/" .. which .. ".new"
    local ok, err = st:delete(tmp)
    if not ok then return nil, err end
    ok, err = st:symlink(gen_name(g), tmp)
    if not ok then return nil, err end
    return st:rename(tmp, dir .. "/" .. which)
end

local function all_files()
    local t = {}
    for i, f in ipairs(M.CERT_FILES) do t[i] = f end
    t[#t + 1] = M.META
    return t
end

-- Make the fixed names link into live (and *.prev into prev when there
-- is one). A plain file there (a migrated set) is replaced by its link
-- with one rename, its content being the same as the link's target.
local function fix_links(st, dir, has_prev, step)
    for _, f in ipairs(all_files()) do
        if not has_prev then
            -- No previous set: a *.prev left by the flat layout goes.
            local ok, err = st:delete(dir .. "/" .. f .. ".prev")
            if not ok then return nil, err end
        end
        for _, v in ipairs({ { f, "live/" .. f }, has_prev and
            { f .. ".prev", "prev/" .. f } or nil }) do
            local path = dir .. "/" .. v[1]
            local kind, err = st:exists(path)
            if kind == nil then return nil, err end
            local want = kind == "link" and st:readlink(path)
            if want ~= v[2] then
                step("link " .. v[1])
                local tmp = path .. ".new"
                local ok
                ok, err = st:delete(tmp)
                if not ok then return nil, err end
                ok, err = st:symlink(v[2], tmp)
                if not ok then return nil, err end
                ok, err = st:rename(tmp, path)
                if not ok then return nil, err end
            end
        end
    end
    return true
end

-- Write a set's five files into generation g of dir, meta.json last.
local function write_gen(st, dir, g, data, step)
    local gdir = dir .. "/" .. gen_name(g)
    for _, f in ipairs(all_files()) do
        step("write " .. gen_name(g) .. "/" .. f)
        local ok, err = st:put(gdir .. "/" .. f, data[f])
        if not ok then return nil, err end
    end
    return true
end

---------------------------------------------------------------------------
-- The layout before generations: plain files, meta.json the commit
-- record of an install through F.new files. Kept to finish such an
-- install and migrate the set.

local function new_of(dir, f) return dir .. "/" .. f .. ".new" end
local function prev_of(dir, f) return dir .. "/" .. f .. ".prev" end

-- Finish (meta.json.new present: committed) or undo an install of the
-- flat layout that died midway.
local function recover_flat(st, dir, step)
    local committed, err = st:exists(new_of(dir, M.META))
    if committed == nil then return nil, err end
    for _, f in ipairs(all_files()) do
        local has
        has, err = st:exists(new_of(dir, f))
        if has == nil then return nil, err end
        if has and committed then
            local cur = dir .. "/" .. f
            local has_cur
            has_cur, err = st:exists(cur)
            if has_cur == nil then return nil, err end
            if has_cur then
                step("flat prev " .. f)
                local ok
                ok, err = st:rename(cur, prev_of(dir, f))
                if not ok then return nil, err end
            end
            step("flat switch " .. f)
            local ok
            ok, err = st:rename(new_of(dir, f), cur)
            if not ok then return nil, err end
        elseif has then
            step("flat discard " .. f)
            local ok
            ok, err = st:delete(new_of(dir, f))
            if not ok then return nil, err end
        end
    end
    return true
end

-- The flat set with suffix ("" or ".prev") as file -> data, or false
-- when it is not all there.
local function flat_set(st, dir, suffix)
    local out = {}
    for _, f in ipairs(all_files()) do
        local path = dir .. "/" .. f .. suffix
        if st:exists(path) ~= "file" then return false end
        local data, err = st:get(path)
        if not data then return nil, err end
        out[f] = data
    end
    return out
end

-- Move a flat set into generations (no live link yet, lock held).
-- Returns true, migrated (a boolean) or nil, err.
local function migrate(st, dir, step)
    local ok, err = recover_flat(st, dir, step)
    if not ok then return nil, err end
    local cur
    cur, err = flat_set(st, dir, "")
    if cur == nil then return nil, err end
    if not cur then return true, false end
    local prev
    prev, err = flat_set(st, dir, ".prev")
    if prev == nil then return nil, err end
    if prev then
        ok, err = write_gen(st, dir, 0, prev, step)
        if not ok then return nil, err end
    end
    ok, err = write_gen(st, dir, 1, cur, step)
    if not ok then return nil, err end
    step("migrate commit")
    ok, err = set_link(st, dir, "live", 1)
    if not ok then return nil, err end
    if prev then
        ok, err = set_link(st, dir, "prev", 0)
        if not ok then return nil, err end
    end
    return true, true
end

---------------------------------------------------------------------------

-- Bring the set of certificate name to a complete, tidy state after an
-- interrupted install (see above). Call with the certificate's lock
-- held. Returns true, what ("none", "rolled back", "rolled forward",
-- "migrated") or nil, err.
function M.recover(st, name, step)
    step = step or no_step
    local dir, err = M.cert_dir(name)
    if not dir then return nil, err end
    local ok
    ok, err = remove_temps(st, dir)
    if not ok then return nil, err end
    for _, l in ipairs({ "live.new", "prev.new" }) do
        ok, err = st:delete(dir .. "/" .. l)
        if not ok then return nil, err end
    end
    local what = "none"
    local live
    live, err = link_gen(st, dir, "live")
    if live == nil then return nil, err end
    local gens
    gens, err = generations(st, dir)
    if not gens then return nil, err end
    if not live then
        -- Generations without live: a first install or a migration
        -- that died before its commit.
        for _, g in ipairs(gens) do
            ok, err = drop_gen(st, dir, g, step)
            if not ok then return nil, err end
            what = "rolled back"
        end
        local migrated
        ok, migrated = migrate(st, dir, step)
        if not ok then return nil, migrated end
        if not migrated then return true, what end
        what = "migrated"
        live = 1
        gens, err = generations(st, dir)
        if not gens then return nil, err end
    end
    local prev
    for _, g in ipairs(gens) do
        if g < live then prev = g end
    end
    local cur_prev
    cur_prev, err = link_gen(st, dir, "prev")
    if cur_prev == nil then return nil, err end
    if prev and cur_prev ~= prev then
        step("prev")
        ok, err = set_link(st, dir, "prev", prev)
        if not ok then return nil, err end
        if what == "none" then what = "rolled forward" end
    end
    ok, err = fix_links(st, dir, prev ~= nil, step)
    if not ok then return nil, err end
    for _, g in ipairs(gens) do
        if g ~= live and g ~= prev then
            ok, err = drop_gen(st, dir, g, step)
            if not ok then return nil, err end
            if what == "none" then what = g > live and "rolled back" or
                "rolled forward" end
        end
    end
    for _, g in ipairs(gens) do
        ok, err = remove_temps(st, dir .. "/" .. gen_name(g))
        if not ok and err.kind ~= "not_found" then return nil, err end
    end
    return true, what
end

-- Lock certificate name, waiting up to timeout seconds, then recover an
-- interrupted install. Returns the lock (<close>-able) or nil, err (kind
-- "busy" naming the certificate and the holder's pid).
function M.lock_cert(st, name, timeout)
    local dir, err = M.cert_dir(name)
    if not dir then return nil, err end
    local lk
    lk, err = st:lock(dir .. "/.lock", timeout,
        "certificate " .. name .. " is being renewed")
    if not lk then return nil, err end
    local ok
    ok, err = M.recover(st, name)
    if not ok then
        lk:unlock()
        return nil, err
    end
    return lk
end

local function check_pem(v, what)
    if type(v) ~= "string" then
        error("install_cert: " .. what .. " must be a string", 3)
    end
end

-- Install a new set for certificate name, keeping the previous set as
-- the previous generation (*.prev). set = { key_pem=, cert_pem=,
-- chain_pem= (may be ""), fullchain_pem= (default cert_pem ..
-- chain_pem), meta= (table) }. The certificate must match the key. Call
-- with lock_cert held. opts.step (tests only) is called with the name
-- of each step before it runs; raising there simulates a crash. Returns
-- true or nil, err; a failure before the commit point leaves the old
-- set, one after it is tidied by the next recover().
function M.install_cert(st, name, set, opts)
    local step = opts and opts.step or no_step
    local dir, err = M.cert_dir(name)
    if not dir then return nil, err end
    check_pem(set.key_pem, "key_pem")
    check_pem(set.cert_pem, "cert_pem")
    local chain = set.chain_pem or ""
    check_pem(chain, "chain_pem")
    local data = {
        ["privkey.pem"] = set.key_pem,
        ["cert.pem"] = set.cert_pem,
        ["chain.pem"] = chain,
        ["fullchain.pem"] = set.fullchain_pem or (set.cert_pem .. chain),
    }
    check_pem(data["fullchain.pem"], "fullchain_pem")
    if type(set.meta) ~= "table" then
        error("install_cert: meta must be a table", 2)
    end
    data[M.META], err = encode(set.meta)
    if not data[M.META] then return nil, err end

    local key, msg, kind = core.key_load(set.key_pem)
    if not key then
        return nil, errors.new(kind or "invalid", "certificate " .. name ..
            ": private key: " .. tostring(msg))
    end
    local match
    match, msg, kind = core.cert_matches_key(set.cert_pem, key)
    key:close()
    if match == nil then
        return nil, errors.new(kind or "invalid", "certificate " .. name ..
            ": " .. tostring(msg))
    end
    if not match then
        return fail("invalid", "certificate " .. name ..
            ": the certificate does not match the private key")
    end

    local ok
    ok, err = M.recover(st, name, step)
    if not ok then return nil, err end
    local old
    old, err = link_gen(st, dir, "live")
    if old == nil then return nil, err end
    local gens
    gens, err = generations(st, dir)
    if not gens then return nil, err end
    local g = (gens[#gens] or 0) + 1
    ok, err = write_gen(st, dir, g, data, step)
    if not ok then
        M.recover(st, name)
        return nil, err
    end
    step("commit")
    ok, err = set_link(st, dir, "live", g)
    if not ok then
        M.recover(st, name)
        return nil, err
    end
    -- Committed: what is left is tidying, which recover() redoes.
    if old then
        step("prev")
        ok, err = set_link(st, dir, "prev", old)
        if not ok then return nil, err end
    end
    ok, err = fix_links(st, dir, old and true or false, step)
    if not ok then return nil, err end
    for _, x in ipairs(gens) do
        if x ~= old then
            ok, err = drop_gen(st, dir, x, step)
            if not ok then return nil, err end
        end
    end
    return true
end

-- The directory of the live generation of dir (relative), false for a
-- set in the layout before generations, nil, err.
local function live_dir(st, dir)
    local live, err = link_gen(st, dir, "live")
    if live == nil then return nil, err end
    if not live then return false end
    return dir .. "/" .. gen_name(live)
end

-- meta.json of certificate name (the committed one when an install is
-- in flight): a table or nil, err ("not_found" when there is none).
function M.read_meta(st, name)
    local dir, err = M.cert_dir(name)
    if not dir then return nil, err end
    local gdir
    gdir, err = live_dir(st, dir)
    if gdir == nil then return nil, err end
    if gdir then return read_json(st, gdir .. "/" .. M.META) end
    local m
    m, err = read_json(st, new_of(dir, M.META))
    if m then return m end
    if err.kind ~= "not_found" then return nil, err end
    return read_json(st, dir .. "/" .. M.META)
end

-- Replace meta.json of certificate name (with its lock held, so that no
-- install is pending): the live generation's.
function M.write_meta(st, name, meta)
    local dir, err = M.cert_dir(name)
    if not dir then return nil, err end
    local data
    data, err = encode(meta)
    if not data then return nil, err end
    local gdir
    gdir, err = live_dir(st, dir)
    if gdir == nil then return nil, err end
    return st:put((gdir or dir) .. "/" .. M.META, data)
end

local SET_FIELDS = {
    ["privkey.pem"] = "key_pem",
    ["cert.pem"] = "cert_pem",
    ["chain.pem"] = "chain_pem",
    ["fullchain.pem"] = "fullchain_pem",
}

-- One lock-free read of the set: from the generation live names (read
-- once, so the files come from one set), or, for a set in the layout
-- before generations, by that layout's rule (with meta.json.new present
-- each F.new, falling back to F once switched). false, err when an
-- install ran meanwhile.
local function read_set(st, dir)
    local gdir, err = live_dir(st, dir)
    if gdir == nil then return nil, err end
    local out = {}
    if gdir then
        for _, f in ipairs(all_files()) do
            local data
            data, err = st:get(gdir .. "/" .. f)
            if not data and err.kind == "not_found" then
                -- The generation went: two installs passed meanwhile.
                return false, errors.new("busy", "an install was running")
            end
            if not data then return nil, err end
            out[SET_FIELDS[f] or "meta_json"] = data
        end
        return out
    end
    local committed
    committed, err = st:exists(new_of(dir, M.META))
    if committed == nil then return nil, err end
    for _, f in ipairs(all_files()) do
        local data
        if committed then
            data, err = st:get(new_of(dir, f))
            if not data and err.kind == "not_found" then
                data, err = st:get(dir .. "/" .. f)
            end
        else
            data, err = st:get(dir .. "/" .. f)
        end
        if not data then return nil, err end
        out[SET_FIELDS[f] or "meta_json"] = data
    end
    local again
    again, err = st:exists(new_of(dir, M.META))
    if again == nil then return nil, err end
    if again ~= committed then
        return false, errors.new("busy", "an install was running")
    end
    return out
end

-- Do the files of one read belong together? The certificate matches the
-- key, starts the full chain and has the validity meta.json recorded.
local function consistent(set, meta)
    if set.fullchain_pem:sub(1, #set.cert_pem) ~= set.cert_pem then
        return false, "fullchain.pem does not start with cert.pem"
    end
    local key, msg = core.key_load(set.key_pem)
    if not key then return false, "private key: " .. tostring(msg) end
    local match
    match, msg = core.cert_matches_key(set.cert_pem, key)
    key:close()
    if not match then
        return false, msg or "the certificate does not match the key"
    end
    if meta.not_after then
        local info
        info, msg = core.cert_info(set.cert_pem)
        if not info then return false, "certificate: " .. tostring(msg) end
        if info.not_after ~= meta.not_after then
            return false, "meta.json describes another certificate"
        end
    end
    return true
end

-- The current set of certificate name without taking the lock: {
-- key_pem, cert_pem, chain_pem, fullchain_pem, meta (table) } or nil,
-- err ("not_found" when the certificate has no complete set, "invalid"
-- when its files do not belong together). An install running at the
-- same time shows as a mixed read, which is retried a few times.
function M.read_cert(st, name)
    local dir, err = M.cert_dir(name)
    if not dir then return nil, err end
    for _ = 1, 5 do
        local set
        set, err = read_set(st, dir)
        if set == nil then return nil, err end
        if set then
            local meta
            meta, err = decode(set.meta_json, st:path(dir .. "/meta.json"))
            if meta then
                set.meta, set.meta_json = strip_null(meta, 0), nil
                local ok, why = consistent(set, set.meta)
                if ok then return set end
                err = errors.new("invalid", "certificate " .. name ..
                    ": " .. why)
            end
        end
    end
    return nil, err
end

return M
