-- The storage interface: one small object so other backends can follow.
-- A backend offers get, put (atomic), delete, list, lock, and for
-- state.lua's installs rename (atomic), exists, rmdir, symlink and
-- readlink; path() gives deploy hooks real file names, so a backend
-- without files would export a copy. This one keeps everything under
-- one directory of the local file system.
--
--   local store = require "luacme.store"
--   local st, warnings = store.open("/var/lib/luacme")
--   st:put("certs/example.com/cert.pem", pem)          -- atomic
--   local data, err = st:get("certs/example.com/cert.pem")
--
-- Relative paths are checked before they touch the disk (check_path):
-- only [A-Za-z0-9._@+-] and "/", no "..", no absolute paths, no empty
-- segments. Anything else fails with kind "invalid".
--
-- Every function returns a value or nil, err (err from luacme.errors,
-- err.kind "not_found", "exists", "permission", "busy", "io",
-- "too_large", "invalid"); wrong argument types raise.
local core = require "luacme.core"
local errors = require "luacme.errors"
local sched = require "luacme.sched"

local M = {}

-- Largest file get() reads: everything we keep is a few PEM blocks or
-- a small JSON document.
M.MAX_FILE = 1024 * 1024

-- Longest relative path accepted.
M.MAX_PATH = 1024

-- How deep open() looks for files with loose modes (accounts/HOST/FILE,
-- certs/NAME/FILE and a little slack).
local WALK_DEPTH = 4

local Store = {}
Store.__index = Store

local function fail(kind, detail)
    return nil, errors.new(kind, detail)
end

-- The core returns nil, message, kind; turn that into nil, err.
local function core_fail(msg, kind)
    return nil, errors.new(kind or "io", msg or "unknown error")
end

-- Is rel (a relative path in the store) a file holding a secret? Private
-- keys, and meta.json (hook options may carry credentials even though the
-- README asks for the environment instead). Also matches the .new/.prev
-- siblings of those files.
function M.is_private(rel)
    local base = rel:match("([^/]*)$")
    return base:find("%.key$") ~= nil or base:find("%.key%.") ~= nil or
        base:find("^privkey%.pem") ~= nil or base:find("^meta%.json") ~= nil
end

