local t = require "testlib"
local core = require "luacme.core"
local hooks = require "luacme.hooks"

local KA = "tok.thumbprint"

local function ch(token)
    return hooks.challenge({ type = "http-01", token = token,
        identifier = { type = "dns", value = "example.com" },
        key_authorization = token .. ".thumbprint" })
end

local function mode_of(path)
    return assert(core.lstat(path)).mode & 4095
end

local function exists(path)
    return core.lstat(path) ~= nil
end

local function setup()
    local root = t.tmpdir() .. "/www"
    assert(core.mkdir(root, 493))
    local h = assert(hooks.load("webroot:root=" .. root))
    return h, root
end

t.test("deploy writes the response 0644 in new 0755 directories", function()
    local h, root = setup()
    local old = core.umask(63)            -- 077: modes must not depend on it
    local ok, err = hooks.call(h, "deploy", ch("tok"))
    core.umask(old)
    t.eq(ok, true, tostring(err))
    local file = root .. "/.well-known/acme-challenge/tok"
    t.eq(t.readfile(file), KA)
    t.eq(mode_of(file), 420)
    t.eq(mode_of(root .. "/.well-known"), 493)
    t.eq(mode_of(root .. "/.well-known/acme-challenge"), 493)
    t.ok(hooks.call(h, "cleanup", ch("tok")))
    t.ok(not exists(file))
    t.ok(not exists(root .. "/.well-known"), "created dirs removed")
    t.ok(exists(root), "root stays")
end)

t.test("cleanup keeps directories it did not create", function()
    local h, root = setup()
    assert(core.mkdir(root .. "/.well-known", 493))
    t.ok(hooks.call(h, "deploy", ch("a")))
    t.ok(hooks.call(h, "cleanup", ch("a")))
    t.ok(exists(root .. "/.well-known"))
    t.ok(not exists(root .. "/.well-known/acme-challenge"))
end)

t.test("several tokens share the directories; last cleanup removes them",
    function()
    local h, root = setup()
    t.ok(hooks.call(h, "deploy", ch("a")))
    t.ok(hooks.call(h, "deploy", ch("b")))
    t.ok(hooks.call(h, "cleanup", ch("a")))
    t.ok(exists(root .. "/.well-known/acme-challenge/b"))
    t.ok(not exists(root .. "/.well-known/acme-challenge/a"))
    t.ok(hooks.call(h, "cleanup", ch("b")))
    t.ok(not exists(root .. "/.well-known"))
end)

t.test("a foreign file in the directory keeps it in place", function()
    local h, root = setup()
    t.ok(hooks.call(h, "deploy", ch("a")))
    t.writefile(root .. "/.well-known/acme-challenge/other", "not ours")
    t.ok(hooks.call(h, "cleanup", ch("a")))
    t.eq(t.readfile(root .. "/.well-known/acme-challenge/other"), "not ours")
    os.remove(root .. "/.well-known/acme-challenge/other")
end)

t.test("bad tokens never become file names", function()
    local h, root = setup()
    for _, tok in ipairs({ "../../etc/x", "a/b", "a.b", "", "a b",
        "tok\0x", ".", "..", string.rep("a", 257) }) do
        local c = { type = "http-01", token = tok, key_authorization = "x",
            identifier = { type = "dns", value = "e" } }
        local ok, err = hooks.call(h, "deploy", c)
        t.eq(ok, nil, tok)
        t.match(err.detail, "refusing a token")
        t.ok(hooks.call(h, "cleanup", c))
    end
    t.ok(not exists(root .. "/.well-known"), "nothing created")
end)

