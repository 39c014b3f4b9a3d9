-- Interrupting an issuance (SIGINT, SIGTERM) while challenges are
-- deployed: the deployed challenge files are removed by the library's
-- cleanup, and the process exits with 128 + the signal number.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local t = require "testlib"
local E = require "e2e"

-- The luacme executable running this file.
local function exe()
  local b = os.getenv("LUACME_TEST_BUILD_DIR")
  if b and b ~= "" then return b .. "/luacme" end
  return (E.must("readlink /proc/$PPID/exe"):gsub("%s+$", ""))
end

-- Start the child, wait (bounded) for its marker, send sig, wait for it.
-- Returns the exit status and the child's output.
local function run_and_signal(sig)
  local d = E.scratch()
  local marker, log = d .. "/deployed", d .. "/child.log"
  local script = table.concat({
    E.q(exe()) .. " run " .. E.q(here .. "/interrupt_child.lua") .. " "
      .. E.q(marker) .. " >" .. E.q(log) .. " 2>&1 &",
    "pid=$!",
    "i=0",
    "while [ ! -e " .. E.q(marker) .. " ] && [ $i -lt 400 ]; do",
    "  sleep 0.05; i=$((i + 1))",
    "done",
    "[ -e " .. E.q(marker) .. " ] || echo 'no marker'",
    "ls -A " .. E.q(E.env.webroot .. "/.well-known/acme-challenge")
      .. " | wc -l | sed 's/^/files=/'",
    "kill -" .. sig .. " $pid",
    "wait $pid",
    "echo rc=$?",
  }, "\n")
  local out = E.must("sh -c " .. E.q(script))
  return tonumber(out:match("rc=(%d+)")), out, E.readfile(log) or ""
end

for _, case in ipairs({ { "INT", 2 }, { "TERM", 15 } }) do
  t.test("SIG" .. case[1] .. " during deploy cleans up", function()
    local rc, out, child = run_and_signal(case[1])
    t.ok(not out:find("no marker"), "the child deployed: " .. child)
    t.match(out, "files=3", "three challenge files were deployed")
    t.eq(rc, 128 + case[2], "exit status; child said: " .. child)
    t.match(child, "interrupted")
    t.eq(#E.webroot_files(), 0, "the deployed files were removed")
  end)
end
