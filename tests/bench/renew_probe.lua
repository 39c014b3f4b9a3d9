-- The measured side of the many-certificates benchmark: a recipe run as
--   luacme --state S --directory D --ca-bundle C run renew_probe.lua P
-- renews every stored certificate (--force) with m:renew{parallel = P}
-- (the recipe API of renew --parallel) while a second task of the same
-- scheduler counts this process's open file descriptors every 20 ms.
-- Prints one line of figures: renewed, failed, seconds, fds before /
-- most / after, peak RSS (VmHWM).
local core = require "luacme.core"
local sched = require "luacme.sched"

local parallel = tonumber(arg[1]) or 4

local function fds()
  return #(core.listdir("/proc/self/fd") or {})
end

local function vmhwm()
  local f = io.open("/proc/self/status")
  if not f then return "?" end
  local s = f:read("a")
  f:close()
  return s:match("VmHWM:%s*(%d+) kB") or "?"
end

local m <close> = require("luacme.cli").open({ "-q",
  table.unpack(arg, 2) })
local before, most, done = fds(), 0, false
local t0 = core.monotonic()
local res, err
sched.all({
  function()
    res, err = m:renew{ force = true, parallel = parallel }
    done = true
  end,
  function()
    while not done do
      most = math.max(most, fds())
      sched.sleep(0.02)
    end
  end,
})
local took = core.monotonic() - t0
collectgarbage("collect")
if not res then error(tostring(err), 0) end
for i, e in ipairs(res.errors) do
  if i > 3 then break end
  io.stderr:write("renew_probe: ", e.name, ": ", tostring(e.err), "\n")
end
print(string.format("renewed=%d failed=%d seconds=%.3f fds_before=%d " ..
  "fds_max=%d fds_after=%d rss_kb=%s", #res.renewed, #res.failed, took,
  before, most, fds(), vmhwm()))
