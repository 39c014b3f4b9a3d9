/*
 * core.dns_query, core.dns_start (the same query on a thread, for the
 * luacme.sched loop) and core.dns_parse: dns.c's results as Lua tables. The
 * C result sits in a userdata box with __gc while it is converted, so a
 * raise (memory) cannot leak it.
 */
#include "lua_bind.h"

#include <poll.h>
#include <string.h>

#include "dns.h"
#include "luacme_limits.h"

#define RESULT_MT "luacme.dns.result"       /* internal: owns a result */
#define JOB_MT "luacme.dns.query"           /* a query started */

struct lresult {
    struct dns_result *r;
};

struct ljob {
    struct dns_job *j;                      /* NULL once collected */
};

static const char *const query_opts[] = {
    "server", "timeout", "recurse", "tcp", NULL
};

/* The types core.dns_query asks for. */
static const char *const qtypes[] = {
    "A", "AAAA", "NS", "CNAME", "SOA", "TXT", "PTR", "MX", "CAA", NULL
};

static int
known_opt(const char *k)
{
    int i;

    for (i = 0; query_opts[i] != NULL; i++)
        if (strcmp(k, query_opts[i]) == 0)
            return 1;
    return 0;
}

static int
result_gc(lua_State *L)
{
    struct lresult *b = luaL_checkudata(L, 1, RESULT_MT);

    dns_result_free(b->r);
    b->r = NULL;
    return 0;
}

/* A new empty box on the stack. */
static struct lresult *
new_box(lua_State *L)
{
    struct lresult *b = lua_newuserdatauv(L, sizeof(*b), 0);

    b->r = NULL;
    luaL_setmetatable(L, RESULT_MT);
    return b;
}

static void
set_int(lua_State *L, const char *k, lua_Integer v)
{
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}

/* Push one record: {name=, type=, ttl=, data=}; SOA data is a table. */
static void
push_rr(lua_State *L, const struct dns_rr *rr)
{
    char tbuf[16];

    lua_createtable(L, 0, 4);
    lua_pushstring(L, rr->name);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, dns_type_name(rr->type, tbuf, sizeof(tbuf)));
    lua_setfield(L, -2, "type");
    set_int(L, "ttl", rr->ttl);
    if (rr->rname != NULL) {
        lua_createtable(L, 0, 7);
        lua_pushstring(L, rr->data);
        lua_setfield(L, -2, "mname");
        lua_pushstring(L, rr->rname);
        lua_setfield(L, -2, "rname");
        set_int(L, "serial", rr->serial);
        set_int(L, "refresh", rr->refresh);
        set_int(L, "retry", rr->retry);
        set_int(L, "expire", rr->expire);
        set_int(L, "minimum", rr->minimum);
    } else {
        lua_pushlstring(L, rr->data, rr->len);
    }
    lua_setfield(L, -2, "data");
}

