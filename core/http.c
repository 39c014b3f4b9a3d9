/*
 * The HTTP transport on libcurl. A client owns one easy handle for its
 * whole life: libcurl keeps the connection cache in the handle, so the
 * next request to the same host reuses the TCP and TLS session. Every
 * security setting is made once in http_client_new and never relaxed.
 */
#include "http.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/socket.h>

#include <curl/curl.h>

#include "luacme_limits.h"

/* A growing byte buffer, always NUL terminated after len. */
struct buf {
    char *p;
    size_t len;
    size_t cap;
};

/* What one transfer collects; lives on http_request's stack. */
struct xfer {
    struct buf body;
    struct buf hdrs;        /* "name\0value\0" pairs */
    size_t nhdr;
    size_t max_body;
    int hdr_done;           /* blank line seen: later lines are trailers */
    int can_fold;           /* the last line was a field we kept */
    int body_over;
    int hdr_over;
    int nomem;
    sig_atomic_t start_int; /* luacme_interrupted when the request began */
    const char *up;         /* a once request's body (see http_request) */
    size_t up_len, up_pos;
};

/* The transfers of every client made with the same multi share its
 * connection cache: one pool per process when the Lua binding gives
 * them all one multi. Counted references: clients and transfers hold
 * it, so the order in which they are freed does not matter. */
struct http_multi {
    CURLM *m;
    int refs;
};

/* A client is the settings every transfer gets; the easy handles are
 * per transfer (one kept idle for the next), since the connections live
 * in the multi. Counted references: each transfer holds its client. */
struct http_client {
    struct http_multi *multi;
    CURL *idle;                 /* a set-up handle for the next transfer */
    char *ca_file;
    char *user_agent;
    long timeout_ms;
    long connect_ms;
    size_t max_body;
    int allow_http;
    int refs;
    struct http_stats stats;
};

/* One request in flight (or done) on a client's multi. */
struct http_xfer {
    struct http_client *c;
    CURL *h;
    struct curl_slist *hl;
    struct xfer x;
    char *method;
    char *url;
    char *up_copy;              /* a once request's body (x.up) */
    int added;                  /* in the multi */
    int done;
    CURLcode cc;
    char errbuf[CURL_ERROR_SIZE];
};

/* curl_easy_setopt is variadic, so a helper function cannot forward it;
 * this keeps the first failure in cc and skips the rest. */
#define SETOPT(cc, h, opt, val) do {                                    \
        if ((cc) == CURLE_OK)                                           \
            (cc) = curl_easy_setopt((h), (opt), (val));                 \
    } while (0)

/* Append n bytes, keeping the total at most max. Returns 0, 1 when the
 * cap would be passed (nothing appended), 2 when out of memory. */
static int
buf_add(struct buf *b, const void *data, size_t n, size_t max)
{
    size_t need, cap;
    char *p;

    if (b->len > max || n > max - b->len)
        return 1;
    need = b->len + n;
    if (b->p == NULL || need > b->cap) {
        cap = b->cap < 4096 ? 4096 : b->cap;
        while (cap < need)
            cap = cap > max / 2 ? max : cap * 2;
        if (cap > max)
            cap = max;          /* still >= need, checked above */
        /* cap <= max <= LUACME_HTTP_MAX_BODY_CEIL: cap + 1 cannot wrap. */
        p = realloc(b->p, cap + 1);
        if (p == NULL)
            return 2;
        b->p = p;
        b->cap = cap;
    }
    if (n > 0)
        memcpy(b->p + b->len, data, n);
    b->len = need;
    b->p[b->len] = '\0';
    return 0;
}

static int
is_ows(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static char
ascii_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* Case-insensitive ASCII comparison of the first n bytes, independent
 * of the locale (strncasecmp is not). */
static int
prefix_ci(const char *s, const char *prefix)
{
    for (; *prefix != '\0'; s++, prefix++)
        if (ascii_lower(*s) != *prefix)
            return 0;
    return 1;
}

static int
eq_ci(const char *a, const char *b)
{
    for (; *a != '\0' && *b != '\0'; a++, b++)
        if (ascii_lower(*a) != ascii_lower(*b))
            return 0;
    return *a == *b;
}

/* Trim [*s, *e) of surrounding whitespace, CR and LF. */
static void
trim(const char **s, const char **e)
{
    while (*s < *e && is_ows(**s))
        (*s)++;
    while (*e > *s && is_ows((*e)[-1]))
        (*e)--;
}

/* An RFC 9110 token character (a field name is a token). */
static int
is_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
        (c >= '0' && c <= '9') || (c != '\0' && strchr("!#$%&'*+-.^_`|~",
        c) != NULL);
}

/* Append the value [vs, ve) and its NUL. A CR inside a value is invalid
 * and dangerous (RFC 9110 §5.5): it becomes a space, as allowed there,
 * so nothing in Lua can split a value into lines. */
