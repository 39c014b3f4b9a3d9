#!/usr/bin/env bash
# Benchmark (prints figures; not a ctest test): every figure of issue 11
# in one table with its target beside it. Three private Pebbles (nonce
# rejection 0, account registered first, not measured):
#   - PEBBLE_VA_NOSLEEP=1: 1 name, 20 names, wildcard + base via a dns-01
#     exec hook, 100 names (ROUNDS each), then the peak RSS of one
#     issuance in a fresh process with its breakdown, the stripped
#     binary size and the `luacme --version` start-up;
#   - a webroot that holds each challenge reply 2 s (a CA taking 2 s to
#     validate, no random sleep): requests and poll rates for 1 and 20
#     names;
#   - many certificates (bench_renew.lua): renew --force of 50 (one at a
#     time and in parallel) and of 500 in one process, with its file
#     descriptors and peak RSS.
# Requests are the client's counter (Pebble's log in [] when it differs);
# poll rates are 1 / the shortest gap between two polls of one URL.
#   tests/bench/bench.sh [BUILD_DIR]     default: build
#   LUACME_BENCH_ROUNDS=N                rounds per fast case (default 5)
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
exe=$(cd "$build" && pwd)/luacme
[ -x "$exe" ] || { echo "bench: no $exe (build first)" >&2; exit 1; }
command -v strip >/dev/null || { echo "bench: needs strip (binutils)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "bench: needs /usr/bin/time (time)" >&2; exit 1; }

fast=$(mktemp) slow=$(mktemp) many=$(mktemp)
trap 'rm -f "$fast" "$slow" "$many"' EXIT
script=tests/bench/bench.lua

python3 tests/e2e/pebble-env.py --env PEBBLE_WFE_NONCEREJECT=0 -- \
    "$exe" run "$script" fast "$fast" "${LUACME_BENCH_ROUNDS:-5}" "$exe"
python3 tests/e2e/pebble-env.py --env PEBBLE_WFE_NONCEREJECT=0 \
    --webroot-delay 2 -- "$exe" run "$script" slow "$slow"

# Many certificates: renew --force of 50 (one at a time and at once) and
# of 500 in one process, with its file descriptors and peak RSS.
# LUACME_BENCH_RENEW="N:P,..." picks other cases.
python3 tests/e2e/pebble-env.py \
    --env PEBBLE_WFE_NONCEREJECT=0 -- \
    "$exe" run tests/bench/bench_renew.lua "$exe" \
    "${LUACME_BENCH_RENEW:-50:1,50:4,50:8,500:8}" "$many"
"$exe" run "$script" table "$fast" "$slow" "$many"
