-- luacme import: the state the real certbot and dehydrated made against
-- this Pebble (and an acme.sh layout built from its documented format)
-- taken over; the source left as it was; `luacme renew --force` then
-- renews with the same account (no newAccount reaches Pebble), the same
-- names, and runs the imported deploy command. Also dehydrated's own
-- example hook and a script in its documented style through the exec
-- hook's wellknown= (the script only told, luacme writes the token).
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local t = require "testlib"
local core = require "luacme.core"
local util = require "luacme.util"
local cjson = require "cjson"
local E = require "e2e"
local L = require "cli_lib"

local q = E.q
local challenge_dir = E.env.webroot .. "/.well-known/acme-challenge"

-- Every file under dir with its size, mode, mtime and content hash:
-- equal snapshots mean nothing there was written, renamed or removed.
local function snapshot(dir)
  return E.must("cd " .. q(dir) .. " && find . -printf '%p %s %m %T@ %l\\n'" ..
    " | sort && find . -type f -print0 | sort -z | xargs -0 sha256sum")
end

local function new_accounts()
  return E.pebble_count("POST /sign%-me%-up")
end

local function meta(state, name)
  local data = assert(E.readfile(state .. "/certs/" .. name ..
    "/meta.json"), "no meta.json for " .. name)
  return cjson.decode(data)
end

local function sans_of(pem)
  return E.sans((assert(util.pem_certs(pem)))[1])
end

