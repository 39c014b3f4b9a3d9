-- The account's orders list across pages (PEBBLE_WFE_ORDERS_PER_PAGE=2):
-- five orders, all five listed.
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local t = require "testlib"
local E = require "e2e"
local acme = require "luacme"
local core = require "luacme.core"

t.test("five orders over three pages", function()
  local c = E.account()
  local made = {}
  for i = 1, 5 do
    local o = assert(c:authorize_order(acme.domain_ids(E.name("page"))))
    made[#made + 1] = o.uri
  end
  local pages_before = E.pebble_count("/list%-orderz/")
  local list, err = c:list_orders()
  t.ok(list, "list_orders: " .. tostring(err))
  local urls = {}
  for i, v in ipairs(list) do
    urls[i] = type(v) == "table" and v.uri or v
  end
  t.eq(E.list_str(E.sorted(urls)), E.list_str(E.sorted(made)))
  t.ok(E.pebble_count("/list%-orderz/") - pages_before >= 3,
    "three pages fetched")
end)