static int
add_value(struct buf *b, const char *vs, const char *ve)
{
    size_t i, start = b->len;
    int r;

    r = buf_add(b, vs, (size_t)(ve - vs), LUACME_HTTP_MAX_HEADERS);
    if (r == 0)
        r = buf_add(b, "", 1, LUACME_HTTP_MAX_HEADERS);
    for (i = start; r == 0 && i < b->len; i++)
        if (b->p[i] == '\r')
            b->p[i] = ' ';
    return r;
}

/* Record one header line. A status line starts a new response (a 1xx,
 * a proxy's CONNECT reply, the final one): what came before is
 * dropped, so only the final response's headers remain. */
static int
header_line(struct xfer *x, const char *line, size_t n)
{
    const char *end = line + n, *colon, *ns, *ne, *vs, *ve, *p;
    size_t start;
    int r;

    if (n >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        x->hdrs.len = 0;
        if (x->hdrs.p != NULL)
            x->hdrs.p[0] = '\0';
        x->nhdr = 0;
        x->hdr_done = 0;
        x->can_fold = 0;
        return 0;
    }
    vs = line;
    ve = end;
    trim(&vs, &ve);
    if (vs == ve) {
        /* The blank line ends a header block; chunked trailers come
         * after it and are not the response's headers. */
        x->hdr_done = 1;
        return 0;
    }
    /* A NUL would break the "name\0value\0" framing; such a line is
     * not valid HTTP anyway. */
    if (x->hdr_done || memchr(line, '\0', n) != NULL) {
        x->can_fold = 0;
        return 0;
    }
    if (line[0] == ' ' || line[0] == '\t') {
        /* Obsolete line folding: continues the previous value, if that
         * line was one we kept (not a skipped one). */
        if (!x->can_fold)
            return 0;
        x->hdrs.len--;      /* drop the previous value's NUL */
        r = 0;
        if (x->hdrs.p[x->hdrs.len - 1] != '\0')   /* value not empty */
            r = buf_add(&x->hdrs, " ", 1, LUACME_HTTP_MAX_HEADERS);
        if (r == 0)
            r = add_value(&x->hdrs, vs, ve);
        return r;
    }
    x->can_fold = 0;
    colon = memchr(line, ':', n);
    if (colon == NULL)
        return 0;
    ns = line;
    ne = colon;
    trim(&ns, &ne);
    if (ns == ne)
        return 0;
    /* A name that is not a token is no field of HTTP's: skip it rather
     * than hand Lua a key with spaces or control characters. */
    for (p = ns; p < ne; p++)
        if (!is_tchar(*p))
            return 0;
    vs = colon + 1;
    ve = end;
    trim(&vs, &ve);
    start = x->hdrs.len;
    r = buf_add(&x->hdrs, ns, (size_t)(ne - ns), LUACME_HTTP_MAX_HEADERS);
    if (r == 0)
        r = buf_add(&x->hdrs, "", 1, LUACME_HTTP_MAX_HEADERS);
    if (r == 0)
        r = add_value(&x->hdrs, vs, ve);
    if (r != 0)
        return r;
    for (; x->hdrs.p[start] != '\0'; start++)
        x->hdrs.p[start] = ascii_lower(x->hdrs.p[start]);
    x->nhdr++;
    x->can_fold = 1;
    return 0;
}

static size_t
on_header(char *data, size_t size, size_t nmemb, void *ud)
{
    struct xfer *x = ud;
    size_t n = size * nmemb;    /* size is always 1 for header data */
    int r = header_line(x, data, n);

    if (r == 1)
        x->hdr_over = 1;
    else if (r == 2)
        x->nomem = 1;
    /* Returning less than n makes libcurl abort with a write error. */
    return r == 0 ? n : 0;
}

/* The body of a request sent at most once, handed to libcurl as it
 * asks. */
static size_t
on_upload(char *buf, size_t size, size_t nitems, void *ud)
{
    struct xfer *x = ud;
    size_t n = size * nitems, left = x->up_len - x->up_pos;

    if (n > left)
        n = left;
    memcpy(buf, x->up + x->up_pos, n);
    x->up_pos += n;
    return n;
}

/* libcurl rewinds the body only to send the request again (a retry on
 * a fresh connection); a once request refuses once a byte went out. */
static int
on_upload_seek(void *ud, curl_off_t offset, int origin)
{
    struct xfer *x = ud;

    if (x->up_pos == 0 && offset == 0 && origin == SEEK_SET)
        return CURL_SEEKFUNC_OK;
    return CURL_SEEKFUNC_FAIL;
}

/* The body cap holds here whether or not a Content-Length came. */
static size_t
on_body(char *data, size_t size, size_t nmemb, void *ud)
{
    struct xfer *x = ud;
    size_t n = size * nmemb;    /* size is always 1 for body data */
    int r = buf_add(&x->body, data, n, x->max_body);

    if (r == 1)
        x->body_over = 1;
    else if (r == 2)
        x->nomem = 1;
    return r == 0 ? n : 0;
}

/* libcurl calls this about once a second and whenever data moves; a
 * non-zero return aborts the transfer, so Ctrl-C stops a slow request
 * promptly instead of waiting for the timeout. Only a signal that
 * arrives during this request counts: once Ctrl-C has unwound into
 * cleanup, hooks must still be able to remove DNS records over HTTP. */
