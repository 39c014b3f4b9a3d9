-- Ambiguous replies (issue 9, item 1): every kind of non-idempotent POST,
-- with its reply lost in every way tests/e2e/faultproxy.py can lose it,
-- still ends with the work done exactly once at Pebble. The proxy lets
-- the request reach Pebble first (the CA did the work), then cuts the
-- reply after the status line or inside the body, closes without a
-- reply, resets the connection, or answers 500/502/503/504 instead of
-- Pebble's reply; one more cut point drops the request before Pebble
-- sees it. What Pebble did is read from the proxy's log (Pebble's own
-- status for every request) and Pebble's management interface, not
-- from the client under test.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local t = require "testlib"
local E = require "e2e"
local acme = require "luacme"
local core = require "luacme.core"
local cjson = require "cjson.safe"

-- The cut points: the request reached Pebble in all but the last.
local CUTS = {
  { name = "cut after status line", action = "cut_status" },
  { name = "cut mid-body", action = "cut_body" },
  { name = "empty reply", action = "empty" },
  { name = "reset before reply", action = "reset" },
  { name = "500", action = "status", status = 500 },
  { name = "502", action = "status", status = 502 },
  { name = "503", action = "status", status = 503 },
  { name = "504", action = "status", status = 504 },
  { name = "reset, not sent on", action = "reset", forward = false },
  -- Pebble answers, the proxy holds the reply past the client's
  -- timeout.
  { name = "reply after the client's timeout", action = "delay", delay = 2.5,
    timeout = 1 },
}

local figures = { faults = 0, certs = 0, duplicates = 0, ops = 0 }

local function rules(list)
  E.curl_post_json(E.env.proxy_control .. "/rules", { rules = list })
end

local function proxy_log()
  local out = E.must("curl -sS --fail " .. E.q(E.env.proxy_control .. "/log"))
  return assert(cjson.decode(out))
end

-- Entries of the proxy log after index from whose path matches pat.
local function seen(from, pat, status)
  local n = 0
  local log = proxy_log()
  for i = from + 1, #log do
    local e = log[i]
    if e.path:find(pat) and (status == nil or e.upstream == status) then
      n = n + 1
    end
  end
  return n
end

-- The faults that fired since log index from.
local function fired(from)
  local n = 0
  local log = proxy_log()
  for i = from + 1, #log do
    if log[i].rule ~= cjson.null then n = n + 1 end
  end
  return n
end

-- Retry waits and polls shortened, not removed: the suite runs 72
-- scenarios and a 503's backoff would otherwise dominate it.
local function short_sleep(s) core.sleep(math.min(s, 0.1)) end

