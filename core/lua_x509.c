/*
 * The X.509 functions of luacme.core: csr, cert_info, pem_split,
 * pem_encode, pem_decode, cert_matches_key, tls_alpn01_cert and
 * reverse_name. Thin: the work is in x509.c.
 *
 * Whatever x509.c hands back is parked in a box userdata before anything
 * is pushed, so a raise (out of memory) lets __gc free it; each function
 * empties its box at the end so memory goes back at once.
 */
#include "lua_bind.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "luacme_limits.h"
#include "x509.h"

#define BOX_MT "luacme.x509.box"

struct box {
    X509 *cert;
    EVP_PKEY *pkey;
    unsigned char *der;
    size_t der_len;
    char *str;
    size_t str_len;
    char *label;
    char **list;
    size_t nlist;
    struct x509_info info;
    struct x509_csr_info csr;
};

/* __gc and __close: free whatever the box holds; idempotent. */
static int
box_gc(lua_State *L)
{
    struct box *b = luaL_checkudata(L, 1, BOX_MT);

    X509_free(b->cert);
    EVP_PKEY_free(b->pkey);
    free(b->der);
    free(b->str);
    free(b->label);
    x509_strv_free(b->list, b->nlist);
    x509_info_free(&b->info);
    x509_csr_info_free(&b->csr);
    memset(b, 0, sizeof(*b));
    return 0;
}

/* A new empty box on top of the stack; may raise (memory) but then
 * nothing is held yet. */
static struct box *
box_new(lua_State *L)
{
    struct box *b = lua_newuserdatauv(L, sizeof(*b), 0);

    memset(b, 0, sizeof(*b));
    luaL_setmetatable(L, BOX_MT);
    return b;
}

/* Free the box at idx now rather than at the next collection. */
static void
box_empty(lua_State *L, int idx)
{
    lua_pushcfunction(L, box_gc);
    lua_pushvalue(L, idx);
    lua_call(L, 1, 0);
}

/* Extra arguments are a caller bug (STYLE: raise). */
static void
check_nargs(lua_State *L, int max)
{
    if (lua_gettop(L) > max)
        luaL_argerror(L, max + 1, "no value expected");
}

/* Push nil, message, kind and empty the box at idx first. */
static int
fail_box(lua_State *L, int idx, const struct luacme_err *err)
{
    box_empty(L, idx);
    return lbind_err(L, err);
}

/* Push t[field] of the table at idx without metamethods: a caller's
 * __index must not run while C holds pointers into the arguments (it
 * could close the key or drop the names). Returns the value's type. */
static int
raw_field(lua_State *L, int idx, const char *field)
{
    lua_pushstring(L, field);
    return lua_rawget(L, idx);
}

/* The strings of the list field `field` of the table at idx (nil means
 * empty) into an array of C strings. The strings are our own copies
 * (DNS names lower-cased when lower), kept in a table only this call
 * can reach, so nothing the caller runs (a finalizer included) can
 * free them. Pushes that table and the array (a userdata); returns the
 * count. Raises for a field that is not a table or an element that is
 * not a string; a string with a NUL byte sets *bad (the caller returns
 * "invalid"). */
