-- The binary as installed: with no lua/ or hooks/ directory anywhere
-- (LUACME_LUA_PATH names an empty one), a whole `luacme issue` with the
-- built-in webroot hook runs on the modules and hooks compiled into the
-- executable (stripped bytecode in a default build), against Pebble.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local t = require "testlib"
local core = require "luacme.core"
local E = require "e2e"
local L = require "cli_lib"

local empty = E.scratch() .. "/no-lua-here"
assert(core.mkdir_p(empty))
local env = { LUACME_LUA_PATH = empty }

t.test("issue runs on the embedded modules and hooks only", function()
  local state = L.state()
  local name = E.name("embedded")
  local out = L.must(state, { "issue", "-d", name, "--hook", L.webroot(),
    "--agree-tos", "--contact", "embedded@example.test" }, 0, { env = env })
  t.match(out, "issued " .. name:gsub("%p", "%%%0"))
  local pem = assert(E.readfile(state .. "/certs/" .. name .. "/cert.pem"))
  local der = core.pem_decode(pem)
  t.eq(table.concat(E.sans(der), ","), "DNS:" .. name)
  -- the hook came from the binary too
  local st, hooks_out = L.run(nil, { "hooks" }, { env = env })
  t.eq(st, 0, hooks_out)
  t.match(hooks_out, "\nwebroot %(http%-01%)\n")
end)
