/*
 * Files, directories and locks of luacme.core (see fs.h), plus umask,
 * isatty and hostname: thin bindings.
 * Expected failures return nil, message, kind; wrong arguments raise.
 * Buffers the C layer hands back are held in a box userdata whose __gc
 * frees them, so a memory error while pushing them cannot leak.
 */
#include "lua_bind.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs.h"
#include "luacme_limits.h"

#define LOCK_MT "luacme.lock"
#define BOX_MT "luacme.fsbox"

/* Owner of whatever a C call returned until it is pushed to Lua. */
struct fsbox {
    char *data;
    char **names;
    size_t count;
};

struct llock {
    int fd;             /* -1 once unlocked */
};

static int
box_gc(lua_State *L)
{
    struct fsbox *b = luaL_checkudata(L, 1, BOX_MT);

    free(b->data);
    b->data = NULL;
    fs_free_names(b->names, b->count);
    b->names = NULL;
    b->count = 0;
    return 0;
}

/* A new empty box on top of the stack; may raise (memory). */
static struct fsbox *
newbox(lua_State *L)
{
    struct fsbox *b = lua_newuserdatauv(L, sizeof(*b), 0);

    memset(b, 0, sizeof(*b));
    luaL_setmetatable(L, BOX_MT);
    return b;
}

/* A path argument: a string without NUL bytes. C would stop at the
 * first NUL and act on another file than the one named ("a\0b" is
 * "a"), so such a path raises like any wrong argument. */
static const char *
check_path(lua_State *L, int idx)
{
    size_t len;
    const char *path = luaL_checklstring(L, idx, &len);

    if (strlen(path) != len)
        luaL_argerror(L, idx, "path contains a NUL byte");
    return path;
}

/* A permission-bits argument: an integer 0..07777, or def when absent. */
static unsigned
opt_mode(lua_State *L, int idx, unsigned def)
{
    lua_Integer m = luaL_optinteger(L, idx, (lua_Integer)def);

    luaL_argcheck(L, m >= 0 && m <= 07777, idx, "mode must be 0..07777");
    return (unsigned)m;
}

/* core.write_file(path, data[, mode=0644]) -> true | nil, msg, kind.
 * Atomic replace, see fs_write_file. */
static int
l_write_file(lua_State *L)
{
    const char *path = check_path(L, 1);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    unsigned mode = opt_mode(L, 3, 0644);
    struct luacme_err err;

    if (fs_write_file(path, data, len, mode, &err) != 0)
        return lbind_err(L, &err);
    lua_pushboolean(L, 1);
    return 1;
}

/* core.read_file(path[, max=LUACME_FILE_MAX]) -> string | nil, msg, kind
 * ("too_large" over max). */
static int
l_read_file(lua_State *L)
{
    const char *path = check_path(L, 1);
    lua_Integer max = luaL_optinteger(L, 2, LUACME_FILE_MAX);
    struct luacme_err err;
    struct fsbox *b;
    size_t len;

    luaL_argcheck(L, max >= 0 && max <= LUACME_FILE_MAX_CEIL, 2,
        "must be 0..LUACME_FILE_MAX_CEIL");
    b = newbox(L);
    if (fs_read_file(path, (size_t)max, &b->data, &len, &err) != 0)
        return lbind_err(L, &err);
    lua_pushlstring(L, b->data, len);
    free(b->data);
    b->data = NULL;
    return 1;
}

/* core.mkdir(path[, mode=0700]) -> true | nil, msg, kind ("exists"). */
static int
l_mkdir(lua_State *L)
{
    const char *path = check_path(L, 1);
    unsigned mode = opt_mode(L, 2, 0700);
    struct luacme_err err;

    if (fs_mkdir(path, mode, &err) != 0)
        return lbind_err(L, &err);
    lua_pushboolean(L, 1);
    return 1;
}

/* core.mkdir_p(path[, mode=0700]) -> true | nil, msg, kind. */
static int
l_mkdir_p(lua_State *L)
{
    const char *path = check_path(L, 1);
    unsigned mode = opt_mode(L, 2, 0700);
    struct luacme_err err;

    if (fs_mkdir_p(path, mode, &err) != 0)
        return lbind_err(L, &err);
    lua_pushboolean(L, 1);
    return 1;
}

