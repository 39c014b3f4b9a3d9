-- A reader as a web server reloading is one: opens cert.pem, then
-- privkey.pem, by the paths users configure, and checks that they
-- belong together; again and again until STOPFILE exists (at most 300
-- s). Writes {"reads":N,"torn":N,"missing":N,"first":why} to OUTFILE.
--   luacme run tests/e2e/torn_reader.lua CERTDIR STOPFILE OUTFILE
local core = require "luacme.core"
local cjson = require "cjson"

local dir, stopfile, outfile = ...
assert(dir and stopfile and outfile, "usage: CERTDIR STOPFILE OUTFILE")

local reads, torn, missing, first = 0, 0, 0, nil
local deadline = core.monotonic() + 300
while core.monotonic() < deadline do
  local c = io.open(dir .. "/cert.pem", "rb")
  local k = io.open(dir .. "/privkey.pem", "rb")
  reads = reads + 1
  if not c or not k then
    missing = missing + 1
    first = first or ((c and "privkey.pem" or "cert.pem") .. " missing")
  else
    local cert, keypem = c:read("a"), k:read("a")
    local key = core.key_load(keypem)
    if not key or not core.cert_matches_key(cert, key) then
      torn = torn + 1
      first = first or "cert.pem and privkey.pem do not match"
    end
    if key then key:close() end
  end
  if c then c:close() end
  if k then k:close() end
  -- As fast as it can: a window in which the files do not belong
  -- together, however short, is met (the layout before generations
  -- showed 11 to 280 torn or missing reads of ~1500 in three runs).
  local s = io.open(stopfile)
  if s then
    s:close()
    break
  end
end
local f = assert(io.open(outfile, "w"))
f:write(cjson.encode({ reads = reads, torn = torn, missing = missing,
  first = first or "" }))
f:close()
