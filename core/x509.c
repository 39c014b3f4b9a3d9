/*
 * X.509 for luacme: CSR, certificate reading, PEM chains, tls-alpn-01.
 * OpenSSL 3 EVP/X509 interfaces only. Contracts are in x509.h.
 */
#include "x509.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "luacme_limits.h"

/* RFC 8737 §3: id-pe-acmeIdentifier; OpenSSL 3.0 has no NID for it. */
#define OID_ACME_IDENTIFIER "1.3.6.1.5.5.7.1.31"

/* The value of a TLS Feature extension asking for status_request (RFC
 * 7633): SEQUENCE { INTEGER 5 }. */
static const unsigned char tls_feature_staple[] = {
    0x30, 0x03, 0x02, 0x01, 0x05
};

/* The subject and issuer of the tls-alpn-01 certificate. RFC 5280 wants
 * a non-empty issuer; the validating CA only looks at the SAN. */
#define ALPN_CN "ACME Challenge Temp Certificate"

#define SECS_PER_DAY 86400

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil), exact for every year we can meet in a certificate;
 * timegm() is neither portable nor defined before 1900 everywhere. */
static int64_t
days_from_civil(int64_t y, int m, int d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* The inverse: civil date of a day count since 1970-01-01. */
static void
civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    int64_t era, doe, yoe, doy, mp;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

int
x509_time_to_unix(const ASN1_TIME *t, int64_t *out)
{
    struct tm tm;
    int64_t days;

    /* ASN1_TIME_to_tm(NULL) would mean "now": never what we want. */
    if (t == NULL)
        return -1;
    memset(&tm, 0, sizeof(tm));
    if (ASN1_TIME_to_tm(t, &tm) != 1) {
        ERR_clear_error();
        return -1;
    }
    days = days_from_civil((int64_t)tm.tm_year + 1900, tm.tm_mon + 1,
        tm.tm_mday);
    *out = days * SECS_PER_DAY + tm.tm_hour * 3600 + tm.tm_min * 60 +
        tm.tm_sec;
    return 0;
}

/* Set s to Unix time t. ASN1_TIME_set_string_X509 picks UTCTime for
 * 1950..2049 and GeneralizedTime otherwise, as RFC 5280 §4.1.2.5 asks. */
static int
set_time(ASN1_TIME *s, int64_t t, struct luacme_err *err)
{
    int64_t days, rem, y;
    int m, d;
    char buf[32];

    days = (t >= 0 ? t : t - (SECS_PER_DAY - 1)) / SECS_PER_DAY;
    rem = t - days * SECS_PER_DAY;
    civil_from_days(days, &y, &m, &d);
    if (y < 1 || y > 9999)
        return err_set(err, "invalid", "x509: time %lld outside years "
            "0001..9999", (long long)t);
    snprintf(buf, sizeof(buf), "%04d%02d%02d%02d%02d%02dZ", (int)y, m, d,
        (int)(rem / 3600), (int)(rem / 60 % 60), (int)(rem % 60));
    if (ASN1_TIME_set_string_X509(s, buf) != 1)
        return err_openssl(err, "crypto", "x509: setting a time");
    return 0;
}

/* A printable excerpt of untrusted text for an error message. */
static const char *
excerpt(const char *s, char *buf, size_t size)
{
    size_t i;

    for (i = 0; s[i] != '\0' && i + 4 < size; i++)
        buf[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    if (s[i] != '\0' && i >= 3) {
        memcpy(buf + i - 3, "...", 3);
    }
    buf[i] = '\0';
    return buf;
}

int
x509_check_name(const char *name, struct luacme_err *err)
{
    size_t i, len = strlen(name);
    char ex[48];

    if (len == 0)
        return err_set(err, "invalid", "x509: empty name");
    if (len > LUACME_NAME_MAX)
        return err_set(err, "invalid", "x509: name \"%s\" longer than "
            "LUACME_NAME_MAX (%d)", excerpt(name, ex, sizeof(ex)),
            LUACME_NAME_MAX);
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];

        if (c <= 0x20 || c >= 0x7f)
            return err_set(err, "invalid", "x509: name \"%s\" has a byte "
                "outside printable ASCII at %zu",
                excerpt(name, ex, sizeof(ex)), i + 1);
    }
    return 0;
}

size_t
x509_parse_ip(const char *text, unsigned char out[16])
{
    if (inet_pton(AF_INET, text, out) == 1)
        return 4;
    if (inet_pton(AF_INET6, text, out) == 1)
        return 16;
    return 0;
}

