-- When a certificate is due for renewal. Pure functions: the clock (now,
-- unix seconds) and the random source (rand() -> number in [0, 1)) are
-- passed in, so tests need no waiting. --force is the caller's.
local client = require "luacme.client"
local util = require "luacme.util"

local M = {}

local DAY = 86400

-- Certificates valid for less than this renew at half their lifetime,
-- longer ones once a third remains.
M.SHORT_LIFETIME = 10 * DAY

-- A uniform number in [0, 1) from the system's random generator.
function M.random()
    local core = require "luacme.core"
    local b = core.random(7)
    local n = 0
    for i = 1, 7 do n = n * 256 + b:byte(i) end
    return (n >> 3) / (1 << 53)
end

-- "2025-01-02T03:04:05Z" for unix time t.
M.format_time = util.format_rfc3339

-- An RFC 3339 date-time (as in ARI's suggestedWindow) as unix seconds,
-- fractions dropped; nil when malformed.
function M.parse_time(s)
    local t = util.parse_rfc3339(s)
    return t and math.floor(t)
end

local function num(v)
    if math.type(v) == "float" and v == math.floor(v) then
        return math.tointeger(v)
    end
    if math.type(v) then return v end
    return nil
end

-- The lifetime rule: due once a third of the lifetime remains (half of
-- it for certificates valid under SHORT_LIFETIME).
local function by_lifetime(nb, na, now, note)
    local life = na - nb
    local left = life < M.SHORT_LIFETIME and life / 2 or life / 3
    local when = math.floor(na - left)
    local frac = life < M.SHORT_LIFETIME and "half" or "a third"
    if now >= when then
        return true, when, string.format("%s of its lifetime remains " ..
            "(expires %s)%s", frac, M.format_time(na), note)
    end
    return false, when, string.format("due at %s, when %s of its " ..
        "lifetime remains%s", M.format_time(when), frac, note)
end

-- Is the certificate due? info is core.cert_info's table (not_before,
-- not_after; nil when there is no certificate); meta the certificate's
-- meta table (meta.ari = { window_start, window_end } when the CA sent
-- renewal information; meta.revoked when it was revoked) or directly a
-- client:get_renewal_info result ({ start, end, ... }); now the time,
-- rand the random source (default M.random). Returns due, when (unix
-- time it is or was due), reason. A recipe holding stored certificates
-- asks luacme.manage's m:due(name), which fetches the window first.
--
-- With a valid ARI window (RFC 9773 §4.2) a uniformly random moment in
-- [start, end] is chosen once and kept in meta.ari.renew_at (with the
-- window it was drawn from, renew_at_start/renew_at_end), so repeated
-- runs do not re-roll; the caller saves meta. A changed window draws a
-- new moment. A window with end <= start is invalid: the lifetime rule
-- applies, and so it does when the chosen moment is later than the
-- lifetime rule's. An expired certificate is always due.
function M.due(info, meta, now, rand)
    rand = rand or M.random
    if type(info) ~= "table" or not num(info.not_after) or
        not num(info.not_before) then
        return true, now, "no usable certificate"
    end
    local nb, na = num(info.not_before), num(info.not_after)
    if now >= na then
        return true, now, "expired at " .. M.format_time(na)
    end
    if na <= nb then
        return true, now, "the certificate's validity period is empty"
    end
    if type(meta) == "table" and meta.revoked then
        return true, now, "it was revoked"
    end
    local ari
    if type(meta) == "table" and num(meta.start) and num(meta["end"]) then
        ari = meta                      -- a get_renewal_info result
    elseif type(meta) == "table" and type(meta.ari) == "table" then
        ari = meta.ari
    end
    local ws = ari and (num(ari.window_start) or num(ari.start))
    local we = ari and (num(ari.window_end) or num(ari["end"]))
    if ws and we then
        if we <= ws then
            return by_lifetime(nb, na, now,
                "; the CA's renewal window is invalid (end <= start)")
        end
        ws, we = math.floor(ws), math.floor(we)
        local at = num(ari.renew_at)
        if not at or num(ari.renew_at_start) ~= ws or
            num(ari.renew_at_end) ~= we then
            local r = rand()
            at = ws + math.floor(r * (we - ws + 1))
            if at > we then at = we end
            ari.renew_at, ari.renew_at_start, ari.renew_at_end = at, ws, we
        end
        local window = string.format("the CA's renewal window %s .. %s",
            M.format_time(ws), M.format_time(we))
        -- RFC 9773 §4.2: the CA may say why (an incident, a revocation).
        if type(ari.explanation_url) == "string" then
            window = window .. " (explained at " .. ari.explanation_url .. ")"
        end
        -- A window later than the lifetime rule (one after expiry, a
        -- CA's mistake or a hostile one) must not keep a certificate
        -- past it: the earlier of the two wins.
        local _, lwhen = by_lifetime(nb, na, now, "")
        if at > lwhen then
            return by_lifetime(nb, na, now, "; " .. window ..
                " is later than that")
        end
        if now >= we then
            return true, now, window .. " has passed"
        end
        if now >= at then
            return true, at, "inside " .. window .. " (chosen moment " ..
                M.format_time(at) .. ")"
        end
        return false, at, "due at " .. M.format_time(at) .. ", inside " ..
            window
    end
    return by_lifetime(nb, na, now, "")
end

-- When to fetch renewal information again (RFC 9773 §4.3): now plus
-- the Retry-After seconds as client.ari_retry clamps them (nil: an
-- error, a missing or invalid header, gives its default).
function M.next_ari_check(retry_after, now)
    return now + client.ari_retry(num(retry_after))
end

-- Seconds to wait before a --jitter run: uniform in [0, max), whole
-- seconds. max must be a non-negative number (0 or nil: no wait).
function M.jitter(max, rand)
    if max == nil or max == 0 then return 0 end
    if not math.type(max) or max < 0 or max ~= max then
        error("renew.jitter: max must be a non-negative number", 2)
    end
    rand = rand or M.random
    return math.floor(rand() * max)
end

return M