static int
on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow,
    curl_off_t ultotal, curl_off_t ulnow)
{
    const struct xfer *x = ud;

    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    return x->start_int == 0 && luacme_interrupted != 0;
}

/* libcurl opens its sockets without close-on-exec, so a hook program
 * spawned while a connection is cached would inherit it (and keep the
 * server's end open). Open them here with SOCK_CLOEXEC instead. */
static curl_socket_t
on_opensocket(void *ud, curlsocktype purpose, struct curl_sockaddr *addr)
{
    (void)ud;
    (void)purpose;
    return socket(addr->family, addr->socktype | SOCK_CLOEXEC,
        addr->protocol);
}

/* Seconds (fraction allowed) to milliseconds for libcurl, where 0 would
 * mean "no timeout": anything not positive takes the default, and a
 * positive value is rounded up so it never becomes 0. */
static long
timeout_ms(double s, long dflt_s)
{
    long ms;

    if (!(s > 0))
        return dflt_s * 1000L;
    if (s > LUACME_HTTP_TIMEOUT_MAX_S)
        s = LUACME_HTTP_TIMEOUT_MAX_S;
    /* Round up by hand: the C core does not link libm for ceil(). */
    ms = (long)(s * 1000.0);
    if ((double)ms < s * 1000.0)
        ms++;
    return ms;
}

/* The client's settings on a fresh easy handle h; every security
 * setting is made here and never relaxed. Returns CURLE_OK or the first
 * failure. */
