-- issue --dns-wait SECONDS: dns-01 provider specs get dns_wait=N (kept in
-- the stored settings so renewals wait alike); other hooks are left as
-- they are, and an explicit dns_wait in a spec wins.
local t = require "testlib"
local core = require "luacme.core"
local certs = require "luacme.certs"
local manage = require "luacme.manage"

local EXE = assert(os.getenv("LUACME_TEST_BUILD_DIR"), "run under ctest") .. "/luacme"

t.test("dns_wait is added to dns-01 provider specs only", function()
  local m = assert(manage.open{ state = t.tmpdir() .. "/state" })
  local s = certs.settings(m, { names = { "a.test" }, dns_wait = 7, hooks = {
    "httpreq:endpoint=http://127.0.0.1:1",
    "webroot:root=/tmp",
    "httpreq:endpoint=http://127.0.0.1:1,dns_wait=3",
  } })
  t.eq(s.hooks[1], "httpreq:endpoint=http://127.0.0.1:1,dns_wait=7")
  t.eq(s.hooks[2], "webroot:root=/tmp")
  t.eq(s.hooks[3], "httpreq:endpoint=http://127.0.0.1:1,dns_wait=3")
  local plain = certs.settings(m, { names = { "a.test" },
    hooks = { "httpreq:endpoint=http://127.0.0.1:1" } })
  t.eq(plain.hooks[1], "httpreq:endpoint=http://127.0.0.1:1")
end)

t.test("luacme issue documents and checks --dns-wait", function()
  local r = assert(core.spawn{ argv = t.luacme_argv(EXE, "help", "issue") })
  t.eq(r.status, 0)
  t.match(r.stdout, "%-%-dns%-wait SECONDS")
  r = assert(core.spawn{ argv = t.luacme_argv(EXE, "--state", t.tmpdir(),
    "issue", "-d", "a.test", "--hook", "webroot:root=/tmp", "--dns-wait",
    "soon") })
  t.eq(r.status, 1)
  t.match(r.stderr, "%-%-dns%-wait")
end)

t.test("--dns-wait reaches a dehydrated script (exec) too", function()
  local m = assert(manage.open{ state = t.tmpdir() .. "/state" })
  local dir = t.tmpdir()
  t.writefile(dir .. "/hook.sh", "#!/bin/sh\nexit 0\n")
  assert(core.chmod(dir .. "/hook.sh", 493))
  local s = certs.settings(m, { names = { "a.test" }, dns_wait = 7,
    hooks = { "exec:script=" .. dir .. "/hook.sh,types=dns-01" } })
  t.eq(s.hooks[1], "exec:script=" .. dir .. "/hook.sh,types=dns-01,dns_wait=7")
end)
