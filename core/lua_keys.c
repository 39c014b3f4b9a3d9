/*
 * The key userdata ("luacme.key") and the JWS functions of luacme.core.
 * A key box owns one EVP_PKEY; NULL once closed. Private key material
 * stays in C except through private_pem() and write().
 */
#include "lua_bind.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "jws.h"
#include "keys.h"
#include "luacme_limits.h"

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

/* core.public_thumbprint(pem) -> the RFC 7638 thumbprint of a "PUBLIC
 * KEY" PEM | nil, message, kind ("too_large", "parse", "unsupported").
 * Someone else's key arrives as its public half only. */
static int
l_public_thumbprint(lua_State *L)
{
    size_t len;
    const char *pem = luaL_checklstring(L, 1, &len);
    char tp[KEY_THUMBPRINT_LEN + 1];
    struct luacme_err err;
    EVP_PKEY *pkey = NULL;
    int rc;

    if (key_load_public_pem(pem, len, &pkey, &err) != 0)
        return lbind_err(L, &err);
    rc = key_thumbprint(pkey, tp, &err);
    EVP_PKEY_free(pkey);
    if (rc != 0)
        return lbind_err(L, &err);
    lua_pushstring(L, tp);
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
 * atomically with mode 0600 (see key_write_file_atomic). A path with a
 * NUL byte raises: C would write to the part before it. */
static int
key_m_write(lua_State *L)
{
    EVP_PKEY *pkey = key_get(L, 1);
    size_t len;
    const char *path = luaL_checklstring(L, 2, &len);
    struct luacme_err err;

    luaL_argcheck(L, strlen(path) == len, 2, "path contains a NUL byte");

    if (key_write_pem(pkey, path, &err) != 0)
        return lbind_err(L, &err);
    lua_pushboolean(L, 1);
    return 1;
}

/* key:sign(data) -> raw JWS signature bytes (RS256 PKCS#1 v1.5; ES*
 * fixed-width R||S of 64, 96 or 132 bytes) | nil, message, kind. */
static int
key_m_sign(lua_State *L)
{
    EVP_PKEY *pkey = key_get(L, 1);
    size_t len, siglen = 0;
    const char *data = luaL_checklstring(L, 2, &len);
    unsigned char *sig = NULL;
    struct luacme_err err;
    int st;

    if (len > LUACME_B64_MAX)
        return lbind_fail(L, "key: data over LUACME_B64_MAX", "too_large");
    if (jws_sign(pkey, data, len, &sig, &siglen, &err) != 0)
        return lbind_err(L, &err);
    st = safe_pushlstring(L, (const char *)sig, siglen);
    free(sig);
    if (st != 0)
        return lua_error(L);
    return 1;
}

/* key:verify(data, sig) -> boolean: sig is a JWS signature (raw R||S for
 * EC) of data by this key. nil, message, kind only if OpenSSL fails. */
static int
key_m_verify(lua_State *L)
{
    EVP_PKEY *pkey = key_get(L, 1);
    size_t len, siglen;
    const char *data = luaL_checklstring(L, 2, &len);
    const char *sig = luaL_checklstring(L, 3, &siglen);
    struct luacme_err err;
    int v;

    v = jws_verify(pkey, data, len, (const unsigned char *)sig, siglen,
        &err);
    if (v < 0)
        return lbind_err(L, &err);
    lua_pushboolean(L, v);
    return 1;
}

/*
 * A small deterministic JSON encoder for protected headers: object keys
 * sorted bytewise (= by code point for UTF-8), no whitespace, strings
 * escaped per RFC 8259 (never '/'), integers as integers. A value of a
 * type JSON cannot hold is a programmer error and raises. Strings are
 * another matter: the nonce and the URLs come from the server, so bytes
 * that are not UTF-8, or a header over LUACME_B64_MAX, are the world's
 * doing; the encoder then notes the failure in fail/kind, encodes
 * nothing more, and core.jws returns nil, message, kind. The output
 * grows in a userdata at a fixed stack slot, so a raise leaks nothing.
 */
struct jbuf {
    lua_State *L;
    int idx;            /* stack slot of the userdata holding p */
    char *p;
    size_t len, cap;
    const char *fail;   /* set once: why the header cannot be encoded */
    const char *kind;
};

/* Note the first failure; later output is dropped. */
static void
jb_fail(struct jbuf *b, const char *msg, const char *kind)
{
    if (b->fail == NULL) {
        b->fail = msg;
        b->kind = kind;
    }
}

static void
jb_add(struct jbuf *b, const char *s, size_t n)
{
    size_t cap;
    char *np;

    if (b->fail != NULL)
        return;
    if (b->cap - b->len < n) {
        if (n > LUACME_B64_MAX || b->len > LUACME_B64_MAX - n) {
            jb_fail(b, "jws: protected header over LUACME_B64_MAX",
                "too_large");
            return;
        }
        cap = b->cap * 2;
        if (cap < b->len + n)
            cap = b->len + n + 64;
        np = lua_newuserdatauv(b->L, cap, 0);
        if (b->len > 0)
            memcpy(np, b->p, b->len);
        lua_replace(b->L, b->idx);
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

#define jb_lit(b, s) jb_add((b), (s), sizeof(s) - 1)

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid:
 * no overlong forms, surrogates or values over U+10FFFF. */
static size_t
utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len, i;
    unsigned long cp;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
        return 0;
    return len;
}

static void
jb_string(struct jbuf *b, const char *str, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, run, k;
    char esc[6];

    jb_lit(b, "\"");
    while (i < n) {
        /* Copy the longest run that needs no escape in one go. */
        run = i;
        while (run < n && s[run] >= 0x20 && s[run] != '"' &&
            s[run] != '\\') {
            k = utf8_seq(s + run, n - run);
            if (k == 0) {
                jb_fail(b, "jws: cannot encode a string that is not "
                    "UTF-8", "invalid");
                return;
            }
            run += k;
        }
        jb_add(b, str + i, run - i);
        if (run == n)
            break;
        switch (s[run]) {
        case '"': jb_lit(b, "\\\""); break;
        case '\\': jb_lit(b, "\\\\"); break;
        case '\b': jb_lit(b, "\\b"); break;
        case '\f': jb_lit(b, "\\f"); break;
        case '\n': jb_lit(b, "\\n"); break;
        case '\r': jb_lit(b, "\\r"); break;
        case '\t': jb_lit(b, "\\t"); break;
        default:
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[s[run] >> 4];
            esc[5] = hex[s[run] & 0xf];
            jb_add(b, esc, 6);
            break;
        }
        i = run + 1;
    }
    jb_lit(b, "\"");
}

static int
key_cmp(const void *a, const void *b)
{
    const struct lstr *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->s, y->s, n);

    if (c != 0)
        return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

static void jb_value(struct jbuf *b, int vi, int depth);

static void
jb_object(struct jbuf *b, int ti, int depth)
{
    lua_State *L = b->L;
    struct lstr *keys;
    size_t n = 0, i, got;

    if (depth >= LUACME_JSON_MAX_DEPTH)
        luaL_error(L, "jws: tables nested deeper than "
            "LUACME_JSON_MAX_DEPTH");
    luaL_checkstack(L, 4, "jws: protected header");
    lua_pushnil(L);
    while (lua_next(L, ti) != 0) {
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "jws: cannot encode a table with a %s key",
                luaL_typename(L, -2));
        n++;
        lua_pop(L, 1);
    }
    /* The keys stay anchored by the table; only pointers are sorted. */
    keys = lua_newuserdatauv(L, n > 0 ? n * sizeof(*keys) : 1, 0);
    i = 0;
    lua_pushnil(L);
    while (lua_next(L, ti) != 0) {
        if (i < n) {
            keys[i].s = lua_tolstring(L, -2, &keys[i].len);
            i++;
        }
        lua_pop(L, 1);
    }
    got = i;
    qsort(keys, got, sizeof(*keys), key_cmp);
    jb_lit(b, "{");
    for (i = 0; i < got; i++) {
        if (i > 0)
            jb_lit(b, ",");
        jb_string(b, keys[i].s, keys[i].len);
        jb_lit(b, ":");
        lua_pushlstring(L, keys[i].s, keys[i].len);
        lua_rawget(L, ti);
        jb_value(b, lua_gettop(L), depth + 1);
        lua_pop(L, 1);
    }
    jb_lit(b, "}");
    lua_pop(L, 1);      /* keys */
}

static void
jb_value(struct jbuf *b, int vi, int depth)
{
    lua_State *L = b->L;
    const char *s;
    size_t n;
    lua_Integer v;
    int ok;
    char num[32];

    switch (lua_type(L, vi)) {
    case LUA_TSTRING:
        s = lua_tolstring(L, vi, &n);
        jb_string(b, s, n);
        break;
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, vi))
            jb_lit(b, "true");
        else
            jb_lit(b, "false");
        break;
    case LUA_TNUMBER:
        /* Floats with an integral value in range pass as integers. */
        v = lua_tointegerx(L, vi, &ok);
        if (!ok)
            luaL_error(L, "jws: cannot encode a non-integral number");
        n = (size_t)snprintf(num, sizeof(num), LUA_INTEGER_FMT, v);
        jb_add(b, num, n);
        break;
    case LUA_TTABLE:
        jb_object(b, vi, depth);
        break;
    default:
        luaL_error(L, "jws: cannot encode a %s", luaL_typename(L, vi));
    }
}

