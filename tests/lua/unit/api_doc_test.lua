-- The API reference (lua/doc/*.md) against the modules as loaded: every
-- exported name of luacme, luacme.core, luacme.hooks and luacme.dns, the
-- client's public methods and the methods of the core's objects (key,
-- HTTP client, responder, lock) and of a hook session must have an
-- entry, and every entry must name something that exists. Read from the
-- live tables, so a new export without docs, or docs left behind by a
-- removed one, fails here.
--
-- An entry is a "### " heading naming it exactly: "### core.csr(spec)",
-- "### client:accept(challenge)", "### dns.OPTIONS". A value that is no
-- function (a constant) may instead be a row of a table whose first cell
-- is the name in backticks: "| `acme.STATUS_VALID` | `"valid"` |"; a
-- second cell starting with a backtick is its value, checked too. A function's entry
-- holds a ```lua example, which must at least compile.
local t = require "testlib"
local acme = require "luacme"
local core = require "luacme.core"
local hooks = require "luacme.hooks"
local dns = require "luacme.dns"
local client_mod = require "luacme.client"

-- Tables exported by a module whose members are not listed on the page
-- (acme.core is luacme.core, documented in core.md under core.).
local OPAQUE = { ["acme.core"] = true }

local function registry_methods(mt_name)
  local mt = debug.getregistry()[mt_name]
  assert(type(mt) == "table", "no metatable " .. mt_name)
  return mt.__index
end

-- prefix, separator, the table, and whether "_" names are private.
local PAGES = {
  { file = "lua/doc/luacme.md", objects = {
    { prefix = "acme", sep = ".", tbl = acme },
    { prefix = "client", sep = ":", tbl = client_mod.Client, methods = true },
  } },
  { file = "lua/doc/core.md", objects = {
    { prefix = "core", sep = ".", tbl = core },
    { prefix = "key", sep = ":", tbl = registry_methods("luacme.key"),
      methods = true },
    { prefix = "http", sep = ":", tbl = registry_methods("luacme.http"),
      methods = true },
    { prefix = "responder", sep = ":",
      tbl = registry_methods("luacme.responder"), methods = true },
    { prefix = "lock", sep = ":", tbl = registry_methods("luacme.lock"),
      methods = true },
  } },
  { file = "lua/doc/hooks.md", objects = {
    { prefix = "hooks", sep = ".", tbl = hooks },
    { prefix = "session", sep = ":",
      tbl = getmetatable(hooks.session(function() end)).__index,
      methods = true },
  } },
  { file = "lua/doc/dns.md", objects = {
    { prefix = "dns", sep = ".", tbl = dns },
  } },
}

-- name -> value of everything a page must document.
local function exported(page)
  local want = {}
  for _, o in ipairs(page.objects) do
    for k, v in pairs(o.tbl) do
      if type(k) == "string" and not k:find("^_") and
        (not o.methods or type(v) == "function") then
        local name = o.prefix .. o.sep .. k
        want[name] = v
        -- A sub-table of functions (acme.errors, acme.ident) is API too.
        if type(v) == "table" and not o.methods and not OPAQUE[name] then
          for k2, v2 in pairs(v) do
            if type(k2) == "string" and not k2:find("^_") then
              want[name .. "." .. k2] = v2
            end
          end
        end
      end
    end
  end
  return want
end

-- The entries of a page: name -> { line=, heading=, kind = "heading" |
-- "row", value = (second cell of a row), body = (a heading's text up to
-- the next heading) }, and the list of problems found while parsing.
local function entries(text)
  local out, problems = {}, {}
  local cur
  local n = 0
  local in_code = false
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if line:find("^```") then in_code = not in_code end
    local h = not in_code and line:match("^###%s+(.-)%s*$")
    if h then
      local name = h:match("^([%a_][%w_]*[.:][%a_][%w_.]*)")
      if not name then
        problems[#problems + 1] = "line " .. n .. ": heading '" .. h ..
          "' names no API entry (### is for entries only)"
        cur = nil
      else
        if out[name] then
          problems[#problems + 1] = "line " .. n .. ": " .. name ..
            " has two entries"
        end
        cur = { line = n, heading = h, kind = "heading", body = {} }
        out[name] = cur
      end
    elseif not in_code and line:find("^##?%s") then
      cur = nil
    else
      if cur then cur.body[#cur.body + 1] = line end
      local rname, rest = line:match("^|%s*`([%a_][%w_]*%.[%w_.]+)`%s*|(.*)$")
      if rname and not in_code then
        if out[rname] then
          problems[#problems + 1] = "line " .. n .. ": " .. rname ..
            " has two entries"
        end
        local cell = rest:match("^%s*(.-)%s*|")
        out[rname] = { line = n, kind = "row", value = cell }
      end
    end
  end
  for _, e in pairs(out) do
    if e.body then e.body = table.concat(e.body, "\n") end
  end
  return out, problems
end

local function read(path)
  local s, err = core.read_file(path)
  t.ok(s, path .. ": " .. tostring(err))
  return s
end

local function sorted(set)
  local out = {}
  for k in pairs(set) do out[#out + 1] = k end
  table.sort(out)
  return out
end

-- The value cell of a constant's row as the value itself shows it.
local function shown(v)
  if type(v) == "string" then return "`" .. string.format("%q", v) .. "`" end
  if type(v) == "number" then return "`" .. tostring(v) .. "`" end
  return nil
end

for _, page in ipairs(PAGES) do
  t.test(page.file .. " has an entry for every export and no stale one",
    function()
      local want = exported(page)
      local have, problems = entries(read(page.file))
      for _, name in ipairs(sorted(want)) do
        local e = have[name]
        local v = want[name]
        if not e then
          problems[#problems + 1] = name .. " (a " .. type(v) ..
            ") has no entry"
        elseif type(v) == "function" and e.kind ~= "heading" then
          problems[#problems + 1] = name .. " is a function: it needs a " ..
            "### entry, not a table row (line " .. e.line .. ")"
        elseif e.kind == "row" and e.value and e.value:find("^`") and
          shown(v) and e.value ~= shown(v) then
          problems[#problems + 1] = name .. " is " .. shown(v) ..
            ", the page says " .. e.value .. " (line " .. e.line .. ")"
        end
      end
      for _, name in ipairs(sorted(have)) do
        if want[name] == nil then
          problems[#problems + 1] = "line " .. have[name].line .. ": " ..
            name .. " is documented but does not exist"
        end
      end
      t.ok(#problems == 0, page.file .. ":\n  " ..
        table.concat(problems, "\n  "))
    end)

  t.test(page.file .. ": every function entry has arguments and an " ..
    "example that compiles", function()
      local want = exported(page)
      local have = entries(read(page.file))
      local problems = {}
      for _, name in ipairs(sorted(have)) do
        local e = have[name]
        if type(want[name]) == "function" then
          if not e.heading:find("^" .. name:gsub("%p", "%%%0") .. "%(") then
            problems[#problems + 1] = name .. ": the heading shows no " ..
              "argument list: " .. e.heading
          end
          local code = e.body:match("```lua\n(.-)\n```")
          if not code then
            problems[#problems + 1] = name .. ": no ```lua example"
          else
            local ok, err = load(code, "=" .. name, "t")
            if not ok then
              problems[#problems + 1] = name .. ": example: " .. err
            end
          end
        end
      end
      t.ok(#problems == 0, page.file .. ":\n  " ..
        table.concat(problems, "\n  "))
    end)
end

-- The parameters a heading shows: "(a, b[, c])" gives { "a", "b", "c" }
-- and whether "..." is among them.
local function heading_params(heading)
  local inner = heading:match("%((.*)%)")
  local out, vararg = {}, false
  for p in (inner or ""):gsub("[%[%]]", ""):gmatch("[^,]+") do
    p = p:match("^%s*(.-)%s*$")
    if p == "..." then vararg = true elseif p ~= "" then out[#out + 1] = p end
  end
  return out, vararg
end

-- A Lua function's parameter count (self not counted for a method) and
-- whether it takes "...": what the heading must show, so an argument
-- added or dropped in the code shows up here.
local function lua_params(f, method)
  local info = debug.getinfo(f, "u")
  local n = info.nparams
  -- A method's first parameter is the receiver (self, or c for a plain
  -- function installed as a method, as client:issue is).
  if method and n > 0 then n = n - 1 end
  return n, info.isvararg
end

for _, page in ipairs(PAGES) do
  t.test(page.file .. ": headings show as many arguments as the Lua " ..
    "functions take", function()
      local want = exported(page)
      local have = entries(read(page.file))
      local problems = {}
      for _, name in ipairs(sorted(have)) do
        local f = want[name]
        if type(f) == "function" and debug.getinfo(f, "S").what == "Lua" then
          local n, vararg = lua_params(f, name:find(":", 1, true) ~= nil)
          local shown_params, shown_vararg = heading_params(have[name].heading)
          if #shown_params ~= n or shown_vararg ~= vararg then
            problems[#problems + 1] = name .. " takes " .. n ..
              " argument(s)" .. (vararg and " and ..." or "") ..
              "; the heading shows " .. have[name].heading
          end
        end
      end
      t.ok(#problems == 0, page.file .. ":\n  " ..
        table.concat(problems, "\n  "))
    end)
end

t.test("the index links every page and the project README links it",
  function()
    local index = read("lua/doc/README.md")
    for _, page in ipairs(PAGES) do
      local base = page.file:match("([^/]+)$")
      t.ok(index:find("(" .. base .. ")", 1, true),
        "lua/doc/README.md links " .. base)
    end
    t.ok(read("README.md"):find("lua/doc/", 1, true),
      "README.md points to lua/doc/")
  end)

-- Anchors as GitHub makes them from headings: lower case, punctuation
-- but "-" and "_" dropped, spaces as "-", a repeated one suffixed -1, -2.
local function anchors(text)
  local out, seen = {}, {}
  local in_code = false
  for line in text:gmatch("[^\n]*") do
    if line:find("^```") then in_code = not in_code end
    local h = not in_code and line:match("^#+%s+(.-)%s*$")
    if h then
      local a = h:lower():gsub("[^%w%s_-]", ""):gsub("%s", "-")
      if seen[a] then
        seen[a] = seen[a] + 1
        a = a .. "-" .. seen[a]
      else
        seen[a] = 0
      end
      out[a] = true
    end
  end
  return out
end

t.test("every link between the pages names a file and heading that exist",
  function()
    local files = { "lua/doc/README.md" }
    for _, page in ipairs(PAGES) do files[#files + 1] = page.file end
    local problems = {}
    for _, file in ipairs(files) do
      local text = read(file)
      for target in text:gmatch("%]%(([^)%s]+)%)") do
        if not target:find("^%a+://") then
          local path, frag = target:match("^([^#]*)#?(.*)$")
          local dest = path == "" and file or
            (file:match("^(.*/)") .. path)
          local body = core.read_file(dest)
          if not body then
            problems[#problems + 1] = file .. ": " .. target ..
              ": no file " .. dest
          elseif frag ~= "" and dest:find("%.md$") and
            not anchors(body)[frag] then
            problems[#problems + 1] = file .. ": " .. target ..
              ": no such heading in " .. dest
          end
        end
      end
    end
    t.ok(#problems == 0, table.concat(problems, "\n  "))
  end)

-- The checker itself: a missing entry, a stale one and a wrong constant
-- are each caught (so an empty parse cannot pass by accident).
t.test("the checker finds missing, stale and wrong entries", function()
  local have = entries(table.concat({
    "## Section",
    "### acme.client(opts)",
    "```lua", "### not.a_heading_in_code", "```",
    "| `acme.STATUS_VALID` | `\"valid\"` |",
    "| `acme.STATUS_READY` | `\"wrong\"` |",
    "### acme.gone(x)",
  }, "\n"))
  t.ok(have["acme.client"] and have["acme.client"].kind == "heading")
  t.eq(have["not.a_heading_in_code"], nil, "headings inside code are code")
  t.eq(have["acme.STATUS_VALID"].value, shown(acme.STATUS_VALID))
  t.ok(have["acme.STATUS_READY"].value ~= shown(acme.STATUS_READY))
  local want = exported(PAGES[1])
  t.eq(want["acme.gone"], nil, "acme.gone would be reported stale")
  t.ok(want["acme.domain_ids"], "acme.domain_ids would be reported missing")
  t.ok(want["client:accept"], "client methods are enumerated")
  t.eq(want["client:_send"], nil, "private methods are not")
  t.ok(want["acme.errors.new"], "sub-tables are enumerated")
  t.eq(want["acme.core.csr"], nil, "acme.core is documented as core.")
end)
