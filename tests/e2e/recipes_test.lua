-- The four recipes of issue 16 run against Pebble, each as its header
-- says: examples/site-list.lua (one site fails, the others are issued),
-- examples/lowlevel.lua (the Go-style flow), examples/renew-deploy.lua
-- (only the renewed certificates are deployed; a failure is returned)
-- and examples/error-branching.lua (one branch per kind of failure).
-- They run with -q: what they print is their own.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local t = require "testlib"
local core = require "luacme.core"
local cjson = require "cjson"
local util = require "luacme.util"
local E = require "e2e"
local L = require "cli_lib"

local root = here .. "/../.."

-- luacme run examples/NAME with the harness's global options (state:
-- nil for none) and args; raises unless the exit status is want.
local function recipe(name, state, args, want)
  local full = { "run", root .. "/examples/" .. name, "-q", "--agree-tos" }
  local g = state and L.global(state) or { "--directory", E.env.directory,
    "--ca-bundle", E.env.ca_file }
  for _, a in ipairs(g) do full[#full + 1] = a end
  for _, a in ipairs(args) do full[#full + 1] = a end
  return L.must(nil, full, want)
end

local function lines(s)
  local out = {}
  for l in s:gmatch("[^\n]+") do out[#out + 1] = l end
  return out
end

local function pat(s) return (s:gsub("%p", "%%%0")) end

local function mode(path) return core.stat(path).mode & tonumber("777", 8) end

-- A directory the harness's web server does not serve: the CA's
-- http-01 request for a name solved there gets a 404.
local function unserved()
  local d = E.scratch() .. "/unserved"
  E.must("mkdir -p " .. E.q(d))
  return d
end

t.test("site-list: one failing site is reported, the others issued",
  function()
  local state = L.state()
  local a, b, c, d = E.name("sl"), E.name("sl"), E.name("sl"), E.name("sl")
  local out = recipe("site-list.lua", state, {
    E.env.webroot .. "=" .. a .. "," .. b, unserved() .. "=" .. c,
    E.env.webroot .. "=" .. d }, 1)
  local l = lines(out)
  t.match(l[1], "^" .. pat(a) .. ": issued, expires %d+%-%d+%-%d+$")
  -- One failing name: one line, the CA's type said once.
  t.match(l[2], "^" .. pat(c) .. ": failed: unauthorized: authorization " ..
    "for " .. pat(c) .. " is invalid: [^\n]*404$")
  t.match(l[3], "^  hint: .*document root")
  t.match(l[4], "^" .. pat(d) .. ": issued")
  t.eq(l[5], "1 of 3 sites failed")
  t.eq(#l, 5, "nothing but the recipe's lines at -q")
  L.check_set((L.files(state, a)))
  L.check_set((L.files(state, d)))
  t.eq(L.files(state, c)["cert.pem"], nil, "no certificate for the failed")
  -- Run again: kept, not issued again.
  out = recipe("site-list.lua", state, { E.env.webroot .. "=" .. a .. "," ..
    b }, 0)
  t.match(out, "^" .. pat(a) .. ": unchanged, expires ")
  t.eq(#E.webroot_files(), 0)
end)

t.test("lowlevel: the Go-style flow issues a verified chain", function()
  local outdir = E.scratch() .. "/ll"
  local names = { E.name("ll"), E.name("ll") }
  local out = recipe("lowlevel.lua", nil, { outdir, E.env.webroot,
    names[1], names[2] }, 0)
  t.match(out, "^issued " .. pat(names[1]) .. ", " .. pat(names[2]) ..
    ", serial %x+, expires ")
  local certs = assert(util.pem_certs(assert(E.readfile(outdir ..
    "/fullchain.pem"))))
  t.eq(E.list_str(E.sans(certs[1])), E.list_str(E.dns_sans(names)))
  local ok, msg = E.verify_chain(certs, E.root_pem(0))
  t.ok(ok, msg)
  t.eq(mode(outdir .. "/privkey.pem"), tonumber("600", 8))
  t.eq(mode(outdir .. "/account.key"), tonumber("600", 8))
  t.eq(#E.webroot_files(), 0, "challenge files removed")
  -- The account key is kept; a failing name ends with the CA's words.
  local key = E.readfile(outdir .. "/account.key")
  local st, _, err = L.run(nil, { "run", root .. "/examples/lowlevel.lua",
    "--directory", E.env.directory, "--ca-bundle", E.env.ca_file, outdir,
    unserved(), E.name("ll") })
  t.eq(st, 1)
  t.match(err, "^lowlevel: unauthorized: authorization for [^\n]* is " ..
    "invalid: [^\n]*404\n$")
  t.eq(E.readfile(outdir .. "/account.key"), key)
end)

-- meta.json of certificate name, changed by fn (a test-side edit of
-- the stored state: an ARI window that has passed, a broken hook).
local function edit_meta(state, name, fn)
  local path = state .. "/certs/" .. name .. "/meta.json"
  local meta = cjson.decode(assert(E.readfile(path)))
  fn(meta)
  E.writefile(path, cjson.encode(meta))
end

t.test("renew-deploy: only the renewed are deployed; a failure is " ..
  "returned", function()
  local state = L.state()
  local dest = E.scratch() .. "/dest"
  E.must("mkdir -p " .. E.q(dest))
  local a, b, c = E.name("rd"), E.name("rd"), E.name("rd")
  for _, n in ipairs({ a, b, c }) do
    L.must(state, { "issue", "--agree-tos", "-d", n, "--hook", L.webroot() })
  end
  -- Nothing due: nothing deployed, exit 2.
  local out = recipe("renew-deploy.lua", state, { dest }, 2)
  t.eq(#lines(out), 3)
  t.match(out, pat(a) .. ": not due %(due at ")
  t.eq(E.must("ls -A " .. E.q(dest)), "")
  -- a and c are due (the CA's window has passed, the next check is
  -- later), c's hook now fails; b stays not due.
  local now = os.time()
  local function passed(m)
    m.ari = { window_start = now - 2 * 86400, window_end = now - 86400,
      next_check = now + 86400 }
  end
  edit_meta(state, a, passed)
  edit_meta(state, c, function(m)
    passed(m)
    m.hooks = { "webroot:root=" .. unserved() }
  end)
  local before = L.files(state, b)
  out = recipe("renew-deploy.lua", state, { dest }, 1)
  local l = lines(out)
  t.eq(#l, 3, "one line per certificate, nothing else at -q")
  local by = {}
  for _, x in ipairs(l) do by[x:match("^(%S+):")] = x end
  t.eq(by[a], a .. ": renewed, deployed")
  t.match(by[b], "^" .. pat(b) .. ": not due %(due at ")
  t.match(by[c], "^" .. pat(c) .. ": failed: unauthorized: authorization " ..
    "for " .. pat(c) .. " is invalid: ")
  -- Deployed: a's new key and chain, 0600; b and c untouched.
  local cur = L.files(state, a)
  L.check_set(cur)
  t.eq(E.readfile(dest .. "/" .. a .. ".pem"), cur["fullchain.pem"] ..
    cur["privkey.pem"])
  t.eq(mode(dest .. "/" .. a .. ".pem"), tonumber("600", 8))
  t.eq(E.readfile(dest .. "/" .. b .. ".pem"), nil)
  t.eq(E.readfile(dest .. "/" .. c .. ".pem"), nil)
  t.eq(L.files(state, b)["cert.pem"], before["cert.pem"])
  L.check_set((L.files(state, c)), "the failed one keeps its certificate")
end)

t.test("error-branching: one branch per kind of failure", function()
  local state = L.state()
  local out = recipe("error-branching.lua", state, { E.env.webroot,
    "bad..name" }, 64)
  t.eq(out, "bad name: bad..name\n")
  local x, y = E.name("eb"), E.name("eb")
  out = recipe("error-branching.lua", state, { unserved(), x }, 65)
  t.match(out, "^not validated: " .. pat(x) .. ": unauthorized: [^\n]*404\n$")
  out = recipe("error-branching.lua", state, { unserved(), x, y }, 65)
  local l = lines(out)
  t.eq(#l, 2, "one line per failing name")
  table.sort(l)
  t.match(l[1], "^not validated: " .. pat(x) .. ": unauthorized: ")
  t.match(l[2], "^not validated: " .. pat(y) .. ": unauthorized: ")
  local full = { "run", root .. "/examples/error-branching.lua", "-q",
    "--directory", "https://127.0.0.1:1/dir", "--state", state,
    E.env.webroot, x }
  out = L.must(nil, full, 75)
  t.match(out, "^the CA is unreachable: ")
  out = recipe("error-branching.lua", state, { E.env.webroot, x }, 0)
  t.eq(out, x .. ": issued\n")
  out = recipe("error-branching.lua", state, { E.env.webroot, x }, 0)
  t.eq(out, x .. ": unchanged\n")
end)

t.test("m:issue and m:renew take a hook table, types and a deploy " ..
  "function for one run", function()
  local manage = require "luacme.manage"
  local output = require "luacme.output"
  local state = L.state()
  local m <close> = assert(manage.open{ state = state,
    directory = E.env.directory, ca_file = E.env.ca_file, agree_tos = true,
    out = output.new{ level = -1 } })
  local solver = E.webroot_solver()
  local n = E.name("tbl")
  local res = assert(m:issue{ names = { n }, hooks = { solver },
    types = { "http-01" } })
  t.eq(res.code, 0)
  t.eq(res.renewed, true)
  t.eq(res.names[1], n)
  t.eq(#solver.deployed, 1, "the table's deploy ran")
  t.eq(next(solver.written), nil, "and its cleanup")
  local meta = cjson.decode(L.files(state, n)["meta.json"])
  t.eq(#meta.hooks, 0, "a table is not stored")
  t.eq(meta.types[1], "http-01")
  -- A renewal with the table again and a deploy function.
  local deployed = {}
  local r = assert(m:renew{ force = true, hooks = { solver },
    deploy = function(cert)
      deployed[#deployed + 1] = cert
      return true
    end })
  t.eq(r.code, 0)
  t.eq(#deployed, 1)
  t.eq(deployed[1].name, n)
  t.eq(deployed[1].names[1], n)
  t.eq(deployed[1].changed, true)
  t.eq(E.readfile(deployed[1].fullchain_file), L.files(state,
    n)["fullchain.pem"])
  t.eq(r.certs[1].renewed, true)
  t.eq(r.certs[1].serial ~= res.serial, true, "a new certificate")
  -- Without a hook for the run, the stored settings have none.
  r = assert(m:renew{ force = true })
  t.eq(r.code, 1)
  t.eq(r.certs[1].error.option, "hook")
end)
