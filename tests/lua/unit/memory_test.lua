-- What the executable does to keep the peak RSS of a command down
-- (issue 11): embedded modules are loaded without their debug
-- information (a quarter of their resident size), and GnuTLS (pulled in by
-- Debian's libcurl, never used by us) skips its load-time
-- initialisation.
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

t.test("embedded modules load in less memory than the code with its lines",
  function()
  -- the code with its lines: the tree's files, whatever the build
  -- embeds (minified text or bytecode)
  local site = require "luacme.site"
  local r = assert(run_without_disk((([[
    local root = @ROOT@
    local site = require "luacme.site"
    local names, texts = {}, {}
    for _, p in ipairs(site.embedded_list()) do
      local m = p:match("^lua/(luacme/[%w_]+)%.lua$")
      if m and not package.loaded[m:gsub("/", ".")] then
        names[#names + 1] = m:gsub("/", ".")
        local f = assert(io.open(root .. "/" .. p))
        texts[#texts + 1] = f:read("a")
        f:close()
      end
    end
    assert(#names >= 10, "modules left to load: " .. #names)
    -- each module alone (what a module's strings cost is then its own)
    local function cost(f)
      collectgarbage() collectgarbage()
      local before = collectgarbage("count")
      local keep = f()
      collectgarbage() collectgarbage()
      local kb = collectgarbage("count") - before
      assert(keep)
      return kb
    end
    -- the embedded searcher (the last one) loads a module as require
    -- does, without running it
    local searcher = package.searchers[#package.searchers]
    local with_lines, required = 0, 0
    for i, n in ipairs(names) do
      with_lines = with_lines + cost(function()
        return assert(load(texts[i], "=" .. n, "t"))
      end)
      required = required + cost(function()
        local f = searcher(n)
        assert(type(f) == "function", n)
        return f
      end)
    end
    io.write(string.format("%.0f %.0f", with_lines, required))
  ]]):gsub("@ROOT@", function() return ("%q"):format(site.root) end))))
  t.eq(r.status, 0, r.stderr)
  local with_lines, required = r.stdout:match("^(%d+) (%d+)$")
  with_lines, required = tonumber(with_lines), tonumber(required)
  t.ok(with_lines, r.stdout)
  -- measured: 0.77 (402 KB against 525 KB for the modules not loaded
  -- at start); 1 if the lines were kept
  t.ok(required < with_lines * 0.85,
    ("required %d KB, the code with its lines %d KB"):format(required,
      with_lines))
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
