-- What the luacme command prints: one line per step for people, or with
-- --json one JSON object per line for programs. Every event goes through
-- Output:event, so the two forms never drift apart; errors go through
-- Output:error, which shows the CA's problem type, detail, identifier,
-- subproblems and a hint where one is known.
--
--   local out = require("luacme.output").new{ json = false, level = 0 }
--   out:event("deployed", { identifier = "example.com", type = "http-01",
--       hook = "webroot" }, "example.com: http-01 deployed via webroot")
--   out:error(err)            -- stderr (human) / {"event":"error"} (json)
--   out:result{ ok = true, command = "issue", name = "example.com" }
--
-- Levels: -1 quiet (errors and, with --json, the result only), 0 normal,
-- 1 verbose (also events marked verbose). Field names of the JSON events
-- are listed in HELP_JSON (`luacme help json`); they are stable.
--
-- Nothing here ever receives a private key: callers pass names, URLs and
-- error tables, and server text is made printable before it is shown.
local core = require "luacme.core"
local errors = require "luacme.errors"
local util = require "luacme.util"

local M = {}

local Output = {}
Output.__index = Output

-- Strings from servers or hooks may be any bytes: JSON wants UTF-8, a
-- terminal wants no control characters.
local function clean(s)
    s = tostring(s)
    if not utf8.len(s) then
        s = s:gsub("[\128-\255]", function(c)
            return string.format("\\x%02x", c:byte())
        end)
    end
    return s
end

-- A deep copy of v that util.json can encode: strings made valid UTF-8,
-- functions and userdata dropped, lists marked as arrays, cycles cut.
local function jsonable(v, depth)
    local tv = type(v)
    if tv == "string" then return clean(v) end
    if tv == "number" then
        if v ~= v or v == math.huge or v == -math.huge then return nil end
        return v
    end
    if tv == "boolean" then return v end
    if tv ~= "table" or depth > 8 then return nil end
    local n = #v
    local out = {}
    if n > 0 then
        for i = 1, n do out[i] = jsonable(v[i], depth + 1) end
        return util.array(out)
    end
    if getmetatable(v) == getmetatable(util.array()) then
        return util.array()
    end
    for k, x in pairs(v) do
        if type(k) == "string" then out[k] = jsonable(x, depth + 1) end
    end
    return out
end
M.jsonable = jsonable

-- One JSON line with "event" first (the rest sorted, as util.json does).
function M.json_line(name, fields)
    local body = util.json(jsonable(fields or {}, 0))
    local head = '{"event":' .. util.json(name)
    if body == "{}" then return head .. "}" end
    return head .. "," .. body:sub(2)
end

-- new{ json=, level=, stdout=, stderr=, clock= } -> output object.
-- stdout/stderr are file handles (default io.stdout/io.stderr); clock()
-- gives seconds for throttling progress lines (default core.monotonic).
function M.new(opts)
    opts = opts or {}
    return setmetatable({
        json = opts.json and true or false,
        level = opts.level or 0,
        stdout = opts.stdout or io.stdout,
        stderr = opts.stderr or io.stderr,
        clock = opts.clock or core.monotonic,
        last_progress = nil,
        counts = {},
    }, Output)
end

local function write(fh, s)
    fh:write(s, "\n")
    fh:flush()
end