static size_t
string_list(lua_State *L, int idx, const char *field, int lower,
    const char ***out, int *bad)
{
    const char **v;
    const char *s;
    char *d;
    size_t i, n, len, k;
    luaL_Buffer buf;
    int t;

    t = raw_field(L, idx, field);
    if (t != LUA_TNIL && t != LUA_TTABLE)
        luaL_error(L, "csr: field '%s' must be a list of strings", field);
    n = t == LUA_TNIL ? 0 : (size_t)lua_rawlen(L, -1);
    if (n > LUACME_CSR_MAX_NAMES) {
        /* Checked again in x509.c; here it saves a huge allocation. */
        *bad = 2;
        n = 0;
    }
    lua_createtable(L, (int)n, 0);                      /* the copies */
    for (i = 0; i < n; i++) {
        /* rawgeti: no metamethod may run and drop the string. */
        if (lua_rawgeti(L, -2, (lua_Integer)i + 1) != LUA_TSTRING)
            luaL_error(L, "csr: %s[%d] must be a string", field, (int)i + 1);
        s = lua_tolstring(L, -1, &len);
        if (strlen(s) != len)
            *bad = 1;
        d = luaL_buffinitsize(L, &buf, len);
        for (k = 0; k < len; k++)
            d[k] = lower && s[k] >= 'A' && s[k] <= 'Z' ?
                (char)(s[k] - 'A' + 'a') : s[k];
        luaL_pushresultsize(&buf, len);
        lua_rawseti(L, -3, (lua_Integer)i + 1);
        lua_pop(L, 1);
    }
    lua_remove(L, -2);          /* the caller's list (or nil) */
    v = lua_newuserdatauv(L, (n > 0 ? n : 1) * sizeof(char *), 0);
    for (i = 0; i < n; i++) {
        lua_rawgeti(L, -2, (lua_Integer)i + 1);
        v[i] = lua_tostring(L, -1);     /* anchored by the copies table */
        lua_pop(L, 1);
    }
    *out = v;
    return n;
}

/* The subject attributes a template may name (x509.h), in DN order. */
static const char *const csr_attrs[] = {
    "C", "ST", "L", "street", "postalCode", "O", "OU", "CN", "serialNumber",
    NULL
};

/* Anchor the string on top of the stack in the table at anchor (so it
 * outlives whatever the caller does with its own tables) and return it;
 * a NUL byte in it sets *bad. Leaves the stack as it was. */
static const char *
anchor_string(lua_State *L, int anchor, size_t *len, int *bad)
{
    const char *s = lua_tolstring(L, -1, len);

    if (strlen(s) != *len)
        *bad = 1;
    lua_pushvalue(L, -1);
    lua_rawseti(L, anchor, (lua_Integer)lua_rawlen(L, anchor) + 1);
    return s;
}

/* Raise unless every key of the table at idx is one of names. */
static void
check_keys(lua_State *L, int idx, const char *what,
    const char *const *names)
{
    int i;

    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "csr: %s: unexpected non-string key", what);
        for (i = 0; names[i] != NULL; i++)
            if (strcmp(names[i], lua_tostring(L, -1)) == 0)
                break;
        if (names[i] == NULL)
            luaL_error(L, "csr: %s: unknown field '%s'", what,
                lua_tostring(L, -1));
    }
}

/* Read the template fields `subject` ({CN=, O= string or list, ...})
 * and `extensions` ({{oid=, value=, critical=}, ...}) of the table at
 * index 1 into *t, raw. Pushes 3 values that keep it valid: the table
 * anchoring its strings and the two arrays. Too many entries set *bad
 * to 2, a NUL byte to 1. Wrong shapes raise. */
