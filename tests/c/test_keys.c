/*
 * keys: RFC 7638 / RFC 7520 / golang.org/x/crypto thumbprint vectors,
 * JWK member widths (EC leading zero kept, RSA no sign byte), loading of
 * every PEM flavour and its refusals, PEM output, the atomic write and
 * the name of the temporary file it may leave behind.
 * Runs from the source directory (fixtures in tests/fixtures/keys).
 */
#include <ctype.h>
#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/param_build.h>

#include "b64.h"
#include "check.h"
#include "keys.h"
#include "luacme_limits.h"

#define FIX "tests/fixtures/keys/"

static char *
readfile(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;

    if (f == NULL)
        return NULL;
    n = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (n >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        buf = malloc((size_t)n + 1);
        if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
            free(buf);
            buf = NULL;
        } else if (buf != NULL) {
            buf[n] = '\0';
            *len = (size_t)n;
        }
    }
    fclose(f);
    return buf;
}

static EVP_PKEY *
load(const char *name)
{
    char path[256];
    size_t len = 0;
    char *pem;
    EVP_PKEY *key = NULL;
    struct luacme_err err;

    snprintf(path, sizeof(path), FIX "%s", name);
    pem = readfile(path, &len);
    CHECK(pem != NULL);
    if (pem == NULL)
        return NULL;
    if (key_load_pem(pem, len, &key, &err) != 0)
        fprintf(stderr, "load %s: %s\n", name, err.msg);
    free(pem);
    CHECK(key != NULL);
    return key;
}

/* Expect key_load_pem of the fixture to fail with kind and a message
 * containing what. */
static void
refuse(const char *name, const char *kind, const char *what)
{
    char path[256];
    size_t len = 0;
    char *pem;
    EVP_PKEY *key = NULL;
    struct luacme_err err;

    snprintf(path, sizeof(path), FIX "%s", name);
    pem = readfile(path, &len);
    CHECK(pem != NULL);
    CHECK(key_load_pem(pem ? pem : "", len, &key, &err) == -1);
    CHECK(key == NULL);
    CHECK_STR(err.kind, kind);
    CHECK(strstr(err.msg, what) != NULL);
    free(pem);
}

static unsigned char *
unb64(const char *s, size_t *len)
{
    unsigned char *out = NULL;
    struct luacme_err err;

    if (b64url_decode(s, strlen(s), &out, len, &err) != 0)
        return NULL;
    return out;
}

/* A public key from JWK members, built with OpenSSL directly so the
 * thumbprint code is tested against the published vectors. */
static EVP_PKEY *
rsa_public(const char *n64, const char *e64)
{
    size_t nl = 0, el = 0;
    unsigned char *n = unb64(n64, &nl), *e = unb64(e64, &el);
    BIGNUM *bn = BN_bin2bn(n, (int)nl, NULL), *be = BN_bin2bn(e, (int)el,
        NULL);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    EVP_PKEY *key = NULL;

    if (OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) == 1 &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) == 1)
        params = OSSL_PARAM_BLD_to_param(bld);
    if (params == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) != 1)
        key = NULL;
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    EVP_PKEY_CTX_free(ctx);
    BN_free(bn);
    BN_free(be);
    free(n);
    free(e);
    CHECK(key != NULL);
    return key;
}

static EVP_PKEY *
ec_public(const char *group, const char *x64, const char *y64)
{
    size_t xl = 0, yl = 0;
    unsigned char *x = unb64(x64, &xl), *y = unb64(y64, &yl);
    unsigned char pt[1 + 2 * 66];
    OSSL_PARAM params[3];
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *key = NULL;

    if (x != NULL && y != NULL && xl == yl && xl <= 66) {
        pt[0] = 4;
        memcpy(pt + 1, x, xl);
        memcpy(pt + 1 + xl, y, yl);
        params[0] = OSSL_PARAM_construct_utf8_string(
            OSSL_PKEY_PARAM_GROUP_NAME, (char *)group, 0);
        params[1] = OSSL_PARAM_construct_octet_string(
            OSSL_PKEY_PARAM_PUB_KEY, pt, 1 + 2 * xl);
        params[2] = OSSL_PARAM_construct_end();
        if (EVP_PKEY_fromdata_init(ctx) != 1 ||
            EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) != 1)
            key = NULL;
    }
    EVP_PKEY_CTX_free(ctx);
    free(x);
    free(y);
    CHECK(key != NULL);
    return key;
}

