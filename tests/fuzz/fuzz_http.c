/* Response headers from the CA (or anything on the path): the header
 * line parser http_request feeds libcurl's lines to, through
 * http_parse_headers. Besides not crashing, what reaches Lua must hold
 * what http.h promises: names are non-empty lower-case RFC 9110 tokens;
 * values have no CR, LF or NUL and no surrounding blanks; the whole
 * stays within LUACME_HTTP_MAX_HEADERS. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "luacme_limits.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
is_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
        (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int
blank(char c)
{
    return c == ' ' || c == '\t';
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct http_response resp;
    struct luacme_err err;
    size_t i, j, nlen, vlen, total = 0;
    const char *name, *value;

    if (http_parse_headers((const char *)data, size, &resp, &err) != 0) {
        if (strcmp(err.kind, "too_large") != 0)
            abort();
        if (resp.headers != NULL || resp.hbuf != NULL)
            abort();
        return 0;
    }
    for (i = 0; i < resp.nheaders; i++) {
        name = resp.headers[i].name;
        value = resp.headers[i].value;
        nlen = strlen(name);
        vlen = strlen(value);
        if (nlen == 0)
            abort();
        for (j = 0; j < nlen; j++)
            if (!is_tchar(name[j]))
                abort();
        for (j = 0; j < vlen; j++)
            if (value[j] == '\r' || value[j] == '\n')
                abort();
        if (vlen > 0 && (blank(value[0]) || blank(value[vlen - 1])))
            abort();
        total += nlen + vlen + 2;
    }
    if (total > LUACME_HTTP_MAX_HEADERS)
        abort();
    http_response_free(&resp);
    return 0;
}
