-- Helpers for the end-to-end scenarios (tests/e2e/*_test.lua), which run
-- inside the luacme executable under pebble-env.py:
--   pebble-env.py [opts] -- luacme run tests/lua/run.lua tests/e2e/X_test.lua
-- Everything a scenario asserts is observed independently of the code
-- under test: certificates through the openssl command line, Pebble's
-- state through its management interface (curl), what the VA fetched
-- through the webroot server's access log, the requests Pebble handled
-- through its log.
local core = require "luacme.core"
local cjson = require "cjson.safe"

local M = {}

local function need(name)
  local v = os.getenv("LUACME_E2E_" .. name)
  if not v or v == "" then
    error("LUACME_E2E_" .. name .. " is not set: run the scenario under "
      .. "tests/e2e/pebble-env.py", 3)
  end
  return v
end

-- The facts pebble-env.py exported.
M.env = setmetatable({}, { __index = function(t, k)
  local map = {
    directory = "DIRECTORY", ca_file = "CA_FILE", mgmt = "MGMT",
    challtestsrv = "CHALLTESTSRV", webroot = "WEBROOT",
    http_port = "HTTP_PORT", tls_port = "TLS_PORT", dns_port = "DNS_PORT",
    workdir = "WORKDIR", config = "CONFIG", pebble_log = "PEBBLE_LOG",
    http_log = "HTTP_LOG", strict = "STRICT",
    proxy_directory = "PROXY_DIRECTORY", proxy_control = "PROXY_CONTROL",
  }
  assert(map[k], "no such e2e fact: " .. tostring(k))
  local v = need(map[k])
  rawset(t, k, v)
  return v
end })

-- Shell quoting for arguments built from test data.
function M.q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Run a shell command; returns ok, output (stdout and stderr).
function M.sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local ok = p:close()
  return ok, out
end

-- Like sh, but raises with the output when the command fails.
function M.must(cmd)
  local ok, out = M.sh(cmd)
  if not ok then error("command failed: " .. cmd .. "\n" .. out, 2) end
  return out
end

local function readfile(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end
M.readfile = readfile

local function writefile(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end
M.writefile = writefile

-- A directory for this scenario's files, inside the harness's work dir
-- (removed by the harness).
local scratch_n = 0
function M.scratch()
  scratch_n = scratch_n + 1
  local d = M.env.workdir .. "/scratch" .. scratch_n
  M.must("mkdir -p " .. M.q(d))
  return d
end

-- Unique DNS names, so that no test sees an authorization another test
-- left valid (Pebble reuses valid authorizations at random).
local name_n = 0
function M.name(prefix)
  name_n = name_n + 1
  return string.format("%s%d.example.test", prefix or "host", name_n)
end

function M.names(prefix, n)
  local t = {}
  for i = 1, n do t[i] = M.name(prefix) end
  return t
end

------------------------------------------------------------------------
-- Talking to Pebble's management interface and challtestsrv (curl).

function M.curl_get(url)
  local out = M.must("curl -sS --fail --cacert " .. M.q(M.env.ca_file)
    .. " " .. M.q(url))
  return out
end

function M.curl_post_json(url, tbl)
  return M.must("curl -sS --fail -X POST --data-binary "
    .. M.q(assert(cjson.encode(tbl))) .. " " .. M.q(url))
end

function M.mgmt_json(path)
  local body = M.curl_get(M.env.mgmt .. path)
  return assert(cjson.decode(body), "management reply is not JSON: " .. body)
end

-- PEM of Pebble's root N (0 = the default chain's root).
function M.root_pem(n)
  return M.curl_get(M.env.mgmt .. "/roots/" .. (n or 0))
end

-- Pebble's view of a certificate: {Status=, Serial=, Reason=, ...}.
function M.cert_status(serial_hex)
  return M.mgmt_json("/cert-status-by-serial/" .. serial_hex)
end

-- challtestsrv: add a TXT value (values at one host append).
function M.set_txt(host, value)
  M.curl_post_json(M.env.challtestsrv .. "/set-txt",
    { host = host, value = value })
end

function M.clear_txt(host)
  M.curl_post_json(M.env.challtestsrv .. "/clear-txt", { host = host })
end

-- The TXT values challtestsrv's DNS serves for name (what the VA sees).
function M.dns_txt(name)
  local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
  local out = M.must("python3 " .. M.q(here .. "/dnsq.py") .. " "
    .. M.env.dns_port .. " " .. M.q(name))
  local t = {}
  for line in out:gmatch("[^\n]+") do t[#t + 1] = line end
  table.sort(t)
  return t
end

-- Number of requests Pebble logged whose "METHOD /path" matches pat,
-- e.g. M.pebble_count("POST /chalZ/").  Pebble logs each request before
-- handling it, so a reply received means its line is already written.
function M.pebble_count(pat)
  local n = 0
  for line in (readfile(M.env.pebble_log) or ""):gmatch("[^\n]+") do
    if line:find(pat) then n = n + 1 end
  end
  return n
end

-- Lines of the webroot server's access log that mention s (plain).
function M.http_log_lines(s)
  local t = {}
  for line in (readfile(M.env.http_log) or ""):gmatch("[^\n]+") do
    if line:find(s, 1, true) then t[#t + 1] = line end
  end
  return t
end

------------------------------------------------------------------------
-- Certificates, through the openssl command line.

-- Write DER certificates as one PEM file; returns its path.
function M.pem_file(ders, path)
  local dir = M.scratch()
  local parts = {}
  for i, der in ipairs(ders) do
    local f = dir .. "/c" .. i .. ".der"
    writefile(f, der)
    parts[#parts + 1] = M.must("openssl x509 -inform DER -in " .. M.q(f))
  end
  path = path or (dir .. "/bundle.pem")
  writefile(path, table.concat(parts))
  return path
end

-- openssl x509 on one DER certificate.
function M.x509(der, args)
  local f = M.pem_file({ der })
  return M.must("openssl x509 -noout -in " .. M.q(f) .. " " .. args)
end

-- Sorted SANs as strings "DNS:a.test", "IP:127.0.0.1".
function M.sans(der)
  local out = M.x509(der, "-ext subjectAltName")
  local t = {}
  for item in out:gmatch("[^,\n]+") do
    item = item:gsub("^%s+", ""):gsub("%s+$", "")
    if item:find("^DNS:") then
      t[#t + 1] = item
    elseif item:find("^IP Address:") then
      t[#t + 1] = "IP:" .. item:sub(12)
    end
  end
  table.sort(t)
  return t
end

-- Upper-case hex serial as openssl prints it.
function M.serial(der)
  return (M.x509(der, "-serial"):match("serial=(%x+)"))
end

function M.issuer(der)
  return (M.x509(der, "-issuer -nameopt RFC2253"):match("issuer=([^\n]*)"))
end

function M.subject(der)
  return (M.x509(der, "-subject -nameopt RFC2253"):match("subject=([^\n]*)"))
end

local months = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6,
  Jul = 7, Aug = 8, Sep = 9, Oct = 10, Nov = 11, Dec = 12 }

-- "Nov 28 21:24:41 2026 GMT" -> Unix seconds (UTC).
local function gmt_time(s)
  local mon, d, H, Mi, S, y =
    s:match("(%a+)%s+(%d+) (%d+):(%d+):(%d+) (%d+) GMT")
  assert(mon, "cannot parse openssl date " .. tostring(s))
  -- Days from civil (Howard Hinnant), so no local time zone is involved.
  y, mon = tonumber(y), months[mon]
  local yy = mon <= 2 and y - 1 or y
  local era = yy // 400
  local yoe = yy - era * 400
  local mp = (mon + 9) % 12
  local doy = (153 * mp + 2) // 5 + tonumber(d) - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  local days = era * 146097 + doe - 719468
  return days * 86400 + tonumber(H) * 3600 + tonumber(Mi) * 60 + tonumber(S)
end
M.gmt_time = gmt_time

-- notBefore, notAfter as Unix seconds.
function M.validity(der)
  local out = M.x509(der, "-dates")
  return gmt_time(out:match("notBefore=([^\n]+)")),
    gmt_time(out:match("notAfter=([^\n]+)"))
end

-- Verify leaf = ders[1] with intermediates ders[2..] up to root_pem.
-- Returns ok, openssl's output.
function M.verify_chain(ders, root_pem)
  local dir = M.scratch()
  local root = dir .. "/root.pem"
  writefile(root, root_pem)
  local leaf = M.pem_file({ ders[1] }, dir .. "/leaf.pem")
  local rest = {}
  for i = 2, #ders do rest[#rest + 1] = ders[i] end
  local cmd = "openssl verify -CAfile " .. M.q(root)
  if #rest > 0 then
    cmd = cmd .. " -untrusted " .. M.q(M.pem_file(rest, dir .. "/chain.pem"))
  end
  local ok, out = M.sh(cmd .. " " .. M.q(leaf))
  return ok and out:find(": OK") ~= nil, out
end

------------------------------------------------------------------------
-- Solvers, in the hook shape of BRIEF.md: deploy(ch), cleanup(ch), where
-- ch carries type, identifier, token, key_authorization and the derived
-- path/body (http-01) or name/value (dns-01).

local TOKEN = "^[A-Za-z0-9_-]+$"

-- http-01 through the webroot that the harness's HTTP server serves.
-- content(ch) may override what is written (a wrong response).
function M.webroot_solver(content)
  local s = { types = { "http-01" }, written = {}, deployed = {} }
  function s.deploy(ch)
    assert(ch.token:find(TOKEN), "unsafe token " .. ch.token)
    local path = M.env.webroot .. "/.well-known/acme-challenge/" .. ch.token
    writefile(path, content and content(ch) or ch.body or ch.key_authorization)
    s.written[path] = true
    s.deployed[#s.deployed + 1] = ch
    return true
  end
  function s.cleanup(ch)
    local path = M.env.webroot .. "/.well-known/acme-challenge/" .. ch.token
    os.remove(path)
    s.written[path] = nil
    return true
  end
  return s
end

-- Names of the files left in the webroot's challenge directory.
function M.webroot_files()
  local out = M.must("ls -A " .. M.q(M.env.webroot
    .. "/.well-known/acme-challenge"))
  local t = {}
  for l in out:gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

-- dns-01 through challtestsrv's set-txt (values at one name append, so a
-- wildcard and its base name can be served at once); clear-txt removes
-- every value of the name, so it runs once the last user is gone.
function M.dns_solver()
  local s = { types = { "dns-01" }, users = {}, cleared = {}, deployed = {} }
  function s.deploy(ch)
    s.deployed[#s.deployed + 1] = ch
    s.users[ch.name] = (s.users[ch.name] or 0) + 1
    M.set_txt(ch.name, ch.value)
    return true
  end
  function s.cleanup(ch)
    s.users[ch.name] = s.users[ch.name] - 1
    if s.users[ch.name] == 0 then
      M.clear_txt(ch.name)
      s.cleared[#s.cleared + 1] = ch.name
    end
    return true
  end
  return s
end

------------------------------------------------------------------------
-- Clients and a plain issuance flow over the low-level API.

local acme_mod
local function acme()
  acme_mod = acme_mod or require "luacme"
  return acme_mod
end

-- A client for this Pebble with a fresh EC P-256 key (or opts.key).
function M.client(opts)
  opts = opts or {}
  local key = opts.key or assert(core.key_generate("ec256"))
  return acme().client{ directory = M.env.directory, key = key,
    ca_file = M.env.ca_file }, key
end

-- A client with a fresh, registered account.
function M.account(opts)
  local c, key = M.client(opts)
  local a, err = c:register({ contact = { "mailto:e2e@example.test" } },
    acme().accept_tos)
  if not a then error("register: " .. tostring(err), 2) end
  return c, a, key
end

local function pick(challenges, solver)
  for _, want in ipairs(solver.types) do
    for _, chal in ipairs(challenges) do
      if chal.type == want then return chal end
    end
  end
end

-- Work an order's authorizations with solver: deploy every pending
-- challenge, accept them all, wait for the order, clean up always.
-- Returns the order table once ready, or nil, err.
function M.solve(c, order, solver)
  local deployed = {}
  local function cleanup()
    for _, ch in ipairs(deployed) do solver.cleanup(ch) end
  end
  local ok, res, err = pcall(function()
    local todo = {}
    for _, url in ipairs(order.authz_urls) do
      local z, e = c:get_authorization(url)
      if not z then return nil, e end
      if z.status == "pending" then
        local chal = pick(z.challenges, solver)
        if not chal then return nil, "no solvable challenge for " .. z.identifier.value end
        local ch = assert(c:challenge_for(z, chal))
        deployed[#deployed + 1] = ch   -- cleaned up even if deploy fails
        local dok, derr = solver.deploy(ch)
        if not dok then return nil, derr end
        todo[#todo + 1] = chal
      elseif z.status ~= "valid" then
        return nil, "authorization " .. url .. " is " .. tostring(z.status)
      end
    end
    if solver.before_accept then solver.before_accept(deployed) end
    for _, chal in ipairs(todo) do
      local r, e = c:accept(chal)
      if not r then return nil, e end
    end
    return c:wait_order(order.uri)
  end)
  cleanup()
  if not ok then error(res, 0) end
  return res, err
end

-- Identifiers for names (strings; IP literals become ip identifiers),
-- and the CSR's names and ips.
function M.ids(names)
  local dns, ips = {}, {}
  for _, n in ipairs(names) do
    if n:find("^[%d.]+$") or n:find(":") then ips[#ips + 1] = n
    else dns[#dns + 1] = n end
  end
  local ids = {}
  if #dns > 0 then
    for _, id in ipairs(acme().domain_ids(table.unpack(dns))) do
      ids[#ids + 1] = id
    end
  end
  if #ips > 0 then
    for _, id in ipairs(acme().ip_ids(table.unpack(ips))) do
      ids[#ids + 1] = id
    end
  end
  return ids, dns, ips
end

-- Issue a certificate for names with solver over the low-level API
-- (authorize_order, get_authorization, accept, wait_order,
-- create_order_cert).  Returns {certs = {der...}, cert_url =, order =,
-- key =}, or nil, err, order (the order table when one was created).
-- opts: key (certificate key), order (authorize_order opts).
function M.issue(c, names, solver, opts)
  opts = opts or {}
  local ids, dns, ips = M.ids(names)
  local order, err = c:authorize_order(ids, opts.order)
  if not order then return nil, err end
  local ready
  ready, err = M.solve(c, order, solver)
  if not ready then return nil, err, order end
  local certkey = opts.key or assert(core.key_generate("ec256"))
  local csr = assert(core.csr{ key = certkey, names = dns, ips = ips })
  local certs, cert_url = c:create_order_cert(ready.finalize_url, csr, true)
  if not certs then return nil, cert_url, order end
  return { certs = certs, cert_url = cert_url, order = ready, key = certkey }
end

-- The same through the library's whole-issuance helper, client:issue
-- (lua/luacme/issuance.lua), with the per-challenge solver above as its
-- one hook; before_accept runs from the hook's ready(), which the
-- issuance calls once everything is deployed and before any accept.
-- Returns the same shape as M.issue plus items, or nil, err.
function M.lib_issue(c, names, solver, opts)
  opts = opts or {}
  local ids, dns, ips = M.ids(names)
  local certkey = opts.key or assert(core.key_generate("ec256"))
  local csr = assert(core.csr{ key = certkey, names = dns, ips = ips })
  local deployed, told = {}, false
  local hook = { name = "e2e", types = solver.types,
    deploy = function(ch)
      deployed[#deployed + 1] = ch
      return solver.deploy(ch)
    end,
    cleanup = function(ch) return solver.cleanup(ch) end }
  if solver.before_accept then
    function hook.ready()
      if not told then
        told = true
        solver.before_accept(deployed)
      end
      return true
    end
  end
  local res, err = c:issue{
    identifiers = ids, csr = csr, hooks = { hook },
    not_before = opts.not_before, not_after = opts.not_after,
    preferred_chain = opts.preferred_chain,
  }
  if not res then return nil, err end
  return { certs = res.certs, cert_url = res.cert_url, order = res.order,
    key = certkey, items = res.items }
end

-- Sorted copy of a list of strings.
function M.sorted(t)
  local r = {}
  for i, v in ipairs(t) do r[i] = v end
  table.sort(r)
  return r
end

-- "DNS:" .. name for each name (sorted), to compare with M.sans.
function M.dns_sans(names)
  local t = {}
  for i, n in ipairs(names) do t[i] = "DNS:" .. n end
  table.sort(t)
  return t
end

-- Deep comparison of two lists of strings for t.eq-style messages.
function M.same_list(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

function M.list_str(t)
  return "{" .. table.concat(t, ", ") .. "}"
end

return M