static void
check_thumbprint(EVP_PKEY *key, const char *want)
{
    char tp[KEY_THUMBPRINT_LEN + 1];
    struct luacme_err err;

    memset(tp, 0, sizeof(tp));
    CHECK(key != NULL && key_thumbprint(key, tp, &err) == 0);
    CHECK_STR(tp, want);
}

static void
check_json(EVP_PKEY *key, const char *want)
{
    char *json = NULL;
    struct luacme_err err;

    CHECK(key != NULL && key_jwk_json(key, &json, &err) == 0);
    CHECK_STR(json, want);
    free(json);
}

static const char rfc7638_n[] =
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7"
    "aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBX"
    "Arwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c"
    "7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4l"
    "Fd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

static void
test_published_thumbprints(void)
{
    EVP_PKEY *k;
    char want[1024];

    /* RFC 7638 §3.1, with the exact canonical input. */
    k = rsa_public(rfc7638_n, "AQAB");
    snprintf(want, sizeof(want),
        "{\"e\":\"AQAB\",\"kty\":\"RSA\",\"n\":\"%s\"}", rfc7638_n);
    check_json(k, want);
    check_thumbprint(k, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    CHECK_STR(key_alg(k), "RS256");
    EVP_PKEY_free(k);

    /* RFC 7520 §3.1 P-521 key: x starts with 00, so a stripped
     * coordinate would change the thumbprint. */
    k = ec_public("P-521",
        "AHKZLLOsCOzz5cY97ewNUajB957y-C-U88c3v13nmGZx6sYl_oJXu9A5RkTKqjqvjyek"
        "WF-7ytDyRXYgCF5cj0Kt",
        "AdymlHvOiLxXkEhayXQnNCvDX4h9htZaCJN34kfmC6pV5OhQHiraVySsUdaQkAgDPrwQ"
        "rJmbnX9cwlGfP-HqHZR1");
    check_thumbprint(k, "dHri3SADZkrush5HU_50AoRhcKFryN-PI6jPBtPL55M");
    CHECK_STR(key_alg(k), "ES512");
    CHECK(key_ec_width(k) == 66);
    EVP_PKEY_free(k);

    /* RFC 7515 A.3 P-256 key. */
    k = ec_public("P-256", "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0");
    check_thumbprint(k, "oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U");
    EVP_PKEY_free(k);
}

static void
test_go_keys(void)
{
    EVP_PKEY *k;
    struct key_jwk jwk;
    struct luacme_err err;
    unsigned char *n;
    size_t nl = 0;
    char spec[16];

    /* PKCS#1 "RSA PRIVATE KEY". */
    k = load("go-testkey-rsa.pem");
    check_thumbprint(k, "6nicxzh6WETQlrvdchkz-U3e3DOQZ4heJKU63rfqMqQ");
    CHECK(key_jwk(k, &jwk, &err) == 0);
    CHECK_STR(jwk.kty, "RSA");
    CHECK(jwk.crv == NULL && jwk.x == NULL);
    CHECK_STR(jwk.e, "AQAB");
    /* The modulus' high bit is set: n is 256 bytes with no 00 sign
     * byte in front. */
    n = jwk.n ? unb64(jwk.n, &nl) : NULL;
    CHECK(n != NULL && nl == 256 && (n[0] & 0x80) != 0);
    CHECK(jwk.n != NULL && strncmp(jwk.n, "4xgZ3eRPkwoRvy7qeRUb", 20) == 0);
    free(n);
    key_jwk_free(&jwk);
    CHECK(jwk.n == NULL);
    CHECK_STR(key_alg(k), "RS256");
    CHECK(key_spec_name(k, spec, sizeof(spec)) == 0);
    CHECK_STR(spec, "rsa2048");
    CHECK(key_ec_width(k) == 0);
    EVP_PKEY_free(k);

    /* SEC1 "EC PRIVATE KEY", all three curves, against Go's values. */
    k = load("go-testkey-ec256.pem");
    check_json(k, "{\"crv\":\"P-256\",\"kty\":\"EC\","
        "\"x\":\"5lhEug5xK4xBDZ2nAbaxLtaLiv85bxJ7ePd1dkO23HQ\","
        "\"y\":\"4aiK72sBeUAGkv0TaLsmwokYUYyNxGsS5EMIKwsNIKk\"}");
    check_thumbprint(k, "zedj-Bd1Zshp8KLePv2MB-lJ_Hagp7wAwdkA0NUTniU");
    CHECK_STR(key_alg(k), "ES256");
    CHECK(key_spec_name(k, spec, sizeof(spec)) == 0);
    CHECK_STR(spec, "ec256");
    CHECK(key_spec_name(k, spec, 3) == -1);     /* too small a buffer */
    EVP_PKEY_free(k);

    k = load("go-testkey-ec384.pem");
    CHECK(key_jwk(k, &jwk, &err) == 0);
    CHECK_STR(jwk.crv, "P-384");
    CHECK_STR(jwk.x,
        "MyrY_jLNLx6E1-Xc79_y-WDFzlriOVCkYyYoKWoWAqlw9gQNY9BP9sbeb5T3_oJt");
    CHECK_STR(jwk.y,
        "Dy_lB0kLAqJBpyBrmhwrCQKd68tIB0BJHlmF2qVFBXb2itUdv9oZ-TvnokDPGMwo");
    key_jwk_free(&jwk);
    CHECK_STR(key_alg(k), "ES384");
    CHECK(key_ec_width(k) == 48);
    EVP_PKEY_free(k);

    k = load("go-testkey-ec521.pem");
    CHECK(key_jwk(k, &jwk, &err) == 0);
    CHECK_STR(jwk.crv, "P-521");
    CHECK_STR(jwk.x, "AdQ0pvHsnALsfqlraxXS0RFaEeEHcmZb44_pJSAxavK8gpqOXHvd5"
        "Lbh3LhA8atY738AGwMWpxFKQ1VNeci_r7SY");
    CHECK_STR(jwk.y, "AXbmSeogEiDlDwz0Gc670YYByFzC3c7tEMeap7CckkOtuN0Yaebqt"
        "v42dZH0MiikzSco2ROhagX-HOinG7gB78ax");
    key_jwk_free(&jwk);
    CHECK_STR(key_alg(k), "ES512");
    CHECK(key_spec_name(k, spec, sizeof(spec)) == 0);
    CHECK_STR(spec, "ec521");
    EVP_PKEY_free(k);
}

static void
test_leading_zero(void)
{
    EVP_PKEY *k = load("ec256-x-leading-zero.pem");     /* PKCS#8 */
    struct key_jwk jwk;
    struct luacme_err err;
    unsigned char *x = NULL;
    size_t xl = 0;

    CHECK(key_jwk(k, &jwk, &err) == 0);
    CHECK_STR(jwk.x, "APPBmfXiKAteK1eO8AGADC587N16Lq3oVu53oVoROsI");
    x = jwk.x ? unb64(jwk.x, &xl) : NULL;
    CHECK(x != NULL && xl == 32 && x[0] == 0);
    free(x);
    key_jwk_free(&jwk);
    /* Computed independently with the openssl command line. */
    check_thumbprint(k, "03L5nVW0pAJpBljy2Z1tmg9zZDb3TQQDUbBRzoWWXzM");
    EVP_PKEY_free(k);
}

static void
test_refusals(void)
{
    EVP_PKEY *key = NULL;
    struct luacme_err err;
    char *big;
    char spec[16];

    refuse("encrypted-ec256.pem", "unsupported", "encrypted");
    refuse("rsa1024.pem", "unsupported", "LUACME_RSA_MIN_BITS");
    refuse("secp256k1.pem", "unsupported", "curve");
    refuse("ed25519.pem", "unsupported", "ED25519");
    refuse("ec256-mismatched-public.pem", "parse", "consistency");

    CHECK(key_load_pem("garbage", 7, &key, &err) == -1);
    CHECK_STR(err.kind, "parse");
    CHECK(key_load_pem("", 0, &key, &err) == -1);
    CHECK_STR(err.kind, "parse");
    CHECK(key == NULL);

    /* Just over the cap: refused before anything is parsed. */
    big = malloc(LUACME_PEM_MAX + 1);
    CHECK(big != NULL);
    if (big != NULL) {
        memset(big, 'A', LUACME_PEM_MAX + 1);
        CHECK(key_load_pem(big, LUACME_PEM_MAX + 1, &key, &err) == -1);
        CHECK_STR(err.kind, "too_large");
        free(big);
    }

    /* Other RSA sizes: spec names the bits. */
    key = load("rsa2560-pkcs1.pem");
    CHECK(key_spec_name(key, spec, sizeof(spec)) == 0);
    CHECK_STR(spec, "rsa2560");
    EVP_PKEY_free(key);
}

static void
test_public_only_refused(void)
{
    EVP_PKEY *k = load("go-testkey-ec256.pem"), *back = NULL;
    char *pem = NULL;
    size_t len = 0;
    struct luacme_err err;

    CHECK(key_public_pem(k, &pem, &len, &err) == 0);
    CHECK(pem != NULL && strncmp(pem, "-----BEGIN PUBLIC KEY-----\n", 27)
        == 0 && strlen(pem) == len);
    CHECK(key_load_pem(pem, len, &back, &err) == -1);
    CHECK_STR(err.kind, "parse");
    CHECK(back == NULL);
    free(pem);
    EVP_PKEY_free(k);
}

static void
test_pem_round_trip(void)
{
    EVP_PKEY *k = load("go-testkey-rsa.pem"), *back = NULL;
    char *pem = NULL;
    size_t len = 0;
    struct luacme_err err;

    /* PKCS#1 in, PKCS#8 out, same key back. */
    CHECK(key_private_pem(k, &pem, &len, &err) == 0);
    CHECK(pem != NULL && strncmp(pem, "-----BEGIN PRIVATE KEY-----\n", 28)
        == 0);
    CHECK(pem != NULL && key_load_pem(pem, len, &back, &err) == 0);
    check_thumbprint(back, "6nicxzh6WETQlrvdchkz-U3e3DOQZ4heJKU63rfqMqQ");
    key_pem_free(pem, len);
    EVP_PKEY_free(back);
    EVP_PKEY_free(k);
}

static void
test_generate(void)
{
    static const struct {
        enum key_spec spec;
        const char *alg, *name;
        size_t width;
    } cases[] = {
        {KEY_EC256, "ES256", "ec256", 32},
        {KEY_EC384, "ES384", "ec384", 48},
        {KEY_EC521, "ES512", "ec521", 66},
        {KEY_RSA2048, "RS256", "rsa2048", 0},
    };
    EVP_PKEY *k;
    struct key_jwk jwk;
    struct luacme_err err;
    size_t i, l;
    unsigned char *b;
    char spec[16];

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        k = NULL;
        CHECK(key_generate(cases[i].spec, &k, &err) == 0);
        CHECK_STR(key_alg(k), cases[i].alg);
        CHECK(key_spec_name(k, spec, sizeof(spec)) == 0);
        CHECK_STR(spec, cases[i].name);
        CHECK(key_ec_width(k) == cases[i].width);
        CHECK(key_jwk(k, &jwk, &err) == 0);
        if (cases[i].width != 0) {
            b = unb64(jwk.y, &l);
            CHECK(b != NULL && l == cases[i].width);
            free(b);
        } else {
            b = unb64(jwk.n, &l);
            CHECK(b != NULL && l == 256 && (b[0] & 0x80) != 0);
            free(b);
        }
        key_jwk_free(&jwk);
        EVP_PKEY_free(k);
    }
    k = NULL;
    CHECK(key_generate((enum key_spec)99, &k, &err) == -1);
    CHECK_STR(err.kind, "unsupported");
    CHECK(k == NULL);
    CHECK_STR(key_spec_names[KEY_RSA4096], "rsa4096");
    CHECK(key_spec_names[KEY_RSA4096 + 1] == NULL);
}