void
x509_strv_free(char **v, size_t n)
{
    size_t i;

    if (v == NULL)
        return;
    for (i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void
x509_names_free(struct x509_names *names)
{
    x509_strv_free(names->dns, names->ndns);
    x509_strv_free(names->ip, names->nip);
    memset(names, 0, sizeof(*names));
}

/* malloc'd NUL-terminated copy of len bytes. */
static char *
dupmem(const void *p, size_t len)
{
    char *s = malloc(len + 1);

    if (s == NULL)
        return NULL;
    memcpy(s, p, len);
    s[len] = '\0';
    return s;
}

/* Append one dNSName or iPAddress to gens. */
static int
gens_add(GENERAL_NAMES *gens, int type, const unsigned char *data,
    size_t len)
{
    GENERAL_NAME *gn = NULL;
    ASN1_STRING *s = NULL;
    int rc = -1;

    gn = GENERAL_NAME_new();
    s = type == GEN_IPADD ? ASN1_OCTET_STRING_new() : ASN1_IA5STRING_new();
    if (gn == NULL || s == NULL || ASN1_STRING_set(s, data, (int)len) != 1)
        goto out;
    GENERAL_NAME_set0_value(gn, type, s);
    s = NULL;
    if (sk_GENERAL_NAME_push(gens, gn) <= 0)
        goto out;
    gn = NULL;
    rc = 0;
out:
    ASN1_STRING_free(s);
    GENERAL_NAME_free(gn);
    return rc;
}

/* Validate and add names and IPs to gens; "invalid" on bad input. */
static int
gens_build(GENERAL_NAMES *gens, const char *const *names, size_t nnames,
    const char *const *ips, size_t nips, struct luacme_err *err)
{
    unsigned char ip[16];
    size_t i, iplen;
    char ex[48];

    for (i = 0; i < nnames; i++) {
        if (x509_check_name(names[i], err) != 0)
            return -1;
        if (gens_add(gens, GEN_DNS, (const unsigned char *)names[i],
            strlen(names[i])) != 0)
            return err_openssl(err, "crypto", "x509: adding a name");
    }
    for (i = 0; i < nips; i++) {
        iplen = x509_parse_ip(ips[i], ip);
        if (iplen == 0)
            return err_set(err, "invalid", "x509: \"%s\" is not an IP "
                "address", excerpt(ips[i], ex, sizeof(ex)));
        if (gens_add(gens, GEN_IPADD, ip, iplen) != 0)
            return err_openssl(err, "crypto", "x509: adding an IP");
    }
    return 0;
}

/* Read the DNS and IP entries of gens (other kinds are ignored). A DNS
 * name with a NUL or an IP of odd length is a malformed certificate. */
static int
gens_read(const GENERAL_NAMES *gens, struct x509_names *out,
    struct luacme_err *err)
{
    struct x509_names n = {0};
    const GENERAL_NAME *gn;
    const ASN1_STRING *s;
    char buf[X509_IP_TEXT_MAX];
    size_t ndns = 0, nip = 0;
    int i, type, count = sk_GENERAL_NAME_num(gens);
    int rc = -1;

    for (i = 0; i < count; i++) {
        GENERAL_NAME_get0_value(sk_GENERAL_NAME_value(gens, i), &type);
        ndns += type == GEN_DNS;
        nip += type == GEN_IPADD;
    }
    if ((ndns > 0 && (n.dns = calloc(ndns, sizeof(char *))) == NULL) ||
        (nip > 0 && (n.ip = calloc(nip, sizeof(char *))) == NULL)) {
        err_set(err, "crypto", "x509: out of memory");
        goto out;
    }
    for (i = 0; i < count; i++) {
        gn = sk_GENERAL_NAME_value(gens, i);
        s = GENERAL_NAME_get0_value(gn, &type);
        if (type == GEN_DNS) {
            if (memchr(ASN1_STRING_get0_data(s), 0,
                (size_t)ASN1_STRING_length(s)) != NULL) {
                err_set(err, "parse", "x509: DNS name with a NUL byte");
                goto out;
            }
            n.dns[n.ndns] = dupmem(ASN1_STRING_get0_data(s),
                (size_t)ASN1_STRING_length(s));
            if (n.dns[n.ndns++] == NULL) {
                err_set(err, "crypto", "x509: out of memory");
                goto out;
            }
        } else if (type == GEN_IPADD) {
            int af = ASN1_STRING_length(s) == 4 ? AF_INET :
                ASN1_STRING_length(s) == 16 ? AF_INET6 : -1;

            if (af == -1 || inet_ntop(af, ASN1_STRING_get0_data(s), buf,
                sizeof(buf)) == NULL) {
                err_set(err, "parse", "x509: iPAddress of %d bytes",
                    ASN1_STRING_length(s));
                goto out;
            }
            n.ip[n.nip] = dupmem(buf, strlen(buf));
            if (n.ip[n.nip++] == NULL) {
                err_set(err, "crypto", "x509: out of memory");
                goto out;
            }
        }
    }
    *out = n;
    memset(&n, 0, sizeof(n));
    rc = 0;
out:
    x509_names_free(&n);
    return rc;
}

/* The digest to sign with: SHA-256, stronger for the bigger curves,
 * none for EdDSA (which hashes internally). */
static const EVP_MD *
sign_md(EVP_PKEY *key)
{
    if (EVP_PKEY_is_a(key, "ED25519") || EVP_PKEY_is_a(key, "ED448"))
        return NULL;
    if (EVP_PKEY_is_a(key, "EC")) {
        if (EVP_PKEY_get_bits(key) > 384)
            return EVP_sha512();
        if (EVP_PKEY_get_bits(key) > 256)
            return EVP_sha384();
    }
    return EVP_sha256();
}

/* An extension of a given OID (text) with raw extnValue bytes. */
static X509_EXTENSION *
ext_raw(int nid, const char *oid, int crit, const unsigned char *val,
    size_t len)
{
    ASN1_OBJECT *obj = NULL;
    ASN1_OCTET_STRING *os = NULL;
    X509_EXTENSION *ext = NULL;

    obj = oid != NULL ? OBJ_txt2obj(oid, 1) : OBJ_nid2obj(nid);
    os = ASN1_OCTET_STRING_new();
    if (obj == NULL || os == NULL ||
        ASN1_OCTET_STRING_set(os, val, (int)len) != 1)
        goto out;
    ext = X509_EXTENSION_create_by_OBJ(NULL, obj, crit, os);
out:
    ASN1_OCTET_STRING_free(os);
    ASN1_OBJECT_free(obj);      /* no-op for the static NID objects */
    return ext;
}

/* The DER of req in a malloc'd *der (caller frees) of *der_len bytes.
 * Returns 0, or -1 with err filled and *der untouched. */
static int
req_der(X509_REQ *req, unsigned char **der, size_t *der_len,
    struct luacme_err *err)
{
    unsigned char *buf = NULL, *p;
    int len = i2d_X509_REQ(req, NULL);

    if (len <= 0 || (buf = malloc((size_t)len)) == NULL)
        return err_openssl(err, "crypto", "csr: encoding");
    p = buf;
    if (i2d_X509_REQ(req, &p) != len) {
        free(buf);
        return err_openssl(err, "crypto", "csr: encoding");
    }
    *der = buf;
    *der_len = (size_t)len;
    return 0;
}

int
x509_csr(EVP_PKEY *key, const char *const *names, size_t nnames,
    const char *const *ips, size_t nips, int must_staple,
    unsigned char **der, size_t *der_len, struct luacme_err *err)
{
    return x509_csr_ex(key, names, nnames, ips, nips, must_staple, NULL,
        der, der_len, err);
}

/* The subject attributes a template may set, in the order x509.h gives. */
static const char *const tmpl_fields[] = {
    "C", "ST", "L", "street", "postalCode", "O", "OU", "CN", "serialNumber",
    NULL
};

/* Check template t; sets *has_cn when it names a CN. */
static int
tmpl_check(const struct x509_csr_template *t, int *has_cn,
    struct luacme_err *err)
{
    size_t i, j;
    int k;

    *has_cn = 0;
    if (t->nsubject > LUACME_CSR_MAX_TEMPLATE ||
        t->next > LUACME_CSR_MAX_TEMPLATE)
        return err_set(err, "invalid", "csr: more than %d subject "
            "attributes or extensions", LUACME_CSR_MAX_TEMPLATE);
    for (i = 0; i < t->nsubject; i++) {
        for (k = 0; tmpl_fields[k] != NULL; k++)
            if (strcmp(tmpl_fields[k], t->subject[i].field) == 0)
                break;
        if (tmpl_fields[k] == NULL)
            return err_set(err, "invalid", "csr: unknown subject "
                "attribute '%.32s'", t->subject[i].field);
        if (strcmp(t->subject[i].field, "CN") == 0)
            *has_cn = 1;
    }
    for (i = 0; i < t->next; i++) {
        const struct x509_csr_ext *e = &t->ext[i];
        const unsigned char *p = e->value;
        ASN1_OBJECT *obj = OBJ_txt2obj(e->oid, 1);
        ASN1_TYPE *v;
        int nid = obj != NULL ? OBJ_obj2nid(obj) : NID_undef;

        ASN1_OBJECT_free(obj);
        if (obj == NULL)
            return err_set(err, "invalid", "csr: extension OID '%.64s' "
                "is not a dotted OID", e->oid);
        if (nid == NID_subject_alt_name || nid == NID_tlsfeature)
            return err_set(err, "invalid", "csr: extension %.64s is made "
                "from names, ips and must_staple", e->oid);
        for (j = 0; j < i; j++)
            if (strcmp(t->ext[j].oid, e->oid) == 0)
                return err_set(err, "invalid", "csr: extension %.64s "
                    "given twice", e->oid);
        if (e->len > LUACME_CSR_MAX_EXT_VALUE || e->len == 0)
            return err_set(err, "invalid", "csr: extension %.64s: value "
                "empty or over %d bytes", e->oid, LUACME_CSR_MAX_EXT_VALUE);
        v = d2i_ASN1_TYPE(NULL, &p, (long)e->len);
        ASN1_TYPE_free(v);
        if (v == NULL || p != e->value + e->len) {
            ERR_clear_error();
            return err_set(err, "invalid", "csr: extension %.64s: value "
                "is not one DER element", e->oid);
        }
    }
    return 0;
}

/* Add template t's subject attributes and extensions to req and exts. */
static int
tmpl_apply(X509_REQ *req, STACK_OF(X509_EXTENSION) **exts,
    const struct x509_csr_template *t, struct luacme_err *err)
{
    X509_NAME *subj = X509_REQ_get_subject_name(req);
    X509_EXTENSION *ext;
    size_t i;

    for (i = 0; i < t->nsubject; i++) {
        if (X509_NAME_add_entry_by_txt(subj, t->subject[i].field,
            MBSTRING_UTF8, (const unsigned char *)t->subject[i].value, -1,
            -1, 0) != 1) {
            ERR_clear_error();
            return err_set(err, "invalid", "csr: subject %s: value not "
                "allowed", t->subject[i].field);
        }
    }
    for (i = 0; i < t->next; i++) {
        ext = ext_raw(NID_undef, t->ext[i].oid, t->ext[i].critical,
            t->ext[i].value, t->ext[i].len);
        if (ext == NULL || X509v3_add_ext(exts, ext, -1) == NULL) {
            X509_EXTENSION_free(ext);
            return err_openssl(err, "crypto", "csr: adding an extension");
        }
        X509_EXTENSION_free(ext);
    }
    return 0;
}

int
x509_csr_ex(EVP_PKEY *key, const char *const *names, size_t nnames,
    const char *const *ips, size_t nips, int must_staple,
    const struct x509_csr_template *t,
    unsigned char **der, size_t *der_len, struct luacme_err *err)
{
    X509_REQ *req = NULL;
    GENERAL_NAMES *gens = NULL;
    STACK_OF(X509_EXTENSION) *exts = NULL;
    X509_EXTENSION *ext = NULL;
    int empty_subject, tmpl_cn = 0, rc = -1;

    if (nnames + nips == 0)
        return err_set(err, "invalid", "csr: no names and no IPs");
    if (nnames > LUACME_CSR_MAX_NAMES || nips > LUACME_CSR_MAX_NAMES ||
        nnames + nips > LUACME_CSR_MAX_NAMES)
        return err_set(err, "invalid", "csr: more than "
            "LUACME_CSR_MAX_NAMES (%d) names", LUACME_CSR_MAX_NAMES);
    if (t != NULL && tmpl_check(t, &tmpl_cn, err) != 0)
        return -1;
    gens = GENERAL_NAMES_new();
    if (gens == NULL) {
        err_openssl(err, "crypto", "csr: out of memory");
        goto out;
    }
    if (gens_build(gens, names, nnames, ips, nips, err) != 0)
        goto out;

    req = X509_REQ_new();
    if (req == NULL || X509_REQ_set_version(req, X509_REQ_VERSION_1) != 1 ||
        X509_REQ_set_pubkey(req, key) != 1) {
        err_openssl(err, "crypto", "csr: creating the request");
        goto out;
    }
    /* A CN holds at most 64 characters (RFC 5280 ub-common-name); longer
     * first names go only into the SAN, under an empty subject. */
    empty_subject = nnames == 0 || strlen(names[0]) > 64;
    if (t != NULL) {
        /* A template's CN replaces ours; any attribute fills the subject. */
        if (tmpl_apply(req, &exts, t, err) != 0)
            goto out;
        if (tmpl_cn)
            empty_subject = 1;
    }
    if (!empty_subject && X509_NAME_add_entry_by_txt(
        X509_REQ_get_subject_name(req), "CN", MBSTRING_ASC,
        (const unsigned char *)names[0], -1, -1, 0) != 1) {
        err_openssl(err, "crypto", "csr: setting the subject");
        goto out;
    }
    /* RFC 5280 §4.2.1.6: with an empty subject the SAN is critical. */
    if (X509V3_add1_i2d(&exts, NID_subject_alt_name, gens,
        X509_NAME_entry_count(X509_REQ_get_subject_name(req)) == 0,
        X509V3_ADD_DEFAULT) != 1) {
        err_openssl(err, "crypto", "csr: adding subjectAltName");
        goto out;
    }
    if (must_staple) {
        ext = ext_raw(NID_tlsfeature, NULL, 0, tls_feature_staple,
            sizeof(tls_feature_staple));
        if (ext == NULL || X509v3_add_ext(&exts, ext, -1) == NULL) {
            err_openssl(err, "crypto", "csr: adding the TLS feature");
            goto out;
        }
    }
    if (X509_REQ_add_extensions(req, exts) != 1 ||
        X509_REQ_sign(req, key, sign_md(key)) <= 0) {
        err_openssl(err, "crypto", "csr: signing");
        goto out;
    }
    if (req_der(req, der, der_len, err) != 0)
        goto out;
    rc = 0;
out:
    X509_EXTENSION_free(ext);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_free(req);
    GENERAL_NAMES_free(gens);
    return rc;
}

/* Is the TLS Feature status_request (5) in this decoded extension? */
static int
feature_has_staple(const TLS_FEATURE *tf)
{
    int64_t v;
    int i;

    for (i = 0; i < sk_ASN1_INTEGER_num(tf); i++)
        if (ASN1_INTEGER_get_int64(&v, sk_ASN1_INTEGER_value(tf, i)) == 1 &&
            v == 5)
            return 1;
    return 0;
}

static int name_cn(const X509_NAME *nm, char **cn);

int
x509_csr_read(const unsigned char *der, size_t len,
    struct x509_csr_info *info, struct luacme_err *err)
{
    const unsigned char *p = der;
    X509_REQ *req = NULL;
    STACK_OF(X509_EXTENSION) *exts = NULL;
    GENERAL_NAMES *gens = NULL;
    TLS_FEATURE *tf = NULL;
    struct x509_csr_info n;
    unsigned char *q;
    int crit, rc = -1, spki_len;

    memset(&n, 0, sizeof(n));
    if (len > LUACME_PEM_MAX)
        return err_set(err, "too_large", "csr: over LUACME_PEM_MAX");
    req = d2i_X509_REQ(NULL, &p, (long)len);
    if (req == NULL || p != der + len) {
        err_openssl(err, "parse", "csr: not one DER request");
        goto out;
    }
    if (X509_REQ_verify(req, X509_REQ_get0_pubkey(req)) != 1) {
        err_openssl(err, "parse", "csr: bad signature");
        goto out;
    }
    exts = X509_REQ_get_extensions(req);
    gens = X509V3_get_d2i(exts, NID_subject_alt_name, &crit, NULL);
    if (gens == NULL && crit != -1) {
        err_openssl(err, "parse", "csr: bad subjectAltName");
        goto out;
    }
    if (gens != NULL && gens_read(gens, &n.names, err) != 0)
        goto out;
    tf = X509V3_get_d2i(exts, NID_tlsfeature, &crit, NULL);
    if (tf == NULL && crit != -1) {
        err_openssl(err, "parse", "csr: bad TLS feature");
        goto out;
    }
    n.must_staple = tf != NULL && feature_has_staple(tf);
    if (name_cn(X509_REQ_get_subject_name(req), &n.cn) != 0) {
        err_openssl(err, "parse", "csr: unreadable common name");
        goto out;
    }
    spki_len = i2d_PUBKEY(X509_REQ_get0_pubkey(req), NULL);
    if (spki_len <= 0) {
        err_openssl(err, "parse", "csr: unreadable public key");
        goto out;
    }
    n.spki = malloc((size_t)spki_len);
    if (n.spki == NULL) {
        err_set(err, "memory", "csr: out of memory");
        goto out;
    }
    q = n.spki;
    if (i2d_PUBKEY(X509_REQ_get0_pubkey(req), &q) != spki_len) {
        err_openssl(err, "parse", "csr: unreadable public key");
        goto out;
    }
    n.spki_len = (size_t)spki_len;
    *info = n;
    memset(&n, 0, sizeof(n));
    rc = 0;
out:
    x509_csr_info_free(&n);
    sk_ASN1_INTEGER_pop_free(tf, ASN1_INTEGER_free);
    GENERAL_NAMES_free(gens);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_free(req);
    return rc;
}

void
x509_csr_info_free(struct x509_csr_info *info)
{
    x509_names_free(&info->names);
    free(info->cn);
    free(info->spki);
    memset(info, 0, sizeof(*info));
}

/* Parse exactly one DER certificate. */
static X509 *
der_to_x509(const unsigned char *der, size_t len)
{
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);

    if (x != NULL && p != der + len) {
        X509_free(x);
        x = NULL;
    }
    return x;
}

/* Does a PEM label name a private key ("PRIVATE KEY", "RSA PRIVATE KEY",
 * "ENCRYPTED PRIVATE KEY", ...)? */
static int
label_is_private(const char *label, size_t len)
{
    static const char pk[] = "PRIVATE KEY";
    size_t i;

    for (i = 0; i + sizeof(pk) - 1 <= len; i++)
        if (memcmp(label + i, pk, sizeof(pk) - 1) == 0)
            return 1;
    return 0;
}

/* Scan raw text for a BEGIN line naming a private key, so even a block
 * too broken for the PEM reader is refused as a key, not a parse error. */
static int
text_has_private_key(const char *s, size_t len)
{
    static const char begin[] = "-----BEGIN ";
    const size_t blen = sizeof(begin) - 1;
    size_t i, j;

    for (i = 0; i + blen <= len; i++) {
        if (memcmp(s + i, begin, blen) != 0)
            continue;
        for (j = i + blen; j < len && s[j] != '\n' && s[j] != '-'; j++)
            ;
        if (label_is_private(s + i + blen, j - i - blen))
            return 1;
    }
    return 0;
}

/* Did the PEM reader stop at a clean end of input? */
static int
pem_at_end(void)
{
    unsigned long e = ERR_peek_last_error();

    return ERR_GET_LIB(e) == ERR_LIB_PEM &&
        ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
}

/* Copy the contents of a memory BIO into a malloc'd string. */
static int
bio_take(BIO *bio, char **out, size_t *out_len)
{
    char *data;
    long len = BIO_get_mem_data(bio, &data);

    if (len < 0 || (*out = dupmem(data, (size_t)len)) == NULL)
        return -1;
    if (out_len != NULL)
        *out_len = (size_t)len;
    return 0;
}

int
x509_load(const void *in, size_t len, X509 **cert, struct luacme_err *err)
{
    BIO *bio = NULL;
    X509 *x = NULL;
    char *name = NULL, *header = NULL;
    unsigned char *data = NULL;
    long dlen;
    int rc = -1;

    if (len > LUACME_PEM_MAX)
        return err_set(err, "too_large", "x509: certificate over "
            "LUACME_PEM_MAX");
    /* DER starts with a SEQUENCE tag; PEM with text. */
    if (len > 0 && ((const unsigned char *)in)[0] == 0x30) {
        x = der_to_x509(in, len);
        if (x == NULL) {
            err_openssl(err, "parse", "x509: not one DER certificate");
            goto out;
        }
        *cert = x;
        return 0;
    }
    bio = BIO_new_mem_buf(in, (int)len);
    if (bio == NULL) {
        err_openssl(err, "crypto", "x509: out of memory");
        goto out;
    }
    for (;;) {
        if (PEM_read_bio(bio, &name, &header, &data, &dlen) != 1) {
            err_openssl(err, "parse", "x509: no PEM certificate");
            goto out;
        }
        if (strcmp(name, PEM_STRING_X509) == 0)
            break;
        OPENSSL_free(name);
        OPENSSL_free(header);
        OPENSSL_free(data);
        name = header = NULL;
        data = NULL;
    }
    x = der_to_x509(data, (size_t)dlen);
    if (x == NULL) {
        err_openssl(err, "parse", "x509: PEM block is not a certificate");
        goto out;
    }
    *cert = x;
    rc = 0;
out:
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(data);
    BIO_free(bio);
    return rc;
}

/* One-line RFC 2253 form of a name (ASCII: other bytes escaped). */
static char *
name_text(const X509_NAME *nm)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *s = NULL;

    if (bio != NULL && X509_NAME_print_ex(bio, nm, 0, XN_FLAG_RFC2253) >= 0)
        bio_take(bio, &s, NULL);
    BIO_free(bio);
    return s;
}

