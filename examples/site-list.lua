-- A list of web sites, each issued (or kept) through luacme.manage with
-- the webroot hook; a failing site is reported and the others go on.
--
--   luacme run examples/site-list.lua [GLOBAL OPTIONS] DOCROOT=NAME[,NAME...]...
--
-- Exit status: 0 every site has a valid certificate, 1 one or more failed.
local cli = require "luacme.cli"
local output = require "luacme.output"

local m <close>, args, out = cli.open(arg)
local sites = {}
for _, a in ipairs(args) do
    local root, list = a:match("^([^=]+)=(.+)$")
    if not root then error("site-list: DOCROOT=NAME[,NAME...] expected", 0) end
    local names = {}
    for n in list:gmatch("[^,]+") do names[#names + 1] = n end
    sites[#sites + 1] = { root = root, names = names }
end

local failed = 0
for _, site in ipairs(sites) do
    local res, err = m:issue{ domains = site.names,
        hooks = { "webroot:root=" .. site.root } }
    if res then
        print(string.format("%s: %s, expires %s", res.name,
            res.code == 0 and "issued" or "unchanged",
            os.date("!%Y-%m-%d", res.not_after)))
    else
        failed = failed + 1
        print(site.names[1] .. ": failed: " .. output.error_lines(err)[1])
        -- One failing name comes as the error itself, several as a list.
        local per = err.errors or (err.identifier and { err }) or {}
        for _, e in ipairs(per) do
            if e.identifier then
                print("  " .. e.identifier.value .. ": " ..
                    tostring(e.cause and e.cause.detail or e.detail))
            end
        end
        local hint = output.hint(err)
        if hint then print("  hint: " .. hint) end
    end
end
print(string.format("%d of %d sites failed", failed, #sites))
return failed > 0 and 1 or 0