/* Count directory entries other than . and .. */
static int
count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    if (d == NULL)
        return -1;
    for (e = readdir(d); e != NULL; e = readdir(d)) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    }
    closedir(d);
    return n;
}

static void
test_atomic_write(void)
{
    char dir[] = "/tmp/luacme-test-keys.XXXXXX";
    char path[256], missing[256];
    struct stat st;
    struct luacme_err err;
    EVP_PKEY *k = load("go-testkey-ec256.pem"), *back = NULL;
    char *got;
    size_t len = 0;
    mode_t old;

    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/account.key", dir);
    /* A permissive umask must not widen the mode... */
    old = umask(0);
    CHECK(key_write_file_atomic(path, "first", 5, &err) == 0);
    umask(old);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    got = readfile(path, &len);
    CHECK(got != NULL && len == 5 && memcmp(got, "first", 5) == 0);
    free(got);
    /* ...and a strict one must not narrow it. Replacing works. */
    old = umask(0277);
    CHECK(key_write_pem(k, path, &err) == 0);
    umask(old);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    got = readfile(path, &len);
    CHECK(got != NULL && key_load_pem(got, len, &back, &err) == 0);
    check_thumbprint(back, "zedj-Bd1Zshp8KLePv2MB-lJ_Hagp7wAwdkA0NUTniU");
    free(got);
    EVP_PKEY_free(back);
    CHECK(count_entries(dir) == 1);         /* no temporary file left */

    /* A missing directory fails cleanly. */
    snprintf(missing, sizeof(missing), "%s/nope/account.key", dir);
    CHECK(key_write_file_atomic(missing, "x", 1, &err) == -1);
    CHECK_STR(err.kind, "io");
    /* The target is a directory: rename fails, the temp file goes. */
    snprintf(missing, sizeof(missing), "%s/sub", dir);
    CHECK(mkdir(missing, 0700) == 0);
    CHECK(key_write_file_atomic(missing, "x", 1, &err) == -1);
    CHECK_STR(err.kind, "io");
    CHECK(count_entries(dir) == 2);
    CHECK(rmdir(missing) == 0);
    CHECK(key_write_file_atomic("", "x", 1, &err) == -1);

    unlink(path);
    CHECK(rmdir(dir) == 0);
    EVP_PKEY_free(k);
}