/* The first CN of a name as UTF-8; *cn stays NULL when there is none. */
static int
name_cn(const X509_NAME *nm, char **cn)
{
    const X509_NAME_ENTRY *e;
    unsigned char *utf8 = NULL;
    int i, len;

    *cn = NULL;
    i = X509_NAME_get_index_by_NID(nm, NID_commonName, -1);
    if (i < 0)
        return 0;
    e = X509_NAME_get_entry(nm, i);
    len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(e));
    if (len < 0)
        return -1;
    if (memchr(utf8, 0, (size_t)len) == NULL)
        *cn = dupmem(utf8, (size_t)len);
    OPENSSL_free(utf8);
    return *cn == NULL ? -1 : 0;
}

static void
hex_lower(const unsigned char *p, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < len; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * len] = '\0';
}

/* Hex of the DER content octets of the serial: re-encode the INTEGER and
 * skip tag and length, so a leading 00 (positive with the top bit set)
 * is kept, as RFC 9773 CertIDs need. */
static char *
serial_hex(const ASN1_INTEGER *serial)
{
    unsigned char *der = NULL, *p;
    char *hex = NULL;
    size_t off;
    int len;

    len = i2d_ASN1_INTEGER(serial, NULL);
    if (len < 3 || (der = malloc((size_t)len)) == NULL)
        goto out;
    p = der;
    if (i2d_ASN1_INTEGER(serial, &p) != len)
        goto out;
    off = der[1] < 0x80 ? 2 : 2 + (size_t)(der[1] & 0x7f);
    if (off >= (size_t)len)
        goto out;
    hex = malloc(2 * ((size_t)len - off) + 1);
    if (hex != NULL)
        hex_lower(der + off, (size_t)len - off, hex);
out:
    free(der);
    return hex;
}

