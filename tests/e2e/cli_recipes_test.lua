-- The examples run against the test CA, as their header comments say:
-- examples/webroot.lua, examples/wildcard-dns.lua (dns-01 through the
-- challtestsrv hook), examples/renew-all.lua with its deploy step, and
-- the issuing part of examples/quickstart.sh (the README's main job; its
-- outer part only installs, builds and starts this same harness).
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local t = require "testlib"
local core = require "luacme.core"
local E = require "e2e"
local L = require "cli_lib"

local root = here .. "/../.."
local state = L.state()

local function recipe(name, args, want)
  local full = { "run", root .. "/examples/" .. name }
  for _, a in ipairs(L.global(state)) do full[#full + 1] = a end
  for _, a in ipairs(args) do full[#full + 1] = a end
  return L.must(nil, full, want or 0)
end

t.test("examples/webroot.lua issues into the state, then has nothing to do",
  function()
  local a, b = E.name("rw"), E.name("rw")
  local out = recipe("webroot.lua", { "--agree-tos", E.env.webroot, a, b })
  t.match(out, "issued " .. a:gsub("%p", "%%%0"))
  t.match(out, "certificate: " .. (state .. "/certs/" .. a ..
    "/fullchain.pem"):gsub("%p", "%%%0"))
  local cur = L.files(state, a)
  L.check_set(cur)
  local certs = assert(require("luacme.util").pem_certs(cur["cert.pem"]))
  t.eq(E.list_str(E.sans(certs[1])), E.list_str(E.dns_sans({ a, b })))
  out = recipe("webroot.lua", { E.env.webroot, a, b }, 2)
  t.match(out, "nothing to do")
  t.eq(#E.webroot_files(), 0)
end)

t.test("examples/wildcard-dns.lua: a name and its wildcard over dns-01",
  function()
  local d = E.name("wild")
  local outdir = E.scratch() .. "/out"
  local full = { "run", root .. "/examples/wildcard-dns.lua",
    "--directory", E.env.directory, "--ca-bundle", E.env.ca_file, d, outdir }
  local out = L.must(nil, full, 0, { env = {
    LUACME_E2E_CHALLTESTSRV = E.env.challtestsrv } })
  t.match(out, "%*%." .. d:gsub("%p", "%%%0") .. ": dns%-01 deployed via " ..
    "challtestsrv")
  t.match(out, "issued ")
  local pem = assert(E.readfile(outdir .. "/fullchain.pem"))
  local certs = assert(require("luacme.util").pem_certs(pem))
  t.eq(E.list_str(E.sans(certs[1])), E.list_str(E.dns_sans({ d, "*." .. d })))
  local ok, msg = E.verify_chain(certs, E.root_pem(0))
  t.ok(ok, msg)
  t.eq(core.stat(outdir .. "/privkey.pem").mode & 511, 384)
  t.eq(#E.dns_txt("_acme-challenge." .. d .. "."), 0, "TXT cleaned up")
  -- The account key is kept and reused by the next run.
  local key = E.readfile(outdir .. "/account.key")
  L.must(nil, full, 0, { env = {
    LUACME_E2E_CHALLTESTSRV = E.env.challtestsrv } })
  t.eq(E.readfile(outdir .. "/account.key"), key)
end)

t.test("examples/renew-all.lua: one deploy step for all renewed", function()
  local mark = E.scratch() .. "/deployed"
  -- Nothing due: no deploy step.
  local out = recipe("renew-all.lua", { "--", "sh", "-c",
    "echo $LUACME_RENEWED >> " .. mark }, 2)
  t.match(out, "not due")
  t.eq(E.readfile(mark), nil)
  -- A second certificate, then --force renews both, one deploy step.
  local c = E.name("rw")
  L.must(state, { "issue", "-d", c, "--hook", L.webroot() })
  out = recipe("renew-all.lua", { "--force", "--", "sh", "-c",
    "echo $LUACME_RENEWED >> " .. mark })
  local lines = {}
  for l in E.readfile(mark):gmatch("[^\n]+") do lines[#lines + 1] = l end
  t.eq(#lines, 1, "the deploy step ran once")
  local renewed = {}
  for w in lines[1]:gmatch("%S+") do renewed[#renewed + 1] = w end
  t.eq(#renewed, 2)
  t.match(out, "renewed .*; ran sh")
  -- A failing deploy step makes the run fail.
  local st = L.run(nil, { "run", root .. "/examples/renew-all.lua",
    "--directory", E.env.directory, "--ca-bundle", E.env.ca_file,
    "--state", state, "--force", "--", "false" })
  t.eq(st, 1)
end)

t.test("examples/quickstart.sh issues and prints the certificate",
  function()
  local r = assert(core.spawn{ argv = { "bash", root ..
    "/examples/quickstart.sh", "--inside", L.exe }, timeout = 120 })
  t.eq(r.status, 0, r.stdout .. r.stderr)
  t.match(r.stdout, "issued example%.test, expires ")
  t.match(r.stdout, "subject=CN ?= ?example%.test")
  t.match(r.stdout, "issuer=CN ?= ?Pebble Intermediate CA")
  t.match(r.stdout, "notAfter=")
  t.match(r.stdout, "DNS:example%.test, DNS:www%.example%.test")
  t.match(r.stdout, "cert%.pem: OK")
end)