static int
push_stat(lua_State *L, int follow)
{
    const char *path = check_path(L, 1);
    struct fs_stat st;
    struct luacme_err err;

    if (fs_stat(path, follow, &st, &err) != 0)
        return lbind_err(L, &err);
    lua_createtable(L, 0, 6);
    lua_pushstring(L, st.type);
    lua_setfield(L, -2, "type");
    lua_pushinteger(L, (lua_Integer)st.mode);
    lua_setfield(L, -2, "mode");
    lua_pushinteger(L, (lua_Integer)st.size);
    lua_setfield(L, -2, "size");
    lua_pushinteger(L, (lua_Integer)st.mtime);
    lua_setfield(L, -2, "mtime");
    lua_pushinteger(L, (lua_Integer)st.uid);
    lua_setfield(L, -2, "uid");
    lua_pushinteger(L, (lua_Integer)st.gid);
    lua_setfield(L, -2, "gid");
    return 1;
}

/* core.stat(path) / core.lstat(path) -> {type=, mode=, size=, mtime=,
 * uid=, gid=} | nil, msg, kind. */
static int
l_stat(lua_State *L)
{
    return push_stat(L, 1);
}

static int
l_lstat(lua_State *L)
{
    return push_stat(L, 0);
}

/* core.listdir(path) -> sorted list of names | nil, msg, kind. */
static int
l_listdir(lua_State *L)
{
    const char *path = check_path(L, 1);
    struct luacme_err err;
    struct fsbox *b = newbox(L);
    size_t i;

    if (fs_listdir(path, &b->names, &b->count, &err) != 0)
        return lbind_err(L, &err);
    lua_createtable(L, b->count > 0x7fffffff ? 0 : (int)b->count, 0);
    for (i = 0; i < b->count; i++) {
        lua_pushstring(L, b->names[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    fs_free_names(b->names, b->count);
    b->names = NULL;
    b->count = 0;
    return 1;
}

/* Push true, or the failure in err. */
static int
push_result(lua_State *L, int rc, const struct luacme_err *err)
{
    if (rc != 0)
        return lbind_err(L, err);
    lua_pushboolean(L, 1);
    return 1;
}

/* core.unlink(path), core.rmdir(path), core.rename(from, to),
 * core.chmod(path, mode), core.symlink(target, path), core.fsync_dir(path)
 * -> true | nil, msg, kind. */
static int
l_unlink(lua_State *L)
{
    struct luacme_err err;

    return push_result(L, fs_unlink(check_path(L, 1), &err), &err);
}

static int
l_rmdir(lua_State *L)
{
    struct luacme_err err;

    return push_result(L, fs_rmdir(check_path(L, 1), &err), &err);
}

static int
l_rename(lua_State *L)
{
    const char *from = check_path(L, 1);
    const char *to = check_path(L, 2);
    struct luacme_err err;

    return push_result(L, fs_rename(from, to, &err), &err);
}

static int
l_chmod(lua_State *L)
{
    const char *path = check_path(L, 1);
    unsigned mode;
    struct luacme_err err;

    luaL_checkinteger(L, 2);
    mode = opt_mode(L, 2, 0);
    return push_result(L, fs_chmod(path, mode, &err), &err);
}

static int
l_symlink(lua_State *L)
{
    const char *target = check_path(L, 1);
    const char *path = check_path(L, 2);
    struct luacme_err err;

    return push_result(L, fs_symlink(target, path, &err), &err);
}

/* core.readlink(path) -> target | nil, msg, kind. */
static int
l_readlink(lua_State *L)
{
    const char *path = check_path(L, 1);
    char buf[4096];
    struct luacme_err err;

    if (fs_readlink(path, buf, sizeof(buf), &err) != 0)
        return lbind_err(L, &err);
    lua_pushstring(L, buf);
    return 1;
}

static int
l_fsync_dir(lua_State *L)
{
    struct luacme_err err;

    return push_result(L, fs_fsync_dir(check_path(L, 1), &err), &err);
}

/*
 * Locks
 */

static struct llock *
lock_check(lua_State *L)
{
    return luaL_checkudata(L, 1, LOCK_MT);
}

/* lock:unlock() (also __gc and __close): release; idempotent. */
static int
lock_unlock(lua_State *L)
{
    struct llock *k = lock_check(L);

    fs_unlock(k->fd);
    k->fd = -1;
    return 0;
}

static int
lock_tostring(lua_State *L)
{
    struct llock *k = lock_check(L);

    lua_getiuservalue(L, 1, 1);
    lua_pushfstring(L, "luacme.lock (%s, %s)", lua_tostring(L, -1),
        k->fd >= 0 ? "held" : "released");
    return 1;
}

/* core.lock(path[, {timeout=0, shared=false}]) -> lock object | nil, msg,
 * kind ("busy" when another process holds it past the timeout). */
static int
l_lock(lua_State *L)
{
    static const char *const opts[] = {"timeout", "shared", NULL};
    const char *path = check_path(L, 1);
    double timeout = 0;
    int shared = 0;
    struct luacme_err err;
    struct llock *k;

    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lbind_check_options(L, 2, "lock", opts);
        lua_getfield(L, 2, "timeout");
        timeout = lbind_opt_timeout(L, -1, "lock");
        lua_getfield(L, 2, "shared");
        shared = lua_toboolean(L, -1);
        lua_pop(L, 2);
    }
    /* The box exists before the descriptor, so nothing can leak it. */
    k = lua_newuserdatauv(L, sizeof(*k), 1);
    k->fd = -1;
    luaL_setmetatable(L, LOCK_MT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    if (fs_lock(path, shared, timeout, &k->fd, &err) != 0)
        return lbind_err(L, &err);
    return 1;
}

/* core.isatty(fd) -> boolean. */
static int
l_isatty(lua_State *L)
{
    lua_Integer fd = luaL_checkinteger(L, 1);

    luaL_argcheck(L, fd >= 0 && fd <= 0x7fffffff, 1, "bad descriptor");
    lua_pushboolean(L, isatty((int)fd));
    return 1;
}

/* core.hostname() -> string | nil, msg, "io". */
static int
l_hostname(lua_State *L)
{
    char buf[256];

    if (gethostname(buf, sizeof(buf) - 1) != 0) {
        lua_pushfstring(L, "hostname: %s", strerror(errno));
        return lbind_fail(L, lua_tostring(L, -1), "io");
    }
    buf[sizeof(buf) - 1] = '\0';
    lua_pushstring(L, buf);
    return 1;
}

/* core.umask(mask) -> the previous mask. */
static int
l_umask(lua_State *L)
{
    lua_Integer m = luaL_checkinteger(L, 1);

    luaL_argcheck(L, m >= 0 && m <= 0777, 1, "must be 0..0777");
    lua_pushinteger(L, (lua_Integer)umask((mode_t)m));
    return 1;
}

void
lbind_fs(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"write_file", l_write_file},
        {"read_file", l_read_file},
        {"mkdir", l_mkdir},
        {"mkdir_p", l_mkdir_p},
        {"stat", l_stat},
        {"lstat", l_lstat},
        {"listdir", l_listdir},
        {"unlink", l_unlink},
        {"rmdir", l_rmdir},
        {"rename", l_rename},
        {"chmod", l_chmod},
        {"symlink", l_symlink},
        {"readlink", l_readlink},
        {"fsync_dir", l_fsync_dir},
        {"lock", l_lock},
        {"isatty", l_isatty},
        {"hostname", l_hostname},
        {"umask", l_umask},
        {NULL, NULL}
    };
    static const luaL_Reg lock_meta[] = {
        {"__gc", lock_unlock},
        {"__close", lock_unlock},
        {"__tostring", lock_tostring},
        {NULL, NULL}
    };
    static const luaL_Reg lock_methods[] = {
        {"unlock", lock_unlock},
        {NULL, NULL}
    };

    luaL_newmetatable(L, BOX_MT);
    lua_pushcfunction(L, box_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);

    luaL_newmetatable(L, LOCK_MT);
    luaL_setfuncs(L, lock_meta, 0);
    luaL_newlib(L, lock_methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);

    luaL_setfuncs(L, funcs, 0);
}
