-- Bring-your-own hook scripts through the luacme command: a
-- dehydrated-style shell script as the challenge hook (--hook ./hook.sh,
-- it writes the token into the webroot the harness serves) and as the
-- deploy hook, with dehydrated's handler names and arguments, in the
-- right order; its failures shown with its stderr; the CA's refusal
-- passed to invalid_challenge; the command deploy hook's variables.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local t = require "testlib"
local core = require "luacme.core"
local cjson = require "cjson"
local E = require "e2e"
local L = require "cli_lib"

local dir = E.scratch()
local log = dir .. "/hook.log"
local script = dir .. "/hook.sh"

E.writefile(script, ([[#!/bin/sh
# A hook script in dehydrated's style.
h=$1
{ printf '%%s' "$h"; shift; for a in "$@"; do printf ' [%%s]' "$a"; done
  echo; } >> '%s'
case "$h" in
deploy_challenge)
    case "$1" in
    fail*) echo "boom: the DNS API is down" >&2; exit 3 ;;
    wrong*) printf 'not-it' > '%s/.well-known/acme-challenge/'"$2" ;;
    *) printf '%%s' "$3" > '%s/.well-known/acme-challenge/'"$2" ;;
    esac ;;
clean_challenge) rm -f '%s/.well-known/acme-challenge/'"$2" ;;
deploy_cert) cmp -s "$4" /dev/null && exit 1; [ -r "$2" ] || exit 4 ;;
esac
exit 0
]]):format(log, E.env.webroot, E.env.webroot, E.env.webroot))
assert(core.chmod(script, 493))

local state = L.state()

