#include "b64.h"

#include <stdlib.h>

static const char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t
b64url_encoded_len(size_t n)
{
    return (n / 3) * 4 + (n % 3 == 0 ? 0 : n % 3 + 1);
}

size_t
b64url_encode_to(const unsigned char *in, size_t len, char *out)
{
    size_t i, o = 0;
    unsigned long v;

    for (i = 0; i + 3 <= len; i += 3) {
        v = ((unsigned long)in[i] << 16) | ((unsigned long)in[i + 1] << 8) |
            in[i + 2];
        out[o++] = alphabet[(v >> 18) & 63];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = alphabet[(v >> 6) & 63];
        out[o++] = alphabet[v & 63];
    }
    if (len - i == 1) {
        v = (unsigned long)in[i] << 16;
        out[o++] = alphabet[(v >> 18) & 63];
        out[o++] = alphabet[(v >> 12) & 63];
    } else if (len - i == 2) {
        v = ((unsigned long)in[i] << 16) | ((unsigned long)in[i + 1] << 8);
        out[o++] = alphabet[(v >> 18) & 63];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = alphabet[(v >> 6) & 63];
    }
    out[o] = '\0';
    return o;
}

int
b64url_encode(const unsigned char *in, size_t len, char **out,
    struct luacme_err *err)
{
    char *buf;

    buf = malloc(b64url_encoded_len(len) + 1);
    if (buf == NULL)
        return err_set(err, "memory", "base64url: out of memory");
    b64url_encode_to(in, len, buf);
    *out = buf;
    return 0;
}

static int
sextet(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

size_t
b64url_decoded_max(size_t len)
{
    return len / 4 * 3 + 2;
}

int
b64url_decode_to(const char *in, size_t len, unsigned char *out,
    size_t *outlen, struct luacme_err *err)
{
    size_t i, o = 0;
    unsigned long v = 0;
    int s, bits = 0;

    if (len % 4 == 1)
        return err_set(err, "parse",
            "base64url: impossible length %zu", len);
    for (i = 0; i < len; i++) {
        s = sextet((unsigned char)in[i]);
        if (s < 0) {
            if (in[i] == '=')
                return err_set(err, "parse", "base64url: padding not "
                    "allowed");
            return err_set(err, "parse", "base64url: invalid character "
                "at offset %zu", i);
        }
        v = (v << 6) | (unsigned long)s;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(v >> bits);
            v &= (1UL << bits) - 1;
        }
    }
    /* Leftover bits must be zero: otherwise two strings decode alike and
     * a signature or token could be re-encoded differently. */
    if (v != 0)
        return err_set(err, "parse", "base64url: non-zero trailing bits");
    *outlen = o;
    return 0;
}

int
b64url_decode(const char *in, size_t len, unsigned char **out,
    size_t *outlen, struct luacme_err *err)
{
    unsigned char *buf;
    size_t o = 0;

    /* The decoded length plus the spare NUL: the caller's len is the
     * size of a string in memory, so this cannot wrap. */
    buf = malloc(b64url_decoded_max(len) + 1);
    if (buf == NULL)
        return err_set(err, "memory", "base64url: out of memory");
    if (b64url_decode_to(in, len, buf, &o, err) != 0) {
        free(buf);
        return -1;
    }
    buf[o] = '\0';
    *out = buf;
    *outlen = o;
    return 0;
}
