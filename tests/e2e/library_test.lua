-- luacme as a library of the system's Lua 5.4: `luarocks make` of
-- lua/luacme-*.rockspec into a fresh tree (from a copy of the sources,
-- so the checkout gets no build directory), then Debian's lua5.4, with
-- only that tree (and the system's lua-cjson) on its paths, issues a
-- certificate from the harness's Pebble through examples/library.lua;
-- the same file under `luacme run` does too.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local t = require "testlib"
local core = require "luacme.core"
local E = require "e2e"
local L = require "cli_lib"

-- Absolute: the runs below have other working directories.
local root = (function()
  local p = assert(io.popen("cd " .. E.q(here .. "/../..") .. " && pwd"))
  local d = p:read("l")
  p:close()
  return assert(d, "no source directory")
end)()
local dir = E.scratch()
local src, tree = dir .. "/src", dir .. "/tree"

local function run(argv, env, cwd)
  local r = assert(core.spawn{ argv = argv, env = env, cwd = cwd,
    timeout = 300 })
  return r.status, r.stdout, r.stderr
end

-- The system's environment with Lua's paths set to the tree alone (";;"
-- adds lua5.4's defaults, where Debian's cjson lives).
local function lua_env()
  local env = core.environ()
  env.LUA_PATH = tree .. "/share/lua/5.4/?.lua;" .. tree ..
    "/share/lua/5.4/?/init.lua;;"
  env.LUA_CPATH = tree .. "/lib/lua/5.4/?.so;;"
  env.LUACME_LUA_PATH = nil
  return env
end

t.test("luarocks make installs the module, the Lua files and the hooks",
  function()
  E.must("mkdir -p " .. E.q(src))
  E.must("cd " .. E.q(root) .. " && cp -a CMakeLists.txt README.md core " ..
    "lua hooks " .. E.q(src))
  local st, out, err = run({ "luarocks", "--lua-version", "5.4", "make",
    "--tree", tree, "--deps-mode", "none",
    "lua/luacme-0.1.0-1.rockspec" }, nil, src)
  t.eq(st, 0, out .. err)
  for _, f in ipairs({ "/lib/lua/5.4/luacme/core.so",
    "/share/lua/5.4/luacme/init.lua", "/share/lua/5.4/luacme/client.lua",
    "/share/lua/5.4/luacme/site.lua",
    "/share/lua/5.4/luacme/builtin-hooks/webroot.lua",
    "/share/lua/5.4/luacme/builtin-hooks/dns-01/rfc2136.lua" }) do
    t.ok(core.stat(tree .. f), "installed: " .. f)
  end
end)

t.test("lua5.4 loads luacme.core, luacme, luacme.hooks and luacme.dns " ..
  "from the tree", function()
  local probe = [[
    local core = require "luacme.core"
    local luacme = require "luacme"
    local hooks = require "luacme.hooks"
    local dns = require "luacme.dns"
    assert(package.searchpath("luacme.core", package.cpath):find(
      os.getenv("TREE"), 1, true), "core.so from the tree")
    assert(#core.sha256("abc") == 32)
    assert(type(luacme.client) == "function" and type(dns.query) == "function")
    local names = {}
    for _, h in ipairs(hooks.list_builtin()) do names[#names + 1] = h.name end
    table.sort(names)
    print(core.VERSION .. " " .. table.concat(names, ","))
  ]]
  local env = lua_env()
  env.TREE = tree
  local st, out, err = run({ "lua5.4", "-e", probe }, env, dir)
  t.eq(st, 0, out .. err)
  t.match(out, "webroot")
  t.match(out, "rfc2136")
  t.match(out, "tls%-alpn")
end)

local function check_chain(pem, name)
  local certs = assert(require("luacme.util").pem_certs(pem))
  t.ok(#certs >= 2, "leaf and chain")
  t.eq(E.list_str(E.sans(certs[1])), E.list_str(E.dns_sans({ name })))
end

t.test("examples/library.lua issues a certificate under lua5.4 and under " ..
  "luacme run", function()
  local example = root .. "/examples/library.lua"
  local a, b = E.name("lib"), E.name("lib")
  local st, out, err = run({ "lua5.4", example, E.env.directory,
    E.env.webroot, a, E.env.ca_file }, lua_env(), dir)
  t.eq(st, 0, out .. err)
  check_chain(out, a)
  st, out, err = run({ L.exe, "run", example, E.env.directory,
    E.env.webroot, b, E.env.ca_file }, nil, dir)
  t.eq(st, 0, out .. err)
  check_chain(out, b)
end)
