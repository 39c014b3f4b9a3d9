-- webroot (http-01): puts the challenge response into an existing web
-- server's document root, as <root>/.well-known/acme-challenge/<token>
-- (mode 0644), and removes it again. With flat=yes the token goes
-- straight into root, the directory the web server already serves as
-- /.well-known/acme-challenge/ (dehydrated's WELLKNOWN).
--
-- Safety: the token is checked against ^[A-Za-z0-9_-]+$ before it names
-- a file; an existing file or symbolic link at that name that this run
-- did not create is never overwritten; missing directories are created
-- 0755 (the web server must read them) and remembered; cleanup removes
-- only what this run created (directories only once empty), also after
-- a failed deploy. An existing .well-known or acme-challenge may be a
-- symbolic link to a directory (a shared challenge directory): it is
-- used as it is and never removed.
local core = require "luacme.core"
local hooks = require "luacme.hooks"

local M = {
    description = "http-01: write the response under a web server's " ..
        "document root",
    types = { "http-01" },
    options = {
        { name = "root", required = true,
          help = "the document root (an existing directory, absolute path)" },
        { name = "flat",
          help = "yes: root is the directory served as " ..
              "/.well-known/acme-challenge/ itself (dehydrated's WELLKNOWN)" },
    },
}

local TOKEN = "^[A-Za-z0-9_-]+$"
local MAX_TOKEN = 256

-- What this run created: files by path, directories in creation order.
local files = {}
local dirs = {}

local function root_of(opts)
    local root = opts.root
    if type(root) ~= "string" or root:sub(1, 1) ~= "/" then
        return nil, "root must be an absolute path"
    end
    root = root:gsub("(.)/+$", "%1")
    return root
end

local function check_token(token)
    if type(token) ~= "string" or #token > MAX_TOKEN or
        not token:find(TOKEN) then
        return nil, "refusing a token that is not [A-Za-z0-9_-]+"
    end
    return true
end

-- Where the token files go: root's acme-challenge, or root itself.
local function challenge_dir(root, opts)
    if hooks.truthy(opts.flat) then return root end
    return root .. "/.well-known/acme-challenge"
end

function M.setup(opts)
    return root_of(opts)
end

-- Once before the first order: a root that is not there fails now,
-- not after the CA was asked (hooks/README promises it).
function M.startup(opts)
    local root, err = root_of(opts)
    if not root then return nil, err end
    local st = core.stat(root)
    if not st or st.type ~= "dir" then
        return nil, "root " .. root .. " is not a directory" ..
            (hooks.truthy(opts.flat) and "" or " (the web server's " ..
            "document root, which must exist)")
    end
    return true
end

-- Make dir unless it is there (a directory, or a link to one).
local function ensure_dir(dir)
    local st, msg, kind = core.lstat(dir)
    if st then
        if st.type == "dir" then return true end
        if st.type == "link" then
            local target = core.stat(dir)
            if target and target.type == "dir" then return true end
        end
        return nil, dir .. " exists and is not a directory"
    end
    if kind ~= "not_found" then return nil, msg end
    local ok
    ok, msg = core.mkdir(dir, tonumber("755", 8))
    if not ok then return nil, msg end
    dirs[#dirs + 1] = dir
    return true
end

function M.deploy(ch, opts)
    if ch.type ~= "http-01" then
        return nil, "webroot solves http-01 only, not " .. tostring(ch.type)
    end
    local ok, err = check_token(ch.token)
    if not ok then return nil, err end
    local root
    root, err = root_of(opts)
    if not root then return nil, err end
    local st = core.stat(root)
    if not st or st.type ~= "dir" then
        return nil, "root " .. root .. " is not a directory"
    end
    local dir = challenge_dir(root, opts)
    if dir ~= root then
        for _, d in ipairs({ root .. "/.well-known", dir }) do
            ok, err = ensure_dir(d)
            if not ok then return nil, err end
        end
    end
    local file = dir .. "/" .. ch.token
    local cur = core.lstat(file)
    if cur and cur.type == "link" then
        return nil, file .. " is a symbolic link; refusing to replace it"
    end
    if cur and not files[file] then
        return nil, file .. " exists and was not created by luacme; " ..
            "refusing to replace it"
    end
    local msg
    ok, msg = core.write_file(file, ch.key_authorization,
        tonumber("644", 8))
    if not ok then return nil, msg end
    files[file] = true
    return true
end

-- Remove the token file if this run made it, then every directory this
-- run made under root that is empty by now (deepest first).
function M.cleanup(ch, opts)
    local root = root_of(opts)
    if not root then return true end
    local problems = {}
    if check_token(ch.token) then
        local file = challenge_dir(root, opts) .. "/" .. ch.token
        if files[file] then
            local ok, msg, kind = core.unlink(file)
            if ok or kind == "not_found" then
                files[file] = nil
            else
                problems[#problems + 1] = msg
            end
        end
    end
    for i = #dirs, 1, -1 do
        local d = dirs[i]
        if d:sub(1, #root + 1) == root .. "/" then
            local ok, _, kind = core.rmdir(d)
            if ok or kind == "not_found" then table.remove(dirs, i) end
        end
    end
    if #problems > 0 then return nil, table.concat(problems, "; ") end
    return true
end

return M
