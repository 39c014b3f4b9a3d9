-- The command line without a CA: argument parsing, presets, durations,
-- revocation reasons, CSR names, help texts and the exit codes of runs
-- that need no network (through the real executable).
local t = require "testlib"
local core = require "luacme.core"
local cjson = require "cjson"
local cli = require "luacme.cli"
local manage = require "luacme.manage"

local exe = assert(os.getenv("LUACME_TEST_BUILD_DIR"), "run under ctest") ..
  "/luacme"

-- Run the executable; returns status, stdout, stderr.
local function run(args, env_extra)
  local env = core.environ()
  env.LUACME_EAB_KID, env.LUACME_EAB_HMAC_KEY, env.LUACME_STATE = nil, nil, nil
  for k, v in pairs(env_extra or {}) do env[k] = v end
  local argv = t.luacme_argv(exe)
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local r = assert(core.spawn{ argv = argv, env = env, timeout = 30 })
  return r.status, r.stdout, r.stderr
end

t.test("parse: command, options before and after, repeatable lists",
  function()
  local p = assert(cli.parse{ "--state", "/s", "issue", "-d", "a.example",
    "-db.example", "--domain=c.example,d.example", "--ip", "192.0.2.1",
    "--hook", "webroot:root=/w,x=1", "--hook", "./h.sh", "--force", "-vq",
    "--json" })
  t.eq(p.command, "issue")
  t.eq(p.opts.state, "/s")
  t.eq(table.concat(p.opts.domain, " "), "a.example b.example c.example " ..
    "d.example")
  t.eq(p.opts.ip[1], "192.0.2.1")
  t.eq(p.opts.hook[1], "webroot:root=/w,x=1", "hook specs keep commas")
  t.eq(p.opts.hook[2], "./h.sh")
  t.eq(p.opts.force, true)
  t.eq(p.opts.verbose, true)
  t.eq(p.opts.quiet, true)
  t.eq(p.opts.json, true)
end)

