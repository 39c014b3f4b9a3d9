-- Small pure helpers of the protocol client: header access, Link and
-- Retry-After parsing, URI resolution, dates, a deterministic JSON
-- encoder, PEM splitting and the one polling schedule.
local core = require "luacme.core"
local errors = require "luacme.errors"

local M = {}

---------------------------------------------------------------------------
-- Headers. The transport gives lower-case names; a repeated header is a
-- list of strings, a single one a string.

-- All values of header `name` (lower-case) as a list.
function M.header_list(headers, name)
    local v = headers and headers[name]
    if type(v) == "string" then return { v } end
    if type(v) == "table" then
        local out = {}
        for _, s in ipairs(v) do
            if type(s) == "string" then out[#out + 1] = s end
        end
        return out
    end
    return {}
end

-- The first value of header `name`, trimmed, or nil.
function M.header(headers, name)
    local v = M.header_list(headers, name)[1]
    if not v then return nil end
    return (v:gsub("^[ \t\r\n]+", ""):gsub("[ \t\r\n]+$", ""))
end

-- The media type of a Content-Type value: lower-case, parameters dropped.
function M.media_type(headers)
    local v = M.header(headers, "content-type")
    if not v then return nil end
    return (v:match("^[^;]*"):gsub("%s+", ""):lower())
end

---------------------------------------------------------------------------
-- URI reference resolution (RFC 3986 §5.2).

local function remove_dots(p)
    local out, input = {}, p
    while #input > 0 do
        if input:sub(1, 3) == "../" then
            input = input:sub(4)
        elseif input:sub(1, 2) == "./" then
            input = input:sub(3)
        elseif input:sub(1, 3) == "/./" then
            input = input:sub(3)
        elseif input == "/." then
            input = "/"
        elseif input:sub(1, 4) == "/../" then
            input = input:sub(4)
            out[#out] = nil
        elseif input == "/.." then
            input = "/"
            out[#out] = nil
        elseif input == "." or input == ".." then
            input = ""
        else
            local seg = input:match("^/?[^/]*")
            out[#out + 1] = seg
            input = input:sub(#seg + 1)
        end
    end
    return table.concat(out)
end

-- Resolve reference `ref` against the absolute URL `base`.
function M.resolve(base, ref)
    if ref:match("^%a[%w+.-]*:") or not base then return ref end
    local scheme, auth, bpath, bquery =
        base:match("^(%a[%w+.-]*:)//([^/?#]*)([^?#]*)(%??[^#]*)")
    if not scheme then return ref end
    if ref:sub(1, 2) == "//" then return scheme .. ref end
    local rpath, rest = ref:match("^([^?#]*)(.*)$")
    local path, query
    if rpath == "" then
        path = bpath
        query = rest:sub(1, 1) == "?" and rest or bquery .. rest
        return scheme .. "//" .. auth .. path .. query
    elseif rpath:sub(1, 1) == "/" then
        path = remove_dots(rpath)
    else
        local dir = bpath:match("^(.*/)") or (auth ~= "" and "/" or "")
        path = remove_dots(dir .. rpath)
    end
    return scheme .. "//" .. auth .. path .. rest
end

---------------------------------------------------------------------------
-- Link headers (RFC 8288): repeated headers and comma-joined values,
-- quoted or bare rel, space-separated relation lists, extra parameters.

local function parse_link_value(s, base, out)
    local i, n = 1, #s
    while i <= n do
        i = s:find("[^%s,]", i) or n + 1
        if i > n then break end
        if s:sub(i, i) ~= "<" then
            local c = s:find(",", i, true)
            if not c then break end
            i = c + 1
            goto continue
        end
        do
            local close = s:find(">", i, true)
            if not close then break end
            local uri = s:sub(i + 1, close - 1)
            local rels
            i = close + 1
            while true do
                i = s:find("[^ \t]", i) or n + 1
                if s:sub(i, i) ~= ";" then break end
                i = (s:find("[^ \t]", i + 1) or n + 1)
                local name = s:match("^[%w!#$%%&'*+.^_`|~-]+", i)
                if not name then break end
                i = i + #name
                i = s:find("[^ \t]", i) or n + 1
                local val = ""
                if s:sub(i, i) == "=" then
                    i = s:find("[^ \t]", i + 1) or n + 1
                    if s:sub(i, i) == '"' then
                        local buf, j = {}, i + 1
                        while j <= n do
                            local c = s:sub(j, j)
                            if c == "\\" then
                                buf[#buf + 1] = s:sub(j + 1, j + 1)
                                j = j + 2
                            elseif c == '"' then
                                break
                            else
                                buf[#buf + 1] = c
                                j = j + 1
                            end
                        end
                        val = table.concat(buf)
                        i = j + 1
                    else
                        val = s:match("^[^;,%s]*", i)
                        i = i + #val
                    end
                end
                if name:lower() == "rel" and not rels then rels = val end
            end
            if rels then
                local target = M.resolve(base, uri)
                for rel in rels:gmatch("%S+") do
                    rel = rel:lower()
                    out[rel] = out[rel] or {}
                    table.insert(out[rel], target)
                end
            end
            local c = s:find(",", i, true)
            if not c then break end
            i = c + 1
        end
        ::continue::
    end
end

-- All links of `headers` as rel -> list of URLs, resolved against the
-- request URL `base`.
function M.links(headers, base)
    local out = {}
    for _, v in ipairs(M.header_list(headers, "link")) do
        parse_link_value(v, base, out)
    end
    return out
end

-- The URLs of one relation (an empty list when there are none).
function M.link(headers, rel, base)
    return M.links(headers, base)[rel:lower()] or {}
end

---------------------------------------------------------------------------
-- Dates. Computed by hand so neither the local time zone nor the C
-- library's mktime gets in the way.

local function days_from_civil(y, m, d)
    if m <= 2 then y = y - 1 end
    local era = y // 400
    local yoe = y - era * 400
    local mp = m > 2 and m - 3 or m + 9
    local doy = (153 * mp + 2) // 5 + d - 1
    local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468
end

local function epoch(y, mo, d, h, mi, s)
    if mo < 1 or mo > 12 or d < 1 or d > 31 or h > 23 or mi > 59 or
        s > 60 then
        return nil
    end
    return days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s
end
M.epoch = epoch

local MONTHS = { jan = 1, feb = 2, mar = 3, apr = 4, may = 5, jun = 6,
    jul = 7, aug = 8, sep = 9, oct = 10, nov = 11, dec = 12 }

-- An HTTP-date (RFC 9110 §5.6.7: IMF-fixdate, RFC 850, asctime) as
-- epoch seconds, or nil. The weekday is not checked.
function M.parse_http_date(s)
    local d, mon, y, h, mi, sec =
        s:match("^%a%a%a, (%d%d) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT$")
    if not d then
        d, mon, y, h, mi, sec = s:match(
            "^%a+, (%d%d)%-(%a%a%a)%-(%d%d) (%d%d):(%d%d):(%d%d) GMT$")
        if y then
            y = tonumber(y)
            y = y < 70 and 2000 + y or 1900 + y
        end
    end
    if not d then
        mon, d, h, mi, sec, y = s:match(
            "^%a%a%a (%a%a%a) +(%d%d?) (%d%d):(%d%d):(%d%d) (%d%d%d%d)$")
    end
    if not d then return nil end
    local m = MONTHS[mon:lower()]
    if not m then return nil end
    return epoch(tonumber(y), m, tonumber(d), tonumber(h), tonumber(mi),
        tonumber(sec))
end

-- The shortest wait a Retry-After can ask for. A hint is a floor for
-- politeness, not a licence: 0, a negative number or a date in the past
-- once made thousands of polls a second (A#9.2).
M.MIN_RETRY_AFTER = 1

-- Retry-After (delta-seconds, possibly negative, or HTTP-date) of
-- `headers` as seconds from `now` (epoch seconds), at least
-- M.MIN_RETRY_AFTER; nil when absent or unparseable.
function M.retry_after(headers, now)
    local v = M.header(headers, "retry-after")
    if not v then return nil end
    local n
    local digits = v:match("^%-?(%d+)$")
    if digits then
        if #digits > 10 then return nil end
        n = tonumber(v)
    else
        local t = M.parse_http_date(v)
        if not t then return nil end
        n = t - math.floor(now)
    end
    return math.max(M.MIN_RETRY_AFTER, n)
end

-- An RFC 3339 date-time as epoch seconds (float with fractions), or nil.
function M.parse_rfc3339(s)
    if type(s) ~= "string" then return nil end
    local y, mo, d, h, mi, sec, frac, tz = s:match(
        "^(%d%d%d%d)%-(%d%d)%-(%d%d)[Tt ](%d%d):(%d%d):(%d%d)(%.?%d*)(.*)$")
    if not y then return nil end
    local t = epoch(tonumber(y), tonumber(mo), tonumber(d), tonumber(h),
        tonumber(mi), tonumber(sec))
    if not t then return nil end
    if frac ~= "" then
        if frac == "." then return nil end
        t = t + tonumber("0" .. frac)
    end
    if tz == "Z" or tz == "z" then return t end
    local sign, oh, om = tz:match("^([+-])(%d%d):(%d%d)$")
    if not sign then return nil end
    local off = tonumber(oh) * 3600 + tonumber(om) * 60
    return sign == "+" and t - off or t + off
end

-- Epoch seconds as RFC 3339 UTC ("2017-04-27T10:00:00Z").
function M.format_rfc3339(t)
    return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t))
end

---------------------------------------------------------------------------
-- JSON encoding. Deterministic (sorted members) so tests can compare the
-- bytes sent, and explicit about arrays: lua-cjson turns an empty table
-- into {} and escapes '/', neither of which we want to reason about.

local ARRAY = { __name = "luacme.json.array" }
local RAW = { __name = "luacme.json.raw" }

-- Mark t as a JSON array (so an empty one encodes as []).
function M.array(t)
    return setmetatable(t or {}, ARRAY)
end

-- Embed already-encoded JSON text verbatim.
function M.raw(text)
    return setmetatable({ text = text }, RAW)
end

local ESC = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b",
    ["\f"] = "\\f", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

local function enc_string(s)
    if not utf8.len(s) then error("json: string is not valid UTF-8", 3) end
    return '"' .. s:gsub('[%c"\\]', function(c)
        return ESC[c] or string.format("\\u%04x", c:byte())
    end) .. '"'
end

local encode

local function is_array(t)
    if getmetatable(t) == ARRAY then return true end
    local n = #t
    if n == 0 then return false end
    local count = 0
    for _ in pairs(t) do count = count + 1 end
    return count == n
end

function encode(v, buf)
    local tv = type(v)
    if tv == "string" then
        buf[#buf + 1] = enc_string(v)
    elseif tv == "number" then
        if v ~= v or v == math.huge or v == -math.huge then
            error("json: cannot encode " .. tostring(v), 3)
        end
        local i = math.tointeger(v)
        buf[#buf + 1] = i and string.format("%d", i) or
            string.format("%.17g", v)
    elseif tv == "boolean" then
        buf[#buf + 1] = tostring(v)
    elseif tv == "table" and getmetatable(v) == RAW then
        buf[#buf + 1] = v.text
    elseif tv == "table" and is_array(v) then
        buf[#buf + 1] = "["
        for i = 1, #v do
            if i > 1 then buf[#buf + 1] = "," end
            encode(v[i], buf)
        end
        buf[#buf + 1] = "]"
    elseif tv == "table" then
        local keys = {}
        for k in pairs(v) do
            if type(k) ~= "string" then
                error("json: object key is not a string", 3)
            end
            keys[#keys + 1] = k
        end
        table.sort(keys)
        buf[#buf + 1] = "{"
        for i, k in ipairs(keys) do
            if i > 1 then buf[#buf + 1] = "," end
            buf[#buf + 1] = enc_string(k)
            buf[#buf + 1] = ":"
            encode(v[k], buf)
        end
        buf[#buf + 1] = "}"
    else
        error("json: cannot encode a " .. tv, 3)
    end
end

-- JSON text of v (strings, numbers, booleans, tables; M.array, M.raw).
-- Raises on values that cannot be encoded (a caller bug).
function M.json(v)
    local buf = {}
    encode(v, buf)
    return table.concat(buf)
end

---------------------------------------------------------------------------
-- Certificates.

-- Most certificates accepted in one chain (leaf + intermediates).
M.MAX_CHAIN = 10

-- Split a PEM certificate chain into a list of DER strings, and the
-- list of the PEM blocks as the CA wrote them (each ending in a
-- newline). Refuses any block that is not CERTIFICATE (a CA must never
-- send a private key), empty chains and chains longer than M.MAX_CHAIN.
function M.pem_certs(pem)
    if type(pem) ~= "string" then
        return nil, errors.new("response", "certificate chain is not text")
    end
    for label in pem:gmatch("%-%-%-%-%-BEGIN ([^\r\n]-)%-%-%-%-%-") do
        if label ~= "CERTIFICATE" then
            local kind = label:find("PRIVATE KEY", 1, true) and
                "private_key" or "response"
            return nil, errors.new(kind, "certificate response holds a '" ..
                errors.printable(label) .. "' block; refused")
        end
    end
    local ders, blocks = {}, {}
    local pos = 1
    while true do
        local s, e = pem:find("-----BEGIN CERTIFICATE-----", pos, true)
        if not s then break end
        local s2, e2 = pem:find("-----END CERTIFICATE-----", e + 1, true)
        if not s2 then
            return nil, errors.new("response", "truncated PEM certificate")
        end
        local body = pem:sub(e + 1, s2 - 1):gsub("%s+", "")
        if not body:match("^[A-Za-z0-9+/]+=?=?$") then
            return nil, errors.new("response", "bad base64 in PEM certificate")
        end
        local der = core.b64url_decode((body:gsub("=+$", ""):gsub("[+/]",
            { ["+"] = "-", ["/"] = "_" })))
        if not der or #der == 0 then
            return nil, errors.new("response", "bad base64 in PEM certificate")
        end
        if #ders >= M.MAX_CHAIN then
            return nil, errors.new("too_large", "certificate chain has more " ..
                "than " .. M.MAX_CHAIN .. " certificates")
        end
        ders[#ders + 1] = der
        blocks[#blocks + 1] = pem:sub(s, e2) .. "\n"
        pos = e2 + 1
    end
    if #ders == 0 then
        return nil, errors.new("response", "no certificate in the response")
    end
    if pem:find("-----BEGIN", pos, true) then
        return nil, errors.new("response", "truncated PEM certificate")
    end
    return ders, blocks
end

-- DER as a PEM CERTIFICATE block (64-column lines).
function M.der_to_pem(der)
    local b = core.b64url_encode(der):gsub("[-_]", { ["-"] = "+", ["_"] = "/" })
    b = b .. string.rep("=", (4 - #b % 4) % 4)
    local lines = { "-----BEGIN CERTIFICATE-----" }
    for i = 1, #b, 64 do lines[#lines + 1] = b:sub(i, i + 63) end
    lines[#lines + 1] = "-----END CERTIFICATE-----\n"
    return table.concat(lines, "\n")
end

---------------------------------------------------------------------------
-- Polling: the one schedule, as times since the wait began (the reply
-- to the last accept, or to the finalize). A CA near by is done within
-- tens of milliseconds (Pebble: 4-20 ms for 1 to 100 names), so the
-- first poll comes at 15 ms. A CA taking 2 s must not be polled more
-- often than by the doubling schedule this replaces (0.05, 0.15, 0.35,
-- 0.75, 1.55, 3.15 s: five misses, then the hit), which leaves five
-- polls before 2 s: from 15 ms they cannot be closer than 2.7x apart on
-- average. They are 3x apart in the first half second, where a step
-- costs little time, and 2x after, the last one just past 2 s.
M.POLL_AT = { 0.015, 0.05, 0.15, 0.45, 1.1, 2.1 }
-- After the table each wait is the time waited so far (the schedule
-- doubles), at least POLL_SLOW_GAP (never more than 2 polls a second
-- once POLL_FAST_FOR has passed) and at most the caller's cap.
M.POLL_FAST_FOR = 2
M.POLL_SLOW_GAP = 0.5

-- backoff(first, cap, deadline, now) -> next(hint): the seconds to wait
-- before the next poll, or nil when waiting would cross `deadline` (in
-- the clock of `now`). `first` scales POLL_AT (its first entry becomes
-- `first`); times a slow reply has already passed are skipped, and no
-- wait is shorter than `first`, nor than POLL_SLOW_GAP after
-- POLL_FAST_FOR, so slow replies do not bunch the polls. A server
-- hint (Retry-After) replaces the computed wait but is held to the same
-- floors (a hint of 0 makes no busy loop); the schedule goes on from
-- wherever the hint leaves it.
function M.backoff(first, cap, deadline, now)
    local start = now()
    local scale = first / M.POLL_AT[1]
    local k, at = 0, 0
    return function(hint)
        local elapsed = now() - start
        local gap = elapsed >= M.POLL_FAST_FOR * scale and
            M.POLL_SLOW_GAP or first
        local wait = hint and math.max(hint, gap)
        if not wait then
            repeat
                k = k + 1
                if M.POLL_AT[k] then
                    at = M.POLL_AT[k] * scale
                else
                    at = at + math.min(cap, math.max(at, M.POLL_SLOW_GAP))
                end
            until at > elapsed
            wait = math.max(at - elapsed, gap)
        end
        if now() + wait > deadline then return nil end
        return wait
    end
end

-- v (a number or a string) as a number in [min, max] (a whole one when
-- integer), or nil. The one check behind every numeric option: the
-- command line's, the hooks' and the DNS providers'.
function M.number(v, min, max, integer)
    local n = tonumber(v)
    if not n or n ~= n or n < min or n > max or
        (integer and n % 1 ~= 0) then
        return nil
    end
    return n
end

-- Longest URL accepted from a server (or a caller) for a request.
M.MAX_URL = 4096

-- Is s usable as a request URL and in a JWS protected header? Printable
-- ASCII only (no spaces, controls or bytes >= 0x80, which would make
-- the header invalid UTF-8 or let a server smuggle header lines) and at
-- most M.MAX_URL bytes. Returns s or nil, err (kind "url").
function M.check_url(s)
    if type(s) ~= "string" or #s == 0 or #s > M.MAX_URL or
        s:find("[^\33-\126]") then
        local shown = type(s) == "string" and
            s:sub(1, 200):gsub("[^\32-\126]", function(c)
                return string.format("\\x%02x", c:byte())
            end) or type(s)
        return nil, errors.new("url", "refusing a URL that is not " ..
            "printable ASCII of at most " .. M.MAX_URL .. " bytes: " ..
            shown, { url = type(s) == "string" and s or nil })
    end
    return s
end

-- Is s a base64url token (nonces, challenge tokens)?
function M.is_token(s, max)
    return type(s) == "string" and #s > 0 and #s <= (max or 512) and
        s:match("^[A-Za-z0-9_-]+$") ~= nil
end

return M