-- A client through the proxy; opts.timeout (a cut's), opts.kid.
local function client(key, opts)
  opts = opts or {}
  key = key or assert(core.key_generate("ec256"))
  return acme.client{ directory = E.env.proxy_directory, key = key,
    ca_file = E.env.ca_file, sleep = short_sleep, timeout = opts.timeout,
    kid = opts.kid }, key
end

local function account(key, opts)
  local c, k = client(key, opts)
  local a, err = c:register({ contact = { "mailto:f@example.test" } },
    acme.accept_tos)
  assert(a, "register: " .. tostring(err))
  return c, a, k
end

-- A forwarded fault hits a request Pebble carried out (2xx), not one
-- it refused with badNonce (5% of nonces), which would test the easier
-- case of nothing done.
local function rule(cut, method_path, payload)
  return { method = "POST", path = method_path, payload = payload,
    action = cut.action, status = cut.status, forward = cut.forward,
    delay = cut.delay, success = cut.forward ~= false }
end

-- One issuance through client:issue (the only issuance path) with the
-- harness's webroot; returns the result or raises.
local function issue(c, name)
  local r, err = E.lib_issue(c, { name }, E.webroot_solver())
  assert(r, "issue " .. name .. ": " .. tostring(err))
  return r
end

local function check_cert(r, name)
  local sans = E.sans(r.certs[1])
  t.ok(E.same_list(sans, { "DNS:" .. name }), "SANs " .. E.list_str(sans))
  local ok, out = E.verify_chain(r.certs, E.root_pem(0))
  t.ok(ok, "chain verifies: " .. out)
  figures.certs = figures.certs + 1
end

-- The issuance kinds: the fault hits the POST named by path/payload
-- during a whole issuance; Pebble must have created exactly one order.
local ISSUE_KINDS = {
  { kind = "newOrder", path = "^/order-plz$" },
  { kind = "challenge accept", path = "^/chalZ/", payload = "^{}$" },
  { kind = "finalize", path = "^/finalize-order/" },
}

for _, k in ipairs(ISSUE_KINDS) do
  for _, cut in ipairs(CUTS) do
    t.test(k.kind .. ": " .. cut.name, function()
      local c = account(nil, cut)
      local from = #proxy_log()
      rules({ rule(cut, k.path, k.payload) })
      local name = E.name("f")
      local r = issue(c, name)
      check_cert(r, name)
      t.eq(fired(from), 1, "the fault fired")
      figures.faults = figures.faults + 1
      local orders = seen(from, "^/order%-plz", 201)
      if orders > 1 then
        figures.duplicates = figures.duplicates + orders - 1
      end
      t.eq(orders, 1, "orders Pebble created")
      -- Pebble's own list of the account's orders agrees.
      local urls = assert(c:list_orders())
      t.eq(#urls, 1, "orders in the account's list")
      rules({})
    end)
  end
end

t.test("newAccount: every cut point", function()
  for _, cut in ipairs(CUTS) do
    local from = #proxy_log()
    rules({ rule(cut, "^/sign-me-up$", "termsOfServiceAgreed") })
    local c, key = client(nil, cut)
    local a, err = c:register({ contact = { "mailto:f@example.test" } },
      acme.accept_tos)
    t.ok(a, cut.name .. ": register: " .. tostring(err))
    t.eq(fired(from), 1, cut.name .. ": the fault fired")
    figures.faults = figures.faults + 1
    -- Exactly one account was created (201) for the key, and a fresh
    -- client finds it by key under the same URL.
    t.eq(seen(from, "^/sign%-me%-up", 201), 1, cut.name ..
      ": accounts created")
    local found = assert(client(key):get_reg())
    t.eq(found.uri, a and a.uri, cut.name .. ": same account")
    figures.ops = figures.ops + 1
    rules({})
  end
end)

t.test("keyChange: every cut point", function()
  for _, cut in ipairs(CUTS) do
    local c, a, old = account(nil, cut)
    local new = assert(core.key_generate("ec256"))
    local from = #proxy_log()
    rules({ rule(cut, "^/rollover-account-key$") })
    local ok, err = c:account_key_rollover(new)
    t.ok(ok, cut.name .. ": rollover: " .. tostring(err))
    t.eq(fired(from), 1, cut.name .. ": the fault fired")
    figures.faults = figures.faults + 1
    rules({})
    -- The new key holds the account; the old one no longer has one.
    local r = client(new):get_reg()
    t.eq(r and r.uri, a.uri, cut.name .. ": new key finds the account")
    local _, gerr = client(old):get_reg()
    t.eq(gerr and gerr.kind, "no_account", cut.name .. ": old key is out")
    figures.ops = figures.ops + 1
  end
end)

t.test("revokeCert: every cut point", function()
  local c, a, key = account()
  for _, cut in ipairs(CUTS) do
    local name = E.name("rv")
    local r = issue(c, name)
    check_cert(r, name)
    local from = #proxy_log()
    rules({ rule(cut, "^/revoke-cert$") })
    local ok, err = client(key, { timeout = cut.timeout, kid = a.uri }):
      revoke_cert(nil, r.certs[1], acme.CRL_REASON_SUPERSEDED)
    t.ok(ok, cut.name .. ": revoke: " .. tostring(err))
    t.eq(fired(from), 1, cut.name .. ": the fault fired")
    figures.faults = figures.faults + 1
    rules({})
    local st = E.cert_status(E.serial(r.certs[1]))
    t.eq(st.Status, "Revoked", cut.name .. ": Pebble shows it revoked")
    t.eq(st.Reason, acme.CRL_REASON_SUPERSEDED, cut.name .. ": reason")
    figures.ops = figures.ops + 1
  end
end)

t.test("account deactivation: every cut point", function()
  for _, cut in ipairs(CUTS) do
    local c, _, key = account(nil, cut)
    local from = #proxy_log()
    rules({ rule(cut, "^/my-account/", "deactivated") })
    local ok, err = c:deactivate_reg()
    t.ok(ok, cut.name .. ": deactivate: " .. tostring(err))
    t.eq(fired(from), 1, cut.name .. ": the fault fired")
    figures.faults = figures.faults + 1
    rules({})
    local _, gerr = client(key):get_reg()
    t.ok(gerr and (gerr.status == 401 or gerr.status == 403 or
      gerr.kind == "no_account"), cut.name .. ": the account is gone: " ..
      tostring(gerr))
    figures.ops = figures.ops + 1
  end
end)

t.test("authorization deactivation: every cut point", function()
  local c, a, key = account()
  for _, cut in ipairs(CUTS) do
    local o = assert(c:authorize_order(acme.domain_ids(E.name("ad"))))
    local from = #proxy_log()
    rules({ rule(cut, "^/authZ/", "deactivated") })
    local z, err = client(key, { timeout = cut.timeout, kid = a.uri }):
      revoke_authorization(o.authz_urls[1])
    t.ok(z, cut.name .. ": deactivate authz: " .. tostring(err))
    t.eq(z and z.status, "deactivated", cut.name .. ": status")
    t.eq(fired(from), 1, cut.name .. ": the fault fired")
    figures.faults = figures.faults + 1
    rules({})
    local back = assert(c:get_authorization(o.authz_urls[1]))
    t.eq(back.status, "deactivated", cut.name .. ": Pebble's view")
    figures.ops = figures.ops + 1
  end
end)

-- The command: `account rollover` whose keyChange gets a 504 after the
-- CA switched keys, and whose read-back fails as well. The run fails,
-- (the read-back gets an error page, so neither key can be confirmed),
-- but account.key.new stays on disk (the CA holds the account under
-- it); the next run reads the account back with it and finishes.
t.test("account rollover: a 504 and a failed read-back lose no key", function()
  local L = require "cli_lib"
  local state = L.state()
  local function run(args, want)
    local argv = { "--directory", E.env.proxy_directory, "--ca-bundle",
      E.env.ca_file, "--state", state }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    local st, out, err = L.run(nil, argv)
    t.eq(st, want, table.concat(args, " ") .. ": " .. out .. err)
    return out, err
  end
  run({ "account", "new", "--agree-tos" }, 0)
  local adir
  for line in E.must("ls -d " .. E.q(state) .. "/accounts/*"):gmatch(
    "[^\n]+") do adir = line end
  local old = E.readfile(adir .. "/account.key")
  local from = #proxy_log()
  rules({
    { method = "POST", path = "^/rollover-account-key$", action = "status",
      status = 504, success = true },
    { method = "POST", path = "^/sign-me-up$", payload = "onlyReturnExisting",
      action = "status", status = 400, count = 1000 },
  })
  run({ "account", "rollover" }, 1)
  rules({})
  t.ok(fired(from) >= 1, "the 504 fired")
  figures.faults = figures.faults + 1
  t.eq(seen(from, "^/rollover%-account%-key", 200), 1,
    "Pebble switched the key")
  local new = E.readfile(adir .. "/account.key.new")
  t.ok(new and new ~= old, "account.key.new kept")
  t.eq(E.readfile(adir .. "/account.key"), old, "account.key untouched")
  -- The next run settles it: the account answers to the new key.
  run({ "account", "show" }, 0)
  t.eq(E.readfile(adir .. "/account.key"), new, "the new key committed")
  t.eq(core.stat(adir .. "/account.key.new"), nil, "no leftover")
  local acct = assert(client(assert(core.key_load(new))):get_reg())
  t.ok(acct.uri, "the new key holds the account")
  figures.ops = figures.ops + 1
end)

t.test("figures", function()
  io.stderr:write(string.format("faults: %d injected, %d certificates " ..
    "issued, %d account/revocation operations finished, %d duplicate " ..
    "orders at Pebble\n", figures.faults, figures.certs, figures.ops,
    figures.duplicates))
  t.eq(figures.duplicates, 0)
end)
