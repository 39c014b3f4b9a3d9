-- The shared backends against real servers (tests/fleet/store-env.py):
-- the same contract for etcd (3 members), Redis and rediss://, as
-- luacme.storage documents it: versions, conditional writes, fenced
-- writes, prefixes, locks with a TTL kept alive by the keeper process
-- and lost after the TTL when the holder is killed -9; credentials
-- from the environment.
local t = require "testlib"
local core = require "luacme.core"
local storage = require "luacme.storage"

local ETCD = assert(os.getenv("LUACME_TEST_ETCD"), "run under store-env.py")
local REDIS = assert(os.getenv("LUACME_TEST_REDIS"))
local REDISS = assert(os.getenv("LUACME_TEST_REDISS"))
assert(os.getenv("LUACME_REDIS_CA_FILE"))
local EXE = assert(core.readlink("/proc/self/exe"))

local function env(extra)
  local e = core.environ()
  for k, v in pairs(extra or {}) do e[k] = v end
  return e
end

local SPECS = {
  { "etcd", "etcd:endpoints=" .. ETCD .. ",prefix=/bt" },
  { "redis", "redis:url=" .. REDIS .. ",prefix=bt:" },
  -- store-env.py exports LUACME_REDIS_CA_FILE: the lock keeper reads
  -- the process environment, as a node run from cron would.
  { "rediss", "redis:url=" .. REDISS .. ",prefix=bts:" },
}

-- Wait (bounded) until pred() is true.
local function wait_for(pred, timeout)
  local deadline = core.monotonic() + timeout
  while core.monotonic() < deadline do
    if pred() then return true end
    core.sleep(0.1)
  end
  return pred()
end

