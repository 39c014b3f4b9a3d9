/*
 * luacme_openlibs: what every Lua state of the executable's starts from
 * (the command, the fuzz harness, the C tests). Kept apart from
 * luaopen_luacme_core so that the loadable module luacme/core.so, which
 * a stock lua5.4 loads beside its own lua-cjson, names no cjson symbol.
 */
#include "lua_bind.h"

#include <lualib.h>

/* lua-cjson, linked in statically (CMakeLists.txt: lua_static). */
int luaopen_cjson(lua_State *L);
int luaopen_cjson_safe(lua_State *L);

void
luacme_openlibs(lua_State *L)
{
    /* As lua/lua: linit.c does for its own libraries. */
    static const luaL_Reg preload[] = {
        {"luacme.core", luaopen_luacme_core},
        {"cjson", luaopen_cjson},
        {"cjson.safe", luaopen_cjson_safe},
        {NULL, NULL}
    };

    luaL_openlibs(L);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    luaL_setfuncs(L, preload, 0);
    lua_pop(L, 1);
}
