-- Two luacme runs on one certificate at once: the second waits for the
-- certificate's lock (then finds the work done: exit 2) or, past
-- --lock-timeout, refuses with a message naming the holder's pid. Never
-- two installs at once, never a mixed set.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local t = require "testlib"
local core = require "luacme.core"
local E = require "e2e"
local L = require "cli_lib"

local dir = E.scratch()
local state = L.state()

E.writefile(dir .. "/block.lua", E.readfile(here .. "/block_hook.lua"))

-- Run both commands at once from one shell; returns their statuses.
local function both(args1, args2)
  local function cmd(args, i)
    local parts = { E.q(L.exe) }
    for _, a in ipairs(L.global(state)) do parts[#parts + 1] = E.q(a) end
    for _, a in ipairs(args) do parts[#parts + 1] = E.q(a) end
    return table.concat(parts, " ") .. " >" .. E.q(dir .. "/out" .. i) ..
      " 2>&1 & p" .. i .. "=$!"
  end
  local sh = cmd(args1, 1) .. "\n" .. cmd(args2, 2) .. "\n" ..
    "wait $p1; s1=$?; wait $p2; s2=$?; echo $s1 $s2\n"
  local r = assert(core.spawn{ argv = { "sh", "-c", sh }, timeout = 240 })
  local s1, s2 = r.stdout:match("(%d+) (%d+)")
  return tonumber(s1), tonumber(s2)
end

t.test("two issues at once: one issues, the other waits and has nothing " ..
  "to do", function()
  L.must(state, { "account", "new", "--agree-tos" })
  local n = E.name("race")
  local args = { "issue", "-d", n, "--hook", L.webroot() }
  local s1, s2 = both(args, args)
  local got = { s1, s2 }
  table.sort(got)
  t.eq(table.concat(got, " "), "0 2", E.readfile(dir .. "/out1") ..
    E.readfile(dir .. "/out2"))
  local cur, prev = L.files(state, n)
  L.check_set(cur)
  t.eq(prev["cert.pem"], nil, "issued once")
  t.match(E.readfile(dir .. "/out" .. (s1 == 2 and 1 or 2)),
    "a valid certificate with these names exists")
end)

t.test("a run holding the lock: the second gives up after --lock-timeout",
  function()
  -- Fresh names always get a pending authorization, so the blocking
  -- hook is reached whatever Pebble's authorization reuse does.
  local n = E.name("held")
  local m, rel = dir .. "/marker", dir .. "/release"
  local function blocking(mk, rl)
    return dir .. "/block.lua:root=" .. E.env.webroot .. ",marker=" ..
      mk .. ",release=" .. rl
  end
  local pid = L.spawn_bg(state, { "issue", "-d", n, "--hook",
    blocking(m, rel) })
  t.ok(L.wait_text(m, "deployed", 60))
  local t0 = core.monotonic()
  local st, _, err = L.run(state, { "issue", "-d", n, "--force", "--hook",
    L.webroot(), "--lock-timeout", "1" })
  t.eq(st, 1)
  t.ok(core.monotonic() - t0 < 20)
  t.match(err, "certificate " .. n:gsub("%p", "%%%0") .. " is being " ..
    "renewed by another luacme run %(pid " .. pid .. "%); gave up after 1 s")
  t.match(err, "hint: another luacme run")
  -- A patient second run waits for the first to finish, then finds
  -- its work done.
  local pid2, out2 = L.spawn_bg(state, { "issue", "-d", n, "--hook",
    L.webroot() })
  E.writefile(rel, "go")
  t.ok(L.wait_exit(pid, 120))
  t.ok(L.wait_exit(pid2, 120))
  t.match(E.readfile(out2), "a valid certificate with these names exists")
  local first, prev = L.files(state, n)
  L.check_set(first)
  t.eq(prev["cert.pem"], nil)
  -- renew waits for the lock too (the holder orders new names under
  -- the same certificate name, so its authorization is fresh).
  local n3 = E.name("held")
  local pid3 = L.spawn_bg(state, { "issue", "-d", n3, "--name", n,
    "--hook", blocking(m .. "2", rel .. "2") })
  t.ok(L.wait_text(m .. "2", "deployed", 60))
  st, _, err = L.run(state, { "renew", "--force", n, "--lock-timeout",
    "1" })
  t.eq(st, 1)
  t.match(err, "being renewed by another luacme run")
  E.writefile(rel .. "2", "go")
  t.ok(L.wait_exit(pid3, 120))
  local cur
  cur, prev = L.files(state, n)
  L.check_set(cur)
  t.eq(prev["cert.pem"], first["cert.pem"], "installed one after the other")
  local meta = require("cjson").decode(cur["meta.json"])
  t.eq(meta.names[1], n3)
end)