static void
read_template(lua_State *L, struct x509_csr_template *t, int *bad)
{
    static const char *const ext_fields[] = {
        "oid", "value", "critical", NULL
    };
    struct x509_csr_attr *sa;
    struct x509_csr_ext *ea;
    const char *v;
    size_t len, i, n;
    int anchor, idx, k, vt;

    memset(t, 0, sizeof(*t));
    lua_newtable(L);
    anchor = lua_gettop(L);
    sa = lua_newuserdatauv(L, LUACME_CSR_MAX_TEMPLATE * sizeof(*sa), 0);
    ea = lua_newuserdatauv(L, LUACME_CSR_MAX_TEMPLATE * sizeof(*ea), 0);
    vt = raw_field(L, 1, "subject");
    idx = lua_gettop(L);
    if (vt == LUA_TTABLE) {
        check_keys(L, idx, "subject", csr_attrs);
        for (k = 0; csr_attrs[k] != NULL; k++) {
            vt = raw_field(L, idx, csr_attrs[k]);
            n = vt == LUA_TTABLE ? (size_t)lua_rawlen(L, -1) :
                vt == LUA_TSTRING ? 1 : 0;
            if (vt != LUA_TNIL && vt != LUA_TTABLE && vt != LUA_TSTRING)
                luaL_error(L, "csr: subject %s must be a string or a list "
                    "of strings", csr_attrs[k]);
            for (i = 0; i < n; i++) {
                if (vt == LUA_TTABLE &&
                    lua_rawgeti(L, -1, (lua_Integer)i + 1) != LUA_TSTRING)
                    luaL_error(L, "csr: subject %s[%d] must be a string",
                        csr_attrs[k], (int)i + 1);
                if (vt == LUA_TSTRING)
                    lua_pushvalue(L, -1);
                v = anchor_string(L, anchor, &len, bad);
                lua_pop(L, 1);
                if (t->nsubject == LUACME_CSR_MAX_TEMPLATE) {
                    *bad = 2;
                    continue;
                }
                sa[t->nsubject].field = csr_attrs[k];
                sa[t->nsubject++].value = v;
            }
            lua_pop(L, 1);
        }
    } else if (vt != LUA_TNIL) {
        luaL_error(L, "csr: field 'subject' must be a table");
    }
    lua_pop(L, 1);
    vt = raw_field(L, 1, "extensions");
    idx = lua_gettop(L);
    if (vt != LUA_TNIL && vt != LUA_TTABLE)
        luaL_error(L, "csr: field 'extensions' must be a list of tables");
    n = vt == LUA_TTABLE ? (size_t)lua_rawlen(L, idx) : 0;
    for (i = 0; i < n; i++) {
        struct x509_csr_ext e;
        int et;

        if (lua_rawgeti(L, idx, (lua_Integer)i + 1) != LUA_TTABLE)
            luaL_error(L, "csr: extensions[%d] must be a table", (int)i + 1);
        et = lua_gettop(L);
        check_keys(L, et, "extension", ext_fields);
        if (raw_field(L, et, "oid") != LUA_TSTRING)
            luaL_error(L, "csr: extensions[%d].oid must be a string",
                (int)i + 1);
        e.oid = anchor_string(L, anchor, &len, bad);
        lua_pop(L, 1);
        if (raw_field(L, et, "value") != LUA_TSTRING)
            luaL_error(L, "csr: extensions[%d].value must be a string "
                "(DER)", (int)i + 1);
        e.value = (const unsigned char *)anchor_string(L, anchor, &e.len,
            &k);                /* DER may hold NUL bytes */
        lua_pop(L, 1);
        vt = raw_field(L, et, "critical");
        if (vt != LUA_TNIL && vt != LUA_TBOOLEAN)
            luaL_error(L, "csr: extensions[%d].critical must be a boolean",
                (int)i + 1);
        e.critical = lua_toboolean(L, -1);
        lua_pop(L, 2);
        if (t->next == LUACME_CSR_MAX_TEMPLATE) {
            *bad = 2;
            continue;
        }
        ea[t->next++] = e;
    }
    lua_pop(L, 1);
    t->subject = sa;
    t->ext = ea;
}

/* core.csr{key=, names={...}, ips={...}, must_staple=false, subject=,
 * extensions=} -> DER string of a PKCS#10 CSR signed by key | nil,
 * message, "invalid" for bad or missing names and IPs and a template
 * x509_csr_ex refuses. DNS names are lower-cased (ASCII), as orders
 * are. subject = {CN=, O=, OU=, C=, ST=, L=, street=, postalCode=,
 * serialNumber=} (each a string or a list of strings); extensions =
 * {{oid = "1.2.3", value = DER, critical = false}, ...}. The table is
 * read raw (no metamethods). Unknown fields and wrong types raise. */
