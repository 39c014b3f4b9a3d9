-- core.spawn: running programs without a shell (core/fs.c spawn_run).
local t = require "testlib"
local core = require "luacme.core"

t.test("exit status, stdout and stderr", function()
  local r = core.spawn { argv = { "sh", "-c", "echo out; echo err >&2; exit 3" } }
  t.eq(r.status, 3)
  t.eq(r.signal, nil)
  t.eq(r.stdout, "out\n")
  t.eq(r.stderr, "err\n")
  t.eq(r.timed_out, false)
  t.eq(r.truncated, false)
  r = core.spawn { argv = { "true" } }
  t.eq(r.status, 0)
  t.eq(r.stdout, "")
end)

t.test("a signal ends the child", function()
  -- SIGHUP: 1 on every Linux architecture (SIGUSR1 is 10 on x86 and ARM
  -- but 16 on MIPS, where the cross build runs this too).
  local r = core.spawn { argv = { "sh", "-c", "kill -HUP $$" } }
  t.eq(r.status, nil)
  t.eq(r.signal, 1)
end)

t.test("argv is passed as given, without a shell", function()
  local args = { "a b", "$HOME", "*", "'q'", "", "x;y" }
  local r = core.spawn { argv = { "printf", "[%s]\n", table.unpack(args) } }
  t.eq(r.stdout, "[a b]\n[$HOME]\n[*]\n['q']\n[]\n[x;y]\n")
  r = core.spawn { argv = { "echo", 42 } }           -- numbers as strings
  t.eq(r.stdout, "42\n")
end)

t.test("a missing program is not_found", function()
  t.fails("not_found", "luacme%-no%-such%-program",
    core.spawn { argv = { "luacme-no-such-program", "x" } })
  t.fails("not_found", "/nonexistent/prog", core.spawn { argv = { "/nonexistent/prog" } })
  local d = t.tmpdir()
  t.writefile(d .. "/script", "#!/bin/sh\necho hi\n")
  t.fails("permission", "script", core.spawn { argv = { d .. "/script" } })
  assert(core.chmod(d .. "/script", 493))
  t.eq(core.spawn { argv = { d .. "/script" } }.stdout, "hi\n")
end)

t.test("stdin is fed from the string, or is /dev/null", function()
  local r = core.spawn { argv = { "cat" }, stdin = "line 1\nline 2\0end" }
  t.eq(r.stdout, "line 1\nline 2\0end")
  r = core.spawn { argv = { "cat" } }
  t.eq(r.status, 0)
  t.eq(r.stdout, "")
  r = core.spawn { argv = { "wc", "-c" }, stdin = "" }
  t.match(r.stdout, "^%s*0%s*$")
  -- A child that does not read a large stdin: no SIGPIPE for us.
  r = core.spawn { argv = { "true" }, stdin = string.rep("x", 4 * 1024 * 1024) }
  t.eq(r.status, 0)
end)

