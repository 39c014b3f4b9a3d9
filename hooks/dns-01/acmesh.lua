-- acmesh (dns-01): runs an acme.sh dnsapi script, so the DNS providers
-- written for acme.sh (https://github.com/acmesh-official/acme.sh/tree/
-- master/dnsapi) work unchanged. luacme ships none; point `script` at
-- the provider's file and pass its credentials through the environment:
--
--   CF_Token=... CF_Zone_ID=... luacme issue -d '*.example.com' --hook \
--     acmesh:script=/opt/acme.sh/dnsapi/dns_cf.sh,env=CF_Token,CF_Zone_ID
--
-- For each challenge it runs, without a shell in between on our side,
--   /bin/sh -c '<shims>; . "$LUACME_ACMESH_SCRIPT"; dns_<name>_add "$1" "$2"' \
--       acmesh FQDN VALUE
-- and dns_<name>_rm the same way in cleanup (FQDN without the trailing
-- dot, as acme.sh passes it). The script path travels in an environment
-- variable and FQDN and VALUE as arguments, so none of them is parsed by
-- the shell as code. A non-zero status is an error showing the script's
-- stderr.
--
-- acme.sh scripts call helpers of acme.sh itself; the shims below give
-- the common ones: _info/_err/_debug* (to stderr), the account/domain
-- config readers (they read the environment variable of that name) and
-- savers (no-ops: luacme keeps no acme.sh config), _get/_post/_head_n/
-- _egrep_o/_contains/_exists/_math and friends (_get and _post through
-- curl, with _H1.._H5 as headers and the reply headers in $HTTP_HEADER).
--
-- Environment: the script gets luacme's environment without luacme's own
-- secrets (see hooks/README.md), plus every variable named in `env`
-- (copied even when it looks like a luacme secret: you asked for it).
-- An entry NAME:FROM gives the script NAME with the value of our FROM,
-- so a credential can live in a LUACME_*_TOKEN variable, hidden from
-- every other program luacme starts, and reach only this script under
-- the name it expects: env=CF_Token:LUACME_CF_TOKEN.
-- Each script adds and removes only its own value; acme.sh scripts do.
local core = require "luacme.core"
local dns = require "luacme.dns"
local hooks = require "luacme.hooks"

local M = {
    description = "dns-01: an acme.sh dnsapi script (dns_<name>_add/_rm)",
    types = { "dns-01" },
    options = dns.with_options({
        { name = "script", required = true,
          help = "the acme.sh dnsapi script, e.g. /opt/acme.sh/dnsapi/" ..
              "dns_cf.sh" },
        { name = "name", help = "provider name in dns_<name>_add " ..
            "(default: from the file name dns_<name>.sh)" },
        { name = "env", help = "comma-separated environment variables " ..
            "to pass to the script (its credentials); NAME:FROM passes " ..
            "our FROM as NAME" },
        { name = "timeout", default = "300",
          help = "seconds a script may take (300)" },
        { name = "shell", default = "/bin/sh", help = "the POSIX shell" },
    }),
}

