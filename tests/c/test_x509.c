/*
 * x509: RFC 8737 extension bytes (B.10), RFC 9773 Appendix A certificate
 * (B.12), CSR round trips, validity dates of any year, PEM chains and the
 * RFC 8738 reverse names (B.11). Runs from the source directory.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "check.h"
#include "luacme_limits.h"
#include "x509.h"

#define KEY_AUTH "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA." \
    "zedj-Bd1Zshp8KLePv2MB-lJ_Hagp7wAwdkA0NUTniU"

static const char *
kind_of(const struct luacme_err *err)
{
    return err->kind != NULL ? err->kind : "(none)";
}

static char *
hex(const unsigned char *p, size_t len)
{
    static char buf[2 * 64 + 1];
    size_t i;

    for (i = 0; i < len && i < 64; i++)
        snprintf(buf + 2 * i, 3, "%02x", p[i]);
    buf[2 * i] = '\0';
    return buf;
}

static unsigned char *
find(const unsigned char *hay, size_t hlen, const unsigned char *needle,
    size_t nlen)
{
    size_t i;

    for (i = 0; i + nlen <= hlen; i++)
        if (memcmp(hay + i, needle, nlen) == 0)
            return (unsigned char *)hay + i;
    return NULL;
}

static char *
slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;

    if (f == NULL)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 &&
        fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1)) != NULL) {
        *len = fread(buf, 1, (size_t)n, f);
        buf[*len] = '\0';
    }
    fclose(f);
    return buf;
}

/* The SAN of cert: count of entries, and type of the first one. */
static int
san_count(X509 *x, int *type0)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL,
        NULL);
    int n = gens != NULL ? sk_GENERAL_NAME_num(gens) : 0;

    *type0 = n > 0 ? sk_GENERAL_NAME_value(gens, 0)->type : -1;
    GENERAL_NAMES_free(gens);
    return n;
}

