-- A list of web sites, each issued (or kept) through luacme.manage with
-- the webroot hook; a failing site is reported and the others go on.
--
--   luacme run examples/site-list.lua [GLOBAL OPTIONS] DOCROOT=NAME[,NAME...]...
--
-- With -q only this recipe's own lines show. Exit status: 0 every site
-- has a valid certificate, 1 one or more failed.
local cli = require "luacme.cli"
local manage = require "luacme.manage"

local m <close>, args = cli.open(arg)
local failed = 0
for _, site in ipairs(args) do
    local root, list = site:match("^([^=]+)=(.+)$")
    if not root then error("site-list: DOCROOT=NAME[,NAME...] expected", 0) end
    local names = {}
    for n in list:gmatch("[^,]+") do names[#names + 1] = n end
    local res, err = m:issue{ names = names, hooks = { "webroot:root=" .. root } }
    if res then
        print(string.format("%s: %s, expires %s", res.name,
            res.renewed and "issued" or "unchanged",
            os.date("!%Y-%m-%d", res.not_after)))
    else
        failed = failed + 1
        -- One line per failing name follows the first.
        print(names[1] .. ": failed: " .. tostring(err))
        print("  hint: " .. (manage.hint(err) or "none"))
    end
end
print(string.format("%d of %d sites failed", failed, #args))
return failed > 0 and 1 or 0
