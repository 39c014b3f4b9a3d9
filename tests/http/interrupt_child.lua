-- Run by http_test.lua in its own luacme process, because SIGINT leaves
-- luacme_interrupted set for the rest of the process:
--   luacme run interrupt_child.lua BASE_URL CA_FILE
-- The server's /slow endpoint sends SIGINT to this process once the
-- request has arrived, so the signal lands during the transfer; the
-- progress callback must then abort it long before the server answers.
local core = require "luacme.core"
local base, ca = arg[1], arg[2]

local p = assert(io.popen("echo $PPID"))
local pid = p:read("l")
p:close()

local c = core.http{ ca_file = ca, timeout = 60 }
local res
-- The signal handler installs its raising hook on the main thread only;
-- in a coroutine the request's results are kept, and the hook raises
-- once resume returns, inside the pcall.
local co = coroutine.create(function()
  res = table.pack(c:request{ url = base .. "/slow?s=30&kill=" .. pid })
end)
local t0 = core.monotonic()
local ok, err = pcall(coroutine.resume, co)
local dt = core.monotonic() - t0

print("kind=" .. tostring(res and res[3]))
print("message=" .. tostring(res and res[2]))
print("elapsed=" .. string.format("%.3f", dt))
print("raised=" .. (ok and "no" or tostring(type(err) == "table" and err.kind)))
-- A request made after the interrupt (a hook's cleanup while Ctrl-C
-- unwinds) still goes through: only a signal during a request aborts it.
local status = c:request{ url = base .. "/echo" }
print("again=" .. tostring(status))
c:close()
return 0
