/*
 * The challenge responders of luacme.core (responder.c does the work):
 *
 *   core.http01_responder{address=, port=, max_conns=, max_request=,
 *       timeout=}
 *   core.tls_alpn_responder{address=, port=, max_conns=, timeout=}
 *
 * Each returns a responder userdata ("luacme.responder") serving from its
 * own thread until close() (also __gc and __close), or nil, message,
 * kind ("bind" when the address or port cannot be used, "invalid" for an
 * address that is not a numeric IP, "system", "crypto").
 */
#include "lua_bind.h"

#include <math.h>
#include <string.h>

#include "luacme_limits.h"
#include "responder.h"

#define RESPONDER_MT "luacme.responder"     /* also __name in messages */

struct lresponder {
    struct responder *r;            /* NULL once closed */
    enum responder_kind kind;
    int port;
    struct responder_stats last;    /* the counters at close() */
};

static const char *const http_opts[] = {
    "address", "port", "max_conns", "max_request", "timeout", NULL
};

static const char *const tls_opts[] = {
    "address", "port", "max_conns", "timeout", NULL
};

static struct lresponder *
check_resp(lua_State *L, int idx)
{
    return luaL_checkudata(L, idx, RESPONDER_MT);
}

/* The open responder at idx; raises when it was closed. */
static struct lresponder *
resp_get(lua_State *L, int idx)
{
    struct lresponder *lr = check_resp(L, idx);

    if (lr->r == NULL)
        luaL_error(L, "attempt to use a closed responder");
    return lr;
}

static void
check_nargs(lua_State *L, int max)
{
    if (lua_gettop(L) > max)
        luaL_argerror(L, max + 1, "no value expected");
}

/* Raise unless every key of the options table (argument 1) is in
 * names: a misspelt option must not silently become a default. */
static void
check_keys(lua_State *L, const char *const names[])
{
    const char *k;
    int i, found;

    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_argerror(L, 1, lua_pushfstring(L,
                "unknown option (a %s key)", luaL_typename(L, -1)));
        k = lua_tostring(L, -1);
        found = 0;
        for (i = 0; names[i] != NULL && !found; i++)
            found = strcmp(k, names[i]) == 0;
        if (!found)
            luaL_argerror(L, 1, lua_pushfstring(L, "unknown option '%s'",
                k));
    }
}

/* opts[name] as an integer in lo..hi, or def when absent. */
static lua_Integer
opt_int(lua_State *L, const char *name, lua_Integer lo, lua_Integer hi,
    lua_Integer def)
{
    lua_Integer v;
    int isint;

    lua_getfield(L, 1, name);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return def;
    }
    v = lua_tointegerx(L, -1, &isint);
    if (!isint || v < lo || v > hi)
        luaL_argerror(L, 1, lua_pushfstring(L, "'%s' must be an integer "
            "in %I..%I", name, lo, hi));
    lua_pop(L, 1);
    return v;
}

/* The options of argument 1 into *o; the address string stays on the
 * stack (slot 2) so o->address stays valid. */
static void
read_opts(lua_State *L, struct responder_opts *o, int http, int def_port)
{
    lua_Number t;
    size_t len;

    memset(o, 0, sizeof(*o));
    check_nargs(L, 1);
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    }
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checkstack(L, 8, NULL);
    check_keys(L, http ? http_opts : tls_opts);
    lua_getfield(L, 1, "address");                          /* 2 */
    if (!lua_isnil(L, 2)) {
        if (lua_type(L, 2) != LUA_TSTRING)
            luaL_argerror(L, 1, "'address' must be a string");
        o->address = lua_tolstring(L, 2, &len);
        if (strlen(o->address) != len)
            luaL_argerror(L, 1, "'address' contains a NUL");
    }
    o->port = (int)opt_int(L, "port", 0, 65535, def_port);
    o->max_conns = (int)opt_int(L, "max_conns", 1,
        LUACME_RESPONDER_MAX_CONNS_CEIL, LUACME_RESPONDER_MAX_CONNS);
    if (http)
        o->max_request = (size_t)opt_int(L, "max_request",
            LUACME_RESPONDER_MAX_REQUEST_MIN,
            LUACME_RESPONDER_MAX_REQUEST_CEIL, LUACME_RESPONDER_MAX_REQUEST);
    lua_getfield(L, 1, "timeout");
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TNUMBER)
            luaL_argerror(L, 1, "'timeout' must be a number");
        t = lua_tonumber(L, -1);
        if (!(t > 0 && t * 1000 <= LUACME_RESPONDER_TIMEOUT_MAX_MS))
            luaL_argerror(L, 1, lua_pushfstring(L, "'timeout' must be > 0 "
                "and <= %d seconds", LUACME_RESPONDER_TIMEOUT_MAX_MS / 1000));
        o->timeout_ms = (int)ceil(t * 1000);
    }
    lua_pop(L, 1);
}

static int
start(lua_State *L, enum responder_kind kind)
{
    struct responder_opts o;
    struct lresponder *lr;
    struct luacme_err err;
    int http = kind == RESPONDER_HTTP01;

    read_opts(L, &o, http, http ? 80 : 443);
    /* The box first, so nothing can raise while the thread runs
     * without an owner. */
    lr = lua_newuserdatauv(L, sizeof(*lr), 0);
    memset(lr, 0, sizeof(*lr));
    lr->kind = kind;
    luaL_setmetatable(L, RESPONDER_MT);
    if (responder_start(kind, &o, &lr->r, &err) != 0) {
        lr->r = NULL;
        return lbind_err(L, &err);
    }
    lr->port = responder_port(lr->r);
    return 1;
}

