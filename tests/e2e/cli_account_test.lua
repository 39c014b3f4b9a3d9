-- luacme account new / show / update / rollover / deactivate against
-- Pebble, each checked from the CA's side through the library with the
-- stored key (a client of our own, not the command's output).
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local t = require "testlib"
local core = require "luacme.core"
local cjson = require "cjson"
local acme = require "luacme"
local E = require "e2e"
local L = require "cli_lib"

local state = L.state()
local host = E.env.directory:match("^https://([^/]+)"):gsub(":", "_")
local adir = state .. "/accounts/" .. host

-- The CA's view of the account of the stored key.
local function ca_view(keyfile)
  local key = assert(core.key_load(E.readfile(keyfile or
    (adir .. "/account.key"))))
  local c = acme.client{ directory = E.env.directory, key = key,
    ca_file = E.env.ca_file }
  return c:get_reg()
end

t.test("account new needs --agree-tos, says why, keeps no key", function()
  local st, _, err = L.run(state, { "account", "new" })
  t.eq(st, 1)
  t.match(err, "agreementRequired")
  t.match(err, "hint: .*%-%-agree%-tos")
  t.eq(core.stat(adir .. "/account.key"), nil, "a refused key is dropped")
end)

t.test("account new, then show from the CA", function()
  local out = L.must(state, { "account", "new", "--agree-tos", "--contact",
    "one@example.test", "--key-type", "ec384" })
  t.match(out, "created account https://")
  local rec = cjson.decode(E.readfile(adir .. "/account.json"))
  t.match(rec.uri, "^https://127%.0%.0%.1:%d+/my%-account/")
  t.eq(rec.key_type, "ec384")
  t.eq(core.stat(adir .. "/account.key").mode & 511, 384)
  local a = assert(ca_view())
  t.eq(a.uri, rec.uri)
  t.eq(a.status, "valid")
  t.eq(a.contact[1], "mailto:one@example.test")
  local lines = L.json(L.must(state, { "account", "show", "--json" }))
  local res = lines[#lines]
  t.eq(res.event, "result")
  t.eq(res.action, "show")
  t.eq(res.account.uri, rec.uri)
  t.eq(res.account.status, "valid")
  t.eq(res.account.contact[1], "mailto:one@example.test")
  t.eq(res.account.key_type, "ec384")
  local key = assert(core.key_load(E.readfile(adir .. "/account.key")))
  t.eq(res.account.thumbprint, key:thumbprint())
  out = L.must(state, { "account", "show" })
  t.match(out, "status: valid")
  -- A second new finds it: nothing to do.
  out = L.must(state, { "account", "new", "--agree-tos" }, 2)
  t.match(out, "exists already")
end)

t.test("account update sets the contacts at the CA", function()
  L.must(state, { "account", "update", "--contact", "two@example.test",
    "--contact", "mailto:three@example.test" })
  local a = assert(ca_view())
  t.eq(E.list_str(E.sorted(a.contact)), "{mailto:three@example.test, " ..
    "mailto:two@example.test}")
  local rec = cjson.decode(E.readfile(adir .. "/account.json"))
  t.eq(#rec.contact, 2)
  local st, _, err = L.run(state, { "account", "update" })
  t.eq(st, 1)
  t.match(err, "needs %-%-contact")
end)

t.test("account rollover: the CA knows the new key, not the old one",
  function()
  local old = E.readfile(adir .. "/account.key")
  local oldfile = E.scratch() .. "/old.key"
  E.writefile(oldfile, old)
  local uri = cjson.decode(E.readfile(adir .. "/account.json")).uri
  local out = L.must(state, { "account", "rollover", "--key-type",
    "rsa2048" })
  t.match(out, "over to a new rsa2048 key")
  local new = E.readfile(adir .. "/account.key")
  t.ok(new ~= old)
  t.eq(core.stat(adir .. "/account.key.new"), nil)
  t.eq(core.stat(adir .. "/account.key").mode & 511, 384)
  local a = assert(ca_view())
  t.eq(a.uri, uri, "the same account")
  local gone, err = ca_view(oldfile)
  t.eq(gone, nil)
  t.eq(err.kind, "no_account", tostring(err))
  -- The account still works for issuing.
  L.must(state, { "issue", "-d", E.name("roll"), "--hook", L.webroot() })
end)

t.test("account deactivate needs --yes, then the account is gone",
  function()
  local uri = cjson.decode(E.readfile(adir .. "/account.json")).uri
  local st, _, err = L.run(state, { "account", "deactivate" })
  t.eq(st, 1)
  t.match(err, "%-%-yes")
  t.eq(assert(ca_view()).status, "valid")
  local out = L.must(state, { "account", "deactivate", "--yes" })
  t.match(out, "deactivated account ")
  local _, verr = ca_view()
  t.match(tostring(verr), "deactivated")
  t.eq(cjson.decode(E.readfile(adir .. "/account.json")).status,
    "deactivated")
  st, _, err = L.run(state, { "issue", "-d", E.name("dead"), "--hook",
    L.webroot() })
  t.eq(st, 1)
  t.match(err, "deactivated")
  t.match(err, "hint: create a new account")
  -- A new account replaces it; the old files are kept aside.
  out = L.must(state, { "account", "new", "--agree-tos" })
  t.match(out, "created account ")
  local uri2 = cjson.decode(E.readfile(adir .. "/account.json")).uri
  t.ok(uri2 ~= uri, "a new account URL")
  local names = E.must("ls " .. E.q(adir))
  t.match(names, "account%.key%.deactivated%-%d+")
  t.match(names, "account%.json%.deactivated%-%d+")
  L.must(state, { "issue", "-d", E.name("alive"), "--hook", L.webroot() })
end)

t.test("issue creates the account when there is none", function()
  local s2 = L.state()
  local st, _, err = L.run(s2, { "issue", "-d", E.name("auto"), "--hook",
    L.webroot() })
  t.eq(st, 1, "no --agree-tos")
  t.match(err, "%-%-agree%-tos")
  local out = L.must(s2, { "issue", "-d", E.name("auto"), "--hook",
    L.webroot(), "--agree-tos" })
  t.match(out, "created account ")
  -- The next issue reuses it (no account line without -v).
  out = L.must(s2, { "issue", "-d", E.name("auto"), "--hook", L.webroot() })
  t.ok(not out:find("account", 1, true), out)
  out = L.must(s2, { "-v", "issue", "-d", E.name("auto"), "--hook",
    L.webroot() })
  t.match(out, "using account https://")
end)
