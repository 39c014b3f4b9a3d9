#!/usr/bin/env sh
# A small acme.sh-style dnsapi script for the acmesh hook's tests: adds
# and removes one TXT value through the PowerDNS HTTP API, written the
# way acme.sh's own dnsapi scripts are (credentials read with
# _readaccountconf_mutable, HTTP through _get/_post with _H1 headers,
# _info/_err/_debug for messages), so it exercises luacme's shims.
# JSON is handled by python3 (a test script may; acme.sh's use sed).
#
#   PDNS_Url=http://127.0.0.1:8081 PDNS_Token=... [PDNS_ServerId=localhost]

dns_luacmepdns_add() {
  fulldomain="$1"
  txtvalue="$2"
  _luacmepdns_setup || return 1
  _luacmepdns_root "$fulldomain" || return 1
  _debug "zone $_zone"
  _luacmepdns_set "$fulldomain" "$txtvalue" add
}

dns_luacmepdns_rm() {
  fulldomain="$1"
  txtvalue="$2"
  _luacmepdns_setup || return 1
  _luacmepdns_root "$fulldomain" || return 1
  _luacmepdns_set "$fulldomain" "$txtvalue" rm
}

_luacmepdns_setup() {
  PDNS_Url="${PDNS_Url:-$(_readaccountconf_mutable PDNS_Url)}"
  PDNS_ServerId="${PDNS_ServerId:-$(_readaccountconf_mutable PDNS_ServerId)}"
  PDNS_ServerId="${PDNS_ServerId:-localhost}"
  PDNS_Token="${PDNS_Token:-$(_readaccountconf_mutable PDNS_Token)}"
  if [ -z "$PDNS_Url" ] || [ -z "$PDNS_ServerId" ] || [ -z "$PDNS_Token" ]; then
    _err "set PDNS_Url, PDNS_ServerId and PDNS_Token"
    return 1
  fi
  _saveaccountconf_mutable PDNS_Url "$PDNS_Url"
  _H1="X-API-Key: $PDNS_Token"
  _api="$PDNS_Url/api/v1/servers/$PDNS_ServerId"
}

# The zone holding $1: the longest suffix the API answers 200 for.
_luacmepdns_root() {
  _d="$1."
  while _contains "$_d" "."; do
    _zone_json="$(_get "$_api/zones/$_d")" || { _err "cannot reach $_api"; return 1; }
    _status="$(_head_n 1 <"$HTTP_HEADER" | _egrep_o '[0-9]{3}' | _head_n 1)"
    if [ "$_status" = "200" ]; then
      _zone="$_d"
      return 0
    fi
    if [ "$_status" = "401" ] || [ "$_status" = "403" ]; then
      _err "PowerDNS refused the API key (HTTP $_status)"
      return 1
    fi
    _d="${_d#*.}"
    [ -n "$_d" ] || break
  done
  _err "no zone found for $1"
  return 1
}

# Add ($3 = add) or remove ($3 = rm) the value $2 at $1 in $_zone.
_luacmepdns_set() {
  _body="$(printf '%s' "$_zone_json" | python3 -c '
import json, sys
name, value, op = sys.argv[1].rstrip(".") + ".", "\"%s\"" % sys.argv[2], sys.argv[3]
zone = json.load(sys.stdin)
old = [r["content"] for s in zone["rrsets"]
       if s["name"] == name and s["type"] == "TXT" for r in s["records"]]
new = [c for c in old if c != value] + ([value] if op == "add" else [])
rr = {"name": name, "type": "TXT", "ttl": 60, "changetype": "REPLACE",
      "records": [{"content": c, "disabled": False} for c in new]}
if not new:
    rr = {"name": name, "type": "TXT", "changetype": "DELETE"}
print(json.dumps({"rrsets": [rr]}))
' "$1" "$2" "$3")" || { _err "bad zone JSON"; return 1; }
  _reply="$(_post "$_body" "$_api/zones/$_zone" "" "PATCH" "application/json")" || return 1
  _status="$(_head_n 1 <"$HTTP_HEADER" | _egrep_o '[0-9]{3}' | _head_n 1)"
  if [ "$_status" != "204" ]; then
    _err "PATCH $_zone: HTTP $_status $_reply"
    return 1
  fi
  _info "$3 $2 at $1: done"
}
