/* Placeholder until the fs binding lands; registers nothing yet. */
#include "lua_bind.h"

void
lbind_fs(lua_State *L)
{
    (void)L;
}