static void
push_list(lua_State *L, const struct dns_rr *rr, size_t n)
{
    size_t i;

    lua_createtable(L, n > 1024 ? 1024 : (int)n, 0);
    for (i = 0; i < n; i++) {
        push_rr(L, &rr[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
}

/* Replace the box on top with the result table: the answer records as
 * the list part, plus rcode, aa, tc, ra, rd, authority, additional. */
static int
push_result(lua_State *L)
{
    struct lresult *b = luaL_checkudata(L, -1, RESULT_MT);
    const struct dns_result *r = b->r;
    char rbuf[16];
    size_t i;

    luaL_checkstack(L, 8, NULL);
    lua_createtable(L, r->n[DNS_ANSWER] > 1024 ? 1024 :
        (int)r->n[DNS_ANSWER], 7);
    for (i = 0; i < r->n[DNS_ANSWER]; i++) {
        push_rr(L, &r->rr[DNS_ANSWER][i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_pushstring(L, dns_rcode_name(r->rcode, rbuf, sizeof(rbuf)));
    lua_setfield(L, -2, "rcode");
    lua_pushboolean(L, r->aa);
    lua_setfield(L, -2, "aa");
    lua_pushboolean(L, r->tc);
    lua_setfield(L, -2, "tc");
    lua_pushboolean(L, r->ra);
    lua_setfield(L, -2, "ra");
    lua_pushboolean(L, r->rd);
    lua_setfield(L, -2, "rd");
    push_list(L, r->rr[DNS_AUTHORITY], r->n[DNS_AUTHORITY]);
    lua_setfield(L, -2, "authority");
    push_list(L, r->rr[DNS_ADDITIONAL], r->n[DNS_ADDITIONAL]);
    lua_setfield(L, -2, "additional");
    /* The box's __gc frees the C result once it is unreachable. */
    return 1;
}

/* opts[k] as a boolean, def when nil; raises for another type. */
static int
opt_bool(lua_State *L, const char *k, int def)
{
    int v = def;

    lua_getfield(L, 3, k);
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TBOOLEAN)
            luaL_argerror(L, 3, lua_pushfstring(L, "'%s' must be a "
                "boolean", k));
        v = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

/* The arguments of core.dns_query (1 name, 2 type, 3 options) into
 * *name, *qtype and o; strings stay on the stack. Returns NULL, or the
 * message of an "invalid" failure (a NUL in name or server). Raises for
 * wrong types and unknown options. */
static const char *
read_query(lua_State *L, const char **name, unsigned *qtype,
    struct dns_query_opts *o)
{
    size_t len, slen;
    lua_Integer t;
    int isint;

    *name = luaL_checklstring(L, 1, &len);
    *qtype = dns_type_code(qtypes[luaL_checkoption(L, 2, NULL, qtypes)]);
    memset(o, 0, sizeof(*o));
    o->recurse = 1;
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        lua_pushnil(L);
        while (lua_next(L, 3) != 0) {
            lua_pop(L, 1);
            if (lua_type(L, -1) != LUA_TSTRING)
                luaL_argerror(L, 3, "option names must be strings");
            if (!known_opt(lua_tostring(L, -1)))
                luaL_argerror(L, 3, lua_pushfstring(L, "unknown option "
                    "'%s'", lua_tostring(L, -1)));
        }
        lua_getfield(L, 3, "server");
        if (!lua_isnil(L, -1)) {
            if (lua_type(L, -1) != LUA_TSTRING)
                luaL_argerror(L, 3, "'server' must be a string");
            o->server = lua_tolstring(L, -1, &slen);  /* stays */
            /* C would read only the part before a NUL. */
            if (strlen(o->server) != slen)
                return "dns: server must be IP, IP:PORT or "
                    "[IPv6]:PORT (it contains a NUL)";
        }
        lua_getfield(L, 3, "timeout");
        if (!lua_isnil(L, -1)) {
            t = lua_tointegerx(L, -1, &isint);
            if (!isint || t < 1 || t > LUACME_DNS_TIMEOUT_MAX_S)
                luaL_argerror(L, 3, lua_pushfstring(L, "'timeout' must be "
                    "whole seconds, 1..%d", LUACME_DNS_TIMEOUT_MAX_S));
            o->timeout_s = (int)t;
        }
        lua_pop(L, 1);
        o->recurse = opt_bool(L, "recurse", 1);
        o->tcp = opt_bool(L, "tcp", 0);
    }
    if (strlen(*name) != len)
        return "dns: name contains a NUL";
    return NULL;
}

/* core.dns_query(name, type, {server=, timeout=, recurse=, tcp=}) ->
 * result, or nil, message, kind.
 *   name     the name asked for (trailing dot optional)
 *   type     "A", "AAAA", "NS", "CNAME", "SOA", "TXT", "PTR", "MX", "CAA"
 *   server   "IP", "IP:PORT" or "[IPv6]:PORT" (default: resolv.conf's)
 *   timeout  whole seconds, 1..LUACME_DNS_TIMEOUT_MAX_S (default
 *            LUACME_DNS_TIMEOUT_S)
 *   recurse  set RD (default true); tcp: TCP only (default false)
 * The result: the answer section's records as a list, each {name=,
 * type=, ttl=, data=} (see dns.h for data; SOA data is {mname=, rname=,
 * serial=, refresh=, retry=, expire=, minimum=}), plus rcode
 * ("NOERROR" or "NXDOMAIN"), aa, tc, ra, rd (booleans), authority and
 * additional (lists of records). Kinds: "invalid", "timeout",
 * "connect", "servfail", "refused", "rcode", "parse", "too_large",
 * "network", "interrupted". Wrong argument types and unknown options
 * raise. */
static int
l_dns_query(lua_State *L)
{
    struct dns_query_opts o;
    struct luacme_err err;
    struct lresult *b;
    const char *name, *bad;
    unsigned qtype;

    bad = read_query(L, &name, &qtype, &o);
    if (bad != NULL)
        return lbind_fail(L, bad, "invalid");
    b = new_box(L);
    if (dns_query(name, qtype, &o, &b->r, &err) != 0)
        return lbind_err(L, &err);
    return push_result(L);
}

/* core.dns_start(name, type, opts) (the arguments of core.dns_query)
 * -> query, or nil, message, kind. The query runs on a thread while
 * the caller goes on: query:done() says whether it is done (without
 * blocking); query:result() then gives what core.dns_query would have;
 * query:close() (also __gc and __close) drops it (one still running
 * ends by its own timeout). core.http_run(seconds, {query, ...}) wakes
 * when it is done. */
static int
l_dns_start(lua_State *L)
{
    struct dns_query_opts o;
    struct luacme_err err;
    struct ljob *lj;
    const char *name, *bad;
    unsigned qtype;

    bad = read_query(L, &name, &qtype, &o);
    if (bad != NULL)
        return lbind_fail(L, bad, "invalid");
    lj = lua_newuserdatauv(L, sizeof(*lj), 0);
    lj->j = NULL;
    luaL_setmetatable(L, JOB_MT);
    if (dns_job_start(name, qtype, &o, &lj->j, &err) != 0)
        return lbind_err(L, &err);
    return 1;
}

static struct ljob *
job_get(lua_State *L)
{
    struct ljob *lj = luaL_checkudata(L, 1, JOB_MT);

    if (lj->j == NULL)
        luaL_error(L, "attempt to use a collected or closed DNS query");
    return lj;
}

/* query:done() -> true once the answer (or the failure) is in. */
static int
l_job_done(lua_State *L)
{
    lua_pushboolean(L, dns_job_done(job_get(L)->j));
    return 1;
}

/* query:result() -> as core.dns_query; once, after done() said true
 * (raises before). The query is collected: a second call raises. */
static int
l_job_result(lua_State *L)
{
    struct ljob *lj = job_get(L);
    struct luacme_err err;
    struct lresult *b;
    int rc;

    if (!dns_job_done(lj->j))
        return luaL_error(L, "DNS query still running");
    b = new_box(L);
    rc = dns_job_finish(lj->j, &b->r, &err);
    dns_job_free(lj->j);
    lj->j = NULL;
    if (rc != 0)
        return lbind_err(L, &err);
    return push_result(L);
}

static int
l_job_close(lua_State *L)
{
    struct ljob *lj = luaL_checkudata(L, 1, JOB_MT);

    dns_job_free(lj->j);
    lj->j = NULL;
    return 0;
}

int
lbind_dns_wait_fds(lua_State *L, int idx, struct pollfd *pfd, int *wait_ms)
{
    struct ljob *lj = luaL_testudata(L, idx, JOB_MT);

    if (lj == NULL)
        return -1;
    if (lj->j == NULL)
        return 0;
    if (dns_job_done(lj->j)) {
        *wait_ms = 0;
        return 0;
    }
    pfd->fd = dns_job_fd(lj->j);
    pfd->events = POLLIN;
    pfd->revents = 0;
    return 1;
}

/* core.dns_parse(packet) -> result (as core.dns_query gives, whatever
 * the rcode), or nil, message, kind ("parse", "too_large"). For tests and
 * for answers obtained elsewhere. */
static int
l_dns_parse(lua_State *L)
{
    struct luacme_err err;
    struct lresult *b;
    const char *buf;
    size_t len;

    buf = luaL_checklstring(L, 1, &len);
    b = new_box(L);
    if (dns_parse((const unsigned char *)buf, len, &b->r, &err) != 0)
        return lbind_err(L, &err);
    return push_result(L);
}

void
lbind_dns(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"dns_query", l_dns_query},
        {"dns_start", l_dns_start},
        {"dns_parse", l_dns_parse},
        {NULL, NULL}
    };

    static const luaL_Reg jmeta[] = {
        {"__gc", l_job_close},
        {"__close", l_job_close},
        {NULL, NULL}
    };
    static const luaL_Reg jmethods[] = {
        {"done", l_job_done},
        {"result", l_job_result},
        {"close", l_job_close},
        {NULL, NULL}
    };

    luaL_newmetatable(L, JOB_MT);
    luaL_setfuncs(L, jmeta, 0);
    luaL_newlibtable(L, jmethods);
    luaL_setfuncs(L, jmethods, 0);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);

    if (luaL_newmetatable(L, RESULT_MT)) {
        lua_pushcfunction(L, result_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    luaL_setfuncs(L, funcs, 0);
}
