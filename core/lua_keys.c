/* Placeholder until the keys binding lands; registers nothing yet. */
#include "lua_bind.h"

void
lbind_keys(lua_State *L)
{
    (void)L;
}