/* Encode the protected-header table at ti as JSON and push it as a
 * string; alg is set to alg when the table has none (the caller's table
 * is not changed), and an alg it has must be alg ("invalid"). Returns 0; or -1 with the reason in *msg and *kind
 * (static strings) and nil pushed in place of the string, for strings
 * that are not UTF-8 and a header over LUACME_B64_MAX. Raises for values
 * JSON cannot hold (see struct jbuf). */
static int
push_protected(lua_State *L, int ti, const char *alg, const char **msg,
    const char **kind)
{
    struct jbuf b;

    luaL_checkstack(L, 6, "jws: protected header");
    lua_pushliteral(L, "alg");
    if (lua_rawget(L, ti) == LUA_TNIL) {
        /* A shallow copy with alg added. */
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushnil(L);
        while (lua_next(L, ti) != 0) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, -4);
        }
        lua_pushstring(L, alg);
        lua_setfield(L, -2, "alg");
    } else {
        /* A header naming another algorithm than the one we sign with
         * is a caller's mistake or a downgrade; the CA would reject it
         * at best. */
        if (lua_type(L, -1) != LUA_TSTRING ||
            strcmp(lua_tostring(L, -1), alg) != 0) {
            lua_pop(L, 1);
            lua_pushnil(L);
            *msg = "jws: the header's alg does not match the key";
            *kind = "invalid";
            return -1;
        }
        lua_pop(L, 1);
        lua_pushvalue(L, ti);
    }
    ti = lua_gettop(L);
    b.L = L;
    b.cap = 256;
    b.len = 0;
    b.fail = b.kind = NULL;
    b.p = lua_newuserdatauv(L, b.cap, 0);
    b.idx = lua_gettop(L);
    jb_value(&b, ti, 0);
    if (b.fail != NULL)
        lua_pushnil(L);
    else
        lua_pushlstring(L, b.p, b.len);
    lua_replace(L, ti);
    lua_settop(L, ti);
    *msg = b.fail;
    *kind = b.kind;
    return b.fail != NULL ? -1 : 0;
}