static int
l_csr(lua_State *L)
{
    static const char *const fields[] = {
        "key", "names", "ips", "must_staple", "subject", "extensions", NULL
    };
    const char **names, **ips;
    struct x509_csr_template tmpl;
    size_t nnames, nips;
    EVP_PKEY *key;
    struct luacme_err err;
    struct box *b;
    int bad = 0, staple = 0, t, i;

    luaL_checktype(L, 1, LUA_TTABLE);
    check_nargs(L, 1);
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, "csr: unexpected non-string field");
        for (i = 0; fields[i] != NULL; i++)
            if (strcmp(fields[i], lua_tostring(L, -1)) == 0)
                break;
        if (fields[i] == NULL)
            return luaL_error(L, "csr: unknown field '%s'",
                lua_tostring(L, -1));
    }
    t = raw_field(L, 1, "must_staple");
    if (t != LUA_TNIL && t != LUA_TBOOLEAN)
        return luaL_error(L, "csr: field 'must_staple' must be a boolean");
    staple = lua_toboolean(L, -1);
    lua_pop(L, 1);
    nnames = string_list(L, 1, "names", 1, &names, &bad);     /* 2, 3 */
    nips = string_list(L, 1, "ips", 0, &ips, &bad);           /* 4, 5 */
    if (bad == 1)
        return lbind_fail(L, "csr: name or IP with a NUL byte", "invalid");
    if (bad == 2 || nnames + nips > LUACME_CSR_MAX_NAMES)
        return lbind_fail(L, "csr: more than LUACME_CSR_MAX_NAMES names",
            "invalid");
    read_template(L, &tmpl, &bad);                            /* 6, 7, 8 */
    if (bad == 1)
        return lbind_fail(L, "csr: subject value or extension OID with a "
            "NUL byte", "invalid");
    if (bad == 2)
        return lbind_fail(L, "csr: more than LUACME_CSR_MAX_TEMPLATE "
            "subject attributes or extensions", "invalid");
    b = box_new(L);                                           /* 9 */
    /* The key last: from here on nothing allocates (no collection, no
     * finalizer) before x509_csr_ex is done with it; the userdata stays
     * on the stack. */
    raw_field(L, 1, "key");                                   /* 10 */
    if (luaL_testudata(L, 10, LUACME_KEY_MT) == NULL)
        return luaL_error(L, "csr: field 'key' must be a luacme.key");
    key = lbind_checkkey(L, 10);
    if (x509_csr_ex(key, names, nnames, ips, nips, staple,
        tmpl.nsubject + tmpl.next > 0 ? &tmpl : NULL, &b->der,
        &b->der_len, &err) != 0)
        return fail_box(L, 9, &err);
    lua_pushlstring(L, (const char *)b->der, b->der_len);
    box_empty(L, 9);
    return 1;
}

