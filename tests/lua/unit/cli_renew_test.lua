-- renew's decision with the CA's renewal information (RFC 9773) over the
-- fake CA: the window is fetched when the CA offers renewalInfo, stored
-- in meta.json with the moment chosen in it, not fetched again before
-- Retry-After has passed, and a certificate inside its window is
-- renewed (here the renewal fails on purpose: the error is recorded and
-- the certificate stays).
local t = require "testlib"
local fake = require "fakehttp"
local core = require "luacme.core"
local cjson = require "cjson"
local manage = require "luacme.manage"
local output = require "luacme.output"
local state = require "luacme.state"
local store = require "luacme.store"

local DAY = 86400

-- A CA and a leaf for a.example (with an authority key id), 90 days.
local function make_cert(dir)
  local ok, out = t.sh("(" .. table.concat({
    "cd '" .. dir .. "'",
    "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes " ..
      "-keyout ca.key -out ca.pem -days 400 -subj /CN=Fake-CA",
    "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes " ..
      "-keyout leaf.key -out leaf.csr -subj /CN=a.example",
    "printf 'subjectAltName=DNS:a.example\\nauthorityKeyIdentifier=" ..
      "keyid\\n' > ext",
    "openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key " ..
      "-CAcreateserial -days 90 -extfile ext -out leaf.pem",
  }, " && ") .. ")")
  assert(ok, out)
  return t.readfile(dir .. "/leaf.key"), t.readfile(dir .. "/leaf.pem"),
    t.readfile(dir .. "/ca.pem")
end

