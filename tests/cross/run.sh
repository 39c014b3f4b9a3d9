#!/usr/bin/env bash
# Cross builds of luacme, tested under qemu-user (tests/run-all.sh calls
# this; by hand too):
#   tests/cross/run.sh build TRIPLET DIR    packages, sysroot, configure, build
#   tests/cross/run.sh report TRIPLET DIR   the figures of the last ctest run
# TRIPLET is aarch64-linux-gnu, arm-linux-gnueabihf or mipsel-linux-gnu.
# build installs Debian's cross compiler and qemu-user when missing,
# unpacks the target's libraries into DIR/sysroot (tests/cross/sysroot.sh:
# no multiarch packages on the host), configures DIR with
# tests/cross/TRIPLET.cmake and builds luacme. Exit status: 0 built,
# 77 skipped (the reason printed: the packages cannot be had), other
# values a failed build. Then `ctest` in DIR runs the Lua unit tests and
# tests/cross's issuances under the emulator (tests/cross/CMakeLists.txt).
#   LUACME_JOBS   parallel build jobs (default: number of cores)
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2

cmd=${1:?build or report}
triplet=${2:?triplet}
dir=${3:?build directory}
jobs=${LUACME_JOBS:-$(nproc)}

case "$triplet" in
aarch64-linux-gnu)   arch=arm64  qemu=qemu-aarch64 ;;
arm-linux-gnueabihf) arch=armhf  qemu=qemu-arm ;;
mipsel-linux-gnu)    arch=mipsel qemu=qemu-mipsel ;;
*) echo "cross: unknown target $triplet" >&2; exit 2 ;;
esac

skip()
{
    echo "cross: $triplet SKIPPED (not counted as passed): $*"
    exit 77
}

# Install what is missing; apt-get update only when something is.
need_pkgs()
{
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
            grep -q "ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "cross: installing ${missing[*]}" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq -o DPkg::Lock::Timeout=300 &&
        $sudo apt-get install -y -qq -o DPkg::Lock::Timeout=300 \
            --no-install-recommends "${missing[@]}" >/dev/null
}

build()
{
    need_pkgs "gcc-$triplet" "binutils-$triplet" qemu-user time ||
        skip "cannot install gcc-$triplet, binutils-$triplet, qemu-user"
    command -v "$qemu" >/dev/null || skip "$qemu not found after install"
    bash tests/cross/sysroot.sh "$arch" "$dir/sysroot" ||
        skip "Debian's $arch packages (libssl-dev, libcurl4-openssl-dev," \
            "liblua5.4-dev, lua-cjson-dev) cannot be had"
    local t0=$SECONDS extra=()
    # The build-time generator of the embedded modules (Lua bytecode)
    # runs on this machine, so it is built for this machine: Lua 5.4
    # bytecode is the same on these targets (little-endian, 4-byte
    # Instruction, 8-byte lua_Integer and lua_Number, as on the host).
    if grep -q LUACME_EMBEDGEN CMakeLists.txt; then
        local host=build-cross-host
        if ! { bash tests/deps.sh --build &&
            cmake -S . -B "$host" -DCMAKE_BUILD_TYPE=MinSizeRel \
                -DBUILD_TESTING=OFF &&
            cmake --build "$host" -j "$jobs" --target luacme_embedgen
        } >"$dir/host.log" 2>&1; then
            tail -n 30 "$dir/host.log"
            echo "cross: $triplet build FAILED (host embedgen, $dir/host.log)"
            return 1
        fi
        extra+=("-DLUACME_EMBEDGEN=$PWD/$host/luacme_embedgen")
    fi
    # MinSizeRel (-Os): what goes onto an appliance.
    if ! cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=MinSizeRel \
        -DCMAKE_TOOLCHAIN_FILE="$PWD/tests/cross/$triplet.cmake" \
        -DLUACME_SYSROOT="$PWD/$dir/sysroot" "${extra[@]}" \
        >"$dir/configure.log" 2>&1; then
        tail -n 30 "$dir/configure.log"
        echo "cross: $triplet build FAILED (configure, $dir/configure.log)"
        return 1
    fi
    if ! cmake --build "$dir" -j "$jobs" --target luacme >"$dir/build.log" 2>&1
    then
        grep -E 'error|warning' "$dir/build.log" | head -n 30
        echo "cross: $triplet build FAILED ($dir/build.log)"
        return 1
    fi
    grep -E 'warning' "$dir/build.log"
    echo "cross: $triplet built in $((SECONDS - t0)) s"
    rm -f "$dir/cross-report.txt"
}

report()
{
    local exe=$dir/luacme stripped size needed peak base n
    [ -x "$exe" ] || { echo "cross: $triplet: no binary"; return 1; }
    stripped=$(mktemp)
    "$triplet-strip" -o "$stripped" "$exe"
    size=$(stat -c %s "$stripped")
    rm -f "$stripped"
    needed=$("$triplet-readelf" -d "$exe" |
        sed -nE 's/.*Shared library: \[(.*)\]/\1/p' | tr '\n' ' ')
    # What ldd shows on the target: the loader's own --list, emulated.
    local interp ldd
    interp=$("$triplet-readelf" -l "$exe" |
        sed -nE 's/.*program interpreter: (.*)\]/\1/p')
    ldd=$("$qemu" -L "$dir/sysroot" "$dir/sysroot$interp" --list "$exe" |
        awk '$1 ~ /\.so/ { sub(".*/", "", $1); print $1 }' | tr '\n' ' ')
    local rep=$dir/cross-report.txt
    n=$(grep -c '^issue .*: ok ' "$rep" 2>/dev/null)
    peak=$(sed -nE 's/^issue .*peak RSS ([0-9]+) kB.*/\1/p' "$rep" 2>/dev/null |
        sort -n | tail -n 1)
    base=$(sed -nE 's/^baseline .*peak RSS ([0-9]+) kB.*/\1/p' "$rep" \
        2>/dev/null | sort -n | tail -n 1)
    echo "cross: $triplet: build ok (MinSizeRel), stripped ${size} bytes"
    echo "cross: $triplet: issuances passed under $qemu: ${n:-0} of 4"
    echo "cross: $triplet: peak RSS of an issuance ${peak:-?} kB" \
        "(the $qemu process; luacme --version alone: ${base:-?} kB)"
    echo "cross: $triplet: links (NEEDED): $needed"
    echo "cross: $triplet: ldd (all loaded): $ldd"
    [ -f "$rep" ] && sed "s/^/cross: $triplet:   /" "$rep"
    return 0
}

case "$cmd" in
build) mkdir -p "$dir" && build ;;
report) report ;;
*) echo "cross: build or report, not $cmd" >&2; exit 2 ;;
esac