static void
test_tls_alpn01(void)
{
    static const unsigned char prefix[] = {
        0x30, 0x31, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01,
        0x1f, 0x01, 0x01, 0xff, 0x04, 0x22, 0x04, 0x20
    };
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *given = key, *gen = NULL;
    X509 *x = NULL;
    unsigned char digest[32], *der = NULL, *p, *hit;
    unsigned int dlen = 0;
    char *pem = NULL;
    struct luacme_err err;
    struct x509_info info = {0};
    ASN1_OBJECT *oid = OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1);
    int len, idx, type0 = -1;
    time_t now = time(NULL);

    CHECK(key != NULL && oid != NULL);
    EVP_Digest(KEY_AUTH, strlen(KEY_AUTH), digest, &dlen, EVP_sha256(),
        NULL);
    /* Go TestTLSALPN01ChallengeCert's value, re-verified in B.10. */
    CHECK_STR(hex(digest, 32), "dbbd5eefe7b4d06eb9d1d9f5acb4c7cda27d320e"
        "4b30332f0b6cb441734ad7b0");

    CHECK(x509_tls_alpn01("example.com", KEY_AUTH, strlen(KEY_AUTH), &key,
        &pem, &err) == 0);
    CHECK(key == given);                /* a given key is only borrowed */
    CHECK(pem != NULL && strncmp(pem, "-----BEGIN CERTIFICATE-----\n",
        28) == 0);
    CHECK(x509_load(pem, pem != NULL ? strlen(pem) : 0, &x, &err) == 0);
    if (x != NULL) {
        len = i2d_X509(x, NULL);
        der = malloc((size_t)len);
        p = der;
        i2d_X509(x, &p);
        hit = find(der, (size_t)len, prefix, sizeof(prefix));
        CHECK(hit != NULL);
        CHECK(hit != NULL && hit + sizeof(prefix) + 32 <= der + len &&
            memcmp(hit + sizeof(prefix), digest, 32) == 0);
        CHECK(hit != NULL && strcmp(hex(hit + sizeof(prefix) - 2, 34),
            "0420dbbd5eefe7b4d06eb9d1d9f5acb4c7cda27d320e4b30332f0b6cb441"
            "734ad7b0") == 0);
        idx = X509_get_ext_by_OBJ(x, oid, -1);
        CHECK(idx >= 0);
        CHECK(idx >= 0 && X509_EXTENSION_get_critical(X509_get_ext(x,
            idx)) == 1);
        CHECK(X509_get_ext_by_OBJ(x, oid, idx) == -1);   /* only one */
        CHECK(san_count(x, &type0) == 1 && type0 == GEN_DNS);
        CHECK(x509_matches_key(x, key) == 1);
        CHECK(X509_verify(x, key) == 1);                 /* self-signed */
        CHECK(x509_info(x, &info, &err) == 0);
        CHECK(info.names.ndns == 1 && info.names.nip == 0);
        CHECK(info.names.ndns == 1 &&
            strcmp(info.names.dns[0], "example.com") == 0);
        CHECK(info.not_before <= (int64_t)now - 86400 &&
            info.not_before >= (int64_t)now - 86400 - 5);
        CHECK(info.not_after - info.not_before == 8 * 86400);
        CHECK(strlen(info.serial) >= 32);                /* random, 128 bit */
        CHECK(!info.is_ca);
        x509_info_free(&info);
    }
    free(der);
    X509_free(x);
    x = NULL;
    free(pem);
    pem = NULL;

    /* RFC 8738: an IP identifier becomes the one iPAddress SAN; a fresh
     * P-256 key is made when none is given. */
    CHECK(x509_tls_alpn01("127.0.0.1", KEY_AUTH, strlen(KEY_AUTH), &gen,
        &pem, &err) == 0);
    CHECK(gen != NULL && EVP_PKEY_is_a(gen, "EC") &&
        EVP_PKEY_get_bits(gen) == 256);
    CHECK(pem != NULL && x509_load(pem, strlen(pem), &x, &err) == 0);
    if (x != NULL) {
        CHECK(san_count(x, &type0) == 1 && type0 == GEN_IPADD);
        CHECK(x509_matches_key(x, gen) == 1);
        CHECK(x509_matches_key(x, key) == 0);
        CHECK(x509_info(x, &info, &err) == 0);
        CHECK(info.names.nip == 1 && strcmp(info.names.ip[0],
            "127.0.0.1") == 0);
        x509_info_free(&info);
    }
    X509_free(x);
    x = NULL;
    free(pem);
    pem = NULL;
    CHECK(x509_tls_alpn01("::1", KEY_AUTH, strlen(KEY_AUTH), &key, &pem,
        &err) == 0);
    CHECK(pem != NULL && x509_load(pem, strlen(pem), &x, &err) == 0);
    if (x != NULL) {
        CHECK(san_count(x, &type0) == 1 && type0 == GEN_IPADD);
        CHECK(x509_info(x, &info, &err) == 0);
        CHECK(info.names.nip == 1 && strcmp(info.names.ip[0], "::1") == 0);
        x509_info_free(&info);
    }
    X509_free(x);
    free(pem);
    pem = NULL;

    /* Bad identifiers: nothing made, nothing generated. */
    EVP_PKEY_free(gen);
    gen = NULL;
    CHECK(x509_tls_alpn01("bad name", "k", 1, &gen, &pem, &err) == -1);
    CHECK_STR(kind_of(&err), "invalid");
    CHECK(gen == NULL && pem == NULL);
    CHECK(x509_tls_alpn01("", "k", 1, &key, &pem, &err) == -1);
    CHECK_STR(kind_of(&err), "invalid");

    ASN1_OBJECT_free(oid);
    EVP_PKEY_free(key);
}

