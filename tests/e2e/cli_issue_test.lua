-- The luacme command end to end against Pebble: issue with the webroot
-- hook (the harness's HTTP server, a real web server reading the
-- webroot on Pebble's httpPort, answers the CA), nothing to do on a
-- second issue and on renew (exit 2), --force renewing atomically with
-- the previous set kept as *.prev, list and --json output, revoke, and
-- failures reported with the CA's problem, a hint and last_error.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local t = require "testlib"
local core = require "luacme.core"
local cjson = require "cjson"
local E = require "e2e"
local L = require "cli_lib"

local state = L.state()
local N1, N2 = E.name("www"), E.name("cli")
local NAME = N1

local function mode(path)
  local st = assert(core.stat(path), path)
  return st.mode & 511
end

t.test("issue with webroot: files, modes, chain, what the CA fetched",
  function()
  local out = L.must(state, { "issue", "-d", N1, "-d", N2, "--hook",
    L.webroot(), "--agree-tos", "--contact", "cli@example.test" })
  t.match(out, "created account https://")
  t.match(out, NAME .. ": ordering a certificate for " .. N1:gsub("%p",
    "%%%0") .. ", " .. N2:gsub("%p", "%%%0"))
  for _, n in ipairs({ N1, N2 }) do
    t.ok(out:find(n .. ": http-01 deployed via webroot", 1, true),
      "a line per identifier: " .. out)
  end
  t.match(out, "waiting for %d authorization")
  t.match(out, "issued " .. NAME:gsub("%p", "%%%0") ..
    ", expires %d%d%d%d%-%d%d%-%d%d\n")
  local dir = state .. "/certs/" .. NAME
  local cur = L.files(state, NAME)
  L.check_set(cur, "issued")
  t.eq(mode(state), 448, "state dir 0700")
  t.eq(mode(dir), 448, "cert dir 0700")
  t.eq(mode(dir .. "/privkey.pem"), 384, "privkey 0600")
  t.eq(mode(dir .. "/meta.json"), 384, "meta 0600")
  t.eq(mode(dir .. "/cert.pem"), 420, "cert 0644")
  local acct = state .. "/accounts/" .. E.env.directory:match(
    "^https://([^/]+)"):gsub(":", "_")
  t.eq(mode(acct .. "/account.key"), 384, "account key 0600")
  -- The certificate, as openssl sees it.
  local certs = assert(require("luacme.util").pem_certs(cur["fullchain.pem"]))
  t.eq(E.list_str(E.sans(certs[1])), E.list_str(E.dns_sans({ N1, N2 })))
  local ok, msg = E.verify_chain(certs, E.root_pem(0))
  t.ok(ok, msg)
  -- The CA fetched each token from the real web server, which is now
  -- clean again.
  local served = {}
  for _, l in ipairs(E.http_log_lines("GET /.well-known/acme-challenge/")) do
    local tok = l:match("acme%-challenge/([%w_-]+) HTTP/[%d.]+\" 200 ")
    if tok then served[tok] = true end
  end
  local n = 0
  for _ in pairs(served) do n = n + 1 end
  t.eq(n, 2, "one token per name served with 200")
  t.eq(#E.webroot_files(), 0, "cleanup removed the challenge files")
  local meta = cjson.decode(cur["meta.json"])
  t.eq(meta.names[1], N1)
  t.eq(meta.hooks[1], L.webroot())
  t.eq(meta.directory, E.env.directory)
  -- issue 4: the ACME certificate and order URLs, the account and the
  -- issuance time are recorded too
  local base = E.env.directory:match("^(https://[^/]+)")
  t.eq(meta.cert_url:sub(1, #base + 7), base .. "/certZ/")
  t.eq(meta.order_url:sub(1, #base + 10), base .. "/my-order/")
  t.eq(meta.account:sub(1, #base + 12), base .. "/my-account/")
  t.ok(math.abs(meta.issued_at - os.time()) < 120, "issued_at is now")
  t.eq(meta.key_type, "ec256")
end)

t.test("a second issue and a renew have nothing to do (exit 2)", function()
  local before = L.files(state, NAME)
  local out = L.must(state, { "issue", "-d", N1, "-d", N2, "--hook",
    L.webroot() }, 2)
  t.match(out, "a valid certificate with these names exists")
  -- The same names in another order, under the same certificate name.
  L.must(state, { "issue", "-d", N2, "-d", N1, "--name", NAME, "--hook",
    L.webroot() }, 2)
  out = L.must(state, { "renew" }, 2)
  t.match(out, NAME:gsub("%p", "%%%0") .. ": not due %(due at ")
  out = L.must(state, { "renew", "--json", NAME }, 2)
  local lines = L.json(out)
  local nd = L.events(lines, "not_due")
  t.eq(#nd, 1)
  t.eq(nd[1].name, NAME)
  t.match(nd[1].due_at, "^%d%d%d%d%-%d%d%-%d%dT")
  t.eq(lines[#lines].event, "result")
  t.eq(lines[#lines].exit, 2)
  t.eq(#lines[#lines].not_due, 1)
  local after = L.files(state, NAME)
  t.eq(after["cert.pem"], before["cert.pem"], "nothing changed")
end)

t.test("list and list --json describe the certificate", function()
  local out = L.must(state, { "list" })
  t.match(out, "^" .. NAME:gsub("%p", "%%%0") ..
    ": expires %d%d%d%d%-%d%d%-%d%d, due %d%d%d%d%-%d%d%-%d%d\n")
  t.match(out, "names: " .. N1:gsub("%p", "%%%0") .. ", ")
  out = L.must(state, { "list", "--json" })
  local lines = L.json(out)
  local certs = L.events(lines, "cert")
  t.eq(#certs, 1)
  local c = certs[1]
  t.eq(c.name, NAME)
  t.eq(E.list_str(E.sorted(c.names)), E.list_str(E.sorted({ N1, N2 })))
  t.eq(c.due, false)
  local cur = L.files(state, NAME)
  local certs_der = require("luacme.util").pem_certs(cur["cert.pem"])
  local _, na = E.validity(certs_der[1])
  t.eq(c.not_after, os.date("!%Y-%m-%dT%H:%M:%SZ", na))
  t.eq(c.serial:upper():gsub("^0+", ""), E.serial(certs_der[1]):gsub("^0+", ""))
  t.eq(c.last_error, nil)
  local res = lines[#lines]
  t.eq(res.event, "result")
  t.eq(res.count, 1)
  t.eq(res.ok, true)
end)

t.test("renew --force replaces atomically and keeps the old set as .prev",
  function()
  local before = L.files(state, NAME)
  local old_serial = L.check_set(before, "before")
  local out = L.must(state, { "renew", "--force", "--json" })
  local lines = L.json(out)
  local issued = L.events(lines, "issued")
  t.eq(#issued, 1)
  local res = lines[#lines]
  t.eq(res.exit, 0)
  t.eq(res.renewed[1], NAME)
  local cur, prev = L.files(state, NAME)
  local new_serial = L.check_set(cur, "after")
  t.ok(new_serial ~= old_serial, "a new certificate")
  t.eq(issued[1].serial:upper():gsub("^0+", ""), new_serial:gsub("^0+", ""))
  for _, f in ipairs(L.FILES) do
    t.eq(prev[f], before[f], f .. ".prev is the previous " .. f)
  end
  t.ok(cur["privkey.pem"] ~= before["privkey.pem"], "a new key by default")
  -- No leftovers of the install.
  for _, f in ipairs(L.FILES) do
    t.eq(core.stat(state .. "/certs/" .. NAME .. "/" .. f .. ".new"), nil)
  end
end)

t.test("issue --json: events per step and a final result", function()
  local n = E.name("json")
  local out = L.must(state, { "--json", "issue", "-d", n, "--hook",
    L.webroot(), "--key-type", "rsa2048" })
  local lines = L.json(out)
  local names = {}
  for _, l in ipairs(lines) do names[#names + 1] = l.event end
  local seq = table.concat(names, " ")
  t.match(seq, "^order ")
  t.match(seq, " result$")
  local dep = L.events(lines, "deployed")
  t.eq(#dep, 1)
  t.eq(dep[1].identifier, n)
  t.eq(dep[1].type, "http-01")
  t.eq(dep[1].hook, "webroot")
  t.eq(dep[1].wildcard, false)
  local res = lines[#lines]
  t.eq(res.ok, true)
  t.eq(res.command, "issue")
  t.eq(res.name, n)
  t.eq(res.exit, 0)
  t.match(res.not_after, "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$")
  local cur = L.files(state, n)
  L.check_set(cur)
  t.match(E.must("openssl pkey -noout -text -in " .. E.q(state .. "/certs/" ..
    n .. "/privkey.pem")), "2048 bit")
end)

t.test("revoke: Pebble shows it revoked; then renew replaces it",
  function()
  local cur = L.files(state, NAME)
  local serial = L.check_set(cur)
  local out = L.must(state, { "revoke", NAME, "--reason", "keyCompromise" })
  t.match(out, "revoked " .. NAME:gsub("%p", "%%%0") .. " %(serial ")
  local st = E.cert_status(serial)
  t.eq(st.Status, "Revoked")
  t.eq(st.Reason, 1)
  out = L.must(state, { "revoke", NAME }, 2)
  t.match(out, "revoked already")
  local lines = L.json(L.must(state, { "list", "--json" }))
  for _, c in ipairs(L.events(lines, "cert")) do
    if c.name == NAME then
      t.eq(c.due, true, "a revoked certificate is due")
      t.ok(c.revoked and c.revoked.reason == 1)
    end
  end
  L.must(state, { "renew", NAME })
  local new = L.files(state, NAME)
  t.ok(L.check_set(new) ~= serial)
  t.eq(cjson.decode(new["meta.json"]).revoked, nil)
end)

t.test("revoke --cert FILE with --cert-key and a reason number", function()
  local n = E.name("rk")
  L.must(state, { "issue", "-d", n, "--hook", L.webroot() })
  local dir = state .. "/certs/" .. n
  local serial = L.check_set((L.files(state, n)))
  local other = L.state()
  -- Another state without an account: the certificate key signs.
  L.must(other, { "revoke", "--cert", dir .. "/cert.pem", "--cert-key",
    dir .. "/privkey.pem", "--reason", "4" })
  local st = E.cert_status(serial)
  t.eq(st.Status, "Revoked")
  t.eq(st.Reason, 4)
end)

t.test("a refused challenge: the identifier, the CA's problem, a hint",
  function()
  local n = E.name("refused")
  local empty = E.scratch()
  local st, _, err = L.run(state, { "issue", "-d", n, "--hook",
    "webroot:root=" .. empty })
  t.eq(st, 1)
  t.match(err, "luacme: error: " .. n:gsub("%p", "%%%0") ..
    ": unauthorized: ")
  t.match(err, "\n  hint: .*document root")
  t.eq(core.stat(state .. "/certs/" .. n .. "/meta.json"), nil,
    "nothing stored for a first issuance that failed")
  -- Cleanup removed what the hook made in the unserved root.
  local left = E.must("find " .. E.q(empty) .. " -type f")
  t.eq(left, "")
  local jst, jout = L.run(state, { "--json", "issue", "-d", E.name("refj"),
    "--hook", "webroot:root=" .. empty })
  t.eq(jst, 1)
  local lines = L.json(jout)
  local e = L.events(lines, "error")[1]
  t.eq(e.type, "urn:ietf:params:acme:error:unauthorized")
  t.ok(e.identifier and e.identifier.type == "dns")
  t.ok(e.hint)
  t.eq(lines[#lines].ok, false)
  t.eq(lines[#lines].exit, 1)
end)

t.test("a failed renewal keeps the certificate and records last_error",
  function()
  local n = E.name("lasterr")
  L.must(state, { "issue", "-d", n, "--hook", L.webroot() })
  local before = L.files(state, n)
  -- Break the stored settings: a hook that does not exist.
  local meta = cjson.decode(before["meta.json"])
  meta.hooks = { "nosuchhook" }
  E.writefile(state .. "/certs/" .. n .. "/meta.json", cjson.encode(meta))
  local st, _, err = L.run(state, { "renew", "--force", n })
  t.eq(st, 1)
  t.match(err, "no built%-in hook named nosuchhook")
  local after = L.files(state, n)
  t.eq(after["cert.pem"], before["cert.pem"], "the certificate stays")
  t.eq(after["privkey.pem"], before["privkey.pem"])
  local m2 = cjson.decode(after["meta.json"])
  t.match(m2.last_error.message, "nosuchhook")
  t.ok(m2.last_error.time > 0)
  local out = L.must(state, { "list" })
  t.match(out, "last error %(%d%d%d%d%-.-%): .*nosuchhook")
  local lines = L.json(L.must(state, { "list", "--json" }))
  for _, c in ipairs(L.events(lines, "cert")) do
    if c.name == n then t.match(c.last_error.message, "nosuchhook") end
  end
  -- renew of everything: the broken one fails, the others are not due.
  st = L.run(state, { "renew" })
  t.eq(st, 2, "the broken settings matter only when due")
end)

t.test("a wildcard without a DNS hook: the clear error", function()
  local st, _, err = L.run(state, { "issue", "-d", "*." .. E.name("wild"),
    "--hook", L.webroot() })
  t.eq(st, 1)
  t.match(err, "no hook solves dns%-01 for %*%.wild%d+%.example%.test; " ..
    "configured: webroot %(http%-01%)")
  t.match(err, "hint: ")
end)

t.test("--ip: an IP address identifier over http-01", function()
  local out = L.must(state, { "issue", "--ip", "127.0.0.1", "--hook",
    L.webroot() })
  t.match(out, "127%.0%.0%.1: http%-01 deployed via webroot")
  local cur = L.files(state, "127.0.0.1")
  L.check_set(cur)
  local certs = assert(require("luacme.util").pem_certs(cur["cert.pem"]))
  t.eq(E.list_str(E.sans(certs[1])), "{IP:127.0.0.1}")
end)

t.test("--valid-for asks for the lifetime; --reuse-key keeps the key",
  function()
  local n = E.name("short")
  local t0 = os.time()
  L.must(state, { "issue", "-d", n, "--hook", L.webroot(), "--valid-for",
    "2d", "--reuse-key" })
  local cur = L.files(state, n)
  local certs = assert(require("luacme.util").pem_certs(cur["cert.pem"]))
  local _, na = E.validity(certs[1])
  t.ok(math.abs(na - (t0 + 2 * 86400)) < 120, "notAfter about 2 days out")
  local meta = cjson.decode(cur["meta.json"])
  t.eq(meta.valid_for, 2 * 86400)
  t.eq(meta.reuse_key, true)
  L.must(state, { "renew", "--force", n })
  local new = L.files(state, n)
  t.ok(new["cert.pem"] ~= cur["cert.pem"])
  t.eq(new["privkey.pem"], cur["privkey.pem"], "the key was reused")
  certs = assert(require("luacme.util").pem_certs(new["cert.pem"]))
  _, na = E.validity(certs[1])
  t.ok(math.abs(na - (os.time() + 2 * 86400)) < 120,
    "the stored lifetime is asked again")
end)

t.test("--csr: the chain goes to --out, nothing is stored", function()
  local n = E.name("csr")
  local d = E.scratch()
  E.must("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 " ..
    "-nodes -keyout " .. E.q(d .. "/k.pem") .. " -out " ..
    E.q(d .. "/r.csr") .. " -subj /CN=" .. n .. " -addext " ..
    E.q("subjectAltName=DNS:" .. n))
  local st, _, err = L.run(state, { "issue", "--csr", d .. "/r.csr",
    "--hook", L.webroot() })
  t.eq(st, 1)
  t.match(err, "%-%-out")
  L.must(state, { "issue", "--csr", d .. "/r.csr", "--out",
    d .. "/chain.pem", "--hook", L.webroot() })
  local certs = assert(require("luacme.util").pem_certs(
    E.readfile(d .. "/chain.pem")))
  t.eq(E.list_str(E.sans(certs[1])), "{DNS:" .. n .. "}")
  local a = E.must("openssl x509 -noout -pubkey -in " .. E.q(d ..
    "/chain.pem"))
  local b = E.must("openssl pkey -pubout -in " .. E.q(d .. "/k.pem"))
  t.eq(a, b, "the CSR's key is in the certificate")
  t.eq(core.stat(state .. "/certs/" .. n .. "/meta.json"), nil)
  -- -d must agree with the CSR.
  st, _, err = L.run(state, { "issue", "--csr", d .. "/r.csr", "--out",
    d .. "/x.pem", "-d", "other.example.test", "--hook", L.webroot() })
  t.eq(st, 1)
  t.match(err, "differ from the CSR")
end)
