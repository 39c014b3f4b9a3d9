-- The issuance path (lua/luacme/issuance.lua) over fake hooks and the fake
-- CA: which challenge each authorization gets, deploy grouped per hook,
-- ready() polling, and cleanup on success, on failure, on a failed
-- deploy and on an injected interruption (Ctrl-C) wherever it lands.
local t = require "testlib"
local fake = require "fakehttp"
local core = require "luacme.core"
local hooks = require "luacme.hooks"
local issuance = require "luacme.issuance"
local errors = require "luacme.errors"
local sched = require "luacme.sched"

local KEY = core.key_generate("ec256")
local URN = "urn:ietf:params:acme:error:"

local function setup(opts)
  return fake.account(KEY, opts)
end

-- A hook in the shape hooks.load returns, logging every call as
-- "fn hook type name" into log. behave: fail_deploy = name,
-- ready_after = n (false n times), raise_in = "deploy"/"cleanup" ...
local function fake_hook(name, types, log, behave)
  behave = behave or {}
  local h = { name = name, spec = name .. ":x=1", types = types,
    opts = { mine = name } }
  local function who(ch)
    return (ch.wildcard and "*." or "") .. ch.domain
  end
  function h.deploy(ch, opts)
    assert(opts.mine == name, "hook gets its own options")
    log[#log + 1] = "deploy " .. name .. " " .. ch.type .. " " .. who(ch)
    if behave.raise_in == "deploy" then
      error({ kind = "interrupted", detail = "interrupted by signal" }, 0)
    end
    if behave.fail_deploy == who(ch) then return nil, "disk full" end
    return true
  end
  function h.cleanup(ch, opts)
    log[#log + 1] = "cleanup " .. name .. " " .. ch.type .. " " .. who(ch)
    if behave.fail_cleanup then return nil, "cannot remove" end
    return true
  end
  if behave.ready_after then
    local seen = {}
    function h.ready(ch)
      local k = who(ch)
      seen[k] = (seen[k] or 0) + 1
      log[#log + 1] = "ready " .. name .. " " .. k
      if seen[k] > behave.ready_after then return true end
      return false, "ns1 does not serve it yet (" .. seen[k] .. ")"
    end
  end
  if behave.events then
    for _, ev in ipairs({ "startup", "exit", "failure", "invalid" }) do
      h[ev] = function(...)
        local a = { ... }
        local tag = ""
        if ev == "invalid" then
          tag = " " .. who(a[1]) .. " " .. tostring(a[2].type)
        end
        log[#log + 1] = ev .. " " .. name .. tag
        return true
      end
    end
  end
  return h
end

local function count(log, prefix)
  local n = 0
  for _, l in ipairs(log) do
    if l:sub(1, #prefix) == prefix then n = n + 1 end
  end
  return n
end

local function ids(...)
  local out = {}
  for _, n in ipairs({ ... }) do
    if n:find("^%d+%.") then out[#out + 1] = { type = "ip", value = n }
    else out[#out + 1] = { type = "dns", value = n } end
  end
  return out
end

local function events()
  local ev = {}
  return ev, function(name, fields, text)
    ev[#ev + 1] = { name = name, fields = fields, text = text }
  end
end

local function chals(...)
  local out = {}
  for _, ty in ipairs({ ... }) do
    out[#out + 1] = { type = ty, uri = "https://ca/" .. ty }
  end
  return out
end

t.test("pick: wildcards only dns-01, IPs http-01 or tls-alpn-01", function()
  local web = { name = "webroot", types = { "http-01" } }
  local dns = { name = "dns", types = { "dns-01" } }
  local alpn = { name = "alpn", types = { "tls-alpn-01" } }
  local a = { identifier = { type = "dns", value = "example.com" },
    wildcard = true, challenges = chals("dns-01") }
  local ch, h = issuance.pick({ web, dns }, a)
  t.eq(ch.type, "dns-01")
  t.eq(h, dns)
  -- A DNS hook listed first wins for a plain name too (hook order).
  local plain = { identifier = { type = "dns", value = "example.com" },
    challenges = chals("http-01", "dns-01", "tls-alpn-01") }
  ch, h = issuance.pick({ dns, web }, plain)
  t.eq(ch.type, "dns-01")
  ch, h = issuance.pick({ web, dns }, plain)
  t.eq(ch.type, "http-01")
  -- An IP address never gets dns-01, even when offered.
  local ip = { identifier = { type = "ip", value = "192.0.2.1" },
    challenges = chals("dns-01", "tls-alpn-01") }
  ch, h = issuance.pick({ dns, alpn }, ip)
  t.eq(ch.type, "tls-alpn-01")
  t.eq(h, alpn)
end)

t.test("pick: an allowed-types set narrows the choice", function()
  local both = { name = "cts", types = { "http-01", "dns-01" } }
  local plain = { identifier = { type = "dns", value = "a.example" },
    challenges = chals("http-01", "dns-01") }
  local ch = issuance.pick({ both }, plain)
  t.eq(ch.type, "http-01")
  ch = issuance.pick({ both }, plain, { ["dns-01"] = true })
  t.eq(ch.type, "dns-01")
  local _, err = issuance.pick({ both }, plain, { ["tls-alpn-01"] = true })
  t.eq(err.kind, "unsolvable")
  t.match(err.detail, "offers no challenge")
end)

t.test("pick: the error names the identifier, the type and the hooks",
  function()
  local web = { name = "webroot", types = { "http-01" } }
  local a = { identifier = { type = "dns", value = "example.com" },
    wildcard = true, challenges = chals("dns-01") }
  local ch, err = issuance.pick({ web }, a)
  t.eq(ch, nil)
  t.eq(err.kind, "unsolvable")
  t.eq(err.detail, "no hook solves dns-01 for *.example.com; configured: " ..
    "webroot (http-01)")
  local ip = { identifier = { type = "ip", value = "192.0.2.1" },
    challenges = chals("dns-01") }
  ch, err = issuance.pick({ web }, ip)
  t.match(err.detail, "offers no challenge luacme may use for 192%.0%.2%.1 " ..
    "%(offered: dns%-01%)")
  local plain = { identifier = { type = "dns", value = "a.example" },
    challenges = chals("http-01", "dns-01") }
  ch, err = issuance.pick({}, plain)
  t.eq(err.detail, "no hook solves http-01 or dns-01 for a.example; " ..
    "configured: none")
end)

t.test("a whole issuance: grouped deploy, ready, accept, cleanup", function()
  local c, ca, clock = setup()
  local log = {}
  local web = fake_hook("web", { "http-01" }, log)
  local dns = fake_hook("dns", { "dns-01" }, log, { ready_after = 2 })
  local ev, on_event = events()
  local res, err = issuance.issue(c, {
    identifiers = ids("a.example", "*.a.example", "b.example", "192.0.2.7"),
    csr = "csr-der", hooks = { web, dns }, on_event = on_event,
    now = clock.now, sleep = clock.sleep, timeout = 60 })
  t.ok(res, tostring(err))
  t.eq(#res.items, 4)
  -- Deploys grouped per hook in the order the hooks were given.
  local deploys = {}
  for _, l in ipairs(log) do
    if l:find("^deploy") then deploys[#deploys + 1] = l end
  end
  t.eq(#deploys, 4)
  for i = 1, 3 do t.match(deploys[i], "^deploy web http%-01 ") end
  t.eq(deploys[4], "deploy dns dns-01 *.a.example")
  -- ready() polled until true (3 rounds), with sleeps between.
  t.eq(count(log, "ready dns"), 3)
  local waits = 0
  for _, e in ipairs(ev) do
    if e.name == "ready_wait" then
      waits = waits + 1
      -- The hook's reason reaches -v and --json.
      t.eq(e.fields.reason, "ns1 does not serve it yet (" .. waits .. ")")
      t.match(e.text, ": ns1 does not serve it yet %(" .. waits .. "%)$")
    end
  end
  t.eq(waits, 2, "a progress event per round still waiting")
  -- Every deployed challenge was accepted after all deploys and ready.
  local accepts = 0
  for _, rec in ipairs(ca.log) do
    if rec.method == "POST" and rec.url:find("/chalZ/") and
      rec.payload == "{}" then accepts = accepts + 1 end
  end
  t.eq(accepts, 4)
  -- Cleaned up once each, after the order was decided.
  t.eq(count(log, "cleanup"), 4)
  t.eq(count(log, "cleanup web"), 3)
  local last_ready, first_cleanup
  for i, l in ipairs(log) do
    if l:find("^ready") then last_ready = i end
    if l:find("^cleanup") and not first_cleanup then first_cleanup = i end
  end
  t.ok(first_cleanup > last_ready)
  -- Events name each identifier and hook.
  local deployed = {}
  for _, e in ipairs(ev) do
    if e.name == "deployed" then deployed[#deployed + 1] = e.text end
  end
  t.eq(#deployed, 4)
  t.ok(table.concat(deployed, "\n"):find("*.a.example: dns-01 deployed " ..
    "via dns", 1, true))
end)

t.test("cleanup runs when the CA refuses a challenge; invalid() told",
  function()
  local c, ca, clock = setup{ validate = function(a)
    if a.identifier.value == "bad.example" then
      return { type = URN .. "unauthorized", detail = "got 404",
        status = 403 }
    end
    return true
  end }
  local log = {}
  local web = fake_hook("web", { "http-01" }, log, { events = true })
  local sess = hooks.session({ web })
  t.ok(sess:start())
  local res, err = issuance.issue(c, { identifiers = ids("ok.example",
    "bad.example"), csr = "x", hooks = { web }, now = clock.now,
    sleep = clock.sleep, timeout = 60 })
  t.eq(res, nil)
  t.eq(err.kind, "authorization")
  t.eq(err.identifier.value, "bad.example")
  t.eq(err.type, URN .. "unauthorized")
  sess:failure(err)
  sess:close()
  t.eq(count(log, "cleanup"), 2, "both cleaned up")
  t.eq(count(log, "invalid web bad.example " .. URN .. "unauthorized"), 1)
  t.eq(count(log, "invalid web ok.example"), 0)
  t.eq(log[1], "startup web")
  t.eq(count(log, "failure web"), 1)
  t.eq(log[#log], "exit web")
  local finalize = 0
  for _, rec in ipairs(ca.log) do
    if rec.url:find("/finalize%-order/") then finalize = finalize + 1 end
  end
  t.eq(finalize, 0)
end)

t.test("a failed deploy is cleaned up too and nothing is accepted",
  function()
  local c, ca, clock = setup()
  local log = {}
  local web = fake_hook("web", { "http-01" }, log,
    { fail_deploy = "two.example" })
  local res, err = issuance.issue(c, { identifiers = ids("one.example",
    "two.example", "three.example"), csr = "x", hooks = { web },
    now = clock.now, sleep = clock.sleep, timeout = 60 })
  t.eq(res, nil)
  t.eq(err.kind, "hook")
  t.match(err.detail, "two%.example: http%-01 via web: .*disk full")
  t.eq(err.identifier.value, "two.example")
  -- Deploy stops at the failure; what was attempted is cleaned up.
  local deployed = count(log, "deploy")
  t.eq(count(log, "cleanup"), deployed)
  t.ok(log[#log]:find("^cleanup"))
  for _, rec in ipairs(ca.log) do
    t.ok(not (rec.url:find("/chalZ/") and rec.payload == "{}"),
      "no challenge accepted")
  end
end)

t.test("Ctrl-C while the order is polled: cleanup, then the error",
  function()
  local c, ca, clock = setup{ validation_delay = 5 }
  local log = {}
  local web = fake_hook("web", { "http-01" }, log)
  local sleeps = 0
  local function sleep(s)
    sleeps = sleeps + 1
    -- What core.sleep + the signal hook do: raise inside Lua.
    if sleeps == 3 then
      error({ kind = "interrupted", detail = "interrupted by signal" }, 0)
    end
    clock.sleep(s)
  end
  c.sleep = sleep
  local ok, err = pcall(issuance.issue, c, { identifiers = ids("a.example",
    "b.example"), csr = "x", hooks = { web }, now = clock.now,
    sleep = clock.sleep, timeout = 60 })
  t.eq(ok, false)
  t.eq(type(err), "table")
  t.eq(err.kind, "interrupted")
  t.eq(count(log, "deploy"), 2)
  t.eq(count(log, "cleanup"), 2, "each cleaned exactly once")
end)

t.test("Ctrl-C inside a hook's deploy: what was started is cleaned",
  function()
  local c, ca, clock = setup()
  local log = {}
  local web = fake_hook("web", { "http-01" }, log)
  local dns = fake_hook("dns", { "dns-01" }, log, { raise_in = "deploy" })
  local ok, err = pcall(issuance.issue, c, { identifiers = ids("a.example",
    "*.a.example"), csr = "x", hooks = { web, dns }, now = clock.now,
    sleep = clock.sleep, timeout = 60 })
  t.eq(ok, false)
  t.eq(err.kind, "interrupted")
  t.eq(count(log, "deploy web"), 1)
  t.eq(count(log, "deploy dns"), 1)
  t.eq(count(log, "cleanup web"), 1)
  t.eq(count(log, "cleanup dns"), 1)
end)

t.test("Ctrl-C during cleanup still cleans the rest, then raises",
  function()
  local c, ca, clock = setup()
  local log = {}
  local web = fake_hook("web", { "http-01" }, log)
  local n = 0
  local orig = web.cleanup
  web.cleanup = function(ch, opts)
    n = n + 1
    orig(ch, opts)
    if n == 1 then
      error({ kind = "interrupted", detail = "interrupted by signal" }, 0)
    end
    return true
  end
  local ok, err = pcall(issuance.issue, c, { identifiers = ids("a.example",
    "b.example", "c.example"), csr = "x", hooks = { web },
    now = clock.now, sleep = clock.sleep, timeout = 60 })
  t.eq(ok, false)
  t.eq(err.kind, "interrupted")
  t.eq(count(log, "cleanup"), 3)
end)

t.test("ready() that never says yes ends in a deadline error", function()
  local c, ca, clock = setup()
  local log = {}
  local dns = fake_hook("dns", { "dns-01" }, log, { ready_after = 1e9 })
  local res, err = issuance.issue(c, { identifiers = ids("*.z.example"),
    csr = "x", hooks = { dns }, now = clock.now, sleep = clock.sleep,
    timeout = 600, ready_timeout = 20 })
  t.eq(res, nil)
  t.eq(err.kind, "deadline")
  t.match(err.detail, "%*%.z%.example was not visible")
  t.ok(clock.t - 1700000000 <= 25, "gave up near the ready timeout")
  t.eq(count(log, "cleanup"), 1)
end)

-- A#9.4: --timeout bounds the whole issuance, ready() waits included
-- (a 20 s ready() with --timeout 10 ran 22.5 s and showed "/ 300 s").
t.test("the run's timeout bounds the ready() waits; progress shows it",
  function()
  local c, ca, clock = setup()
  local log = {}
  local dns = fake_hook("dns", { "dns-01" }, log, { ready_after = 1e9 })
  local seen
  local inner = dns.ready
  function dns.ready(ch, opts)
    seen = ch.deadline
    return inner(ch, opts)
  end
  local ev, on_event = events()
  local t0 = clock.t
  local res, err = issuance.issue(c, { identifiers = ids("*.z.example"),
    csr = "x", hooks = { dns }, now = clock.now, sleep = clock.sleep,
    timeout = 10, on_event = on_event })
  t.eq(res, nil)
  t.eq(err.kind, "deadline")
  t.ok(clock.t - t0 <= 10, "ended within the 10 s timeout: " .. (clock.t - t0))
  t.ok(seen and seen <= t0 + 10, "ready() is told the deadline")
  for _, e in ipairs(ev) do
    if e.name == "ready_wait" then
      t.ok(e.fields.timeout <= 10, "ready_wait shows the real limit: " ..
        e.fields.timeout)
      t.ok(not e.text:find("/ 300 s", 1, true), e.text)
    end
  end
  t.eq(count(log, "cleanup"), 1)
end)

-- dns_wait sleeps inside ready(): it must not sleep past ch.deadline.
t.test("dns.ready with dns_wait stops at the deadline it is given",
  function()
  local dns = require "luacme.dns"
  local now, slept = 100, {}
  local save_now, save_sleep = dns.now, dns.sleep
  dns.now = function() return now end
  dns.sleep = function(s) slept[#slept + 1] = s; now = now + s end
  local ch = { type = "dns-01", name = "_acme-challenge.dw.example.",
    value = "v", domain = "dw.example", deadline = 105 }
  dns.deployed(ch)
  local ok, r, why = pcall(dns.ready, ch, { dns_wait = "20" })
  dns.now, dns.sleep = save_now, save_sleep
  dns.forget(ch)
  t.ok(ok, r)
  t.eq(r, nil, "not ready: the wait would pass the deadline")
  t.match(tostring(why), "dns_wait")
  t.eq(table.concat(slept, ","), "5")
end)

t.test("ready(): nil, why means not yet; raising fails at once", function()
  local c, _, clock = setup()
  local log = {}
  local dns = fake_hook("dns", { "dns-01" }, log)
  local calls = 0
  dns.ready = function()
    calls = calls + 1
    if calls < 3 then return nil, "TXT not at ns1 yet" end
    return true
  end
  assert(issuance.issue(c, { identifiers = ids("*.r.example"), csr = "x",
    hooks = { dns }, now = clock.now, sleep = clock.sleep, timeout = 60 }))
  t.eq(calls, 3)
  -- The reason shows when the deadline passes.
  dns.ready = function() return nil, "TXT not at ns2" end
  local res, err = issuance.issue(c, { identifiers = ids("*.s.example"),
    csr = "x", hooks = { dns }, now = clock.now, sleep = clock.sleep,
    timeout = 600, ready_timeout = 10 })
  t.eq(res, nil)
  t.eq(err.kind, "deadline")
  t.match(err.detail, "not visible after %d+ s: TXT not at ns2")
  t.eq(err.identifier.value, "s.example")
  -- A raise is a failure right away, and cleanup still runs.
  local before = count(log, "cleanup")
  dns.ready = function() error("resolver crashed") end
  res, err = issuance.issue(c, { identifiers = ids("*.u.example"), csr = "x",
    hooks = { dns }, now = clock.now, sleep = clock.sleep, timeout = 60 })
  t.eq(res, nil)
  t.eq(err.kind, "hook")
  t.match(err.detail, "hook dns: ready: .*resolver crashed")
  t.eq(count(log, "cleanup") - before, 1)
end)

t.test("a run-wide session starts each spec once, exits all at the end",
  function()
  local log = {}
  local a = fake_hook("a", { "http-01" }, log, { events = true })
  local b = fake_hook("b", { "dns-01" }, log, { events = true })
  local a2 = fake_hook("a", { "http-01" }, log, { events = true })
  do
    local sess <close> = hooks.session(function() end)
    t.ok(sess:add({ a, b }))
    t.ok(sess:add({ a2, b }), "a2 has a's spec: not started again")
    sess:failure({ detail = "x" }, { b })
  end
  t.eq(table.concat(log, ","), "startup a,startup b,failure b,exit a,exit b")
end)

t.test("no hook for a wildcard: the clear error, nothing deployed",
  function()
  local c, ca, clock = setup()
  local log = {}
  local web = fake_hook("webroot", { "http-01" }, log)
  local res, err = issuance.issue(c, { identifiers = ids("example.com",
    "*.example.com"), csr = "x", hooks = { web }, now = clock.now,
    sleep = clock.sleep, timeout = 60 })
  t.eq(res, nil)
  t.eq(err.kind, "unsolvable")
  t.eq(err.detail, "no hook solves dns-01 for *.example.com; configured: " ..
    "webroot (http-01)")
  t.eq(#log, 0)
end)

t.test("a failing cleanup is reported and the others still run", function()
  local c, ca, clock = setup()
  local log = {}
  local web = fake_hook("web", { "http-01" }, log, { fail_cleanup = true })
  local ev, on_event = events()
  local res = assert(issuance.issue(c, { identifiers = ids("a.example",
    "b.example"), csr = "x", hooks = { web }, on_event = on_event,
    now = clock.now, sleep = clock.sleep, timeout = 60 }))
  t.ok(res.certs)
  t.eq(count(log, "cleanup"), 2)
  local bad = 0
  for _, e in ipairs(ev) do
    if e.name == "cleanup" and e.fields.ok == false then
      bad = bad + 1
      t.match(e.fields.error, "cannot remove")
    end
  end
  t.eq(bad, 2)
end)

t.test("session: startup once per spec, exit always", function()
  local log = {}
  local a = fake_hook("a", { "http-01" }, log, { events = true })
  local b = fake_hook("b", { "dns-01" }, log, { events = true })
  b.startup = function() log[#log + 1] = "startup b"; return nil, "no" end
  do
    local sess <close> = hooks.session({ a, a, b })
    local ok, err = sess:start()
    t.eq(ok, nil)
    t.match(err.detail, "hook b: startup: no")
  end
  t.eq(table.concat(log, ","), "startup a,startup b,exit a,exit b")
end)

t.test("progress while the order is polled", function()
  local c, ca, clock = setup{ validation_delay = 3 }
  local log = {}
  local web = fake_hook("web", { "http-01" }, log)
  local ev, on_event = events()
  assert(issuance.issue(c, { identifiers = ids("a.example", "b.example"),
    csr = "x", hooks = { web }, on_event = on_event, now = clock.now,
    sleep = clock.sleep, timeout = 60 }))
  local waiting
  for _, e in ipairs(ev) do
    if e.name == "waiting" and not e.fields.finalizing then waiting = e end
  end
  t.ok(waiting, "a waiting event")
  t.eq(waiting.fields.pending, 2)
  t.match(waiting.text, "^waiting for 2 authorizations %(%d+%.%d s / 60 s%)$")
  -- with a deadline given, the limit shown is the time that was left
  local c2, _, clock2 = setup{ validation_delay = 3 }
  local ev2, on_event2 = events()
  assert(issuance.issue(c2, { identifiers = ids("a.example"), csr = "x",
    hooks = { fake_hook("web", { "http-01" }, {}) }, on_event = on_event2,
    now = clock2.now, sleep = clock2.sleep,
    deadline = clock2.now() + 42 }))
  waiting = nil
  for _, e in ipairs(ev2) do
    if e.name == "waiting" then waiting = e end
  end
  t.ok(waiting, "a waiting event")
  t.match(waiting.text, "/ 42 s%)$")
end)

---------------------------------------------------------------------------
-- Large orders: authorizations read and challenges accepted several at
-- once (issuance.width).

t.test("width: serial up to 20, one more per 20, bounded", function()
  t.eq(issuance.width(0), 1)
  t.eq(issuance.width(1), 1)
  t.eq(issuance.width(20), 1, "orders of up to 20 names stay serial")
  t.eq(issuance.width(21), 2)
  t.eq(issuance.width(100), 5)
  t.eq(issuance.width(100, issuance.ACCEPT_PARALLEL), 3)
  t.eq(issuance.width(1000), issuance.PARALLEL)
end)

-- Gives the fake CA's transport a start(): the CA answers at once, but
-- the task gets the reply only after yielding to the loop, so every
-- task that can go sends before any reply is read, as with real
-- transfers in flight. stats.most: the most requests in flight at once
-- per URL part ("/authZ/", "/chalZ/"); stats.fault = fn(req) -> "lost"
-- (the CA acts, the reply is lost) or a status (a gateway's reply, the
-- CA never sees it), nil for none.
local function in_flight(c, ca)
  local stats = { most = {}, now = {} }
  local function part(url)
    return url:match("/(%a+)/") or url
  end
  c.transport = setmetatable({
    start = function(_, req)
      local p = part(req.url)
      stats.now[p] = (stats.now[p] or 0) + 1
      stats.most[p] = math.max(stats.most[p] or 0, stats.now[p])
      local fault = stats.fault and stats.fault(req)
      local r
      if fault == "lost" then
        ca:request(req)
        r = table.pack(nil, "fake: reply lost", "timeout")
      elseif fault then
        r = table.pack(fault, { ["content-type"] = "text/plain" }, "gateway")
      else
        r = table.pack(ca:request(req))
      end
      return { done = function() return true end, cancel = function() end,
        result = function()
          stats.now[p] = stats.now[p] - 1
          return table.unpack(r, 1, r.n)
        end }
    end,
  }, { __index = ca })
  return stats
end

local function many(prefix, n)
  local out = {}
  for i = 1, n do out[i] = prefix .. i .. ".example" end
  return out
end

-- Accepts sent (those the CA answered with 200 when ok_only).
local function accepted(ca, ok_only)
  local n = 0
  for _, rec in ipairs(ca.log) do
    if rec.method == "POST" and rec.url:find("/chalZ/") and
      rec.payload == "{}" and (not ok_only or rec.status == 200) then
      n = n + 1
    end
  end
  return n
end

t.test("100 names: reads and accepts in flight together, nonces once",
  function()
  -- A CA 50 ms away; a third of the nonces refused (by their random
  -- first byte): the badNonce retries run while other requests are in
  -- flight.
  local c, ca, clock = setup{ latency = 0.05, reject_nonce = function(n)
    return n:byte(1) % 3 == 0
  end }
  local flight = in_flight(c, ca)
  local log = {}
  local heads0 = #ca:find("HEAD")
  local res, err = sched.all({ function()
    return issuance.issue(c, { identifiers = ids(table.unpack(
      many("n", 100))), csr = "x", hooks = { fake_hook("web",
      { "http-01" }, log) }, now = clock.now, sleep = clock.sleep,
      timeout = 60 })
  end })[1]
  res, err = res and res[1], res and res[2]
  t.ok(res, tostring(err))
  t.eq(#res.items, 100)
  t.eq(flight.most.authZ, issuance.width(100), "reads in flight at once")
  t.eq(flight.most.chalZ, issuance.width(100, issuance.ACCEPT_PARALLEL),
    "accepts in flight at once")
  t.eq(accepted(ca, true), 100)
  local seen, twice = {}, 0
  for _, rec in ipairs(ca.log) do
    local n = rec.protected and rec.protected.nonce
    if n then
      if seen[n] then twice = twice + 1 end
      seen[n] = true
    end
  end
  t.eq(twice, 0, "no nonce signed twice")
  t.ok(c:stats().bad_nonces >= 10, "badNonce retried: " ..
    c:stats().bad_nonces)
  t.ok(#ca:find("HEAD") - heads0 <= issuance.width(100) - 1,
    "newNonce only to ramp up: " .. (#ca:find("HEAD") - heads0))
  t.eq(count(log, "cleanup"), 100)
end)

t.test("outside a task too: a large order reads several at once",
  function()
  local c, ca, clock = setup{ latency = 0.05 }
  local flight = in_flight(c, ca)
  local res, err = issuance.issue(c, { identifiers = ids(table.unpack(
    many("o", 30))), csr = "x", hooks = { fake_hook("web", { "http-01" },
    {}) }, now = clock.now, sleep = clock.sleep, timeout = 60 })
  t.ok(res, tostring(err))
  t.eq(flight.most.authZ, 2)
  t.eq(flight.most.chalZ, 2)
end)

t.test("a CA close by: reads at once, accepts one at a time", function()
  -- 4 ms a request: the CA's replies pace the accepts (M.REMOTE_RTT).
  local c, ca, clock = setup{ latency = 0.004 }
  local flight = in_flight(c, ca)
  local res, err = issuance.issue(c, { identifiers = ids(table.unpack(
    many("near", 100))), csr = "x", hooks = { fake_hook("web",
    { "http-01" }, {}) }, now = clock.now, sleep = clock.sleep,
    timeout = 60 })
  t.ok(res, tostring(err))
  t.eq(flight.most.authZ, issuance.width(100))
  t.eq(flight.most.chalZ, 1)
  t.eq(accepted(ca, true), 100)
end)

t.test("a failed read: the first in the order's list, none started after",
  function()
  local c, ca, clock = setup()
  in_flight(c, ca)
  local get = c.get_authorization
  local calls = 0
  -- Read 5 fails after its request, read 6 before any: 6 fails first
  -- in time, yet 5 is what a serial loop reports.
  c.get_authorization = function(self, url)
    calls = calls + 1
    local n = calls
    if n == 6 then return nil, errors.new("transport", "read 6 failed") end
    local a, err = get(self, url)
    if n == 5 then return nil, errors.new("transport", "read 5 failed") end
    return a, err
  end
  local log = {}
  local res, err = issuance.issue(c, { identifiers = ids(table.unpack(
    many("f", 30))), csr = "x", hooks = { fake_hook("web", { "http-01" },
    log) }, now = clock.now, sleep = clock.sleep, timeout = 60 })
  t.eq(res, nil)
  t.eq(err.kind, "transport")
  t.eq(err.detail, "read 5 failed")
  t.eq(calls, 6, "no read started after the failure")
  t.eq(count(log, "deploy"), 0, "nothing deployed")
  t.eq(accepted(ca), 0)
end)

t.test("a failed accept: that error, no more accepts, all cleaned up",
  function()
  local c, ca, clock = setup{ latency = 0.05 }
  in_flight(c, ca)
  local accept = c.accept
  local calls = 0
  c.accept = function(self, ch)
    calls = calls + 1
    if calls == 4 then
      local e = errors.new("http", "HTTP 502 from " .. ch.uri)
      e.uncertain = true
      return nil, e
    end
    return accept(self, ch)
  end
  local log = {}
  local res, err = issuance.issue(c, { identifiers = ids(table.unpack(
    many("x", 30))), csr = "x", hooks = { fake_hook("web", { "http-01" },
    log) }, now = clock.now, sleep = clock.sleep, timeout = 60 })
  t.eq(res, nil)
  t.eq(err.kind, "http")
  t.match(err.detail, "^HTTP 502")
  t.ok(calls <= 4 + issuance.width(30, issuance.ACCEPT_PARALLEL) - 1,
    "accepts after the failure: " .. calls)
  t.eq(count(log, "deploy"), 30)
  t.eq(count(log, "cleanup"), 30, "every deployed challenge cleaned up")
  for _, rec in ipairs(ca.log) do
    t.ok(not rec.url:find("/finalize%-order/"), "no finalize")
  end
end)

t.test("uncertain accepts among those in flight are read back", function()
  local c, ca, clock = setup{ latency = 0.05 }
  local flight = in_flight(c, ca)
  -- The first two accepts go out together: the first reaches the CA
  -- but its reply is lost; the second gets a gateway's 502 without
  -- reaching it.
  local faults = { "lost", 502 }
  flight.fault = function(req)
    if req.method == "POST" and req.url:find("/chalZ/") and
      fake.decode_jws(req.body).payload == "{}" then
      return table.remove(faults, 1)
    end
  end
  local res, err = issuance.issue(c, { identifiers = ids(table.unpack(
    many("u", 30))), csr = "x", hooks = { fake_hook("web", { "http-01" },
    {}) }, now = clock.now, sleep = clock.sleep, timeout = 60 })
  t.ok(res, tostring(err))
  t.eq(#faults, 0, "both faults met")
  t.eq(flight.most.chalZ, 2, "the accepts were in flight together")
  -- Each uncertain accept was read back; the 502 one, which the CA
  -- never saw, was found pending and sent again; the lost one only if
  -- its validation was not done by then. Every challenge reached the CA.
  local reached = {}
  for _, rec in ipairs(ca.log) do
    if rec.url:find("/chalZ/") and rec.payload == "{}" and
      rec.status == 200 then reached[rec.url] = true end
  end
  local n = 0
  for _ in pairs(reached) do n = n + 1 end
  t.eq(n, 30, "every challenge accepted at the CA")
  t.eq(#ca:find("POST", "/chalZ/") - accepted(ca), 2, "two read-backs")
end)

t.test("one still pending when another made the order invalid: not failed",
  function()
  local c, ca, clock = setup{ validate = function(a)
    if a.identifier.value == "bad.example" then
      return { type = URN .. "unauthorized", detail = "got 404",
        status = 403 }
    end
    return true
  end }
  -- The CA is still validating slow.example when the order goes invalid
  -- (Pebble: the other validations go on): its read says pending.
  local get = c.get_authorization
  c.get_authorization = function(self, url)
    local a, err = get(self, url)
    if a and a.identifier.value == "slow.example" and
      a.status == "valid" then
      a.status = "pending"
    end
    return a, err
  end
  local log = {}
  local res, err = issuance.issue(c, { identifiers = ids("ok.example",
    "slow.example", "bad.example"), csr = "x", hooks = { fake_hook("web",
    { "http-01" }, log) }, now = clock.now, sleep = clock.sleep,
    timeout = 60 })
  t.eq(res, nil)
  t.eq(err.kind, "authorization")
  t.eq(err.identifier.value, "bad.example", "the one that failed")
  t.eq(#err.errors, 1)
  t.eq(err.type, URN .. "unauthorized")
  t.eq(count(log, "cleanup"), 3)
end)
