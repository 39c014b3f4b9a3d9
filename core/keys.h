/*
 * Account and certificate keys: generation, PEM in and out, the public
 * JWK (RFC 7517/7518 §6) and its RFC 7638 thumbprint, atomic writes.
 * Only RSA (>= LUACME_RSA_MIN_BITS) and EC P-256/P-384/P-521 keys are
 * accepted: the algorithms ACME servers take (RS256, ES256/384/512).
 */
#ifndef LUACME_KEYS_H
#define LUACME_KEYS_H

#include <stddef.h>

#include <openssl/evp.h>

#include "err.h"

/* The key types luacme generates, in the order of key_spec_names. */
enum key_spec {
    KEY_EC256, KEY_EC384, KEY_EC521, KEY_RSA2048, KEY_RSA3072, KEY_RSA4096
};

/* NULL-terminated names of enum key_spec: "ec256" ... "rsa4096". */
extern const char *const key_spec_names[];

/* Generate a new private key. Returns 0 with the key in *out (caller
 * frees with EVP_PKEY_free), or -1 with err filled (kind "crypto", or
 * "unsupported" for a value outside enum key_spec); *out untouched. */
int key_generate(enum key_spec spec, EVP_PKEY **out, struct luacme_err *err);

/* Load a private key from len bytes of PEM: PKCS#8 "PRIVATE KEY", SEC1
 * "EC PRIVATE KEY" or PKCS#1 "RSA PRIVATE KEY". Never asks for a
 * passphrase. Returns 0 with the key in *out (caller frees), or -1 with
 * err filled and *out untouched: kind "too_large" over LUACME_PEM_MAX,
 * "parse" when no private key can be read (garbage, public key only),
 * "unsupported" for an encrypted key, a key type or curve we do not
 * sign with, or RSA below LUACME_RSA_MIN_BITS. */
int key_load_pem(const char *pem, size_t len, EVP_PKEY **out,
    struct luacme_err *err);

/* Load a public key from len bytes of PEM "PUBLIC KEY" (SPKI). Returns
 * 0 with the key in *out (caller frees), or -1 with err filled and *out
 * untouched: kind "too_large" over LUACME_PEM_MAX, "parse" when no
 * public key can be read, "unsupported" as key_load_pem. */
int key_load_public_pem(const char *pem, size_t len, EVP_PKEY **out,
    struct luacme_err *err);

/* Check that key is one we can use (see key_load_pem). Returns 0, or -1
 * with err filled (kind "unsupported"). */
int key_check_supported(EVP_PKEY *key, struct luacme_err *err);

/* The JWS algorithm for key: "RS256", "ES256", "ES384", "ES512"; NULL
 * when the key is not supported. Static string. */
const char *key_alg(EVP_PKEY *key);

/* The generate spec matching key ("ec256", "rsa2048", ...; "rsa<bits>"
 * for other RSA sizes) written NUL-terminated into buf of size n.
 * Returns 0, or -1 when the key is unsupported or buf too small. */
int key_spec_name(EVP_PKEY *key, char *buf, size_t n);

/* Width in bytes of one EC coordinate and of R or S in a JWS signature
 * (32, 48, 66); 0 for a key that is not a supported EC key. */
size_t key_ec_width(EVP_PKEY *key);

/* The required members of the public JWK, each value base64url without
 * padding. RSA: kty "RSA", n and e minimal big-endian (no sign byte),
 * crv NULL. EC: kty "EC", crv "P-256"/"P-384"/"P-521", x and y at full
 * coordinate width (leading zero bytes kept). kty and crv are static;
 * a and b (n/e or x/y) are malloc'd, freed by key_jwk_free. */
struct key_jwk {
    const char *kty;
    const char *crv;
    char *n, *e;        /* RSA */
    char *x, *y;        /* EC */
};

/* Fill *jwk from the public half of key (public-only keys work too).
 * Returns 0, or -1 with err filled and *jwk zeroed (nothing to free). */
int key_jwk(EVP_PKEY *key, struct key_jwk *jwk, struct luacme_err *err);

/* Free the strings of a filled jwk and zero it; safe on a zeroed one. */
void key_jwk_free(struct key_jwk *jwk);

/* The RFC 7638 canonical JSON of key's public JWK: required members in
 * lexicographic order, no whitespace, built by hand. Returns 0 with a
 * malloc'd NUL-terminated string in *out (caller frees), or -1 with err
 * filled and *out untouched. */
int key_jwk_json(EVP_PKEY *key, char **out, struct luacme_err *err);

/* RFC 7638 thumbprint: base64url(SHA-256(key_jwk_json)), 43 characters,
 * written NUL-terminated into out (at least KEY_THUMBPRINT_LEN + 1
 * bytes). Returns 0, or -1 with err filled. */
#define KEY_THUMBPRINT_LEN 43
int key_thumbprint(EVP_PKEY *key, char *out, struct luacme_err *err);

/* PEM of the public key (SubjectPublicKeyInfo, "PUBLIC KEY") or of the
 * private key (unencrypted PKCS#8, "PRIVATE KEY"). Returns 0 with a
 * malloc'd NUL-terminated string in *out and its length in *len (caller
 * frees; for the private PEM, OPENSSL_clear_free or key_pem_free), or -1
 * with err filled and *out untouched. */
int key_public_pem(EVP_PKEY *key, char **out, size_t *len,
    struct luacme_err *err);
int key_private_pem(EVP_PKEY *key, char **out, size_t *len,
    struct luacme_err *err);

/* Wipe and free a string from key_private_pem (NULL is fine). */
void key_pem_free(char *pem, size_t len);

/* Write len bytes to path atomically with mode 0600 through the one
 * atomic writer, fs_write_file (temporary file path.tmp.XXXXXX beside
 * path, fsync, rename, directory fsync). The temporary file is removed
 * on any failure; path is then either its old self or absent. Returns
 * 0, or -1 with err filled (kind "io" for every failure, an empty path
 * too). */
int key_write_file_atomic(const char *path, const void *data, size_t len,
    struct luacme_err *err);

/* Write key's private PEM (PKCS#8) to path with key_write_file_atomic.
 * Returns 0, or -1 with err filled (kind "io" or "crypto"). */
int key_write_pem(EVP_PKEY *key, const char *path, struct luacme_err *err);

#endif