M.SHIMS = [=[
_info() { printf '%s\n' "$*" >&2; }
_err() { printf 'error: %s\n' "$*" >&2; return 1; }
_debug() { [ -z "$LUACME_ACMESH_DEBUG" ] || printf 'debug: %s\n' "$*" >&2; }
_debug2() { _debug "$@"; }
_debug3() { _debug "$@"; }
_secure_debug() { :; }
_secure_debug2() { :; }
_secure_debug3() { :; }
_luacme_var() {
  case "$1" in ''|[0-9]*|*[!A-Za-z0-9_]*) return 1 ;; esac
  eval "printf '%s' \"\${$1:-}\""
}
_readaccountconf() { _luacme_var "$1"; }
_readaccountconf_mutable() { _luacme_var "$1"; }
_readdomainconf() { _luacme_var "$1"; }
_saveaccountconf() { :; }
_saveaccountconf_mutable() { :; }
_savedomainconf() { :; }
_clearaccountconf() { :; }
_clearaccountconf_mutable() { :; }
_cleardomainconf() { :; }
_exists() { command -v "$1" >/dev/null 2>&1; }
_contains() { case "$1" in *"$2"*) return 0 ;; esac; return 1; }
_startswith() { case "$1" in "$2"*) return 0 ;; esac; return 1; }
_endswith() { case "$1" in *"$2") return 0 ;; esac; return 1; }
_egrep_o() { grep -E -o -- "$1" 2>/dev/null; }
_lower_case() { tr '[:upper:]' '[:lower:]'; }
_upper_case() { tr '[:lower:]' '[:upper:]'; }
_head_n() { head -n "$1"; }
_tail_n() { tail -n "$1"; }
_math() { _luacme_m="$*"; printf '%s' "$(($_luacme_m))"; }
_sleep() { sleep "$1"; }
_time() { date -u +%s; }
_utc_date() { date -u '+%Y-%m-%d %H:%M:%S'; }
_base64() {
  if [ "$1" ]; then openssl base64 -e; else openssl base64 -e | tr -d '\r\n'; fi
}
_dbase64() {
  if [ "$1" ]; then openssl base64 -d -A; else openssl base64 -d; fi
}
_normalizeJson() {
  sed 's/" *: *\([\"{\[]\)/":\1/g' | sed 's/^ *\([^ ]\)/\1/' | tr -d '\r\n'
}
HTTP_HEADER=$(mktemp) || exit 1
trap 'rm -f "$HTTP_HEADER"' EXIT
_luacme_curl() {
  _luacme_u="$1"; shift
  set -- -sS -D "$HTTP_HEADER" -A "${USER_AGENT:-luacme-acmesh}" "$@"
  [ -z "$_H1" ] || set -- "$@" -H "$_H1"
  [ -z "$_H2" ] || set -- "$@" -H "$_H2"
  [ -z "$_H3" ] || set -- "$@" -H "$_H3"
  [ -z "$_H4" ] || set -- "$@" -H "$_H4"
  [ -z "$_H5" ] || set -- "$@" -H "$_H5"
  curl "$@" -- "$_luacme_u"
}
_get() {
  if [ "$2" ]; then _luacme_curl "$1" -I; else _luacme_curl "$1"; fi
  _ret=$?; return $_ret
}
_post() {
  printf '%s' "$1" | _luacme_curl "$2" -X "${4:-POST}" \
    -H "Content-Type: ${5:-application/x-www-form-urlencoded}" \
    --data-binary @-
  _ret=$?; return $_ret
}
]=]

local NAME = "^[A-Za-z0-9_]+$"
local VAR = "^[A-Za-z_][A-Za-z0-9_]*$"

local function provider(opts)
    if opts.name and opts.name ~= "" then return opts.name end
    return (opts.script:match("dns_([A-Za-z0-9_]+)%.sh$"))
end

-- The env option as a list of { name, from }.
local function env_names(opts)
    local out = {}
    for n in (opts.env or ""):gmatch("[^,%s]+") do
        local name, from = n:match("^([^:]*):(.*)$")
        out[#out + 1] = { name or n, from or n }
    end
    return out
end

function M.setup(opts)
    local text = core.read_file(opts.script, 4 * 1024 * 1024)
    if not text then
        return nil, "script " .. hooks.printable(opts.script, 200) ..
            " cannot be read"
    end
    local name = provider(opts)
    if not name or not name:find(NAME) then
        return nil, "name must be the provider in dns_<name>_add " ..
            "(letters, digits, _); the script is not named dns_<name>.sh"
    end
    for _, fn in ipairs({ "dns_" .. name .. "_add", "dns_" .. name ..
        "_rm" }) do
        if not text:find(fn .. "%s*%(%s*%)") then
            return nil, hooks.printable(opts.script, 200) .. " defines no " ..
                fn .. "()"
        end
    end
    for _, v in ipairs(env_names(opts)) do
        for _, n in ipairs(v) do
            if not n:find(VAR) then
                return nil, "env: " .. hooks.printable(n, 100) ..
                    " is not a variable name"
            end
        end
    end
    local _, e = dns.check_number(opts, "timeout", 1, 86400)
    if e then return nil, e end
    return dns.setup(opts)
end

local function run(opts, fn, fqdn, value)
    local env = hooks.environment()
    local mine = core.environ()
    for _, v in ipairs(env_names(opts)) do env[v[1]] = mine[v[2]] end
    env.LUACME_ACMESH_SCRIPT = opts.script
    local code = M.SHIMS .. '. "$LUACME_ACMESH_SCRIPT" || exit 1\n' ..
        fn .. ' "$1" "$2"\n'
    local res, err = hooks.run({ opts.shell, "-c", code, "acmesh",
        fqdn, value }, { env = env, timeout = tonumber(opts.timeout) })
    if not res then
        err = tostring(err):gsub("^[^:]*%-c: ", "")
        return nil, "acmesh (" .. fn .. "): " .. fqdn .. ": " .. err
    end
    return true
end

-- A failed script may have written anyway: never "refused", so cleanup
-- always runs dns_<name>_rm after a deploy.
M.deploy, M.cleanup = dns.provider("acmesh",
    function(ch, opts, name)
        return run(opts, "dns_" .. provider(opts) .. "_add",
            (name:gsub("%.$", "")), ch.value)
    end,
    function(ch, opts, name)
        return run(opts, "dns_" .. provider(opts) .. "_rm",
            (name:gsub("%.$", "")), ch.value)
    end)

M.ready = dns.ready

return M