static CURLcode
setup_handle(const struct http_client *c, CURL *h)
{
    const char *protocols = c->allow_http ? "http,https" : "https";
    CURLcode cc = CURLE_OK;

    /* No SIGALRM for DNS timeouts: the process has its own handlers. */
    SETOPT(cc, h, CURLOPT_NOSIGNAL, 1L);
    /* The scheme is also checked before each transfer; this makes sure
     * libcurl itself never speaks anything else. */
    SETOPT(cc, h, CURLOPT_PROTOCOLS_STR, protocols);
    SETOPT(cc, h, CURLOPT_REDIR_PROTOCOLS_STR, protocols);
    SETOPT(cc, h, CURLOPT_FOLLOWLOCATION, 0L);
    SETOPT(cc, h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    /* Requests started together wait for one HTTP/2 connection to
     * multiplex on instead of each opening its own. */
    SETOPT(cc, h, CURLOPT_PIPEWAIT, 1L);
    SETOPT(cc, h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    SETOPT(cc, h, CURLOPT_SSL_VERIFYPEER, 1L);
    SETOPT(cc, h, CURLOPT_SSL_VERIFYHOST, 2L);
    SETOPT(cc, h, CURLOPT_PROXY_SSL_VERIFYPEER, 1L);
    SETOPT(cc, h, CURLOPT_PROXY_SSL_VERIFYHOST, 2L);
    if (c->ca_file != NULL) {
        /* Only this file: a system CA directory must not widen trust. */
        SETOPT(cc, h, CURLOPT_CAINFO, c->ca_file);
        SETOPT(cc, h, CURLOPT_CAPATH, (char *)NULL);
    }
    SETOPT(cc, h, CURLOPT_USERAGENT, c->user_agent);
    SETOPT(cc, h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
    SETOPT(cc, h, CURLOPT_CONNECTTIMEOUT_MS, c->connect_ms);
    SETOPT(cc, h, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
    SETOPT(cc, h, CURLOPT_WRITEFUNCTION, on_body);
    SETOPT(cc, h, CURLOPT_HEADERFUNCTION, on_header);
    SETOPT(cc, h, CURLOPT_XFERINFOFUNCTION, on_progress);
    SETOPT(cc, h, CURLOPT_NOPROGRESS, 0L);
    SETOPT(cc, h, CURLOPT_OPENSOCKETFUNCTION, on_opensocket);
    /* The smallest upload buffer libcurl takes (its default is 64 KB,
     * kept for the handle's life once a body is read through a
     * callback): a JWS body is a few KB, a larger one just takes more
     * rounds (issue 11, peak RSS). */
    SETOPT(cc, h, CURLOPT_UPLOAD_BUFFERSIZE, 16384L);
    return cc;
}

/* A set-up easy handle of c: the idle one, or a new one. Returns NULL
 * with err filled on failure. */
static CURL *
take_handle(struct http_client *c, struct luacme_err *err)
{
    CURL *h = c->idle;
    CURLcode cc;

    if (h != NULL) {
        c->idle = NULL;
        return h;
    }
    h = curl_easy_init();
    if (h == NULL) {
        err_set(err, "protocol", "http: curl_easy_init failed");
        return NULL;
    }
    cc = setup_handle(c, h);
    if (cc != CURLE_OK) {
        err_set(err, "protocol", "http: setting up libcurl: %s",
            curl_easy_strerror(cc));
        curl_easy_cleanup(h);
        return NULL;
    }
    return h;
}

int
http_multi_new(struct http_multi **out, struct luacme_err *err)
{
    struct http_multi *m = calloc(1, sizeof(*m));
    CURLMcode mc = CURLM_OK;

    if (m == NULL)
        return err_set(err, "protocol", "http: out of memory");
    m->m = curl_multi_init();
    if (m->m == NULL) {
        free(m);
        return err_set(err, "protocol", "http: curl_multi_init failed");
    }
    m->refs = 1;
    /* Bounds on the sockets one process keeps, however many transfers
     * run at once: more wait in libcurl's queue (their timeouts run). */
    mc = curl_multi_setopt(m->m, CURLMOPT_MAX_HOST_CONNECTIONS,
        (long)LUACME_HTTP_MAX_HOST_CONNS);
    if (mc == CURLM_OK)
        mc = curl_multi_setopt(m->m, CURLMOPT_MAX_TOTAL_CONNECTIONS,
            (long)LUACME_HTTP_MAX_TOTAL_CONNS);
    if (mc == CURLM_OK)
        mc = curl_multi_setopt(m->m, CURLMOPT_MAXCONNECTS,
            (long)LUACME_HTTP_MAX_CACHED_CONNS);
    if (mc != CURLM_OK) {
        curl_multi_cleanup(m->m);
        free(m);
        return err_set(err, "protocol", "http: setting up libcurl: %s",
            curl_multi_strerror(mc));
    }
    *out = m;
    return 0;
}

void
http_multi_free(struct http_multi *m)
{
    if (m == NULL || --m->refs > 0)
        return;
    curl_multi_cleanup(m->m);
    free(m);
}

int
http_client_new(const struct http_opts *opts, struct http_client **out,
    struct luacme_err *err)
{
    struct http_client *c = NULL;
    const curl_version_info_data *cv;
    char ua[128];
    int rc = -1;

    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        err_set(err, "protocol", "http: out of memory");
        goto out;
    }
    c->refs = 1;
    if (opts->multi != NULL) {
        c->multi = opts->multi;
        c->multi->refs++;
    } else if (http_multi_new(&c->multi, err) != 0) {
        goto out;
    }
    c->allow_http = opts->allow_http != 0;
    c->max_body = opts->max_body > 0 ? opts->max_body : LUACME_HTTP_MAX_BODY;
    if (c->max_body > LUACME_HTTP_MAX_BODY_CEIL)
        c->max_body = LUACME_HTTP_MAX_BODY_CEIL;
    if (opts->user_agent == NULL) {
        cv = curl_version_info(CURLVERSION_NOW);
        snprintf(ua, sizeof(ua), "luacme libcurl/%s", cv->version);
    }
    c->user_agent = strdup(opts->user_agent != NULL ? opts->user_agent : ua);
    c->ca_file = opts->ca_file != NULL ? strdup(opts->ca_file) : NULL;
    if (c->user_agent == NULL || (opts->ca_file != NULL &&
        c->ca_file == NULL)) {
        err_set(err, "protocol", "http: out of memory");
        goto out;
    }
    c->timeout_ms = timeout_ms(opts->timeout_s, LUACME_HTTP_TIMEOUT_S);
    c->connect_ms = timeout_ms(opts->connect_timeout_s,
        LUACME_HTTP_CONNECT_TIMEOUT_S);
    /* A handle now, so a libcurl that cannot be set up fails here. */
    c->idle = take_handle(c, err);
    if (c->idle == NULL)
        goto out;
    *out = c;
    c = NULL;
    rc = 0;
out:
    http_client_free(c);
    return rc;
}

static void
client_unref(struct http_client *c)
{
    if (--c->refs > 0)
        return;
    curl_easy_cleanup(c->idle);     /* accepts NULL */
    http_multi_free(c->multi);
    free(c->ca_file);
    free(c->user_agent);
    free(c);
}

void
http_client_free(struct http_client *c)
{
    if (c != NULL)
        client_unref(c);
}

int
http_method_ok(const char *method)
{
    size_t i;

    for (i = 0; method[i] != '\0'; i++)
        if (i >= 16 || method[i] < 'A' || method[i] > 'Z')
            return 0;
    return i > 0;
}

int
http_header_ok(const char *name, const char *value, size_t value_len)
{
    size_t i;

    if (name[0] == '\0')
        return 0;
    for (i = 0; name[i] != '\0'; i++)
        if (!is_tchar(name[i]))
            return 0;
    for (i = 0; i < value_len; i++)
        if (value[i] == '\r' || value[i] == '\n' || value[i] == '\0')
            return 0;
    return 1;
}

static int
scheme_ok(const char *url, int allow_http)
{
    if (prefix_ci(url, "https://"))
        return 1;
    return allow_http && prefix_ci(url, "http://");
}

/* The kind of a failed transfer, for callers that retry or report. */
static const char *
fail_kind(CURLcode cc, const struct xfer *x)
{
    if (x->body_over || x->hdr_over)
        return "too_large";
    switch (cc) {
    case CURLE_OPERATION_TIMEDOUT:
        return "timeout";
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
        return "connect";
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_CLIENTCERT:
    case CURLE_USE_SSL_FAILED:
        return "tls";
    case CURLE_FILESIZE_EXCEEDED:
        return "too_large";
    case CURLE_ABORTED_BY_CALLBACK:
        return "interrupted";
    default:
        return "protocol";
    }
}

static void
fail_message(const struct http_xfer *xf, struct luacme_err *err)
{
    const struct xfer *x = &xf->x;
    const char *kind = fail_kind(xf->cc, x);
    const char *method = xf->method, *url = xf->url;
    CURLcode cc = xf->cc;

    if (x->body_over)
        err_set(err, kind, "http: %s %s: body over max_body (%zu bytes)",
            method, url, xf->c->max_body);
    else if (x->hdr_over)
        err_set(err, kind, "http: %s %s: headers over "
            "LUACME_HTTP_MAX_HEADERS (%d bytes)", method, url,
            LUACME_HTTP_MAX_HEADERS);
    else if (x->nomem)
        err_set(err, kind, "http: %s %s: out of memory", method, url);
    else if (cc == CURLE_FILESIZE_EXCEEDED)
        err_set(err, kind, "http: %s %s: Content-Length over max_body "
            "(%zu bytes)", method, url, xf->c->max_body);
    else if (cc == CURLE_ABORTED_BY_CALLBACK)
        err_set(err, kind, "http: %s %s: interrupted by signal", method,
            url);
    else if (xf->errbuf[0] != '\0')
        err_set(err, kind, "http: %s %s: %s (%s)", method, url,
            curl_easy_strerror(cc), xf->errbuf);
    else
        err_set(err, kind, "http: %s %s: %s", method, url,
            curl_easy_strerror(cc));
}

/* The text of a CURLINFO_HTTP_VERSION value, or NULL when unknown. */
static const char *
version_name(long v)
{
    switch (v) {
    case CURL_HTTP_VERSION_1_0:
        return "1.0";
    case CURL_HTTP_VERSION_1_1:
        return "1.1";
    case CURL_HTTP_VERSION_2_0:
        return "2";
    case CURL_HTTP_VERSION_3:
        return "3";
    default:
        return NULL;
    }
}

/* The caller's headers plus the two suppressions: no Expect (libcurl
 * adds "Expect: 100-continue" to larger POSTs and then waits), and no
 * default form Content-Type when the caller gave none. Returns 0 and the
 * list in *out (NULL only if empty), or -1 with *err filled. */
static int
build_headers(const struct http_request *req, int has_body,
    struct curl_slist **out, struct luacme_err *err)
{
    struct curl_slist *list = NULL, *tmp;
    char *line = NULL;
    const char *name, *value;
    size_t i, nlen, vlen;
    int has_ctype = 0, has_expect = 0, rc = -1;

    for (i = 0; i < req->nheaders; i++) {
        name = req->headers[i].name;
        value = req->headers[i].value;
        vlen = strlen(value);
        if (!http_header_ok(name, value, vlen)) {
            err_set(err, "protocol", "http: header '%s' not allowed", name);
            goto out;
        }
        has_ctype |= eq_ci(name, "content-type");
        has_expect |= eq_ci(name, "expect");
        nlen = strlen(name);
        /* Both come from NUL terminated strings in memory: no wrap. */
        line = malloc(nlen + vlen + 3);
        if (line == NULL)
            goto nomem;
        /* "Name;" is libcurl's way to send a header with no value
         * ("Name:" would remove it). */
        if (vlen == 0)
            snprintf(line, nlen + 2, "%s;", name);
        else
            snprintf(line, nlen + vlen + 3, "%s: %s", name, value);
        tmp = curl_slist_append(list, line);
        free(line);
        line = NULL;
        if (tmp == NULL)
            goto nomem;
        list = tmp;
    }
    if (!has_expect) {
        tmp = curl_slist_append(list, "Expect:");
        if (tmp == NULL)
            goto nomem;
        list = tmp;
    }
    if (has_body && !has_ctype) {
        tmp = curl_slist_append(list, "Content-Type:");
        if (tmp == NULL)
            goto nomem;
        list = tmp;
    }
    *out = list;
    list = NULL;
    rc = 0;
    goto out;
nomem:
    err_set(err, "protocol", "http: out of memory");
out:
    free(line);
    curl_slist_free_all(list);
    return rc;
}

/* Move the collected headers into resp as an array of pointers into the
 * buffer. Returns 0, or -1 when out of memory. */
static int
take_headers(struct xfer *x, struct http_response *resp)
{
    const char *p;
    size_t i;

    if (x->nhdr > 0) {
        resp->headers = calloc(x->nhdr, sizeof(*resp->headers));
        if (resp->headers == NULL)
            return -1;
    }
    p = x->hdrs.p;
    for (i = 0; i < x->nhdr; i++) {
        resp->headers[i].name = p;
        p += strlen(p) + 1;
        resp->headers[i].value = p;
        p += strlen(p) + 1;
    }
    resp->nheaders = x->nhdr;
    resp->hbuf = x->hdrs.p;
    x->hdrs.p = NULL;
    return 0;
}

/* The method, URL scheme and body of req, checked before the handle is
 * touched. Sets *body and *body_len to what is sent (an empty POST
 * sends "": POST-as-GET still says Content-Length: 0) and *head.
 * Returns 0, or -1 with err filled. */
static int
check_request(const struct http_client *c, const struct http_request *req,
    const char *method, const char *url, const char **body,
    size_t *body_len, int *head, struct luacme_err *err)
{
    if (req->url == NULL || !scheme_ok(req->url, c->allow_http))
        return err_set(err, "protocol",
            "http: %s %s: only %s URLs are allowed%s", method, url,
            c->allow_http ? "http:// and https://" : "https://",
            c->allow_http ? "" : " (for a plain-http API, make the client "
            "with core.http{allow_http = true})");
    if (!http_method_ok(method))
        return err_set(err, "protocol", "http: bad method '%s'", method);
    *head = strcmp(method, "HEAD") == 0;
    *body = req->body;
    *body_len = req->body_len;
    if (*head && *body != NULL)
        return err_set(err, "protocol",
            "http: HEAD %s: a HEAD has no body", url);
    if (*body == NULL && strcmp(method, "POST") == 0) {
        *body = "";
        *body_len = 0;
    }
    /* curl_off_t is a signed 64-bit type: half of SIZE_MAX fits. */
    if (*body_len > SIZE_MAX / 2)
        return err_set(err, "too_large",
            "http: %s %s: request body too large", method, url);
    return 0;
}

/* Set this request's options on xf's handle: URL, method, body (copied
 * by libcurl), headers, and xf as the sink of the reply. Returns
 * CURLE_OK or the first failure. */
static CURLcode
set_request(struct http_xfer *xf, const char *body, size_t body_len,
    int head)
{
    CURL *h = xf->h;
    curl_off_t maxfile = head ? 0 : (curl_off_t)xf->c->max_body;
    CURLcode cc = CURLE_OK;

    /* A reused handle keeps options between transfers: put the method
     * back to a plain GET first, then set what this request needs. */
    SETOPT(cc, h, CURLOPT_URL, xf->url);
    SETOPT(cc, h, CURLOPT_CUSTOMREQUEST, (char *)NULL);
    SETOPT(cc, h, CURLOPT_HTTPGET, 1L);
    SETOPT(cc, h, CURLOPT_MAXFILESIZE_LARGE, maxfile);
    if (head)
        SETOPT(cc, h, CURLOPT_NOBODY, 1L);
    if (body != NULL && xf->x.up != NULL) {
        /* Read through callbacks that refuse a rewind, so that libcurl
         * cannot send it twice; the size still gives a Content-Length.
         * xf owns the bytes (a copy) while the transfer runs. */
        SETOPT(cc, h, CURLOPT_POST, 1L);
        SETOPT(cc, h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        SETOPT(cc, h, CURLOPT_READFUNCTION, on_upload);
        SETOPT(cc, h, CURLOPT_READDATA, &xf->x);
        SETOPT(cc, h, CURLOPT_SEEKFUNCTION, on_upload_seek);
        SETOPT(cc, h, CURLOPT_SEEKDATA, &xf->x);
    } else if (body != NULL) {
        /* Size first, then the data: sent as is, with Content-Length,
         * never chunked. Copied, so the caller's buffer may go away
         * while the transfer runs. */
        SETOPT(cc, h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        SETOPT(cc, h, CURLOPT_COPYPOSTFIELDS, body);
    }
    if (!head && strcmp(xf->method, body != NULL ? "POST" : "GET") != 0)
        SETOPT(cc, h, CURLOPT_CUSTOMREQUEST, xf->method);
    SETOPT(cc, h, CURLOPT_HTTPHEADER, xf->hl);
    SETOPT(cc, h, CURLOPT_WRITEDATA, &xf->x);
    SETOPT(cc, h, CURLOPT_HEADERDATA, &xf->x);
    SETOPT(cc, h, CURLOPT_XFERINFODATA, &xf->x);
    SETOPT(cc, h, CURLOPT_ERRORBUFFER, xf->errbuf);
    SETOPT(cc, h, CURLOPT_PRIVATE, (void *)xf);
    return cc;
}

void
http_xfer_free(struct http_xfer *xf)
{
    struct http_client *c;
    CURL *h;

    if (xf == NULL)
        return;
    c = xf->c;
    h = xf->h;
    if (xf->added)
        curl_multi_remove_handle(c->multi->m, h);
    if (h != NULL) {
        /* Nothing on the handle may point at freed memory; then it is
         * kept for the next transfer, or freed when one already is. */
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, (struct curl_slist *)NULL);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, (char *)NULL);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)-1);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, (void *)NULL);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, (void *)NULL);
        curl_easy_setopt(h, CURLOPT_XFERINFODATA, (void *)NULL);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, (curl_read_callback)NULL);
        curl_easy_setopt(h, CURLOPT_READDATA, (void *)NULL);
        curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, (curl_seek_callback)NULL);
        curl_easy_setopt(h, CURLOPT_SEEKDATA, (void *)NULL);
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, (char *)NULL);
        curl_easy_setopt(h, CURLOPT_PRIVATE, (void *)NULL);
        if (c->idle == NULL)
            c->idle = h;
        else
            curl_easy_cleanup(h);
    }
    curl_slist_free_all(xf->hl);
    free(xf->x.body.p);
    free(xf->x.hdrs.p);
    free(xf->method);
    free(xf->url);
    free(xf->up_copy);
    free(xf);
    client_unref(c);
}

