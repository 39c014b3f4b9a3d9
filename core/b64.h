/*
 * base64url without padding (RFC 7515 §2, RFC 8555 §6.1).
 */
#ifndef LUACME_B64_H
#define LUACME_B64_H

#include <stddef.h>

#include "err.h"

/* Length of the encoding of n bytes, without the terminating NUL. */
size_t b64url_encoded_len(size_t n);

/* Encode len bytes of in into out, which must hold
 * b64url_encoded_len(len) + 1 bytes; out is NUL-terminated. Returns the
 * number of characters written (not counting the NUL). Cannot fail. */
size_t b64url_encode_to(const unsigned char *in, size_t len, char *out);

/* Encode into a malloc'd NUL-terminated string in *out, caller frees.
 * Returns 0, or -1 with err filled (allocation failure). */
int b64url_encode(const unsigned char *in, size_t len, char **out,
    struct luacme_err *err);

/* Most bytes len characters decode to (a bound; the exact count comes
 * back from b64url_decode_to). */
size_t b64url_decoded_max(size_t len);

/* Decode len characters of in into out, which must hold
 * b64url_decoded_max(len) bytes, with the checks of b64url_decode. Returns
 * 0 with the decoded length in *outlen, or -1 with err filled (kind
 * "parse"); out's contents are then unspecified. */
int b64url_decode_to(const char *in, size_t len, unsigned char *out,
    size_t *outlen, struct luacme_err *err);

/* Decode len characters of in. Rejects '=' padding, the standard
 * alphabet ('+' '/'), whitespace, any other byte, lengths that are 1 mod
 * 4, and non-zero trailing bits (a non-canonical encoding). On success
 * returns 0 with a malloc'd buffer in *out (caller frees; one spare NUL
 * byte is appended) and its length in *outlen. On failure returns -1 with
 * err filled (kind "parse") and *out untouched. */
int b64url_decode(const char *in, size_t len, unsigned char **out,
    size_t *outlen, struct luacme_err *err);

#endif
