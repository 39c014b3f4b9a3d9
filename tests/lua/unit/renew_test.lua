local t = require "testlib"
local renew = require "luacme.renew"

local DAY = 86400
local T0 = 1700000000          -- a fixed not_before

local function fixed(r)
    return function() return r end
end

local function never()
    error("rand must not be called here")
end

local function cert(days)
    return { not_before = T0, not_after = T0 + days * DAY }
end

t.test("lifetime rule: table of certificates and days", function()
    local cases = {
        -- lifetime (days), age (days), due?
        { 90, 0, false },
        { 90, 59, false },
        { 90, 59.99, false },
        { 90, 60, true },      -- exactly a third left
        { 90, 61, true },
        { 90, 89, true },
        { 30, 19, false },
        { 30, 21, true },
        { 6, 2.9, false },     -- short-lived: half of the lifetime
        { 6, 3, true },
        { 6, 3.1, true },
        { 9.99, 4.9, false },
        { 9.99, 5.0, true },
        { 10, 6.6, false },    -- 10 days is not "under 10 days"
        { 10, 6.7, true },
    }
    for _, c in ipairs(cases) do
        local due, when, reason = renew.due(cert(c[1]), {}, T0 + c[2] * DAY,
            never)
        t.eq(due, c[3], string.format("%g-day cert at day %g", c[1], c[2]))
        t.eq(type(reason), "string")
        local left = c[1] < 10 and c[1] / 2 or c[1] / 3
        t.eq(when, math.floor(T0 + (c[1] - left) * DAY))
    end
end)

t.test("90-day cert: reasons say when", function()
    local due, when, reason = renew.due(cert(90), nil, T0 + 59 * DAY)
    t.eq(due, false)
    t.eq(when, T0 + 60 * DAY)
    t.match(reason, "^due at 2024%-01%-13T22:13:20Z")
    t.match(reason, "a third")
    due, when, reason = renew.due(cert(90), nil, T0 + 61 * DAY)
    t.eq(due, true)
    t.eq(when, T0 + 60 * DAY)
    t.match(reason, "a third of its lifetime remains")
end)

t.test("expired and unusable certificates are always due", function()
    local now = T0 + 91 * DAY
    local due, when, reason = renew.due(cert(90), {}, now, never)
    t.eq(due, true)
    t.eq(when, now)
    t.match(reason, "^expired at ")
    -- expired wins over a future ARI window
    local meta = { ari = { window_start = now + DAY, window_end = now +
        2 * DAY } }
    due = renew.due(cert(90), meta, now, never)
    t.eq(due, true)
    t.eq(meta.ari.renew_at, nil)
    t.eq((renew.due(nil, {}, now)), true)
    t.eq((renew.due({ not_after = T0 }, {}, now)), true)
    local _
    due, _, reason = renew.due({ not_before = T0, not_after = T0 }, {},
        T0 - 10)
    t.eq(due, true)
    t.match(reason, "empty")
end)

t.test("ARI window in the future: random moment chosen once", function()
    local ws, we = T0 + 50 * DAY, T0 + 52 * DAY
    local meta = { ari = { window_start = ws, window_end = we } }
    local due, when = renew.due(cert(90), meta, T0 + 10 * DAY, fixed(0.25))
    t.eq(due, false)
    t.eq(when, ws + math.floor(0.25 * (we - ws + 1)))
    t.eq(meta.ari.renew_at, when)
    t.eq(meta.ari.renew_at_start, ws)
    t.eq(meta.ari.renew_at_end, we)
    -- the next cron runs reuse it: rand is not called again
    local at = meta.ari.renew_at
    due, when = renew.due(cert(90), meta, at - 1, never)
    t.eq(due, false)
    t.eq(when, at)
    due, when = renew.due(cert(90), meta, at, never)
    t.eq(due, true)
    t.eq(when, at)
end)

