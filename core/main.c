/*
 * The luacme executable: one Lua state with luacme.core and cjson
 * preloaded, module paths set in one place (site_setup), and the command
 * line handed to require("luacme.cli").main(arg) under a protected call.
 */
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#include <curl/curl.h>
#include <zstd.h>

#include "embedded.h"
#include "err.h"
#include "lua_bind.h"

static lua_State *globalL = NULL;

/* GnuTLS's documented opt-out of its load-time initialisation
 * (GNUTLS_SKIP_GLOBAL_INIT in gnutls.h): we never use GnuTLS, but
 * Debian's libcurl pulls it in through librtmp and libldap, and its
 * constructor would otherwise parse its ASN.1 tables, set up its RNG and
 * read its system configuration at every start: about 0.8 MB resident
 * for nothing. Whoever does use it (librtmp for rtmps, libldap for
 * ldaps) calls gnutls_global_init first, as GnuTLS requires without the
 * implicit init. The executable exports the symbol (see CMakeLists.txt)
 * so the dynamic linker binds GnuTLS's weak default to this one. */
int _gnutls_global_init_skip(void);

int
_gnutls_global_init_skip(void)
{
    return 1;
}

/* Raise inside Lua at the next hook point, so Ctrl-C and SIGTERM unwind
 * through pcall and every <close> guard: hooks get their cleanup. The
 * error is a table the CLI recognises (kind "interrupted"). */
static void
lstop(lua_State *L, lua_Debug *ar)
{
    lua_State *co = lbind_running;

    (void)ar;
    /* Set on the main thread and on a running coroutine: whichever
     * fires first raises, once. */
    lua_sethook(L, NULL, 0, 0);
    lua_sethook(globalL, NULL, 0, 0);
    if (co != NULL)
        lua_sethook(co, NULL, 0, 0);
    lua_createtable(L, 0, 2);
    lua_pushliteral(L, "interrupted");
    lua_setfield(L, -2, "kind");
    lua_pushliteral(L, "interrupted by signal");
    lua_setfield(L, -2, "detail");
    lua_error(L);
}

static void
laction(int sig)
{
    int flag = LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT;

    luacme_interrupted = sig;
    /* Only the first signal is polite; a second one restores the default
     * action so a wedged run can still be killed. */
    signal(sig, SIG_DFL);
    lua_sethook(globalL, lstop, flag, 1);
    if (lbind_running != NULL)
        lua_sethook(lbind_running, lstop, flag, 1);
}

/* Message handler: table errors print through __tostring (no traceback,
 * they are expected failures), anything else gets a traceback. */
static int
msghandler(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);

    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") &&
            lua_type(L, -1) == LUA_TSTRING) {
            if (getenv("LUACME_TRACE") == NULL)
                return 1;
            msg = lua_tostring(L, -1);
        } else if (lua_istable(L, 1)) {
            lua_getfield(L, 1, "detail");
            msg = lua_pushfstring(L, "error: %s",
                lua_isstring(L, -1) ? lua_tostring(L, -1) : "(no detail)");
        } else {
            msg = lua_pushfstring(L, "(error object is a %s value)",
                luaL_typename(L, 1));
        }
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* The expanded blob (about 200 KB) sits in a box (a full userdata),
 * named by a weak-valued registry table (field "raw") and held by a
 * strong registry reference while modules are being loaded. Loading comes
 * in bursts (the command line at start, a hook later): at the end of a
 * collection cycle at least EMBEDDED_IDLE_MS after the blob was last
 * used, the strong reference goes and the collector frees it (issue 11:
 * it was kept until exit, at the peak of an issuance); a later require
 * expands it again (a fraction of a millisecond, a few times a run at
 * most). Time rather than cycles: cycles come every few requires while
 * the heap is small, which would expand the blob again and again. */
static const char EMBEDDED_CACHE[] = "luacme.embedded";
static const char EMBEDDED_KEEP[] = "luacme.embedded.keep";
#define EMBEDDED_IDLE_MS 50
static double embedded_last_use;    /* monotonic seconds */
static int embedded_armed;          /* a sentinel waits for a cycle end */

static double
embedded_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void embedded_arm(lua_State *L);

/* __gc of the sentinel: called at the end of a collection cycle. */
static int
embedded_cycle(lua_State *L)
{
    embedded_armed = 0;
    if (embedded_now() - embedded_last_use < EMBEDDED_IDLE_MS / 1000.0) {
        embedded_arm(L);
    } else {
        lua_pushnil(L);
        lua_setfield(L, LUA_REGISTRYINDEX, EMBEDDED_KEEP);
    }
    return 0;
}

