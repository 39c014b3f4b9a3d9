#!/usr/bin/env bash
# Benchmark (prints figures; not a ctest test): issues against a private
# Pebble (PEBBLE_VA_NOSLEEP=1, PEBBLE_WFE_NONCEREJECT=0) with an account
# registered beforehand, one certificate for one name and one for twenty
# names, ROUNDS times each (default 5), and prints per case the HTTP
# requests per issuance (the client's counter and Pebble's log), the
# median and spread of the wall time, and the peak RSS of the luacme
# process.
#   tests/bench/bench.sh [BUILD_DIR]     default: build
#   LUACME_BENCH_ROUNDS=N                rounds per case
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
exe=$build/luacme
[ -x "$exe" ] || { echo "bench: no $exe (build first)" >&2; exit 1; }

out=$(mktemp)
trap 'rm -f "$out"' EXIT
# /usr/bin/time -v reports the peak RSS of the whole luacme process;
# bench.lua also prints VmHWM from /proc/self/status at its end.
timecmd=()
[ -x /usr/bin/time ] && timecmd=(/usr/bin/time -v -o "$out")

python3 tests/e2e/pebble-env.py \
    --env PEBBLE_WFE_NONCEREJECT=0 -- \
    "${timecmd[@]}" "$exe" run tests/bench/bench.lua \
    "${LUACME_BENCH_ROUNDS:-5}"
if [ -s "$out" ]; then
    rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$out")
    echo "peak RSS of the luacme process (/usr/bin/time -v): ${rss} kB"
fi

# Many certificates: renew --force of 50 (one at a time and at once) and
# of 500 in one process, with its file descriptors and peak RSS.
# LUACME_BENCH_RENEW="N:P,..." picks other cases.
python3 tests/e2e/pebble-env.py \
    --env PEBBLE_WFE_NONCEREJECT=0 -- \
    "$exe" run tests/bench/bench_renew.lua "$exe" \
    "${LUACME_BENCH_RENEW:-50:1,50:4,50:8,500:8}"
