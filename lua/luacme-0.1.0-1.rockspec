-- luacme as a Lua 5.4 library: the Lua modules (luacme, luacme.hooks,
-- luacme.dns, ...), the built-in hooks and the C module luacme/core.so,
-- built by CMake from the same sources as the luacme executable.
-- From a checkout (the top directory, not lua/):
--   luarocks --lua-version 5.4 make lua/luacme-0.1.0-1.rockspec
-- Needs OpenSSL 3 and libcurl headers (Debian: libssl-dev,
-- libcurl4-openssl-dev), cmake and a C compiler; lua-cjson at run time
-- (Debian's lua-cjson serves too: add --deps-mode none to use it).
rockspec_format = "3.0"
package = "luacme"
version = "0.1.0-1"
source = {
   -- Not published yet: build it from a checkout with `luarocks make`.
   url = "git+file:///usr/src/luacme",
   tag = "v0.1.0",
}
description = {
   summary = "ACME (RFC 8555) client library: certificates from Let's Encrypt and other CAs",
   detailed = [[
The protocol of golang.org/x/crypto/acme in Lua, whole issuances with
challenge hooks (http-01 webroot and standalone, dns-01 providers,
tls-alpn-01), over a C core for keys, JWS, CSRs, certificates and HTTPS
(OpenSSL 3, libcurl). The same code runs inside the luacme command.
]],
   -- The project has no license file yet; this says so rather than guess.
   license = "unspecified",
}
dependencies = {
   "lua >= 5.4, < 5.5",
   "lua-cjson",
}
-- OpenSSL and libcurl are found by CMake (find_package), which knows
-- multiarch include directories (Debian's curl/curl.h) where luarocks'
-- external_dependencies check does not.
build = {
   type = "cmake",
   variables = {
      CMAKE_BUILD_TYPE = "Release",
      CMAKE_INSTALL_PREFIX = "$(PREFIX)",
      LUACME_EXE = "OFF",
      LUACME_LUA_MODULE = "ON",
      BUILD_TESTING = "OFF",
      LUA_INCLUDE_DIR = "$(LUA_INCDIR)",
      LUACME_LUADIR = "$(LUADIR)",
      LUACME_LIBDIR = "$(LIBDIR)",
   },
}