local function read_log()
  local t2 = {}
  for l in (E.readfile(log) or ""):gmatch("[^\n]+") do t2[#t2 + 1] = l end
  return t2
end

local function clear_log() E.writefile(log, "") end

local function find(lines, prefix)
  local out = {}
  for i, l in ipairs(lines) do
    if l:sub(1, #prefix) == prefix then out[#out + 1] = i end
  end
  return out
end

t.test("a dehydrated script answers http-01 and deploys the certificate",
  function()
  clear_log()
  local n = E.name("exec")
  local out = L.must(state, { "issue", "-d", n, "--hook", script,
    "--deploy-hook", script, "--agree-tos" })
  t.match(out, n:gsub("%p", "%%%0") .. ": http%-01 deployed via exec")
  local lines = read_log()
  t.eq(lines[1], "startup_hook", "startup first, once")
  t.eq(#find(lines, "startup_hook"), 1)
  t.eq(lines[#lines], "exit_hook", "exit last")
  local dc = find(lines, "deploy_challenge ")
  t.eq(#dc, 1)
  local d, token, ka = lines[dc[1]]:match(
    "^deploy_challenge %[(.-)%] %[(.-)%] %[(.-)%]$")
  t.eq(d, n)
  t.match(token, "^[%w_-]+$")
  t.eq(ka:sub(1, #token + 1), token .. ".", "TOKEN_VALUE is the key " ..
    "authorization")
  local cc = find(lines, "clean_challenge ")
  t.eq(#cc, 1)
  t.eq(lines[cc[1]], "clean_challenge [" .. n .. "] [" .. token .. "] [" ..
    ka .. "]")
  t.ok(cc[1] > dc[1])
  local cd = find(lines, "deploy_cert ")
  t.eq(#cd, 1)
  t.ok(cd[1] > cc[1], "deploy_cert after the challenge is cleaned")
  local cdir = state .. "/certs/" .. n
  t.eq(lines[cd[1]], string.format("deploy_cert [%s] [%s/privkey.pem] " ..
    "[%s/cert.pem] [%s/fullchain.pem] [%s/chain.pem] [%s]", n, cdir, cdir,
    cdir, cdir, lines[cd[1]]:match("%[(%d+)%]$")))
  t.eq(#E.webroot_files(), 0)
  local meta = cjson.decode(E.readfile(cdir .. "/meta.json"))
  t.eq(meta.hooks[1], script, "an absolute path is stored")
  t.eq(meta.deploy_hooks[1], script)

  -- renew when not due: unchanged_cert; --force: deploy_cert again.
  clear_log()
  L.must(state, { "renew", n }, 2)
  lines = read_log()
  t.eq(#find(lines, "unchanged_cert [" .. n .. "] [" .. cdir ..
    "/privkey.pem]"), 1)
  t.eq(#find(lines, "deploy_cert"), 0)
  clear_log()
  L.must(state, { "renew", "--force", n })
  lines = read_log()
  t.eq(#find(lines, "deploy_cert [" .. n .. "]"), 1)
end)

t.test("renewing several certificates: startup and exit once per run",
  function()
  local s2 = L.state()
  local a, b = E.name("multi"), E.name("multi")
  for _, n in ipairs({ a, b }) do
    L.must(s2, { "issue", "-d", n, "--hook", script, "--deploy-hook",
      script, "--agree-tos" })
  end
  clear_log()
  L.must(s2, { "renew", "--force" })
  local lines = read_log()
  t.eq(#find(lines, "startup_hook"), 1)
  t.eq(#find(lines, "exit_hook"), 1)
  t.eq(lines[1], "startup_hook")
  t.eq(lines[#lines], "exit_hook")
  t.eq(#find(lines, "deploy_cert ["), 2)
  clear_log()
  L.must(s2, { "renew" }, 2)
  lines = read_log()
  t.eq(#find(lines, "unchanged_cert ["), 2)
  t.eq(#find(lines, "startup_hook"), 1)
  t.eq(lines[#lines], "exit_hook")
end)

t.test("a failing script: its stderr shown, cleanup and failure called",
  function()
  clear_log()
  local n = E.name("fail")
  local st, _, err = L.run(state, { "issue", "-d", n, "--hook", script })
  t.eq(st, 1)
  t.match(err, "boom: the DNS API is down")
  t.match(err, "exit status 3")
  local lines = read_log()
  t.eq(#find(lines, "deploy_challenge [" .. n .. "]"), 1)
  t.eq(#find(lines, "clean_challenge [" .. n .. "]"), 1,
    "cleanup also for the failed deploy")
  t.eq(#find(lines, "request_failure "), 1)
  t.eq(lines[#lines], "exit_hook")
end)

t.test("the CA's refusal reaches invalid_challenge", function()
  clear_log()
  local n = E.name("wrong")
  local st, _, err = L.run(state, { "issue", "-d", n, "--hook", script })
  t.eq(st, 1)
  t.match(err, n:gsub("%p", "%%%0") .. ": unauthorized: ")
  local lines = read_log()
  local inv = find(lines, "invalid_challenge [" .. n .. "] ")
  t.eq(#inv, 1)
  local doc = cjson.decode(lines[inv[1]]:match("%] %[(.*)%]$"))
  t.eq(doc.type, "urn:ietf:params:acme:error:unauthorized")
  t.match(doc.detail, "not%-it")
  t.eq(#find(lines, "clean_challenge [" .. n .. "]"), 1)
end)

t.test("the command deploy hook gets the certificate's files", function()
  local n = E.name("cmd")
  local outf = dir .. "/cmd.out"
  L.must(state, { "issue", "-d", n, "--hook", L.webroot(), "--deploy-hook",
    "command:sh=1,cmd=echo $LUACME_CERT_NAME $LUACME_DOMAINS " ..
    "$LUACME_FULLCHAIN_FILE $LUACME_KEY_FILE > " .. outf })
  local cdir = state .. "/certs/" .. n
  t.eq(E.readfile(outf), n .. " " .. n .. " " .. cdir .. "/fullchain.pem " ..
    cdir .. "/privkey.pem\n")
  -- A failing deploy hook: the certificate stays installed, exit 1.
  local n2 = E.name("cmdfail")
  local st, _, err = L.run(state, { "issue", "-d", n2, "--hook",
    L.webroot(), "--deploy-hook", "command:sh=1,cmd=echo nope >&2; exit 5" })
  t.eq(st, 1)
  t.match(err, "issued and installed, but a deploy hook failed")
  t.match(err, "nope")
  L.check_set((L.files(state, n2)))
  local meta = cjson.decode(E.readfile(state .. "/certs/" .. n2 ..
    "/meta.json"))
  t.match(meta.last_error.message, "deploy hook failed")
end)