/* Shared tail of core.jws and core.jws_hmac: the flattened JWS of the
 * protected JSON at stack index 4 and the payload at 3. */
static int
push_flattened(lua_State *L, EVP_PKEY *pkey, const unsigned char *mac,
    size_t maclen)
{
    size_t plen, paylen, outlen = 0;
    const char *prot = lua_tolstring(L, 4, &plen);
    const char *payload = lua_tolstring(L, 3, &paylen);
    char *out = NULL;
    struct luacme_err err;
    int st;

    if (pkey != NULL)
        st = jws_flatten(pkey, prot, plen, payload, paylen, &out, &outlen,
            &err);
    else
        st = jws_flatten_hmac(mac, maclen, prot, plen, payload, paylen,
            &out, &outlen, &err);
    if (st != 0)
        return lbind_err(L, &err);
    st = safe_pushlstring(L, out, outlen);
    free(out);
    if (st != 0)
        return lua_error(L);
    return 1;
}

/* core.jws(key, protected, payload) -> flattened JSON JWS string
 * {"protected":..,"payload":..,"signature":..} | nil, message, kind.
 * protected is a table (alg filled from the key when absent) encoded
 * with sorted keys; payload a string sent as given. Kinds: "invalid" for
 * a string in protected that is not UTF-8 (a nonce or URL from the
 * server can be anything), "too_large" for protected or payload over
 * LUACME_B64_MAX, else as jws_sign. Values JSON cannot hold (functions,
 * non-integral numbers, non-string keys, nesting deeper than
 * LUACME_JSON_MAX_DEPTH) raise. */
static int
l_jws(lua_State *L)
{
    const char *alg = key_alg(key_get(L, 1));
    const char *msg, *kind;

    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checkstring(L, 3);
    lua_settop(L, 3);
    if (alg == NULL)
        return lbind_fail(L, "jws: unsupported key", "unsupported");
    if (push_protected(L, 2, alg, &msg, &kind) != 0)
        return lbind_fail(L, msg, kind);
    /* The key again: encoding allocated, and a finalizer may have
     * closed it meanwhile (key_get then raises). */
    return push_flattened(L, key_get(L, 1), NULL, 0);
}

/* core.jws_hmac(mac_key, protected, payload) -> the same with HS256
 * under the raw (already base64url-decoded) mac_key; alg defaults to
 * "HS256". Fails and raises as core.jws. */
static int
l_jws_hmac(lua_State *L)
{
    size_t klen;
    const char *mac = luaL_checklstring(L, 1, &klen);
    const char *msg, *kind;

    luaL_argcheck(L, klen > 0, 1, "empty MAC key");
    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checkstring(L, 3);
    lua_settop(L, 3);
    if (push_protected(L, 2, "HS256", &msg, &kind) != 0)
        return lbind_fail(L, msg, kind);
    return push_flattened(L, NULL, (const unsigned char *)mac, klen);
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
        {"sign", key_m_sign},
        {"verify", key_m_verify},
        {"public_pem", key_m_public_pem},
        {"private_pem", key_m_private_pem},
        {"write", key_m_write},
        {"close", key_close},
        {NULL, NULL}
    };
    static const luaL_Reg funcs[] = {
        {"key_generate", l_key_generate},
        {"key_load", l_key_load},
        {"public_thumbprint", l_public_thumbprint},
        {"jws", l_jws},
        {"jws_hmac", l_jws_hmac},
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
