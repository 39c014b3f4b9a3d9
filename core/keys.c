/*
 * Keys: generation, PEM in and out, public JWK, RFC 7638 thumbprint and
 * the atomic 0600 write. OpenSSL 3 EVP and provider parameters only.
 */
#include "keys.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "b64.h"
#include "fs.h"
#include "luacme_limits.h"

const char *const key_spec_names[] = {
    "ec256", "ec384", "ec521", "rsa2048", "rsa3072", "rsa4096", NULL
};

/* The curves we accept, by the group name OpenSSL reports. */
static const struct curve {
    const char *group;  /* OpenSSL group name */
    const char *crv;    /* JWK "crv" */
    const char *alg;    /* JWS "alg" */
    const char *spec;   /* key_spec_names entry */
    size_t width;       /* bytes per coordinate */
} curves[] = {
    {"prime256v1", "P-256", "ES256", "ec256", 32},
    {"secp384r1", "P-384", "ES384", "ec384", 48},
    {"secp521r1", "P-521", "ES512", "ec521", 66},
};

/* The supported curve of an EC key, or NULL (not EC, explicit
 * parameters, another curve). */
static const struct curve *
ec_curve(EVP_PKEY *key)
{
    char group[64];
    size_t i;

    if (key == NULL || !EVP_PKEY_is_a(key, "EC"))
        return NULL;
    if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME,
        group, sizeof(group), NULL) != 1) {
        ERR_clear_error();
        return NULL;
    }
    for (i = 0; i < sizeof(curves) / sizeof(curves[0]); i++) {
        if (strcmp(group, curves[i].group) == 0)
            return &curves[i];
    }
    return NULL;
}

/* "RSA" proper; RSA-PSS keys are refused since RS256 is PKCS#1 v1.5. */
static int
is_rsa(EVP_PKEY *key)
{
    return key != NULL && EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA;
}

/* An RSA key we sign with. */
static int
rsa_ok(EVP_PKEY *key)
{
    return is_rsa(key) && EVP_PKEY_get_bits(key) >= LUACME_RSA_MIN_BITS;
}

int
key_generate(enum key_spec spec, EVP_PKEY **out, struct luacme_err *err)
{
    EVP_PKEY *key = NULL;

    switch (spec) {
    case KEY_EC256:
        key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        break;
    case KEY_EC384:
        key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
        break;
    case KEY_EC521:
        key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-521");
        break;
    case KEY_RSA2048:
        key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
        break;
    case KEY_RSA3072:
        key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)3072);
        break;
    case KEY_RSA4096:
        key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)4096);
        break;
    default:
        return err_set(err, "unsupported", "key: unknown key spec %d",
            (int)spec);
    }
    if (key == NULL)
        return err_openssl(err, "crypto", "key: generation failed");
    *out = key;
    return 0;
}

int
key_check_supported(EVP_PKEY *key, struct luacme_err *err)
{
    int bits;

    if (ec_curve(key) != NULL)
        return 0;
    if (!is_rsa(key)) {
        if (key != NULL && EVP_PKEY_is_a(key, "EC"))
            return err_set(err, "unsupported",
                "key: EC curve not supported (P-256, P-384, P-521 are)");
        return err_set(err, "unsupported",
            "key: type %s not supported (RSA and EC are)",
            key ? EVP_PKEY_get0_type_name(key) : "(none)");
    }
    bits = EVP_PKEY_get_bits(key);
    if (bits < LUACME_RSA_MIN_BITS)
        return err_set(err, "unsupported",
            "key: RSA key of %d bits is below LUACME_RSA_MIN_BITS (%d)",
            bits, LUACME_RSA_MIN_BITS);
    return 0;
}

/* The password callback: refuse, and note that a passphrase was wanted
 * so the error can say "encrypted" rather than "cannot parse". */
static int
no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    *(int *)u = 1;
    return -1;
}

/* A memory BIO over len bytes of PEM, for both key readers. Returns
 * it, or NULL with err filled: kind "too_large" over LUACME_PEM_MAX,
 * "crypto" when out of memory. */
static BIO *
pem_bio(const char *pem, size_t len, struct luacme_err *err)
{
    BIO *bio;

    if (len > LUACME_PEM_MAX) {
        err_set(err, "too_large", "key: PEM over LUACME_PEM_MAX (%d bytes)",
            LUACME_PEM_MAX);
        return NULL;
    }
    bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL)
        err_openssl(err, "crypto", "key: out of memory");
    return bio;
}

int
key_load_pem(const char *pem, size_t len, EVP_PKEY **out,
    struct luacme_err *err)
{
    BIO *bio = NULL;
    EVP_PKEY *key = NULL;
    int asked = 0, rc = -1;