/* Short name of a public key: what keys.c calls its specs. */
static void
key_type(EVP_PKEY *pk, char *out, size_t size)
{
    char group[40];
    int nid;

    if (pk == NULL) {
        snprintf(out, size, "other");
    } else if (EVP_PKEY_is_a(pk, "RSA")) {
        snprintf(out, size, "rsa%d", EVP_PKEY_get_bits(pk));
    } else if (EVP_PKEY_is_a(pk, "EC")) {
        if (EVP_PKEY_get_group_name(pk, group, sizeof(group), NULL) != 1)
            snprintf(group, sizeof(group), "?");
        nid = OBJ_sn2nid(group);
        if (nid == NID_undef)
            nid = EC_curve_nist2nid(group);
        if (nid == NID_X9_62_prime256v1)
            snprintf(out, size, "ec256");
        else if (nid == NID_secp384r1)
            snprintf(out, size, "ec384");
        else if (nid == NID_secp521r1)
            snprintf(out, size, "ec521");
        else
            snprintf(out, size, "ec:%s", group);
    } else if (EVP_PKEY_is_a(pk, "ED25519")) {
        snprintf(out, size, "ed25519");
    } else if (EVP_PKEY_is_a(pk, "ED448")) {
        snprintf(out, size, "ed448");
    } else {
        snprintf(out, size, "other");
    }
    ERR_clear_error();
}

