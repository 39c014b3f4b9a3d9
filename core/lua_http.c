/*
 * The HTTP client userdata ("luacme.http") of luacme.core: a thin layer
 * turning Lua tables into struct http_request and a struct
 * http_response back into status, headers, body. Everything the C layer
 * allocates for a response sits in a userdata box with __gc, so a raise
 * while converting cannot leak it.
 */
#include "lua_bind.h"

#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>

#include <curl/curl.h>

#include "http.h"
#include "luacme_limits.h"

#ifndef LUACME_VERSION
#define LUACME_VERSION "0.0.0-dev"
#endif

#define HTTP_MT "luacme.http"               /* also __name in messages */
#define RESP_MT "luacme.http.response"      /* internal: owns a response */
#define XFER_MT "luacme.http.transfer"      /* a request started */
#define MULTI_MT "luacme.http.multi"        /* internal: owns the pool */
#define POOL_KEY "luacme.http.pool"         /* registry: the shared one */

struct lxfer {
    struct http_xfer *xf;                   /* NULL once collected */
};

struct lmulti {
    struct http_multi *m;
};

struct lhttp {
    struct http_client *c;                  /* NULL once closed */
};

static const char *const client_opts[] = {
    "ca_file", "user_agent", "timeout", "connect_timeout", "max_body",
    "allow_http", NULL
};

static const char *const request_fields[] = {
    "method", "url", "headers", "body", "once", NULL
};

/* The open client at idx; raises for a closed client or a non-client. */
static struct http_client *
client_get(lua_State *L, int idx)
{
    struct lhttp *h = luaL_checkudata(L, idx, HTTP_MT);

    if (h->c == NULL)
        luaL_error(L, "attempt to use a closed http client");
    return h->c;
}

/* Raise unless every key of the table at idx is one of names: a typo in
 * an option name must not silently fall back to a default. */
static void
check_keys(lua_State *L, int arg, int idx, const char *const names[])
{
    const char *k;
    int i, found;

    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_argerror(L, arg, lua_pushfstring(L,
                "unknown option (a %s key)", luaL_typename(L, -1)));
        k = lua_tostring(L, -1);
        found = 0;
        for (i = 0; names[i] != NULL && !found; i++)
            found = strcmp(k, names[i]) == 0;
        if (!found)
            luaL_argerror(L, arg, lua_pushfstring(L, "unknown option '%s'",
                k));
    }
}

/* Push t[name] and return it as a C string, or NULL when nil. Raises
 * unless it is a string without NULs (or nil and !required). The value
 * stays on the stack, so the pointer stays valid. */
static const char *
field_string(lua_State *L, int arg, int idx, const char *name, int required)
{
    const char *s;
    size_t len;

    lua_getfield(L, idx, name);
    if (lua_isnil(L, -1) && !required)
        return NULL;
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_argerror(L, arg, lua_pushfstring(L, "'%s' must be a string",
            name));
    s = lua_tolstring(L, -1, &len);
    if (strlen(s) != len)
        luaL_argerror(L, arg, lua_pushfstring(L, "'%s' contains a NUL",
            name));
    return s;
}

/* t[name] as a timeout in seconds: nil gives 0 (the default). */
static double
field_timeout(lua_State *L, int arg, int idx, const char *name)
{
    lua_Number v;

    lua_getfield(L, idx, name);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    if (lua_type(L, -1) != LUA_TNUMBER)
        luaL_argerror(L, arg, lua_pushfstring(L, "'%s' must be a number",
            name));
    v = lua_tonumber(L, -1);
    if (!(v > 0 && v <= LUACME_HTTP_TIMEOUT_MAX_S))
        luaL_argerror(L, arg, lua_pushfstring(L,
            "'%s' must be > 0 and <= %d seconds", name,
            LUACME_HTTP_TIMEOUT_MAX_S));
    lua_pop(L, 1);
    return (double)v;
}

/* The process's one multi handle (made on first use, kept in the
 * registry), so every client shares one connection pool and
 * core.http_run moves all their transfers. NULL when it cannot be made
 * (out of memory). */
