/* Placeholder until the http binding lands; registers nothing yet. */
#include "lua_bind.h"

void
lbind_http(lua_State *L)
{
    (void)L;
}