/* Decode extension nid of cert; *val NULL when absent. A present but
 * malformed or repeated extension is a parse error. */
static int
get_ext(X509 *cert, int nid, void **val, struct luacme_err *err)
{
    int crit;

    *val = X509_get_ext_d2i(cert, nid, &crit, NULL);
    if (*val == NULL && crit != -1)
        return err_openssl(err, "parse", crit == -2 ?
            "x509: repeated extension" : "x509: malformed extension");
    return 0;
}

/* What in takes from cert's extensions: the SAN names, the key
 * identifiers, CA and must-staple. Returns 0, or -1 with err filled
 * (what was already set in in stays for x509_info_free). */
static int
info_exts(X509 *cert, struct x509_info *in, struct luacme_err *err)
{
    GENERAL_NAMES *gens = NULL;
    AUTHORITY_KEYID *akid = NULL;
    ASN1_OCTET_STRING *skid = NULL;
    BASIC_CONSTRAINTS *bc = NULL;
    TLS_FEATURE *tf = NULL;
    int rc = -1;

    if (get_ext(cert, NID_subject_alt_name, (void **)&gens, err) != 0 ||
        get_ext(cert, NID_authority_key_identifier, (void **)&akid,
        err) != 0 ||
        get_ext(cert, NID_subject_key_identifier, (void **)&skid, err) != 0 ||
        get_ext(cert, NID_basic_constraints, (void **)&bc, err) != 0 ||
        get_ext(cert, NID_tlsfeature, (void **)&tf, err) != 0)
        goto out;
    if (gens != NULL && gens_read(gens, &in->names, err) != 0)
        goto out;
    if (akid != NULL && akid->keyid != NULL) {
        in->aki_len = (size_t)ASN1_STRING_length(akid->keyid);
        in->aki = (unsigned char *)dupmem(
            ASN1_STRING_get0_data(akid->keyid), in->aki_len);
        if (in->aki == NULL)
            goto oom;
    }
    if (skid != NULL) {
        in->ski_len = (size_t)ASN1_STRING_length(skid);
        in->ski = (unsigned char *)dupmem(ASN1_STRING_get0_data(skid),
            in->ski_len);
        if (in->ski == NULL)
            goto oom;
    }
    in->is_ca = bc != NULL && bc->ca;
    in->must_staple = tf != NULL && feature_has_staple(tf);
    rc = 0;
    goto out;
oom:
    err_openssl(err, "crypto", "x509: out of memory");
out:
    GENERAL_NAMES_free(gens);
    AUTHORITY_KEYID_free(akid);
    ASN1_OCTET_STRING_free(skid);
    BASIC_CONSTRAINTS_free(bc);
    sk_ASN1_INTEGER_pop_free(tf, ASN1_INTEGER_free);
    return rc;
}

