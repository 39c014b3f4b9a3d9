-- Secrets never show: against a Pebble that requires external account
-- binding, every output of the luacme command in this scenario (human,
-- -v, --json, errors), the environment a hook script sees, and the
-- stored JSON files are searched for the EAB HMAC keys and for the
-- private keys (account key before and after rollover, certificate
-- key). The HMAC key comes from the environment or a file, never argv.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local t = require "testlib"
local core = require "luacme.core"
local cjson = require "cjson"
local E = require "e2e"
local L = require "cli_lib"

local cfg = cjson.decode(E.readfile(E.env.config))
local keys = cfg.pebble.externalAccountMACKeys
local KID1, KID2 = "kid-1", "kid-2"
local MAC1, MAC2 = keys[KID1], keys[KID2]
assert(MAC1 and MAC2, "the harness's EAB keys")

local dir = E.scratch()
local state = L.state()
local host = E.env.directory:match("^https://([^/]+)"):gsub(":", "_")
local envdump = dir .. "/hook.env"
local script = dir .. "/hook.sh"
E.writefile(script, ([[#!/bin/sh
case "$1" in
deploy_challenge)
    env >> '%s'
    printf '%%s' "$4" > '%s/.well-known/acme-challenge/'"$3" ;;
clean_challenge) rm -f '%s/.well-known/acme-challenge/'"$3" ;;
deploy_cert) env >> '%s'; echo "deploying $3" ;;
esac
exit 0
]]):format(envdump, E.env.webroot, E.env.webroot, envdump))
assert(core.chmod(script, 493))

local secret_env = { LUACME_EAB_KID = KID1, LUACME_EAB_HMAC_KEY = MAC1 }

-- The base64 body lines of a PEM private key (what a leak would show).
local function pem_body(pem)
  local lines = {}
  for l in pem:gmatch("[^\n]+") do
    if not l:find("^%-%-%-%-%-") then lines[#lines + 1] = l end
  end
  return lines
end

local private = {}
local function remember_key(path)
  local pem = assert(E.readfile(path), path)
  t.match(pem, "PRIVATE KEY")
  private[#private + 1] = { path = path, lines = pem_body(pem),
    joined = table.concat(pem_body(pem)) }
end

t.test("without a binding: refused with a hint, the key is not echoed",
  function()
  local st, _, err = L.run(state, { "account", "new", "--agree-tos" })
  t.eq(st, 1)
  t.match(err, "external account binding")
  t.match(err, "LUACME_EAB_HMAC_KEY")
  -- A wrong key: the CA says no; the key is not in the message.
  st, _, err = L.run(state, { "-v", "account", "new", "--agree-tos" },
    { env = { LUACME_EAB_KID = KID1, LUACME_EAB_HMAC_KEY = MAC2 } })
  t.eq(st, 1)
  t.match(err, "unauthorized")
end)

t.test("the key from the environment creates the account", function()
  local out = L.must(state, { "-v", "account", "new", "--agree-tos",
    "--contact", "s@example.test" }, 0, { env = secret_env })
  t.match(out, "created account")
  remember_key(state .. "/accounts/" .. host .. "/account.key")
  L.must(state, { "--json", "-v", "account", "show" }, 0,
    { env = secret_env })
end)

t.test("the key from a file, the kid from an option", function()
  local s2 = L.state()
  local f = dir .. "/mac"
  E.writefile(f, MAC2 .. "\n")
  assert(core.chmod(f, 384))
  L.must(s2, { "--json", "-v", "account", "new", "--agree-tos",
    "--eab-kid", KID2, "--eab-hmac-key-file", f })
  remember_key(s2 .. "/accounts/" .. host .. "/account.key")
end)

t.test("hooks run without luacme's secrets in their environment",
  function()
  local n = E.name("sec")
  L.must(state, { "-v", "issue", "-d", n, "--hook", script,
    "--deploy-hook", script }, 0,
    { env = { LUACME_EAB_KID = KID1, LUACME_EAB_HMAC_KEY = MAC1,
      LUACME_DNS_API_TOKEN = "tok-very-secret", OTHER_VAR = "visible" } })
  remember_key(state .. "/certs/" .. n .. "/privkey.pem")
  local env = E.readfile(envdump)
  t.match(env, "OTHER_VAR=visible", "the rest of the environment is there")
  t.ok(not env:find("LUACME_EAB", 1, true), "no LUACME_EAB_* variable")
  t.ok(not env:find("tok-very-secret", 1, true), "no LUACME_*TOKEN*")
  L.must(state, { "--json", "-v", "renew", "--force", n }, 0,
    { env = secret_env })
  remember_key(state .. "/certs/" .. n .. "/privkey.pem")
  L.must(state, { "-v", "list" })
  L.must(state, { "--json", "list" })
  L.must(state, { "-v", "revoke", n }, 0, { env = secret_env })
end)

t.test("a key rollover shows neither key", function()
  L.must(state, { "-v", "--json", "account", "rollover" }, 0,
    { env = secret_env })
  remember_key(state .. "/accounts/" .. host .. "/account.key")
  L.must(state, { "-v", "account", "show" })
end)

t.test("no output, hook environment or JSON file holds a secret",
  function()
  local where = {}
  for _, o in ipairs(L.outputs) do where[#where + 1] = o end
  where[#where + 1] = E.readfile(envdump) or ""
  local files = E.must("find " .. E.q(state) .. " -name '*.json*' -type f")
  for f in files:gmatch("[^\n]+") do where[#where + 1] = E.readfile(f) end
  t.ok(#where > 20, "a good number of outputs were collected")
  local function leaked(s)
    for _, w in ipairs(where) do
      if w:find(s, 1, true) then return true end
    end
    return false
  end
  for _, mac in ipairs({ MAC1, MAC2 }) do
    t.ok(not leaked(mac), "the EAB HMAC key appears somewhere")
    t.ok(not leaked(mac:sub(1, 24)), "a part of the EAB HMAC key appears")
  end
  t.eq(#private, 5)
  for _, k in ipairs(private) do
    t.ok(not leaked(k.joined), k.path .. " appears")
    for _, line in ipairs(k.lines) do
      if #line >= 32 then
        t.ok(not leaked(line), "a line of " .. k.path .. " appears")
      end
    end
  end
  -- The search itself finds what is there: the account URL and the
  -- steps are shown.
  t.ok(leaked("/my-account/"))
  t.ok(leaked("issued sec"))
end)
