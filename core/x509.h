/*
 * X.509 for the ACME client: the PKCS#10 CSR sent at finalize, reading
 * the certificates the CA returns (dates, names, serial and authority key
 * id for renewal information), PEM splitting of a downloaded chain, and
 * the self-signed tls-alpn-01 certificate of RFC 8737 / RFC 8738.
 *
 * Every function returns 0 on success and -1 on failure with *err filled
 * (kinds: "invalid" for names or IPs a user supplied, "parse" for
 * certificate or PEM data that does not parse, "private_key" when a chain
 * holds a private key, "too_large" over a cap of core/luacme_limits.h, "crypto"
 * when OpenSSL itself fails). Output pointers are written only on
 * success; malloc'd results are freed with free() unless said otherwise.
 */
#ifndef LUACME_X509_H
#define LUACME_X509_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "err.h"

/* Longest text form of an IP address (IPv6 with an embedded IPv4). */
#define X509_IP_TEXT_MAX 46

/* Longest reverse name: 32 nibbles of IPv6, each "x.", then "ip6.arpa". */
#define X509_REVERSE_NAME_MAX 73

/* DNS names and IP addresses (as text) of a subjectAltName. */
struct x509_names {
    char **dns;         /* ndns malloc'd strings, NULL when none */
    size_t ndns;
    char **ip;          /* nip malloc'd strings (inet_ntop form) */
    size_t nip;
};

/* Free both lists and zero *names; accepts an already zeroed struct. */
void x509_names_free(struct x509_names *names);

/* Free a list of n malloc'd strings and the list itself (NULL is fine). */
void x509_strv_free(char **v, size_t n);

/* Check a DNS identifier as it goes into a certificate: non-empty, at most
 * LUACME_NAME_MAX bytes, printable ASCII without spaces (IDNA and case
 * folding are the Lua side's job). Returns 0, or -1 with kind "invalid". */
int x509_check_name(const char *name, struct luacme_err *err);

/* Parse an IPv4 or IPv6 address in text form into out (network order).
 * Returns the address length, 4 or 16, or 0 when text is not an IP. */
size_t x509_parse_ip(const char *text, unsigned char out[16]);

/* Build a PKCS#10 CSR signed by key (SHA-256; SHA-384 for P-384, SHA-512
 * for P-521; none for EdDSA). The subject is CN=names[0] when names[0] is
 * at most 64 bytes, else empty (and the SAN then critical); the
 * subjectAltName holds every name as dNSName and every IP as iPAddress;
 * must_staple adds the TLS Feature extension (status_request). Needs at
 * least one name or IP and at most LUACME_CSR_MAX_NAMES in all; names per
 * x509_check_name, IPs per x509_parse_ip, otherwise kind "invalid".
 * key is only borrowed. On success *der is the malloc'd DER, caller
 * frees. */
int x509_csr(EVP_PKEY *key, const char *const *names, size_t nnames,
    const char *const *ips, size_t nips, int must_staple,
    unsigned char **der, size_t *der_len, struct luacme_err *err);

/* What a CSR may carry beyond its names, as Go's x509 template allows:
 * subject attributes by OpenSSL short name (C, ST, L, street,
 * postalCode, O, OU, CN, serialNumber), in the order given, and extra
 * extensions (a dotted OID, the DER of the extension's value, critical
 * or not). */
struct x509_csr_attr {
    const char *field;
    const char *value;          /* UTF-8 */
};
struct x509_csr_ext {
    const char *oid;
    const unsigned char *value; /* one complete DER element */
    size_t len;
    int critical;
};
struct x509_csr_template {
    const struct x509_csr_attr *subject;
    size_t nsubject;            /* at most LUACME_CSR_MAX_TEMPLATE */
    const struct x509_csr_ext *ext;
    size_t next;                /* at most LUACME_CSR_MAX_TEMPLATE */
};

/* x509_csr with a template (NULL: none). A template CN replaces the
 * default CN=names[0]; other attributes are added to the subject. An
 * extension may not be subjectAltName or the TLS Feature (names, ips
 * and must_staple make those) nor appear twice; a value must be one DER
 * element; an unknown field, or a value the attribute's ASN.1 type
 * refuses (C is two letters), fails with "invalid". */
int x509_csr_ex(EVP_PKEY *key, const char *const *names, size_t nnames,
    const char *const *ips, size_t nips, int must_staple,
    const struct x509_csr_template *t,
    unsigned char **der, size_t *der_len, struct luacme_err *err);

/* What x509_csr_read reports about a CSR. */
struct x509_csr_info {
    struct x509_names names;    /* the subjectAltName entries */
    int must_staple;            /* TLS Feature with status_request */
    char *cn;                   /* first subject CN (malloc'd) or NULL */
    unsigned char *spki;        /* DER SubjectPublicKeyInfo (malloc'd) */
    size_t spki_len;
};

/* Read back a DER CSR: checks its self-signature, then fills *info.
 * Fails with "parse" on bad DER or a bad signature, "too_large" over
 * LUACME_PEM_MAX; on failure nothing is left to free. On success the
 * caller frees with x509_csr_info_free(). */
int x509_csr_read(const unsigned char *der, size_t len,
    struct x509_csr_info *info, struct luacme_err *err);

/* Free everything x509_csr_read allocated and zero *info (idempotent). */
void x509_csr_info_free(struct x509_csr_info *info);

/* Load one certificate from DER or PEM (PEM: the first CERTIFICATE block;
 * other blocks before it are skipped). DER must be exactly one
 * certificate with no trailing bytes. len over LUACME_PEM_MAX fails with
 * "too_large", anything unparsable with "parse". On success *cert is a
 * new X509, caller frees with X509_free(). */
int x509_load(const void *in, size_t len, X509 **cert,
    struct luacme_err *err);

