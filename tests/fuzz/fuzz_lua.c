/* The Lua side's readers of server data (Link and Retry-After headers,
 * dates, JSON order/authorization/account/challenge objects, problem
 * documents, identifiers) run inside the real luacme.core + cjson
 * state; tests/fuzz/lua_parsers.lua says which. Any Lua error is a
 * crash: those functions must answer nil, err for bad input. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <lua.h>
#include <lauxlib.h>

#include "lua_bind.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lua_State *L;
static int fn_ref = LUA_NOREF;

static void
setup(void)
{
    L = luaL_newstate();
    luacme_openlibs(L);     /* the executable's libraries and preload */
    lua_getglobal(L, "package");
    lua_pushstring(L, LUACME_SOURCE_DIR "/lua/?.lua;"
        LUACME_SOURCE_DIR "/lua/?/init.lua");
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);
    if (luaL_dofile(L, LUACME_SOURCE_DIR "/tests/fuzz/lua_parsers.lua")
        != LUA_OK) {
        fprintf(stderr, "fuzz_lua: %s\n", lua_tostring(L, -1));
        abort();
    }
    fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (L == NULL)
        setup();
    lua_rawgeti(L, LUA_REGISTRYINDEX, fn_ref);
    lua_pushlstring(L, (const char *)data, size);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        fprintf(stderr, "fuzz_lua: raised: %s\n",
            lua_isstring(L, -1) ? lua_tostring(L, -1) : "(non-string)");
        abort();
    }
    /* Keep memory flat across millions of runs. */
    lua_gc(L, LUA_GCSTEP, 0);
    return 0;
}