local function setup(window, keys)
  local dir = t.tmpdir()
  local key_pem, cert_pem, ca_pem = make_cert(dir)
  local info = assert(core.cert_info(cert_pem))
  local st = assert(store.open(dir .. "/state"))
  local lk = assert(state.lock_cert(st, "a.example", 0))
  assert(state.install_cert(st, "a.example", { key_pem = key_pem,
    cert_pem = cert_pem, chain_pem = ca_pem, meta = {
      names = { "a.example" }, ips = {}, hooks = { "nosuchhook" },
      directory = "https://ca.test/dir", key_type = "ec256",
      not_after = info.not_after } }))
  lk:unlock()
  local clock = fake.clock(info.not_before + DAY)
  local asked = {}
  local ca = fake.ca{ clock = clock, keys = keys or {}, renewal_info = true,
    renewal = function(certid)
      asked[#asked + 1] = certid
      local w = window(clock.now())
      return 200, { ["content-type"] = "application/json",
        ["retry-after"] = "3600" }, cjson.encode({ suggestedWindow = {
          start = os.date("!%Y-%m-%dT%H:%M:%SZ", w[1]),
          ["end"] = os.date("!%Y-%m-%dT%H:%M:%SZ", w[2]) } })
    end }
  local events = {}
  local out = output.new{ json = true, level = 1,
    stdout = { write = function(_, s) events[#events + 1] = s end,
      flush = function() end },
    stderr = { write = function() end, flush = function() end } }
  local m = assert(manage.open{ state = dir .. "/state", out = out,
    directory = "https://ca.test/dir", transport = ca, now = clock.now,
    sleep = clock.sleep, rand = function() return 0.5 end,
    agree_tos = true })
  return m, st, clock, asked, events, info, ca
end

local function meta_of(st)
  return assert(state.read_meta(st, "a.example"))
end

t.test("a future window: not due, stored, not fetched again too soon",
  function()
  local start
  local m, st, clock, asked, events = setup(function(now)
    start = start or (now + 10 * DAY)
    return { start, start + DAY }
  end)
  local res = assert(m:renew{})
  t.eq(res.code, 2)
  t.eq(#asked, 1, "renewal information fetched")
  local meta = meta_of(st)
  t.eq(meta.ari.window_start, start)
  t.eq(meta.ari.window_end, start + DAY)
  t.eq(meta.ari.renew_at, start + DAY // 2, "rand 0.5: the middle")
  t.eq(meta.ari.next_check, clock.now() + 3600, "Retry-After")
  t.eq(meta.ari.cert_id, asked[1])
  local nd = cjson.decode(events[#events])
  t.eq(nd.event, "not_due")
  t.match(nd.reason, "inside the CA's renewal window")
  -- Within the hour: no new request, the same decision.
  clock.sleep(600)
  res = assert(m:renew{})
  t.eq(res.code, 2)
  t.eq(#asked, 1)
  -- After it: fetched again.
  clock.sleep(3600)
  assert(m:renew{})
  t.eq(#asked, 2)
end)

t.test("inside the window: due; a failed renewal keeps the certificate",
  function()
  local m, st, _, asked, events = setup(function(now)
    return { now - DAY, now + DAY }
  end)
  local before = assert(state.read_cert(st, "a.example"))
  local res = assert(m:renew{})
  t.eq(res.code, 1)
  t.eq(res.failed[1], "a.example")
  t.eq(#asked, 1)
  local due
  for _, e in ipairs(events) do
    local v = cjson.decode(e)
    if v.event == "due" then due = v end
  end
  t.ok(due, "a due event")
  t.match(due.reason, "renewal window")
  local after = assert(state.read_cert(st, "a.example"))
  t.eq(after.cert_pem, before.cert_pem)
  t.match(after.meta.last_error.message, "nosuchhook")
  t.ok(after.meta.ari.window_start, "the window was kept")
end)

t.test("--force skips the window and the lifetime rule", function()
  local m, st, _, asked = setup(function(now)
    return { now + 30 * DAY, now + 31 * DAY }
  end)
  local res = assert(m:renew{ force = true })
  t.eq(res.code, 1, "forced, and the broken hook makes it fail")
  t.eq(#asked, 0, "no renewal information needed when forced")
  t.match(meta_of(st).last_error.message, "nosuchhook")
end)

t.test("without renewalInfo the lifetime rule decides", function()
  local dir = t.tmpdir()
  local key_pem, cert_pem, ca_pem = make_cert(dir)
  local info = assert(core.cert_info(cert_pem))
  local st = assert(store.open(dir .. "/state"))
  local lk = assert(state.lock_cert(st, "a.example", 0))
  assert(state.install_cert(st, "a.example", { key_pem = key_pem,
    cert_pem = cert_pem, chain_pem = ca_pem, meta = {
      names = { "a.example" }, hooks = { "nosuchhook" },
      directory = "https://ca.test/dir" } }))
  lk:unlock()
  local life = info.not_after - info.not_before
  local clock = fake.clock(info.not_before + life // 2)
  local ca = fake.ca{ clock = clock, keys = {} }
  local m = assert(manage.open{ state = dir .. "/state",
    out = output.new{ level = -1, stderr = { write = function() end,
      flush = function() end } },
    directory = "https://ca.test/dir", transport = ca, now = clock.now,
    sleep = clock.sleep })
  t.eq(assert(m:renew{}).code, 2, "half the lifetime left: not due")
  clock.sleep(life // 4)
  t.eq(assert(m:renew{}).code, 1, "a quarter left: due (and fails here)")
end)

-- Issue 16: the renewal decision is one call, m:due(name), and it is
-- what m:renew acts on; its failures come back, not printed at -q.
t.test("m:due is m:renew's decision; a renewal_info feeds it directly",
  function()
  local start
  local m, st, clock, asked = setup(function(now)
    start = start or (now + 10 * DAY)
    return { start, start + DAY }
  end)
  local due, when, why = m:due("a.example")
  t.eq(due, false)
  t.eq(when, start + DAY // 2, "the moment drawn in the window, kept")
  t.match(why, "inside the CA's renewal window")
  t.eq(#asked, 1)
  t.eq(meta_of(st).ari.renew_at, when, "stored for m:renew")
  local res = assert(m:renew{})
  t.eq(res.code, 2)
  t.eq(res.certs[1].due_at, when, "m:renew saw the same moment")
  t.eq(res.certs[1].renewed, false)
  t.eq(res.certs[1].name, "a.example")
  t.eq(res.certs[1].names[1], "a.example")
  t.ok(res.certs[1].serial and res.certs[1].not_after)
  -- A window from get_renewal_info, as returned, without mapping.
  local now = clock.now()
  due, when, why = m:due("a.example", { renewal_info = {
    start = now - DAY, ["end"] = now + DAY, retry_after = 3600 } })
  t.eq(due, true)
  t.ok(when <= now)
  t.match(why, "renewal window")
  t.eq(meta_of(st).ari.window_start, now - DAY)
  -- renew.due takes the same table directly.
  local renew = require "luacme.renew"
  local info = assert(core.cert_info(assert(state.read_cert(st,
    "a.example")).cert_pem))
  t.eq(renew.due(info, { start = now - DAY, ["end"] = now - 1 }, now), true)
  t.eq(renew.due(info, { revoked = { time = now } }, now), true,
    "revocation is part of the one decision")
  -- A name that does not exist.
  local v, err = m:due("ghost.example")
  t.eq(v, nil)
  t.eq(err.kind, "not_found")
  t.match(err.detail, "no certificate named ghost%.example")
end)

t.test("m:renew returns per-certificate failures and prints nothing at -q",
  function()
  local m, _, _, _, events = setup(function(now)
    return { now - DAY, now + DAY }
  end)
  local printed = {}
  m.out = output.new{ level = -1,
    stdout = { write = function(_, s) printed[#printed + 1] = s end,
      flush = function() end },
    stderr = { write = function(_, s) printed[#printed + 1] = s end,
      flush = function() end } }
  local before = #events
  local res = assert(m:renew{})
  t.eq(res.code, 1)
  t.eq(#printed, 0, "nothing printed at the quiet level")
  t.eq(#events, before)
  t.eq(res.certs[1].code, 1)
  t.eq(res.certs[1].name, "a.example")
  t.match(tostring(res.certs[1].error), "nosuchhook")
  t.eq(res.errors[1].name, "a.example")
  t.eq(res.errors[1].err, res.certs[1].error)
end)

t.test("hook tables and deploy functions for one run; bad shapes raise",
  function()
  local m = setup(function(now) return { now + 30 * DAY, now + 31 * DAY } end)
  local ok, e = pcall(m.renew, m, { force = true, hooks = { { types =
    { "http-01" } } } })
  t.eq(ok, false)
  t.match(e, "needs types, deploy and cleanup")
  ok, e = pcall(m.renew, m, { force = true, deploy = 42 })
  t.eq(ok, false)
  t.match(e, "a table with deploy_cert or a function")
  ok, e = pcall(m.issue, m, { names = { "b.example" }, types = { "x-01" },
    hooks = { "webroot:root=/tmp" } })
  t.eq(ok, false)
  t.match(e, "unknown challenge type x%-01")
  -- A bad name is kind identifier, as from the protocol client.
  local r, err = m:issue{ names = { "bad..name" }, hooks = { {
    types = { "http-01" }, deploy = function() return true end,
    cleanup = function() return true end } } }
  t.eq(r, nil)
  t.eq(err.kind, "identifier")
  t.eq(err.identifier.value, "bad..name")
  -- revoke of an unknown name says so, as renew does.
  r, err = m:revoke{ name = "ghost.example" }
  t.eq(r, nil)
  t.eq(err.kind, "not_found")
  t.match(err.detail, "no certificate named ghost%.example")
end)

-- Requests the fake CA saw whose URL contains part.
local function seen(ca, part)
  local n = 0
  for _, rec in ipairs(ca.log) do
    if rec.url:find(part, 1, true) then n = n + 1 end
  end
  return n
end

t.test("429 + Retry-After on newOrder: kept in meta.hold; no request " ..
  "before it, also forced", function()
  -- The account key the run will find (and register with).
  local key = assert(core.key_generate("ec256"))
  local m, st, clock, _, _, _, ca = setup(function(now)
    return { now + 30 * DAY, now + 31 * DAY }
  end, { key })
  assert(state.write_account_key(st, "https://ca.test/dir", key:private_pem()))
  local meta = meta_of(st)
  meta.hooks = { "webroot:root=" .. t.tmpdir() }
  local lk = assert(state.lock_cert(st, "a.example", 0))
  assert(state.write_meta(st, "a.example", meta))
  lk:unlock()
  ca:once("POST", "/order-plz", { status = 429, headers = {
    ["content-type"] = "application/problem+json",
    ["retry-after"] = "7200" }, body = cjson.encode({
      type = "urn:ietf:params:acme:error:rateLimited",
      detail = "too many certificates", status = 429 }) })
  local res = assert(m:renew{ force = true })
  t.eq(res.code, 1)
  t.eq(seen(ca, "/order-plz"), 1)
  local hold = meta_of(st).hold
  t.ok(hold, "meta.hold written")
  t.eq(hold.retry_at, clock.now() + 7200)
  t.eq(hold.status, 429)
  -- Within the two hours: not contacted at all, and it says so.
  local before = #ca.log
  clock.sleep(3600)
  res = assert(m:renew{ force = true })
  t.eq(res.code, 1)
  t.eq(#ca.log, before, "no request to the CA")
  t.match(res.errors[1].err.detail, "asked not to be asked")
  t.match(meta_of(st).last_error.message, "asked not to be asked")
  -- Not forced and not due: reported as not due, still no request.
  t.eq(assert(m:renew{}).code, 2)
  t.eq(#ca.log, before)
  -- After it: asked again.
  clock.sleep(3601)
  assert(m:renew{ force = true })
  t.eq(seen(ca, "/order-plz"), 2)
end)

t.test("a CA unreachable for renewal information: asked once a run, " ..
  "the certificates stay not due", function()
  local m, st, clock, asked, events, _, ca = setup(function(now)
    return { now + 30 * DAY, now + 31 * DAY }
  end)
  -- A second certificate of the same CA.
  local set = assert(state.read_cert(st, "a.example"))
  local lk = assert(state.lock_cert(st, "b.example", 0))
  assert(state.install_cert(st, "b.example", { key_pem = set.key_pem,
    cert_pem = set.cert_pem, chain_pem = set.chain_pem, meta = set.meta }))
  lk:unlock()
  ca:once("GET", "/dir", "connect", 100)
  local res = assert(m:renew{})
  t.eq(res.code, 2, "nothing due by what is stored")
  t.eq(#asked, 0)
  -- One directory fetch with its retries, for the first certificate only.
  local dirs = seen(ca, "/dir")
  t.ok(dirs >= 2 and dirs <= 7, "retries of one fetch: " .. dirs)
  local warned = 0
  for _, e in ipairs(events) do
    local v = cjson.decode(e)
    if v.event == "warning" and v.message:find("not refreshed") then
      warned = warned + 1
    end
  end
  t.eq(warned, 1, "one warning for the CA")
  -- A new run tries again (no Retry-After was given).
  ca.intercepts = {}
  clock.sleep(1)
  assert(m:renew{})
  t.ok(#asked >= 1, "renewal information fetched by the next run")
end)
