-- Issue a certificate with luacme as a Lua library, under the system's
-- Lua 5.4 (after `luarocks make`, README "Use it as a Lua library") or
-- inside the command (`luacme run`); the same file runs in both.
--   lua5.4 examples/library.lua DIRECTORY_URL WEBROOT NAME [CA_FILE]
-- Prints the certificate chain (PEM); the keys stay in memory.
local luacme = require "luacme"
local core = require "luacme.core"
local hooks = require "luacme.hooks"

local directory, webroot, name, ca_file = ...
assert(directory and webroot and name, "usage: library.lua DIRECTORY_URL WEBROOT NAME [CA_FILE]")

local c = luacme.client{ directory = directory, ca_file = ca_file,
  key = assert(core.key_generate("ec256")) }
assert(c:register({}, luacme.accept_tos))
local csr = assert(core.csr{ key = assert(core.key_generate("ec256")), names = { name } })
local res = assert(c:issue{ identifiers = luacme.domain_ids{ name }, csr = csr,
  hook = assert(hooks.load("webroot:root=" .. webroot, "challenge")) })
io.write(res.pem)