static struct http_multi *
shared_multi(lua_State *L)
{
    struct lmulti *lm;
    struct luacme_err err;

    if (lua_getfield(L, LUA_REGISTRYINDEX, POOL_KEY) == LUA_TUSERDATA) {
        lm = lua_touserdata(L, -1);
        lua_pop(L, 1);
        return lm->m;
    }
    lua_pop(L, 1);
    lm = lua_newuserdatauv(L, sizeof(*lm), 0);
    lm->m = NULL;
    luaL_setmetatable(L, MULTI_MT);
    if (http_multi_new(&lm->m, &err) != 0) {
        lua_pop(L, 1);
        return NULL;
    }
    lua_setfield(L, LUA_REGISTRYINDEX, POOL_KEY);
    return lm->m;
}

static int
multi_gc(lua_State *L)
{
    struct lmulti *lm = luaL_checkudata(L, 1, MULTI_MT);

    http_multi_free(lm->m);     /* clients still alive keep it */
    lm->m = NULL;
    return 0;
}

/* core.http{ca_file=, user_agent=, timeout=, connect_timeout=,
 * max_body=, allow_http=} -> client, or nil, message, kind when libcurl
 * cannot be set up. All options are optional; unknown ones, wrong types
 * and out-of-range values raise. max_body is clamped to
 * LUACME_HTTP_MAX_BODY_CEIL. */
static int
l_http(lua_State *L)
{
    struct http_opts o;
    struct lhttp *h;
    struct luacme_err err;
    const curl_version_info_data *cv;
    lua_Integer mb;
    int isint;

    memset(&o, 0, sizeof(o));
    if (lua_isnoneornil(L, 1))
        lua_newtable(L);
    else
        luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    luaL_checkstack(L, 8, NULL);
    check_keys(L, 1, 1, client_opts);

    o.ca_file = field_string(L, 1, 1, "ca_file", 0);       /* stays */
    o.user_agent = field_string(L, 1, 1, "user_agent", 0); /* stays */
    if (o.user_agent == NULL) {
        cv = curl_version_info(CURLVERSION_NOW);
        o.user_agent = lua_pushfstring(L, "luacme/%s libcurl/%s",
            LUACME_VERSION, cv->version);
    }
    o.timeout_s = field_timeout(L, 1, 1, "timeout");
    o.connect_timeout_s = field_timeout(L, 1, 1, "connect_timeout");

    lua_getfield(L, 1, "max_body");
    if (!lua_isnil(L, -1)) {
        mb = lua_tointegerx(L, -1, &isint);
        if (lua_type(L, -1) != LUA_TNUMBER || !isint || mb < 1)
            luaL_argerror(L, 1, "'max_body' must be a positive integer");
        /* http_client_new clamps to LUACME_HTTP_MAX_BODY_CEIL. */
        o.max_body = (lua_Unsigned)mb > SIZE_MAX ? SIZE_MAX : (size_t)mb;
    }
    lua_pop(L, 1);

    lua_getfield(L, 1, "allow_http");
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TBOOLEAN)
        luaL_argerror(L, 1, "'allow_http' must be a boolean");
    o.allow_http = lua_toboolean(L, -1);
    lua_pop(L, 1);

    o.multi = shared_multi(L);
    if (o.multi == NULL)
        return luaL_error(L, "http: cannot set up libcurl's multi handle");
    /* The box exists before the client, so no raise can leak it. */
    h = lua_newuserdatauv(L, sizeof(*h), 0);
    h->c = NULL;
    luaL_setmetatable(L, HTTP_MT);
    if (http_client_new(&o, &h->c, &err) != 0)
        return lbind_err(L, &err);
    return 1;
}

/* Convert the headers table at idx into a userdata array (collected by
 * the GC, so a raise leaks nothing) left on the stack. Raises for a
 * non-string name or value, or one that could not be sent as is. */
static struct http_header *
check_headers(lua_State *L, int idx, size_t *count)
{
    struct http_header *hs;
    const char *name, *value;
    size_t n = 0, i = 0, vlen;

    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_argerror(L, 2, "header names must be strings");
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_argerror(L, 2, lua_pushfstring(L,
                "header '%s' must be a string", lua_tostring(L, -2)));
        name = lua_tostring(L, -2);
        value = lua_tolstring(L, -1, &vlen);
        if (!http_header_ok(name, value, vlen))
            luaL_argerror(L, 2, lua_pushfstring(L,
                "header '%s' has a bad name or value", name));
        lua_pop(L, 1);
        n++;
    }
    if (n > SIZE_MAX / sizeof(*hs) - 1)
        luaL_error(L, "too many headers");
    hs = lua_newuserdatauv(L, (n + 1) * sizeof(*hs), 0);
    /* The keys and values stay reachable from the headers table, which
     * the caller keeps on the stack and nothing modifies meanwhile. */
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        if (i < n) {
            hs[i].name = lua_tostring(L, -2);
            hs[i].value = lua_tostring(L, -1);
            i++;
        }
        lua_pop(L, 1);
    }
    *count = i;
    return hs;
}