int
http_start(struct http_client *c, const struct http_request *req,
    struct http_xfer **out, struct luacme_err *err)
{
    struct http_xfer *xf = NULL;
    const char *method = req->method != NULL ? req->method : "GET";
    const char *url = req->url != NULL ? req->url : "(null)";
    const char *body = NULL;
    size_t body_len = 0;
    CURLcode cc;
    CURLMcode mc;
    int head = 0, rc = -1;

    if (check_request(c, req, method, url, &body, &body_len, &head,
        err) != 0)
        return -1;
    xf = calloc(1, sizeof(*xf));
    if (xf == NULL)
        return err_set(err, "protocol", "http: out of memory");
    xf->c = c;
    c->refs++;
    xf->x.max_body = c->max_body;
    xf->x.start_int = luacme_interrupted;
    xf->method = strdup(method);
    xf->url = strdup(url);
    if (xf->method == NULL || xf->url == NULL) {
        err_set(err, "protocol", "http: out of memory");
        goto out;
    }
    if (req->once && body != NULL) {
        /* Read by on_upload while the transfer runs: a copy of ours. */
        xf->up_copy = malloc(body_len > 0 ? body_len : 1);
        if (xf->up_copy == NULL) {
            err_set(err, "protocol", "http: out of memory");
            goto out;
        }
        memcpy(xf->up_copy, body, body_len);
        xf->x.up = xf->up_copy;
        xf->x.up_len = body_len;
    }
    if (build_headers(req, body != NULL, &xf->hl, err) != 0)
        goto out;
    xf->h = take_handle(c, err);
    if (xf->h == NULL)
        goto out;
    cc = set_request(xf, body, body_len, head);
    if (cc != CURLE_OK) {
        err_set(err, "protocol", "http: %s %s: setting up libcurl: %s",
            method, url, curl_easy_strerror(cc));
        goto out;
    }
    mc = curl_multi_add_handle(c->multi->m, xf->h);
    if (mc != CURLM_OK) {
        err_set(err, "protocol", "http: %s %s: %s", method, url,
            curl_multi_strerror(mc));
        goto out;
    }
    xf->added = 1;
    *out = xf;
    xf = NULL;
    rc = 0;
out:
    http_xfer_free(xf);
    return rc;
}

