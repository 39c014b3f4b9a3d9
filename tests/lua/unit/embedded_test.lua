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
-- as the build made it. "source" (the default) embeds the text minified:
-- it must compile to the very same code as the file, on the same lines;
-- "bytecode" embeds the file compiled and stripped; "plain" the text.
local function stripped(text, rel)
  return string.dump(assert(load(text, "=" .. rel, "t")), true)
end

local function lines(text)
  local n = 1
  for _ in text:gmatch("\n") do n = n + 1 end
  return n
end

t.test("embedded chunks are the tree's files, compiled as built", function()
  local n, small, big = 0, 0, 0
  for _, rel in ipairs(site.embedded_list()) do
    local src = t.readfile(site.root .. "/" .. rel)
    local got = site.embedded(rel)
    if site.embedded_format == "bytecode" then
      t.ok(got == stripped(src, rel), rel .. " differs from the tree's")
    else
      t.ok(stripped(got, rel) == stripped(src, rel),
        rel .. " compiles to other code than the tree's")
      t.eq(lines(got), lines(src), rel .. ": lines")
      small, big = small + #got, big + #src
    end
    n = n + 1
  end
  t.ok(n >= 10, "expected the module files, saw " .. n)
  t.eq(site.embedded("lua/luacme/no-such.lua"), nil)
  local cache = t.readfile(os.getenv("LUACME_TEST_BUILD_DIR") ..
    "/CMakeCache.txt")
  if cache:match("LUACME_EMBED:STRING=(%w+)") == "source" then
    -- comments and indentation gone: a third of the text and more
    t.ok(small < big * 2 / 3, ("minified %d of %d bytes"):format(small, big))
  end
end)

t.test("the release build embeds minified source by default", function()
  local cache = t.readfile(os.getenv("LUACME_TEST_BUILD_DIR") ..
    "/CMakeCache.txt")
  local want = cache:match("LUACME_EMBED:STRING=(%w+)")
  t.eq(site.embedded_format, want == "plain" and "source" or want)
  if want == "bytecode" then
    t.eq(site.embedded_mode, "b")
    t.eq(site.embedded("lua/luacme/init.lua"):sub(1, 4), "\27Lua")
  else
    t.eq(site.embedded_mode, "t")
  end
  -- without the tree, modules load without their debug information
  -- (half their resident size): no source lines, whatever the format
  local r = assert(run_without_disk([[
    local client = require "luacme.client"
    local info = debug.getinfo(client.new, "SL")
    io.write(info.source, " ", tostring(next(info.activelines or {})))
  ]]))
  t.eq(r.status, 0, r.stderr)
  t.eq(r.stdout, "=? nil")
end)

-- Commands that never go on the network do not load the protocol
-- client: a client.lua that cannot load does not stop --version.
t.test("--version starts without the protocol client", function()
  local dir = t.tmpdir()
  assert(core.mkdir(dir .. "/lua"))
  assert(core.mkdir(dir .. "/lua/luacme"))
  t.writefile(dir .. "/lua/luacme/client.lua", 'error("client loaded")')
  local env = core.environ()
  env.LUACME_LUA_PATH = dir
  local r = assert(core.spawn{ argv = t.luacme_argv(exe, "--version"),
    env = env })
  t.eq(r.status, 0, r.stderr)
  t.match(r.stdout, "^luacme ")
  -- while a script that needs it gets the poisoned file
  t.writefile(dir .. "/s.lua", 'require "luacme.client"')
  r = assert(core.spawn{ argv = t.luacme_argv(exe, "run", dir .. "/s.lua"),
    env = env })
  t.ok(r.status ~= 0)
  t.match(r.stderr, "client loaded")
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