static void
test_rfc9773(void)
{
    static const unsigned char aki[] = {
        0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40, 0x41, 0xE1, 0xB3, 0x7B,
        0x84, 0x7B, 0xA0, 0xAE, 0x2C, 0xDE, 0x01, 0xC8, 0xD4
    };
    struct x509_info info = {0}, info2 = {0};
    struct luacme_err err;
    X509 *x = NULL, *y = NULL;
    size_t len = 0;
    char *pem = slurp("tests/fixtures/x509/rfc9773.pem", &len);

    CHECK(pem != NULL);
    if (pem == NULL)
        return;
    CHECK(x509_load(pem, len, &x, &err) == 0);
    CHECK(x != NULL && x509_info(x, &info, &err) == 0);
    CHECK_STR(info.serial, "0087654321");
    CHECK(info.aki_len == sizeof(aki) && info.aki != NULL &&
        memcmp(info.aki, aki, sizeof(aki)) == 0);
    CHECK(info.ski == NULL && info.ski_len == 0);
    CHECK(info.not_before == -62135596800LL);
    CHECK(info.not_after == -62135596800LL);
    CHECK_STR(info.subject, "CN=example.com");
    CHECK_STR(info.issuer, "CN=Example CA");
    CHECK_STR(info.subject_cn, "example.com");
    CHECK_STR(info.issuer_cn, "Example CA");
    CHECK(info.names.ndns == 0 && info.names.nip == 0);
    CHECK(!info.is_ca && !info.must_staple);
    CHECK_STR(info.key_type, "ec256");
    CHECK(info.der_len == 0x143 + 4);       /* 30 82 01 43 */
    CHECK(strlen(info.sha256) == 64);

    /* The same from DER; trailing bytes after DER are refused. */
    CHECK(x509_load(info.der, info.der_len, &y, &err) == 0);
    CHECK(y != NULL && x509_info(y, &info2, &err) == 0);
    CHECK_STR(info2.sha256, info.sha256);
    X509_free(y);
    y = NULL;
    {
        unsigned char *more = malloc(info.der_len + 1);

        memcpy(more, info.der, info.der_len);
        more[info.der_len] = 0;
        CHECK(x509_load(more, info.der_len + 1, &y, &err) == -1);
        CHECK_STR(kind_of(&err), "parse");
        CHECK(x509_load(more, info.der_len - 1, &y, &err) == -1);
        CHECK_STR(kind_of(&err), "parse");
        free(more);
    }
    CHECK(y == NULL);
    CHECK(x509_load("garbage", 7, &y, &err) == -1);
    CHECK_STR(kind_of(&err), "parse");
    CHECK(x509_load("", 0, &y, &err) == -1);
    CHECK_STR(kind_of(&err), "parse");
    CHECK(x509_load(pem, LUACME_PEM_MAX + 1, &y, &err) == -1);
    CHECK_STR(kind_of(&err), "too_large");
    CHECK(y == NULL);
    x509_info_free(&info);
    x509_info_free(&info2);
    x509_info_free(&info2);                 /* idempotent */
    X509_free(x);
    free(pem);
}