local function dns(list)
  local out = {}
  for _, n in ipairs(list) do out[#out + 1] = "DNS:" .. n end
  table.sort(out)
  return out
end

local function same(a, b, what)
  t.eq(table.concat(a, " "), table.concat(b, " "), what)
end

local function by_event(out, name)
  return L.events(L.json(out), name)
end

local env_tools = "REQUESTS_CA_BUNDLE=" .. q(E.env.ca_file) ..
  " CURL_CA_BUNDLE=" .. q(E.env.ca_file) .. " "

t.test("certbot: import, dry run, renew with the same account", function()
  local src = E.scratch()
  local a, b = E.name("cb"), E.name("cb")
  local mark = src .. "/deployed"
  E.must(env_tools .. "certbot certonly --non-interactive --agree-tos " ..
    "-m me@example.test --server " .. q(E.env.directory) ..
    " --config-dir " .. q(src .. "/le") .. " --work-dir " ..
    q(src .. "/work") .. " --logs-dir " .. q(src .. "/logs") ..
    " --webroot -w " .. q(E.env.webroot) .. " -d " .. a .. " -d " .. b ..
    " --key-type ecdsa --deploy-hook " .. q("touch " .. mark) ..
    " --pre-hook " .. q("touch " .. src .. "/pre") .. " --post-hook " ..
    q("touch " .. src .. "/post"))
  -- A renewal-hooks/deploy script: certbot runs it for every certificate.
  local lineage_log = src .. "/lineage"
  E.must("mkdir -p " .. q(src .. "/le/renewal-hooks/deploy"))
  E.writefile(src .. "/le/renewal-hooks/deploy/log.sh", "#!/bin/sh\n" ..
    "echo \"$RENEWED_LINEAGE $RENEWED_DOMAINS\" > " .. lineage_log .. "\n")
  assert(core.chmod(src .. "/le/renewal-hooks/deploy/log.sh", 493))
  os.remove(src .. "/pre")
  os.remove(src .. "/post")
  local le = src .. "/le"
  local acct_dir = E.must("find " .. q(le .. "/accounts") ..
    " -name regr.json"):match("^(.-)/regr.json")
  local regr = cjson.decode(E.readfile(acct_dir .. "/regr.json"))
  t.match(regr.uri, "^https://")
  os.remove(mark)
  local before = snapshot(le)
  local state = L.state()

  -- --dry-run: the plan told, nothing written.
  local out = L.must(state, { "--json", "import", "certbot", le,
    "--dry-run" })
  local certs = by_event(out, "import_cert")
  t.eq(#certs, 1)
  t.eq(certs[1].name, a)
  t.eq(certs[1].status, "would import")
  t.eq(certs[1].key_type, "ec256")
  same(certs[1].hooks, { "webroot:root=" .. E.env.webroot }, "hooks")
  same(certs[1].deploy_hooks, { "command:sh=1,cmd=touch " .. mark,
    "command:sh=1,cmd=" .. le .. "/renewal-hooks/deploy/log.sh" },
    "deploy hooks")
  same(certs[1].pre_hooks, { "touch " .. src .. "/pre" }, "pre hook")
  same(certs[1].post_hooks, { "touch " .. src .. "/post" }, "post hook")
  local accts = by_event(out, "import_account")
  t.eq(#accts, 1)
  t.eq(accts[1].uri, regr.uri)
  t.eq(#by_event(out, "unmapped"), 0, "everything maps")
  t.eq(E.readfile(state .. "/certs/" .. a .. "/meta.json"), nil,
    "dry run writes no certificate")
  t.ok(not core.stat(state .. "/accounts/" .. require("luacme.state")
    .ca_host(E.env.directory) .. "/account.key"), "nor an account")

  -- The import.
  out = L.must(state, { "import", "certbot", le })
  t.match(out, "certificate " .. a:gsub("%p", "%%%0") .. " .*: imported")
  local set = L.files(state, a)
  L.check_set(set, "imported")
  t.eq(set["privkey.pem"] ~= nil, true)
  same(sans_of(set["cert.pem"]), dns({ a, b }), "names")
  t.eq(set["cert.pem"], E.readfile(le .. "/live/" .. a .. "/cert.pem"))
  t.eq(snapshot(le), before, "the certbot directory is only read")
  L.must(state, { "import", "certbot", le }, 2)   -- all there already

  -- renew --force: the certbot account, the same names, the deploy hook.
  local n0 = new_accounts()
  L.must(state, { "renew", "--force", a })
  t.eq(new_accounts(), n0, "no newAccount at Pebble")
  local m = meta(state, a)
  t.eq(m.account, regr.uri, "renewed with certbot's account")
  local renewed = L.files(state, a)
  t.ok(renewed["cert.pem"] ~= set["cert.pem"], "a new certificate")
  same(sans_of(renewed["cert.pem"]), dns({ a, b }), "the same names")
  t.ok(E.readfile(mark) ~= nil, "certbot's deploy hook ran")
  t.eq(E.readfile(lineage_log), state .. "/certs/" .. a .. " " .. a .. " " ..
    b .. "\n", "renewal-hooks/deploy with certbot's variables")
  t.ok(E.readfile(src .. "/pre") and E.readfile(src .. "/post"),
    "pre and post hooks ran")
  t.eq(snapshot(le), before, "still untouched")
  -- Nothing due: no pre or post hook.
  os.remove(src .. "/pre")
  os.remove(src .. "/post")
  L.must(state, { "renew" }, 2)
  t.eq(E.readfile(src .. "/pre"), nil, "no pre hook when nothing is due")
  t.eq(E.readfile(src .. "/post"), nil)
end)

-- A hook in dehydrated's documented style: one handler per event,
-- unknown ones ignored; it logs each call.
local function style_hook(dir)
  local log = dir .. "/events.log"
  local script = dir .. "/hook.sh"
  E.writefile(script, ([==[#!/usr/bin/env bash
deploy_challenge() { echo "deploy_challenge $1 $2" >> '%s'; }
clean_challenge() { echo "clean_challenge $1 $2" >> '%s'; }
deploy_cert() { echo "deploy_cert $1 $2" >> '%s'; }
unchanged_cert() { echo "unchanged_cert $1" >> '%s'; }
startup_hook() { echo startup_hook >> '%s'; }
exit_hook() { echo exit_hook >> '%s'; }
HANDLER="$1"; shift
if [[ "${HANDLER}" =~ ^(deploy_challenge|clean_challenge|deploy_cert|unchanged_cert|startup_hook|exit_hook)$ ]]; then
  "$HANDLER" "$@"
fi
]==]):format(log, log, log, log, log, log))
  assert(core.chmod(script, 493))
  return script, log
end

local function count(log, prefix)
  local n = 0
  for l in (E.readfile(log) or ""):gmatch("[^\n]+") do
    if l:sub(1, #prefix) == prefix then n = n + 1 end
  end
  return n
end

t.test("dehydrated: import with its hook, renew with the same account",
  function()
  local base = E.scratch() .. "/dh"
  E.must("mkdir -p " .. q(base))
  local script, log = style_hook(E.scratch())
  local a, b, c = E.name("dh"), E.name("dh"), E.name("dh")
  E.writefile(base .. "/config", table.concat({
    "CA=" .. q(E.env.directory),
    'BASEDIR="' .. base .. '"',
    'WELLKNOWN="' .. challenge_dir .. '"',
    "HOOK=" .. q(script),
    "CONTACT_EMAIL=me@example.test",
    "KEY_ALGO=prime256v1",
    "" }, "\n"))
  E.writefile(base .. "/domains.txt", a .. " " .. b .. "\n" .. c ..
    " > other\n")
  E.must(env_tools .. "dehydrated -f " .. q(base .. "/config") ..
    " --register --accept-terms")
  E.must(env_tools .. "dehydrated -f " .. q(base .. "/config") .. " -c")
  t.eq(count(log, "deploy_cert " .. a), 1, "dehydrated called the hook")
  local acct_id = E.must("cat " .. q(base) .. "/accounts/*/account_id.json")
  local uri = cjson.decode(acct_id).url
  t.match(uri, "^https://")
  local before = snapshot(base)
  local state = L.state()

  local out = L.must(state, { "--json", "import", "dehydrated", base })
  local certs = by_event(out, "import_cert")
  t.eq(#certs, 2)
  t.eq(certs[1].name, a)
  t.eq(certs[2].name, "other", "the alias names the certificate")
  t.eq(certs[1].key_type, "ec256")
  same(certs[1].hooks, { "exec:script=" .. script ..
    ",types=http-01,wellknown=" .. challenge_dir }, "the hook")
  t.eq(by_event(out, "import_account")[1].uri, uri)
  t.eq(#by_event(out, "unmapped"), 0)
  t.eq(snapshot(base), before, "the dehydrated directory is only read")

  -- renew --force: dehydrated's account; the script gets every event
  -- once, deploy_cert included, and luacme put the token where
  -- WELLKNOWN pointed (the script does not write it).
  E.writefile(log, "")
  local n0 = new_accounts()
  L.must(state, { "renew", "--force" })
  t.eq(new_accounts(), n0, "no newAccount at Pebble")
  t.eq(meta(state, a).account, uri)
  t.eq(meta(state, "other").account, uri)
  same(sans_of(L.files(state, a)["cert.pem"]), dns({ a, b }), "names")
  same(sans_of(L.files(state, "other")["cert.pem"]), dns({ c }), "names")
  t.eq(count(log, "startup_hook"), 1)
  t.eq(count(log, "exit_hook"), 1)
  t.eq(count(log, "deploy_challenge " .. a .. " "), 1, E.readfile(log))
  t.eq(count(log, "clean_challenge " .. a .. " "), 1)
  t.eq(count(log, "deploy_cert " .. a .. " " .. state .. "/certs/" .. a ..
    "/privkey.pem"), 1, "the reload a dehydrated hook does still happens")
  t.eq(count(log, "deploy_cert other "), 1)
  t.eq(#E.webroot_files(), 0, "token files removed")
  t.eq(snapshot(base), before, "still untouched")

  -- Not due: unchanged_cert, as dehydrated -c calls it.
  E.writefile(log, "")
  L.must(state, { "renew" }, 2)
  t.eq(count(log, "unchanged_cert " .. a), 1)
  t.eq(count(log, "deploy_cert"), 0)
end)

t.test("dehydrated's example hook with wellknown= answers http-01",
  function()
  local example = "/usr/share/doc/dehydrated/examples/hook.sh"
  t.ok(core.stat(example), "dehydrated's example hook is installed")
  local state = L.state()
  local n = E.name("dhex")
  L.must(state, { "issue", "-d", n, "--agree-tos", "--hook",
    "exec:script=" .. example .. ",wellknown=" .. challenge_dir })
  t.ok(#E.http_log_lines("/.well-known/acme-challenge/") > 0)
  L.check_set((L.files(state, n)))
  t.eq(#E.webroot_files(), 0)
  -- Without wellknown the example writes nothing: Pebble gets a 404.
  local st = L.run(state, { "issue", "-d", E.name("dhex"), "--hook",
    "exec:script=" .. example })
  t.eq(st, 1)
end)

-- acme.sh keeps base64 values as __ACME_BASE64__START_..._END_.
local function acmesh_b64(s)
  local b = core.b64url_encode(s):gsub("[-_]", { ["-"] = "+", ["_"] = "/" })
  return "__ACME_BASE64__START_" .. b .. string.rep("=", (4 - #b % 4) % 4) ..
    "__ACME_BASE64__END_"
end

t.test("acme.sh: its documented layout imported and renewed", function()
  -- An account and a certificate at Pebble, made by luacme in a state
  -- of its own, laid out as acme.sh keeps them.
  local made = L.state()
  local a, b = E.name("ash"), E.name("ash")
  L.must(made, { "issue", "-d", a, "-d", b, "--hook", L.webroot(),
    "--agree-tos" })
  local host = require("luacme.state").ca_host(E.env.directory)
  local acct = cjson.decode(E.readfile(made .. "/accounts/" .. host ..
    "/account.json"))
  local set = L.files(made, a)

  local home = E.scratch() .. "/.acme.sh"
  local hp, path = E.env.directory:match("^https://([^/:]+)[^/]*/(.*)$")
  local cadir = home .. "/ca/" .. hp .. "/" .. path
  E.must("mkdir -p " .. q(cadir) .. " " .. q(home .. "/" .. a .. "_ecc"))
  E.writefile(cadir .. "/account.key", E.readfile(made .. "/accounts/" ..
    host .. "/account.key"))
  E.writefile(cadir .. "/account.json", '{"contact":[],"status":"valid"}')
  E.writefile(cadir .. "/ca.conf", "ACCOUNT_URL='" .. acct.uri .. "'\n" ..
    "CA_KEY_HASH='x'\n")
  local d = home .. "/" .. a .. "_ecc/" .. a
  E.writefile(d .. ".key", set["privkey.pem"])
  E.writefile(d .. ".cer", set["cert.pem"])
  E.writefile(home .. "/" .. a .. "_ecc/ca.cer", set["chain.pem"])
  E.writefile(home .. "/" .. a .. "_ecc/fullchain.cer", set["fullchain.pem"])
  local mark = E.scratch() .. "/reloaded"
  E.writefile(d .. ".conf", table.concat({
    "Le_Domain='" .. a .. "'",
    "Le_Alt='" .. b .. "'",
    "Le_Webroot='" .. E.env.webroot .. "'",
    "Le_PreHook=''",
    "Le_PostHook='" .. acmesh_b64("touch " .. mark .. ".post") .. "'",
    "Le_DeployHook='haproxy'",
    "Le_RenewHook=''",
    "Le_API='" .. E.env.directory .. "'",
    "Le_Keylength='ec-256'",
    "Le_ReloadCmd='" .. acmesh_b64("echo $CERT_PATH > " .. mark) .. "'",
    "" }, "\n"))
  local before = snapshot(home)

  local state = L.state()
  local out = L.must(state, { "--json", "import", "acme.sh", home })
  local certs = by_event(out, "import_cert")
  t.eq(#certs, 1)
  t.eq(certs[1].name, a)
  same(certs[1].hooks, { "webroot:root=" .. E.env.webroot }, "hooks")
  same(certs[1].deploy_hooks, { "command:sh=1,cmd=echo $CERT_PATH > " ..
    mark }, "the reload command")
  t.eq(by_event(out, "import_account")[1].directory, E.env.directory,
    "the port comes back from Le_API")
  local un = by_event(out, "unmapped")
  t.eq(#un, 1)
  t.match(un[1].what, "^Le_DeployHook 'haproxy'")
  same(certs[1].post_hooks, { "touch " .. mark .. ".post" }, "post hook")
  t.eq(snapshot(home), before, "the acme.sh directory is only read")

  local n0 = new_accounts()
  L.must(state, { "renew", "--force" })
  t.eq(new_accounts(), n0, "no newAccount at Pebble")
  t.eq(meta(state, a).account, acct.uri)
  same(sans_of(L.files(state, a)["cert.pem"]), dns({ a, b }), "names")
  t.eq(E.readfile(mark), state .. "/certs/" .. a .. "/cert.pem\n",
    "the reload command ran with acme.sh's variables")
  t.ok(E.readfile(mark .. ".post"), "Le_PostHook ran")
end)

t.test("import refuses what is not the tool's state", function()
  local state = L.state()
  local empty = E.scratch()
  local st, _, err = L.run(state, { "import", "certbot", empty })
  t.eq(st, 1)
  t.match(err, "holds no certbot state")
  st, _, err = L.run(state, { "import", "lego", empty })
  t.eq(st, 1)
  t.match(err, "import knows certbot, dehydrated, acme.sh")
end)

t.test("a certbot command line works as typed", function()
  local state = L.state()
  local a, b = E.name("flags"), E.name("flags")
  local mark = E.scratch() .. "/reloaded"
  local out = L.must(nil, { "--state", state, "--ca-bundle", E.env.ca_file,
    "issue",
    "--server", E.env.directory, "-m", "me@example.test", "--accept-tos",
    "--cert-name", "site", "-w", E.env.webroot, "-d", a, "-d", b,
    "--key-type", "ecdsa", "--elliptic-curve", "secp384r1",
    "--deploy-hook", "touch " .. mark })
  t.match(out, "issued site")
  local m = meta(state, "site")
  t.eq(m.key_type, "ec384")
  same(m.hooks, { "webroot:root=" .. E.env.webroot }, "-w is the webroot hook")
  same(m.deploy_hooks, { "command:sh=1,cmd=touch " .. mark },
    "a command line is a shell command, as certbot runs it")
  t.ok(E.readfile(mark) ~= nil, "the deploy command ran")
  same(sans_of(L.files(state, "site")["cert.pem"]), dns({ a, b }), "names")
  local host = require("luacme.state").ca_host(E.env.directory)
  local acct = cjson.decode(E.readfile(state .. "/accounts/" .. host ..
    "/account.json"))
  t.eq(acct.contact[1], "mailto:me@example.test", "-m is the contact")
  os.remove(mark)
  L.must(nil, { "--state", state, "--ca-bundle", E.env.ca_file, "renew",
    "--force", "--server", E.env.directory })
  t.ok(E.readfile(mark) ~= nil, "and again on renewal")
end)

t.test("a deploy hook given for an existing certificate is kept",
  function()
  local state = L.state()
  local n = E.name("keep")
  L.must(state, { "issue", "-d", n, "--hook", L.webroot(), "--agree-tos" })
  local serial = meta(state, n).serial
  local mark = E.scratch() .. "/reloaded"
  local out = L.must(state, { "issue", "-d", n, "--hook", L.webroot(),
    "--deploy-hook", "touch " .. mark }, 2)
  t.match(out, "its deploy hooks now apply to renewals")
  local m = meta(state, n)
  t.eq(m.serial, serial, "not issued again")
  same(m.deploy_hooks, { "command:sh=1,cmd=touch " .. mark }, "stored")
  -- Given nothing, the stored hooks stay.
  L.must(state, { "issue", "-d", n, "--hook", L.webroot() }, 2)
  same(meta(state, n).deploy_hooks, { "command:sh=1,cmd=touch " .. mark },
    "still stored")
  L.must(state, { "renew", "--force" })
  t.ok(E.readfile(mark) ~= nil, "the renewal ran it")
end)

t.test("a revoked certificate is not re-issued from cron", function()
  local state = L.state()
  local n, keep = E.name("retired"), E.name("kept")
  L.must(state, { "issue", "-d", n, "--hook", L.webroot(), "--agree-tos" })
  L.must(state, { "issue", "-d", keep, "--hook", L.webroot() })
  local serial = meta(state, n).serial
  L.must(state, { "revoke", n, "--reason", "cessationOfOperation" })
  local out = L.must(state, { "renew" }, 2)
  t.match(out, n:gsub("%p", "%%%0") .. ": revoked, not renewed")
  t.eq(meta(state, n).serial, serial, "not re-issued")
  -- Naming it asks for it.
  L.must(state, { "renew", n })
  t.ok(meta(state, n).serial ~= serial, "renew NAME re-issues it")
end)

t.test("names: a space is no separator, one label is refused, order is "
  .. "no new certificate", function()
  local state = L.state()
  local st, _, err = L.run(state, { "issue", "-d", "exa mple.test", "--hook",
    L.webroot(), "--agree-tos" })
  t.eq(st, 1)
  t.match(err, "bad domain name 'exa mple%.test'")
  st, _, err = L.run(state, { "issue", "-d", "intranet", "--hook",
    L.webroot(), "--agree-tos" })
  t.eq(st, 1)
  t.match(err, "bad domain name 'intranet': a single label")
  local a, b = E.name("order"), E.name("order")
  L.must(state, { "issue", "-d", a, "-d", b, "--hook", L.webroot(),
    "--agree-tos" })
  local out = L.must(state, { "issue", "-d", b, "-d", a, "--hook",
    L.webroot() }, 2)
  t.match(out, a:gsub("%p", "%%%0") .. ": a valid certificate with these " ..
    "names exists")
  local lines = L.json(L.must(state, { "--json", "list" }))
  t.eq(#L.events(lines, "cert"), 1, "found, not duplicated")
end)

t.test("reconfigure changes the renewal settings; delete stops renewals",
  function()
  local state = L.state()
  local n = E.name("reconf")
  L.must(state, { "issue", "-d", n, "--hook", L.webroot(), "--agree-tos" })
  local serial = meta(state, n).serial
  local mark = E.scratch() .. "/reloaded"
  local out = L.must(state, { "reconfigure", n, "--deploy-hook",
    "touch " .. mark, "--key-type", "rsa2048" })
  t.match(out, "key type, deploy hooks changed")
  local m = meta(state, n)
  t.eq(m.serial, serial, "not issued")
  t.eq(m.key_type, "rsa2048")
  same(m.deploy_hooks, { "command:sh=1,cmd=touch " .. mark }, "stored")
  same(m.hooks, { L.webroot() }, "what is not given stays")
  L.must(state, { "reconfigure", n, "--key-type", "rsa2048" }, 2)
  local st, _, err = L.run(state, { "reconfigure", n, "--hook",
    "webroot:root=relative" })
  t.eq(st, 1, "a hook that cannot work is refused now")
  t.match(err, "absolute")
  t.eq(meta(state, n).hooks[1], L.webroot(), "and nothing changed")
  L.must(state, { "renew", "--force", n })
  t.ok(E.readfile(mark) ~= nil, "the new deploy hook ran")
  t.match(E.must("openssl pkey -noout -text -in " .. q(state .. "/certs/" ..
    n .. "/privkey.pem")), "2048 bit", "the new key type was used")

  local dir = state .. "/certs/" .. n
  out = L.must(state, { "delete", n })
  t.match(out, "not renewed any more")
  t.ok(E.readfile(dir .. "/fullchain.pem") ~= nil, "files kept")
  L.must(state, { "renew", "--force" }, 2)
  local lines = L.json(L.must(state, { "--json", "list" }))
  t.eq(#L.events(lines, "cert"), 0, "not listed")
  L.must(state, { "delete", n }, 1)
  -- Issued again, then purged.
  L.must(state, { "issue", "-d", n, "--hook", L.webroot() })
  L.must(state, { "delete", n, "--purge" })
  t.ok(not core.stat(dir), "purged")
end)

t.test("--pre-hook/--post-hook once per run; --days; --preferred-challenges",
  function()
  local state = L.state()
  local dir = E.scratch()
  local log = dir .. "/log"
  local pre = "echo pre >> " .. log
  local post = "echo post >> " .. log
  local a, b = E.name("prepost"), E.name("prepost")
  for _, n in ipairs({ a, b }) do
    L.must(state, { "issue", "-d", n, "--hook", L.webroot(), "--agree-tos",
      "--pre-hook", pre, "--post-hook", post, "--deploy-hook",
      "echo deploy >> " .. log })
  end
  E.writefile(log, "")
  L.must(state, { "renew", "--force" })
  t.eq(E.readfile(log), "pre\ndeploy\ndeploy\npost\n",
    "once per run, around all orders")

  -- --days: Pebble's certificates live five years; 2000 days before
  -- expiry is now, 10 days is far off.
  local n = E.name("days")
  L.must(state, { "issue", "-d", n, "--hook", L.webroot(), "--days", "10" })
  local out = L.must(state, { "renew", n }, 2)
  t.match(out, "10 days before expiry")
  L.must(state, { "reconfigure", n, "--days", "2000" })
  out = L.must(state, { "renew", "-v", n })
  t.match(out, "fewer than 2000 days left")

  -- challtestsrv offers http-01 first; dns-01 chosen for the base name
  -- too, so a wildcard and its base name share one hook.
  local base = E.name("pref")
  local spec = "challtestsrv:url=" .. E.env.challtestsrv
  out = L.must(state, { "--json", "issue", "-d", "*." .. base, "-d", base,
    "--hook", spec, "--preferred-challenges", "dns" })
  for _, d in ipairs(by_event(out, "deployed")) do
    t.eq(d.type, "dns-01", "every challenge over dns-01")
  end
  t.eq(#by_event(out, "deployed") > 0, true)
  same(meta(state, "_." .. base).types, { "dns-01" },
    "kept for renewals")
end)

t.test("HOOK_CHAIN: a chained dehydrated script gets all challenges at once",
  function()
  local dir = E.scratch()
  local log = dir .. "/chain.log"
  local script = dir .. "/chain.sh"
  -- dehydrated's documented HOOK_CHAIN style: loop over the triples.
  E.writefile(script, ([==[#!/usr/bin/env bash
deploy_challenge() {
  echo "deploy_challenge $#" >> '%s'
  while (( "$#" >= 3 )); do shift 3; done
}
clean_challenge() { echo "clean_challenge $#" >> '%s'; }
HANDLER="$1"; shift
if [[ "${HANDLER}" =~ ^(deploy_challenge|clean_challenge)$ ]]; then
  "$HANDLER" "$@"
fi
]==]):format(log, log))
  assert(core.chmod(script, 493))
  local state = L.state()
  local a, b = E.name("chain"), E.name("chain")
  L.must(state, { "issue", "-d", a, "-d", b, "--agree-tos", "--hook",
    "exec:script=" .. script .. ",wellknown=" .. challenge_dir ..
    ",chain=yes" })
  t.eq(E.readfile(log), "deploy_challenge 6\nclean_challenge 6\n",
    "one call each, with both challenges")
  t.eq(#E.webroot_files(), 0)
end)

t.test("--dry-run: the whole flow, nothing kept, no deploy hook", function()
  local state = L.state()
  local mark = E.scratch() .. "/deployed"
  local n = E.name("dry")
  local orders = E.pebble_count("POST /order%-plz")
  local out = L.must(state, { "issue", "-d", n, "--hook", L.webroot(),
    "--agree-tos", "--deploy-hook", "touch " .. mark, "--dry-run" })
  t.match(out, "dry run against ")
  t.match(out, "issued " .. n:gsub("%p", "%%%0"))
  t.ok(E.pebble_count("POST /order%-plz") > orders, "an order was made")
  t.eq(E.readfile(mark), nil, "no deploy hook")
  t.ok(not core.stat(state .. "/certs/" .. n), "no certificate kept")
  t.ok(not core.stat(state .. "/accounts"), "no account kept")

  -- renew --dry-run on a real certificate: its account is used, its
  -- files and meta.json stay as they are, its deploy hook does not run.
  L.must(state, { "issue", "-d", n, "--hook", L.webroot(), "--agree-tos",
    "--deploy-hook", "touch " .. mark })
  os.remove(mark)
  local before = L.files(state, n)
  local accounts0 = new_accounts()
  orders = E.pebble_count("POST /order%-plz")
  local json = L.json(L.must(state, { "--json", "renew", "--dry-run" }))
  local res = L.events(json, "result")[1]
  t.eq(res.dry_run, true)
  same(res.renewed, { n }, "renewed in the dry run")
  t.ok(E.pebble_count("POST /order%-plz") > orders)
  t.eq(new_accounts(), accounts0, "the stored account was used")
  local after = L.files(state, n)
  for _, f in ipairs(L.FILES) do t.eq(after[f], before[f], f .. " kept") end
  t.eq(E.readfile(mark), nil, "no deploy hook")
end)

t.test("webroot: a missing root fails before any order", function()
  local state = L.state()
  local orders = E.pebble_count("POST /order%-plz")
  local st, _, err = L.run(state, { "issue", "-d", E.name("noroot"),
    "--hook", "webroot:root=/nonexistent/www", "--agree-tos" })
  t.eq(st, 1)
  t.match(err, "hook webroot: startup: root /nonexistent/www is not a " ..
    "directory")
  t.ok(not err:find("hook: hook", 1, true), "no doubling")
  t.eq(E.pebble_count("POST /order%-plz"), orders, "no order placed")
end)

t.test("a dns-01 script as --hook and --deploy-hook: each event once; "
  .. "--dns-wait reaches it", function()
  local dir = E.scratch()
  local log = dir .. "/dns.log"
  local script = dir .. "/dns.sh"
  E.writefile(script, ([==[#!/usr/bin/env bash
CTS='%s'
deploy_challenge() {
  echo "deploy_challenge $1" >> '%s'
  curl -sS --fail -X POST -d "{\"host\":\"_acme-challenge.$1.\",\"value\":\"$3\"}" "$CTS/set-txt"
}
clean_challenge() {
  echo "clean_challenge $1" >> '%s'
  curl -sS --fail -X POST -d "{\"host\":\"_acme-challenge.$1.\"}" "$CTS/clear-txt"
}
deploy_cert() { echo "deploy_cert $1" >> '%s'; }
startup_hook() { echo startup_hook >> '%s'; }
exit_hook() { echo exit_hook >> '%s'; }
HANDLER="$1"; shift
if [[ "${HANDLER}" =~ ^(deploy_challenge|clean_challenge|deploy_cert|startup_hook|exit_hook)$ ]]; then
  "$HANDLER" "$@"
fi
]==]):format(E.env.challtestsrv, log, log, log, log, log))
  assert(core.chmod(script, 493))
  local state = L.state()
  local base = E.name("dnsx")
  local t0 = core.monotonic()
  L.must(state, { "issue", "-d", "*." .. base, "--agree-tos", "--hook",
    "exec:script=" .. script .. ",types=dns-01", "--deploy-hook", script,
    "--dns-wait", "2" })
  t.ok(core.monotonic() - t0 >= 2, "waited dns_wait after deploy")
  t.eq(count(log, "startup_hook"), 1, "one script, one startup")
  t.eq(count(log, "exit_hook"), 1)
  t.eq(count(log, "deploy_cert _." .. base), 1, "deploy_cert once")
  t.eq(count(log, "deploy_challenge " .. base), 1)
  t.eq(count(log, "clean_challenge " .. base), 1)
  same(meta(state, "_." .. base).hooks, { "exec:script=" .. script ..
    ",types=dns-01,dns_wait=2" }, "kept for renewals")
end)
