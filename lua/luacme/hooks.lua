-- Hook specs and loading. The contract a hook file follows is in
-- hooks/README.md; this module finds the file for a SPEC, loads it,
-- checks what it returned and the user's options, and offers the helpers
-- hooks share (environment without secrets, running a program, making
-- program output printable).
--
-- A SPEC is NAME[:k=v,k=v...]:
--   NAME  a built-in hook (hooks/<name>.lua or hooks/<type>/<name>.lua in
--         the built-in hooks directory), or a path (it contains "/"):
--         "*.lua" is loaded as a Lua hook, any other file is run by the
--         built-in exec hook (dehydrated's argument protocol).
--   k=v   options; a piece without "=" continues the previous value, so
--         "types=http-01,dns-01" gives types = "http-01,dns-01".
local challenge = require "luacme.challenge"
local core = require "luacme.core"
local errors = require "luacme.errors"
local sched = require "luacme.sched"
local util = require "luacme.util"

local M = {}

-- Challenge types a hook may solve.
M.TYPES = { "http-01", "dns-01", "tls-alpn-01" }
local KNOWN_TYPE = {}
for _, ty in ipairs(M.TYPES) do KNOWN_TYPE[ty] = true end

-- Functions a hook may define (all optional but as noted in the README).
M.FUNCTIONS = { "setup", "deploy", "ready", "cleanup", "deploy_cert",
    "startup", "exit", "invalid", "failure", "unchanged_cert" }

-- Sub-directories of the built-in hooks directory searched for a name.
M.SUBDIRS = { "http-01", "dns-01", "tls-alpn-01", "deploy" }

-- Longest SPEC accepted.
M.MAX_SPEC = 4096

-- Loaded hook files by path: a file is run once, so module-level state
-- (reference counts, created files) is shared by every spec using it.
local loaded = {}

local function hook_error(label, detail)
    return nil, errors.new("hook", "hook " .. label .. ": " .. detail)
end

-- Server or program text made safe for one terminal line, at most max
-- bytes (default 2000).
function M.printable(s, max)
    s = tostring(s or ""):gsub("^%s+", ""):gsub("%s+$", "")
    max = max or 2000
    if #s > max then s = s:sub(1, max) .. "..." end
    return errors.printable(s)
end

--
-- Specs
--

-- Parse a SPEC string. Returns { name=, path= (paths only), opts={},
-- spec= (the string) } or nil, err (kind "hook").
function M.parse_spec(str)
    if type(str) ~= "string" then
        return hook_error("?", "spec must be a string, got " .. type(str))
    end
    local label = M.printable(str, 200)
    if str == "" then return hook_error('""', "empty spec") end
    if #str > M.MAX_SPEC then
        return hook_error(label, "spec longer than " .. M.MAX_SPEC)
    end
    if str:find("[%z\1-\31\127]") then
        return hook_error(label, "spec contains control characters")
    end
    local head, rest = str:match("^([^:]*):(.*)$")
    if not head then head = str end
    local spec = { spec = str, opts = {} }
    if head:find("/", 1, true) then
        spec.path = head
        local base = head:match("([^/]*)$")
        if base == "" then
            return hook_error(label, "path names a directory")
        end
        spec.name = base:gsub("%.lua$", "")
    else
        if not head:find("^[A-Za-z0-9][A-Za-z0-9_.-]*$") or
            head:find("..", 1, true) then
            return hook_error(label, "not a hook name (letters, digits, " ..
                "_ - .) nor a path (give ./" .. M.printable(head, 100) ..
                " for a file here)")
        end
        spec.name = head
    end
    if rest == nil then return spec end
    if rest == "" then return hook_error(label, "nothing after ':'") end
    local last
    for piece in (rest .. ","):gmatch("([^,]*),") do
        local k, v = piece:match("^([^=]*)=(.*)$")
        if k then
            if not k:find("^[A-Za-z_][A-Za-z0-9_-]*$") then
                return hook_error(label, "bad option name '" ..
                    M.printable(k, 100) .. "'")
            end
            if spec.opts[k] ~= nil then
                return hook_error(label, "option " .. k .. " given twice")
            end
            spec.opts[k] = v
            last = k
        elseif last then
            spec.opts[last] = spec.opts[last] .. "," .. piece
        else
            return hook_error(label, "expected k=v after ':', got '" ..
                M.printable(piece, 100) .. "'")
        end
    end
    return spec
end

--
-- Finding and loading hook files
--

local function hooks_dir()
    local ok, site = pcall(require, "luacme.site")
    if ok and type(site) == "table" and site.hooks_dir then
        return site.hooks_dir
    end
    return nil
end

local function is_file(path)
    local st = core.stat(path)
    return st and st.type == "file", st
end

-- Built-in hooks compiled into the binary (an appliance has no hooks/
-- directory): site.embedded("hooks/x.lua") gives the chunk (bytecode
-- or source, loaded with mode site.embedded_mode). Their
-- "file" is spelled EMBEDDED .. "hooks/x.lua".
local EMBEDDED = "[embedded]/"

local function site_embedded(rel)
    local ok, site = pcall(require, "luacme.site")
    if ok and type(site) == "table" and site.embedded then
        return site.embedded(rel), site.embedded_mode or "t"
    end
    return nil
end

-- The file of built-in hook name, or nil: on disk first, then the copy
-- compiled in.
local function find_builtin(name)
    local dir = hooks_dir()
    local rels = { name .. ".lua" }
    for _, sub in ipairs(M.SUBDIRS) do
        rels[#rels + 1] = sub .. "/" .. name .. ".lua"
    end
    if dir then
        for _, rel in ipairs(rels) do
            if is_file(dir .. "/" .. rel) then return dir .. "/" .. rel end
        end
    end
    for _, rel in ipairs(rels) do
        if site_embedded("hooks/" .. rel) then return EMBEDDED .. "hooks/" .. rel end
    end
    return nil
end

-- Run a hook file once; its globals go to a private environment so two
-- hooks cannot clash through _G.
local function load_file(path, label)
    if loaded[path] then return loaded[path] end
    local env = setmetatable({}, { __index = _G })
    local chunk, err
    if path:sub(1, #EMBEDDED) == EMBEDDED then
        local src, mode = site_embedded(path:sub(#EMBEDDED + 1))
        if not src then return hook_error(label, "no such built-in " .. path) end
        chunk, err = load(src, "@" .. path, mode, env)
    else
        chunk, err = loadfile(path, "t", env)
    end
    if not chunk then return hook_error(label, err) end
    local ok, mod = pcall(chunk)
    if not ok then
        if type(mod) == "table" and mod.kind == "interrupted" then
            error(mod, 0)
        end
        return hook_error(label, "loading " .. path .. ": " ..
            tostring(mod))
    end
    if type(mod) ~= "table" then
        return hook_error(label, path .. " returned " .. type(mod) ..
            ", not a table")
    end
    loaded[path] = mod
    return mod
end

-- Check the table a hook file returned (everything but types, which may
-- depend on the options).
local function check_module(mod, label)
    for _, f in ipairs(M.FUNCTIONS) do
        if mod[f] ~= nil and type(mod[f]) ~= "function" then
            return hook_error(label, f .. " must be a function, is a " ..
                type(mod[f]))
        end
    end
    if mod.serial ~= nil and type(mod.serial) ~= "boolean" and
        type(mod.serial) ~= "function" then
        return hook_error(label, "serial must be a boolean (or a function)")
    end
    if mod.description ~= nil and type(mod.description) ~= "string" then
        return hook_error(label, "description must be a string")
    end
    if mod.types ~= nil and type(mod.types) ~= "table" and
        type(mod.types) ~= "function" then
        return hook_error(label, "types must be a list (or a function)")
    end
    if mod.options ~= nil then
        if type(mod.options) ~= "table" then
            return hook_error(label, "options must be a list")
        end
        for i, o in ipairs(mod.options) do
            if type(o) ~= "table" or type(o.name) ~= "string" or
                (o.help ~= nil and type(o.help) ~= "string") then
                return hook_error(label, "options[" .. i .. "] must be " ..
                    "{ name = STRING, help = STRING, required = BOOL }")
            end
        end
    end
    return true
end

local function check_types(types, label)
    if type(types) ~= "table" or #types == 0 then
        return hook_error(label, "types must be a non-empty list of " ..
            table.concat(M.TYPES, ", "))
    end
    local out = {}
    for i, ty in ipairs(types) do
        if not KNOWN_TYPE[ty] then
            return hook_error(label, "types[" .. i .. "]: unknown " ..
                "challenge type " .. M.printable(tostring(ty), 100) ..
                " (known: " .. table.concat(M.TYPES, ", ") .. ")")
        end
        out[i] = ty
    end
    return out
end

-- The user's options checked against the hook's declared ones (when it
-- declares any): unknown names and missing required ones are errors;
-- declared defaults fill gaps. Returns a fresh table.
local function check_opts(mod, opts, label)
    local out = {}
    for k, v in pairs(opts) do out[k] = v end
    if not mod.options then return out end
    local known, list = {}, {}
    for _, o in ipairs(mod.options) do
        known[o.name] = true
        list[#list + 1] = o.name
    end
    -- A misspelt name first: it also explains a "required" one missing.
    local names = {}
    for k in pairs(out) do names[#names + 1] = k end
    table.sort(names)
    for _, k in ipairs(names) do
        if not known[k] then
            return hook_error(label, "unknown option " .. k ..
                " (known: " .. (#list > 0 and table.concat(list, ", ") or
                "none") .. ")")
        end
    end
    for _, o in ipairs(mod.options) do
        if out[o.name] == nil and o.default ~= nil then
            out[o.name] = o.default
        end
        if o.required and (out[o.name] == nil or out[o.name] == "") then
            return hook_error(label, "option " .. o.name ..
                " is required" .. (o.help and (" (" .. o.help .. ")") or ""))
        end
    end
    return out
end

-- The file of a parsed spec and the hook's name: a built-in hook, a Lua
-- file, or any other file run by the exec hook (opts.script set). nil,
-- err when there is none.
local function resolve(spec, opts, label)
    local file
    local name = spec.name
    if spec.path then
        if spec.path:find("%.lua$") then
            file = spec.path
            if not is_file(file) then
                return hook_error(label, file .. ": no such file")
            end
        else
            if opts.script ~= nil then
                return hook_error(label, "a script path and a script " ..
                    "option; give one")
            end
            opts.script = spec.path
            file = find_builtin("exec")
            name = "exec"
            if not file then
                return hook_error(label, "the built-in exec hook is missing")
            end
        end
    else
        file = find_builtin(spec.name)
        if not file then
            return hook_error(label, "no built-in hook named " .. spec.name ..
                " (see luacme hooks); give a path with a / for a file")
        end
    end
    return file, name
end

-- Load a hook from a SPEC string or a parsed spec table. role is
-- "challenge" (must solve a challenge type), "deploy" (must have
-- deploy_cert) or nil (either). Returns the hook object:
--   { name=, spec=, file=, opts={...}, types={...} (challenge hooks),
--     description=, options=, and the hook's functions }
-- or nil, err (kind "hook", the message naming the spec).
function M.load(spec, role)
    local err
    if type(spec) == "string" then
        spec, err = M.parse_spec(spec)
        if not spec then return nil, err end
    elseif type(spec) ~= "table" then
        error("hooks.load: spec must be a string or a table", 2)
    end
    local label = M.printable(spec.spec or spec.name or spec.path or "?",
        200)
    local opts = {}
    for k, v in pairs(spec.opts or {}) do opts[k] = v end
    local file, name = resolve(spec, opts, label)
    if not file then return nil, name end

    local mod
    mod, err = load_file(file, label)
    if not mod then return nil, err end
    local ok
    ok, err = check_module(mod, label)
    if not ok then return nil, err end
    opts, err = check_opts(mod, opts, label)
    if not opts then return nil, err end

    local hook = { name = name, spec = spec.spec, file = file, opts = opts,
        description = mod.description, options = mod.options }
    for _, f in ipairs(M.FUNCTIONS) do hook[f] = mod[f] end
    -- serial: calls of this hook never overlap, across certificates
    -- too (one key per file, per script for exec, per cmd for command).
    hook.serial = mod.serial
    if type(hook.serial) == "function" then hook.serial = hook.serial(opts) end
    hook.serial = hook.serial and true or nil
    hook.serial_key = file .. "\0" .. tostring(opts.script or opts.cmd or "")

    if mod.setup then
        local r, e = mod.setup(opts)
        if not r then
            return hook_error(label, tostring(e or "setup failed"))
        end
    end
    if mod.types ~= nil then
        local types = mod.types
        if type(types) == "function" then
            local e
            types, e = types(opts)
            if not types then
                return hook_error(label, tostring(e or "no types"))
            end
        end
        hook.types, err = check_types(types, label)
        if not hook.types then return nil, err end
        if not mod.deploy or not mod.cleanup then
            return hook_error(label, "a challenge hook needs deploy " ..
                "and cleanup functions")
        end
    end
    if not hook.types and not hook.deploy_cert then
        return hook_error(label, "neither types (challenge hook) nor " ..
            "deploy_cert (deploy hook)")
    end
    if role == "challenge" and not hook.types then
        return hook_error(label, "not a challenge hook (no types); " ..
            "use it with --deploy-hook")
    end
    if role == "deploy" and not hook.deploy_cert then
        return hook_error(label, "not a deploy hook (no deploy_cert)")
    end
    return hook
end

-- Does hook solve challenge type ty?
function M.solves(hook, ty)
    for _, t in ipairs(hook.types or {}) do
        if t == ty then return true end
    end
    return false
end

-- fn(...) as hook may run it: at once, or (hook.serial) once no other
-- task is inside a call of the same hook (luacme.sched.serial).
function M.serialized(hook, fn, ...)
    if not hook.serial then return fn(...) end
    return sched.serial(hook.serial_key or hook, fn, ...)
end

-- Call hook[fname](..., hook.opts) in protected mode. A missing optional
-- function counts as success. Returns the function's true value, or nil,
-- err (kind "hook", naming the hook and the function; err.cause holds
-- what the hook returned or raised). An interruption (Ctrl-C) is raised
-- on, so the caller's cleanup runs.
function M.call(hook, fname, ...)
    local f = hook[fname]
    if f == nil then return true end
    local args = table.pack(...)
    args.n = args.n + 1
    args[args.n] = hook.opts
    local ok, r, e = M.serialized(hook, pcall, f,
        table.unpack(args, 1, args.n))
    if not ok then
        if type(r) == "table" and r.kind == "interrupted" then
            error(r, 0)
        end
        e, r = r, nil
    end
    if r then return r end
    local text = e ~= nil and tostring(e) or "failed (no reason given)"
    return nil, errors.new("hook", "hook " .. hook.name .. ": " .. fname ..
        ": " .. text, { cause = e, hook = hook.name })
end

--
-- Listing the built-in hooks
--

-- Every built-in hook: a list sorted by name of { name=, file=,
-- description=, types= (list or nil; "depends on options" for hooks
-- computing them), deploy= (has deploy_cert), options= } or, for a file
-- that does not load, { name=, file=, error= }.
function M.list_builtin()
    local dir = hooks_dir() or "/nonexistent"
    local out, seen = {}, {}
    local function add(file, name)
        if seen[name] then return end
        seen[name] = true
        local mod, err = load_file(file, name)
        local ok
        if mod then ok, err = check_module(mod, name) end
        if not mod or not ok then
            out[#out + 1] = { name = name, file = file, error = tostring(err) }
            return
        end
        local types = mod.types
        if type(types) == "function" then types = "depends on options" end
        out[#out + 1] = { name = name, file = file,
            description = mod.description, types = types,
            deploy = mod.deploy_cert ~= nil, options = mod.options or {} }
    end
    for _, n in ipairs(core.listdir(dir) or {}) do
        local base = n:match("^(.+)%.lua$")
        if base and is_file(dir .. "/" .. n) then add(dir .. "/" .. n, base) end
    end
    for _, sub in ipairs(M.SUBDIRS) do
        for _, n in ipairs(core.listdir(dir .. "/" .. sub) or {}) do
            local base = n:match("^(.+)%.lua$")
            if base and is_file(dir .. "/" .. sub .. "/" .. n) then
                add(dir .. "/" .. sub .. "/" .. n, base)
            end
        end
    end
    local ok, site = pcall(require, "luacme.site")
    if ok and type(site) == "table" and site.embedded_list then
        for _, rel in ipairs(site.embedded_list()) do
            local base = rel:match("^hooks/(.+)%.lua$")
            base = base and base:match("([^/]+)$")
            if base and find_builtin(base) == EMBEDDED .. rel then
                add(EMBEDDED .. rel, base)
            end
        end
    end
    table.sort(out, function(a, b) return a.name < b.name end)
    return out
end

--
-- Helpers for hooks
--

local SECRET_WORDS = { "KEY", "HMAC", "SECRET", "TOKEN", "PASSWORD" }

-- Is the environment variable name one of luacme's secrets?
function M.is_secret(name)
    local u = name:upper()
    if u:sub(1, 7) ~= "LUACME_" then return false end
    if u:sub(1, 11) == "LUACME_EAB_" then return true end
    for _, w in ipairs(SECRET_WORDS) do
        if u:find(w, 8, true) then return true end
    end
    return false
end

-- The environment hooks get: the caller's (env, default core.environ())
-- minus luacme's secrets: LUACME_* names containing KEY, HMAC, SECRET,
-- TOKEN or PASSWORD, and every LUACME_EAB_*. A fresh table.
function M.environment(env)
    env = env or core.environ()
    local out = {}
    for k, v in pairs(env) do
        if not M.is_secret(k) then out[k] = v end
    end
    return out
end

-- Run a program without a shell: opts.env (default environment()),
-- opts.timeout (seconds, default 300), opts.stdin. Returns the result
-- table of core.spawn when it exited 0, or nil, message (the program's
-- stderr, or stdout when stderr is empty, trimmed and printable). In a
-- task (luacme.sched) the others run while the program does.
function M.run(argv, opts)
    opts = opts or {}
    local what = M.printable(argv[1], 200)
    if argv[2] then what = what .. " " .. M.printable(argv[2], 100) end
    local res, msg = sched.spawn({ argv = argv,
        env = opts.env or M.environment(), stdin = opts.stdin,
        timeout = opts.timeout or 300, cwd = opts.cwd })
    if not res then
        return nil, what .. ": " .. M.printable(msg)
    end
    local function output()
        local o = M.printable(res.stderr)
        if o == "" then o = M.printable(res.stdout) end
        return o ~= "" and (": " .. o) or " (no output)"
    end
    if res.timed_out then
        return nil, what .. ": timed out after " .. (opts.timeout or 300) ..
            " s" .. output()
    end
    if res.signal then
        return nil, what .. ": killed by signal " .. res.signal .. output()
    end
    if res.status ~= 0 then
        return nil, what .. ": exit status " .. tostring(res.status) ..
            output()
    end
    return res
end

-- A timeout option (a string from the spec) as seconds, or def.
function M.seconds(v, def, label)
    if v == nil or v == "" then return def end
    local n = util.number(v, 0, 86400)
    if not n or n == 0 then
        return nil, (label or "timeout") .. " must be 1..86400 seconds"
    end
    return n
end

-- Is an option value "yes"? ("1", "true", "yes", "on"; also true)
function M.truthy(v)
    if v == true then return true end
    if type(v) ~= "string" then return false end
    v = v:lower()
    return v == "1" or v == "true" or v == "yes" or v == "on"
end

-- The challenge table hooks receive (luacme.challenge.derive).
M.challenge = challenge.derive

--
-- Sessions: startup/exit/failure of the exec hook style. One session
-- spans a whole run (several certificates with renew): startup() once
-- per hook spec, before its first use; exit() once for each, at the end.
--

local Session = {}
Session.__index = Session

local function noop() end

-- session([list,] on_event) -> session; use as
--   local sess <close> = hooks.session(on_event)
--   local ok, err = sess:add(list)       -- startup() of the new ones
--   sess:failure(err, list)              -- when an issuance failed
-- and exit() runs for every started hook on close. With a list,
-- sess:start() adds it. on_event(name, fields, text, opts) is told of
-- each call as a "hook_event" (see luacme.output).
function M.session(list, on_event)
    if type(list) == "function" then list, on_event = nil, list end
    return setmetatable({ pending = list or {}, on_event = on_event or noop,
        started = {}, seen = {} }, Session)
end

-- A hook's identity in a run: the script for script hooks (the same
-- dehydrated script given as --hook ./hook.sh and as --deploy-hook
-- exec:script=./hook.sh is one hook: startup and exit once); else a hook
-- loaded from a spec is known by its spec, and a table given inline (a
-- recipe's) by itself, so two inline hooks never share one startup.
local function spec_key(h)
    if h.opts and type(h.opts.script) == "string" then
        return (h.file or "") .. "\0" .. h.opts.script
    end
    return h.spec or h
end
M.identity = spec_key

-- The hooks told of a new certificate: the deploy hooks, then each
-- challenge hook that has deploy_cert too and is not among them, as
-- dehydrated calls deploy_cert on the one HOOK script it was given.
function M.deploy_list(challenge_hooks, deploy_hooks)
    local out, seen = {}, {}
    for _, list in ipairs({ deploy_hooks or {}, challenge_hooks or {} }) do
        for _, h in ipairs(list) do
            local k = spec_key(h)
            if h.deploy_cert and not seen[k] then
                seen[k] = true
                out[#out + 1] = h
            end
        end
    end
    return out
end

function Session:call(h, event, ...)
    local ok, err = M.call(h, event, ...)
    if h[event] then
        self.on_event("hook_event", { hook = h.name, event = event,
            ok = ok and true or false, error = err and err.detail or nil },
            not ok and ("hook " .. h.name .. ": " .. event .. " failed: " ..
            tostring(err and err.detail)) or nil,
            { warning = not ok or nil, verbose = ok or nil })
    end
    return ok, err
end

-- startup() of every hook of list not started yet. Returns true or
-- nil, err (the first failure; hooks started so far still get exit()).
function Session:add(list)
    -- Certificates renewed at once: a hook used by several is started
    -- once, and none goes on before its startup() is done.
    return sched.serial(self, self._add, self, list)
end

function Session:_add(list)
    for _, h in ipairs(list or {}) do
        local k = spec_key(h)
        if not self.seen[k] then
            self.seen[k] = true
            self.started[#self.started + 1] = h
            local ok, err = self:call(h, "startup")
            if not ok then return nil, err end
        end
    end
    return true
end

function Session:start()
    return self:add(self.pending)
end

-- failure(err) of the hooks of list (default: every started one), each
-- spec once (dehydrated's request_failure).
function Session:failure(err, list)
    local done = {}
    for _, h in ipairs(list or self.started) do
        local k = spec_key(h)
        if not done[k] then
            done[k] = true
            self:call(h, "failure", err)
        end
    end
end

-- exit() of every started hook, once. An interruption during exit() is
-- kept in self.interrupted for the caller to raise.
function Session:close()
    while #self.started > 0 do
        local h = table.remove(self.started, 1)
        local ok, e = pcall(self.call, self, h, "exit")
        if not ok and type(e) == "table" and e.kind == "interrupted" then
            self.interrupted = e
        end
    end
end
Session.__close = Session.close

return M