/* Read back names of a CSR and compare with the expected lists. */
static void
csr_roundtrip(EVP_PKEY *key, const char *const *names, size_t nn,
    const char *const *ips, size_t ni, const char *const *want_ips,
    int staple, int want_md_nid)
{
    unsigned char *der = NULL;
    const unsigned char *p;
    size_t len = 0, i;
    struct x509_csr_info got;
    struct luacme_err err;
    X509_REQ *req = NULL;
    X509_NAME *subj;
    unsigned char *spki = NULL;
    int spki_len, pknid = 0, mdnid = 0;
    char cn[300];

    CHECK(x509_csr(key, names, nn, ips, ni, staple, &der, &len, &err) == 0);
    if (der == NULL)
        return;
    memset(&got, 0, sizeof(got));
    CHECK(x509_csr_read(der, len, &got, &err) == 0);
    CHECK(got.names.ndns == nn && got.names.nip == ni);
    for (i = 0; i < nn && i < got.names.ndns; i++)
        CHECK_STR(got.names.dns[i], names[i]);
    for (i = 0; i < ni && i < got.names.nip; i++)
        CHECK_STR(got.names.ip[i], want_ips[i]);
    CHECK(got.must_staple == staple);
    if (nn > 0 && strlen(names[0]) <= 64)
        CHECK_STR(got.cn, names[0]);
    else
        CHECK(got.cn == NULL);
    /* The public key read back is the signing key's. */
    spki_len = i2d_PUBKEY(key, &spki);
    CHECK(spki_len > 0 && got.spki_len == (size_t)spki_len &&
        memcmp(got.spki, spki, got.spki_len) == 0);
    OPENSSL_free(spki);

    p = der;
    req = d2i_X509_REQ(NULL, &p, (long)len);
    CHECK(req != NULL);
    if (req != NULL) {
        subj = X509_REQ_get_subject_name(req);
        if (nn > 0 && strlen(names[0]) <= 64) {
            CHECK(X509_NAME_entry_count(subj) == 1);
            CHECK(X509_NAME_get_text_by_NID(subj, NID_commonName, cn,
                sizeof(cn)) > 0 && strcmp(cn, names[0]) == 0);
        } else {
            CHECK(X509_NAME_entry_count(subj) == 0);
        }
        CHECK(OBJ_find_sigid_algs(X509_REQ_get_signature_nid(req), &mdnid,
            &pknid) == 1 && mdnid == want_md_nid);
        CHECK(X509_REQ_get_version(req) == X509_REQ_VERSION_1);
    }
    /* A flipped byte in the signature is caught. */
    der[len - 1] ^= 1;
    x509_csr_info_free(&got);
    CHECK(x509_csr_read(der, len, &got, &err) == -1);
    CHECK(got.spki == NULL && got.cn == NULL);
    CHECK_STR(kind_of(&err), "parse");
    X509_REQ_free(req);
    free(der);
}

