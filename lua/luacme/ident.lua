-- Identifiers: DNS names to lower-case A-labels (IDNA, punycode per
-- RFC 3492), IP addresses to their canonical text (RFC 5952 for IPv6),
-- and the checks that refuse a bad name before anything is sent.
local M = {}

---------------------------------------------------------------------------
-- Punycode (RFC 3492 §6.3).

local BASE, TMIN, TMAX, SKEW, DAMP = 36, 1, 26, 38, 700
local INITIAL_BIAS, INITIAL_N = 72, 128

local function adapt(delta, numpoints, first)
    delta = first and delta // DAMP or delta // 2
    delta = delta + delta // numpoints
    local k = 0
    while delta > ((BASE - TMIN) * TMAX) // 2 do
        delta = delta // (BASE - TMIN)
        k = k + BASE
    end
    return k + (BASE - TMIN + 1) * delta // (delta + SKEW)
end

local function digit(d)
    return string.char(d < 26 and d + 97 or d + 22)
end

-- Punycode of a list of code points (without the "xn--" prefix).
function M.punycode(cps)
    local out = {}
    for _, c in ipairs(cps) do
        if c < 128 then out[#out + 1] = string.char(c) end
    end
    local b = #out
    local h = b
    if b > 0 then out[#out + 1] = "-" end
    local n, delta, bias = INITIAL_N, 0, INITIAL_BIAS
    while h < #cps do
        local m = math.maxinteger
        for _, c in ipairs(cps) do
            if c >= n and c < m then m = c end
        end
        delta = delta + (m - n) * (h + 1)
        n = m
        for _, c in ipairs(cps) do
            if c < n then delta = delta + 1 end
            if c == n then
                local q, k = delta, BASE
                while true do
                    local t = k <= bias and TMIN or
                        (k >= bias + TMAX and TMAX or k - bias)
                    if q < t then break end
                    out[#out + 1] = digit(t + (q - t) % (BASE - t))
                    q = (q - t) // (BASE - t)
                    k = k + BASE
                end
                out[#out + 1] = digit(q)
                bias = adapt(delta, h + 1, h == b)
                delta = 0
                h = h + 1
            end
        end
        delta = delta + 1
        n = n + 1
    end
    return table.concat(out)
end

-- Lower-case mapping for the scripts names are commonly written in
-- (Latin-1, Latin Extended-A, Greek, Cyrillic); others pass unchanged.
local function lower_cp(c)
    if c >= 0x41 and c <= 0x5A then return c + 32 end
    if c < 0xC0 then return c end
    if c <= 0xDE then return c == 0xD7 and c or c + 32 end
    if c >= 0x100 and c <= 0x17F then
        if c == 0x178 then return 0xFF end
        if (c >= 0x139 and c <= 0x148) or (c >= 0x179 and c <= 0x17E) then
            return c % 2 == 1 and c + 1 or c
        end
        if c == 0x130 or c == 0x131 or c == 0x138 or c == 0x149 or
            c == 0x17F then
            return c
        end
        return c % 2 == 0 and c + 1 or c
    end
    if c >= 0x391 and c <= 0x3A9 and c ~= 0x3A2 then return c + 32 end
    if c >= 0x410 and c <= 0x42F then return c + 32 end
    if c >= 0x400 and c <= 0x40F then return c + 80 end
    return c
end

local LDH = "^[a-z0-9]([a-z0-9-]*[a-z0-9])$"
local LDH1 = "^[a-z0-9]$"

local function ascii_label(l)
    return l:match(LDH) or l:match(LDH1)
end

-- One label to its lower-case A-label, or nil, reason.
local function to_alabel(label)
    if label == "" then return nil, "empty label" end
    if not label:find("[\128-\255]") then
        local l = label:lower()
        if not ascii_label(l) then
            return nil, "label '" .. label .. "' has characters other " ..
                "than letters, digits and inner hyphens"
        end
        if #l > 63 then return nil, "label longer than 63 bytes" end
        return l
    end
    if not utf8.len(label) then return nil, "not valid UTF-8" end
    local cps = {}
    for _, c in utf8.codes(label) do
        c = lower_cp(c)
        if c < 128 then
            local ch = string.char(c)
            if not ch:match("[a-z0-9-]") then
                return nil, "label has a character not allowed in names"
            end
        elseif c <= 0x9F or c == 0xA0 or (c >= 0x2000 and c <= 0x206F) or
            c == 0x3000 or c == 0x3002 or c == 0xFF0E or c == 0xFEFF or
            (c >= 0xD800 and c <= 0xDFFF) then
            return nil, "label has a control, space or punctuation character"
        end
        cps[#cps + 1] = c
    end
    if cps[1] == 0x2D or cps[#cps] == 0x2D then
        return nil, "label starts or ends with a hyphen"
    end
    local a = "xn--" .. M.punycode(cps)
    if #a > 63 then return nil, "label longer than 63 bytes as an A-label" end
    return a
end

-- A DNS name (optionally "*." wildcard) as lower-case A-labels, or
-- nil, reason. Trailing dots, empty labels, underscores, spaces and IP
-- literals are refused.
function M.domain(name)
    if type(name) ~= "string" or name == "" then
        return nil, "empty name"
    end
    local prefix = ""
    local rest = name
    if rest:sub(1, 2) == "*." then
        prefix = "*."
        rest = rest:sub(3)
    end
    if rest:find("*", 1, true) then
        return nil, "a wildcard is only allowed as the whole first label"
    end
    if rest:sub(-1) == "." then return nil, "trailing dot" end
    if M.ipv4(rest) or rest:find(":", 1, true) then
        return nil, "an IP address is an ip identifier, not a DNS name"
    end
    local out = {}
    for label in (rest .. "."):gmatch("([^.]*)%.") do
        local a, why = to_alabel(label)
        if not a then return nil, why end
        out[#out + 1] = a
    end
    local s = table.concat(out, ".")
    if #s > 253 then return nil, "name longer than 253 bytes" end
    return prefix .. s
end

---------------------------------------------------------------------------
-- IP addresses.

local function v4_bytes(s)
    local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
    if not a then return nil end
    local out = {}
    for _, p in ipairs({ a, b, c, d }) do
        if #p > 3 or (#p > 1 and p:sub(1, 1) == "0") then return nil end
        local n = tonumber(p)
        if n > 255 then return nil end
        out[#out + 1] = n
    end
    return out
end

-- Canonical dotted quad, or nil (leading zeros are refused: "010" is
-- octal to some parsers).
function M.ipv4(s)
    local b = type(s) == "string" and v4_bytes(s)
    if not b then return nil end
    return table.concat(b, ".")
end

-- Groups (16-bit numbers) of one side of "::".
local function groups(part, allow_v4)
    local out = {}
    if part == "" then return out end
    local pieces = {}
    for p in (part .. ":"):gmatch("([^:]*):") do pieces[#pieces + 1] = p end
    for i, p in ipairs(pieces) do
        if p:find(".", 1, true) then
            if not allow_v4 or i ~= #pieces then return nil end
            local b = v4_bytes(p)
            if not b then return nil end
            out[#out + 1] = b[1] * 256 + b[2]
            out[#out + 1] = b[3] * 256 + b[4]
        elseif p:match("^%x%x?%x?%x?$") then
            out[#out + 1] = tonumber(p, 16)
        else
            return nil
        end
    end
    return out
end

-- The 8 groups of an IPv6 address, or nil.
local function v6_groups(s)
    if s:find("[^%x:.]") then return nil end
    local head, tail = s:match("^(.-)::(.*)$")
    local g
    if head then
        if tail:find("::", 1, true) then return nil end
        local g1, g2 = groups(head, false), groups(tail, true)
        if not g1 or not g2 or #g1 + #g2 > 7 then return nil end
        g = g1
        for _ = 1, 8 - #g1 - #g2 do g[#g + 1] = 0 end
        for _, x in ipairs(g2) do g[#g + 1] = x end
    else
        g = groups(s, true)
        if not g or #g ~= 8 then return nil end
    end
    return g
end

-- IPv6 in RFC 5952 form: lower case, no leading zeros, the longest run
-- (first on a tie) of two or more zero groups as "::", IPv4-mapped
-- addresses as ::ffff:a.b.c.d. nil when s is not an IPv6 address.
function M.ipv6(s)
    local g = type(s) == "string" and v6_groups(s)
    if not g then return nil end
    if g[1] == 0 and g[2] == 0 and g[3] == 0 and g[4] == 0 and g[5] == 0 and
        g[6] == 0xffff then
        return string.format("::ffff:%d.%d.%d.%d", g[7] >> 8, g[7] & 255,
            g[8] >> 8, g[8] & 255)
    end
    local best, bestlen, i = nil, 1, 1
    while i <= 8 do
        if g[i] == 0 then
            local j = i
            while j <= 8 and g[j] == 0 do j = j + 1 end
            if j - i > bestlen then best, bestlen = i, j - i end
            i = j
        else
            i = i + 1
        end
    end
    local parts = {}
    local k = 1
    while k <= 8 do
        if k == best then
            parts[#parts + 1] = (k == 1) and ":" or ""
            k = k + bestlen
            if k > 8 then parts[#parts + 1] = "" end
        else
            parts[#parts + 1] = string.format("%x", g[k])
            k = k + 1
        end
    end
    return table.concat(parts, ":")
end

-- Canonical text of an IPv4 or IPv6 address, or nil, reason.
function M.ip(s)
    if type(s) ~= "string" then return nil, "not a string" end
    local v = M.ipv4(s) or M.ipv6(s)
    if not v then return nil, "not an IPv4 or IPv6 address" end
    return v
end

-- Normalise an identifier {type=, value=}: a copy with the value in
-- canonical form, or nil, reason.
function M.normalize(id)
    if type(id) ~= "table" or type(id.value) ~= "string" then
        return nil, "identifier must be a table {type=, value=}"
    end
    local v, why
    if id.type == "dns" then
        v, why = M.domain(id.value)
    elseif id.type == "ip" then
        v, why = M.ip(id.value)
    else
        return nil, "unknown identifier type '" .. tostring(id.type) .. "'"
    end
    if not v then return nil, why end
    return { type = id.type, value = v }
end

return M
