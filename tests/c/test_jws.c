/*
 * jws: RFC 7515 A.3 ES256 verification and DER <-> R||S conversion, the
 * synthetic short-R / high-bit-S vector, golang.org/x/crypto's exact
 * RS256 JWS, RFC 7520 §4.4.3 HS256 and the Pebble EAB vector, and the
 * shape of the flattened serialisation. Runs from the source directory.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/param_build.h>

#include "b64.h"
#include "check.h"
#include "jws.h"
#include "keys.h"
#include "luacme_limits.h"

#define FIX "tests/fixtures/keys/"

static EVP_PKEY *
load(const char *name)
{
    char path[256];
    char buf[8192];
    size_t len;
    FILE *f;
    EVP_PKEY *key = NULL;
    struct luacme_err err;

    snprintf(path, sizeof(path), FIX "%s", name);
    f = fopen(path, "rb");
    CHECK(f != NULL);
    if (f == NULL)
        return NULL;
    len = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    CHECK(key_load_pem(buf, len, &key, &err) == 0);
    return key;
}

static size_t
unhex(const char *h, unsigned char *out)
{
    size_t n = 0;
    unsigned int v;

    while (h[0] != '\0' && h[1] != '\0' && sscanf(h, "%2x", &v) == 1) {
        out[n++] = (unsigned char)v;
        h += 2;
    }
    return n;
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

static char *
b64(const unsigned char *in, size_t len)
{
    char *out = NULL;
    struct luacme_err err;

    if (b64url_encode(in, len, &out, &err) != 0)
        return NULL;
    return out;
}

/* RFC 7515 A.3's public key (x, y) as an EVP_PKEY. */
static EVP_PKEY *
a3_key(void)
{
    size_t xl = 0, yl = 0;
    unsigned char *x = unb64("f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        &xl);
    unsigned char *y = unb64("x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
        &yl);
    unsigned char pt[65];
    OSSL_PARAM params[3];
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *key = NULL;

    if (x != NULL && y != NULL && xl == 32 && yl == 32) {
        pt[0] = 4;
        memcpy(pt + 1, x, 32);
        memcpy(pt + 33, y, 32);
        params[0] = OSSL_PARAM_construct_utf8_string(
            OSSL_PKEY_PARAM_GROUP_NAME, "P-256", 0);
        params[1] = OSSL_PARAM_construct_octet_string(
            OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt));
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

static const char a3_input[] =
    "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogI"
    "mh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
static const char a3_sig[] =
    "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxf"
    "KTUJqPP3-Kg6NU1Q";
static const char a3_der[] =
    "304502200ed1215379636c483c2f7f155807d402a3b228033af97c7e17819ac3169ea6"
    "65022100c50a07d38c3c70e5d8f12daf084a5480a66590c5f293509a8f3f7f8a83a354"
    "d5";

static void
test_a3_verify(void)
{
    EVP_PKEY *k = a3_key();
    unsigned char *sig;
    size_t siglen = 0;
    struct luacme_err err;

    sig = unb64(a3_sig, &siglen);
    CHECK(sig != NULL && siglen == 64);
    if (sig == NULL || k == NULL)
        return;
    CHECK(jws_verify(k, a3_input, strlen(a3_input), sig, siglen, &err) == 1);
    /* Any change must fail: one input byte, one signature bit, the
     * length (a DER signature is not a JWS signature). */
    CHECK(jws_verify(k, a3_input, strlen(a3_input) - 1, sig, siglen, &err)
        == 0);
    sig[10] ^= 1;
    CHECK(jws_verify(k, a3_input, strlen(a3_input), sig, siglen, &err) == 0);
    sig[10] ^= 1;
    CHECK(jws_verify(k, a3_input, strlen(a3_input), sig, 63, &err) == 0);
    {
        unsigned char der[80];
        size_t dl = unhex(a3_der, der);

        CHECK(jws_verify(k, a3_input, strlen(a3_input), der, dl, &err)
            == 0);
    }
    free(sig);
    EVP_PKEY_free(k);
}

/* B.4 synthetic vector: 31 zero bytes, 01, 80, 30 zero bytes, 05. */
static const char synth_raw[] =
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAGAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    "AAAAAAAAAAAAAABQ";

static void
test_der_raw(void)
{
    unsigned char der[160], raw[132], *back = NULL, *want = NULL;
    size_t dl, wl = 0, bl = 0;
    char *enc;
    struct luacme_err err;

    /* A.3: S has a 00 sign byte in DER (33 bytes), 32 in raw. */
    dl = unhex(a3_der, der);
    CHECK(dl == 71);
    CHECK(ecdsa_der_to_raw(der, dl, 32, raw, &err) == 0);
    enc = b64(raw, 64);
    CHECK_STR(enc, a3_sig);
    free(enc);
    CHECK(ecdsa_raw_to_der(raw, 64, &back, &bl, &err) == 0);
    CHECK(back != NULL && bl == dl && memcmp(back, der, dl) == 0);
    free(back);
    back = NULL;

    /* Synthetic: r = 1 (one byte), s = 2^255 + 5 (sign byte). */
    dl = unhex("30260201010221008000000000000000000000000000000000000000"
        "000000000000000000000005", der);
    CHECK(dl == 40);
    CHECK(ecdsa_der_to_raw(der, dl, 32, raw, &err) == 0);
    enc = b64(raw, 64);
    CHECK_STR(enc, synth_raw);
    free(enc);
    want = unb64(synth_raw, &wl);
    CHECK(want != NULL && wl == 64 && want[31] == 1 && want[32] == 0x80 &&
        want[63] == 5);
    free(want);
    CHECK(ecdsa_raw_to_der(raw, 64, &back, &bl, &err) == 0);
    CHECK(back != NULL && bl == dl && memcmp(back, der, dl) == 0);
    free(back);
    back = NULL;

    /* ES384 and ES512 pad to 48 and 66 bytes per half. */
    CHECK(ecdsa_der_to_raw(der, dl, 48, raw, &err) == 0);
    CHECK(raw[47] == 1 && raw[48 + 16] == 0x80 && raw[95] == 5);
    CHECK(raw[0] == 0 && raw[48] == 0 && raw[48 + 15] == 0);
    CHECK(ecdsa_der_to_raw(der, dl, 66, raw, &err) == 0);
    CHECK(raw[65] == 1 && raw[66 + 34] == 0x80 && raw[131] == 5);

    /* Refusals: S wider than the width, trailing bytes, not DER, a
     * negative integer, odd or empty raw. */
    CHECK(ecdsa_der_to_raw(der, dl, 31, raw, &err) == -1);
    CHECK_STR(err.kind, "parse");
    der[dl] = 0;                                /* trailing byte */
    CHECK(ecdsa_der_to_raw(der, dl + 1, 32, raw, &err) == -1);
    CHECK(ecdsa_der_to_raw((const unsigned char *)"\x30\x03\x02", 3, 32,
        raw, &err) == -1);
    dl = unhex("3006020101020181", der);        /* s = -127 */
    CHECK(ecdsa_der_to_raw(der, dl, 32, raw, &err) == -1);
    CHECK(ecdsa_der_to_raw(der, dl, 0, raw, &err) == -1);
    CHECK(ecdsa_raw_to_der(raw, 63, &back, &bl, &err) == -1);
    CHECK(ecdsa_raw_to_der(raw, 0, &back, &bl, &err) == -1);
    CHECK(back == NULL);
}

/* golang.org/x/crypto acme TestJWSEncodeJSON, byte for byte. */
static const char go_n[] =
    "4xgZ3eRPkwoRvy7qeRUbmMDe0V-xH9eWLdu0iheeLlrmD2mqWXfP9IeSKApbn34g8TuAS9"
    "g5zhq8ELQ3kmjr-KV86GAMgI6VAcGlq3QrzpTCf_30Ab7-zawrfRaFONa1HwEzPY1KHnGV"
    "kxJc85gNkwYI9SY2RHXtvln3zs5wITNrdosqEXeaIkVYBEhbhNu54pp3kxo6TuWLi9e6pX"
    "eWetEwmlBwtWZlPoib2j3TxLBksKZfoyFyek380mHgJAumQ_I2fjj98_97mk3ihOY4AgVd"
    "CDj1z_GCoZkG5Rq7nbCGyosyKWyDX00Zs-nNqVhoLeIvXC4nnWdJMZ6rogxyQQ";
static const char go_protected_b64[] =
    "eyJhbGciOiJSUzI1NiIsImp3ayI6eyJlIjoiQVFBQiIsImt0eSI6IlJTQSIsIm4iOiI0eG"
    "daM2VSUGt3b1J2eTdxZVJVYm1NRGUwVi14SDllV0xkdTBpaGVlTGxybUQybXFXWGZQOUll"
    "U0tBcGJuMzRnOFR1QVM5ZzV6aHE4RUxRM2ttanItS1Y4NkdBTWdJNlZBY0dscTNRcnpwVE"
    "NmXzMwQWI3LXphd3JmUmFGT05hMUh3RXpQWTFLSG5HVmt4SmM4NWdOa3dZSTlTWTJSSFh0"
    "dmxuM3pzNXdJVE5yZG9zcUVYZWFJa1ZZQkVoYmhOdTU0cHAza3hvNlR1V0xpOWU2cFhlV2"
    "V0RXdtbEJ3dFdabFBvaWIyajNUeExCa3NLWmZveUZ5ZWszODBtSGdKQXVtUV9JMmZqajk4"
    "Xzk3bWszaWhPWTRBZ1ZkQ0RqMXpfR0NvWmtHNVJxN25iQ0d5b3N5S1d5RFgwMFpzLW5OcV"
    "Zob0xlSXZYQzRubldkSk1aNnJvZ3h5UVEifSwibm9uY2UiOiJub25jZSIsInVybCI6InVy"
    "bCJ9";
static const char go_sig[] =
    "YFyl_xz1E7TR-3E1bIuASTr424EgCvBHjt25WUFC2VaDjXYV0Rj_Hd3dJ_2IRqBrXDZZ2n"
    "4ZeA_4mm3QFwmwyeDwe2sWElhb82lCZ8iXuFnjeOmSOjx-nWwPa5ibCXzLq13zZ-OBV1Z4"
    "oN_TuailQeRoSfA3nO8gG52mv1x2OMQ5MAFtt8jcngBLzts4AyhI6mBJ2w7Yaj3ZCriqDW"
    "A3GLFvvHdW1Ba9Z01wtGT2CuZI7DUk_6Qj1b3BkBGcoKur5C9ibUJtCkABwBMvBQNyD3Mm"
    "XsrRFRTgvVlyU_yMaucYm7nmzEr_2PaQ50rFt_9qOfJ4sfbLtG1Wwae57BQx1g";

static void
test_go_rs256(void)
{
    EVP_PKEY *k = load("go-testkey-rsa.pem");
    struct key_jwk jwk;
    struct luacme_err err;
    char prot[1024], want[2048], input[2048];
    char *out = NULL, *enc;
    unsigned char *sig = NULL;
    size_t outlen = 0, siglen = 0;
    static const char payload[] = "{\"Msg\":\"Hello JWS\"}";

    if (k == NULL)
        return;
    CHECK(key_jwk(k, &jwk, &err) == 0);
    CHECK_STR(jwk.n, go_n);
    key_jwk_free(&jwk);

    snprintf(prot, sizeof(prot), "{\"alg\":\"RS256\",\"jwk\":{\"e\":\"AQAB\","
        "\"kty\":\"RSA\",\"n\":\"%s\"},\"nonce\":\"nonce\",\"url\":\"url\"}",
        go_n);
    snprintf(want, sizeof(want), "{\"protected\":\"%s\",\"payload\":"
        "\"eyJNc2ciOiJIZWxsbyBKV1MifQ\",\"signature\":\"%s\"}",
        go_protected_b64, go_sig);
    CHECK(jws_flatten(k, prot, strlen(prot), payload, strlen(payload), &out,
        &outlen, &err) == 0);
    CHECK_STR(out, want);
    CHECK(out != NULL && outlen == strlen(out));
    free(out);

    /* The bare signature over the signing input, and its verification. */
    snprintf(input, sizeof(input), "%s.eyJNc2ciOiJIZWxsbyBKV1MifQ",
        go_protected_b64);
    CHECK(jws_sign(k, input, strlen(input), &sig, &siglen, &err) == 0);
    CHECK(siglen == 256);
    enc = sig ? b64(sig, siglen) : NULL;
    CHECK_STR(enc, go_sig);
    free(enc);
    CHECK(jws_verify(k, input, strlen(input), sig, siglen, &err) == 1);
    if (sig != NULL)
        sig[0] ^= 0x80;
    CHECK(jws_verify(k, input, strlen(input), sig, siglen, &err) == 0);
    free(sig);
    EVP_PKEY_free(k);
}

static void
test_ec_sign(void)
{
    static const struct { const char *file; size_t len; } cases[] = {
        {"go-testkey-ec256.pem", 64},
        {"go-testkey-ec384.pem", 96},
        {"go-testkey-ec521.pem", 132},
        {"ec256-x-leading-zero.pem", 64},
    };
    EVP_PKEY *k;
    unsigned char *sig, *der;
    size_t i, siglen, derlen;
    struct luacme_err err;
    EVP_MD_CTX *ctx;
    const EVP_MD *md;
    int j;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        k = load(cases[i].file);
        if (k == NULL)
            continue;
        /* ECDSA is randomised: sign several times so a short R or S
         * (1 in 128 per signature) is likely exercised somewhere. */
        for (j = 0; j < 20; j++) {
            sig = NULL;
            siglen = 0;
            CHECK(jws_sign(k, "hello", 5, &sig, &siglen, &err) == 0);
            CHECK(siglen == cases[i].len);
            CHECK(jws_verify(k, "hello", 5, sig, siglen, &err) == 1);
            CHECK(jws_verify(k, "hellO", 5, sig, siglen, &err) == 0);
            /* Independently of jws_verify: the DER form verifies with
             * OpenSSL's own EVP_DigestVerify and the alg's digest. */
            der = NULL;
            derlen = 0;
            CHECK(ecdsa_raw_to_der(sig, siglen, &der, &derlen, &err) == 0);
            md = siglen == 64 ? EVP_sha256() : siglen == 96 ? EVP_sha384() :
                EVP_sha512();
            ctx = EVP_MD_CTX_new();
            CHECK(ctx != NULL && EVP_DigestVerifyInit(ctx, NULL, md, NULL, k)
                == 1 && EVP_DigestVerify(ctx, der, derlen,
                (const unsigned char *)"hello", 5) == 1);
            EVP_MD_CTX_free(ctx);
            free(der);
            free(sig);
        }
        EVP_PKEY_free(k);
    }
}

static void
test_hmac(void)
{
    unsigned char *key;
    size_t klen = 0, outlen = 0;
    char *out = NULL, *jwk = NULL, want[1024];
    struct luacme_err err;
    EVP_PKEY *ec;
    static const char prot[] =
        "{\"alg\":\"HS256\",\"kid\":\"018c0ae5-4d9b-471b-bfd6-eef314bc7037\"}";
    static const char payload[] =
        "It\xe2\x80\x99s a dangerous business, Frodo, going out your door. "
        "You step onto the road, and if you don't keep your feet, "
        "there\xe2\x80\x99s no knowing where you might be swept off to.";
    static const char eab_prot[] = "{\"alg\":\"HS256\",\"kid\":\"kid-1\","
        "\"url\":\"https://127.0.0.1:14000/sign-me-up\"}";

    /* RFC 7520 §4.4.3. */
    key = unb64("hJtXIZ2uSN5kbQfbtTNWbpdmhkV8FJG-Onbc6mxCcYg", &klen);
    CHECK(key != NULL && klen == 32);
    CHECK(jws_flatten_hmac(key, klen, prot, strlen(prot), payload,
        strlen(payload), &out, &outlen, &err) == 0);
    CHECK_STR(out, "{\"protected\":\"eyJhbGciOiJIUzI1NiIsImtpZCI6IjAxOGMwYW"
        "U1LTRkOWItNDcxYi1iZmQ2LWVlZjMxNGJjNzAzNyJ9\",\"payload\":\"SXTigJlz"
        "IGEgZGFuZ2Vyb3VzIGJ1c2luZXNzLCBGcm9kbywgZ29pbmcgb3V0IHlvdXIgZG9vci4g"
        "WW91IHN0ZXAgb250byB0aGUgcm9hZCwgYW5kIGlmIHlvdSBkb24ndCBrZWVwIHlvdXIg"
        "ZmVldCwgdGhlcmXigJlzIG5vIGtub3dpbmcgd2hlcmUgeW91IG1pZ2h0IGJlIHN3ZXB0"
        "IG9mZiB0by4\",\"signature\":\"s0h6KThzkfBBBkLspW1h84VsJZFTsPPqMDA7g1"
        "Md7p0\"}");
    free(out);
    out = NULL;
    free(key);

    /* The EAB vector: Pebble's example MAC key (decoded first!), the Go
     * testKeyEC JWK as payload. */
    key = unb64("zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkM"
        "TQ12W", &klen);
    CHECK(key != NULL && klen == 48 && memcmp(key,
        "\xcd\x63\x43\x64\xce\x9e\x40\x61", 8) == 0);
    ec = load("go-testkey-ec256.pem");
    CHECK(ec != NULL && key_jwk_json(ec, &jwk, &err) == 0);
    snprintf(want, sizeof(want), "{\"protected\":\"%s\",\"payload\":\"%s\","
        "\"signature\":\"%s\"}",
        "eyJhbGciOiJIUzI1NiIsImtpZCI6ImtpZC0xIiwidXJsIjoiaHR0cHM6Ly8xMjcuMC4w"
        "LjE6MTQwMDAvc2lnbi1tZS11cCJ9",
        "eyJjcnYiOiJQLTI1NiIsImt0eSI6IkVDIiwieCI6IjVsaEV1ZzV4SzR4QkRaMm5BYmF4"
        "THRhTGl2ODVieEo3ZVBkMWRrTzIzSFEiLCJ5IjoiNGFpSzcyc0JlVUFHa3YwVGFMc213"
        "b2tZVVl5TnhHc1M1RU1JS3dzTklLayJ9",
        "-hceR_28p898is2Ml5PBrFH2xZIhCSVMLF6KPI1irCU");
    CHECK(jwk != NULL && jws_flatten_hmac(key, klen, eab_prot,
        strlen(eab_prot), jwk, strlen(jwk), &out, &outlen, &err) == 0);
    CHECK_STR(out, want);
    free(out);
    out = NULL;
    free(jwk);
    EVP_PKEY_free(ec);
    free(key);

    /* An empty MAC key is refused. */
    CHECK(jws_flatten_hmac((const unsigned char *)"", 0, eab_prot,
        strlen(eab_prot), "", 0, &out, &outlen, &err) == -1);
    CHECK(out == NULL);
}

static void
test_flatten_shape(void)
{
    EVP_PKEY *k = load("go-testkey-ec256.pem"), *small = NULL;
    char *out = NULL, *p, *sigpart;
    size_t outlen = 0, siglen = 0;
    unsigned char *sig;
    struct luacme_err err;
    static const char prot[] = "{\"alg\":\"ES256\",\"kid\":\"https://example"
        ".org/account/1\",\"nonce\":\"nonce\",\"url\":\"url\"}";
    static const char prot_b64[] = "eyJhbGciOiJFUzI1NiIsImtpZCI6Imh0dHBzOi8vZ"
        "XhhbXBsZS5vcmcvYWNjb3VudC8xIiwibm9uY2UiOiJub25jZSIsInVybCI6InVybCJ9";
    char input[256];

    if (k == NULL)
        return;
    /* POST-as-GET: the payload is the empty string, not "e30". */
    CHECK(jws_flatten(k, prot, strlen(prot), "", 0, &out, &outlen, &err)
        == 0);
    p = out;
    CHECK(p != NULL && strncmp(p, "{\"protected\":\"", 14) == 0);
    p = p ? p + 14 : NULL;
    CHECK(p != NULL && strncmp(p, prot_b64, strlen(prot_b64)) == 0);
    p = p ? p + strlen(prot_b64) : NULL;
    CHECK(p != NULL && strncmp(p, "\",\"payload\":\"\",\"signature\":\"", 28)
        == 0);
    sigpart = p ? p + 28 : NULL;
    CHECK(outlen == strlen(out) && out[outlen - 1] == '}' &&
        out[outlen - 2] == '"');
    if (sigpart != NULL && outlen >= 2) {
        out[outlen - 2] = '\0';
        sig = unb64(sigpart, &siglen);
        CHECK(sig != NULL && siglen == 64);
        snprintf(input, sizeof(input), "%s.", prot_b64);
        CHECK(jws_verify(k, input, strlen(input), sig, siglen, &err) == 1);
        free(sig);
    }
    free(out);
    out = NULL;

    /* Over the cap: refused without reading the input. */
    CHECK(jws_flatten(k, prot, (size_t)LUACME_B64_MAX + 1, "", 0, &out,
        &outlen, &err) == -1);
    CHECK_STR(err.kind, "too_large");
    CHECK(jws_flatten(k, prot, strlen(prot), "", (size_t)LUACME_B64_MAX + 1,
        &out, &outlen, &err) == -1);
    CHECK_STR(err.kind, "too_large");
    CHECK(out == NULL);
    EVP_PKEY_free(k);

    /* A key we do not sign with (RSA below the minimum). */
    small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    CHECK(small != NULL);
    CHECK(jws_flatten(small, prot, strlen(prot), "", 0, &out, &outlen, &err)
        == -1);
    CHECK_STR(err.kind, "unsupported");
    CHECK(jws_verify(small, "x", 1, (const unsigned char *)"x", 1, &err)
        == -1);
    CHECK(key_alg(small) == NULL);
    EVP_PKEY_free(small);
    CHECK(jws_flatten(NULL, prot, strlen(prot), "", 0, &out, &outlen, &err)
        == -1);
}

int
main(void)
{
    test_a3_verify();
    test_der_raw();
    test_go_rs256();
    test_ec_sign();
    test_hmac();
    test_flatten_shape();
    return check_done();
}
