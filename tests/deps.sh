#!/usr/bin/env bash
# Installs what luacme needs to build and test, from Debian's packages
# only, and only what is missing (apt-get update runs once, and only when
# something has to be installed). Safe to run again.
#   tests/deps.sh          build + test dependencies
#   tests/deps.sh --build  only what building needs
set -euo pipefail

build_pkgs=(cmake make gcc pkg-config liblua5.4-dev lua-cjson-dev
    libcurl4-openssl-dev libssl-dev libzstd-dev)
test_pkgs=(pebble python3 openssl ca-certificates clang
    libclang-rt-14-dev procps curl time binutils
    pdns-server pdns-backend-sqlite3 sqlite3 bind9 bind9-dnsutils
    lua5.4 lua-cjson luarocks
    certbot dehydrated
    etcd-server redis-server)
# The dns-01 tests run pdns_server and named themselves on free loopback
# ports; the system services these packages bring must not sit on port 53.
# So must the etcd and redis services (the fleet tests run their own).
dns_services=(pdns named etcd redis-server)

pkgs=("${build_pkgs[@]}")
[ "${1:-}" = "--build" ] || pkgs+=("${test_pkgs[@]}")

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
        missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
case " ${missing[*]} " in
*" pdns-server "*|*" bind9 "*|*" etcd-server "*|*" redis-server "*)
    for svc in "${dns_services[@]}"; do
        $sudo systemctl disable --now "$svc" >/dev/null 2>&1 || true
    done ;;
esac