/* Push the response headers as a table: a name seen once maps to a
 * string, a repeated one to a list of its values in order. */
static void
push_headers(lua_State *L, const struct http_response *r)
{
    size_t i;
    int t;

    lua_createtable(L, 0, r->nheaders > INT_MAX ? 0 : (int)r->nheaders);
    t = lua_gettop(L);
    for (i = 0; i < r->nheaders; i++) {
        lua_pushstring(L, r->headers[i].name);
        lua_pushvalue(L, -1);
        switch (lua_rawget(L, t)) {             /* name, old */
        case LUA_TNIL:
            lua_pop(L, 1);
            lua_pushstring(L, r->headers[i].value);
            lua_rawset(L, t);
            break;
        case LUA_TSTRING:
            lua_createtable(L, 2, 0);           /* name, old, list */
            lua_insert(L, -2);                  /* name, list, old */
            lua_rawseti(L, -2, 1);
            lua_pushstring(L, r->headers[i].value);
            lua_rawseti(L, -2, 2);
            lua_rawset(L, t);
            break;
        default:                                /* already a list */
            lua_pushstring(L, r->headers[i].value);
            lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
            lua_pop(L, 2);
            break;
        }
    }
}

static int
resp_gc(lua_State *L)
{
    http_response_free(luaL_checkudata(L, 1, RESP_MT));
    return 0;
}

/* Read the request table at index 2 into req; the strings stay on the
 * stack above it, so the pointers stay valid while it is not popped.
 * Raises for unknown fields, a url, method, header or body of the
 * wrong type, a method that is not 1..16 upper case letters, and a
 * header that could not be sent as given. */
static void
read_request(lua_State *L, struct http_request *req)
{
    size_t blen = 0;

    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    luaL_checkstack(L, 12, NULL);
    check_keys(L, 2, 2, request_fields);
    memset(req, 0, sizeof(*req));

    req->url = field_string(L, 2, 2, "url", 1);             /* 3 */
    req->method = field_string(L, 2, 2, "method", 0);       /* 4 */
    if (req->method != NULL && !http_method_ok(req->method))
        luaL_argerror(L, 2, lua_pushfstring(L, "bad method '%s'",
            req->method));
    lua_getfield(L, 2, "headers");                          /* 5 */
    if (!lua_isnil(L, 5)) {
        if (lua_type(L, 5) != LUA_TTABLE)
            luaL_argerror(L, 2, "'headers' must be a table");
        req->headers = check_headers(L, 5, &req->nheaders); /* 6 */
    }
    lua_getfield(L, 2, "body");
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_argerror(L, 2, "'body' must be a string");
        req->body = lua_tolstring(L, -1, &blen);            /* stays */
        req->body_len = blen;
        if (req->method != NULL && strcmp(req->method, "HEAD") == 0)
            luaL_argerror(L, 2, "a HEAD request has no body");
    }
    lua_getfield(L, 2, "once");
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TBOOLEAN)
        luaL_argerror(L, 2, "'once' must be a boolean");
    req->once = lua_toboolean(L, -1);
    lua_pop(L, 1);
}

/* Push status, headers, body of the response in the box on the top of
 * the stack, and free its memory now rather than at the next
 * collection. Returns 3. */
static int
push_response(lua_State *L, struct http_response *resp)
{
    lua_pushinteger(L, resp->status);
    push_headers(L, resp);
    lua_pushlstring(L, resp->body != NULL ? resp->body : "",
        resp->body_len);
    http_response_free(resp);
    return 3;
}

static struct http_response *
new_response(lua_State *L)
{
    struct http_response *resp = lua_newuserdatauv(L, sizeof(*resp), 0);

    memset(resp, 0, sizeof(*resp));
    luaL_setmetatable(L, RESP_MT);
    return resp;
}