static void
test_csr(void)
{
    static const char *const names[] = {
        "example.com", "www.example.com", "*.example.org"
    };
    static const char *const ips[] = { "192.0.2.1", "2001:0db8:0::0001" };
    static const char *const ips_canon[] = { "192.0.2.1", "2001:db8::1" };
    char longname[LUACME_NAME_MAX + 2];
    const char *one[1], **many = NULL;
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *ec384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    unsigned char *der = NULL;
    size_t len = 0, i;
    struct luacme_err err;

    CHECK(ec != NULL && ec384 != NULL && rsa != NULL);
    csr_roundtrip(ec, names, 3, ips, 2, ips_canon, 0, NID_sha256);
    csr_roundtrip(ec, names, 1, NULL, 0, NULL, 1, NID_sha256);
    csr_roundtrip(ec384, names, 2, NULL, 0, NULL, 0, NID_sha384);
    csr_roundtrip(rsa, NULL, 0, ips, 2, ips_canon, 1, NID_sha256);

    /* A first name over 64 bytes cannot be a CN: empty subject. */
    memset(longname, 'a', 70);
    memcpy(longname + 70, ".example.com", 13);
    one[0] = longname;
    csr_roundtrip(ec, one, 1, NULL, 0, NULL, 0, NID_sha256);

    /* Rejects, all "invalid", nothing returned. */
    CHECK(x509_csr(ec, NULL, 0, NULL, 0, 0, &der, &len, &err) == -1);
    CHECK_STR(kind_of(&err), "invalid");
    one[0] = "";
    CHECK(x509_csr(ec, one, 1, NULL, 0, 0, &der, &len, &err) == -1);
    CHECK_STR(kind_of(&err), "invalid");
    one[0] = "has space.example";
    CHECK(x509_csr(ec, one, 1, NULL, 0, 0, &der, &len, &err) == -1);
    CHECK_STR(kind_of(&err), "invalid");
    one[0] = "caf\xc3\xa9.example";
    CHECK(x509_csr(ec, one, 1, NULL, 0, 0, &der, &len, &err) == -1);
    CHECK_STR(kind_of(&err), "invalid");
    memset(longname, 'a', LUACME_NAME_MAX + 1);
    longname[LUACME_NAME_MAX + 1] = '\0';
    one[0] = longname;
    CHECK(x509_csr(ec, one, 1, NULL, 0, 0, &der, &len, &err) == -1);
    CHECK_STR(kind_of(&err), "invalid");
    longname[LUACME_NAME_MAX] = '\0';       /* exactly the cap: fine */
    CHECK(x509_csr(ec, one, 1, NULL, 0, 0, &der, &len, &err) == 0);
    free(der);
    der = NULL;
    one[0] = "192.0.2.300";
    CHECK(x509_csr(ec, names, 1, one, 1, 0, &der, &len, &err) == -1);
    CHECK_STR(kind_of(&err), "invalid");
    one[0] = "example.com";
    CHECK(x509_csr(ec, names, 1, one, 1, 0, &der, &len, &err) == -1);
    CHECK_STR(kind_of(&err), "invalid");

    many = calloc(LUACME_CSR_MAX_NAMES + 1, sizeof(char *));
    for (i = 0; i <= LUACME_CSR_MAX_NAMES; i++)
        many[i] = "a.example";
    CHECK(x509_csr(ec, many, LUACME_CSR_MAX_NAMES, many, 1, 0, &der, &len,
        &err) == -1);
    CHECK_STR(kind_of(&err), "invalid");
    CHECK(der == NULL);
    CHECK(x509_csr(ec, many, LUACME_CSR_MAX_NAMES, NULL, 0, 0, &der, &len,
        &err) == 0);
    free(der);
    free(many);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(ec384);
    EVP_PKEY_free(rsa);
}

/* Build with a known validity and read the dates back. */
static void
validity(EVP_PKEY *key, int64_t nb, int64_t na, int want_type_nb,
    int want_type_na)
{
    X509 *x = NULL;
    struct x509_info info = {0};
    struct luacme_err err;

    CHECK(x509_self_signed(key, "example.com", nb, na, NULL, &x, &err) ==
        0);
    if (x == NULL)
        return;
    CHECK(ASN1_STRING_type(X509_get0_notBefore(x)) == want_type_nb);
    CHECK(ASN1_STRING_type(X509_get0_notAfter(x)) == want_type_na);
    CHECK(x509_info(x, &info, &err) == 0);
    CHECK(info.not_before == nb);
    CHECK(info.not_after == na);
    CHECK(X509_get_ext_by_NID(x, NID_subject_alt_name, -1) >= 0);
    x509_info_free(&info);
    X509_free(x);
}

static void
time_is(const char *text, int64_t want)
{
    ASN1_TIME *t = ASN1_TIME_new();
    int64_t got = 0;

    CHECK(t != NULL && ASN1_TIME_set_string(t, text) == 1);
    CHECK(x509_time_to_unix(t, &got) == 0);
    if (got != want)
        fprintf(stderr, "  %s: got %lld want %lld\n", text, (long long)got,
            (long long)want);
    CHECK(got == want);
    ASN1_TIME_free(t);
}