/* core.http01_responder{address=, port=, max_conns=, max_request=,
 * timeout=} -> responder | nil, message, kind. address: numeric IPv4 or
 * IPv6, or "*" (the default: every address, IPv6 dual-stack); port
 * default 80 (0 = ephemeral); timeout in seconds per connection. */
static int
l_http01_responder(lua_State *L)
{
    return start(L, RESPONDER_HTTP01);
}

/* core.tls_alpn_responder{address=, port=, max_conns=, timeout=} ->
 * responder | nil, message, kind; port default 443. */
static int
l_tls_alpn_responder(lua_State *L)
{
    return start(L, RESPONDER_TLS_ALPN01);
}

/* http-01: r:add(token, body); tls-alpn-01: r:add(identifier, cert_pem,
 * key). -> true | nil, message, kind ("invalid" token or identifier,
 * "parse" PEM, "too_large"). Wrong argument types raise. */
static int
m_add(lua_State *L)
{
    struct lresponder *lr = resp_get(L, 1);
    struct luacme_err err;
    const char *name, *data;
    size_t nlen, dlen;
    int rc;

    name = luaL_checklstring(L, 2, &nlen);
    data = luaL_checklstring(L, 3, &dlen);
    if (strlen(name) != nlen)
        return lbind_fail(L, "responder: NUL byte in a name", "invalid");
    if (lr->kind == RESPONDER_HTTP01) {
        check_nargs(L, 3);
        rc = responder_http_add(lr->r, name, data, dlen, &err);
    } else {
        EVP_PKEY *key = lbind_checkkey(L, 4);
        check_nargs(L, 4);
        rc = responder_tls_add(lr->r, name, data, dlen, key, &err);
    }
    if (rc != 0)
        return lbind_err(L, &err);
    lua_pushboolean(L, 1);
    return 1;
}

/* r:remove(token_or_identifier) -> true when it was served, else false. */
static int
m_remove(lua_State *L)
{
    struct lresponder *lr = resp_get(L, 1);
    size_t len;
    const char *name = luaL_checklstring(L, 2, &len);

    check_nargs(L, 2);
    lua_pushboolean(L, strlen(name) == len &&
        responder_remove(lr->r, name) == 1);
    return 1;
}

/* r:port() -> the port bound (the kernel's choice for port 0). */
static int
m_port(lua_State *L)
{
    struct lresponder *lr = resp_get(L, 1);

    check_nargs(L, 1);
    lua_pushinteger(L, lr->port);
    return 1;
}

static void
set_count(lua_State *L, const char *name, uint64_t v)
{
    lua_pushinteger(L, (lua_Integer)v);
    lua_setfield(L, -2, name);
}

/* r:stats() -> {connections=, requests=, served=, not_found=, bad=,
 * timeouts=, evicted=, active=, peak=, entries=} (responder.h says what each
 * counts). Also after close(): the counters as they were then. */
static int
m_stats(lua_State *L)
{
    struct lresponder *lr = check_resp(L, 1);
    struct responder_stats st;

    check_nargs(L, 1);
    if (lr->r != NULL)
        responder_stats(lr->r, &st);
    else
        st = lr->last;
    lua_createtable(L, 0, 10);
    set_count(L, "connections", st.connections);
    set_count(L, "requests", st.requests);
    set_count(L, "served", st.served);
    set_count(L, "not_found", st.not_found);
    set_count(L, "bad", st.bad);
    set_count(L, "timeouts", st.timeouts);
    set_count(L, "evicted", st.evicted);
    set_count(L, "active", st.active);
    set_count(L, "peak", st.peak);
    set_count(L, "entries", st.entries);
    return 1;
}

/* r:close() (also __gc, __close): stop serving, close every connection
 * and the listening socket; the port is free when it returns.
 * Idempotent. */
static int
m_close(lua_State *L)
{
    struct lresponder *lr = check_resp(L, 1);

    if (lr->r != NULL) {
        responder_stats(lr->r, &lr->last);
        responder_stop(lr->r);
        lr->r = NULL;
        lr->last.active = 0;
    }
    return 0;
}

static int
m_tostring(lua_State *L)
{
    struct lresponder *lr = check_resp(L, 1);
    const char *what = lr->kind == RESPONDER_HTTP01 ? "http-01" :
        "tls-alpn-01";

    if (lr->r == NULL)
        lua_pushfstring(L, RESPONDER_MT " (%s, closed)", what);
    else
        lua_pushfstring(L, RESPONDER_MT " (%s, port %d)", what, lr->port);
    return 1;
}

void
lbind_responder(lua_State *L)
{
    static const luaL_Reg meta[] = {
        {"__gc", m_close},
        {"__close", m_close},
        {"__tostring", m_tostring},
        {NULL, NULL}
    };
    static const luaL_Reg methods[] = {
        {"add", m_add},
        {"remove", m_remove},
        {"port", m_port},
        {"stats", m_stats},
        {"close", m_close},
        {NULL, NULL}
    };
    static const luaL_Reg funcs[] = {
        {"http01_responder", l_http01_responder},
        {"tls_alpn_responder", l_tls_alpn_responder},
        {NULL, NULL}
    };

    luaL_newmetatable(L, RESPONDER_MT);
    luaL_setfuncs(L, meta, 0);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    luaL_setfuncs(L, funcs, 0);
}
