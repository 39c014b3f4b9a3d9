/*
 * JWS signatures and the flattened JSON serialisation. ECDSA signatures
 * are converted between OpenSSL's DER and JOSE's fixed-width R||S here,
 * the classic place ACME clients go wrong (RFC 7518 §3.4).
 */
#include "jws.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>

#include "b64.h"
#include "keys.h"
#include "luacme_limits.h"

int
ecdsa_der_to_raw(const unsigned char *der, size_t derlen, size_t width,
    unsigned char *raw, struct luacme_err *err)
{
    ECDSA_SIG *sig = NULL;
    const unsigned char *p = der;
    const BIGNUM *r, *s;
    int rc = -1;

    if (width == 0 || width > JWS_ECDSA_RAW_MAX / 2 || derlen > 1024) {
        err_set(err, "parse", "ecdsa: bad signature or width");
        goto out;
    }
    sig = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
    if (sig == NULL || p != der + derlen) {
        err_openssl(err, "parse", "ecdsa: signature is not one DER "
            "SEQUENCE of two INTEGERs");
        goto out;
    }
    ECDSA_SIG_get0(sig, &r, &s);
    /* BN_bn2binpad left-pads with zeros and fails when the number does
     * not fit, which is exactly the check an over-wide R or S needs. */
    if (BN_is_negative(r) || BN_is_negative(s) ||
        BN_bn2binpad(r, raw, (int)width) != (int)width ||
        BN_bn2binpad(s, raw + width, (int)width) != (int)width) {
        ERR_clear_error();
        err_set(err, "parse", "ecdsa: R or S negative or wider than %zu "
            "bytes", width);
        goto out;
    }
    rc = 0;
out:
    ECDSA_SIG_free(sig);
    return rc;
}

int
ecdsa_raw_to_der(const unsigned char *raw, size_t rawlen,
    unsigned char **der, size_t *derlen, struct luacme_err *err)
{
    ECDSA_SIG *sig = NULL;
    BIGNUM *r = NULL, *s = NULL;
    unsigned char *buf = NULL;
    int n, rc = -1;
    size_t half = rawlen / 2;

    if (rawlen == 0 || rawlen % 2 != 0 || rawlen > JWS_ECDSA_RAW_MAX) {
        err_set(err, "parse", "ecdsa: raw signature of %zu bytes", rawlen);
        goto out;
    }
    sig = ECDSA_SIG_new();
    r = BN_bin2bn(raw, (int)half, NULL);
    s = BN_bin2bn(raw + half, (int)half, NULL);
    if (sig == NULL || r == NULL || s == NULL ||
        ECDSA_SIG_set0(sig, r, s) != 1) {
        err_openssl(err, "crypto", "ecdsa: out of memory");
        goto out;
    }
    r = s = NULL;       /* owned by sig now */
    n = i2d_ECDSA_SIG(sig, &buf);
    if (n <= 0) {
        err_openssl(err, "crypto", "ecdsa: cannot encode DER");
        goto out;
    }
    *der = buf;
    *derlen = (size_t)n;
    buf = NULL;
    rc = 0;
out:
    OPENSSL_free(buf);
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(sig);
    return rc;
}

/* The digest the key's JWS alg uses, or NULL for an unsupported key. */
static const EVP_MD *
alg_md(EVP_PKEY *key)
{
    const char *alg = key_alg(key);

    if (alg == NULL)
        return NULL;
    if (strcmp(alg, "ES384") == 0)
        return EVP_sha384();
    if (strcmp(alg, "ES512") == 0)
        return EVP_sha512();
    return EVP_sha256();            /* RS256, ES256 */
}

int
jws_sign(EVP_PKEY *key, const void *in, size_t len, unsigned char **sig,
    size_t *siglen, struct luacme_err *err)
{
    EVP_MD_CTX *ctx = NULL;
    const EVP_MD *md;
    unsigned char *buf = NULL, *raw = NULL;
    size_t n = 0, width = key_ec_width(key);
    int rc = -1;

    if (key_check_supported(key, err) != 0)
        goto out;
    md = alg_md(key);
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestSignInit(ctx, NULL, md, NULL, key) != 1 ||
        EVP_DigestSign(ctx, NULL, &n, in, len) != 1) {
        err_openssl(err, "crypto", "jws: cannot start signing");
        goto out;
    }
    buf = OPENSSL_malloc(n);
    if (buf == NULL || EVP_DigestSign(ctx, buf, &n, in, len) != 1) {
        err_openssl(err, "crypto", "jws: signing failed");
        goto out;
    }
    if (width != 0) {
        raw = OPENSSL_malloc(2 * width);
        if (raw == NULL) {
            err_set(err, "crypto", "jws: out of memory");
            goto out;
        }
        if (ecdsa_der_to_raw(buf, n, width, raw, err) != 0)
            goto out;
        OPENSSL_free(buf);
        buf = raw;
        raw = NULL;
        n = 2 * width;
    }
    /* Hand out plain malloc memory: callers free() it. */
    *sig = malloc(n);
    if (*sig == NULL) {
        err_set(err, "crypto", "jws: out of memory");
        goto out;
    }
    memcpy(*sig, buf, n);
    *siglen = n;
    rc = 0;
out:
    OPENSSL_free(raw);
    OPENSSL_free(buf);
    EVP_MD_CTX_free(ctx);
    return rc;
}

