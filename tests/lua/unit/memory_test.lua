-- What the executable does to keep the peak RSS of a command down
-- (issue 11): the expanded embedded modules are freed by the collector
-- and expanded again when needed, and GnuTLS (pulled in by Debian's
-- libcurl, never used by us) skips its load-time initialisation.
local t = require "testlib"
local core = require "luacme.core"

local exe = assert(os.getenv("LUACME_TEST_BUILD_DIR"), "run under ctest") .. "/luacme"

local function run_without_disk(script, extra_env)
  local dir = t.tmpdir()
  t.writefile(dir .. "/s.lua", script)
  local env = core.environ()
  env.LUACME_LUA_PATH = dir .. "/nothing-here"
  for k, v in pairs(extra_env or {}) do env[k] = v end
  return core.spawn{ argv = t.luacme_argv(exe, "run", dir .. "/s.lua"), env = env }
end

t.test("the expanded modules are freed by the collector, expanded again",
  function()
  local r = assert(run_without_disk([[
    local site = require "luacme.site"
    local core = require "luacme.core"
    if site.embedded_format == "plain" then io.write("plain") return end
    local cache = debug.getregistry()["luacme.embedded"]
    -- two modules the command line has not loaded yet
    local fresh = {}
    for _, p in ipairs(site.embedded_list()) do
      local m = p:match("^lua/(luacme/[%w_]+)%.lua$")
      m = m and m:gsub("/", ".")
      if m and not package.loaded[m] and #fresh < 2 then
        fresh[#fresh + 1] = m
      end
    end
    assert(#fresh == 2, "two modules left to load")
    -- freed at the end of a collection cycle once unused for 50 ms
    local function settle()
      local t0 = core.monotonic()
      while core.monotonic() - t0 < 5 do
        collectgarbage()
        if cache.raw == nil then return core.monotonic() - t0 end
      end
    end
    local waited = settle()
    assert(waited, "freed by the collector")
    require(fresh[1])
    assert(type(cache.raw) == "userdata", "expanded by a require")
    require(fresh[2])
    collectgarbage() collectgarbage()
    assert(type(cache.raw) == "userdata", "kept while modules load")
    waited = settle()
    assert(waited and waited >= 0.04, "freed again, after being idle")
    assert(site.embedded("lua/luacme/util.lua"), "site.embedded too")
    io.write("ok")
  ]]))
  t.eq(r.status, 0, r.stderr)
  t.ok(r.stdout == "ok" or r.stdout == "plain", r.stdout)
end)

-- The dynamic linker's own account of which definition GnuTLS's
-- constructor calls (glibc's LD_DEBUG); only meaningful when the
-- libcurl we link pulls GnuTLS in, as Debian's does.
t.test("GnuTLS binds its init-skip hook to the executable", function()
  local f = assert(io.open("/proc/self/maps"))
  local maps = f:read("a")
  f:close()
  if not maps:find("libgnutls", 1, true) then
    print("  (no GnuTLS in this process: nothing to skip)")
    return
  end
  local env = core.environ()
  local argv = t.luacme_argv(exe, "--version")
  if os.getenv("LUACME_TEST_EMULATOR") then
    -- For the target's loader only: the emulator's own would print its
    -- thousands of bindings first, past what spawn keeps.
    table.insert(argv, 2, "LD_DEBUG=bindings")
    table.insert(argv, 2, "-E")
  else
    env.LD_DEBUG = "bindings"
  end
  local r = assert(core.spawn{ argv = argv, env = env })
  t.eq(r.status, 0, r.stderr)
  t.match(r.stderr, "libgnutls[^\n]* to [^\n]*luacme [^\n]*"
    .. "_gnutls_global_init_skip")
end)
