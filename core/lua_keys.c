/* Placeholder until the keys binding lands; registers nothing yet. */
#include "lua_bind.h"

void
lbind_keys(lua_State *L)
{
    (void)L;
}

/* Placeholders until the keys binding lands. */
struct evp_pkey_st *
lbind_checkkey(lua_State *L, int idx)
{
    luaL_checkudata(L, idx, LUACME_KEY_MT);
    return NULL;
}

void
lbind_pushkey(lua_State *L, struct evp_pkey_st *pkey)
{
    (void)pkey;
    luaL_error(L, "keys binding not built yet");
}