/* client:request{method=, url=, headers={name=value}, body=} -> status,
 * headers, body for any HTTP response (4xx/5xx included), or nil,
 * message, kind ("timeout", "connect", "tls", "too_large", "protocol",
 * "interrupted"). once=true: the request is never sent twice (see
 * http.h). Waits for the answer (moving other transfers of the
 * pool along meanwhile). Raises for a closed client and a bad request
 * table (see read_request). */
static int
l_request(lua_State *L)
{
    struct http_client *c = client_get(L, 1);
    struct http_request req;
    struct http_response *resp;
    struct luacme_err err;

    read_request(L, &req);
    resp = new_response(L);
    if (http_request(c, &req, resp, &err) != 0)
        return lbind_err(L, &err);
    return push_response(L, resp);
}

/* client:start{...} (the table of client:request) -> a transfer that
 * runs while core.http_run is called, or nil, message, kind when it
 * was refused before any connection (a URL scheme not allowed, ...).
 * transfer:done() says when it finished; transfer:result() then gives
 * what client:request would have. Collecting or closing an unfinished
 * transfer cancels it. Raises as client:request. */
static int
l_start(lua_State *L)
{
    struct http_client *c = client_get(L, 1);
    struct http_request req;
    struct lxfer *lx;
    struct luacme_err err;

    read_request(L, &req);
    lx = lua_newuserdatauv(L, sizeof(*lx), 0);
    lx->xf = NULL;
    luaL_setmetatable(L, XFER_MT);
    if (http_start(c, &req, &lx->xf, &err) != 0)
        return lbind_err(L, &err);
    return 1;
}

static struct lxfer *
xfer_get(lua_State *L)
{
    struct lxfer *lx = luaL_checkudata(L, 1, XFER_MT);

    if (lx->xf == NULL)
        luaL_error(L, "attempt to use a collected http transfer");
    return lx;
}

/* transfer:done() -> true once finished (core.http_run marks it). */
static int
l_xfer_done(lua_State *L)
{
    lua_pushboolean(L, http_xfer_done(xfer_get(L)->xf));
    return 1;
}

/* transfer:result() -> status, headers, body or nil, message, kind, as
 * client:request; once, after done() said true (raises otherwise). The
 * transfer is freed: a second call raises. */
static int
l_xfer_result(lua_State *L)
{
    struct lxfer *lx = xfer_get(L);
    struct http_response *resp;
    struct luacme_err err;
    int rc;

    if (!http_xfer_done(lx->xf))
        return luaL_error(L, "http transfer not finished yet");
    resp = new_response(L);
    rc = http_finish(lx->xf, resp, &err);
    http_xfer_free(lx->xf);
    lx->xf = NULL;
    if (rc != 0)
        return lbind_err(L, &err);
    return push_response(L, resp);
}

/* __gc, __close and transfer:cancel(): stop it if running, free it.
 * Idempotent. */
static int
l_xfer_close(lua_State *L)
{
    struct lxfer *lx = luaL_checkudata(L, 1, XFER_MT);

    http_xfer_free(lx->xf);
    lx->xf = NULL;
    return 0;
}

/* core.http_run([seconds[, waits]]) -> n: moves every started transfer
 * along, waiting up to seconds (default 0: not at all; at most
 * LUACME_HTTP_RUN_MAX_MS) for network activity while any runs; n is
 * how many finished. waits, a list of processes (core.spawn_start) and
 * DNS queries (core.dns_start), adds their descriptors to the wait
 * (also when no transfer runs) and shortens it to what each allows (a
 * program's timeout, its exit check), so one wait serves a loop of
 * transfers, programs and queries; step them after with :done().
 * nil, message, kind when libcurl fails. */