-- A#9.5: a window later than the lifetime rule (or after expiry) does
-- not postpone renewal past it; the earlier of the two wins. (This test
-- used to assert the opposite: ARI winning at day 61 with a window at
-- days 70..71.)
t.test("an ARI window later than the lifetime rule does not postpone it", function()
    -- day 61 of 90 is past the lifetime rule (day 60)
    local due, when, reason = renew.due(cert(90), { ari = {
        window_start = T0 + 70 * DAY, window_end = T0 + 71 * DAY } },
        T0 + 61 * DAY, fixed(0))
    t.eq(due, true)
    t.eq(when, T0 + 60 * DAY)
    t.match(reason, "later than")
    -- a window after expiry: due at the lifetime rule, not after it
    local meta = { ari = { window_start = T0 + 95 * DAY,
        window_end = T0 + 99 * DAY } }
    due, when = renew.due(cert(90), meta, T0 + 30 * DAY, fixed(0.5))
    t.eq(due, false)
    t.eq(when, T0 + 60 * DAY)
    due = renew.due(cert(90), meta, T0 + 60 * DAY, fixed(0.5))
    t.eq(due, true)
    -- an earlier window still wins (the CA wants it sooner)
    due, when, reason = renew.due(cert(90), { ari = {
        window_start = T0 + 20 * DAY, window_end = T0 + 22 * DAY } },
        T0 + 21 * DAY, fixed(0))
    t.eq(due, true)
    t.eq(when, T0 + 20 * DAY)
    t.match(reason, "inside the CA's renewal window")
    -- a window straddling the lifetime moment: the chosen moment if
    -- earlier, else the lifetime moment
    due, when = renew.due(cert(90), { ari = { window_start = T0 + 55 * DAY,
        window_end = T0 + 65 * DAY } }, T0 + 10 * DAY, fixed(0.99))
    t.eq(due, false)
    t.eq(when, T0 + 60 * DAY)
end)

t.test("ARI stored moment survives a JSON round trip", function()
    local cjson = require "cjson"
    local ws, we = T0 + 50 * DAY, T0 + 52 * DAY
    local meta = { ari = { window_start = ws, window_end = we } }
    renew.due(cert(90), meta, T0, fixed(0.5))
    local back = cjson.decode(cjson.encode(meta))
    local due, when = renew.due(cert(90), back, T0, never)
    t.eq(due, false)
    t.eq(when, meta.ari.renew_at)
end)

t.test("ARI window boundaries and uniform range", function()
    local ws, we = T0 + 50 * DAY, T0 + 50 * DAY + 100
    for _, c in ipairs({ { 0, ws }, { 0.999999999, we }, { 0.5, ws + 50 } }) do
        local meta = { ari = { window_start = ws, window_end = we } }
        local _, when = renew.due(cert(90), meta, T0, fixed(c[1]))
        t.eq(when, c[2], "rand " .. c[1])
    end
    -- with the real generator the moment stays inside the window
    for _ = 1, 50 do
        local meta = { ari = { window_start = ws, window_end = we } }
        local _, when = renew.due(cert(90), meta, T0)
        t.ok(when >= ws and when <= we, "moment " .. when .. " in window")
    end
end)

t.test("ARI window that moved draws a new moment", function()
    local meta = { ari = { window_start = T0 + 50 * DAY,
        window_end = T0 + 51 * DAY } }
    renew.due(cert(90), meta, T0, fixed(0))
    t.eq(meta.ari.renew_at, T0 + 50 * DAY)
    meta.ari.window_start, meta.ari.window_end = T0 + 20 * DAY,
        T0 + 21 * DAY
    local due, when = renew.due(cert(90), meta, T0 + 20 * DAY + 10,
        fixed(0))
    t.eq(due, true)
    t.eq(when, T0 + 20 * DAY)
    t.eq(meta.ari.renew_at, T0 + 20 * DAY)
end)

t.test("ARI window in the past: due now", function()
    local now = T0 + 30 * DAY
    local meta = { ari = { window_start = T0 + 10 * DAY,
        window_end = T0 + 11 * DAY } }
    local due, when, reason = renew.due(cert(90), meta, now, fixed(0.9))
    t.eq(due, true)
    t.eq(when, now)
    t.match(reason, "has passed")
end)