t.test("an existing file or link is never replaced nor removed", function()
    local h, root = setup()
    local dir = root .. "/.well-known/acme-challenge"
    assert(core.mkdir_p(dir, 493))
    t.writefile(dir .. "/taken", "someone else's")
    local ok, err = hooks.call(h, "deploy", ch("taken"))
    t.eq(ok, nil)
    t.match(err.detail, "exists and was not created by luacme")
    t.ok(hooks.call(h, "cleanup", ch("taken")))
    t.eq(t.readfile(dir .. "/taken"), "someone else's")

    local target = t.tmpdir() .. "/victim"
    t.writefile(target, "precious")
    assert(core.symlink(target, dir .. "/linked"))
    ok, err = hooks.call(h, "deploy", ch("linked"))
    t.eq(ok, nil)
    t.match(err.detail, "symbolic link")
    t.ok(hooks.call(h, "cleanup", ch("linked")))
    t.eq(t.readfile(target), "precious")
    t.eq(assert(core.lstat(dir .. "/linked")).type, "link")
    -- deploying the same token twice in one run is fine (a retry)
    t.ok(hooks.call(h, "deploy", ch("again")))
    t.ok(hooks.call(h, "deploy", ch("again")))
    t.ok(hooks.call(h, "cleanup", ch("again")))
    t.ok(not exists(dir .. "/again"))
end)

t.test("cleanup after a failed deploy removes the directories", function()
    -- The write fails (raises) after both directories were created.
    local h, root = setup()
    local c = ch("x")
    c.key_authorization = nil
    local ok, err = hooks.call(h, "deploy", c)
    t.eq(ok, nil)
    t.match(err.detail, "^hook webroot: deploy: ")
    t.ok(exists(root .. "/.well-known/acme-challenge"))
    t.ok(hooks.call(h, "cleanup", c))
    t.ok(not exists(root .. "/.well-known"))

    -- acme-challenge is a file: deploy fails, nothing of the user's goes
    local h2, other = setup()
    assert(core.mkdir(other .. "/.well-known", 493))
    t.writefile(other .. "/.well-known/acme-challenge", "a file")
    ok, err = hooks.call(h2, "deploy", ch("x"))
    t.eq(ok, nil)
    t.match(err.detail, "not a directory")
    t.ok(hooks.call(h2, "cleanup", ch("x")))
    t.eq(t.readfile(other .. "/.well-known/acme-challenge"), "a file")
end)

t.test("a root that is missing or not a directory fails cleanly", function()
    local base = t.tmpdir()
    local h = assert(hooks.load("webroot:root=" .. base .. "/missing"))
    local ok, err = hooks.call(h, "deploy", ch("a"))
    t.eq(ok, nil)
    t.match(err.detail, "is not a directory")
    t.ok(not exists(base .. "/missing"))
    local c = ch("a")
    c.type = "dns-01"
    ok, err = hooks.call(h, "deploy", c)
    t.eq(ok, nil)
    t.match(err.detail, "http%-01 only")
end)

t.test("a symlinked .well-known (shared directory) is used, not removed",
    function()
    local h, root = setup()
    local shared = t.tmpdir() .. "/shared"
    assert(core.mkdir(shared, 493))
    assert(core.symlink(shared, root .. "/.well-known"))
    t.ok(hooks.call(h, "deploy", ch("s")))
    t.eq(t.readfile(shared .. "/acme-challenge/s"), "s.thumbprint")
    t.ok(hooks.call(h, "cleanup", ch("s")))
    t.ok(not exists(shared .. "/acme-challenge"))
    t.eq(assert(core.lstat(root .. "/.well-known")).type, "link")
end)

t.test("flat=yes: the token goes into root itself (dehydrated's WELLKNOWN)",
    function()
    local root = t.tmpdir() .. "/challenges"
    assert(core.mkdir(root, 493))
    local h = assert(hooks.load("webroot:root=" .. root .. ",flat=yes"))
    t.ok(hooks.call(h, "deploy", ch("flat")))
    t.eq(t.readfile(root .. "/flat"), "flat.thumbprint")
    t.ok(not exists(root .. "/.well-known"), "no .well-known made")
    t.ok(hooks.call(h, "cleanup", ch("flat")))
    t.ok(not exists(root .. "/flat"))
    t.ok(exists(root), "the directory stays")
end)
