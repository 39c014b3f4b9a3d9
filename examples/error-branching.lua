-- Issue one certificate and act on how it failed: a bad name, a name
-- the CA could not validate (which ones, and why), a rate limit, a CA
-- that cannot be reached, anything else.
--
--   luacme run examples/error-branching.lua [GLOBAL OPTIONS] DOCROOT NAME...
--
-- Exit status: 0 issued or unchanged, 64 a bad name, 65 validation
-- failed, 75 try again later (rate limit, CA unreachable), 1 otherwise.
local acme = require "luacme"
local cli = require "luacme.cli"
local output = require "luacme.output"

local m <close>, args, out = cli.open(arg)
local docroot = table.remove(args, 1)

local ok, res, err = pcall(m.issue, m, { domains = args,
    hooks = { "webroot:root=" .. tostring(docroot) } })
if not ok then
    -- Mistakes in the call itself raise strings.
    io.stderr:write("error-branching: ", tostring(res), "\n")
    return 1
end
if res then
    print(res.name .. ": " .. (res.code == 0 and "issued" or "unchanged"))
    return 0
end

local wait, limited = acme.rate_limit(err)
if err.kind == "identifier" or (err.kind == "usage" and
    tostring(err.detail):find("^bad domain name")) then
    -- manage says usage (only its text tells), the client identifier.
    print("bad name: " .. tostring(err.detail))
    return 64
elseif err.kind == "authorization" then
    -- One name fails as the error itself, several as err.errors.
    for _, e in ipairs(err.errors or { err }) do
        local cause = e.cause or e
        print("not validated: " .. tostring(e.identifier and
            e.identifier.value) .. ": " .. tostring(acme.errors.short_type(
            cause.type)) .. ": " .. tostring(cause.detail))
    end
    return 65
elseif limited then
    print("rate limited; retry in " .. wait .. " s")
    return 75
elseif err.kind == "connect" or err.kind == "timeout" or err.kind == "tls" then
    print("the CA is unreachable: " .. tostring(err.detail))
    return 75
end
print("failed: " .. output.error_lines(err)[1])
local hint = output.hint(err)
if hint then print("hint: " .. hint) end
return 1
