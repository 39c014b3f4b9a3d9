/* Placeholder until the x509 binding lands; registers nothing yet. */
#include "lua_bind.h"

void
lbind_x509(lua_State *L)
{
    (void)L;
}
