/*
 * Processes of luacme.core (see proc.h): core.spawn, core.spawn_start
 * (a program that runs while the caller goes on; core.http_run waits on
 * its pipes) and our own process facts (environment, PID, UID), as thin
 * bindings. Expected failures return nil, message, kind; wrong
 * arguments raise. The result of a run is held in a box userdata whose
 * __gc frees it, so a memory error while pushing it cannot leak.
 */
#include "lua_bind.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "luacme_limits.h"
#include "proc.h"

extern char **environ;

#define BOX_MT "luacme.procbox"
#define PROC_MT "luacme.proc"           /* a program started */

/* A program started by core.spawn_start. */
struct lproc {
    struct spawn_proc *p;               /* NULL once collected or closed */
    int state;                          /* 0 runs, 1 exited, -1 failed */
    struct luacme_err err;              /* state -1: why */
};

/* Owner of a run's output until it is pushed to Lua. */
struct procbox {
    struct spawn_result res;
};

static int
box_gc(lua_State *L)
{
    struct procbox *b = luaL_checkudata(L, 1, BOX_MT);

    spawn_result_free(&b->res);
    return 0;
}

/* A new empty box on top of the stack; may raise (memory). */
static struct procbox *
newbox(lua_State *L)
{
    struct procbox *b = lua_newuserdatauv(L, sizeof(*b), 0);

    memset(b, 0, sizeof(*b));
    luaL_setmetatable(L, BOX_MT);
    return b;
}

/* The string at the top of the stack (a string or a number), anchored in
 * the table at anchor so it lives through the call; pops it. Raises for
 * other types or an embedded NUL (C would cut it short). */
static const char *
take_string(lua_State *L, int anchor, const char *what)
{
    size_t len;
    const char *s;

    if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
        luaL_error(L, "spawn: %s must be a string", what);
    s = lua_tolstring(L, -1, &len);
    if (strlen(s) != len)
        luaL_error(L, "spawn: %s contains a NUL byte", what);
    lua_rawseti(L, anchor, (lua_Integer)lua_rawlen(L, anchor) + 1);
    return s;
}

/*
 * l_spawn's argument readers work on its stack: 1 the option table,
 * 2 the anchor table holding every string handed to C. Each pushes the
 * values it reads, which stay until spawn_run has returned.
 */

/* argv: pushes the table (3) and a NULL-terminated array of its strings
 * in a userdata (4), which it returns. */
static const char **
check_argv(lua_State *L)
{
    const char **argv;
    size_t nargs, i;

    lua_getfield(L, 1, "argv");                 /* 3 */
    if (!lua_istable(L, 3))
        luaL_error(L, "spawn: argv must be a table");
    nargs = lua_rawlen(L, 3);
    if (nargs < 1 || nargs > 65536)
        luaL_error(L, "spawn: argv must have 1..65536 elements");
    argv = lua_newuserdatauv(L, (nargs + 1) * sizeof(*argv), 0);  /* 4 */
    for (i = 0; i < nargs; i++) {
        lua_rawgeti(L, 3, (lua_Integer)i + 1);
        argv[i] = take_string(L, 2, "argv element");
    }
    argv[nargs] = NULL;
    return argv;
}

/* The "NAME=value" string for the pair lua_next left on the stack (name
 * at -2, value at -1), anchored; pops the value, keeps the name. */
static const char *
take_env_entry(lua_State *L)
{
    const char *name, *value;
    size_t len;

    if (lua_type(L, -2) != LUA_TSTRING)
        luaL_error(L, "spawn: env names must be strings");
    name = lua_tolstring(L, -2, &len);
    if (len == 0 || strlen(name) != len || strchr(name, '=') != NULL)
        luaL_error(L, "spawn: bad env name '%s'", name);
    if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
        luaL_error(L, "spawn: env value of %s must be a string", name);
    /* lua_next pushed a copy: converting a number is safe. */
    value = lua_tolstring(L, -1, &len);
    if (strlen(value) != len)
        luaL_error(L, "spawn: env value of %s contains a NUL byte", name);
    lua_pushfstring(L, "%s=%s", name, value);
    lua_remove(L, -2);                          /* the value */
    return take_string(L, 2, "env value");
}

/* env: pushes its value (5), then a NULL-terminated "NAME=value" array
 * in a userdata (6), which it returns, or nil and returns NULL when env
 * is nil (the child inherits ours). */