/* What cert_info reports about a certificate. */
struct x509_info {
    char *subject;          /* RFC 2253 one-line form, malloc'd */
    char *issuer;
    char *subject_cn;       /* first CN value or NULL */
    char *issuer_cn;
    char *serial;           /* lower-case hex of the DER INTEGER content
                             * octets, leading 00 kept */
    int64_t not_before;     /* Unix seconds, any year 0000..9999 */
    int64_t not_after;
    struct x509_names names;
    unsigned char *aki;     /* authorityKeyIdentifier keyIdentifier or NULL */
    size_t aki_len;
    unsigned char *ski;     /* subjectKeyIdentifier or NULL */
    size_t ski_len;
    int is_ca;              /* basicConstraints cA */
    int must_staple;        /* TLS Feature with status_request */
    unsigned char *der;     /* the certificate's DER */
    size_t der_len;
    char sha256[65];        /* lower-case hex SHA-256 of der */
    char key_type[48];      /* "ec256" "ec384" "ec521" "rsa<bits>"
                             * "ed25519" "ed448" or "ec:<curve>" "other" */
};

/* Fill *info from cert (borrowed). Fails with "parse" on a malformed
 * extension or date. On success the caller frees with x509_info_free();
 * on failure nothing is left to free. */
int x509_info(X509 *cert, struct x509_info *info, struct luacme_err *err);

/* Free everything x509_info allocated and zero *info (idempotent). */
void x509_info_free(struct x509_info *info);

/* Split a PEM chain into normalised certificate PEM strings
 * ("-----BEGIN CERTIFICATE-----\n", 64-column base64, "-----END
 * CERTIFICATE-----\n"), each checked to parse as one X.509 certificate.
 * Fails with "private_key" when any block's label holds "PRIVATE KEY",
 * "parse" for any other non-certificate block, a broken block or no
 * certificate at all, "too_large" over LUACME_PEM_MAX bytes or
 * LUACME_CHAIN_MAX_CERTS certificates. On success *certs is a malloc'd
 * list of *n malloc'd strings, freed with x509_strv_free(). */
int x509_pem_split(const char *pem, size_t len, char ***certs, size_t *n,
    struct luacme_err *err);

/* Returns 1 when label is one x509_pem_encode writes (upper-case
 * letters, digits and single inner spaces, 1..64 bytes), else 0. */
int x509_pem_label_ok(const char *label);

/* PEM-encode der under label (e.g. "CERTIFICATE": upper-case letters,
 * digits and single spaces, at most 64 bytes, else "invalid"; empty der
 * is "invalid" too). len over
 * LUACME_PEM_MAX fails with "too_large". On success *pem is a malloc'd
 * NUL-terminated string of *pem_len bytes, caller frees. */
int x509_pem_encode(const void *der, size_t len, const char *label,
    char **pem, size_t *pem_len, struct luacme_err *err);

/* Decode the first PEM block of pem: *der (malloc'd, *der_len bytes) and
 * *label (malloc'd string), caller frees both. Fails with "parse" when
 * there is no well-formed block, "private_key" when the first block is a
 * private key (private bytes never leave C this way), "too_large" over
 * LUACME_PEM_MAX. */
int x509_pem_decode(const char *pem, size_t len, unsigned char **der,
    size_t *der_len, char **label, struct luacme_err *err);

/* Returns 1 when cert's public key equals key's public key, else 0. Both
 * borrowed. */
int x509_matches_key(X509 *cert, EVP_PKEY *key);

/* Build a self-signed certificate for one identifier (a DNS name, or an
 * IP in text form which becomes an iPAddress SAN) valid from not_before
 * to not_after (Unix seconds, years 0001..9999; UTCTime for 1950..2049,
 * GeneralizedTime otherwise, as RFC 5280 asks), with a random 128-bit
 * serial, subject = issuer = CN "ACME Challenge Temp Certificate",
 * basicConstraints CA:FALSE, and exactly one subjectAltName entry. When
 * acme_digest is not NULL, adds the critical id-pe-acmeIdentifier
 * extension holding OCTET STRING(acme_digest, 32 bytes) (RFC 8737 §3).
 * key is borrowed. On success *cert is a new X509, caller X509_free()s.
 * Bad identifiers fail with "invalid". */
int x509_self_signed(EVP_PKEY *key, const char *identifier,
    int64_t not_before, int64_t not_after,
    const unsigned char *acme_digest, X509 **cert, struct luacme_err *err);

/* The tls-alpn-01 certificate (RFC 8737, RFC 8738): x509_self_signed with
 * the SHA-256 of key_auth, valid from now - 1 day to now + 7 days. When
 * *key is NULL a fresh P-256 key is generated and stored in *key on
 * success (the caller then owns and frees it); otherwise *key is borrowed
 * and left as is. On success *pem is the malloc'd certificate PEM. */
int x509_tls_alpn01(const char *identifier, const void *key_auth,
    size_t key_auth_len, EVP_PKEY **key, char **pem,
    struct luacme_err *err);

/* The RFC 8738 §6 reverse DNS name of an IP in text form, without the
 * trailing dot ("127.0.0.1" -> "1.0.0.127.in-addr.arpa", IPv6 as 32
 * nibbles under ip6.arpa), written to out (at least X509_REVERSE_NAME_MAX
 * bytes). Fails with "invalid" when ip is not an IP address. */
int x509_reverse_name(const char *ip, char *out, size_t out_size,
    struct luacme_err *err);

/* Convert an ASN1_TIME to Unix seconds, valid for years 0000..9999 (no
 * time_t or timegm involved). Returns 0, or -1 when t does not parse. */
int x509_time_to_unix(const ASN1_TIME *t, int64_t *out);

#endif