static void
test_times(void)
{
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *x = NULL;
    struct luacme_err err;
    int64_t got;

    time_is("19700101000000Z", 0);
    time_is("700101000001Z", 1);
    time_is("19000301000000Z", -2203891200LL);      /* 1900: no leap day */
    time_is("20000229120000Z", 951825600LL);        /* 2000: leap day */
    time_is("00010101000000Z", -62135596800LL);
    time_is("99991231235959Z", 253402300799LL);
    time_is("20380119031408Z", 2147483648LL);       /* past 32-bit time_t */
    CHECK(x509_time_to_unix(NULL, &got) == -1);

    validity(key, 946684800LL, 4102444800LL, V_ASN1_UTCTIME,
        V_ASN1_GENERALIZEDTIME);                    /* 2000 .. 2100 */
    validity(key, -62135596800LL, 253402300799LL, V_ASN1_GENERALIZEDTIME,
        V_ASN1_GENERALIZEDTIME);                    /* 0001 .. 9999 */
    validity(key, -631152000LL, 2524607999LL, V_ASN1_UTCTIME,
        V_ASN1_UTCTIME);                            /* 1950 .. 2049 */
    validity(key, -1LL, 1700000000LL, V_ASN1_UTCTIME, V_ASN1_UTCTIME);

    CHECK(x509_self_signed(key, "example.com", 0, 253402300800LL, NULL, &x,
        &err) == -1);
    CHECK_STR(kind_of(&err), "invalid");
    CHECK(x509_self_signed(key, "example.com", -62135596801LL, 0, NULL, &x,
        &err) == -1);
    CHECK_STR(kind_of(&err), "invalid");
    CHECK(x == NULL);
    EVP_PKEY_free(key);
}

static void
test_reverse(void)
{
    char out[X509_REVERSE_NAME_MAX];
    struct luacme_err err;

    CHECK(x509_reverse_name("127.0.0.1", out, sizeof(out), &err) == 0);
    CHECK_STR(out, "1.0.0.127.in-addr.arpa");
    CHECK(x509_reverse_name("192.0.2.5", out, sizeof(out), &err) == 0);
    CHECK_STR(out, "5.2.0.192.in-addr.arpa");
    CHECK(x509_reverse_name("2001:db8::1", out, sizeof(out), &err) == 0);
    CHECK_STR(out, "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0."
        "1.0.0.2.ip6.arpa");
    CHECK(x509_reverse_name("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", out,
        sizeof(out), &err) == 0);
    CHECK(strlen(out) == X509_REVERSE_NAME_MAX - 1);
    CHECK(x509_reverse_name("255.255.255.255", out, sizeof(out), &err) ==
        0);
    CHECK_STR(out, "255.255.255.255.in-addr.arpa");
    CHECK(x509_reverse_name("example.com", out, sizeof(out), &err) == -1);
    CHECK_STR(kind_of(&err), "invalid");
    CHECK(x509_reverse_name("1.2.3", out, sizeof(out), &err) == -1);
    CHECK(x509_reverse_name("", out, sizeof(out), &err) == -1);
    CHECK(x509_reverse_name("::1", out, 10, &err) == -1);
}

/* PEM of a fresh self-signed certificate. */
static char *
make_pem(EVP_PKEY *key, const char *name)
{
    X509 *x = NULL;
    BIO *bio = BIO_new(BIO_s_mem());
    struct luacme_err err;
    char *data, *s = NULL;
    long len;

    if (x509_self_signed(key, name, 0, 1700000000LL, NULL, &x, &err) == 0 &&
        PEM_write_bio_X509(bio, x) == 1) {
        len = BIO_get_mem_data(bio, &data);
        s = malloc((size_t)len + 1);
        memcpy(s, data, (size_t)len);
        s[len] = '\0';
    }
    X509_free(x);
    BIO_free(bio);
    return s;
}