static const char **
check_env(lua_State *L)
{
    const char **envp;
    size_t nenv = 0, i = 0;

    lua_getfield(L, 1, "env");                  /* 5 */
    if (lua_isnil(L, 5)) {
        lua_pushnil(L);                         /* 6: no envp */
        return NULL;
    }
    if (!lua_istable(L, 5))
        luaL_error(L, "spawn: env must be a table or nil");
    lua_pushnil(L);
    while (lua_next(L, 5) != 0) {
        lua_pop(L, 1);
        nenv++;
    }
    envp = lua_newuserdatauv(L, (nenv + 1) * sizeof(*envp), 0);   /* 6 */
    lua_pushnil(L);
    while (lua_next(L, 5) != 0)
        envp[i++] = take_env_entry(L);
    envp[i] = NULL;
    return envp;
}

/* stdin, cwd, timeout and max_output into o. Leaves the stdin and cwd
 * values on the stack (7, 8): o points into them. */
static void
check_io(lua_State *L, struct spawn_opts *o)
{
    lua_Integer max = LUACME_SPAWN_MAX_OUTPUT;
    size_t len;

    lua_getfield(L, 1, "stdin");
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "spawn: stdin must be a string or nil");
        o->stdin_data = lua_tolstring(L, -1, &o->stdin_len);
    }
    lua_getfield(L, 1, "cwd");
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "spawn: cwd must be a string or nil");
        o->cwd = lua_tolstring(L, -1, &len);
        if (strlen(o->cwd) != len)
            luaL_error(L, "spawn: cwd contains a NUL byte");
    }
    lua_getfield(L, 1, "timeout");
    o->timeout = lbind_opt_timeout(L, -1, "spawn");
    lua_getfield(L, 1, "max_output");
    if (!lua_isnil(L, -1)) {
        if (!lua_isinteger(L, -1))
            luaL_error(L, "spawn: max_output must be an integer");
        max = lua_tointeger(L, -1);
        if (max < 0 || max > LUACME_SPAWN_MAX_OUTPUT_CEIL)
            luaL_error(L, "spawn: max_output must be 0..%d",
                LUACME_SPAWN_MAX_OUTPUT_CEIL);
    }
    o->max_output = (size_t)max;
    lua_pop(L, 2);                              /* stdin, cwd stay */
}

/* The table core.spawn returns for a run that ended. */
static void
push_result(lua_State *L, const struct spawn_result *r)
{
    lua_createtable(L, 0, 6);
    if (r->exited) {
        lua_pushinteger(L, r->status);
        lua_setfield(L, -2, "status");
    }
    if (r->signaled) {
        lua_pushinteger(L, r->signal);
        lua_setfield(L, -2, "signal");
    }
    lua_pushlstring(L, r->out ? r->out : "", r->out_len);
    lua_setfield(L, -2, "stdout");
    lua_pushlstring(L, r->err_out ? r->err_out : "", r->err_len);
    lua_setfield(L, -2, "stderr");
    lua_pushboolean(L, r->timed_out);
    lua_setfield(L, -2, "timed_out");
    lua_pushboolean(L, r->truncated);
    lua_setfield(L, -2, "truncated");
}

/* The option table at 1 as core.spawn reads it into o; the strings o
 * points to stay on the stack above it. Raises for a mistake. */
static void
check_spawn_opts(lua_State *L, const char *fname, struct spawn_opts *o)
{
    static const char *const opts[] = {"argv", "env", "stdin", "cwd",
        "timeout", "max_output", NULL};

    luaL_checktype(L, 1, LUA_TTABLE);
    lbind_check_options(L, 1, fname, opts);
    lua_settop(L, 1);
    lua_newtable(L);                            /* 2: anchor */
    memset(o, 0, sizeof(*o));
    o->argv = check_argv(L);                    /* 3, 4 */
    o->envp = check_env(L);                     /* 5, 6 */
    check_io(L, o);                             /* 7, 8 */
}

/* core.spawn{argv={prog, ...}, env=, stdin=, cwd=, timeout=, max_output=}
 * -> {status=, signal=, stdout=, stderr=, timed_out=, truncated=}
 * | nil, msg, kind ("not_found" when the program cannot be found,
 * "permission", "interrupted", "io"). No shell: see spawn_run. */
static int
l_spawn(lua_State *L)
{
    struct spawn_opts o;
    struct luacme_err err;
    struct procbox *b;

    check_spawn_opts(L, "spawn", &o);
    b = newbox(L);
    if (spawn_run(&o, &b->res, &err) != 0)
        return lbind_err(L, &err);
    push_result(L, &b->res);
    spawn_result_free(&b->res);
    return 1;
}

