#!/usr/bin/env bash
# The main job of the README: really issue a certificate, on this machine,
# with nothing from the internet but Debian packages.
#
#   bash examples/quickstart.sh
#
# 1. installs what is missing (tests/deps.sh: build tools, pebble, openssl)
# 2. builds luacme in build/ (LUACME_BUILD_DIR overrides) unless it is there
# 3. starts a private CA on loopback through tests/e2e/pebble-env.py:
#    Pebble, pebble-challtestsrv as its DNS (every name is 127.0.0.1) and
#    a plain web server serving a webroot on Pebble's http-01 port
# 4. runs `luacme issue` with the webroot hook against them, in a fresh
#    state directory
# 5. prints the certificate's subject, names, issuer and expiry, and
#    checks it against Pebble's root
# Exit status 0 only when a certificate was issued and verifies.
# Everything started is stopped again; nothing outside the temporary
# directories is changed.
set -euo pipefail

if [ "${1:-}" = "--inside" ]; then
    # Step 4 and 5, run by pebble-env.py with the LUACME_E2E_* facts set.
    luacme=$2
    state=$(mktemp -d "${TMPDIR:-/tmp}/luacme-quickstart.XXXXXX")
    trap 'rm -rf "$state"' EXIT
    names=(example.test www.example.test)
    echo "== luacme issue -d ${names[0]} -d ${names[1]} --hook webroot:root=..."
    "$luacme" issue -d "${names[0]}" -d "${names[1]}" \
        --hook "webroot:root=$LUACME_E2E_WEBROOT" \
        --agree-tos --contact admin@example.test \
        --directory "$LUACME_E2E_DIRECTORY" \
        --ca-bundle "$LUACME_E2E_CA_FILE" --state "$state"
    dir=$state/certs/${names[0]}
    if [ ! -s "$dir/cert.pem" ] || [ ! -s "$dir/privkey.pem" ]; then
        echo "quickstart: luacme said it issued, but no certificate is stored" >&2
        exit 1
    fi
    echo
    echo "== the certificate ($dir/cert.pem)"
    openssl x509 -in "$dir/cert.pem" -noout -subject -issuer -enddate \
        -ext subjectAltName
    # The names asked for are the names in it.
    sans=$(openssl x509 -in "$dir/cert.pem" -noout -ext subjectAltName)
    for n in "${names[@]}"; do
        grep -q "DNS:$n\b" <<<"$sans" || {
            echo "quickstart: $n is not in the certificate" >&2; exit 1; }
    done
    # And it chains to the private CA's root.
    curl -sS --fail --cacert "$LUACME_E2E_CA_FILE" \
        "$LUACME_E2E_MGMT/roots/0" >"$state/root.pem"
    openssl verify -CAfile "$state/root.pem" -untrusted "$dir/chain.pem" \
        "$dir/cert.pem"
    echo
    echo "== luacme list"
    "$luacme" list --state "$state"
    exit 0
fi

cd "$(dirname "$0")/.."
bash tests/deps.sh
build=${LUACME_BUILD_DIR:-build}
if [ ! -x "$build/luacme" ]; then
    echo "== building luacme in $build/"
    cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
# Cheap when nothing changed; picks up edits otherwise.
cmake --build "$build" -j "$(nproc)" >/dev/null
echo "== starting Pebble, challtestsrv and a web server on loopback"
exec python3 tests/e2e/pebble-env.py -- \
    bash examples/quickstart.sh --inside "$PWD/$build/luacme"
