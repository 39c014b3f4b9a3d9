/* base64url: RFC 4648 §10 and RFC 7515 Appendix C vectors, and rejects. */
#include <stdlib.h>

#include "b64.h"
#include "check.h"

static void
enc(const char *in, size_t len, const char *want)
{
    char *out = NULL;
    struct luacme_err err;

    CHECK(b64url_encode((const unsigned char *)in, len, &out, &err) == 0);
    CHECK_STR(out, want);
    free(out);
}

static void
dec(const char *in, const char *want, size_t wantlen)
{
    unsigned char *out = NULL;
    size_t outlen = 0;
    struct luacme_err err;

    CHECK(b64url_decode(in, strlen(in), &out, &outlen, &err) == 0);
    CHECK(outlen == wantlen && out != NULL &&
        memcmp(out, want, wantlen) == 0);
    free(out);
}

static void
reject(const char *in)
{
    unsigned char *out = NULL;
    size_t outlen = 0;
    struct luacme_err err;

    CHECK(b64url_decode(in, strlen(in), &out, &outlen, &err) == -1);
    CHECK(out == NULL);
    CHECK(err.kind != NULL && strcmp(err.kind, "parse") == 0);
}

int
main(void)
{
    static const struct { const char *in, *out; } rfc4648[] = {
        {"", ""}, {"f", "Zg"}, {"fo", "Zm8"}, {"foo", "Zm9v"},
        {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"},
    };
    size_t i;

    for (i = 0; i < sizeof(rfc4648) / sizeof(rfc4648[0]); i++) {
        enc(rfc4648[i].in, strlen(rfc4648[i].in), rfc4648[i].out);
        dec(rfc4648[i].out, rfc4648[i].in, strlen(rfc4648[i].in));
    }
    enc("\xfb\xff", 2, "-_8");
    enc("\xff\xfe\xfd", 3, "__79");
    enc("\x03\xec\xff\xe0\xc1", 5, "A-z_4ME");          /* RFC 7515 C */
    dec("A-z_4ME", "\x03\xec\xff\xe0\xc1", 5);
    enc("{}", 2, "e30");
    enc("{\"typ\":\"JWT\",\r\n \"alg\":\"HS256\"}", 30,
        "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"); /* RFC 7515 §3.3 */

    reject("Zg==");      /* padding */
    reject("Zm9v+/");    /* standard alphabet */
    reject("Z");         /* 1 mod 4 */
    reject("Zm9 v");     /* whitespace */
    reject("Zm9v\n");
    reject("Zh");        /* non-zero trailing bits: not canonical */
    return check_done();
}
