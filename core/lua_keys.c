/*
 * The key userdata ("luacme.key") and the JWS functions of luacme.core.
 * A key box owns one EVP_PKEY; NULL once closed. Private key material
 * stays in C except through private_pem() and write().
 */
#include "lua_bind.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "keys.h"
#include "limits.h"

struct lkey {
    EVP_PKEY *pkey;     /* NULL once closed */
};

/* A new closed key box on top of the stack; may raise (memory). */
static struct lkey *
newbox(lua_State *L)
{
    struct lkey *k = lua_newuserdatauv(L, sizeof(*k), 0);

    k->pkey = NULL;
    luaL_setmetatable(L, LUACME_KEY_MT);
    return k;
}

/* The open key at idx; raises for a closed key or a non-key. */
static EVP_PKEY *
key_get(lua_State *L, int idx)
{
    struct lkey *k = luaL_checkudata(L, idx, LUACME_KEY_MT);

    if (k->pkey == NULL)
        luaL_error(L, "attempt to use a closed key");
    return k->pkey;
}

struct evp_pkey_st *
lbind_checkkey(lua_State *L, int idx)
{
    return key_get(L, idx);
}

static int
pushkey_box(lua_State *L)
{
    newbox(L);
    return 1;
}

void
lbind_pushkey(lua_State *L, struct evp_pkey_st *pkey)
{
    struct lkey *k;

    /* The box is made under a protected call so that a memory error
     * cannot leave pkey owned by nobody: on failure it is freed and the
     * error raised again. Light C functions cost no allocation. */
    if (!lua_checkstack(L, 2)) {
        EVP_PKEY_free(pkey);
        luaL_error(L, "stack overflow (pushing a key)");
        return;
    }
    lua_pushcfunction(L, pushkey_box);
    if (lua_pcall(L, 0, 1, 0) != LUA_OK) {
        EVP_PKEY_free(pkey);
        lua_error(L);
        return;
    }
    k = lua_touserdata(L, -1);
    k->pkey = pkey;
}

/* Push len bytes of s under a protected call: returns 0 with the string
 * pushed, or -1 with the error object pushed. Either way s still belongs
 * to the caller, who frees it and then raises on -1. */
struct lstr {
    const char *s;
    size_t len;
};

static int
push_lstr_f(lua_State *L)
{
    const struct lstr *p = lua_touserdata(L, 1);

    lua_pushlstring(L, p->s, p->len);
    return 1;
}

static int
safe_pushlstring(lua_State *L, const char *s, size_t len)
{
    struct lstr p;

    p.s = s;
    p.len = len;
    if (!lua_checkstack(L, 3)) {
        lua_pushliteral(L, "stack overflow");
        return -1;
    }
    lua_pushcfunction(L, push_lstr_f);
    lua_pushlightuserdata(L, &p);
    return lua_pcall(L, 1, 1, 0) == LUA_OK ? 0 : -1;
}

/* core.key_generate(spec) -> key | nil, message, kind. spec is one of
 * key_spec_names; anything else raises. */
static int
l_key_generate(lua_State *L)
{
    int spec = luaL_checkoption(L, 1, NULL, key_spec_names);
    struct luacme_err err;
    struct lkey *k = newbox(L);

    if (key_generate((enum key_spec)spec, &k->pkey, &err) != 0)
        return lbind_err(L, &err);
    return 1;
}

/* core.key_load(pem) -> key | nil, message, kind ("too_large", "parse",
 * "unsupported"). Never prompts for a passphrase. */
static int
l_key_load(lua_State *L)
{
    size_t len;
    const char *pem = luaL_checklstring(L, 1, &len);
    struct luacme_err err;
    struct lkey *k;

    if (len > LUACME_PEM_MAX)
        return lbind_fail(L, "key: PEM over LUACME_PEM_MAX", "too_large");
    k = newbox(L);
    if (key_load_pem(pem, len, &k->pkey, &err) != 0)
        return lbind_err(L, &err);
    return 1;
}

/* __gc, __close and key:close(): free the key; idempotent. */
static int
key_close(lua_State *L)
{
    struct lkey *k = luaL_checkudata(L, 1, LUACME_KEY_MT);

    EVP_PKEY_free(k->pkey);
    k->pkey = NULL;
    return 0;
}

static int
key_tostring(lua_State *L)
{
    struct lkey *k = luaL_checkudata(L, 1, LUACME_KEY_MT);
    const char *alg = k->pkey ? key_alg(k->pkey) : NULL;

    if (k->pkey == NULL)
        lua_pushliteral(L, "luacme.key (closed)");
    else
        lua_pushfstring(L, "luacme.key (%s)", alg ? alg : "?");
    return 1;
}

/* key:alg() -> "RS256" | "ES256" | "ES384" | "ES512" */
static int
key_m_alg(lua_State *L)
{
    const char *alg = key_alg(key_get(L, 1));

    lua_pushstring(L, alg ? alg : "?");
    return 1;
}

