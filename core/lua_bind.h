/*
 * Shared by the thin Lua binding files (core/lua_*.c). Each binding file
 * adds its functions to the luacme.core table on top of the stack and
 * registers its metatables; luaopen_luacme_core calls them in turn.
 */
#ifndef LUACME_LUA_BIND_H
#define LUACME_LUA_BIND_H

#include <lua.h>
#include <lauxlib.h>

#include "err.h"

/* Push nil, message, kind (the "expected failure" shape). Returns 3. */
int lbind_fail(lua_State *L, const char *msg, const char *kind);

/* Same from a filled struct luacme_err. Returns 3. */
int lbind_err(lua_State *L, const struct luacme_err *err);

/* Each adds its functions to the table at the top of the stack (the
 * module table) and leaves the stack as it found it. */
void lbind_encoding(lua_State *L);  /* lua_core.c: b64url, digests, random */
void lbind_keys(lua_State *L);      /* lua_keys.c: keys and JWS */
void lbind_x509(lua_State *L);      /* lua_x509.c: CSR, certificates */
void lbind_http(lua_State *L);      /* lua_http.c: the HTTP client */

/* The module entry point, preloaded as "luacme.core" by main.c. */
int luaopen_luacme_core(lua_State *L);

#endif
