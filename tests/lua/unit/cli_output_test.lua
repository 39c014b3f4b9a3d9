-- What the luacme command prints (lua/luacme/output.lua): human lines
-- and JSON lines from the same events, levels (-q, -v), progress
-- throttling, and errors with problem type, identifier, subproblems
-- and hints.
local t = require "testlib"
local cjson = require "cjson"
local errors = require "luacme.errors"
local output = require "luacme.output"

-- A file-handle stand-in collecting what is written.
local function sink()
  local s = { text = "" }
  function s:write(...)
    for _, v in ipairs({ ... }) do self.text = self.text .. v end
    return self
  end
  function s:flush() return self end
  return s
end

local function make(json, level, clock)
  local o, e = sink(), sink()
  local out = output.new{ json = json, level = level, stdout = o, stderr = e,
    clock = clock or function() return 0 end }
  return out, o, e
end

local function json_lines(text)
  local t2 = {}
  for l in text:gmatch("[^\n]+") do t2[#t2 + 1] = cjson.decode(l) end
  return t2
end

t.test("one event, two forms", function()
  local out, o = make(false, 0)
  out:event("deployed", { identifier = "example.com", type = "http-01",
    hook = "webroot" }, "example.com: http-01 deployed via webroot")
  t.eq(o.text, "example.com: http-01 deployed via webroot\n")
  local jout, jo = make(true, 0)
  jout:event("deployed", { identifier = "example.com", type = "http-01",
    hook = "webroot", wildcard = false }, "ignored for json")
  t.eq(jo.text, '{"event":"deployed","hook":"webroot","identifier":' ..
    '"example.com","type":"http-01","wildcard":false}\n')
  jout:result{ ok = true, command = "issue", names = { "a", "b" } }
  local lines = json_lines(jo.text)
  t.eq(lines[2].event, "result")
  t.eq(lines[2].names[2], "b")
end)

t.test("levels: -q keeps errors only, -v adds verbose events", function()
  local out, o, e = make(false, -1)
  out:event("issued", {}, "issued x")
  out:warn("careful")
  out:error(errors.new("timeout", "slow"))
  t.eq(o.text, "")
  t.match(e.text, "^luacme: error: timeout: slow\n")
  t.ok(not e.text:find("careful"), "-q silences warnings too")
  out, o = make(false, 0)
  out:event("cleanup", {}, "cleaned", { verbose = true })
  out:debug("detail")
  t.eq(o.text, "")
  out, o = make(false, 1)
  out:event("cleanup", {}, "cleaned", { verbose = true })
  t.eq(o.text, "cleaned\n")
  local jout, jo = make(true, -1)
  jout:event("issued", { name = "x" }, "issued x")
  jout:result{ ok = true }
  t.eq(#json_lines(jo.text), 1, "--json -q: only the result")
end)

t.test("progress lines at most once a second", function()
  local now = 0
  local out, o = make(false, 0, function() return now end)
  for i = 1, 10 do
    out:event("waiting", {}, "waiting " .. i, { progress = true })
    now = now + 0.3
  end
  local n = select(2, o.text:gsub("\n", ""))
  t.eq(n, 3, "at 0, 1.2 and 2.4 s: " .. o.text)
end)

t.test("server text is made printable, JSON stays valid UTF-8", function()
  local out, o = make(false, 0)
  out:event("x", {}, "evil\27[2Jname")
  t.ok(not o.text:find("\27", 1, true))
  local jout, jo = make(true, 0)
  jout:event("x", { detail = "bad \255\254 bytes" })
  local l = json_lines(jo.text)[1]
  t.match(l.detail, "\\xff\\xfe")
end)

-- A#9.5: every string from the server, not only the detail: an ESC in
-- the problem type once reached the terminal through tostring(err).
t.test("problem and subproblem types and identifiers are made printable",
  function()
  local esc = "\27[2J\27]0;pwned\7"
  local e = errors.problem(400, { type = errors.PREFIX .. "x" .. esc,
    detail = "d" .. esc, subproblems = {
      { type = errors.PREFIX .. "y" .. esc, detail = "sub" .. esc,
        identifier = { type = "dns" .. esc, value = "v" .. esc } } } })
  local a = errors.new("authorization", "authorization failed",
    { identifier = { type = "dns", value = "n" .. esc }, cause = e,
      errors = { e } })
  for _, err in ipairs({ e, a }) do
    local texts = {}
    for l in tostring(err):gmatch("[^\n]+") do texts[#texts + 1] = l end
    for _, l in ipairs(output.error_lines(err)) do texts[#texts + 1] = l end
    for _, s in ipairs(texts) do
      t.ok(not s:find("[%c\127]"), "control character in " .. s:gsub("%c", "?"))
    end
  end
  t.match(tostring(e), "^x\\x1b%[2J")
  t.match(output.error_lines(a)[1], "x\\x1b%[2J")
end)

t.test("an ACME problem: type, detail, identifier, status, hint", function()
  local e = errors.problem(403, { type = errors.PREFIX .. "agreementRequired",
    detail = "Provided account did not agree to the terms of service" })
  e.terms_of_service = "https://ca.test/tos"
  local out, _, err = make(false, 0)
  out:error(e)
  t.match(err.text, "^luacme: error: agreementRequired: Provided account " ..
    "did not agree to the terms of service %(HTTP 403%)\n")
  t.match(err.text, "\n  hint: .*https://ca%.test/tos.*%-%-agree%-tos\n$")
  local f = output.error_fields(e)
  t.eq(f.type, errors.PREFIX .. "agreementRequired")
  t.eq(f.status, 403)
  t.match(f.hint, "%-%-agree%-tos")
end)

local function authz_err(value, typ, detail, chtype)
  local cause = errors.problem(403, { type = errors.PREFIX .. typ,
    detail = detail })
  return errors.new("authorization", "authorization for " .. value ..
    " is invalid: " .. tostring(cause), {
      identifier = { type = "dns", value = value }, uri = "https://ca/a/1",
      type = cause.type, cause = cause,
      authz = { challenges = { { type = chtype, error = cause } } } })
end

t.test("a refused http-01: the identifier and the web server hint",
  function()
  local e = authz_err("www.example.com", "connection",
    "Fetching http://www.example.com/.well-known/acme-challenge/x: " ..
    "dial tcp 127.0.0.1:80: connect: connection refused", "http-01")
  local out, _, err = make(false, 0)
  out:error(e)
  t.match(err.text, "^luacme: error: www%.example%.com: connection: " ..
    "Fetching http://www%.example%.com/%.well%-known/acme%-challenge/x: " ..
    "dial tcp 127%.0%.0%.1:80: connect: connection refused\n")
  t.match(err.text, "hint: the CA could not connect to the name on port " ..
    "80: is a web server running there and serving the webroot")
  e = authz_err("www.example.com", "unauthorized", "got 404", "http-01")
  t.match(output.hint(e), "document root")
  e = authz_err("example.com", "unauthorized", "wrong TXT", "dns-01")
  t.match(output.hint(e), "TXT")
end)

t.test("subproblems and several failed authorizations are listed",
  function()
  local e = errors.problem(400, { type = errors.PREFIX .. "rejectedIdentifier",
    detail = "Some identifiers were rejected", subproblems = {
      { type = errors.PREFIX .. "rejectedIdentifier", detail = "blocked",
        identifier = { type = "dns", value = "blocked.test" } },
      { type = errors.PREFIX .. "malformed", detail = "bad name",
        identifier = { type = "dns", value = "x..test" } } } })
  local lines = output.error_lines(e)
  t.eq(#lines, 3)
  t.eq(lines[2], "  blocked.test: rejectedIdentifier: blocked")
  t.eq(lines[3], "  x..test: malformed: bad name")
  local f = output.error_fields(e)
  t.eq(#f.subproblems, 2)
  t.eq(f.subproblems[1].identifier.value, "blocked.test")
  local multi = errors.new("authorization", "2 authorizations failed",
    { errors = { authz_err("a.test", "dns", "NXDOMAIN", "dns-01"),
      authz_err("b.test", "unauthorized", "404", "http-01") } })
  lines = output.error_lines(multi)
  t.eq(#lines, 3)
  t.match(lines[2], "^  a%.test: dns: ")
  t.match(lines[3], "^  b%.test: unauthorized: ")
  t.match(output.hint(multi), "resolve")
  local jf = output.error_fields(multi)
  t.eq(#jf.errors, 2)
  t.eq(jf.errors[2].identifier.value, "b.test")
end)

t.test("hints for local situations", function()
  t.match(output.hint(errors.new("unsolvable", "no hook solves dns-01")),
    "DNS hook")
  t.match(output.hint(errors.new("busy", "held")), "another luacme run")
  t.match(output.hint(errors.new("tls", "x")), "%-%-ca%-bundle")
  t.match(output.hint(errors.new("no_account", "x")), "account new")
  t.match(output.hint(errors.problem(429, { type = errors.PREFIX ..
    "rateLimited", detail = "too many" }, nil, 120)), "retry after 120 s")
  t.match(output.hint(errors.problem(403, { type = errors.PREFIX ..
    "unauthorized", detail = "Account has been deactivated" })),
    "new account")
  t.eq(output.hint(errors.new("io", "disk")), nil)
end)

t.test("JSON error events carry the fields and the context", function()
  local out, o = make(true, 0)
  out:error(authz_err("a.test", "unauthorized", "404", "http-01"), "a.test")
  local l = json_lines(o.text)[1]
  t.eq(l.event, "error")
  t.eq(l.kind, "authorization")
  t.eq(l.type, errors.PREFIX .. "unauthorized")
  t.eq(l.identifier.value, "a.test")
  t.eq(l.context, "a.test")
  t.ok(l.hint)
end)

-- RFC 8555 §7.3.3 (A#34): userActionRequired stops the run; the user is
-- shown where to go (instance) and the new terms (Link terms-of-service).
t.test("userActionRequired shows the instance URL and the terms", function()
  local e = errors.problem(403, { type = errors.PREFIX .. "userActionRequired",
    detail = "Terms of service have changed",
    instance = "https://ca.test/agree\27[2J" })
  e.terms_of_service = "https://ca.test/tos-v2"
  local out, _, err = make(false, -1)
  out:error(e)
  t.match(err.text, "^luacme: error: userActionRequired: Terms of service " ..
    "have changed %(HTTP 403%)\n")
  t.match(err.text, "\n  hint: the CA needs you to act before it goes on: " ..
    "visit https://ca%.test/agree\\x1b%[2J %(terms of service: " ..
    "https://ca%.test/tos%-v2%)\n$")
  local jout, o = make(true, 0)
  jout:error(e)
  local f = json_lines(o.text)[1]
  t.eq(f.event, "error")
  t.eq(f.instance, "https://ca.test/agree\27[2J")
  t.eq(f.terms_of_service, "https://ca.test/tos-v2")
  t.match(f.hint, "visit https://ca%.test/agree")
end)

t.test("a hook's error says \"hook\" once", function()
  local hooks = require "luacme.hooks"
  local h = { name = "webroot", opts = {},
    deploy = function() return nil, "root /nope is not a directory" end }
  local _, err = hooks.call(h, "deploy", {})
  local lines = output.error_lines(err)
  t.eq(lines[1], "hook webroot: deploy: root /nope is not a directory")
  t.eq(output.error_lines(errors.new("hook", "a script failed"))[1],
    "hook: a script failed", "other details keep their kind")
end)

t.test("hints fit the hook: standalone failures get standalone hints",
  function()
  local e = authz_err("www.example.com", "connection",
    "dial tcp 127.0.0.1:80: connect: connection refused", "http-01")
  e.hook = "standalone"
  local h = output.hint(e)
  t.match(h, "luacme's own answer on port 80")
  t.ok(not h:find("webroot"), "no webroot hint for standalone")
  e = authz_err("www.example.com", "unauthorized", "got 404", "http-01")
  e.hook = "standalone"
  t.ok(not output.hint(e):find("document root"))
  local multi = errors.new("authorization", "2 authorizations failed",
    { errors = { e, e } })
  t.match(output.hint(multi), "luacme's own answer")
  e.hook = "webroot"
  t.match(output.hint(e), "document root", "webroot keeps its hint")
end)

-- Issue 16: one convention a recipe can branch on.
t.test("an authorization error carries the per-identifier list, also " ..
  "for one name, and says its type once", function()
  local client = require "luacme.client"
  local cause = errors.problem(403, { type = errors.PREFIX .. "unauthorized",
    detail = "got 404" })
  local e = client.authz_error({ uri = "https://ca/a/1", status = "invalid",
    identifier = { type = "dns", value = "a.test" },
    challenges = { { type = "http-01", error = cause } } })
  t.eq(e.kind, "authorization")
  t.eq(#e.errors, 1)
  t.eq(e.errors[1].identifier.value, "a.test")
  t.eq(e.errors[1].cause, cause)
  t.eq(e.errors[1].kind, "authorization")
  t.eq(tostring(e), "unauthorized: authorization for a.test is invalid: " ..
    "got 404")
  local lines = output.error_lines(e)
  t.eq(#lines, 1, "the one entry is not shown twice")
  t.eq(lines[1], "a.test: unauthorized: got 404")
  -- A detail that starts with the type is not prefixed again.
  t.eq(tostring(errors.new("usage", "usage: luacme issue")),
    "usage: luacme issue")
end)

t.test("errors.from turns the core's nil, message, kind into an error",
  function()
  local v, e = errors.from(nil, "no such file", "io")
  t.eq(v, nil)
  t.ok(errors.iserror(e))
  t.eq(e.kind, "io")
  t.eq(e.detail, "no such file")
  t.eq(select(2, errors.from(nil, "x")).kind, "error")
  local a, b = errors.from(1, 2)
  t.eq(a, 1)
  t.eq(b, 2)
end)