static void
test_pem(void)
{
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    char *a = make_pem(key, "a.example"), *b = make_pem(key, "b.example");
    char *c = make_pem(key, "c.example");
    char *chain = NULL, *crlf = NULL, *big = NULL, *pem = NULL, **list = NULL;
    char *label = NULL;
    unsigned char *der = NULL;
    size_t n = 0, i, j, len, der_len = 0, pem_len = 0;
    struct luacme_err err;
    BIO *bio = BIO_new(BIO_s_mem());

    CHECK(a != NULL && b != NULL && c != NULL);
    len = strlen(a) + strlen(b) + strlen(c);
    chain = malloc(len + 64);
    snprintf(chain, len + 64, "leading text\n%s\n%s%s", a, b, c);
    CHECK(x509_pem_split(chain, strlen(chain), &list, &n, &err) == 0);
    CHECK(n == 3);
    if (n == 3) {
        CHECK_STR(list[0], a);
        CHECK_STR(list[1], b);
        CHECK_STR(list[2], c);
    }
    x509_strv_free(list, n);
    list = NULL;

    /* CRLF line ends and 76-column lines come back normalised. */
    crlf = malloc(2 * strlen(a) + 1);
    for (i = 0, j = 0; a[i] != '\0'; i++) {
        if (a[i] == '\n')
            crlf[j++] = '\r';
        crlf[j++] = a[i];
    }
    crlf[j] = '\0';
    CHECK(x509_pem_split(crlf, j, &list, &n, &err) == 0);
    CHECK(n == 1 && strcmp(list[0], a) == 0);
    x509_strv_free(list, n);
    list = NULL;

    /* Private keys anywhere: refused as such. */
    PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL);
    BIO_write(bio, a, (int)strlen(a));
    {
        char *data;
        long blen = BIO_get_mem_data(bio, &data);

        CHECK(x509_pem_split(data, (size_t)blen, &list, &n, &err) == -1);
        CHECK_STR(kind_of(&err), "private_key");
        CHECK(x509_pem_decode(data, (size_t)blen, &der, &der_len, &label,
            &err) == -1);
        CHECK_STR(kind_of(&err), "private_key");
    }
    snprintf(chain, len + 64, "%s-----BEGIN EC PRIVATE KEY-----\n!!\n"
        "-----END EC PRIVATE KEY-----\n", a);
    CHECK(x509_pem_split(chain, strlen(chain), &list, &n, &err) == -1);
    CHECK_STR(kind_of(&err), "private_key");

    /* Garbage, nothing, other blocks, broken blocks: "parse". */
    CHECK(x509_pem_split("garbage", 7, &list, &n, &err) == -1);
    CHECK_STR(kind_of(&err), "parse");
    CHECK(x509_pem_split("", 0, &list, &n, &err) == -1);
    CHECK_STR(kind_of(&err), "parse");
    snprintf(chain, len + 64, "%s-----BEGIN PUBLIC KEY-----\nAAAA\n"
        "-----END PUBLIC KEY-----\n", a);
    CHECK(x509_pem_split(chain, strlen(chain), &list, &n, &err) == -1);
    CHECK_STR(kind_of(&err), "parse");
    CHECK(x509_pem_split("-----BEGIN CERTIFICATE-----\nAAAA\n-----END "
        "CERTIFICATE-----\n", 58, &list, &n, &err) == -1);
    CHECK_STR(kind_of(&err), "parse");
    snprintf(chain, len + 64, "%s", a);
    chain[strlen(chain) - 10] = '\0';       /* no END line */
    CHECK(x509_pem_split(chain, strlen(chain), &list, &n, &err) == -1);
    CHECK_STR(kind_of(&err), "parse");
    CHECK(list == NULL);

    /* Caps: LUACME_CHAIN_MAX_CERTS certificates and LUACME_PEM_MAX. */
    big = malloc(strlen(a) * (LUACME_CHAIN_MAX_CERTS + 1) + 1);
    big[0] = '\0';
    for (i = 0; i < LUACME_CHAIN_MAX_CERTS; i++)
        strcat(big, a);
    CHECK(x509_pem_split(big, strlen(big), &list, &n, &err) == 0);
    CHECK(n == LUACME_CHAIN_MAX_CERTS);
    x509_strv_free(list, n);
    list = NULL;
    strcat(big, a);
    CHECK(x509_pem_split(big, strlen(big), &list, &n, &err) == -1);
    CHECK_STR(kind_of(&err), "too_large");
    CHECK(x509_pem_split(big, LUACME_PEM_MAX + 1, &list, &n, &err) == -1);
    CHECK_STR(kind_of(&err), "too_large");

    /* pem_decode / pem_encode round trip. */
    CHECK(x509_pem_decode(a, strlen(a), &der, &der_len, &label, &err) == 0);
    CHECK_STR(label, "CERTIFICATE");
    CHECK(der != NULL && der[0] == 0x30);
    CHECK(x509_pem_encode(der, der_len, "CERTIFICATE", &pem, &pem_len,
        &err) == 0);
    CHECK_STR(pem, a);
    CHECK(pem != NULL && pem_len == strlen(a));
    free(pem);
    pem = NULL;
    CHECK(x509_pem_encode("\x30\x00", 2, "X509 CRL", &pem, &pem_len,
        &err) == 0);
    CHECK_STR(pem, "-----BEGIN X509 CRL-----\nMAA=\n-----END X509 CRL-----\n");
    free(pem);
    pem = NULL;
    CHECK(x509_pem_encode("", 0, "CERTIFICATE", &pem, &pem_len, &err) == -1);
    CHECK_STR(kind_of(&err), "invalid");
    CHECK(x509_pem_encode(der, der_len, "bad-label", &pem, &pem_len, &err) ==
        -1);
    CHECK_STR(kind_of(&err), "invalid");
    CHECK(x509_pem_encode(der, der_len, "", &pem, &pem_len, &err) == -1);
    CHECK(x509_pem_encode(der, der_len, "A  B", &pem, &pem_len, &err) == -1);
    CHECK(x509_pem_encode(der, LUACME_PEM_MAX + 1, "CERTIFICATE", &pem,
        &pem_len, &err) == -1);
    CHECK_STR(kind_of(&err), "too_large");
    CHECK(pem == NULL);
    free(der);
    free(label);
    der = NULL;
    label = NULL;
    CHECK(x509_pem_decode("no pem here", 11, &der, &der_len, &label, &err) ==
        -1);
    CHECK_STR(kind_of(&err), "parse");
    CHECK(der == NULL && label == NULL);

    BIO_free(bio);
    free(big);
    free(crlf);
    free(chain);
    free(a);
    free(b);
    free(c);
    EVP_PKEY_free(key);
}