    if ((bio = pem_bio(pem, len, err)) == NULL)
        goto out;
    key = PEM_read_bio_PrivateKey_ex(bio, NULL, no_passphrase, &asked,
        NULL, NULL);
    if (key == NULL) {
        if (asked) {
            ERR_clear_error();
            err_set(err, "unsupported",
                "key: encrypted private keys are not supported");
        } else {
            err_openssl(err, "parse", "key: no private key in PEM");
        }
        goto out;
    }
    if (key_check_supported(key, err) != 0)
        goto out;
    /* A SEC1 key can carry a public point that does not belong to its
     * private scalar; the JWK would then name another key. The check is
     * cheap for EC (RSA's would run primality tests, so it is left out:
     * a broken RSA key fails at the first signature verification). */
    if (ec_curve(key) != NULL) {
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
        int ok = ctx != NULL && EVP_PKEY_check(ctx) == 1;

        EVP_PKEY_CTX_free(ctx);
        if (!ok) {
            err_openssl(err, "parse", "key: EC key fails its consistency "
                "check");
            goto out;
        }
    }
    *out = key;
    key = NULL;
    rc = 0;
out:
    EVP_PKEY_free(key);
    BIO_free(bio);
    return rc;
}

int
key_load_public_pem(const char *pem, size_t len, EVP_PKEY **out,
    struct luacme_err *err)
{
    BIO *bio = NULL;
    EVP_PKEY *key = NULL;
    int rc = -1;

    if ((bio = pem_bio(pem, len, err)) == NULL)
        goto out;
    key = PEM_read_bio_PUBKEY_ex(bio, NULL, no_passphrase, NULL, NULL, NULL);
    if (key == NULL) {
        err_openssl(err, "parse", "key: no public key in PEM");
        goto out;
    }
    if (key_check_supported(key, err) != 0)
        goto out;
    *out = key;
    key = NULL;
    rc = 0;
out:
    EVP_PKEY_free(key);
    BIO_free(bio);
    return rc;
}

const char *
key_alg(EVP_PKEY *key)
{
    const struct curve *c = ec_curve(key);

    if (c != NULL)
        return c->alg;
    if (rsa_ok(key))
        return "RS256";
    return NULL;
}

int
key_spec_name(EVP_PKEY *key, char *buf, size_t n)
{
    const struct curve *c = ec_curve(key);
    int w;

    if (c != NULL)
        w = snprintf(buf, n, "%s", c->spec);
    else if (rsa_ok(key))
        w = snprintf(buf, n, "rsa%d", EVP_PKEY_get_bits(key));
    else
        return -1;
    return w < 0 || (size_t)w >= n ? -1 : 0;
}

size_t
key_ec_width(EVP_PKEY *key)
{
    const struct curve *c = ec_curve(key);

    return c != NULL ? c->width : 0;
}

/* base64url of the big-endian bytes of bn: minimal when width is 0,
 * else left-padded to width bytes (fails if bn is wider). */
static int
bn_b64(const BIGNUM *bn, size_t width, char **out, struct luacme_err *err)
{
    unsigned char *bin = NULL;
    size_t n;
    int rc = -1;

    n = width != 0 ? width : (size_t)BN_num_bytes(bn);
    if (BN_is_negative(bn) || n == 0) {
        err_set(err, "crypto", "key: bad key component");
        goto out;
    }
    bin = malloc(n);
    if (bin == NULL) {
        err_set(err, "crypto", "key: out of memory");
        goto out;
    }
    if (BN_bn2binpad(bn, bin, (int)n) != (int)n) {
        err_openssl(err, "crypto", "key: key component too wide");
        goto out;
    }
    rc = b64url_encode(bin, n, out, err);
out:
    free(bin);
    return rc;
}

void
key_jwk_free(struct key_jwk *jwk)
{
    free(jwk->n);
    free(jwk->e);
    free(jwk->x);
    free(jwk->y);
    memset(jwk, 0, sizeof(*jwk));
}

int
key_jwk(EVP_PKEY *key, struct key_jwk *jwk, struct luacme_err *err)
{
    const struct curve *c = ec_curve(key);
    BIGNUM *a = NULL, *b = NULL;
    int rc = -1;

    memset(jwk, 0, sizeof(*jwk));
    if (c != NULL) {
        /* The coordinates, not the encoded point: a loaded key may use
         * the compressed form, and the JWK needs both at full width. */
        if (EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, &a) != 1 ||
            EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, &b) != 1) {
            err_openssl(err, "crypto", "key: cannot read EC public key");
            goto out;
        }
        jwk->kty = "EC";
        jwk->crv = c->crv;
        if (bn_b64(a, c->width, &jwk->x, err) != 0 ||
            bn_b64(b, c->width, &jwk->y, err) != 0)
            goto out;
    } else if (is_rsa(key)) {
        if (EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_N, &a) != 1 ||
            EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_E, &b) != 1) {
            err_openssl(err, "crypto", "key: cannot read RSA public key");
            goto out;
        }
        jwk->kty = "RSA";
        if (bn_b64(a, 0, &jwk->n, err) != 0 ||
            bn_b64(b, 0, &jwk->e, err) != 0)
            goto out;
    } else {
        key_check_supported(key, err);
        goto out;
    }
    rc = 0;