int
x509_info(X509 *cert, struct x509_info *info, struct luacme_err *err)
{
    struct x509_info in;
    unsigned char md[EVP_MAX_MD_SIZE], *p;
    unsigned int mdlen = 0;
    int len, rc = -1;

    memset(&in, 0, sizeof(in));
    in.subject = name_text(X509_get_subject_name(cert));
    in.issuer = name_text(X509_get_issuer_name(cert));
    in.serial = serial_hex(X509_get0_serialNumber(cert));
    if (in.subject == NULL || in.issuer == NULL || in.serial == NULL) {
        err_openssl(err, "parse", "x509: unreadable name or serial");
        goto out;
    }
    if (name_cn(X509_get_subject_name(cert), &in.subject_cn) != 0 ||
        name_cn(X509_get_issuer_name(cert), &in.issuer_cn) != 0) {
        err_openssl(err, "parse", "x509: unreadable common name");
        goto out;
    }
    if (x509_time_to_unix(X509_get0_notBefore(cert), &in.not_before) != 0 ||
        x509_time_to_unix(X509_get0_notAfter(cert), &in.not_after) != 0) {
        err_set(err, "parse", "x509: malformed validity");
        goto out;
    }
    if (info_exts(cert, &in, err) != 0)
        goto out;

    len = i2d_X509(cert, NULL);
    if (len <= 0 || (in.der = malloc((size_t)len)) == NULL)
        goto oom;
    p = in.der;
    if (i2d_X509(cert, &p) != len)
        goto oom;
    in.der_len = (size_t)len;
    if (EVP_Digest(in.der, in.der_len, md, &mdlen, EVP_sha256(), NULL) != 1) {
        err_openssl(err, "crypto", "x509: SHA-256");
        goto out;
    }
    hex_lower(md, mdlen, in.sha256);
    key_type(X509_get0_pubkey(cert), in.key_type, sizeof(in.key_type));

    *info = in;
    memset(&in, 0, sizeof(in));
    rc = 0;
    goto out;
oom:
    err_openssl(err, "crypto", "x509: out of memory");
out:
    x509_info_free(&in);
    return rc;
}

void
x509_info_free(struct x509_info *info)
{
    free(info->subject);
    free(info->issuer);
    free(info->subject_cn);
    free(info->issuer_cn);
    free(info->serial);
    x509_names_free(&info->names);
    free(info->aki);
    free(info->ski);
    free(info->der);
    memset(info, 0, sizeof(*info));
}

/* PEM text of der under label with no headers, malloc'd. */
static int
pem_write(const unsigned char *der, size_t len, const char *label,
    char **pem, size_t *pem_len)
{
    BIO *bio = BIO_new(BIO_s_mem());
    int rc = -1;

    if (bio != NULL && PEM_write_bio(bio, label, "", der, (long)len) > 0 &&
        bio_take(bio, pem, pem_len) == 0)
        rc = 0;
    BIO_free(bio);
    return rc;
}