/* A transfer libcurl reports finished: out of the multi, counted. */
static void
xfer_finished(struct http_xfer *xf, CURLcode cc)
{
    struct http_client *c = xf->c;
    long nconn = 0, version = 0;

    curl_multi_remove_handle(c->multi->m, xf->h);
    xf->added = 0;
    xf->done = 1;
    xf->cc = cc;
    c->stats.requests++;
    if (curl_easy_getinfo(xf->h, CURLINFO_NUM_CONNECTS, &nconn) == CURLE_OK)
        c->stats.connects += nconn;
    if (cc == CURLE_OK && curl_easy_getinfo(xf->h, CURLINFO_HTTP_VERSION,
        &version) == CURLE_OK && version_name(version) != NULL)
        c->stats.http_version = version_name(version);
}

/* Move finished transfers out of the multi. Returns how many. */
static int
collect(struct http_multi *m)
{
    CURLMsg *msg;
    struct http_xfer *xf;
    int left, n = 0;

    while ((msg = curl_multi_info_read(m->m, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        xf = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&xf);
        if (xf != NULL) {
            /* msg is invalid once its handle is removed: copy first. */
            xfer_finished(xf, msg->data.result);
            n++;
        }
    }
    return n;
}

int
http_multi_run(struct http_multi *m, long timeout_ms, struct luacme_err *err)
{
    return http_multi_wait(m, timeout_ms, NULL, 0, err);
}

/* curl_multi_poll's view of extra (its own flag values); NULL when
 * there are none or out of memory (then the wait sees transfers only,
 * still bounded by timeout_ms). */
static struct curl_waitfd *
waitfds_of(const struct pollfd *extra, unsigned n)
{
    struct curl_waitfd *w;
    unsigned i;

    if (n == 0)
        return NULL;
    w = calloc(n, sizeof(*w));
    if (w == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        w[i].fd = extra[i].fd;
        w[i].events = (short)(((extra[i].events & POLLIN) ?
            CURL_WAIT_POLLIN : 0) | ((extra[i].events & POLLOUT) ?
            CURL_WAIT_POLLOUT : 0));
    }
    return w;
}

int
http_multi_wait(struct http_multi *m, long timeout_ms, struct pollfd *extra,
    unsigned nextra, struct luacme_err *err)
{
    struct curl_waitfd *w = NULL;
    CURLMcode mc;
    unsigned i;
    int running = 0, n, tmo;

    tmo = timeout_ms > INT_MAX ? INT_MAX : (int)timeout_ms;
    if (m == NULL) {
        if (extra != NULL && timeout_ms > 0 &&
            poll(extra, (nfds_t)nextra, tmo) < 0 && errno != EINTR)
            return err_set(err, "protocol", "http: poll: %s",
                strerror(errno));
        return 0;
    }
    mc = curl_multi_perform(m->m, &running);
    if (mc == CURLM_OK) {
        n = collect(m);
        if (n > 0 || (running == 0 && extra == NULL) || timeout_ms <= 0)
            return n;
        /* One wait for the network and the caller's descriptors (rather
         * than a thread or a second loop): libcurl adds extra to its
         * own poll() set, so whichever is first wakes the caller. */
        w = waitfds_of(extra, nextra);
        mc = curl_multi_poll(m->m, w, w != NULL ? nextra : 0, tmo, NULL);
        for (i = 0; w != NULL && i < nextra; i++)
            extra[i].revents = (short)(((w[i].revents & CURL_WAIT_POLLIN) ?
                POLLIN : 0) | ((w[i].revents & CURL_WAIT_POLLOUT) ?
                POLLOUT : 0));
        free(w);
    }
    if (mc == CURLM_OK)
        mc = curl_multi_perform(m->m, &running);
    if (mc != CURLM_OK)
        return err_set(err, "protocol", "http: %s",
            curl_multi_strerror(mc));
    return collect(m);
}

int
http_xfer_done(const struct http_xfer *xf)
{
    return xf->done;
}

int
http_finish(struct http_xfer *xf, struct http_response *resp,
    struct luacme_err *err)
{
    long status = 0;

    memset(resp, 0, sizeof(*resp));
    if (!xf->done)
        return err_set(err, "protocol", "http: %s %s: not finished",
            xf->method, xf->url);
    if (xf->cc != CURLE_OK || xf->x.nomem) {
        fail_message(xf, err);
        return -1;
    }
    if (curl_easy_getinfo(xf->h, CURLINFO_RESPONSE_CODE, &status) !=
        CURLE_OK || status < 100)
        return err_set(err, "protocol", "http: %s %s: no HTTP status",
            xf->method, xf->url);
    /* libcurl accepts a reply that ends after its status line or in
     * its headers as complete; the server may have done the work, so
     * this is a lost reply, not an empty success. */
    if (!xf->x.hdr_done)
        return err_set(err, "protocol", "http: %s %s: reply ended inside "
            "its header block", xf->method, xf->url);
    if (take_headers(&xf->x, resp) != 0)
        return err_set(err, "protocol", "http: %s %s: out of memory",
            xf->method, xf->url);
    resp->status = status;
    resp->body = xf->x.body.p;
    resp->body_len = xf->x.body.len;
    xf->x.body.p = NULL;
    return 0;
}

struct http_multi *
http_client_multi(const struct http_client *c)
{
    return c->multi;
}

int
http_request(struct http_client *c, const struct http_request *req,
    struct http_response *resp, struct luacme_err *err)
{
    struct http_xfer *xf = NULL;
    int rc = -1;

    memset(resp, 0, sizeof(*resp));
    if (http_start(c, req, &xf, err) != 0)
        return -1;
    /* Other transfers on the same multi move on too; they are only
     * marked done, for their owners to collect. The transfer's own
     * timeouts bound this loop. */
    while (!xf->done)
        if (http_multi_run(c->multi, 1000, err) < 0)
            goto out;
    rc = http_finish(xf, resp, err);
out:
    http_xfer_free(xf);
    if (rc != 0)
        http_response_free(resp);
    return rc;
}

int
http_parse_headers(const char *block, size_t len,
    struct http_response *resp, struct luacme_err *err)
{
    struct xfer x;
    const char *p = block, *end = block + len, *nl;
    size_t n;
    int r = 0, rc = -1;

    memset(resp, 0, sizeof(*resp));
    memset(&x, 0, sizeof(x));
    while (p < end && r == 0) {
        nl = memchr(p, '\n', (size_t)(end - p));
        n = nl != NULL ? (size_t)(nl - p) + 1 : (size_t)(end - p);
        r = header_line(&x, p, n);
        p += n;
    }
    if (r == 1) {
        err_set(err, "too_large", "http: headers over "
            "LUACME_HTTP_MAX_HEADERS (%d bytes)", LUACME_HTTP_MAX_HEADERS);
        goto out;
    }
    if (r != 0 || take_headers(&x, resp) != 0) {
        err_set(err, "protocol", "http: out of memory");
        goto out;
    }
    rc = 0;
out:
    free(x.hdrs.p);
    if (rc != 0)
        http_response_free(resp);
    return rc;
}

void
http_response_free(struct http_response *resp)
{
    free(resp->headers);
    free(resp->hbuf);
    free(resp->body);
    memset(resp, 0, sizeof(*resp));
}

void
http_client_stats(const struct http_client *c, struct http_stats *st)
{
    *st = c->stats;
}
