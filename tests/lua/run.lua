-- Runs Lua test files inside the luacme executable:
--   luacme run tests/lua/run.lua FILE_test.lua...
-- Ends with "N passed, N failed"; the exit status is 1 on any failure
-- and also when nothing ran.
local dir = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = dir .. "/?.lua;" .. package.path
local t = require "testlib"

local passed, failed = 0, 0
for _, file in ipairs(arg) do
  t.tests = {}
  local chunk, err = loadfile(file)
  if not chunk then
    print("FAIL " .. file .. ": " .. err)
    failed = failed + 1
  else
    local ok, e = xpcall(chunk, debug.traceback)
    if not ok then
      print("FAIL " .. file .. " (loading): " .. tostring(e))
      failed = failed + 1
    end
    for _, tc in ipairs(t.tests) do
      local ok2, e2 = xpcall(tc.fn, function(m)
        return debug.traceback(tostring(m), 2)
      end)
      if ok2 then
        passed = passed + 1
        print("ok   " .. tc.name)
      else
        failed = failed + 1
        print("FAIL " .. tc.name .. ": " .. tostring(e2))
      end
    end
  end
end
for _, d in ipairs(t.tmpdirs) do
  os.execute("rm -rf '" .. d .. "'")
end
print(string.format("%d passed, %d failed", passed, failed))
if failed > 0 or passed == 0 then return 1 end
return 0
