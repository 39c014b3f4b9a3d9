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
local manage = require "luacme.manage"

local m <close>, args = cli.open(arg)
local docroot = table.remove(args, 1)

local res, err = m:issue{ names = args, hooks = { "webroot:root=" .. docroot } }
if res then
    print(res.name .. ": " .. (res.renewed and "issued" or "unchanged"))
    return 0
end

local wait, limited = acme.rate_limit(err)
if err.kind == "identifier" then
    print("bad name: " .. err.identifier.value)
    return 64
elseif err.kind == "authorization" then
    for _, e in ipairs(err.errors) do  -- one per failing name, always
        print("not validated: " .. e.identifier.value .. ": " .. tostring(e.cause))
    end
    return 65
elseif limited then
    print("rate limited; retry in " .. wait .. " s")
    return 75
elseif err.kind == "connect" or err.kind == "timeout" or err.kind == "tls" then
    print("the CA is unreachable: " .. err.detail)
    return 75
end
print("failed: " .. tostring(err))
print("hint: " .. (manage.hint(err) or "none"))
return 1