out:
    if (rc != 0)
        key_jwk_free(jwk);
    BN_free(a);
    BN_free(b);
    return rc;
}

int
key_jwk_json(EVP_PKEY *key, char **out, struct luacme_err *err)
{
    struct key_jwk jwk;
    char *s = NULL;
    size_t n;
    int rc = -1;

    if (key_jwk(key, &jwk, err) != 0)
        return -1;
    /* RFC 7638 §3.2: required members only, sorted, no whitespace. All
     * values are base64url or fixed names, so nothing needs escaping. */
    if (jwk.crv != NULL)
        n = strlen(jwk.crv) + strlen(jwk.x) + strlen(jwk.y) + 64;
    else
        n = strlen(jwk.n) + strlen(jwk.e) + 64;
    s = malloc(n);
    if (s == NULL) {
        err_set(err, "crypto", "key: out of memory");
        goto out;
    }
    if (jwk.crv != NULL)
        snprintf(s, n, "{\"crv\":\"%s\",\"kty\":\"EC\",\"x\":\"%s\","
            "\"y\":\"%s\"}", jwk.crv, jwk.x, jwk.y);
    else
        snprintf(s, n, "{\"e\":\"%s\",\"kty\":\"RSA\",\"n\":\"%s\"}",
            jwk.e, jwk.n);
    *out = s;
    s = NULL;
    rc = 0;
out:
    free(s);
    key_jwk_free(&jwk);
    return rc;
}

int
key_thumbprint(EVP_PKEY *key, char *out, struct luacme_err *err)
{
    char *json = NULL;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int rc = -1;

    if (key_jwk_json(key, &json, err) != 0)
        goto out;
    if (EVP_Digest(json, strlen(json), md, &mdlen, EVP_sha256(), NULL)
        != 1) {
        err_openssl(err, "crypto", "key: SHA-256 failed");
        goto out;
    }
    b64url_encode_to(md, mdlen, out);
    rc = 0;
out:
    free(json);
    return rc;
}

/* Copy a memory BIO's contents into a malloc'd NUL-terminated string. */
static int
bio_string(BIO *bio, char **out, size_t *len, struct luacme_err *err)
{
    char *data = NULL, *s;
    long n = BIO_get_mem_data(bio, &data);

    if (n <= 0)
        return err_openssl(err, "crypto", "key: empty PEM output");
    s = malloc((size_t)n + 1);
    if (s == NULL)
        return err_set(err, "crypto", "key: out of memory");
    memcpy(s, data, (size_t)n);
    s[n] = '\0';
    *out = s;
    *len = (size_t)n;
    return 0;
}

int
key_public_pem(EVP_PKEY *key, char **out, size_t *len,
    struct luacme_err *err)
{
    BIO *bio = BIO_new(BIO_s_mem());
    int rc = -1;

    if (bio == NULL || PEM_write_bio_PUBKEY(bio, key) != 1) {
        err_openssl(err, "crypto", "key: cannot write public PEM");
        goto out;
    }
    rc = bio_string(bio, out, len, err);
out:
    BIO_free(bio);
    return rc;
}

int
key_private_pem(EVP_PKEY *key, char **out, size_t *len,
    struct luacme_err *err)
{
    /* A secure memory BIO wipes its buffer when freed. */
    BIO *bio = BIO_new(BIO_s_secmem());
    int rc = -1;

    if (bio == NULL || PEM_write_bio_PKCS8PrivateKey(bio, key, NULL, NULL,
        0, NULL, NULL) != 1) {
        err_openssl(err, "crypto", "key: cannot write private PEM");
        goto out;
    }
    rc = bio_string(bio, out, len, err);
out:
    BIO_free(bio);
    return rc;
}

void
key_pem_free(char *pem, size_t len)
{
    if (pem != NULL)
        OPENSSL_clear_free(pem, len);
}

int
key_write_file_atomic(const char *path, const void *data, size_t len,
    struct luacme_err *err)
{
    /* An empty path would name a temporary file in the current
     * directory; refuse it before anything is created. */
    if (path == NULL || *path == '\0')
        return err_set(err, "io", "write: empty path");
    if (fs_write_file(path, data, len, 0600, err) != 0) {
        /* The key writer's callers have always seen one kind, "io", for
         * every file failure; fs names them finer. */
        err->kind = "io";
        return -1;
    }
    return 0;
}

int
key_write_pem(EVP_PKEY *key, const char *path, struct luacme_err *err)
{
    char *pem = NULL;
    size_t len = 0;
    int rc;

    if (key_private_pem(key, &pem, &len, err) != 0)
        return -1;
    rc = key_write_file_atomic(path, pem, len, err);
    key_pem_free(pem, len);
    return rc;
}
