-- Issue 9, item 3: a reader opening cert.pem then privkey.pem while
-- `luacme renew --force` installs new sets (each with a new key) never
-- gets a key and certificate that do not match, nor a missing file.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local t = require "testlib"
local E = require "e2e"
local L = require "cli_lib"
local core = require "luacme.core"
local cjson = require "cjson.safe"

local RENEWALS = 6

t.test("a reader during forced renewals sees matching pairs only", function()
  local state = L.state()
  local name = E.name("torn")
  L.must(state, { "issue", "-d", name, "--agree-tos", "--hook",
    L.webroot() })
  local cdir = state .. "/certs/" .. name
  local dir = E.scratch()
  local stop, out = dir .. "/stop", dir .. "/reader.json"
  local p = assert(io.popen(E.q(L.exe) .. " run " ..
    E.q(here .. "/torn_reader.lua") .. " " .. E.q(cdir) .. " " ..
    E.q(stop) .. " " .. E.q(out) .. " >/dev/null 2>&1 & echo $!"))
  local pid = tonumber(p:read("l"))
  p:close()
  local serials = { [L.check_set((L.files(state, name)))] = true }
  local ok, err = pcall(function()
    for _ = 1, RENEWALS do
      L.must(state, { "renew", "--force", name })
      serials[L.check_set((L.files(state, name)))] = true
    end
  end)
  E.writefile(stop, "")
  t.ok(L.wait_exit(pid, 30), "the reader stops")
  if not ok then error(err, 0) end
  local n = 0
  for _ in pairs(serials) do n = n + 1 end
  t.eq(n, RENEWALS + 1, "every renewal installed a new certificate")
  local r = assert(cjson.decode(E.readfile(out) or ""), "reader output")
  io.stderr:write(string.format("torn reads: %d mismatched + %d missing " ..
    "of %d reads during %d renewals\n", r.torn, r.missing, r.reads,
    RENEWALS))
  t.ok(r.reads >= 50, "the reader kept reading: " .. r.reads)
  t.eq(r.torn + r.missing, 0, r.first)
  -- the keys did change, so a mix would have shown
  local names = assert(core.listdir(cdir))
  local gens = 0
  for _, f in ipairs(names) do if f:find("^gen%.") then gens = gens + 1 end end
  t.eq(gens, 2, "the live and the previous generation, nothing stale")
end)