/* An unreachable table with a __gc: finalized by the next cycle. */
static void
embedded_arm(lua_State *L)
{
    lua_newtable(L);
    if (luaL_newmetatable(L, "luacme.embedded.cycle")) {
        lua_pushcfunction(L, embedded_cycle);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    lua_pop(L, 1);
    embedded_armed = 1;
}

/* __gc of the blob's box. */
static int
embedded_free(lua_State *L)
{
    unsigned char **box = lua_touserdata(L, 1);

    free(*box);
    *box = NULL;
    return 0;
}

/* The expanded blob: the compiled-in data itself when stored, else the
 * cached or freshly expanded copy. Pushes one value that keeps the bytes
 * alive while it is on the stack (nil when stored). NULL when the
 * expansion fails (a corrupt build); raises when out of memory. The
 * bytes are malloc'd outside the Lua heap, in a box: 200 KB counted as
 * Lua allocation would drive the collector through whole cycles at
 * once, and so free the blob in the middle of a burst of requires. */
static const unsigned char *
embedded_data(lua_State *L)
{
    const struct luacme_embedded_blob *b = &luacme_embedded_blob;
    unsigned char **box;
    size_t n;

    if (!b->compressed) {
        lua_pushnil(L);
        return b->data;
    }
    if (!luaL_getsubtable(L, LUA_REGISTRYINDEX, EMBEDDED_CACHE)) {
        lua_pushliteral(L, "v");
        lua_setfield(L, -2, "__mode");
        lua_pushvalue(L, -1);
        lua_setmetatable(L, -2);
    }
    if (lua_getfield(L, -1, "raw") == LUA_TUSERDATA) {
        box = lua_touserdata(L, -1);
    } else {
        lua_pop(L, 1);
        box = lua_newuserdatauv(L, sizeof(*box), 0);
        *box = NULL;
        if (luaL_newmetatable(L, "luacme.embedded.blob")) {
            lua_pushcfunction(L, embedded_free);
            lua_setfield(L, -2, "__gc");
        }
        lua_setmetatable(L, -2);
        *box = malloc(b->raw_size ? b->raw_size : 1);
        if (*box == NULL)
            luaL_error(L, "not enough memory");
        n = ZSTD_decompress(*box, b->raw_size, b->data, b->size);
        if (ZSTD_isError(n) || n != b->raw_size) {
            lua_pop(L, 2);
            lua_pushnil(L);
            return NULL;
        }
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, "raw");
    }
    lua_remove(L, -2);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, EMBEDDED_KEEP);
    embedded_last_use = embedded_now();
    if (!embedded_armed)
        embedded_arm(L);
    return *box;
}

/* The chunk of an embedded file: its bytes in *data and *len, or NULL
 * when path is not embedded. When found, pushes the value that keeps
 * *data alive (see embedded_data). Raises when the blob cannot be
 * expanded. */
static const struct luacme_embedded *
embedded_find(lua_State *L, const char *path, const char **data)
{
    const struct luacme_embedded *e;
    const unsigned char *raw;

    for (e = luacme_embedded; e->path != NULL; e++)
        if (strcmp(e->path, path) == 0)
            break;
    if (e->path == NULL)
        return NULL;
    raw = embedded_data(L);
    if (raw == NULL)
        luaL_error(L, "cannot expand the embedded Lua modules");
    *data = (const char *)raw + e->off;
    return e;
}

/* Load mode of embedded chunks: binary ones only when bytecode was
 * compiled in, so a text chunk is never taken for one or vice versa. */
static const char *
embedded_mode(void)
{
    return strcmp(luacme_embedded_blob.format, "bytecode") == 0 ? "b" : "t";
}

/* package.searchers entry after the file searcher: a module missing on
 * disk is taken from the copy compiled into the binary. */
static int
searcher_embedded(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    const char *forms[] = {"lua/%s.lua", "lua/%s/init.lua", "%s.lua"};
    const struct luacme_embedded *e;
    const char *path, *data = NULL;
    size_t i;

    name = luaL_gsub(L, name, ".", "/");
    for (i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        path = lua_pushfstring(L, forms[i], name);
        e = embedded_find(L, path, &data);
        if (e == NULL) {
            lua_pop(L, 1);
            continue;
        }
        /* on the stack: path, the blob's anchor */
        lua_pushfstring(L, "@[embedded]/%s", path);
        if (luaL_loadbufferx(L, data, e->len, lua_tostring(L, -1),
            embedded_mode()) != LUA_OK)
            return luaL_error(L, "error loading embedded module '%s':\n\t%s",
                path, lua_tostring(L, -1));
        lua_pushstring(L, path);
        return 2;
    }
    lua_pushfstring(L, "no embedded module '%s'", name);
    return 1;
}

/* site.embedded(relpath) -> chunk or nil: for built-in hooks, which are
 * files rather than modules. The chunk is bytecode or source text as
 * site.embedded_format says; load it with mode site.embedded_mode. */
static int
site_embedded(lua_State *L)
{
    const char *data = NULL;
    const struct luacme_embedded *e =
        embedded_find(L, luaL_checkstring(L, 1), &data);

    if (e == NULL)
        return 0;
    lua_pushlstring(L, data, e->len);
    return 1;
}

/* site.embedded_list() -> sorted list of every embedded path. */
static int
site_embedded_list(lua_State *L)
{
    const struct luacme_embedded *e;
    lua_Integer n = 0;

    lua_newtable(L);
    for (e = luacme_embedded; e->path != NULL; e++) {
        lua_pushstring(L, e->path);
        lua_rawseti(L, -2, ++n);
    }
    return 1;
}

