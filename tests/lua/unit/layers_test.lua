-- The Lua modules form layers (lua/luacme/README.md): a module requires
-- only modules of lower layers (or its own), never one above it, and
-- there is no require cycle. Read from the sources' require calls, so a
-- new upward edge or a new module left out of the picture fails here.
local t = require "testlib"
local core = require "luacme.core"

-- Top to bottom; the same picture as lua/luacme/README.md.
local LAYERS = {
  { "cli" },
  { "manage", "import" },
  { "certs" },
  { "accounts" },
  { "luacme" },
  { "issuance" },
  { "hooks", "renew", "output", "state", "dns", "responders" },
  { "client" },
  { "challenge", "store" },
  { "util", "ident", "errors", "sched" },
  { "core", "site", "cjson", "cjson.safe" },
}

local rank = {}
for i, layer in ipairs(LAYERS) do
  for _, m in ipairs(layer) do rank[m] = i end
end

local function short(name)
  if name == "luacme" or name:sub(1, 7) ~= "luacme." then return name end
  return name:sub(8)
end

-- The modules a source requires: require "x", require("x"),
-- pcall(require, "x"), outside comments.
local function requires(src)
  local out, seen = {}, {}
  for line in src:gmatch("[^\n]*") do
    local code = line:gsub("%-%-.*$", "")
    for _, pat in ipairs({ 'require%s*%(?%s*"([%w%._]+)"',
      'pcall%(require,%s*"([%w%._]+)"' }) do
      for m in code:gmatch(pat) do
        m = short(m)
        if not seen[m] then
          seen[m] = true
          out[#out + 1] = m
        end
      end
    end
  end
  return out
end

local function modules()
  local dir = "lua/luacme"
  local out = {}
  for _, f in ipairs(assert(core.listdir(dir))) do
    local base = f:match("^(.+)%.lua$")
    if base then
      out[base == "init" and "luacme" or base] =
        assert(core.read_file(dir .. "/" .. f))
    end
  end
  return out
end

t.test("every module has a layer and requires none above it", function()
  local mods = modules()
  local edges = 0
  for name, src in pairs(mods) do
    t.ok(rank[name], "lua/luacme/" .. name .. " has a layer in the picture")
    for _, dep in ipairs(requires(src)) do
      edges = edges + 1
      t.ok(rank[dep], name .. " requires " .. dep .. ", which has no layer")
      if rank[name] and rank[dep] then
        t.ok(rank[dep] >= rank[name], name .. " requires " .. dep ..
          ", a module above it")
      end
    end
  end
  t.ok(edges > 40, "the require calls were found (" .. edges .. ")")
end)

t.test("no require cycle", function()
  local mods = modules()
  local graph = {}
  for name, src in pairs(mods) do graph[name] = requires(src) end
  local state = {}
  local function visit(n, path)
    if state[n] == "done" then return end
    t.ok(state[n] ~= "open", "require cycle: " ..
      table.concat(path, " -> ") .. " -> " .. n)
    if state[n] == "open" then return end
    state[n] = "open"
    path[#path + 1] = n
    for _, d in ipairs(graph[n] or {}) do visit(d, path) end
    path[#path] = nil
    state[n] = "done"
  end
  for n in pairs(graph) do visit(n, {}) end
end)

t.test("the checker sees an upward edge and a cycle", function()
  local deps = requires('local m = require "luacme.manage"\n' ..
    '-- require "luacme.cli" in a comment\n' ..
    'local ok, s = pcall(require, "luacme.site")\nrequire("luacme")\n')
  t.eq(table.concat(deps, ","), "manage,site,luacme")
  t.ok(rank.manage < rank.client, "manage is above client")
end)