/* core.spawn_start{...} (the options of core.spawn) -> proc, or nil,
 * message, kind when it could not be started (as core.spawn fails
 * before the program runs). The program runs while the caller goes on:
 * proc:done() moves its data without blocking and says whether it has
 * exited; proc:result() then gives what core.spawn would have;
 * proc:close() (also __gc and __close) stops one still running
 * (SIGTERM, then SIGKILL after the grace second) and reaps it.
 * core.http_run(seconds, {proc, ...}) waits on the pipes of procs too.
 * Starting blocks only until the exec happened or failed. */
static int
l_spawn_start(lua_State *L)
{
    struct spawn_opts o;
    struct lproc *lp;

    check_spawn_opts(L, "spawn_start", &o);
    lp = lua_newuserdatauv(L, sizeof(*lp), 0);
    memset(lp, 0, sizeof(*lp));
    luaL_setmetatable(L, PROC_MT);
    if (spawn_start(&o, &lp->p, &lp->err) != 0)
        return lbind_err(L, &lp->err);
    return 1;
}

static struct lproc *
proc_get(lua_State *L, int idx)
{
    struct lproc *lp = luaL_checkudata(L, idx, PROC_MT);

    if (lp->p == NULL)
        luaL_error(L, "attempt to use a collected or closed process");
    return lp;
}

/* proc:done() -> true once the program has exited (or its run failed);
 * steps it first, without blocking. */
static int
l_proc_done(lua_State *L)
{
    struct lproc *lp = proc_get(L, 1);
    int r;

    if (lp->state == 0) {
        r = spawn_step(lp->p, &lp->err);
        lp->state = r > 0 ? 1 : r;
    }
    lua_pushboolean(L, lp->state != 0);
    return 1;
}

/* proc:result() -> as core.spawn; once, after done() said true (raises
 * before). The process is collected: a second call raises. */
static int
l_proc_result(lua_State *L)
{
    struct lproc *lp = proc_get(L, 1);
    struct procbox *b;
    int rc;

    if (lp->state == 0)
        return luaL_error(L, "process still running");
    b = newbox(L);
    rc = lp->state < 0 ? -1 : spawn_finish(lp->p, &b->res, &lp->err);
    spawn_free(lp->p);
    lp->p = NULL;
    if (rc != 0)
        return lbind_err(L, &lp->err);
    push_result(L, &b->res);
    spawn_result_free(&b->res);
    return 1;
}

/* __gc, __close and proc:close(): see l_spawn_start. Idempotent. */
static int
l_proc_close(lua_State *L)
{
    struct lproc *lp = luaL_checkudata(L, 1, PROC_MT);

    spawn_stop(lp->p);
    spawn_free(lp->p);
    lp->p = NULL;
    return 0;
}

int
lbind_proc_wait_fds(lua_State *L, int idx, struct pollfd *pfd, int *wait_ms)
{
    struct lproc *lp = luaL_testudata(L, idx, PROC_MT);
    int ms, n;

    if (lp == NULL)
        return -1;
    if (lp->p == NULL)
        return 0;
    if (lp->state != 0) {
        *wait_ms = 0;
        return 0;
    }
    n = spawn_wait_fds(lp->p, pfd, &ms);
    if (ms < *wait_ms)
        *wait_ms = ms;
    return n;
}

/* core.environ() -> table name -> value of our environment. */
static int
l_environ(lua_State *L)
{
    char **e;
    const char *eq;

    lua_newtable(L);
    for (e = environ; e != NULL && *e != NULL; e++) {
        eq = strchr(*e, '=');
        if (eq == NULL)
            continue;
        lua_pushlstring(L, *e, (size_t)(eq - *e));
        lua_pushstring(L, eq + 1);
        lua_rawset(L, -3);
    }
    return 1;
}

/* core.getpid(), core.getuid() -> integer. */
static int
l_getpid(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)getpid());
    return 1;
}

static int
l_getuid(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)getuid());
    return 1;
}

void
lbind_proc(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"spawn", l_spawn},
        {"spawn_start", l_spawn_start},
        {"environ", l_environ},
        {"getpid", l_getpid},
        {"getuid", l_getuid},
        {NULL, NULL}
    };

    static const luaL_Reg pmeta[] = {
        {"__gc", l_proc_close},
        {"__close", l_proc_close},
        {NULL, NULL}
    };
    static const luaL_Reg pmethods[] = {
        {"done", l_proc_done},
        {"result", l_proc_result},
        {"close", l_proc_close},
        {NULL, NULL}
    };

    luaL_newmetatable(L, PROC_MT);
    luaL_setfuncs(L, pmeta, 0);
    luaL_newlibtable(L, pmethods);
    luaL_setfuncs(L, pmethods, 0);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);

    luaL_newmetatable(L, BOX_MT);
    lua_pushcfunction(L, box_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);

    luaL_setfuncs(L, funcs, 0);
}