int
jws_verify(EVP_PKEY *key, const void *in, size_t len,
    const unsigned char *sig, size_t siglen, struct luacme_err *err)
{
    EVP_MD_CTX *ctx = NULL;
    unsigned char *der = NULL;
    size_t derlen = 0, width = key_ec_width(key);
    int rc = -1, v;

    if (key_check_supported(key, err) != 0)
        goto out;
    if (width != 0) {
        /* JOSE fixes the length; anything else is simply not valid. */
        if (siglen != 2 * width) {
            rc = 0;
            goto out;
        }
        if (ecdsa_raw_to_der(sig, siglen, &der, &derlen, err) != 0)
            goto out;
        sig = der;
        siglen = derlen;
    }
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL ||
        EVP_DigestVerifyInit(ctx, NULL, alg_md(key), NULL, key) != 1) {
        err_openssl(err, "crypto", "jws: cannot start verifying");
        goto out;
    }
    v = EVP_DigestVerify(ctx, sig, siglen, in, len);
    /* 0 is "bad signature"; a malformed one may also come back as a
     * negative value. Neither is a failure of ours. */
    ERR_clear_error();
    rc = v == 1 ? 1 : 0;
out:
    OPENSSL_free(der);
    EVP_MD_CTX_free(ctx);
    return rc;
}

int
jws_hs256(const unsigned char *key, size_t keylen, const void *in,
    size_t len, unsigned char *out, struct luacme_err *err)
{
    size_t outlen = 0;

    if (keylen == 0)
        return err_set(err, "crypto", "jws: empty HMAC key");
    if (EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, keylen, in, len,
        out, JWS_HS256_LEN, &outlen) == NULL || outlen != JWS_HS256_LEN)
        return err_openssl(err, "crypto", "jws: HMAC-SHA256 failed");
    return 0;
}

static const char jws_p[] = "{\"protected\":\"";
static const char jws_y[] = "\",\"payload\":\"";
static const char jws_s[] = "\",\"signature\":\"";
static const char jws_e[] = "\"}";

/* Both flatten variants: sign with key, or with HS256 under mac_key when
 * key is NULL. */
static int
flatten(EVP_PKEY *key, const unsigned char *mac_key, size_t keylen,
    const char *protected, size_t plen, const char *payload, size_t paylen,
    char **out, size_t *outlen, struct luacme_err *err)
{
    char *input = NULL, *res = NULL;
    unsigned char *sig = NULL, mac[JWS_HS256_LEN];
    size_t siglen = 0, pl, yl, il, n;
    int rc = -1;

    if (plen > LUACME_B64_MAX || paylen > LUACME_B64_MAX) {
        err_set(err, "too_large", "jws: protected header or payload over "
            "LUACME_B64_MAX");
        goto out;
    }
    /* The signing input: b64u(protected) "." b64u(payload). */
    pl = b64url_encoded_len(plen);
    yl = b64url_encoded_len(paylen);
    il = pl + 1 + yl;
    input = malloc(il + 1);
    if (input == NULL) {
        err_set(err, "crypto", "jws: out of memory");
        goto out;
    }
    b64url_encode_to((const unsigned char *)protected, plen, input);
    input[pl] = '.';
    b64url_encode_to((const unsigned char *)payload, paylen, input + pl + 1);
    if (key != NULL) {
        if (jws_sign(key, input, il, &sig, &siglen, err) != 0)
            goto out;
    } else {
        if (jws_hs256(mac_key, keylen, input, il, mac, err) != 0)
            goto out;
    }
    n = sizeof(jws_p) - 1 + pl + sizeof(jws_y) - 1 + yl +
        sizeof(jws_s) - 1 + b64url_encoded_len(key ? siglen : sizeof(mac)) +
        sizeof(jws_e) - 1;
    res = malloc(n + 1);
    if (res == NULL) {
        err_set(err, "crypto", "jws: out of memory");
        goto out;
    }
    /* Assemble: the two encoded parts are copied out of input. */
    {
        char *w = res;

        memcpy(w, jws_p, sizeof(jws_p) - 1);
        w += sizeof(jws_p) - 1;
        memcpy(w, input, pl);
        w += pl;
        memcpy(w, jws_y, sizeof(jws_y) - 1);
        w += sizeof(jws_y) - 1;
        memcpy(w, input + pl + 1, yl);
        w += yl;
        memcpy(w, jws_s, sizeof(jws_s) - 1);
        w += sizeof(jws_s) - 1;
        w += key != NULL ? b64url_encode_to(sig, siglen, w) :
            b64url_encode_to(mac, sizeof(mac), w);
        memcpy(w, jws_e, sizeof(jws_e));        /* with the NUL */
        w += sizeof(jws_e) - 1;
        *outlen = (size_t)(w - res);
    }
    *out = res;
    res = NULL;
    rc = 0;
out:
    OPENSSL_cleanse(mac, sizeof(mac));
    free(res);
    free(sig);
    free(input);
    return rc;
}

int
jws_flatten(EVP_PKEY *key, const char *protected, size_t plen,
    const char *payload, size_t paylen, char **out, size_t *outlen,
    struct luacme_err *err)
{
    if (key == NULL)
        return err_set(err, "unsupported", "jws: no key");
    return flatten(key, NULL, 0, protected, plen, payload, paylen, out,
        outlen, err);
}

int
jws_flatten_hmac(const unsigned char *mac_key, size_t keylen,
    const char *protected, size_t plen, const char *payload, size_t paylen,
    char **out, size_t *outlen, struct luacme_err *err)
{
    return flatten(NULL, mac_key, keylen, protected, plen, payload, paylen,
        out, outlen, err);
}