/* Compile-time locations; see site_setup. */
#ifndef LUACME_SOURCE_DIR
#define LUACME_SOURCE_DIR "."
#endif
#ifndef LUACME_BINARY_DIR
#define LUACME_BINARY_DIR "."
#endif
#ifndef LUACME_DATA_DIR
#define LUACME_DATA_DIR "/usr/local/share/luacme"
#endif

/* The one place that decides where Lua modules and built-in hooks come
 * from, so embedding them in the binary later only changes this. The
 * root holds lua/ and hooks/: LUACME_LUA_PATH (a directory) overrides;
 * a binary still in its build directory uses the source tree; otherwise
 * the install prefix. Whatever is missing there comes from the copies
 * compiled into the binary (searcher_embedded, site.embedded). Sets
 * package.path and the searchers, and preloads "luacme.site". */
static void
site_setup(lua_State *L)
{
    char exe[4096];
    char *slash;
    const char *root = LUACME_DATA_DIR;
    const char *env = getenv("LUACME_LUA_PATH");
    ssize_t n;

    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = '\0';
        slash = strrchr(exe, '/');
        if (slash != NULL) {
            *slash = '\0';
            if (strcmp(exe, LUACME_BINARY_DIR) == 0)
                root = LUACME_SOURCE_DIR;
        }
    }
    if (env != NULL && env[0] != '\0')
        root = env;

    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, LUA_LOADLIBNAME);
    lua_pushfstring(L, "%s/lua/?.lua;%s/lua/?/init.lua;%s/?.lua", root,
        root, root);
    lua_setfield(L, -2, "path");
    /* No C modules from disk: everything native is linked in. */
    lua_pushliteral(L, "");
    lua_setfield(L, -2, "cpath");
    lua_getfield(L, -1, "searchers");
    lua_pushcfunction(L, searcher_embedded);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    lua_pop(L, 2);

    lua_createtable(L, 0, 6);
    lua_pushcfunction(L, site_embedded);
    lua_setfield(L, -2, "embedded");
    lua_pushstring(L, luacme_embedded_blob.format);
    lua_setfield(L, -2, "embedded_format");
    lua_pushstring(L, embedded_mode());
    lua_setfield(L, -2, "embedded_mode");
    lua_pushcfunction(L, site_embedded_list);
    lua_setfield(L, -2, "embedded_list");
    lua_pushstring(L, root);
    lua_setfield(L, -2, "root");
    lua_pushfstring(L, "%s/hooks", root);
    lua_setfield(L, -2, "hooks_dir");
    lua_setfield(L, -2, "luacme.site");
    lua_pop(L, 1);
}

static int
pmain(lua_State *L)
{
    int argc = (int)lua_tointeger(L, 1);
    char **argv = (char **)lua_touserdata(L, 2);
    int i;

    luacme_openlibs(L);
    site_setup(L);

    /* arg as lua.c builds it: arg[0] the program, arg[1..] the rest. */
    lua_createtable(L, argc, 1);
    for (i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i);
    }
    lua_setglobal(L, "arg");

    lua_getglobal(L, "require");
    lua_pushliteral(L, "luacme.cli");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "main");
    lua_getglobal(L, "arg");
    lua_call(L, 1, 1);
    return 1;
}

int
main(int argc, char **argv)
{
    lua_State *L;
    int status, code = 1;

    /* No curl_global_init here: the first curl_easy_init does it (the
     * Lua side makes every handle, on this thread), so commands that
     * never go on the network (--version, list, hooks) skip initialising
     * libcurl and OpenSSL's TLS: a few milliseconds of start-up. */
#ifdef M_MMAP_THRESHOLD
    /* glibc's default threshold moves up to the size of the last freed
     * mmap'd block, so a second expansion of the embedded modules would
     * land in the heap and stay resident after it is freed (issue 11,
     * peak RSS). A fixed threshold keeps blocks of 128 KB and more in
     * their own maps, returned as soon as they are freed. */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
#endif
    L = luaL_newstate();
    if (L == NULL) {
        fprintf(stderr, "luacme: cannot create Lua state\n");
        return 1;
    }
    globalL = L;
    signal(SIGINT, laction);
    signal(SIGTERM, laction);

    lua_pushcfunction(L, msghandler);
    lua_pushcfunction(L, pmain);
    lua_pushinteger(L, argc);
    lua_pushlightuserdata(L, argv);
    status = lua_pcall(L, 2, 1, 1);
    if (status != LUA_OK) {
        fprintf(stderr, "luacme: %s\n",
            lua_isstring(L, -1) ? lua_tostring(L, -1) : "(error)");
        code = luacme_interrupted ? 128 + luacme_interrupted : 1;
    } else if (lua_isinteger(L, -1)) {
        code = (int)lua_tointeger(L, -1);
    } else {
        code = lua_toboolean(L, -1) || lua_isnil(L, -1) ? 0 : 1;
    }
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    /* Closing the state runs __gc and pending __close: keys are freed and
     * curl handles cleaned up before libcurl itself is torn down (a no-op
     * when no handle was ever made). */
    lua_close(L);
    curl_global_cleanup();
    return code;
}
