#!/usr/bin/env bash
# The test command (README, .ci/run): installs what is missing, builds
# luacme three ways and runs every test:
#   build/        the normal build: unit, HTTP and end-to-end (Pebble) tests
#   build-asan/   ASan + UBSan: the C and Lua unit and HTTP tests
#   build-fuzz/   clang + libFuzzer: each fuzzer over its corpus for a while
#   build-cross-TRIPLET/  cross builds (tests/cross/run.sh): the Lua unit
#                 tests and one issuance per challenge type under qemu-user
# Ends with one "N passed, N failed" line summing the ctest runs; exits
# non-zero when anything failed.
#   LUACME_FUZZ_SECONDS  seconds per fuzzer (default 20; 0 skips fuzzing)
#   LUACME_JOBS          parallel jobs (default: number of cores)
#   LUACME_CROSS         cross targets (default: aarch64-linux-gnu
#                        arm-linux-gnueabihf mipsel-linux-gnu; "" skips)
set -uo pipefail
cd "$(dirname "$0")/.."

bash tests/deps.sh || { echo "deps: installation failed" >&2; exit 1; }

jobs=${LUACME_JOBS:-$(nproc)}
fuzz_seconds=${LUACME_FUZZ_SECONDS:-20}
total_pass=0
total_fail=0
total_skip=0
status=0

# run_ctest DIR ARGS...: runs ctest, adds its counts to the totals.
run_ctest()
{
    local dir=$1 log
    shift
    log=$(mktemp)
    (cd "$dir" && ctest --output-on-failure -j "$jobs" "$@") 2>&1 |
        tee "$log"
    local line
    line=$(grep -E "tests passed, [0-9]+ tests failed out of [0-9]+" "$log" |
        tail -n 1)
    if [ -z "$line" ]; then
        echo "run-all: no ctest summary from $dir" >&2
        status=1
        total_fail=$((total_fail + 1))
    else
        local failed all
        failed=$(sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\1/' <<<"$line")
        all=$(sed -E 's/.* tests failed out of ([0-9]+).*/\1/' <<<"$line")
        # A skip (a server that could not be installed) is no pass.
        local skipped
        skipped=$(grep -cE '^ *[0-9]+ - .*\(Skipped\)' "$log")
        total_fail=$((total_fail + failed))
        total_pass=$((total_pass + all - failed - skipped))
        total_skip=$((total_skip + skipped))
        [ "$failed" -eq 0 ] || status=1
    fi
    rm -f "$log"
}

build()
{
    local dir=$1
    shift
    cmake -S . -B "$dir" "$@" >/dev/null &&
        cmake --build "$dir" -j "$jobs" 2>&1 | grep -vE '^\[ *[0-9]+%\]'
    return "${PIPESTATUS[0]}"
}

echo "== normal build"
if build build -DCMAKE_BUILD_TYPE=RelWithDebInfo; then
    run_ctest build
else
    echo "run-all: build failed" >&2
    exit 1
fi

echo "== sanitizer build (ASan + UBSan)"
if build build-asan -DCMAKE_BUILD_TYPE=Debug -DLUACME_SANITIZE=ON; then
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        run_ctest build-asan -LE "e2e|bench"
else
    echo "run-all: sanitizer build failed" >&2
    status=1
fi

if [ "$fuzz_seconds" -gt 0 ]; then
    echo "== fuzzers (${fuzz_seconds}s each)"
    if CC=clang build build-fuzz -DCMAKE_BUILD_TYPE=Debug -DLUACME_FUZZ=ON \
        -DLUACME_FUZZ_SECONDS="$fuzz_seconds"; then
        run_ctest build-fuzz -L fuzz
    else
        echo "run-all: fuzz build failed" >&2
        status=1
    fi
fi

cross=${LUACME_CROSS-aarch64-linux-gnu arm-linux-gnueabihf mipsel-linux-gnu}
[ -n "$cross" ] ||
    echo "== cross builds SKIPPED (LUACME_CROSS is empty; not counted)"
reports=()
for triplet in $cross; do
    echo "== cross build for $triplet, tested under qemu-user"
    dir=build-cross-$triplet
    LUACME_JOBS=$jobs bash tests/cross/run.sh build "$triplet" "$dir"
    case $? in
    0)  run_ctest "$dir"
        reports+=("$triplet") ;;
    77) ;;      # the packages cannot be had: the reason is printed
    *)  total_fail=$((total_fail + 1))
        status=1 ;;
    esac
done
for triplet in "${reports[@]}"; do
    bash tests/cross/run.sh report "$triplet" "build-cross-$triplet"
done

[ "$total_skip" -eq 0 ] || echo "run-all: $total_skip skipped (see the reasons above)"
echo "all: $total_pass passed, $total_fail failed"
exit $status