t.test("parse: subcommands, positionals and --", function()
  local p = assert(cli.parse{ "account", "rollover", "--key-type", "ec384" })
  t.eq(p.sub, "rollover")
  t.eq(p.opts.key_type, "ec384")
  p = assert(cli.parse{ "renew", "a", "b", "--jitter=30" })
  t.eq(#p.args, 2)
  t.eq(p.opts.jitter, "30")
  p = assert(cli.parse{ "revoke", "--", "-odd-name" })
  t.eq(p.args[1], "-odd-name")
  p = assert(cli.parse{ "--version" })
  t.eq(p.command, "version")
end)

t.test("parse: mistakes are reported, not guessed", function()
  local function bad(args, pat)
    local p, err = cli.parse(args)
    t.eq(p, nil, "should fail: " .. table.concat(args, " "))
    t.match(err, pat)
  end
  bad({ "frobnicate" }, "unknown command 'frobnicate'")
  bad({ "issue", "--nope" }, "unknown option %-%-nope for issue")
  bad({ "issue", "-d" }, "%-d needs NAME")
  bad({ "issue", "--name", "a", "--name", "b" }, "%-%-name given twice")
  bad({ "issue", "--force=yes" }, "%-%-force takes no value")
  bad({ "account" }, "usage: luacme account")
  bad({ "account", "frob" }, "unknown account command 'frob'")
  bad({ "list", "extra" }, "usage: luacme list")
  bad({ "renew", "--key-type", "ec256" }, "unknown option %-%-key%-type")
  bad({ "issue", "--eab-hmac-key", "c2VjcmV0" },
    "never taken on the command line")
  bad({ "issue", "--eab-hmac-key=c2VjcmV0" },
    "never taken on the command line")
end)

t.test("parse: run passes everything after FILE untouched", function()
  local p = assert(cli.parse{ "run", "r.lua", "--force", "-d", "x", "--" })
  t.eq(p.command, "run")
  t.eq(p.run.file, "r.lua")
  t.eq(table.concat(p.run.args, " "), "--force -d x --")
  local _, err = cli.parse{ "run" }
  t.match(err, "usage: luacme run FILE%.lua")
end)

t.test("directory presets and --staging", function()
  t.eq(cli.directory_url(nil), cli.PRESETS.letsencrypt)
  local client = require "luacme.client"
  t.eq(cli.PRESETS.letsencrypt, client.LETSENCRYPT)
  t.eq(cli.PRESETS["letsencrypt-staging"], client.LETSENCRYPT_STAGING)
  t.eq(cli.directory_url("letsencrypt"),
    "https://acme-v02.api.letsencrypt.org/directory")
  t.eq(cli.directory_url(nil, true),
    "https://acme-staging-v02.api.letsencrypt.org/directory")
  t.eq(cli.directory_url("google", true), cli.PRESETS["google-staging"])
  t.eq(cli.directory_url("buypass-staging", true),
    cli.PRESETS["buypass-staging"])
  for _, n in ipairs(cli.PRESET_NAMES) do
    t.match(cli.directory_url(n), "^https://")
  end
  t.eq(cli.directory_url("https://ca.test/dir"), "https://ca.test/dir")
  local _, err = cli.directory_url("zerossl", true)
  t.match(err.detail, "zerossl has no staging")
  _, err = cli.directory_url("http://ca.test/dir")
  t.match(err.detail, "https:// URL or one of")
  _, err = cli.directory_url("https://ca.test/dir", true)
  t.match(err.detail, "preset name")
end)

t.test("durations and revocation reasons", function()
  t.eq(cli.duration("3600"), 3600)
  t.eq(cli.duration("7d"), 7 * 86400)
  t.eq(cli.duration("1d12h"), 36 * 3600)
  t.eq(cli.duration("90m"), 5400)
  t.eq(cli.duration("45s"), 45)
  t.eq(cli.duration("1x"), nil)
  t.eq(cli.duration("d"), nil)
  t.eq(cli.reason("keyCompromise"), 1)
  t.eq(cli.reason("key-compromise"), 1)
  t.eq(cli.reason("SUPERSEDED"), 4)
  t.eq(cli.reason("cessation_of_operation"), 5)
  t.eq(cli.reason("aACompromise"), 10)
  t.eq(cli.reason("0"), 0)
  t.eq(cli.reason("9"), 9)
  local _, err = cli.reason("7")
  t.match(err.detail, "not 7")
  _, err = cli.reason("11")
  t.match(err.detail, "0%-10")
  _, err = cli.reason("grumpy")
  t.match(err.detail, "unknown reason 'grumpy'")
end)

t.test("CSR names: SANs (DNS and IP), or the CN without SANs", function()
  local k = assert(core.key_generate("ec256"))
  local der = assert(core.csr{ key = k, names = { "a.example", "b.example" },
    ips = { "192.0.2.1", "2001:DB8::1" } })
  local names, ips = manage.csr_names(der)
  t.eq(table.concat(names, ","), "a.example,b.example")
  t.eq(table.concat(ips, ","), "192.0.2.1,2001:db8::1")
  local dir = t.tmpdir()
  local ok, out = t.sh("openssl req -new -newkey ec -pkeyopt " ..
    "ec_paramgen_curve:P-256 -nodes -keyout " .. dir .. "/k.pem -subj " ..
    "/CN=cn.example -out " .. dir .. "/c.pem")
  t.ok(ok, out)
  local d = assert(core.pem_decode(t.readfile(dir .. "/c.pem")))
  names, ips = manage.csr_names(d)
  t.eq(table.concat(names, ","), "cn.example")
  t.eq(#ips, 0)
  local n, err = manage.csr_names("\48\3\2\1\0")
  t.eq(n, nil)
  t.eq(err.kind, "invalid")
  n, err = manage.csr_names(der:sub(1, 40))
  t.eq(n, nil)
  t.eq(err.kind, "invalid", "a truncated CSR")
end)

t.test("help: overview, every command, json, hooks, exit codes", function()
  local main = cli.help()
  for _, c in ipairs({ "issue", "renew", "revoke", "list", "account",
    "hooks", "run", "help" }) do
    t.match(main, "\n  " .. c .. " ", "overview lists " .. c)
  end
  t.match(main, "\n  0 +done")
  t.match(main, "\n  1 +error")
  t.match(main, "\n  2 +nothing to do")
  t.match(main, "renew %-q && systemctl reload nginx")
  for name, cmd in pairs(cli.COMMANDS) do
    local h = cli.help(name)
    t.ok(h, "help for " .. name)
    for _, o in ipairs(cmd.opts) do
      t.match(h, "%-%-" .. o[1]:gsub("%-", "%%-"), name .. " documents --" ..
        o[1])
    end
  end
  for _, o in ipairs(cli.GLOBAL) do
    t.match(main, "%-%-" .. o[1]:gsub("%-", "%%-"))
  end
  local json = cli.help("json")
  for _, ev in ipairs({ "deployed", "waiting", "issued", "cleanup", "error",
    "result", "not_due", "cert", "revoked" }) do
    t.match(json, "\n  " .. ev .. " ", "json help documents " .. ev)
  end
  local hooks = cli.help("hooks")
  t.match(hooks, "\nwebroot %(http%-01%)")
  t.match(hooks, "\nexec ")
  t.match(hooks, "root %(required%)")
  t.eq(cli.help("nonsense"), nil)
  -- Everything fits 80 columns.
  for _, topic in ipairs({ false, "json", "hooks", "exit-codes", "issue",
    "renew", "revoke", "account", "list", "run" }) do
    for line in (cli.help(topic or nil) .. "\n"):gmatch("([^\n]*)\n") do
      t.ok(#line <= 80, "over 80 columns: " .. line)
    end
  end
end)

t.test("exit codes: help 0, usage errors 1, nothing to do 2", function()
  local state = t.tmpdir() .. "/state"
  local _
  local st, out = run({ "help" })
  local err
  t.eq(st, 0)
  t.match(out, "Usage: luacme")
  st, out = run({ "help", "issue" })
  t.eq(st, 0)
  t.match(out, "Usage: luacme issue")
  st, out = run({ "issue", "--help" })
  t.eq(st, 0)
  t.match(out, "Usage: luacme issue")
  st = run({ "help", "nope" })
  t.eq(st, 1)
  st, _, err = run({ "frob" })
  t.eq(st, 1)
  t.match(err, "unknown command")
  st, _, err = run({})
  t.eq(st, 1)
  t.match(err, "usage: luacme")
  st, _, err = run({ "--state", state, "issue", "--hook", "webroot:root=/x" })
  t.eq(st, 1)
  t.match(err, "issue needs %-d NAME")
  st, _, err = run({ "--state", state, "issue", "-d", "bad..name",
    "--hook", "webroot:root=/x" })
  t.eq(st, 1)
  t.match(err, "bad domain name 'bad%.%.name'")
  st, _, err = run({ "--state", state, "issue", "-d", "a.example" })
  t.eq(st, 1)
  t.match(err, "no challenge hook")
  st, _, err = run({ "--state", state, "issue", "-d", "a.example",
    "--hook", "nosuchhook" })
  t.eq(st, 1)
  t.match(err, "no built%-in hook named nosuchhook")
  st, _, err = run({ "--state", state, "issue", "-d", "a.example",
    "--hook", "webroot:root=/x", "--key-type", "dsa1024" })
  t.eq(st, 1)
  t.match(err, "unknown key type dsa1024")
  st, _, err = run({ "--state", state, "revoke" })
  t.eq(st, 1)
  t.match(err, "give CERTNAME or %-%-cert FILE")
  st, _, err = run({ "--state", state, "account", "deactivate" })
  t.eq(st, 1)
  t.match(err, "%-%-yes")
  st, _, err = run({ "--state", state, "--directory", "nowhere", "list" })
  t.eq(st, 1)
  t.match(err, "https:// URL or one of")
  -- Nothing stored: renew has nothing to do, list shows nothing.
  st, out = run({ "--state", state, "renew" })
  t.eq(st, 2)
  t.match(out, "no certificates")
  st, out = run({ "--state", state, "list" })
  t.eq(st, 0)
  t.match(out, "no certificates")
  st, _, err = run({ "--state", state, "renew", "ghost" })
  t.eq(st, 1)
  t.match(err, "no certificate named ghost")
  -- The state directory comes from LUACME_STATE too.
  local other = t.tmpdir() .. "/from-env"
  st = run({ "list" }, { LUACME_STATE = other })
  t.eq(st, 0)
  t.ok(core.stat(other), "LUACME_STATE was used")
end)

t.test("--json: usage failures end with a result object", function()
  local state = t.tmpdir() .. "/state"
  local st, out = run({ "--state", state, "--json", "issue", "-d",
    "a.example" })
  t.eq(st, 1)
  local lines = {}
  for l in out:gmatch("[^\n]+") do lines[#lines + 1] = cjson.decode(l) end
  t.eq(lines[#lines].event, "result")
  t.eq(lines[#lines].ok, false)
  t.eq(lines[#lines].exit, 1)
  t.eq(lines[#lines].command, "issue")
  t.match(lines[#lines].error.detail, "no challenge hook")
  t.eq(lines[1].event, "error")
  st, out = run({ "--state", state, "--json", "renew" })
  t.eq(st, 2)
  lines = {}
  for l in out:gmatch("[^\n]+") do lines[#lines + 1] = cjson.decode(l) end
  local res = lines[#lines]
  t.eq(res.event, "result")
  t.eq(res.exit, 2)
  t.eq(res.ok, true)
  t.eq(#res.renewed, 0)
  t.match(out, '"renewed":%[%]', "empty lists are JSON arrays")
end)

t.test("EAB: both parts needed; the key from a file or the environment",
  function()
  local state = t.tmpdir() .. "/state"
  local _
  local st, err
  st, _, err = run({ "--state", state, "--eab-kid", "kid-1", "list" })
  t.eq(st, 1)
  t.match(err, "external account binding needs both")
  st, _, err = run({ "--state", state, "list" },
    { LUACME_EAB_HMAC_KEY = "c2VjcmV0" })
  t.eq(st, 1)
  t.match(err, "needs both")
  t.ok(not err:find("c2VjcmV0", 1, true), "the key is not echoed")
  st = run({ "--state", state, "list" },
    { LUACME_EAB_HMAC_KEY = "c2VjcmV0", LUACME_EAB_KID = "kid-1" })
  t.eq(st, 0)
  local f = t.tmpdir() .. "/mac"
  t.writefile(f, "c2VjcmV0\n")
  st = run({ "--state", state, "--eab-kid", "k", "--eab-hmac-key-file", f,
    "list" })
  t.eq(st, 0)
  st, _, err = run({ "--state", state, "--eab-kid", "k",
    "--eab-hmac-key-file", f .. ".missing", "list" })
  t.eq(st, 1)
  t.match(err, "%-%-eab%-hmac%-key%-file")
end)

t.test("run and --version behave as before", function()
  local dir = t.tmpdir()
  t.writefile(dir .. "/r.lua", "io.write(arg[0], '|', table.concat(arg, " ..
    "'|'), '|', select('#', ...)) return tonumber(arg[1])")
  local st, out = run({ "run", dir .. "/r.lua", "3", "--force" })
  t.eq(st, 3)
  t.eq(out, dir .. "/r.lua|3|--force|2")
  t.writefile(dir .. "/f.lua", "return false")
  t.eq((run({ "run", dir .. "/f.lua" })), 1)
  t.writefile(dir .. "/n.lua", "local x = 1")
  t.eq((run({ "run", dir .. "/n.lua" })), 0)
  local st2, _, err = run({ "run", dir .. "/missing.lua" })
  t.eq(st2, 1)
  t.match(err, "missing%.lua")
  st, out = run({ "--version" })
  t.eq(st, 0)
  t.match(out, "^luacme %d")
  t.match(out, "OpenSSL")
end)

t.test("loading the cli modules leaves _G unchanged", function()
  local before = {}
  for k in pairs(_G) do before[k] = true end
  for _, m in ipairs({ "luacme.cli", "luacme.issuance", "luacme.output",
    "luacme.manage", "luacme.accounts", "luacme.certs" }) do
    package.loaded[m] = nil
    require(m)
  end
  for k in pairs(_G) do t.ok(before[k], "new global " .. tostring(k)) end
end)

-- Issue 4: `luacme hooks` lists the built-in hooks (also as JSON); the
-- numeric options of renew are checked before anything runs.
t.test("luacme hooks lists the built-ins; renew checks --jitter", function()
  local state = t.tmpdir() .. "/state"
  local st, out = run({ "hooks" })
  t.eq(st, 0)
  t.match(out, "\nwebroot %(http%-01%)")
  t.match(out, "\nexec ")
  t.match(out, "\ncommand %(")
  st, out = run({ "--json", "hooks" })
  t.eq(st, 0)
  local lines = {}
  for l in out:gmatch("[^\n]+") do lines[#lines + 1] = cjson.decode(l) end
  local names = {}
  for _, l in ipairs(lines) do
    if l.event == "hook" then names[l.name] = true end
  end
  t.ok(names.webroot and names.exec and names.command, "hook events")
  t.eq(lines[#lines].event, "result")
  t.eq(lines[#lines].exit, 0)
  local _, err
  st, _, err = run({ "--state", state, "renew", "--jitter", "soon" })
  t.eq(st, 1)
  t.match(err, "%-%-jitter must be a number")
  st, _, err = run({ "--state", state, "renew", "--jitter", "-5" })
  t.eq(st, 1)
  t.match(err, "%-%-jitter")
end)

-- A#9.4: an unreachable CA with --timeout 5 retried silently for 27 s;
-- --timeout bounds the whole issuance, connect retries included.
t.test("issue --timeout 5 against an unreachable CA ends within it",
  function()
  local state = t.tmpdir() .. "/state"
  local t0 = core.monotonic()
  local st, _, err = run({ "--state", state, "--directory",
    "https://127.0.0.1:1/dir", "issue", "--timeout", "5", "--agree-tos",
    "-d", "a.example", "--hook", "webroot:root=" .. t.tmpdir() })
  local took = core.monotonic() - t0
  t.eq(st, 1, err)
  t.ok(took < 7, "ended after " .. took .. " s")
  t.match(err, "127%.0%.0%.1")
end)

t.test("parse: certbot's and acme.sh's spellings mean luacme's options",
  function()
  local p = assert(cli.parse{ "issue", "-m", "me@example.com", "--server",
    "https://ca.example/dir", "--accept-tos", "--cert-name", "site", "-d",
    "a.example", "-w", "/var/www", "--webroot-path=/srv/b", "--standalone",
    "--email=you@example.com" })
  t.eq(table.concat(p.opts.contact, " "), "me@example.com you@example.com")
  t.eq(p.opts.directory, "https://ca.example/dir")
  t.eq(p.opts.agree_tos, true)
  t.eq(p.opts.name, "site")
  t.eq(table.concat(p.opts.hook, " "), "webroot:root=/var/www " ..
    "webroot:root=/srv/b standalone")
  local _, err = cli.parse{ "issue", "--name", "a", "--cert-name", "b" }
  t.match(err, "%-%-name given twice", "an alias and its option are one")
  _, err = cli.parse{ "renew", "-w", "/x" }
  t.match(err, "unknown option %-w for renew", "aliases belong to issue")
  p = assert(cli.parse{ "issue", "-k", "ec-384", "--elliptic-curve", "x" })
  t.eq(p.opts.key_type, "ec-384")
end)

t.test("key types as certbot, acme.sh and dehydrated write them", function()
  t.eq(cli.key_type("ec-256"), "ec256")
  t.eq(cli.key_type("ec-384"), "ec384")
  t.eq(cli.key_type("2048"), "rsa2048")
  t.eq(cli.key_type("4096"), "rsa4096")
  t.eq(cli.key_type("ecdsa"), "ec256")
  t.eq(cli.key_type("ecdsa", "secp384r1"), "ec384")
  t.eq(cli.key_type(nil, "secp384r1"), "ec384")
  t.eq(cli.key_type("rsa", nil, "3072"), "rsa3072")
  t.eq(cli.key_type("prime256v1"), "ec256")
  t.eq(cli.key_type("rsa4096"), "rsa4096", "luacme's own names stay")
  t.eq(cli.key_type("dsa"), "dsa", "unknown ones are refused later")
  t.eq(cli.key_type(nil), nil)
end)

t.test("unknown options: did you mean; --json also for usage errors",
  function()
  local _, err = cli.parse{ "issue", "--webrot", "/x" }
  t.match(err, "unknown option %-%-webrot for issue; did you mean " ..
    "%-%-webroot%?")
  _, err = cli.parse{ "issue", "--zzzzzzzz" }
  t.ok(not err:find("did you mean"), "nothing close: no guess")
  local st, out, errout = run({ "--json", "issue", "--dommain", "a.example" })
  t.eq(st, 1)
  t.eq(errout, "")
  local lines = {}
  for l in out:gmatch("[^\n]+") do lines[#lines + 1] = cjson.decode(l) end
  t.eq(lines[1].event, "error")
  t.eq(lines[1].kind, "usage")
  t.match(lines[1].detail, "did you mean %-%-domain%?")
  t.eq(lines[#lines].event, "result")
  t.eq(lines[#lines].ok, false)
  t.eq(lines[#lines].exit, 1)
end)

t.test("help issue lists what is also accepted", function()
  local text = cli.help("issue")
  t.match(text, "Also accepted")
  for _, s in ipairs({ "%-%-cert%-name CERTNAME +%= %-%-name",
    "%-w, %-%-webroot PATH +%= %-%-hook webroot:root=PATH",
    "%-m, %-%-email EMAIL +%= %-%-contact", "%-%-server URL +%= %-%-directory",
    "%-%-accept%-tos +%= %-%-agree%-tos", "%-%-standalone +%= %-%-hook standalone",
    "%-k, %-%-keylength", "%-%-deploy%-hook \"CMD ARGS\"" }) do
    t.match(text, s)
  end
  t.match(cli.help(), "%-m, %-%-email EMAIL +%= %-%-contact")
end)

t.test("parse: -d splits on commas, never on spaces", function()
  local p = assert(cli.parse{ "issue", "-d", "exa mple.test", "-d",
    "a.example, b.example" })
  t.eq(#p.opts.domain, 3)
  t.eq(p.opts.domain[1], "exa mple.test", "kept whole, to be refused")
  t.eq(p.opts.domain[3], "b.example")
end)
