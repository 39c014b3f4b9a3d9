-- exec: runs an existing dehydrated-style hook script, directly (execve,
-- never through a shell), with dehydrated's argument protocol:
--
--   deploy_challenge DOMAIN TOKEN_FILENAME TOKEN_VALUE
--   clean_challenge  DOMAIN TOKEN_FILENAME TOKEN_VALUE
--   deploy_cert      DOMAIN KEYFILE CERTFILE FULLCHAINFILE CHAINFILE TIMESTAMP
--   unchanged_cert   DOMAIN KEYFILE CERTFILE FULLCHAINFILE CHAINFILE
--   invalid_challenge DOMAIN RESPONSE
--   request_failure  STATUSCODE REASON REQTYPE HEADERS
--   startup_hook
--   exit_hook
--
-- TOKEN_VALUE is the key authorization for http-01 and tls-alpn-01, the
-- TXT value for dns-01; DOMAIN of a wildcard is the base name. Scripts
-- ignore handler names they do not know (dehydrated's own example does),
-- so more may be added. The environment is the caller's minus luacme's
-- secrets; output is collected, and a non-zero exit is an error carrying
-- the script's stderr.
local core = require "luacme.core"
local cjson = require "cjson.safe"
local hooks = require "luacme.hooks"

local M = {
    description = "run a dehydrated-style hook script (no shell)",
    -- Scripts written for dehydrated expect one call at a time.
    serial = true,
    options = {
        { name = "script", required = true,
          help = "the script (or give its path as the spec: --hook ./hook.sh)" },
        { name = "types",
          help = "challenge types it solves, e.g. http-01,dns-01 " ..
              "(default http-01)" },
        { name = "timeout", help = "seconds one call may take (default 300)" },
    },
}

function M.types(opts)
    local out = {}
    for ty in (opts.types or "http-01"):gmatch("[^,%s]+") do
        out[#out + 1] = ty
    end
    return out
end

function M.setup(opts)
    local st = core.stat(opts.script)
    if not st or st.type ~= "file" then
        return nil, "script " .. opts.script .. " is not a file"
    end
    if st.mode & 73 == 0 then                       -- 0111
        return nil, "script " .. opts.script .. " is not executable"
    end
    local _, err = hooks.seconds(opts.timeout, 300)
    if err then return nil, err end
    return true
end

local function run(opts, ...)
    local argv = { opts.script, ... }
    for i = 2, #argv do argv[i] = tostring(argv[i]) end
    local res, err = hooks.run(argv, {
        timeout = hooks.seconds(opts.timeout, 300) })
    if not res then return nil, err end
    return true
end

local function token_value(ch)
    if ch.type == "dns-01" then return ch.value end
    return ch.key_authorization
end

function M.deploy(ch, opts)
    return run(opts, "deploy_challenge", ch.domain, ch.token,
        token_value(ch))
end

function M.cleanup(ch, opts)
    return run(opts, "clean_challenge", ch.domain, ch.token,
        token_value(ch))
end

function M.deploy_cert(cert, opts)
    return run(opts, "deploy_cert", cert.name, cert.key_file,
        cert.cert_file, cert.fullchain_file, cert.chain_file,
        string.format("%d", math.floor(cert.timestamp or os.time())))
end

function M.unchanged_cert(cert, opts)
    return run(opts, "unchanged_cert", cert.name, cert.key_file,
        cert.cert_file, cert.fullchain_file, cert.chain_file)
end

-- RESPONSE: the CA's problem as JSON (type, detail, status), as
-- dehydrated passes the challenge's JSON.
function M.invalid(ch, err, opts)
    local doc = { detail = tostring(err) }
    if type(err) == "table" then
        doc = { type = err.type, detail = err.detail, status = err.status }
    end
    return run(opts, "invalid_challenge", ch.domain,
        cjson.encode(doc) or "{}")
end

function M.failure(err, opts)
    local status, reason, reqtype, headers = "", tostring(err), "", ""
    if type(err) == "table" then
        status = err.status and tostring(err.status) or ""
        reason = err.detail or err.kind or reason
        reqtype = err.method or err.uri or ""
        if type(err.headers) == "table" then
            local lines = {}
            for k, v in pairs(err.headers) do
                if type(v) == "table" then v = table.concat(v, ", ") end
                lines[#lines + 1] = k .. ": " .. tostring(v)
            end
            table.sort(lines)
            headers = table.concat(lines, "\n")
        end
    end
    return run(opts, "request_failure", status, reason, reqtype, headers)
end

function M.startup(opts)
    return run(opts, "startup_hook")
end

function M.exit(opts)
    return run(opts, "exit_hook")
end

return M
