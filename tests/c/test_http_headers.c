/* The response header parser (http_parse_headers, what http_request
 * feeds libcurl's header lines to): names lower-cased and trimmed, only
 * the final response's fields, no trailers, obsolete folding, and what
 * is done with malformed lines from a hostile server. */
#include <stdlib.h>

#include "check.h"
#include "http.h"
#include "luacme_limits.h"

static struct http_response resp;

/* Parse block; returns the error kind or "ok". */
static const char *
parse(const char *block)
{
    static struct luacme_err err;

    http_response_free(&resp);
    if (http_parse_headers(block, strlen(block), &resp, &err) != 0) {
        CHECK(resp.headers == NULL && resp.hbuf == NULL);
        return err.kind;
    }
    return "ok";
}

/* "name=value;..." of what was parsed, for comparing in one go. */
static const char *
dump(void)
{
    static char out[4096];
    size_t i, used = 0;

    out[0] = '\0';
    for (i = 0; i < resp.nheaders && used < sizeof(out); i++)
        used += (size_t)snprintf(out + used, sizeof(out) - used, "%s=%s;",
            resp.headers[i].name, resp.headers[i].value);
    return out;
}

int
main(void)
{
    char *big;
    size_t i, n;

    CHECK_STR(parse("HTTP/1.1 200 OK\r\nContent-Type: a/b\r\n"
        "Replay-Nonce:  xyz \t\r\nLINK: <u>;rel=\"up\"\r\nLink: <v>\r\n\r\n"),
        "ok");
    CHECK_STR(dump(), "content-type=a/b;replay-nonce=xyz;link=<u>;rel=\"up\";"
        "link=<v>;");
    /* Only the final response; trailers after the blank line dropped. */
    CHECK_STR(parse("HTTP/1.1 100 Continue\r\nX-Early: 1\r\n\r\n"
        "HTTP/1.1 200 OK\r\nX-Final: 2\r\n\r\nX-Trailer: 3\r\n\r\n"), "ok");
    CHECK_STR(dump(), "x-final=2;");
    /* Obsolete folding joins with one space. */
    CHECK_STR(parse("HTTP/1.1 200 OK\r\nX-A: a\r\n  b\r\n\tc\r\nX-E:\r\n"
        " d\r\n\r\n"), "ok");
    CHECK_STR(dump(), "x-a=a b c;x-e=d;");
    /* Lines without a colon or with an empty name are no fields. */
    CHECK_STR(parse("HTTP/1.1 200 OK\r\nNoColon\r\n: v\r\nX: 1\r\n\r\n"),
        "ok");
    CHECK_STR(dump(), "x=1;");

    /* A bare CR inside a value becomes a space (RFC 9110 §5.5), so no
     * value reaching Lua can hold a line break. */
    CHECK_STR(parse("HTTP/1.1 200 OK\r\nLocation: https://a/\rX-Evil: 1"
        "\r\nX-B: 1\r\n\r\n"), "ok");
    CHECK_STR(dump(), "location=https://a/ X-Evil: 1;x-b=1;");
    CHECK_STR(parse("HTTP/1.1 200 OK\r\nX-A: a\r\n b\rc\r\n\r\n"), "ok");
    CHECK_STR(dump(), "x-a=a b c;");
    /* A name that is not a token is skipped, and so is a folded line
     * continuing it (it must not join the field before). */
    CHECK_STR(parse("HTTP/1.1 200 OK\r\nX-A: a\r\nBad Name: v\r\n w\r\n"
        "X\rB: v\r\nX\x01: v\r\nX-C: c\r\n\r\n"), "ok");
    CHECK_STR(dump(), "x-a=a;x-c=c;");
    /* A line with a NUL is dropped whole, its folding too. */
    {
        static const char nul[] = "HTTP/1.1 200 OK\r\nX-N: a\0b\r\n c\r\n"
            "X-M: m\r\n\r\n";
        struct luacme_err err;

        http_response_free(&resp);
        CHECK(http_parse_headers(nul, sizeof(nul) - 1, &resp, &err) == 0);
        CHECK_STR(dump(), "x-m=m;");
    }

    /* The cap on what is kept. */
    n = LUACME_HTTP_MAX_HEADERS + 100;
    big = malloc(n + 64);
    CHECK(big != NULL);
    if (big != NULL) {
        strcpy(big, "HTTP/1.1 200 OK\r\nX-Big: ");
        for (i = strlen(big); i < n; i++)
            big[i] = 'a';
        strcpy(big + n, "\r\n\r\n");
        CHECK_STR(parse(big), "too_large");
        /* Just under it passes. */
        strcpy(big, "HTTP/1.1 200 OK\r\nX-Big: ");
        n = LUACME_HTTP_MAX_HEADERS - strlen("x-big") - 2;
        for (i = strlen(big); i < strlen("HTTP/1.1 200 OK\r\nX-Big: ") + n;
            i++)
            big[i] = 'a';
        strcpy(big + i, "\r\n\r\n");
        CHECK_STR(parse(big), "ok");
        CHECK(resp.nheaders == 1 && strlen(resp.headers[0].value) == n);
        free(big);
    }
    http_response_free(&resp);
    return check_done();
}
