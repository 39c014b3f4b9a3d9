-- A dehydrated-style dns-01 script whose every deploy_challenge takes
-- 0.5 s (it sleeps, then publishes the TXT value through challtestsrv's
-- API), given a wildcard and its base name (two challenges, one TXT
-- name): with parallel=yes the two calls run at once and the hook phase
-- takes ~0.5 s; by default (dehydrated's one call at a time) they run
-- one after the other, ~1 s. The script logs when each call ran.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local t = require "testlib"
local core = require "luacme.core"
local E = require "e2e"
local L = require "cli_lib"

local dir = E.scratch()
local log = dir .. "/runs.log"
local script = dir .. "/hook.sh"

E.writefile(script, ([[#!/bin/sh
# dns-01 in dehydrated's style through pebble-challtestsrv.
api='%s'
case "$1" in
deploy_challenge)
    s=$(date +%%s%%N)
    sleep 0.5
    curl -sf -X POST -d '{"host":"_acme-challenge.'"$2"'.","value":"'"$4"'"}' \
        "$api/set-txt" || exit 3
    echo "deploy $s $(date +%%s%%N)" >> '%s' ;;
clean_challenge)
    curl -sf -X POST -d '{"host":"_acme-challenge.'"$2"'."}' \
        "$api/clear-txt" || exit 3 ;;
esac
exit 0
]]):format(E.env.challtestsrv, log))
assert(core.chmod(script, 493))

-- The deploy_challenge runs logged: list of { start, end } in seconds.
local function runs()
  local out = {}
  for s, e in (E.readfile(log) or ""):gmatch("deploy (%d+) (%d+)") do
    out[#out + 1] = { tonumber(s) / 1e9, tonumber(e) / 1e9 }
  end
  return out
end

-- Issue a wildcard and its base name with the hook spec; returns the
-- deploy runs and the hook phase: first start to last end.
local function issue(spec, prefix)
  E.writefile(log, "")
  local state = L.state()
  local base = E.name(prefix)
  L.must(state, { "issue", "-d", "*." .. base, "-d", base, "--hook", spec,
    "--agree-tos" })
  local r = runs()
  t.eq(#r, 2, "two deploy_challenge calls")
  local first = math.min(r[1][1], r[2][1])
  local last = math.max(r[1][2], r[2][2])
  return r, last - first
end

t.test("parallel=yes: two 0.5 s deploy calls take ~0.5 s", function()
  local r, phase = issue("exec:script=" .. script ..
    ",types=dns-01,parallel=yes", "par")
  print(string.format("parallel hook phase: %.3f s", phase))
  t.ok(r[1][1] < r[2][2] and r[2][1] < r[1][2], "the two calls overlap")
  t.ok(phase >= 0.5 and phase < 0.9, "hook phase " .. phase)
end)

t.test("by default the calls run one after the other (~1 s)", function()
  local r, phase = issue("exec:script=" .. script .. ",types=dns-01",
    "ser")
  print(string.format("serial hook phase: %.3f s", phase))
  t.ok(r[1][2] <= r[2][1] or r[2][2] <= r[1][1], "the calls do not overlap")
  t.ok(phase >= 1.0, "hook phase " .. phase)
end)

t.test("SIGINT while a script runs: it gets SIGTERM, cleanup runs", function()
  local slog = dir .. "/slow.log"
  local slow = dir .. "/slow.sh"
  E.writefile(slow, ([[#!/bin/sh
case "$1" in
deploy_challenge)
    trap 'echo term >> %s; exit 1' TERM
    echo deployed >> %s
    sleep 30 &
    wait $! ;;
clean_challenge) echo clean >> %s ;;
esac
exit 0
]]):format(E.q(slog), E.q(slog), E.q(slog)))
  assert(core.chmod(slow, 493))
  local state = L.state()
  local pid, _, errf = L.spawn_bg(state, { "issue", "-d", E.name("int"),
    "--hook", "exec:script=" .. slow .. ",types=dns-01", "--agree-tos" })
  t.ok(L.wait_text(slog, "deployed", 60), "the script was reached")
  local t0 = core.monotonic()
  L.kill(pid, "INT")
  local took = core.monotonic() - t0
  t.match(E.readfile(errf), "luacme: error: interrupted")
  local lines = E.readfile(slog)
  t.match(lines, "deployed\nterm\n", "the script got SIGTERM first")
  t.match(lines, "clean\n", "clean_challenge ran")
  t.ok(took < 5, "stopped after " .. took .. " s")
end)
