/*
 * Shared by the thin Lua binding files (core/lua_*.c). Each binding file
 * adds its functions to the luacme.core table on top of the stack and
 * registers its metatables; luaopen_luacme_core calls them in turn.
 * luacme_openlibs is what every Lua state of ours starts from: the
 * executable's, the fuzz harness's and the C tests'.
 */
#ifndef LUACME_LUA_BIND_H
#define LUACME_LUA_BIND_H

#include <lua.h>
#include <lauxlib.h>

#include "err.h"

/* Push nil, message, kind (the "expected failure" shape). Returns 3. */
int lbind_fail(lua_State *L, const char *msg, const char *kind);

/* Same from a filled struct luacme_err. Returns 3. */
int lbind_err(lua_State *L, const struct luacme_err *err);

/* Raise "FNAME: unknown option 'k'" for a key of the option table at idx
 * that is not in names (NULL-terminated), "FNAME: option names must be
 * strings" for a key that is no string. Leaves the stack as it was. */
void lbind_check_options(lua_State *L, int idx, const char *fname,
    const char *const *names);

/* The timeout option value at idx: nil gives 0, a number
 * 0..LUACME_WAIT_MAX_S itself; anything else raises, naming fname. */
double lbind_opt_timeout(lua_State *L, int idx, const char *fname);

/* The key userdata (lua_keys.c owns it; lua_x509.c uses it). */
#define LUACME_KEY_MT "luacme.key"

struct evp_pkey_st;

/* Return the EVP_PKEY of the key userdata at idx; raises when idx is not
 * a key or the key was closed. The key stays owned by the userdata. */
struct evp_pkey_st *lbind_checkkey(lua_State *L, int idx);

/* Push a new key userdata that takes ownership of pkey (freed by __gc /
 * __close / close()). On a raise (memory) pkey is freed too. */
void lbind_pushkey(lua_State *L, struct evp_pkey_st *pkey);

/* Each adds its functions to the table at the top of the stack (the
 * module table) and leaves the stack as it found it. */
/* The coroutine luacme.sched is running (NULL: the main thread), so the
 * SIGINT handler can make it raise too: a hook set on the main thread
 * alone fires only once control comes back there. */
extern lua_State *volatile lbind_running;

struct pollfd;

/* lua_proc.c: for core.http_run. The descriptors to wait on for the
 * process (core.spawn_start) at idx: fills up to 3 entries of pfd and
 * returns how many, lowering *wait_ms to the longest wait it allows
 * (to 0 for one that has exited). 0 for a collected one, -1 when idx
 * is no process. */
int lbind_proc_wait_fds(lua_State *L, int idx, struct pollfd *pfd,
    int *wait_ms);

/* lua_dns.c: the same for a DNS query (core.dns_start): 1 entry while
 * it runs, 0 (and *wait_ms 0) once done, -1 when idx is no query. */
int lbind_dns_wait_fds(lua_State *L, int idx, struct pollfd *pfd,
    int *wait_ms);

void lbind_encoding(lua_State *L);  /* lua_core.c: b64url, digests, random */
void lbind_keys(lua_State *L);      /* lua_keys.c: keys and JWS */
void lbind_x509(lua_State *L);      /* lua_x509.c: CSR, certificates */
void lbind_http(lua_State *L);      /* lua_http.c: the HTTP client */
void lbind_fs(lua_State *L);        /* lua_fs.c: files, directories, locks */
void lbind_proc(lua_State *L);      /* lua_proc.c: spawn, environment */
void lbind_dns(lua_State *L);       /* lua_dns.c: DNS queries */
void lbind_responder(lua_State *L); /* lua_responder.c: challenge servers */
void lbind_fleet(lua_State *L);     /* lua_fleet.c: AEAD, lock keeper, Redis */

/* The module entry point, preloaded as "luacme.core" by luacme_openlibs
 * and the one symbol luacme/core.so exports (built with hidden
 * visibility). */
__attribute__((visibility("default"))) int luaopen_luacme_core(lua_State *L);

/* Open Lua's standard libraries in L and put our C modules in
 * package.preload: "luacme.core", "cjson" and "cjson.safe" (linked in,
 * loaded on the first require). Leaves the stack as it found it; raises
 * only on memory errors, so call it under lua_pcall or on a fresh state
 * where a raise may abort. */
void luacme_openlibs(lua_State *L);

#endif
