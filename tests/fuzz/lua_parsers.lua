-- Driven by fuzz_lua.c: every Lua function that reads server data gets
-- the fuzz input. They must return values or nil, err — never raise:
-- a raise here is a crash the fuzzer reports.
local cjson = require "cjson.safe"
local util = require "luacme.util"
local errors = require "luacme.errors"
local ident = require "luacme.ident"
local client = require "luacme.client"
local dns = require "luacme.dns"

local base = "https://ca.test:14000/acme/order/1"
local now = 1700000000

return function(data)
  util.links({ link = data }, base)
  util.links({ link = { data, data } }, base)
  util.link({ link = data }, "next", base)
  util.retry_after({ ["retry-after"] = data }, now)
  util.parse_http_date(data)
  util.parse_rfc3339(data)
  util.media_type({ ["content-type"] = data })
  util.resolve(base, data)
  ident.normalize({ type = "dns", value = data })
  ident.normalize({ type = "ip", value = data })
  -- a CNAME target as libresolv hands it over (alias mode)
  if dns.is_host_name(data) and (#data > 254 or data:find("[^%w_.%-]")) then
    error("is_host_name accepted " .. data)
  end
  local doc = cjson.decode(data)
  if doc ~= nil then
    client.parse.order(doc, base, { url = base })
    client.parse.authz(doc, base)
    client.parse.account(doc, base)
    client.parse.challenge(doc, base)
    if type(doc) == "table" then
      local e = errors.problem(400, doc, { ["retry-after"] = "5" })
      tostring(e)
      client.order_error(doc)
    end
  end
end