/* Whether a PEM block (label name, headers header) may be certificate
 * number count + 1 of a chain: a certificate block without headers,
 * within LUACME_CHAIN_MAX_CERTS. Returns 0, or -1 with err filled. */
static int
chain_block_ok(const char *name, const char *header, size_t count,
    struct luacme_err *err)
{
    if (label_is_private(name, strlen(name)))
        return err_set(err, "private_key", "pem: chain holds a private key");
    if (strcmp(name, PEM_STRING_X509) != 0 || header[0] != '\0')
        return err_set(err, "parse", "pem: unexpected block in a chain");
    if (count == LUACME_CHAIN_MAX_CERTS)
        return err_set(err, "too_large", "pem: more than "
            "LUACME_CHAIN_MAX_CERTS (%d) certificates",
            LUACME_CHAIN_MAX_CERTS);
    return 0;
}

int
x509_pem_split(const char *pem, size_t len, char ***certs, size_t *n,
    struct luacme_err *err)
{
    BIO *bio = NULL;
    X509 *x = NULL;
    char **list = NULL;
    char *name = NULL, *header = NULL;
    unsigned char *data = NULL;
    size_t count = 0;
    long dlen;
    int rc = -1;

    if (len > LUACME_PEM_MAX)
        return err_set(err, "too_large", "pem: chain over LUACME_PEM_MAX");
    if (text_has_private_key(pem, len))
        return err_set(err, "private_key", "pem: chain holds a private key");
    list = calloc(LUACME_CHAIN_MAX_CERTS, sizeof(char *));
    bio = BIO_new_mem_buf(pem, (int)len);
    if (list == NULL || bio == NULL) {
        err_openssl(err, "crypto", "pem: out of memory");
        goto out;
    }
    ERR_clear_error();
    for (;;) {
        if (PEM_read_bio(bio, &name, &header, &data, &dlen) != 1) {
            if (!pem_at_end()) {
                err_openssl(err, "parse", "pem: malformed block");
                goto out;
            }
            ERR_clear_error();
            break;
        }
        if (chain_block_ok(name, header, count, err) != 0)
            goto out;
        x = der_to_x509(data, (size_t)dlen);
        if (x == NULL) {
            err_openssl(err, "parse", "pem: block is not a certificate");
            goto out;
        }
        X509_free(x);
        x = NULL;
        /* The original bytes, not a re-encoding: what the CA sent. */
        if (pem_write(data, (size_t)dlen, PEM_STRING_X509, &list[count],
            NULL) != 0) {
            err_openssl(err, "crypto", "pem: encoding");
            goto out;
        }
        count++;
        OPENSSL_free(name);
        OPENSSL_free(header);
        OPENSSL_free(data);
        name = header = NULL;
        data = NULL;
    }
    if (count == 0) {
        err_set(err, "parse", "pem: no certificate");
        goto out;
    }
    *certs = list;
    *n = count;
    list = NULL;
    rc = 0;
out:
    x509_strv_free(list, count);
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(data);
    BIO_free(bio);
    return rc;
}

int
x509_pem_label_ok(const char *label)
{
    size_t i, len = strlen(label);

    if (len == 0 || len > 64 || label[0] == ' ' || label[len - 1] == ' ')
        return 0;
    for (i = 0; i < len; i++) {
        char c = label[i];

        if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            (c == ' ' && label[i + 1] != ' ')))
            return 0;
    }
    return 1;
}

int
x509_pem_encode(const void *der, size_t len, const char *label,
    char **pem, size_t *pem_len, struct luacme_err *err)
{
    if (!x509_pem_label_ok(label))
        return err_set(err, "invalid", "pem: bad label");
    if (len == 0)
        return err_set(err, "invalid", "pem: nothing to encode");
    if (len > LUACME_PEM_MAX)
        return err_set(err, "too_large", "pem: input over LUACME_PEM_MAX");
    if (pem_write(der, len, label, pem, pem_len) != 0)
        return err_openssl(err, "crypto", "pem: encoding");
    return 0;
}

int
x509_pem_decode(const char *pem, size_t len, unsigned char **der,
    size_t *der_len, char **label, struct luacme_err *err)
{
    BIO *bio = NULL;
    char *name = NULL, *header = NULL, *lab = NULL;
    unsigned char *data = NULL, *copy = NULL;
    long dlen;
    int rc = -1;

    if (len > LUACME_PEM_MAX)
        return err_set(err, "too_large", "pem: input over LUACME_PEM_MAX");
    bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL) {
        err_openssl(err, "crypto", "pem: out of memory");
        goto out;
    }
    if (PEM_read_bio(bio, &name, &header, &data, &dlen) != 1) {
        err_openssl(err, "parse", "pem: no PEM block");
        goto out;
    }
    if (label_is_private(name, strlen(name))) {
        err_set(err, "private_key", "pem: block is a private key");
        goto out;
    }
    if (header[0] != '\0') {
        err_set(err, "parse", "pem: block with headers");
        goto out;
    }
    lab = dupmem(name, strlen(name));
    copy = (unsigned char *)dupmem(data, (size_t)dlen);
    if (lab == NULL || copy == NULL) {
        err_set(err, "crypto", "pem: out of memory");
        goto out;
    }
    *der = copy;
    *der_len = (size_t)dlen;
    *label = lab;
    copy = NULL;
    lab = NULL;
    rc = 0;
out:
    free(copy);
    free(lab);
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(data);
    BIO_free(bio);
    return rc;
}

int
x509_matches_key(X509 *cert, EVP_PKEY *key)
{
    EVP_PKEY *pub = X509_get0_pubkey(cert);
    int eq = pub != NULL && key != NULL && EVP_PKEY_eq(pub, key) == 1;

    /* A type mismatch leaves reasons in the queue; they are not errors
     * of ours. */
    ERR_clear_error();
    return eq;
}