/* key:spec() -> "ec256", "rsa2048", ... ("rsa<bits>" for other sizes) */
static int
key_m_spec(lua_State *L)
{
    char buf[32];

    if (key_spec_name(key_get(L, 1), buf, sizeof(buf)) != 0)
        return luaL_error(L, "key: unsupported key");
    lua_pushstring(L, buf);
    return 1;
}

static int
push_jwk_f(lua_State *L)
{
    const struct key_jwk *j = lua_touserdata(L, 1);

    lua_createtable(L, 0, 4);
    lua_pushstring(L, j->kty);
    lua_setfield(L, -2, "kty");
    if (j->crv != NULL) {
        lua_pushstring(L, j->crv);
        lua_setfield(L, -2, "crv");
        lua_pushstring(L, j->x);
        lua_setfield(L, -2, "x");
        lua_pushstring(L, j->y);
        lua_setfield(L, -2, "y");
    } else {
        lua_pushstring(L, j->n);
        lua_setfield(L, -2, "n");
        lua_pushstring(L, j->e);
        lua_setfield(L, -2, "e");
    }
    return 1;
}

/* key:jwk() -> table of the public JWK's required members:
 * {kty="RSA", n=, e=} or {kty="EC", crv=, x=, y=}. */
static int
key_m_jwk(lua_State *L)
{
    EVP_PKEY *pkey = key_get(L, 1);
    struct key_jwk jwk;
    struct luacme_err err;
    int st;

    if (key_jwk(pkey, &jwk, &err) != 0)
        return lbind_err(L, &err);
    lua_pushcfunction(L, push_jwk_f);
    lua_pushlightuserdata(L, &jwk);
    st = lua_pcall(L, 1, 1, 0);
    key_jwk_free(&jwk);
    if (st != LUA_OK)
        return lua_error(L);
    return 1;
}

/* key:thumbprint() -> RFC 7638 base64url SHA-256 thumbprint */
static int
key_m_thumbprint(lua_State *L)
{
    EVP_PKEY *pkey = key_get(L, 1);
    char tp[KEY_THUMBPRINT_LEN + 1];
    struct luacme_err err;

    if (key_thumbprint(pkey, tp, &err) != 0)
        return lbind_err(L, &err);
    lua_pushstring(L, tp);
    return 1;
}

/* key:public_pem() -> "-----BEGIN PUBLIC KEY-----..." */
static int
key_m_public_pem(lua_State *L)
{
    EVP_PKEY *pkey = key_get(L, 1);
    char *pem = NULL;
    size_t len = 0;
    struct luacme_err err;
    int st;

    if (key_public_pem(pkey, &pem, &len, &err) != 0)
        return lbind_err(L, &err);
    st = safe_pushlstring(L, pem, len);
    free(pem);
    if (st != 0)
        return lua_error(L);
    return 1;
}

/* key:private_pem() -> unencrypted PKCS#8 "-----BEGIN PRIVATE KEY-----" */
static int
key_m_private_pem(lua_State *L)
{
    EVP_PKEY *pkey = key_get(L, 1);
    char *pem = NULL;
    size_t len = 0;
    struct luacme_err err;
    int st;

    if (key_private_pem(pkey, &pem, &len, &err) != 0)
        return lbind_err(L, &err);
    st = safe_pushlstring(L, pem, len);
    key_pem_free(pem, len);
    if (st != 0)
        return lua_error(L);
    return 1;
}

/* key:write(path) -> true | nil, message, kind: the private PEM written
 * atomically with mode 0600 (see key_write_file_atomic). */
static int
key_m_write(lua_State *L)
{
    EVP_PKEY *pkey = key_get(L, 1);
    const char *path = luaL_checkstring(L, 2);
    struct luacme_err err;

    if (key_write_pem(pkey, path, &err) != 0)
        return lbind_err(L, &err);
    lua_pushboolean(L, 1);
    return 1;
}

void
lbind_keys(lua_State *L)
{
    static const luaL_Reg meta[] = {
        {"__gc", key_close},
        {"__close", key_close},
        {"__tostring", key_tostring},
        {"__index", NULL},
        {NULL, NULL}
    };
    static const luaL_Reg methods[] = {
        {"alg", key_m_alg},
        {"spec", key_m_spec},
        {"jwk", key_m_jwk},
        {"thumbprint", key_m_thumbprint},
        {"public_pem", key_m_public_pem},
        {"private_pem", key_m_private_pem},
        {"write", key_m_write},
        {"close", key_close},
        {NULL, NULL}
    };
    static const luaL_Reg funcs[] = {
        {"key_generate", l_key_generate},
        {"key_load", l_key_load},
        {NULL, NULL}
    };

    luaL_newmetatable(L, LUACME_KEY_MT);    /* sets __name too */
    luaL_setfuncs(L, meta, 0);
    luaL_newlibtable(L, methods);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    luaL_setfuncs(L, funcs, 0);
}