t.test("env replaces the whole environment; nil inherits", function()
  local r = core.spawn { argv = { "env" }, env = { FOO = "bar baz", N = 7 } }
  local lines = {}
  for l in r.stdout:gmatch("[^\n]+") do lines[#lines + 1] = l end
  table.sort(lines)
  t.eq(table.concat(lines, ","), "FOO=bar baz,N=7")
  t.eq(core.spawn { argv = { "env" }, env = {} }.stdout, "")
  r = core.spawn { argv = { "sh", "-c", 'printf %s "$LUACME_TEST_BUILD_DIR"' } }
  t.eq(r.stdout, os.getenv("LUACME_TEST_BUILD_DIR"))
  -- The caller's environment minus a secret, as hooks get it.
  local env = core.environ()
  env.LUACME_TEST_BUILD_DIR = nil
  env.HOOK_OPT = "1"
  r = core.spawn { argv = { "sh", "-c", 'echo "[$LUACME_TEST_BUILD_DIR][$HOOK_OPT]"' },
    env = env }
  t.eq(r.stdout, "[][1]\n")
  t.raises(function() core.spawn { argv = { "env" }, env = { ["A=B"] = "x" } } end,
    "bad env name")
  t.raises(function() core.spawn { argv = { "env" }, env = { [1] = "x" } } end,
    "env names must be strings")
  t.raises(function() core.spawn { argv = { "env" }, env = { A = {} } } end,
    "env value")
  t.raises(function() core.spawn { argv = { "env" }, env = { A = "a\0b" } } end,
    "NUL")
end)

t.test("cwd", function()
  local d = t.tmpdir()
  local r = core.spawn { argv = { "pwd" }, cwd = d }
  t.eq(r.stdout, d .. "\n")
  t.fails("not_found", "cwd .*nope", core.spawn { argv = { "pwd" }, cwd = d .. "/nope" })
end)

t.test("timeout kills the child and says so", function()
  local t0 = core.monotonic()
  local r = core.spawn { argv = { "sleep", "30" }, timeout = 0.3 }
  local el = core.monotonic() - t0
  t.eq(r.timed_out, true)
  t.eq(r.signal, 15)
  t.eq(r.status, nil)
  t.ok(el >= 0.29 and el < 2, "took " .. el)
  -- One that ignores SIGTERM gets SIGKILL after the grace second.
  t0 = core.monotonic()
  r = core.spawn { argv = { "sh", "-c", "trap '' TERM; echo ready; sleep 30" },
    timeout = 0.3 }
  el = core.monotonic() - t0
  t.eq(r.timed_out, true)
  t.eq(r.signal, 9)
  t.eq(r.stdout, "ready\n")
  t.ok(el >= 1.25 and el < 3.5, "took " .. el)
  -- A quick child is not affected by a timeout.
  r = core.spawn { argv = { "true" }, timeout = 5 }
  t.eq(r.timed_out, false)
  t.eq(r.status, 0)
end)

t.test("large output on both streams at once, with and without caps", function()
  local prog = "i=0; while [ $i -lt 24 ]; do head -c 65536 /dev/zero | tr '\\0' o;" ..
    " head -c 65536 /dev/zero | tr '\\0' e >&2; i=$((i+1)); done"
  local each = 24 * 65536
  local r = core.spawn { argv = { "sh", "-c", prog }, max_output = 4 * 1024 * 1024,
    timeout = 30 }
  t.eq(r.timed_out, false)
  t.eq(r.status, 0)
  t.eq(#r.stdout, each)
  t.eq(#r.stderr, each)
  t.eq(r.stdout, string.rep("o", each))
  t.eq(r.truncated, false)
  -- The default cap, LUACME_SPAWN_MAX_OUTPUT: 1 MiB of each.
  r = core.spawn { argv = { "sh", "-c", prog }, timeout = 30 }
  t.eq(r.status, 0)
  t.eq(#r.stdout, 1024 * 1024)
  t.eq(#r.stderr, 1024 * 1024)
  t.eq(r.truncated, true)
  r = core.spawn { argv = { "echo", "hello world" }, max_output = 5 }
  t.eq(r.stdout, "hello")
  t.eq(r.truncated, true)
  r = core.spawn { argv = { "echo", "hello" }, max_output = 0 }
  t.eq(r.stdout, "")
  t.eq(r.truncated, true)
  -- Input and output both larger than a pipe.
  local big = string.rep("0123456789abcdef", 200000)
  r = core.spawn { argv = { "cat" }, stdin = big, max_output = #big, timeout = 30 }
  t.eq(r.stdout == big, true)
  t.eq(r.truncated, false)
end)

t.test("caller mistakes raise", function()
  t.raises(function() core.spawn() end, "table expected")
  t.raises(function() core.spawn { } end, "argv must be a table")
  t.raises(function() core.spawn { argv = {} } end, "1..65536")
  t.raises(function() core.spawn { argv = { {} } } end, "argv element")
  t.raises(function() core.spawn { argv = { "a\0b" } } end, "NUL")
  t.raises(function() core.spawn { argv = { "true" }, shell = true } end,
    "unknown option 'shell'")
  t.raises(function() core.spawn { argv = { "true" }, stdin = 5 } end, "stdin")
  t.raises(function() core.spawn { argv = { "true" }, cwd = {} } end, "cwd")
  t.raises(function() core.spawn { argv = { "true" }, timeout = -1 } end, "timeout")
  t.raises(function() core.spawn { argv = { "true" }, timeout = 8 * 86400 } end,
    "timeout")
  t.raises(function() core.spawn { argv = { "true" }, max_output = 1.5 } end,
    "max_output")
  t.raises(function()
    core.spawn { argv = { "true" }, max_output = 64 * 1024 * 1024 + 1 }
  end, "max_output")
end)

t.test("no zombies are left behind", function()
  for _ = 1, 20 do core.spawn { argv = { "true" } } end
  core.spawn { argv = { "sleep", "5" }, timeout = 0.05 }
  local r = core.spawn { argv = { "ps", "-o", "stat=,pid=", "--ppid",
    tostring(core.getpid()) } }
  -- Only ps itself is our child now, and it is running, not a zombie.
  local lines = {}
  for l in r.stdout:gmatch("[^\n]+") do lines[#lines + 1] = l end
  t.eq(#lines, 1, r.stdout)
  t.ok(not lines[1]:match("^Z"), r.stdout)
end)
