-- The command line. main(arg) returns the process exit status:
-- 0 done, 1 failure, 2 nothing to do.
local core = require "luacme.core"

local M = {}

local function versions()
  local v = core.versions()
  local cjson = require "cjson"
  return string.format("luacme %s\n%s\nOpenSSL: %s\nlibcurl: %s (%s%s)\nlua-cjson: %s",
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
  local ok, res = true, chunk(table.unpack(a))
  if not ok then return 1 end
  if math.type(res) == "integer" then return res end
  if res == false then return 1 end
  return 0
end

function M.main(arg)
  local cmd = arg[1]
  if cmd == "--version" or cmd == "version" then
    print(versions())
    return 0
  elseif cmd == "run" then
    if not arg[2] then
      io.stderr:write("usage: luacme run FILE.lua [ARGS...]\n")
      return 1
    end
    local rest = {}
    for i = 3, #arg do rest[#rest + 1] = arg[i] end
    return M.run_file(arg[2], rest)
  end
  io.stderr:write("usage: luacme --version | run FILE.lua [ARGS...]\n")
  return 1
end

return M
