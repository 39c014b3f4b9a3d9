-- luacme.site for a Lua program that loads luacme as a library (the
-- system's lua5.4 with luacme/core.so). The luacme executable never
-- reads this file: it preloads its own luacme.site (core/main.c), which
-- also serves the copies of the Lua files and hooks compiled into it.
-- Here the built-in hooks are files: installed beside this file
-- (luacme/builtin-hooks/, where the rockspec and `cmake --install` put
-- them) or, in a source tree, the top-level hooks/.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."

local function has(path)
    local f = io.open(path, "r")
    if not f then return false end
    f:close()
    return true
end

local M = {}

for _, c in ipairs({ { here .. "/builtin-hooks", here },
    { here .. "/../../hooks", here .. "/../.." } }) do
    if has(c[1] .. "/webroot.lua") then
        M.hooks_dir, M.root = c[1], c[2]
        break
    end
end

-- Nothing is compiled in.
function M.embedded() return nil end
function M.embedded_list() return {} end

return M