/* 1 when name is what fs_write_file leaves of base after a crash,
 * "base.tmp.XXXXXX": the name state.lua's sweep removes (its pattern
 * "%.tmp%.[%w_-]+$"). */
static int
is_fs_temp_of(const char *name, const char *base)
{
    size_t blen = strlen(base);
    const char *p;

    if (strncmp(name, base, blen) != 0 || strncmp(name + blen, ".tmp.", 5))
        return 0;
    p = name + blen + 5;
    if (*p == '\0')
        return 0;
    for (; *p != '\0'; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-')
            return 0;
    return 1;
}

/* The key writer is the fs writer: a key written leaves only itself,
 * mode 0600, and a writer killed half-way leaves a temporary file named
 * as fs_write_file names them. The kill is SIGXFSZ from a tiny
 * RLIMIT_FSIZE, so it lands inside the write, after the temporary file
 * was created and before the rename. */
static void
test_write_temp_name(void)
{
    char dir[] = "/tmp/luacme-test-keys.XXXXXX";
    char path[256], ent[sizeof(dir) + sizeof(((struct dirent *)0)->d_name)];
    struct rlimit rl = {0, 0};
    struct stat st;
    struct luacme_err err;
    EVP_PKEY *k = load("go-testkey-ec256.pem");
    DIR *d;
    struct dirent *e;
    int status = 0, temps = 0, others = 0;
    pid_t pid;
    mode_t old;

    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/account.key", dir);
    old = umask(0);
    CHECK(key_write_pem(k, path, &err) == 0);
    umask(old);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    CHECK(count_entries(dir) == 1);         /* no temporary file left */
    CHECK(unlink(path) == 0);

    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        setrlimit(RLIMIT_CORE, &rl);
        rl.rlim_cur = rl.rlim_max = 8;
        signal(SIGXFSZ, SIG_DFL);
        if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
            _exit(3);
        key_write_pem(k, path, &err);
        _exit(4);                           /* not killed: no check */
    }
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGXFSZ);
    d = opendir(dir);
    CHECK(d != NULL);
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (is_fs_temp_of(e->d_name, "account.key"))
            temps++;
        else
            others++;
        snprintf(ent, sizeof(ent), "%s/%s", dir, e->d_name);
        CHECK(stat(ent, &st) == 0 && (st.st_mode & 0777) == 0600);
        unlink(ent);
    }
    if (d != NULL)
        closedir(d);
    CHECK(temps == 1 && others == 0);
    CHECK(rmdir(dir) == 0);
    EVP_PKEY_free(k);
}

int
main(void)
{
    test_published_thumbprints();
    test_go_keys();
    test_leading_zero();
    test_refusals();
    test_public_only_refused();
    test_pem_round_trip();
    test_generate();
    test_atomic_write();
    test_write_temp_name();
    return check_done();
}
