/*
 * JSON Web Signatures for ACME (RFC 7515, RFC 8555 §6.2): raw JWS
 * signatures (RS256 PKCS#1 v1.5; ES256/384/512 as fixed-width R||S per
 * RFC 7518 §3.4), HS256 for external account binding, and the flattened
 * JSON serialisation. The protected header arrives here already encoded
 * as JSON; the Lua binding builds it.
 */
#ifndef LUACME_JWS_H
#define LUACME_JWS_H

#include <stddef.h>

#include <openssl/evp.h>

#include "err.h"

/* Largest raw ECDSA signature: P-521, 2 * 66 bytes. */
#define JWS_ECDSA_RAW_MAX 132

/* Convert an ECDSA signature from DER (SEQUENCE of two INTEGERs, as
 * OpenSSL makes it) to JWS form: R and S each left-padded to width bytes
 * (32, 48 or 66), written to raw, which must hold 2 * width bytes.
 * Returns 0, or -1 with err filled (kind "parse": not DER, trailing
 * bytes, a negative or over-wide integer). */
int ecdsa_der_to_raw(const unsigned char *der, size_t derlen, size_t width,
    unsigned char *raw, struct luacme_err *err);

/* Convert a JWS ECDSA signature R||S (rawlen even, non-zero) to DER.
 * Returns 0 with a malloc'd buffer in *der and its length in *derlen
 * (caller frees), or -1 with err filled and *der untouched. */
int ecdsa_raw_to_der(const unsigned char *raw, size_t rawlen,
    unsigned char **der, size_t *derlen, struct luacme_err *err);

/* Sign len bytes of in with key the way its JWS alg says (key_alg):
 * RS256, or ES256/ES384/ES512 with SHA-256/384/512 and raw R||S output.
 * Returns 0 with a malloc'd signature in *sig and its length in *siglen
 * (caller frees), or -1 with err filled (kind "unsupported" for a key we
 * do not sign with, else "crypto") and *sig untouched. */
int jws_sign(EVP_PKEY *key, const void *in, size_t len, unsigned char **sig,
    size_t *siglen, struct luacme_err *err);

/* Verify a JWS signature (raw R||S for EC) over len bytes of in.
 * Returns 1 when valid, 0 when not (including a signature of the wrong
 * length), -1 with err filled when the key is unsupported or OpenSSL
 * fails. */
int jws_verify(EVP_PKEY *key, const void *in, size_t len,
    const unsigned char *sig, size_t siglen, struct luacme_err *err);

/* HMAC-SHA256 of in under the raw key bytes (keylen > 0) into out (32
 * bytes). Returns 0, or -1 with err filled (kind "crypto"). */
#define JWS_HS256_LEN 32
int jws_hs256(const unsigned char *key, size_t keylen, const void *in,
    size_t len, unsigned char *out, struct luacme_err *err);

/* The flattened JSON serialisation (RFC 7515 §7.2.2), exactly
 *   {"protected":"<b64u(protected)>","payload":"<b64u(payload)>",
 *    "signature":"<b64u(sig)>"}
 * with sig over "<b64u(protected)>.<b64u(payload)>" made by jws_sign
 * (jws_flatten) or by HS256 under mac_key (jws_flatten_hmac). protected
 * is the header's JSON text; payload is sent as given ("" for
 * POST-as-GET). Returns 0 with a malloc'd NUL-terminated string in *out
 * and its length in *outlen (caller frees), or -1 with err filled (kind
 * "too_large" when protected or payload exceeds LUACME_B64_MAX, else as
 * jws_sign) and *out untouched. */
int jws_flatten(EVP_PKEY *key, const char *protected, size_t plen,
    const char *payload, size_t paylen, char **out, size_t *outlen,
    struct luacme_err *err);
int jws_flatten_hmac(const unsigned char *mac_key, size_t keylen,
    const char *protected, size_t plen, const char *payload, size_t paylen,
    char **out, size_t *outlen, struct luacme_err *err);

#endif
