/*
 * luacme.core: the module table, shared binding helpers, the small
 * encoding functions (base64url, SHA-256, HMAC-SHA256, random bytes).
 * Built into the executable and into the loadable module luacme/core.so
 * alike; luacme_openlibs (lua_openlibs.c) is the executable's alone.
 */
#include "lua_bind.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/opensslv.h>

#include "b64.h"
#include "luacme_limits.h"
#include "mono.h"

#ifndef LUACME_VERSION
#define LUACME_VERSION "0.0.0-dev"
#endif

int
lbind_fail(lua_State *L, const char *msg, const char *kind)
{
    luaL_pushfail(L);
    lua_pushstring(L, msg);
    lua_pushstring(L, kind);
    return 3;
}

int
lbind_err(lua_State *L, const struct luacme_err *err)
{
    return lbind_fail(L, err->msg, err->kind ? err->kind : "error");
}

void
lbind_check_options(lua_State *L, int idx, const char *fname,
    const char *const *names)
{
    const char *k;
    int i, known;

    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "%s: option names must be strings", fname);
        k = lua_tostring(L, -1);
        known = 0;
        for (i = 0; names[i] != NULL; i++)
            if (strcmp(k, names[i]) == 0)
                known = 1;
        if (!known)
            luaL_error(L, "%s: unknown option '%s'", fname, k);
    }
}

double
lbind_opt_timeout(lua_State *L, int idx, const char *fname)
{
    lua_Number t;

    if (lua_isnil(L, idx))
        return 0;
    if (!lua_isnumber(L, idx))
        luaL_error(L, "%s: timeout must be a number", fname);
    t = lua_tonumber(L, idx);
    if (!(t >= 0 && t <= LUACME_WAIT_MAX_S))
        luaL_error(L, "%s: timeout must be 0..%d seconds", fname,
            LUACME_WAIT_MAX_S);
    return (double)t;
}

static int
l_b64url_encode(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    luaL_Buffer b;
    char *out;

    if (len > LUACME_B64_MAX)
        return lbind_fail(L, "b64url_encode: input over LUACME_B64_MAX",
            "too_large");
    out = luaL_buffinitsize(L, &b, b64url_encoded_len(len) + 1);
    luaL_pushresultsize(&b, b64url_encode_to((const unsigned char *)s,
        len, out));
    return 1;
}

/* Decoded straight into a luaL_Buffer: no C-owned memory that a raise
 * (out of memory) could leak. */
static int
l_b64url_decode(lua_State *L)
{
    size_t len, outlen = 0;
    const char *s = luaL_checklstring(L, 1, &len);
    struct luacme_err err;
    luaL_Buffer b;
    unsigned char *out;

    if (len > LUACME_B64_MAX)
        return lbind_fail(L, "b64url_decode: input over LUACME_B64_MAX",
            "too_large");
    out = (unsigned char *)luaL_buffinitsize(L, &b,
        b64url_decoded_max(len));
    if (b64url_decode_to(s, len, out, &outlen, &err) != 0)
        return lbind_err(L, &err);
    luaL_pushresultsize(&b, outlen);
    return 1;
}

/* core.sha256(s) -> 32 raw bytes | nil, message, "too_large" over
 * LUACME_B64_MAX (the digests hash key authorizations and certificates). */
static int
l_sha256(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (len > LUACME_B64_MAX)
        return lbind_fail(L, "sha256: input over LUACME_B64_MAX",
            "too_large");
    if (EVP_Digest(s, len, md, &mdlen, EVP_sha256(), NULL) != 1)
        return lbind_fail(L, "sha256: digest failed", "crypto");
    lua_pushlstring(L, (const char *)md, mdlen);
    return 1;
}

/* core.hmac_sha256(key, s) -> 32 raw bytes | nil, message, "too_large"
 * when key or s is over LUACME_B64_MAX (HMAC() takes the key length as
 * an int: a longer key would be cut short, not refused). */