static int
l_http_run(lua_State *L)
{
    lua_Number s = luaL_optnumber(L, 1, 0);
    struct http_multi *m = NULL;
    struct pollfd *pfd = NULL;
    struct luacme_err err;
    lua_Integer i, nprocs = 0;
    unsigned nfd = 0;
    int ms, n;

    luaL_argcheck(L, s >= 0, 1, "must be >= 0");
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        nprocs = (lua_Integer)lua_rawlen(L, 2);
        luaL_argcheck(L, nprocs <= 65536, 2, "at most 65536 waits");
    }
    lua_settop(L, 2);
    ms = s * 1000 > LUACME_HTTP_RUN_MAX_MS ? LUACME_HTTP_RUN_MAX_MS :
        (int)(s * 1000);
    /* Not NULL whenever programs run, even with no pipe open: the wait
     * must then last until one may have exited, not return at once. */
    if (nprocs > 0)
        pfd = lua_newuserdatauv(L, (size_t)nprocs * 3 * sizeof(*pfd), 0);
    for (i = 1; i <= nprocs; i++) {
        lua_rawgeti(L, 2, i);
        n = lbind_proc_wait_fds(L, -1, pfd + nfd, &ms);
        if (n < 0)
            n = lbind_dns_wait_fds(L, -1, pfd + nfd, &ms);
        if (n < 0)
            luaL_argerror(L, 2, lua_pushfstring(L, "element %d is no "
                "process (core.spawn_start) nor DNS query "
                "(core.dns_start)", (int)i));
        nfd += (unsigned)n;
        lua_pop(L, 1);
    }
    if (lua_getfield(L, LUA_REGISTRYINDEX, POOL_KEY) == LUA_TUSERDATA)
        m = ((struct lmulti *)lua_touserdata(L, -1))->m;
    else if (nprocs == 0) {
        lua_pushinteger(L, 0);          /* no client yet: nothing runs */
        return 1;
    }
    n = http_multi_wait(m, ms, pfd, nfd, &err);
    if (n < 0)
        return lbind_err(L, &err);
    lua_pushinteger(L, n);
    return 1;
}

/* client:stats() -> {requests=N, connects=N, http_version=V}; connects
 * counts the new connections opened, so reuse shows as requests >
 * connects; http_version is the HTTP version of the last response ("1.0",
 * "1.1", "2" or "3"), absent before the first one. */
static int
l_stats(lua_State *L)
{
    struct http_stats st;

    http_client_stats(client_get(L, 1), &st);
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, st.requests);
    lua_setfield(L, -2, "requests");
    lua_pushinteger(L, st.connects);
    lua_setfield(L, -2, "connects");
    if (st.http_version != NULL) {
        lua_pushstring(L, st.http_version);
        lua_setfield(L, -2, "http_version");
    }
    return 1;
}

/* __gc, __close and client:close(): frees the handle and its cached
 * connections. Idempotent. */
static int
l_close(lua_State *L)
{
    struct lhttp *h = luaL_checkudata(L, 1, HTTP_MT);

    http_client_free(h->c);
    h->c = NULL;
    return 0;
}

static int
l_tostring(lua_State *L)
{
    struct lhttp *h = luaL_checkudata(L, 1, HTTP_MT);

    if (h->c == NULL)
        lua_pushliteral(L, HTTP_MT " (closed)");
    else
        lua_pushfstring(L, HTTP_MT " (%p)", (void *)h->c);
    return 1;
}

void
lbind_http(lua_State *L)
{
    static const luaL_Reg meta[] = {
        {"__gc", l_close},
        {"__close", l_close},
        {"__tostring", l_tostring},
        {NULL, NULL}
    };
    static const luaL_Reg xmeta[] = {
        {"__gc", l_xfer_close},
        {"__close", l_xfer_close},
        {NULL, NULL}
    };
    static const luaL_Reg xmethods[] = {
        {"done", l_xfer_done},
        {"result", l_xfer_result},
        {"cancel", l_xfer_close},
        {NULL, NULL}
    };
    static const luaL_Reg methods[] = {
        {"request", l_request},
        {"start", l_start},
        {"stats", l_stats},
        {"close", l_close},
        {NULL, NULL}
    };
    static const luaL_Reg funcs[] = {
        {"http", l_http},
        {"http_run", l_http_run},
        {NULL, NULL}
    };

    luaL_newmetatable(L, HTTP_MT);
    luaL_setfuncs(L, meta, 0);
    luaL_newlibtable(L, methods);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);

    luaL_newmetatable(L, XFER_MT);
    luaL_setfuncs(L, xmeta, 0);
    luaL_newlibtable(L, xmethods);
    luaL_setfuncs(L, xmethods, 0);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);

    luaL_newmetatable(L, MULTI_MT);
    lua_pushcfunction(L, multi_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);

    luaL_newmetatable(L, RESP_MT);
    lua_pushcfunction(L, resp_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);

    luaL_setfuncs(L, funcs, 0);
}
