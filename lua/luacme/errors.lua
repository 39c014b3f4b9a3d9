-- Errors are tables sharing one metatable, so retries and callers can
-- read err.kind / err.type instead of parsing strings. Every public
-- function of the library that can fail for a reason other than a
-- mistake in the call returns nil, err with err such a table; mistakes
-- in the call (wrong argument types, unknown options) raise strings.
-- The fields are listed, with every kind, in lua/luacme/API.md.
--
-- Fields (all optional but kind):
--   kind         "acme" for a problem document from the CA; otherwise a
--                short word: "timeout", "connect", "tls", "too_large",
--                "protocol", "interrupted" (from the C transport), "http"
--                (an error status without a problem document), "response"
--                (the CA sent something we cannot use), "account_exists",
--                "no_account", "authorization", "order", "deadline",
--                "unsupported", "identifier", "private_key", ...
--   type         the problem type URN as sent
--   detail       human-readable text (never starting with the type)
--   status       HTTP status
--   subproblems  list of error tables, each with identifier = {type, value}
--   errors       the per-identifier list of an "authorization" error
--                (always there, also for one name), or the failures
--                gathered by one call
--   cause        the error behind this one (the CA's problem for an
--                authorization, what a hook returned)
--   identifier   {type, value} the error is about
--   instance     problem instance URL (userActionRequired)
--   retry_after  seconds from the Retry-After header
--   headers      the response headers
--   uri          a URL the error is about (account, order, authorization)
local M = {}

M.PREFIX = "urn:ietf:params:acme:error:"

local E = { __name = "luacme.error" }

-- Server text is shown on terminals: escape control characters so a CA
-- cannot move the cursor or forge lines.
local function printable(s)
    return (tostring(s):gsub("[%c\127]", function(c)
        if c == "\n" then return " " end
        return string.format("\\x%02x", c:byte())
    end))
end
M.printable = printable

-- "rateLimited" for "urn:ietf:params:acme:error:rateLimited"; other
-- strings as they are; nil for anything else. Made printable: it is
-- shown to people and comes from the server.
local function short_type(t)
    if type(t) ~= "string" then return nil end
    if t:sub(1, #M.PREFIX) == M.PREFIX then t = t:sub(#M.PREFIX + 1) end
    return printable(t)
end
M.short_type = short_type

-- A sub-error that only repeats its parent (the one entry of the
-- per-identifier list of a one-name authorization failure) is not
-- shown twice.
local function repeats(parent, sub)
    return type(sub) == "table" and sub.detail == parent.detail and
        sub.identifier == parent.identifier
end
M.repeats = repeats

function E.__tostring(e)
    local head = e.type and short_type(e.type) or
        printable(e.kind or "error")
    local detail = printable(e.detail or "(no detail)")
    -- "unauthorized: unauthorized: ..." says nothing twice.
    if detail:sub(1, #head + 2) == head .. ": " then
        detail = detail:sub(#head + 3)
    end
    local s = head .. ": " .. detail
    if type(e.subproblems) == "table" then
        for _, sp in ipairs(e.subproblems) do
            local id = sp.identifier
            local who = id and (printable(id.type) .. ":" ..
                printable(id.value)) or "?"
            s = s .. "\n  " .. who .. ": " .. tostring(sp)
        end
    end
    if type(e.errors) == "table" then
        for _, sub in ipairs(e.errors) do
            if not repeats(e, sub) then
                s = s .. "\n  " .. tostring(sub):gsub("\n", "\n  ")
            end
        end
    end
    return s
end

-- A new error table; fields (optional) is reused as the error itself.
function M.new(kind, detail, fields)
    local t = fields or {}
    t.kind = kind
    t.detail = detail
    return setmetatable(t, E)
end

-- from(v, message, kind, ...): the C core's failure form (nil, message,
-- kind) as the library's (nil, err table with that kind, "error" when
-- none); any other values pass through. For the methods of core objects
-- (key:write, an HTTP client's request), e.g.
--   local ok, err = errors.from(key:write(path))
function M.from(...)
    local v, msg, kind = ...
    if v == nil and type(msg) == "string" then
        return nil, M.new(type(kind) == "string" and kind or "error", msg)
    end
    return ...
end

-- Raise err (a table; anything else becomes an error of kind "error")
-- unless v is true-ish; else return all arguments. For flows run under
-- protect(), which turns the raise back into nil, err.
function M.must(v, err, ...)
    if v == nil or v == false then
        if type(err) ~= "table" then
            err = M.new("error", tostring(err or "failed"))
        end
        error(err, 0)
    end
    return v, err, ...
end

-- Raise a new error table (for flows run under protect()).
function M.raise(kind, detail, fields)
    error(M.new(kind, detail, fields), 0)
end

-- Run fn(...) and return its results, or nil, err for a raised error
-- table. Interruptions (kind "interrupted") and programmer errors
-- (strings) are raised on.
function M.protect(fn, ...)
    local r = table.pack(pcall(fn, ...))
    local ok, res = r[1], r[2]
    if ok then return table.unpack(r, 2, r.n) end
    if type(res) == "table" and res.kind == "interrupted" then
        error(res, 0)
    end
    if getmetatable(res) == E then return nil, res end
    error(res, 0)
end

-- True when v is one of our error tables.
function M.iserror(v)
    return getmetatable(v) == E
end

local function str(v)
    if type(v) == "string" then return v end
    return nil
end

local function identifier(v)
    if type(v) ~= "table" then return nil end
    local t, val = str(v.type), str(v.value)
    if not t or not val then return nil end
    return { type = t, value = val }
end

-- An error from an RFC 7807 problem document `doc` (a decoded table) of a
-- reply with HTTP `status`. Every member is type-checked: cjson.null and
-- wrong types count as absent. Subproblems (RFC 8555 §6.7.1) are read
-- one level deep: they have no subproblems of their own, and a server
-- nesting them hundreds deep must not make __tostring overflow the C
-- stack.
function M.problem(status, doc, headers, retry_after, nested)
    if type(doc) ~= "table" then doc = {} end
    local st = math.type(doc.status) and math.tointeger(doc.status) or status
    local e = M.new("acme", str(doc.detail), {
        type = str(doc.type),
        status = st,
        instance = str(doc.instance),
        headers = headers,
        retry_after = retry_after,
        identifier = identifier(doc.identifier),
    })
    if type(doc.subproblems) == "table" and not nested then
        local subs = {}
        for _, sp in ipairs(doc.subproblems) do
            if type(sp) == "table" then
                local se = M.problem(nil, sp, nil, nil, true)
                se.status = se.status or st
                subs[#subs + 1] = se
            end
        end
        if #subs > 0 then e.subproblems = subs end
    end
    return e
end

-- Does err match name? name may be a kind ("timeout"), a bare problem
-- token ("badNonce") or a full URN. Tokens are compared case-sensitively
-- against the part after the last ':' of the type.
function M.is(err, name)
    if type(err) ~= "table" then return false end
    if err.kind == name then return true end
    local t = err.type
    if type(t) ~= "string" then return false end
    if t == name then return true end
    return t:sub(-#name - 1) == ":" .. name
end

return M
