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

/* __gc of an expanded module's box (see embedded_bytes). */
static int
embedded_free(lua_State *L)
{
    unsigned char **box = lua_touserdata(L, 1);

    free(*box);
    *box = NULL;
    return 0;
}

static const struct luacme_embedded *
embedded_lookup(const char *path)
{
    const struct luacme_embedded *e;

    for (e = luacme_embedded; e->path != NULL; e++)
        if (strcmp(e->path, path) == 0)
            return e;
    return NULL;
}

/* The bytes of an embedded file (e->raw of them). Pushes the value that
 * keeps them alive: nil when they are stored as they are, else a box (a
 * full userdata) owning the expanded frame, malloc'd outside the Lua
 * heap so that loading a module does not drive the collector. Only one
 * module is expanded at a time and only while it loads (issue 11: the
 * whole set, expanded at once, sat at the peak of an issuance). Raises
 * when out of memory or the frame is corrupt. */
static const char *
embedded_bytes(lua_State *L, const struct luacme_embedded *e)
{
    const struct luacme_embedded_blob *b = &luacme_embedded_blob;
    unsigned char **box;
    size_t n;

    if (!b->compressed) {
        lua_pushnil(L);
        return (const char *)b->data + e->off;
    }
    box = lua_newuserdatauv(L, sizeof(*box), 0);
    *box = NULL;
    if (luaL_newmetatable(L, "luacme.embedded.box")) {
        lua_pushcfunction(L, embedded_free);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    *box = malloc(e->raw ? e->raw : 1);
    if (*box == NULL)
        luaL_error(L, "not enough memory");
    n = ZSTD_decompress(*box, e->raw, b->data + e->off, e->size);
    if (ZSTD_isError(n) || n != e->raw)
        luaL_error(L, "cannot expand the embedded %s", e->path);
    return (const char *)*box;
}

/* Frees the expansion of embedded_bytes at idx now, not at the next
 * collection. */
static void
embedded_release(lua_State *L, int idx)
{
    unsigned char **box = lua_touserdata(L, idx);

    if (box != NULL) {
        free(*box);
        *box = NULL;
    }
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
struct strip_state {
    int init;
    luaL_Buffer b;
};

static int
strip_writer(lua_State *L, const void *p, size_t n, void *ud)
{
    struct strip_state *st = ud;

    if (!st->init) {
        st->init = 1;
        luaL_buffinit(L, &st->b);
    }
    luaL_addlstring(&st->b, p, n);
    return 0;
}

/* Replaces the function compiled from source on top of the stack with
 * the same function without its debug information (lua_dump with
 * strip, loaded back): line numbers and local names are a quarter of a
 * module's resident size (the modules an issuance loads later: 525 KB
 * with them, 402 KB without; issue 11, peak RSS). The embedded text is
 * then as compact as bytecode once loaded, and a third smaller in the
 * binary; tracebacks keep function names, as with bytecode. chunkname
 * is for messages. Returns a lua_load status. */
static int
strip_loaded(lua_State *L, const char *chunkname)
{
    struct strip_state st;
    const char *code;
    size_t len;
    int status;

    st.init = 0;
    if (lua_dump(L, strip_writer, &st, 1) != 0 || !st.init) {
        lua_pushliteral(L, "cannot strip the module");
        return LUA_ERRERR;
    }
    luaL_pushresult(&st.b);
    code = lua_tolstring(L, -1, &len);
    status = luaL_loadbufferx(L, code, len, chunkname, "b");
    lua_remove(L, -2);                  /* the dump */
    if (status == LUA_OK)
        lua_remove(L, -2);              /* the function with its lines */
    return status;
}

/* package.searchers entry after the file searcher: a module missing on
 * disk is taken from the copy compiled into the binary. */
static int
searcher_embedded(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    const char *forms[] = {"lua/%s.lua", "lua/%s/init.lua", "%s.lua"};
    const struct luacme_embedded *e;
    const char *path, *data;
    size_t i;
    int status;

    name = luaL_gsub(L, name, ".", "/");
    for (i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        path = lua_pushfstring(L, forms[i], name);
        e = embedded_lookup(path);
        if (e == NULL) {
            lua_pop(L, 1);
            continue;
        }
        lua_pushfstring(L, "@[embedded]/%s", path);
        data = embedded_bytes(L, e);
        /* on the stack: path, chunk name, the bytes' box */
        status = luaL_loadbufferx(L, data, e->raw, lua_tostring(L, -2),
            embedded_mode());
        embedded_release(L, -2);
        if (status == LUA_OK && *embedded_mode() == 't')
            status = strip_loaded(L, lua_tostring(L, -3));
        if (status != LUA_OK)
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
    const struct luacme_embedded *e =
        embedded_lookup(luaL_checkstring(L, 1));
    const char *data;

    if (e == NULL)
        return 0;
    data = embedded_bytes(L, e);
    lua_pushlstring(L, data, e->raw);
    embedded_release(L, -2);
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
     * mmap'd block, so the next zstd context (160 KB, one per embedded
     * module loaded) would land in the heap and stay resident after it
     * is freed (issue 11, peak RSS). A fixed threshold keeps blocks of
     * 128 KB and more in their own maps, returned as soon as freed. */
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
