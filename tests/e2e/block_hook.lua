-- A challenge hook for the e2e tests that must catch a run mid-issuance
-- (cli_kill, cli_concurrent, fleet): deploys http-01 into root, writes
-- "deployed TOKEN" to marker, then waits until the file release exists
-- (forever without it); cleanup removes the file and writes the token to
-- MARKER.cleaned. Tests copy it next to their scratch files.
local core = require "luacme.core"
local M = { types = { "http-01" }, options = {
  { name = "root", required = true }, { name = "marker", required = true },
  { name = "release" } } }
function M.deploy(ch, o)
  assert(core.write_file(o.root .. "/.well-known/acme-challenge/" ..
    ch.token, ch.key_authorization, 420))
  assert(core.write_file(o.marker, "deployed " .. ch.token, 420))
  while not (o.release and core.stat(o.release)) do core.sleep(0.05) end
  return true
end
function M.cleanup(ch, o)
  core.unlink(o.root .. "/.well-known/acme-challenge/" .. ch.token)
  assert(core.write_file(o.marker .. ".cleaned", ch.token, 420))
  return true
end
return M