/* A random positive 128-bit serial (RFC 5280 allows 20 octets). */
static int
set_random_serial(X509 *x)
{
    unsigned char r[16];
    BIGNUM *bn = NULL;
    int rc = -1;

    if (RAND_bytes(r, sizeof(r)) != 1)
        return -1;
    r[0] = (r[0] & 0x7f) | 0x40;    /* positive, always 16 bytes */
    bn = BN_bin2bn(r, sizeof(r), NULL);
    if (bn != NULL && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) !=
        NULL)
        rc = 0;
    BN_free(bn);
    return rc;
}

int
x509_self_signed(EVP_PKEY *key, const char *identifier,
    int64_t not_before, int64_t not_after,
    const unsigned char *acme_digest, X509 **cert, struct luacme_err *err)
{
    X509 *x = NULL;
    X509_NAME *nm;
    GENERAL_NAMES *gens = NULL;
    BASIC_CONSTRAINTS *bc = NULL;
    X509_EXTENSION *ext = NULL;
    unsigned char ip[16], value[34];
    const char *one[1];
    int is_ip, rc = -1;

    one[0] = identifier;
    is_ip = x509_parse_ip(identifier, ip) != 0;
    gens = GENERAL_NAMES_new();
    if (gens == NULL) {
        err_openssl(err, "crypto", "x509: out of memory");
        goto out;
    }
    if (gens_build(gens, is_ip ? NULL : one, !is_ip, is_ip ? one : NULL,
        is_ip, err) != 0)
        goto out;
    x = X509_new();
    if (x == NULL || X509_set_version(x, X509_VERSION_3) != 1 ||
        set_random_serial(x) != 0 || X509_set_pubkey(x, key) != 1) {
        err_openssl(err, "crypto", "x509: creating the certificate");
        goto out;
    }
    nm = X509_get_subject_name(x);
    if (X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC,
        (const unsigned char *)ALPN_CN, -1, -1, 0) != 1 ||
        X509_set_issuer_name(x, nm) != 1) {
        err_openssl(err, "crypto", "x509: setting the names");
        goto out;
    }
    if (set_time(X509_getm_notBefore(x), not_before, err) != 0 ||
        set_time(X509_getm_notAfter(x), not_after, err) != 0)
        goto out;
    bc = BASIC_CONSTRAINTS_new();
    if (bc == NULL || X509_add1_ext_i2d(x, NID_basic_constraints, bc, 1,
        X509V3_ADD_DEFAULT) != 1 ||
        X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0,
        X509V3_ADD_DEFAULT) != 1) {
        err_openssl(err, "crypto", "x509: adding extensions");
        goto out;
    }
    if (acme_digest != NULL) {
        /* extnValue is the DER of OCTET STRING (SIZE (32)): 04 20 ...
         * (RFC 8737 §3), not the bare digest. */
        value[0] = V_ASN1_OCTET_STRING;
        value[1] = 32;
        memcpy(value + 2, acme_digest, 32);
        ext = ext_raw(NID_undef, OID_ACME_IDENTIFIER, 1, value,
            sizeof(value));
        if (ext == NULL || X509_add_ext(x, ext, -1) != 1) {
            err_openssl(err, "crypto", "x509: adding acmeIdentifier");
            goto out;
        }
    }
    if (X509_sign(x, key, sign_md(key)) <= 0) {
        err_openssl(err, "crypto", "x509: signing");
        goto out;
    }
    *cert = x;
    x = NULL;
    rc = 0;
out:
    X509_EXTENSION_free(ext);
    BASIC_CONSTRAINTS_free(bc);
    GENERAL_NAMES_free(gens);
    X509_free(x);
    return rc;
}

int
x509_tls_alpn01(const char *identifier, const void *key_auth,
    size_t key_auth_len, EVP_PKEY **key, char **pem,
    struct luacme_err *err)
{
    EVP_PKEY *fresh = NULL;
    X509 *x = NULL;
    BIO *bio = NULL;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int64_t now = (int64_t)time(NULL);
    int rc = -1;

    if (EVP_Digest(key_auth, key_auth_len, md, &mdlen, EVP_sha256(),
        NULL) != 1) {
        err_openssl(err, "crypto", "tls-alpn-01: SHA-256");
        goto out;
    }
    if (*key == NULL) {
        fresh = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        if (fresh == NULL) {
            err_openssl(err, "crypto", "tls-alpn-01: generating a key");
            goto out;
        }
    }
    if (x509_self_signed(fresh != NULL ? fresh : *key, identifier,
        now - SECS_PER_DAY, now + 7 * SECS_PER_DAY, md, &x, err) != 0)
        goto out;
    bio = BIO_new(BIO_s_mem());
    if (bio == NULL || PEM_write_bio_X509(bio, x) != 1 ||
        bio_take(bio, pem, NULL) != 0) {
        err_openssl(err, "crypto", "tls-alpn-01: encoding");
        goto out;
    }
    if (fresh != NULL) {
        *key = fresh;
        fresh = NULL;
    }
    rc = 0;
out:
    BIO_free(bio);
    X509_free(x);
    EVP_PKEY_free(fresh);
    return rc;
}

int
x509_reverse_name(const char *ip, char *out, size_t out_size,
    struct luacme_err *err)
{
    unsigned char a[16];
    size_t len, i, used = 0;
    char ex[48];

    len = x509_parse_ip(ip, a);
    if (len == 0)
        return err_set(err, "invalid", "x509: \"%s\" is not an IP address",
            excerpt(ip, ex, sizeof(ex)));
    if (out_size < X509_REVERSE_NAME_MAX)
        return err_set(err, "invalid", "x509: reverse name buffer too "
            "small");
    if (len == 4) {
        snprintf(out, out_size, "%u.%u.%u.%u.in-addr.arpa", a[3], a[2],
            a[1], a[0]);
        return 0;
    }
    for (i = len; i-- > 0;)
        used += (size_t)snprintf(out + used, out_size - used, "%x.%x.",
            a[i] & 15, a[i] >> 4);
    snprintf(out + used, out_size - used, "ip6.arpa");
    return 0;
}