-- Check a relative path. Returns true or nil, err (kind "invalid").
-- allow_empty accepts "" (the store's root) for list() and path().
function M.check_path(rel, allow_empty)
    if type(rel) ~= "string" then
        return fail("invalid", "store path must be a string, got " ..
            type(rel))
    end
    if rel == "" and allow_empty then return true end
    if rel == "" then return fail("invalid", "empty store path") end
    if #rel > M.MAX_PATH then
        return fail("invalid", "store path longer than " .. M.MAX_PATH)
    end
    if rel:find("[^A-Za-z0-9._@+%-/]") then
        return fail("invalid", "store path " .. errors.printable(rel) ..
            " has characters outside [A-Za-z0-9._@+-/]")
    end
    if rel:sub(1, 1) == "/" then
        return fail("invalid", "store path " .. rel .. " is absolute")
    end
    if rel:find("..", 1, true) then
        return fail("invalid", "store path " .. rel .. " contains ..")
    end
    if rel:find("//", 1, true) or rel:sub(-1) == "/" then
        return fail("invalid", "store path " .. rel ..
            " has an empty segment")
    end
    for seg in rel:gmatch("[^/]+") do
        if seg == "." then
            return fail("invalid", "store path " .. rel .. " has a . segment")
        end
    end
    return true
end

local function octal(mode)
    return string.format("0%o", mode)
end

-- Bits a file may have: 0600 for secrets, 0644 for the rest.
local function allowed_bits(rel, ftype)
    if ftype == "dir" then return 448 end         -- 0700
    if M.is_private(rel) then return 384 end      -- 0600
    return 420                                    -- 0644
end

-- Paths whose owner decides what runs as the caller: meta.json, which
-- names hooks, and every directory that could swap it (the root,
-- certs/, a certificate's directory and its generations). "dir" when
-- only a directory there counts.
local function guarded(rel)
    if rel == "" or rel == "certs" or rel:match("^certs/[^/]+$") or
        rel:match("^certs/[^/]+/meta%.json$") or
        rel:match("^certs/[^/]+/[^/]+/meta%.json$") then
        return "any"
    end
    if rel:match("^certs/[^/]+/[^/]+$") then return "dir" end
    return nil
end

-- Why a guarded path (followed if a link) must not be trusted, or nil:
-- another owner than the caller, or writable by group or others.
local function untrusted(abs, uid, what)
    local st = core.stat(abs)
    if not st or (what == "dir" and st.type ~= "dir") then return nil end
    if st.uid ~= uid then
        return string.format("%s: owned by uid %d, not %d", abs, st.uid, uid)
    end
    if st.mode & 18 ~= 0 then                       -- 0022
        return string.format("%s: writable by %s (mode %s)", abs,
            st.mode & 16 ~= 0 and "group" or "others", octal(st.mode & 4095))
    end
    return nil
end

-- Look at the modes of what is already there (up to WALK_DEPTH levels):
-- directories must be 0700, secrets 0600, other files no looser than
-- 0644. Symbolic links are not followed; one is reported unless it is
-- relative and stays inside its directory's subtree (what the store
-- makes itself: a certificate's files point into its generation).
-- Appends human-readable lines to warnings; guarded paths another user
-- controls (links followed) go to refusals.
local function walk_modes(self, rel, depth, warnings, refusals)
    local abs = self:path(rel)
    local what = guarded(rel)
    if what then
        refusals[#refusals + 1] = untrusted(abs, self.uid, what)
    end
    local st = core.lstat(abs)
    if not st then return end
    if st.type == "link" then
        local target = core.readlink(abs)
        if not target or not M.check_path(target) then
            warnings[#warnings + 1] = abs .. ": is a symbolic link"
        end
        return
    end
    if st.type ~= "file" and st.type ~= "dir" then
        warnings[#warnings + 1] = abs .. ": is not a file or directory"
        return
    end
    local allowed = allowed_bits(rel, st.type)
    if st.mode & ~allowed & 511 ~= 0 then
        warnings[#warnings + 1] = string.format(
            "%s: mode %s is looser than %s", abs, octal(st.mode & 4095),
            octal(allowed))
    end
    if st.type == "dir" and depth < WALK_DEPTH then
        local names = core.listdir(abs)
        for _, n in ipairs(names or {}) do
            walk_modes(self, rel == "" and n or rel .. "/" .. n, depth + 1,
                warnings, refusals)
        end
    end
end

-- Open (creating it 0700 if needed) the store in directory dir. Returns
-- the store and a list of warnings (also kept in store.warnings): files
-- and directories whose modes are looser than required. Nothing is
-- changed about existing files. nil, err when dir cannot be created or
-- is not a directory, and (kind "permission") when the root, certs/,
-- a certificate directory or a meta.json is owned by another user or
-- writable by group or others.
function M.open(dir)
    if type(dir) ~= "string" or dir == "" then
        error("store.open: directory must be a non-empty string", 2)
    end
    dir = dir:gsub("(.)/+$", "%1")
    local ok, msg, kind = core.mkdir_p(dir, 448)
    if not ok then return core_fail("state directory " .. dir .. ": " ..
        tostring(msg), kind) end
    local st
    st, msg, kind = core.stat(dir)
    if not st then return core_fail(msg, kind) end
    if st.type ~= "dir" then
        return fail("invalid", "state directory " .. dir ..
            " is not a directory")
    end
    local self = setmetatable({ dir = dir, warnings = {},
        uid = core.getuid() }, Store)
    local refusals = {}
    walk_modes(self, "", 0, self.warnings, refusals)
    if #refusals > 0 then
        return fail("permission", "refusing state another user controls " ..
            "(its meta.json names hooks that would run as you): " ..
            table.concat(refusals, "; "))
    end
    return self, self.warnings
end

-- The absolute path of rel (the store's root for "" or nil). Raises on
-- an invalid path: callers build paths from checked names.
function Store:path(rel)
    if rel == nil or rel == "" then return self.dir end
    local ok, err = M.check_path(rel)
    if not ok then error(tostring(err), 2) end
    if self.dir == "/" then return "/" .. rel end
    return self.dir .. "/" .. rel
end

local function parent(rel)
    return rel:match("^(.*)/[^/]*$")
end

-- Create the parent directories of rel (0700).
local function make_parent(self, rel)
    local p = parent(rel)
    if not p then return true end
    local ok, msg, kind = core.mkdir_p(self.dir .. "/" .. p, 448)
    if not ok then return core_fail(msg, kind) end
    return true
end

-- Contents of rel, or nil, err (kind "not_found" when it does not exist).
function Store:get(rel)
    local ok, err = M.check_path(rel)
    if not ok then return nil, err end
    local data, msg, kind = core.read_file(self:path(rel), M.MAX_FILE)
    if not data then return core_fail(msg, kind) end
    return data
end

-- Atomically replace rel with data: a reader sees the old or the new
-- contents, never a mix, also after a crash. opts.mode overrides the
-- default (0600 for secrets, see is_private; 0644 otherwise). Parent
-- directories are created 0700. Returns true or nil, err.
function Store:put(rel, data, opts)
    if type(data) ~= "string" then
        error("store:put: data must be a string", 2)
    end
    local ok, err = M.check_path(rel)
    if not ok then return nil, err end
    local mode = opts and opts.mode or (M.is_private(rel) and 384 or 420)
    ok, err = make_parent(self, rel)
    if not ok then return nil, err end
    local msg, kind
    ok, msg, kind = core.write_file(self:path(rel), data, mode)
    if not ok then return core_fail(msg, kind) end
    return true
end

-- Remove the file rel. A file that is already gone is not an error.
function Store:delete(rel)
    local ok, err = M.check_path(rel)
    if not ok then return nil, err end
    local msg, kind
    ok, msg, kind = core.unlink(self:path(rel))
    if not ok and kind ~= "not_found" then return core_fail(msg, kind) end
    return true
end

-- Remove the empty directory rel (not_found is not an error).
function Store:rmdir(rel)
    local ok, err = M.check_path(rel)
    if not ok then return nil, err end
    local msg, kind
    ok, msg, kind = core.rmdir(self:path(rel))
    if not ok and kind ~= "not_found" then return core_fail(msg, kind) end
    return true
end

-- Atomically rename from to to (replacing to), both in the store.
function Store:rename(from, to)
    local ok, err = M.check_path(from)
    if not ok then return nil, err end
    ok, err = M.check_path(to)
    if not ok then return nil, err end
    ok, err = make_parent(self, to)
    if not ok then return nil, err end
    local msg, kind
    ok, msg, kind = core.rename(self:path(from), self:path(to))
    if not ok then return core_fail(msg, kind) end
    return true
end

-- Make rel a symbolic link to target, a path relative to rel's
-- directory (checked like a store path, so it stays inside the store).
-- Fails with kind "exists" when rel exists.
function Store:symlink(target, rel)
    local ok, err = M.check_path(target)
    if not ok then return nil, err end
    ok, err = M.check_path(rel)
    if not ok then return nil, err end
    ok, err = make_parent(self, rel)
    if not ok then return nil, err end
    local msg, kind
    ok, msg, kind = core.symlink(target, self:path(rel))
    if not ok then return core_fail(msg, kind) end
    return true
end

-- The target of the symbolic link rel, or nil, err ("not_found").
function Store:readlink(rel)
    local ok, err = M.check_path(rel)
    if not ok then return nil, err end
    local target, msg, kind = core.readlink(self:path(rel))
    if not target then return core_fail(msg, kind) end
    return target
end

-- "file", "dir", "link" or false when rel does not exist; nil, err
-- otherwise. A symbolic link is not followed.
function Store:exists(rel)
    local ok, err = M.check_path(rel, true)
    if not ok then return nil, err end
    local st, msg, kind = core.lstat(self:path(rel))
    if st then return st.type end
    if kind == "not_found" then return false end
    return core_fail(msg, kind)
end

-- Sorted names in the directory rel ("" for the root). A directory that
-- does not exist lists as empty, as in a key-value store.
function Store:list(rel)
    local ok, err = M.check_path(rel or "", true)
    if not ok then return nil, err end
    local names, msg, kind = core.listdir(self:path(rel))
    if not names then
        if kind == "not_found" then return {} end
        return core_fail(msg, kind)
    end
    return names
end

-- core.lock(path) waiting up to timeout seconds. In a luacme.sched task
-- the wait is the scheduler's (tries between sleeps), so the other tasks
-- run meanwhile; a lock is per open file, so two tasks of one process
-- exclude each other as two processes do.
local function take_lock(path, timeout)
    if not timeout or timeout <= 0 or not sched.current() then
        return core.lock(path, { timeout = timeout or 0 })
    end
    local deadline = sched.now() + timeout
    local delay = 0.02
    while true do
        local lk, msg, kind = core.lock(path, { timeout = 0 })
        local left = deadline - sched.now()
        if lk or kind ~= "busy" or left <= 0 then return lk, msg, kind end
        sched.sleep(math.min(delay, left))
        delay = math.min(delay * 2, 0.5)
    end
end

-- Take an exclusive lock named by rel (a lock file in the store), waiting
-- up to timeout seconds (default 0: try once). what describes the
-- locked thing for the message, e.g. "certificate example.com is being
-- renewed"; the busy error then reads "<what> by another luacme run
-- (pid N)" and carries err.pid. Returns the lock (unlock(), and <close>)
-- or nil, err with kind "busy" (or another kind when the lock file
-- cannot be made, "interrupted" on a signal while waiting). The lock
-- file stays: removing it would race with the next run's open.
function Store:lock(rel, timeout, what)
    local ok, err = M.check_path(rel)
    if not ok then return nil, err end
    ok, err = make_parent(self, rel)
    if not ok then return nil, err end
    local lk, msg, kind = take_lock(self:path(rel), timeout)
    if not lk then
        if kind ~= "busy" then return core_fail(msg, kind) end
        -- The core names the holder's pid (from /proc/locks).
        local pid = tostring(msg):match("%(pid (%d+)%)")
        local text = (what or ("lock " .. rel .. " is held")) ..
            " by another luacme run" .. (pid and (" (pid " .. pid .. ")")
            or "")
        if timeout and timeout > 0 then
            text = text .. "; gave up after " .. timeout .. " s"
        end
        return nil, errors.new("busy", text, { path = self:path(rel),
            pid = pid and tonumber(pid) })
    end
    return lk
end

return M
