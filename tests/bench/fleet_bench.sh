#!/usr/bin/env bash
# Fleet benchmark (prints figures; not a ctest test): NODES luacme nodes
# sharing one store (a 3-member etcd cluster, then Redis) hold CERTS
# certificates; once all are due, every node runs `renew` at the same
# moment. Prints per store: the orders Pebble created (must equal
# CERTS), the wall time of the round, the store requests per
# certificate (counted by the servers), and whether every node ended
# with every certificate installed.
#   tests/bench/fleet_bench.sh [BUILD_DIR]     default: build
#   LUACME_FLEET_NODES=10 LUACME_FLEET_CERTS=100
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
exe=$build/luacme
[ -x "$exe" ] || { echo "bench: no $exe (build first)" >&2; exit 1; }
# Certificates live 150 s: seeding takes under a minute, then they fall
# due (half their lifetime) while nothing else runs.
python3 tests/e2e/pebble-env.py --validity 150 \
    --env PEBBLE_WFE_NONCEREJECT=0 -- \
    python3 tests/fleet/store-env.py -- \
    "$exe" run tests/bench/fleet_bench.lua "$exe" \
    "${LUACME_FLEET_NODES:-10}" "${LUACME_FLEET_CERTS:-100}"
