-- Shared by the responder scenarios (responder_*_test.lua): one issuance
-- through luacme.issuance with a challenge hook loaded by spec, and
-- the checks that the hook's own responder is what Pebble validated.
local t = require "testlib"
local E = require "e2e"
local core = require "luacme.core"
local hooks = require "luacme.hooks"
local issuance = require "luacme.issuance"

local M = {}

-- Issue for names with the hook of spec. Returns the issuance result
-- plus deployed (the challenge tables the hook got, in order), key (the
-- certificate key) and cleaned (cleanup calls that succeeded). Raises
-- when anything fails. opts (optional): after_deploy(ch) runs after each
-- successful deploy, on_event is issuance's.
function M.issue(spec, names, opts)
  opts = opts or {}
  local hook = assert(hooks.load(spec, "challenge"))
  local c = E.account()
  local ids, dns, ips = E.ids(names)
  local key = assert(core.key_generate("ec256"))
  local csr = assert(core.csr{ key = key, names = dns, ips = ips })
  local deployed, cleaned = {}, 0
  -- The loaded hook, watched: what it was given and what it cleaned.
  local watched = { name = hook.name, opts = hook.opts, types = hook.types,
    deploy = function(ch, hopts)
      deployed[#deployed + 1] = ch
      local ok, e = hook.deploy(ch, hopts)
      if ok and opts.after_deploy then opts.after_deploy(ch) end
      return ok, e
    end,
    cleanup = function(ch, opts)
      local ok, e = hook.cleanup(ch, opts)
      if ok then cleaned = cleaned + 1 end
      return ok, e
    end }
  local res, err = issuance.issue(c, {
    identifiers = ids, csr = csr, timeout = 60, hooks = { watched },
    on_event = opts.on_event })
  if not res then error("issue " .. table.concat(names, ",") .. ": " ..
    tostring(err), 2) end
  res.deployed, res.key, res.cleaned = deployed, key, cleaned
  return res
end

-- The certificate is good, every challenge went through the hook's one
-- responder, and Pebble's validation was answered by it: 3 requests
-- (http-01) or handshakes (tls-alpn-01) per challenge, nothing refused,
-- everything removed and closed afterwards.
function M.check_served(res, ty, n)
  t.eq(#res.deployed, n, "challenges deployed")
  t.eq(res.cleaned, n, "challenges cleaned up")
  t.ok(core.cert_matches_key(res.certs[1], res.key))
  local ok, out = E.verify_chain(res.certs, E.root_pem(0))
  t.ok(ok, out)
  local r = res.deployed[1].responder
  t.ok(r, "deploy recorded its responder")
  for _, ch in ipairs(res.deployed) do
    t.eq(ch.type, ty)
    t.eq(ch.responder, r, "one responder for all challenges")
  end
  local st = r:stats()
  t.match(tostring(r), "closed")
  if ty == "tls-alpn-01" then
    -- Pebble's side of a TLS 1.3 handshake ends when it has sent its
    -- Finished; ours when we have read it. The validation (and so the
    -- cleanup that stops the responder) can come first: under qemu-user
    -- a stopped responder had counted 1 of 3 handshakes served. Every
    -- ClientHello was necessarily read before Pebble could validate.
    t.eq(st.requests, 3 * n, "ClientHellos for " .. n .. " challenges " ..
      "(Pebble validates each 3 times, at once)")
    t.ok(st.served <= st.requests, "served " .. st.served)
  else
    t.eq(st.served, 3 * n, "served for " .. n .. " challenges (Pebble " ..
      "validates each 3 times, at once)")
  end
  t.eq(st.not_found, 0, "unknown tokens / SNI")
  t.eq(st.bad, 0, "refused requests / handshakes")
  t.eq(st.entries, 0, "all removed by cleanup")
  t.eq(st.active, 0)
end

-- Does anything answer HTTP on Pebble's httpPort?
function M.http_port_answers()
  local h = assert(core.http{ allow_http = true, timeout = 5 })
  local status = h:request{ url = "http://127.0.0.1:" .. E.env.http_port ..
    "/" }
  h:close()
  return status ~= nil
end

return M