-- Print an event. text is the human line (nil: silent for people);
-- opts.verbose shows it only with -v; opts.progress throttles it to one
-- line a second; opts.warning sends it to stderr as "warning: ...".
-- JSON consumers get every event (verbose ones with -v only) unless -q.
function Output:event(name, fields, text, opts)
    opts = opts or {}
    local p = self.prefix
    if p then
        -- Lines of certificates renewed at once: each says whose it is
        -- (JSON: a "cert" field), once.
        if self.json and fields and fields.cert == nil then
            local f = { cert = p }
            for k, v in pairs(fields) do f[k] = v end
            fields = f
        elseif text and text:sub(1, #p + 2) ~= p .. ": " then
            text = p .. ": " .. text
        end
    end
    self.counts[name] = (self.counts[name] or 0) + 1
    if self.level < 0 then return end
    if opts.verbose and self.level < 1 then return end
    if opts.progress then
        local t = self.clock()
        if self.last_progress and t - self.last_progress < 1 then return end
        self.last_progress = t
    end
    if self.json then
        write(self.stdout, M.json_line(name, fields))
    elseif text then
        text = errors.printable(clean(text))
        if opts.warning then
            write(self.stderr, "luacme: warning: " .. text)
        else
            write(self.stdout, text)
        end
    end
end

-- prefixed(label) -> an output whose human lines start "label: " and
-- whose JSON events carry cert = label; it writes where self does,
-- with its own progress throttle.
function Output:prefixed(label)
    return setmetatable({ prefix = label, last_progress = nil },
        { __index = self })
end

-- A warning (stderr for people; {"event":"warning","message":...}).
function Output:warn(msg)
    self:event("warning", { message = msg }, msg, { warning = true })
end

-- A verbose line ({"event":"debug","message":...} with -v).
function Output:debug(msg)
    self:event("debug", { message = msg }, msg, { verbose = true })
end

-- The final result object (JSON only; people saw the steps).
function Output:result(fields)
    if not self.json then return end
    write(self.stdout, M.json_line("result", fields))
end

--
-- Errors
--

local short_type = errors.short_type
M.short_type = short_type

local function ident_text(id, wildcard)
    if type(id) ~= "table" or id.value == nil then return nil end
    return (wildcard and "*." or "") .. errors.printable(id.value)
end

-- The challenge type behind an authorization error, when known.
local function challenge_type(err)
    local a = type(err) == "table" and err.authz
    if type(a) ~= "table" then return nil end
    for _, ch in ipairs(a.challenges or {}) do
        if ch.error then return ch.type end
    end
    return nil
end

-- The hook that answered the failed challenge (issuance records it), or
-- nil.
local function hook_of(err)
    if type(err) ~= "table" then return nil end
    if err.hook then return err.hook end
    local first = type(err.errors) == "table" and err.errors[1]
    return type(first) == "table" and first.hook or nil
end

local function standalone(e)
    return hook_of(e) == "standalone"
end

-- What to give on the command line for an error that names a missing
-- or wrong setting (err.option, set by luacme.certs and luacme.accounts,
-- which know nothing of flags).
local OPTION_HINTS = {
    hook = "give one with --hook, e.g. --hook webroot:root=/var/www/html " ..
        "(luacme hooks lists them)",
    domain = "give the names with -d NAME (and/or --ip ADDR); with --csr " ..
        "the -d/--ip names must be the CSR's",
    out = "--csr needs --out FILE for the certificate chain",
    ["cert-key"] = "--cert-key wants the certificate's private key (PEM)",
}

-- Known situations and what to try. Each entry: a test on the error and
-- the hint text (a string or a function of the error).
local HINTS = {
    { function(e) return OPTION_HINTS[e.option] ~= nil end,
      function(e) return OPTION_HINTS[e.option] end },
    { function(e) return e.kind == "not_found" and
          e.what == "certificate" end,
      "luacme list shows the certificates" },
    { function(e) return errors.is(e, "agreementRequired") end,
      function(e)
          return "the CA asks you to agree to its terms of service" ..
              (e.terms_of_service and (" (" .. errors.printable(
                  e.terms_of_service) .. ")") or "") ..
              ": read them and add --agree-tos"
      end },
    -- RFC 8555 §7.3.3: the user has to visit the instance URL (and
    -- usually agree to new terms); nothing the client can do for them.
    { function(e) return errors.is(e, "userActionRequired") end,
      function(e)
          local h = "the CA needs you to act before it goes on"
          if e.instance then
              h = h .. ": visit " .. errors.printable(e.instance)
          end
          if e.terms_of_service then
              h = h .. " (terms of service: " ..
                  errors.printable(e.terms_of_service) .. ")"
          end
          return h
      end },
    { function(e) return errors.is(e, "externalAccountRequired") or
          e.kind == "eab_required" end,
      "this CA needs external account binding: give --eab-kid KID and the " ..
      "HMAC key in LUACME_EAB_HMAC_KEY or --eab-hmac-key-file FILE" },
    { function(e) return (errors.is(e, "connection") or
          errors.is(e, "unauthorized")) and standalone(e) end,
      "the CA did not get luacme's own answer on port 80: does the name " ..
      "point to this host, is port 80 open to the CA (firewall, NAT, " ..
      "a proxy in front), and is no other server answering there?" },
    { function(e) return errors.is(e, "connection") and
          challenge_type(e) ~= "dns-01" and
          tostring(e.detail):lower():find("refused") ~= nil end,
      "the CA could not connect to the name on port 80: is a web server " ..
      "running there and serving the webroot (the --hook webroot:root= " ..
      "directory) over plain HTTP?" },
    { function(e) return errors.is(e, "connection") end,
      "the CA could not reach the name: check its DNS records, the " ..
      "firewall and that something answers on port 80 (http-01) or " ..
      "443 (tls-alpn-01)" },
    { function(e) return errors.is(e, "unauthorized") and
          challenge_type(e) == "http-01" end,
      "the CA fetched /.well-known/acme-challenge/ but got the wrong " ..
      "answer: does the web server's document root match the " ..
      "--hook webroot:root= directory, and does nothing redirect or " ..
      "rewrite that path?" },
    { function(e) return errors.is(e, "unauthorized") and
          challenge_type(e) == "dns-01" end,
      "the CA saw a wrong TXT record at _acme-challenge: check the DNS " ..
      "hook and that no stale records are left" },
    { function(e) return errors.is(e, "dns") end,
      "the CA could not resolve the name: check the DNS records " ..
      "(A/AAAA for http-01, the _acme-challenge TXT for dns-01)" },
    { function(e) return errors.is(e, "caa") end,
      "a CAA record of the domain forbids this CA: add one allowing it" },
    { function(e) return errors.is(e, "rejectedIdentifier") or
          errors.is(e, "unsupportedIdentifier") end,
      "the CA refuses to issue for this name" },
    { function(e) return errors.is(e, "rateLimited") or e.status == 429 end,
      function(e)
          return "the CA's rate limit was hit" .. (e.retry_after and
              (": retry after " .. math.floor(e.retry_after) .. " s") or
              ": wait before trying again")
      end },
    { function(e) return errors.is(e, "unsupportedContact") or
          errors.is(e, "invalidContact") end,
      "give the contact as an e-mail address: --contact you@example.com" },
    { function(e) return e.kind == "no_account" or
          errors.is(e, "accountDoesNotExist") end,
      "create an account first: luacme account new --agree-tos" },
    { function(e) return e.kind == "deactivated" or
          (errors.is(e, "unauthorized") and
          tostring(e.detail):lower():find("deactivated") ~= nil) end,
      "create a new account: luacme account new --agree-tos" },
    { function(e) return e.kind == "unsolvable" end,
      "add a --hook for that challenge type; luacme hooks lists the " ..
      "built-in ones (a wildcard needs a DNS hook)" },
    { function(e) return e.kind == "tls" end,
      "TLS to the CA failed: check the directory URL and --ca-bundle" },
    { function(e) return e.kind == "connect" end,
      "cannot connect to the CA: check --directory and the network" },
    { function(e) return e.kind == "timeout" end,
      "the CA did not answer in time: try again later" },
    { function(e) return e.kind == "busy" end,
      "another luacme run holds the lock; it ends by itself, or stop it " ..
      "(a lock of a crashed run is released by the system)" },
    { function(e) return e.kind == "deadline" end,
      "the CA took too long: try again, or allow more time with " ..
      "--timeout SECONDS" },
}

-- The hint for err, or nil.
function M.hint(err)
    if type(err) ~= "table" then return nil end
    if err.hint then return err.hint end
    local probes = { err }
    if type(err.cause) == "table" then probes[#probes + 1] = err.cause end
    for _, sub in ipairs(type(err.errors) == "table" and err.errors or {}) do
        probes[#probes + 1] = sub
    end
    for _, e in ipairs(probes) do
        for _, h in ipairs(HINTS) do
            local ok, hit = pcall(h[1], e)
            if ok and hit then
                if type(h[2]) == "function" then return h[2](e) end
                return h[2]
            end
        end
    end
    return nil
end

-- The lines describing err for people: "what: type: detail", then one
-- indented line per subproblem / failed authorization.
function M.error_lines(err)
    if type(err) ~= "table" then
        return { errors.printable(tostring(err)) }
    end
    local lines = {}
    local who = ident_text(err.identifier, err.wildcard)
    local typ, detail = err.type, err.detail
    local cause = err.kind == "authorization" and type(err.cause) == "table"
        and err.cause or nil
    if cause then
        -- "name: type: the CA's words" rather than our wrapper text.
        typ, detail = cause.type or typ, cause.detail or detail
    end
    local head = typ and short_type(typ) or err.kind or "error"
    detail = errors.printable(detail or "(no detail)")
    -- A certificate skipped says why in its detail alone.
    local first = err.skipped and detail or (head .. ": " .. detail)
    -- "hook webroot: ..." says its kind already: no "hook: hook".
    if head == "hook" and detail:sub(1, 5) == "hook " then first = detail end
    if who and (cause or not detail:find(who, 1, true)) then
        first = who .. ": " .. first
    end
    if err.status and err.kind == "acme" then
        first = first .. " (HTTP " .. tostring(err.status) .. ")"
    end
    lines[1] = first
    for _, sp in ipairs(type(err.subproblems) == "table" and
        err.subproblems or {}) do
        local sid = ident_text(sp.identifier) or "?"
        lines[#lines + 1] = "  " .. sid .. ": " ..
            (short_type(sp.type) or sp.kind or "error") .. ": " ..
            errors.printable(sp.detail or "(no detail)")
    end
    for _, sub in ipairs(type(err.errors) == "table" and err.errors or {}) do
        local sub_lines = errors.repeats(err, sub) and {} or
            M.error_lines(sub)
        for _, l in ipairs(sub_lines) do
            lines[#lines + 1] = "  " .. l
        end
    end
    return lines
end

-- The JSON form of err: kind, type, detail, status, identifier, uri,
-- subproblems [{type, detail, identifier}], errors [...], hint.
function M.error_fields(err)
    if type(err) ~= "table" then
        return { kind = "error", detail = tostring(err) }
    end
    local out = {
        kind = err.kind, type = err.type, detail = err.detail,
        status = err.status, uri = err.uri, instance = err.instance,
        terms_of_service = err.terms_of_service,
        identifier = type(err.identifier) == "table" and {
            type = err.identifier.type, value = err.identifier.value } or nil,
        wildcard = err.wildcard or nil,
    }
    if type(err.subproblems) == "table" and #err.subproblems > 0 then
        local subs = {}
        for _, sp in ipairs(err.subproblems) do
            subs[#subs + 1] = M.error_fields(sp)
        end
        out.subproblems = subs
    end
    if type(err.errors) == "table" and #err.errors > 0 then
        local subs = {}
        for _, sp in ipairs(err.errors) do
            subs[#subs + 1] = M.error_fields(sp)
        end
        out.errors = subs
    end
    if out.kind ~= "hint" then out.hint = M.hint(err) end
    return out
end

-- Report err: people get "luacme: error: ..." lines and "hint: ..." on
-- stderr (also with -q); --json gets {"event":"error", ...} on stdout.
-- context (optional) names what failed, e.g. the certificate.
function Output:error(err, context)
    if self.json then
        local f = M.error_fields(err)
        f.context = context
        write(self.stdout, M.json_line("error", f))
        return
    end
    context = context or self.prefix
    local lines = M.error_lines(err)
    local prefix = "luacme: " .. (context and (clean(context) .. ": ") or "")
    write(self.stderr, prefix .. "error: " .. clean(lines[1]))
    for i = 2, #lines do write(self.stderr, clean(lines[i])) end
    local h = M.hint(err)
    if h then write(self.stderr, "  hint: " .. clean(h)) end
end

-- "2027-02-26" and "2027-02-26T12:00:00Z" for unix time t.
function M.date(t)
    return os.date("!%Y-%m-%d", math.floor(t))
end

function M.time(t)
    if t == nil then return nil end
    return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t))
end

-- "1.2 s" style durations.
function M.seconds(s)
    if s < 10 then return string.format("%.1f s", s) end
    return string.format("%d s", math.floor(s + 0.5))
end

return M