static void
test_key_types(void)
{
    static const struct { const char *type, *arg; size_t bits;
        const char *want; } keys[] = {
        {"EC", "P-384", 0, "ec384"}, {"EC", "P-521", 0, "ec521"},
        {"RSA", NULL, 3072, "rsa3072"}, {"ED25519", NULL, 0, "ed25519"},
    };
    struct x509_info info = {0};
    struct luacme_err err;
    EVP_PKEY *key;
    X509 *x;
    size_t i;

    for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        x = NULL;
        key = keys[i].arg != NULL ?
            EVP_PKEY_Q_keygen(NULL, NULL, keys[i].type, keys[i].arg) :
            keys[i].bits != 0 ?
            EVP_PKEY_Q_keygen(NULL, NULL, keys[i].type, keys[i].bits) :
            EVP_PKEY_Q_keygen(NULL, NULL, keys[i].type);
        CHECK(key != NULL);
        CHECK(x509_self_signed(key, "example.com", 0, 1, NULL, &x, &err) ==
            0);
        CHECK(x != NULL && x509_info(x, &info, &err) == 0);
        CHECK_STR(info.key_type, keys[i].want);
        CHECK(x != NULL && X509_verify(x, key) == 1);
        x509_info_free(&info);
        X509_free(x);
        EVP_PKEY_free(key);
    }
}

int
main(void)
{
    test_tls_alpn01();
    test_rfc9773();
    test_csr();
    test_times();
    test_reverse();
    test_pem();
    test_key_types();
    CHECK(ERR_peek_error() == 0);           /* nothing left in the queue */
    return check_done();
}