t.test("inverted or empty ARI window falls back to the lifetime", function()
    for _, w in ipairs({ { 52, 50 }, { 50, 50 } }) do
        local meta = { ari = { window_start = T0 + w[1] * DAY,
            window_end = T0 + w[2] * DAY } }
        local due, when, reason = renew.due(cert(90), meta, T0 + 59 * DAY,
            never)
        t.eq(due, false)
        t.eq(when, T0 + 60 * DAY)
        t.match(reason, "invalid")
        t.eq(meta.ari.renew_at, nil)
        t.eq((renew.due(cert(90), meta, T0 + 61 * DAY, never)), true)
    end
end)

t.test("next_ari_check clamps Retry-After", function()
    local now = 1000
    local cases = {
        { nil, now + 6 * 3600 },
        { 0, now + 60 },
        { 59, now + 60 },
        { 60, now + 60 },
        { 3600, now + 3600 },
        { 86400, now + 86400 },
        { 86401, now + 86400 },
        { 1e9, now + 86400 },
        { -5, now + 60 },
        { "soon", now + 6 * 3600 },
        { 0 / 0, now + 6 * 3600 },
    }
    for i, c in ipairs(cases) do
        t.eq(renew.next_ari_check(c[1], now), c[2], "case " .. i)
    end
end)

t.test("jitter is bounded and uses the injected source", function()
    t.eq(renew.jitter(0, never), 0)
    t.eq(renew.jitter(nil, never), 0)
    t.eq(renew.jitter(100, fixed(0)), 0)
    t.eq(renew.jitter(100, fixed(0.5)), 50)
    t.eq(renew.jitter(100, fixed(0.9999)), 99)
    for _ = 1, 50 do
        local j = renew.jitter(10)
        t.ok(j >= 0 and j < 10)
        t.eq(math.type(j), "integer")
    end
    t.raises(function() renew.jitter(-1) end, "non%-negative")
    t.raises(function() renew.jitter("x") end, "non%-negative")
end)

t.test("random is uniform-ish in [0, 1)", function()
    local lo, hi, sum = 1, 0, 0
    for _ = 1, 2000 do
        local r = renew.random()
        t.ok(r >= 0 and r < 1)
        lo, hi, sum = math.min(lo, r), math.max(hi, r), sum + r
    end
    t.ok(lo < 0.05 and hi > 0.95, "spread")
    t.ok(math.abs(sum / 2000 - 0.5) < 0.05, "mean")
end)

t.test("parse_time reads RFC 3339", function()
    t.eq(renew.parse_time("1970-01-01T00:00:00Z"), 0)
    t.eq(renew.parse_time("2023-11-14T22:13:20Z"), 1700000000)
    t.eq(renew.parse_time("2023-11-14T22:13:20.123456Z"), 1700000000)
    t.eq(renew.parse_time("2023-11-15T00:13:20+02:00"), 1700000000)
    t.eq(renew.parse_time("2023-11-14T21:13:20-01:00"), 1700000000)
    t.eq(renew.parse_time("2024-02-29T12:00:00Z"), 1709208000)
    t.eq(renew.format_time(1700000000), "2023-11-14T22:13:20Z")
    for _, bad in ipairs({ "2023-11-14", "2023-13-01T00:00:00Z",
        "2023-11-14T22:13:20", "x", "2023-11-14T25:00:00Z",
        "2023-11-14T22:13:20+0200" }) do
        t.eq(renew.parse_time(bad), nil, bad)
    end
    t.eq(renew.parse_time(nil), nil)
end)

-- RFC 9773 §4.2 (A#74): the CA's explanationURL is shown with the window.
t.test("ARI explanation URL is part of the reason", function()
    local ws, we = T0 + 50 * DAY, T0 + 52 * DAY
    local meta = { ari = { window_start = ws, window_end = we,
        explanation_url = "https://ca.test/incident/42" } }
    local due, _, reason = renew.due(cert(90), meta, T0 + 10 * DAY, fixed(0))
    t.eq(due, false)
    t.match(reason, "explained at https://ca%.test/incident/42")
    due, _, reason = renew.due(cert(90), meta, ws + 1, fixed(0))
    t.eq(due, true)
    t.match(reason, "^inside the CA's renewal window .* %(explained at " ..
        "https://ca%.test/incident/42%)")
    meta.ari.explanation_url = nil
    _, _, reason = renew.due(cert(90), meta, ws + 1, fixed(0))
    t.ok(not reason:find("explained", 1, true))
end)