static int
l_hmac_sha256(lua_State *L)
{
    size_t klen, len;
    const char *key = luaL_checklstring(L, 1, &klen);
    const char *s = luaL_checklstring(L, 2, &len);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (klen > LUACME_B64_MAX || len > LUACME_B64_MAX)
        return lbind_fail(L, "hmac_sha256: key or input over "
            "LUACME_B64_MAX", "too_large");
    /* HMAC() is the one-shot EVP-era interface, not deprecated in 3.0. */
    if (HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)s, len,
        md, &mdlen) == NULL)
        return lbind_fail(L, "hmac_sha256: failed", "crypto");
    lua_pushlstring(L, (const char *)md, mdlen);
    return 1;
}

static int
l_random(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_Buffer b;
    unsigned char *p;

    luaL_argcheck(L, n >= 0 && n <= LUACME_RANDOM_MAX, 1,
        "must be 0..LUACME_RANDOM_MAX");
    p = (unsigned char *)luaL_buffinitsize(L, &b, (size_t)n + 1);
    if (n > 0 && RAND_bytes(p, (int)n) != 1)
        return lbind_fail(L, "random: RAND_bytes failed", "crypto");
    luaL_pushresultsize(&b, (size_t)n);
    return 1;
}

/* Versions of everything linked in, for `luacme --version` and bug
 * reports. cjson's version is added by the Lua side (it lives there). */
static int
l_versions(lua_State *L)
{
    const curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);

    lua_createtable(L, 0, 4);
    lua_pushliteral(L, LUACME_VERSION);
    lua_setfield(L, -2, "luacme");
    lua_pushliteral(L, LUA_RELEASE);
    lua_setfield(L, -2, "lua");
    lua_pushstring(L, OpenSSL_version(OPENSSL_VERSION));
    lua_setfield(L, -2, "openssl");
    lua_pushstring(L, cv->version);
    lua_setfield(L, -2, "curl");
    lua_pushstring(L, cv->ssl_version ? cv->ssl_version : "");
    lua_setfield(L, -2, "curl_ssl");
    lua_pushboolean(L, (cv->features & CURL_VERSION_HTTP2) != 0);
    lua_setfield(L, -2, "curl_http2");
    return 1;
}

/* Wall-clock seconds since the epoch, with a fraction. */
static int
l_time(lua_State *L)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + ts.tv_nsec / 1e9);
    return 1;
}

/* Seconds on a clock that never jumps: for deadlines and measuring. */
static int
l_monotonic(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)mono_now());
    return 1;
}

/* Sleep for a (fractional) number of seconds. A signal ends the sleep
 * early on purpose: the interrupt hook then raises in Lua. */
static int
l_sleep(lua_State *L)
{
    lua_Number s = luaL_checknumber(L, 1);
    struct timespec ts;

    luaL_argcheck(L, s >= 0 && s <= 86400 * 7, 1, "must be 0..604800");
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (lua_Number)ts.tv_sec) * 1e9);
    if (nanosleep(&ts, NULL) != 0 && errno != EINTR)
        return luaL_error(L, "sleep: %s", strerror(errno));
    return 0;
}

lua_State *volatile lbind_running = NULL;

/* core.set_running(co | nil): tell the signal handler which coroutine
 * runs now (luacme.sched around each resume). */
static int
l_set_running(lua_State *L)
{
    if (lua_isnoneornil(L, 1)) {
        lbind_running = NULL;
        return 0;
    }
    luaL_checktype(L, 1, LUA_TTHREAD);
    lbind_running = lua_tothread(L, 1);
    return 0;
}

void
lbind_encoding(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"b64url_encode", l_b64url_encode},
        {"b64url_decode", l_b64url_decode},
        {"sha256", l_sha256},
        {"hmac_sha256", l_hmac_sha256},
        {"random", l_random},
        {"versions", l_versions},
        {"time", l_time},
        {"monotonic", l_monotonic},
        {"sleep", l_sleep},
        {"set_running", l_set_running},
        {NULL, NULL}
    };

    luaL_setfuncs(L, funcs, 0);
    lua_pushliteral(L, LUACME_VERSION);
    lua_setfield(L, -2, "VERSION");
}

int
luaopen_luacme_core(lua_State *L)
{
    lua_newtable(L);
    lbind_encoding(L);
    lbind_keys(L);
    lbind_x509(L);
    lbind_http(L);
    lbind_fs(L);
    lbind_proc(L);
    lbind_dns(L);
    lbind_responder(L);
    return 1;
}