for _, s in ipairs(SPECS) do
  local label, spec, extra = s[1], s[2], s[3]
  local function open()
    return assert(storage.open(spec, env(extra)))
  end

  t.test(label .. ": versions and conditional writes", function()
    local b = open()
    t.eq(b:get("k/a"), false)
    t.eq(b:put("k/a", "one\0two", { version = false }), true)
    local v, ver = b:get("k/a")
    t.eq(v, "one\0two")
    t.eq(b:put("k/a", "x", { version = false }), false, "exists already")
    t.eq(b:put("k/a", "x", { version = ver .. "9" }), false, "stale")
    t.eq(b:put("k/a", "three", { version = ver }), true)
    local _, ver2 = b:get("k/a")
    t.ok(ver2 ~= ver, "a new version")
    t.eq(b:put("k/b", "b"), true)
    t.eq(b:put("other", "o"), true)
    t.eq(table.concat(b:list("k/"), ","), "k/a,k/b")
    t.eq(b:delete("k/b", { version = "1234567" }), false)
    t.eq(b:delete("k/b"), true)
    t.eq(b:get("k/b"), false)
    local parts = {}
    for i = 1, 1200 do parts[i] = core.random(250) end
    local big = table.concat(parts)
    t.eq(b:put("k/big", big), true)
    t.eq(b:get("k/big"), big)
    t.ok(b.requests > 10)
    b:close()
  end)

  t.test(label .. ": a lock is exclusive, fences writes, and is kept " ..
    "alive past its TTL while held", function()
    local b = open()
    local lk = assert(storage.lock(b, spec, "locks/x", 0, "x", { ttl = 3 }))
    local _, err = storage.lock(b, spec, "locks/x", 0.3, "x")
    t.eq(err.kind, "busy")
    t.eq(b:put("f", "1", { lock = lk:handle() }), true)
    t.eq(b:put("f", "2", { lock = { key = "locks/x", token = "nope" } }),
      false, "another token is fenced off")
    -- Two TTLs later the keeper has kept it.
    core.sleep(6.5)
    _, err = storage.lock(b, spec, "locks/x", 0, "x")
    t.eq(err and err.kind, "busy", "still held")
    local h = lk:handle()
    lk:unlock()
    t.eq(b:put("f", "3", { lock = h }), false, "released: fenced")
    local lk2 = assert(storage.lock(b, spec, "locks/x", 0, "x"))
    lk2:unlock()
    b:close()
  end)

  t.test(label .. ": a holder killed -9 loses its lock after the TTL",
    function()
    local dir = t.tmpdir()
    local script = dir .. "/hold.lua"
    t.writefile(script, [[
local core = require "luacme.core"
local storage = require "luacme.storage"
local b = assert(storage.open(arg[1]))
local lk = assert(storage.lock(b, arg[1], "locks/k9", 0, "k9", { ttl = 4 }))
assert(core.write_file(arg[2], "held", 420))
while true do core.sleep(1) end
]])
    local marker = dir .. "/held"
    local envs = {}
    for k, v in pairs(extra or {}) do envs[#envs + 1] = k .. "=" .. v end
    local p = assert(io.popen("env " .. table.concat(envs, " ") .. " " ..
      EXE .. " run " .. script .. " '" .. spec .. "' " .. marker ..
      " >/dev/null 2>&1 & echo $!"))
    local pid = tonumber(p:read("l"))
    p:close()
    t.ok(wait_for(function() return core.stat(marker) ~= nil end, 20),
      "the holder took the lock")
    local b = open()
    -- Held beyond its TTL while the holder lives (the keeper refreshes).
    core.sleep(5)
    local _, err = storage.lock(b, spec, "locks/k9", 0, "k9")
    t.eq(err and err.kind, "busy")
    os.execute("kill -9 " .. pid)
    local t0 = core.monotonic()
    local lk = assert(storage.lock(b, spec, "locks/k9", 30, "k9"))
    local waited = core.monotonic() - t0
    t.ok(waited > 0.5 and waited < 15, "lost after the TTL: " .. waited)
    lk:unlock()
    b:close()
  end)
end

t.test("etcd: one endpoint down of three, the others answer", function()
  local b = assert(storage.open("etcd:endpoints=http://127.0.0.1:9;" ..
    ETCD .. ",prefix=/bt2", env()))
  t.eq(b:put("a", "1"), true)
  t.eq(b:get("a"), "1")
  b:close()
end)

t.test("rediss: the server's certificate is checked", function()
  local e = env()
  e.LUACME_REDIS_CA_FILE = nil
  local _, err = storage.open("redis:url=" .. REDISS .. ",prefix=x:", e)
  t.eq(err.kind, "unavailable")
  t.match(err.detail, "certificate")
  local b = assert(storage.open("redis:url=" .. REDIS .. ",prefix=x:", env()))
  t.eq(b:put("a", "1"), true)
  b:close()
end)

t.test("redis: an ACL user and password from the environment", function()
  local b = assert(storage.open("redis:url=" .. REDIS .. ",prefix=acl:",
    env()))
  assert(b:cmd("ACL", "SETUSER", "fleet", "on", ">s3cret", "~acl:*",
    "+@all"))
  b:close()
  local e = env{ LUACME_REDIS_USER = "fleet", LUACME_REDIS_PASSWORD = "s3cret" }
  b = assert(storage.open("redis:url=" .. REDIS .. ",prefix=acl:", e))
  t.eq(b:put("a", "1"), true)
  b:close()
  local pwfile = t.tmpdir() .. "/pw"
  t.writefile(pwfile, "wrong\n")
  local _, err = storage.open("redis:url=" .. REDIS .. ",prefix=acl:",
    env{ LUACME_REDIS_USER = "fleet", LUACME_REDIS_PASSWORD_FILE = pwfile })
  t.match(tostring(err), "WRONGPASS")
end)

-- Last: it turns on authentication for the whole cluster.
t.test("etcd: user and password from the environment", function()
  local one = ETCD:match("^[^;]+")
  local function ctl(...)
    local args = { "etcdctl", "--endpoints=" .. one, ... }
    local r = assert(core.spawn{ argv = args, env = env{ ETCDCTL_API = "3" },
      timeout = 30 })
    return r.status, r.stdout .. r.stderr
  end
  t.eq(ctl("user", "add", "root:rootpw"), 0)
  t.eq(ctl("user", "add", "fleet:fleetpw"), 0)
  t.eq(ctl("role", "add", "fleet"), 0)
  t.eq(ctl("role", "grant-permission", "fleet", "--prefix=true",
    "readwrite", "/auth/"), 0)
  t.eq(ctl("user", "grant-role", "fleet", "fleet"), 0)
  t.eq(ctl("auth", "enable"), 0)
  local spec = "etcd:endpoints=" .. ETCD .. ",prefix=/auth"
  local b = assert(storage.open(spec, env()))
  local ok, err = b:put("a", "1")
  t.eq(ok, nil, "no credentials, no access")
  t.ok(err)
  b:close()
  b = assert(storage.open(spec, env{ LUACME_ETCD_USER = "fleet",
    LUACME_ETCD_PASSWORD = "fleetpw" }))
  t.eq(b:put("a", "1"), true)
  t.eq(b:get("a"), "1")
  b:close()
  local _
  _, err = storage.open(spec, env{ LUACME_ETCD_USER = "fleet",
    LUACME_ETCD_PASSWORD = "nope" })
  t.ok(err, "a wrong password is refused")
end)
