#!/usr/bin/env bash
# Unpacks Debian's target-architecture packages that luacme builds and
# runs against into a private sysroot, without installing them on the
# host: multiarch co-installation (libssl-dev:arm64 beside :amd64) needs
# the host's versions to match the archive's exactly, and would upgrade
# the host's libraries to get there. `apt-get download` + `dpkg-deb -x`
# need neither.
#   tests/cross/sysroot.sh ARCH DIR     e.g. arm64 build-cross/sysroot-arm64
# The result serves both the compiler (--sysroot) and qemu-user (-L DIR).
# Safe to run again: DIR is rebuilt only when the package list changed.
set -euo pipefail

arch=$1
dir=$2
# What luacme links: OpenSSL and libcurl dynamically, Lua and lua-cjson
# statically, zstd (the embedded modules' compression, libcurl's too);
# libc6-dev brings the C library, crt files and headers.
roots=(libc6-dev libssl-dev libcurl4-openssl-dev liblua5.4-dev
    lua-cjson-dev libzstd-dev)

# The dependency closure for ARCH, Depends and Pre-Depends only; only
# libraries matter: tools the closure reaches (dpkg, tar...) run on no one.
tools='^(dpkg|tar|install-info|ncurses-bin|libc-dev-bin|rpcsvc-proto|libacl1|libselinux1|libpcre2-8-0|libmd0|libbz2-1.0|liblzma5)$'
closure()
{
    apt-cache depends --recurse --no-recommends --no-suggests \
        --no-conflicts --no-breaks --no-replaces --no-enhances \
        "${roots[@]/%/:$arch}" 2>/dev/null |
        sed -nE "s/^([a-z0-9][a-z0-9.+-]*):$arch\$/\1/p" |
        grep -vE "$tools" | sort -u
}

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
# apt lists ARCH's packages only once dpkg knows the architecture; that
# installs nothing (apt-get download needs only the lists).
if [ "$arch" != "$(dpkg --print-architecture)" ] &&
    ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
    $sudo dpkg --add-architecture "$arch"
    $sudo apt-get update -qq -o DPkg::Lock::Timeout=300
fi
mapfile -t want < <(closure)
if [ ${#want[@]} -lt ${#roots[@]} ]; then
    $sudo apt-get update -qq -o DPkg::Lock::Timeout=300
    mapfile -t want < <(closure)
fi
[ ${#want[@]} -ge ${#roots[@]} ] || {
    echo "sysroot: no $arch packages known to apt" >&2
    exit 1
}
want=("${want[@]/%/:$arch}")
stamp="$dir/.packages"
list=$(printf '%s\n' "${want[@]}")
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$list" ]; then
    exit 0
fi

rm -rf "$dir"
mkdir -p "$dir/.debs"
(cd "$dir/.debs" &&
    apt-get download -qq -o APT::Sandbox::User=root "${want[@]}")
for deb in "$dir"/.debs/*.deb; do
    dpkg-deb -x "$deb" "$dir"
done
rm -rf "$dir/.debs"
# Absolute links (/lib/ld-linux-aarch64.so.1 -> /lib/aarch64-linux-gnu/...)
# would point into the host; make them relative to the sysroot.
find "$dir" -type l -lname '/*' | while read -r link; do
    target=$(readlink "$link")
    ln -sfn "$(realpath -m --relative-to="$(dirname "$link")" "$dir$target")" "$link"
done
printf '%s\n' "$list" >"$stamp"
