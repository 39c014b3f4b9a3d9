-- The Lua modules and built-in hooks are compiled into the executable:
-- with no module directory on disk, a run still finds all of them.
local t = require "testlib"
local core = require "luacme.core"
local site = require "luacme.site"

local exe = assert(os.getenv("LUACME_TEST_BUILD_DIR"), "run under ctest") .. "/luacme"

local function run_without_disk(script)
  local dir = t.tmpdir()
  t.writefile(dir .. "/s.lua", script)
  local env = core.environ()
  env.LUACME_LUA_PATH = dir .. "/nothing-here"
  return core.spawn{ argv = t.luacme_argv(exe, "run", dir .. "/s.lua"), env = env }
end

t.test("every module under lua/ and hooks/ is embedded", function()
  local have = {}
  for _, p in ipairs(site.embedded_list()) do have[p] = true end
  local ok, out = t.sh("cd '" .. site.root .. "' && ls lua/luacme/*.lua hooks/*.lua")
  t.ok(ok, out)
  local n = 0
  for p in out:gmatch("[^\n]+") do
    t.ok(have[p], p .. " is not embedded")
    n = n + 1
  end
  t.ok(n >= 10, "expected the module files, saw " .. n)
end)

t.test("modules load from the binary when the disk has none", function()
  local r = assert(run_without_disk([[
    local acme = require "luacme"
    local c = require "luacme.client"
    assert(package.searchpath("luacme.client", package.path) == nil)
    io.write(acme.LETSENCRYPT, " ", type(c.new))
  ]]))
  t.eq(r.status, 0, r.stderr)
  t.eq(r.stdout, "https://acme-v02.api.letsencrypt.org/directory function")
end)

-- What an installed binary runs: each embedded chunk is the tree's file
-- as the build compiled it (stripped bytecode by default), so it must
-- equal the tree's file compiled here; a "source" or "plain" build
-- embeds the text itself.
t.test("embedded chunks are the tree's files, compiled as built", function()
  local n = 0
  for _, rel in ipairs(site.embedded_list()) do
    local src = t.readfile(site.root .. "/" .. rel)
    local want = src
    if site.embedded_format == "bytecode" then
      want = string.dump(assert(load(src, "=" .. rel, "t")), true)
    end
    t.ok(site.embedded(rel) == want, rel .. " differs from the tree's")
    n = n + 1
  end
  t.ok(n >= 10, "expected the module files, saw " .. n)
  t.eq(site.embedded("lua/luacme/no-such.lua"), nil)
end)

t.test("the release build embeds stripped bytecode", function()
  local cache = t.readfile(os.getenv("LUACME_TEST_BUILD_DIR") ..
    "/CMakeCache.txt")
  local want = cache:match("LUACME_EMBED:STRING=(%w+)")
  t.eq(site.embedded_format, want == "plain" and "source" or want)
  if want ~= "bytecode" then return end
  t.eq(site.embedded_mode, "b")
  t.eq(site.embedded("lua/luacme/init.lua"):sub(1, 4), "\27Lua")
  -- without the tree, modules are those chunks: no source lines
  local r = assert(run_without_disk([[
    local client = require "luacme.client"
    local info = debug.getinfo(client.new, "SL")
    io.write(info.source, " ", tostring(next(info.activelines or {})))
  ]]))
  t.eq(r.status, 0, r.stderr)
  t.eq(r.stdout, "=? nil")
end)

t.test("a missing module still fails with a clear message", function()
  local r = assert(run_without_disk([[require "luacme.no_such_module"]]))
  t.ok(r.status ~= 0)
  t.match(r.stderr, "no embedded module 'luacme/no_such_module'")
end)

t.test("built-in hooks load from the binary when the disk has none", function()
  local r = assert(run_without_disk([[
    local hooks = require "luacme.hooks"
    local h = assert(hooks.load("webroot:root=/tmp"))
    local names = {}
    for _, b in ipairs(hooks.list_builtin()) do
      assert(not b.error, b.error)
      names[#names + 1] = b.name .. "=" .. b.file
    end
    io.write(h.types[1], " ", table.concat(names, " "))
  ]]))
  t.eq(r.status, 0, r.stderr)
  t.match(r.stdout, "^http%-01 ")
  t.match(r.stdout, "webroot=%[embedded%]/hooks/webroot%.lua")
  t.match(r.stdout, "exec=%[embedded%]/hooks/exec%.lua")
end)
