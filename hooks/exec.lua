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
local dns = require "luacme.dns"
local hooks = require "luacme.hooks"

local M = {
    description = "run a dehydrated-style hook script (no shell)",
    -- Scripts written for dehydrated expect one call at a time; the
    -- user may say a script can take several (parallel=yes). Either way
    -- a running script holds up nothing else (luacme.sched.spawn).
    serial = function(opts)
        return not hooks.truthy(opts.parallel)
    end,
    options = {
        { name = "script", required = true,
          help = "the script (or give its path as the spec: --hook ./hook.sh)" },
        { name = "types",
          help = "challenge types it solves, e.g. http-01,dns-01 " ..
              "(default http-01)" },
        { name = "timeout", help = "seconds one call may take (default 300)" },
        { name = "dns_wait",
          help = "dns-01: seconds to wait after deploy_challenge before " ..
              "the CA validates (for scripts that do not wait themselves; " ..
              "also set by --dns-wait)" },
        { name = "chain",
          help = "yes: one deploy_challenge (and one clean_challenge) " ..
              "call with every challenge of the order, DOMAIN " ..
              "TOKEN_FILENAME TOKEN_VALUE repeated, as dehydrated's " ..
              "HOOK_CHAIN=yes" },
        { name = "parallel",
          help = "yes: the script may run several calls at once (the " ..
              "challenges of an order, certificates of renew " ..
              "--parallel); default one call at a time" },
        { name = "wellknown",
          help = "http-01: write the token file into this directory " ..
              "first and remove it after clean_challenge, as dehydrated " ..
              "does with WELLKNOWN (the script is then told only)" },
    },
}

-- Token files this run wrote into wellknown directories.
local written = {}

-- chain=yes: challenges deployed but not yet handed to the script
-- (pending), and those handed over, awaiting one clean_challenge
-- (chained); each a list of { DOMAIN, TOKEN_FILENAME, TOKEN_VALUE } by
-- script. The engine deploys every challenge before it asks ready(), so
-- the first ready() sends them all in one call.
local pending, chained = {}, {}

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
    if opts.dns_wait ~= nil then
        local n = tonumber(opts.dns_wait)
        if not n or n < 0 or n > 86400 then
            return nil, "dns_wait must be seconds (0..86400)"
        end
    end
    if hooks.truthy(opts.parallel) and hooks.truthy(opts.chain) then
        -- chain=yes hands every challenge to the first ready(): the
        -- others must wait for that call, which only serial calls do.
        return nil, "parallel=yes cannot be combined with chain=yes"
    end
    if opts.wellknown then
        local w = core.stat(opts.wellknown)
        if not w or w.type ~= "dir" then
            return nil, "wellknown " .. opts.wellknown .. " is not a directory"
        end
    end
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

-- The token file in opts.wellknown for an http-01 challenge, or nil.
local function wellknown_file(ch, opts)
    if not opts.wellknown or ch.type ~= "http-01" then return nil end
    if type(ch.token) ~= "string" or #ch.token > 256 or
        not ch.token:find("^[A-Za-z0-9_-]+$") then
        return nil, "refusing a token that is not [A-Za-z0-9_-]+"
    end
    return opts.wellknown:gsub("(.)/+$", "%1") .. "/" .. ch.token
end

function M.deploy(ch, opts)
    local file, err = wellknown_file(ch, opts)
    if err then return nil, err end
    if file then
        if core.lstat(file) and not written[file] then
            return nil, file .. " exists and was not created by luacme; " ..
                "refusing to replace it"
        end
        local ok, msg = core.write_file(file, ch.key_authorization, 420)
        if not ok then return nil, msg end
        written[file] = true
    end
    if hooks.truthy(opts.chain) then
        local list = pending[opts.script] or {}
        pending[opts.script] = list
        list[#list + 1] = { ch.domain, ch.token, token_value(ch) }
        return true
    end
    local ok, rerr = run(opts, "deploy_challenge", ch.domain, ch.token,
        token_value(ch))
    if ok and ch.type == "dns-01" and opts.dns_wait then dns.deployed(ch) end
    return ok, rerr
end

-- One call of the script for every triple of list.
local function run_chain(opts, handler, list)
    local args = {}
    for _, c in ipairs(list) do
        args[#args + 1], args[#args + 2], args[#args + 3] = c[1], c[2], c[3]
    end
    return run(opts, handler, table.unpack(args))
end

-- With chain=yes the first ready() makes the one deploy_challenge call
-- (raising when it fails: the order cannot go on). With dns_wait, a
-- dns-01 record counts as visible that long after deploy_challenge;
-- otherwise at once, as under dehydrated (whose scripts wait in
-- deploy_challenge when they need to).
function M.ready(ch, opts)
    if hooks.truthy(opts.chain) and pending[opts.script] then
        local list = pending[opts.script]
        pending[opts.script] = nil
        local done = chained[opts.script] or {}
        chained[opts.script] = done
        for _, c in ipairs(list) do done[#done + 1] = c end
        local ok, err = run_chain(opts, "deploy_challenge", list)
        if not ok then error(err, 0) end
    end
    if ch.type ~= "dns-01" or not opts.dns_wait then return true end
    return dns.ready(ch, { dns_wait = opts.dns_wait })
end

-- chain=yes: the one clean_challenge call for everything handed over;
-- a challenge never handed over is only dropped.
local function cleanup_chain(ch, opts)
    local list = pending[opts.script] or {}
    for i = #list, 1, -1 do
        if list[i][2] == ch.token then table.remove(list, i) end
    end
    local done = chained[opts.script]
    chained[opts.script] = nil
    if done and #done > 0 then
        return run_chain(opts, "clean_challenge", done)
    end
    return true
end

function M.cleanup(ch, opts)
    local ok, err
    if hooks.truthy(opts.chain) then
        ok, err = cleanup_chain(ch, opts)
    else
        ok, err = run(opts, "clean_challenge", ch.domain, ch.token,
            token_value(ch))
    end
    if ch.type == "dns-01" then dns.forget(ch) end
    local file = wellknown_file(ch, opts)
    if file and written[file] then
        local done, msg, kind = core.unlink(file)
        if done or kind == "not_found" then
            written[file] = nil
        elseif ok then
            ok, err = nil, msg
        end
    end
    return ok, err
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