static void
set_str(lua_State *L, const char *k, const char *v)
{
    if (v == NULL)
        return;
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

static void
set_bytes(lua_State *L, const char *k, const unsigned char *v, size_t len)
{
    if (v == NULL)
        return;
    lua_pushlstring(L, (const char *)v, len);
    lua_setfield(L, -2, k);
}

static void
set_list(lua_State *L, const char *k, char **v, size_t n)
{
    size_t i;

    lua_createtable(L, (int)n, 0);
    for (i = 0; i < n; i++) {
        lua_pushstring(L, v[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, k);
}

/* Load the certificate at arg idx into b->cert. Returns 0, or pushes
 * nil, message, kind (after emptying the box at bidx) and returns 3. */
static int
load_cert(lua_State *L, int idx, struct box *b, int bidx)
{
    size_t len;
    const char *s = luaL_checklstring(L, idx, &len);
    struct luacme_err err;

    if (x509_load(s, len, &b->cert, &err) != 0)
        return fail_box(L, bidx, &err);
    return 0;
}

/* core.cert_info(pem_or_der) -> table (see x509.h struct x509_info; aki,
 * ski, subject_cn and issuer_cn absent when the certificate has none) |
 * nil, message, "parse" | "too_large". PEM: the first certificate. */
static int
l_cert_info(lua_State *L)
{
    struct luacme_err err;
    struct box *b;
    const struct x509_info *in;

    luaL_checkstring(L, 1);
    check_nargs(L, 1);
    b = box_new(L);                                     /* 2 */
    if (load_cert(L, 1, b, 2) != 0)
        return 3;
    if (x509_info(b->cert, &b->info, &err) != 0)
        return fail_box(L, 2, &err);
    in = &b->info;
    lua_createtable(L, 0, 20);
    set_str(L, "subject", in->subject);
    set_str(L, "issuer", in->issuer);
    set_str(L, "subject_cn", in->subject_cn);
    set_str(L, "issuer_cn", in->issuer_cn);
    set_str(L, "serial", in->serial);
    lua_pushinteger(L, (lua_Integer)in->not_before);
    lua_setfield(L, -2, "not_before");
    lua_pushinteger(L, (lua_Integer)in->not_after);
    lua_setfield(L, -2, "not_after");
    set_list(L, "names", in->names.dns, in->names.ndns);
    set_list(L, "ips", in->names.ip, in->names.nip);
    set_bytes(L, "aki", in->aki, in->aki_len);
    set_bytes(L, "ski", in->ski, in->ski_len);
    lua_pushboolean(L, in->is_ca);
    lua_setfield(L, -2, "is_ca");
    lua_pushboolean(L, in->must_staple);
    lua_setfield(L, -2, "must_staple");
    set_bytes(L, "der", in->der, in->der_len);
    set_str(L, "sha256", in->sha256);
    set_str(L, "key_type", in->key_type);
    box_empty(L, 2);
    return 1;
}

/* core.csr_info(der) -> {names=, ips=, cn= (absent when none),
 * must_staple=, public_key= (DER SubjectPublicKeyInfo)} after checking
 * the CSR's self-signature | nil, message, "parse" | "too_large". */
static int
l_csr_info(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    struct luacme_err err;
    struct box *b;

    check_nargs(L, 1);
    b = box_new(L);                                     /* 2 */
    if (x509_csr_read((const unsigned char *)s, len, &b->csr, &err) != 0)
        return fail_box(L, 2, &err);
    lua_createtable(L, 0, 5);
    set_list(L, "names", b->csr.names.dns, b->csr.names.ndns);
    set_list(L, "ips", b->csr.names.ip, b->csr.names.nip);
    set_str(L, "cn", b->csr.cn);
    lua_pushboolean(L, b->csr.must_staple);
    lua_setfield(L, -2, "must_staple");
    set_bytes(L, "public_key", b->csr.spki, b->csr.spki_len);
    box_empty(L, 2);
    return 1;
}

/* core.pem_split(pem) -> list of normalised certificate PEM strings |
 * nil, message, kind: "private_key" when any block is a private key,
 * "parse" for no certificate or any other block, "too_large" over
 * LUACME_PEM_MAX or LUACME_CHAIN_MAX_CERTS. */
static int
l_pem_split(lua_State *L)
{
    size_t len, i;
    const char *s = luaL_checklstring(L, 1, &len);
    struct luacme_err err;
    struct box *b;

    check_nargs(L, 1);
    b = box_new(L);                                     /* 2 */
    if (x509_pem_split(s, len, &b->list, &b->nlist, &err) != 0)
        return fail_box(L, 2, &err);
    lua_createtable(L, (int)b->nlist, 0);
    for (i = 0; i < b->nlist; i++) {
        lua_pushstring(L, b->list[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    box_empty(L, 2);
    return 1;
}

/* core.pem_encode(der[, label="CERTIFICATE"]) -> PEM string | nil,
 * message, "too_large" | "invalid" (empty der). A malformed label is a
 * caller bug and raises. */
static int
l_pem_encode(lua_State *L)
{
    size_t len;
    const char *der = luaL_checklstring(L, 1, &len);
    const char *label = luaL_optstring(L, 2, "CERTIFICATE");
    struct luacme_err err;
    struct box *b;

    check_nargs(L, 2);
    luaL_argcheck(L, x509_pem_label_ok(label), 2, "bad PEM label");
    lua_settop(L, 2);           /* fixed slots: the box is 3 */
    b = box_new(L);                                     /* 3 */
    if (x509_pem_encode(der, len, label, &b->str, &b->str_len, &err) != 0)
        return fail_box(L, 3, &err);
    lua_pushlstring(L, b->str, b->str_len);
    box_empty(L, 3);
    return 1;
}

/* core.pem_decode(pem) -> der, label of the first PEM block | nil,
 * message, "parse" | "private_key" | "too_large". */
static int
l_pem_decode(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    struct luacme_err err;
    struct box *b;

    check_nargs(L, 1);
    b = box_new(L);                                     /* 2 */
    if (x509_pem_decode(s, len, &b->der, &b->der_len, &b->label, &err) != 0)
        return fail_box(L, 2, &err);
    lua_pushlstring(L, (const char *)b->der, b->der_len);
    lua_pushstring(L, b->label);
    box_empty(L, 2);
    return 2;
}

/* core.cert_matches_key(cert_pem_or_der, key) -> boolean | nil, message,
 * kind when the certificate does not parse. A non-key raises. */
static int
l_cert_matches_key(lua_State *L)
{
    EVP_PKEY *key;
    struct box *b;
    int eq;

    luaL_checkstring(L, 1);
    key = lbind_checkkey(L, 2);
    check_nargs(L, 2);
    b = box_new(L);                                     /* 3 */
    if (load_cert(L, 1, b, 3) != 0)
        return 3;
    eq = x509_matches_key(b->cert, key);
    box_empty(L, 3);
    lua_pushboolean(L, eq);
    return 1;
}

/* core.tls_alpn01_cert(identifier, key_authorization[, key]) -> cert PEM,
 * key: the RFC 8737 certificate (RFC 8738 iPAddress for IPs). Without a
 * key a fresh P-256 key is generated and returned; with one, the same key
 * object is returned. Bad identifiers give nil, message, "invalid". */
static int
l_tls_alpn01_cert(lua_State *L)
{
    size_t idlen, kalen;
    const char *id = luaL_checklstring(L, 1, &idlen);
    const char *ka = luaL_checklstring(L, 2, &kalen);
    struct luacme_err err;
    struct box *b;
    EVP_PKEY *key = NULL;

    if (!lua_isnoneornil(L, 3))
        key = lbind_checkkey(L, 3);
    check_nargs(L, 3);
    lua_settop(L, 3);           /* fixed slots: the box is 4 */
    if (strlen(id) != idlen)
        return lbind_fail(L, "tls-alpn-01: identifier with a NUL byte",
            "invalid");
    b = box_new(L);                                     /* 4 */
    if (key == NULL) {
        if (x509_tls_alpn01(id, ka, kalen, &b->pkey, &b->str, &err) != 0)
            return fail_box(L, 4, &err);
    } else {
        if (x509_tls_alpn01(id, ka, kalen, &key, &b->str, &err) != 0)
            return fail_box(L, 4, &err);
    }
    lua_pushstring(L, b->str);
    if (key == NULL) {
        key = b->pkey;
        b->pkey = NULL;         /* lbind_pushkey owns it, even on a raise */
        lbind_pushkey(L, key);
    } else {
        lua_pushvalue(L, 3);
    }
    box_empty(L, 4);
    return 2;
}

/* core.reverse_name(ip) -> "1.0.0.127.in-addr.arpa" (RFC 8738 §6, no
 * trailing dot) | nil, message, "invalid". */
static int
l_reverse_name(lua_State *L)
{
    size_t len;
    const char *ip = luaL_checklstring(L, 1, &len);
    char out[X509_REVERSE_NAME_MAX];
    struct luacme_err err;

    check_nargs(L, 1);
    if (strlen(ip) != len)
        return lbind_fail(L, "reverse_name: NUL byte in address", "invalid");
    if (x509_reverse_name(ip, out, sizeof(out), &err) != 0)
        return lbind_err(L, &err);
    lua_pushstring(L, out);
    return 1;
}

void
lbind_x509(lua_State *L)
{
    static const luaL_Reg meta[] = {
        {"__gc", box_gc},
        {"__close", box_gc},
        {NULL, NULL}
    };
    static const luaL_Reg funcs[] = {
        {"csr", l_csr},
        {"csr_info", l_csr_info},
        {"cert_info", l_cert_info},
        {"pem_split", l_pem_split},
        {"pem_encode", l_pem_encode},
        {"pem_decode", l_pem_decode},
        {"cert_matches_key", l_cert_matches_key},
        {"tls_alpn01_cert", l_tls_alpn01_cert},
        {"reverse_name", l_reverse_name},
        {NULL, NULL}
    };

    luaL_newmetatable(L, BOX_MT);
    luaL_setfuncs(L, meta, 0);
    lua_pop(L, 1);
    luaL_setfuncs(L, funcs, 0);
}
