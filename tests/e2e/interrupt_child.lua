-- Run by interrupt_test.lua as its own luacme process:
--   luacme run tests/e2e/interrupt_child.lua MARKER
-- Starts an issuance through client:issue whose solver, once every
-- challenge file is in the webroot, creates MARKER and then waits (at
-- most 30 s) for the signal the parent sends.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local E = require "e2e"
local core = require "luacme.core"

local marker = assert(arg[1], "usage: interrupt_child.lua MARKER")
local c = E.account()
local s = E.webroot_solver()
local deploy = s.deploy
local n = 0
s.deploy = function(ch)
  local ok, err = deploy(ch)
  n = n + 1
  if n == 3 then
    E.writefile(marker, "deployed\n")
    for _ = 1, 300 do core.sleep(0.1) end
    error("no signal came")
  end
  return ok, err
end
local r, err = E.lib_issue(c, E.names("sig", 3), s)
print("issue returned", r, err)
return 0
