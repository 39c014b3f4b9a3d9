/*
 * The HTTP transport: transfers run on a libcurl multi handle, whose
 * connection cache every client made with it shares, so TCP and TLS
 * connections are reused (one pool per process when all clients share
 * one multi) and requests of several clients run at once, multiplexed
 * on one HTTP/2 connection when the server offers it, TLS >= 1.2 with certificate and host verification
 * always on, no redirects, and caps on the body and the headers kept.
 * No Lua here: lua_http.c converts tables to these structs and back.
 */
#ifndef LUACME_HTTP_H
#define LUACME_HTTP_H

#include <stddef.h>

#include "err.h"

struct http_client;                 /* opaque; http_client_free frees */
struct http_multi;                  /* opaque; http_multi_free frees */
struct http_xfer;                   /* opaque; http_xfer_free frees */

/* Options of a client. Strings are copied by http_client_new; zero
 * numbers mean the defaults from luacme_limits.h. */
struct http_opts {
    const char *ca_file;            /* NULL: the system trust store */
    const char *user_agent;         /* NULL: "luacme libcurl/<version>" */
    double timeout_s;               /* whole request; 0: default */
    double connect_timeout_s;       /* connect phase; 0: default */
    size_t max_body;                /* 0: default; clamped to the ceiling */
    int allow_http;                 /* non-zero: http:// allowed too */
    struct http_multi *multi;       /* NULL: the client's own */
};

struct http_header {
    const char *name;
    const char *value;
};

/* One request. The caller keeps every pointer valid during the call. */
struct http_request {
    const char *method;             /* NULL: "GET"; see http_method_ok */
    const char *url;
    const struct http_header *headers;  /* sent as given; see below */
    size_t nheaders;
    const char *body;               /* NULL: no body */
    size_t body_len;
    /* Non-zero: the request is sent at most once. libcurl otherwise
     * sends a request again by itself on a fresh connection when a
     * reused one closed before any reply byte, which for a request that
     * may have been processed (a non-idempotent POST) is a blind
     * resend; with once set that case fails ("protocol") instead. */
    int once;
};

/* A response. Header names are lower case, values trimmed of
 * surrounding whitespace, in the order received, repeated names kept as
 * separate entries; only the final response's headers (1xx and proxy
 * CONNECT responses are dropped, trailers ignored). body is NUL
 * terminated after body_len bytes (it may hold NULs itself), or NULL
 * when empty. http_response_free frees it all. */
struct http_response {
    long status;
    struct http_header *headers;
    size_t nheaders;
    char *body;
    size_t body_len;
    char *hbuf;                     /* storage behind headers[] */
};

/* Counters for benchmarks and the connection reuse test, and the HTTP
 * version the last response came in ("1.0", "1.1", "2" or "3", a static
 * string; NULL before the first response), so a test can see that HTTP/2
 * was negotiated. */
struct http_stats {
    long requests;                  /* transfers attempted */
    long connects;                  /* new connections opened */
    const char *http_version;
};

/* Make a multi handle: the connection cache and the event loop of the
 * clients made with it, bounded to LUACME_HTTP_MAX_HOST_CONNS
 * connections per host and LUACME_HTTP_MAX_TOTAL_CONNS in all (more
 * transfers wait their turn). Returns 0 and *out (free it with
 * http_multi_free), or -1 with *err filled (kind "protocol"). */
int http_multi_new(struct http_multi **out, struct luacme_err *err);

/* Drop the caller's reference to m; the connections close once no
 * client or transfer holds it either. Accepts NULL. */
void http_multi_free(struct http_multi *m);

/* Move every transfer on m along: waits up to timeout_ms (0: not at
 * all) for network activity while any is running, then marks those
 * that finished done (http_xfer_done) for their owners to collect.
 * Returns how many finished, or -1 with *err filled ("protocol"). */
int http_multi_run(struct http_multi *m, long timeout_ms,
    struct luacme_err *err);

struct pollfd;

/* http_multi_run that also wakes for the nextra descriptors of extra
 * (fd and events POLLIN / POLLOUT; an event loop's other work, such as
 * the pipes of running programs); their revents are filled. With extra
 * not NULL (nextra may be 0: a program whose pipes are closed, only its
 * exit left to see) it waits up to timeout_ms even while no transfer
 * runs. m may be NULL (no transfer was ever started): then it is a
 * poll() of extra alone. Returns how
 * many transfers finished, or -1 with *err filled ("protocol"). */
int http_multi_wait(struct http_multi *m, long timeout_ms,
    struct pollfd *extra, unsigned nextra, struct luacme_err *err);

/* The multi handle c's transfers run on (owned by c; not a new
 * reference). */
struct http_multi *http_client_multi(const struct http_client *c);

/* Make a client. Returns 0 and the client in *out (free it with
 * http_client_free), or -1 with *err filled (kind "protocol" for a
 * libcurl setup failure) and *out untouched. Timeouts must be >= 0.
 * With opts->multi the client holds a reference to it; without, it
 * makes its own. */
int http_client_new(const struct http_opts *opts, struct http_client **out,
    struct luacme_err *err);

/* Drop the caller's reference to a client; it is freed once its last
 * transfer is freed too. Accepts NULL. */
void http_client_free(struct http_client *c);

/* Non-zero when method is a plausible HTTP method token (1..16 upper
 * case letters), so it can go into the request line as is. */
int http_method_ok(const char *method);

/* Non-zero when name is an RFC 9110 token and value has no CR, LF or
 * NUL (value_len is its length, so embedded NULs are caught). Such a
 * header can be sent without changing the request's framing. */
int http_header_ok(const char *name, const char *value, size_t value_len);

/* Start one request on c's multi: checked and set up here (the same
 * refusals as http_request, with nothing counted), then it runs while
 * anyone calls http_multi_run on the multi. Returns 0 and the transfer
 * in *out (it holds a reference to c; free it with http_xfer_free,
 * which also cancels it), or -1 with *err filled. The request's
 * strings and body are copied. */
int http_start(struct http_client *c, const struct http_request *req,
    struct http_xfer **out, struct luacme_err *err);

/* Non-zero once the transfer has finished (well or not). */
int http_xfer_done(const struct http_xfer *xf);

/* The outcome of a finished transfer, as http_request returns it: 0
 * and *resp filled (the caller frees it with http_response_free), or -1
 * with *err filled and resp empty. Call once. */
int http_finish(struct http_xfer *xf, struct http_response *resp,
    struct luacme_err *err);

/* Cancel the transfer if it still runs and free it. Accepts NULL. */
void http_xfer_free(struct http_xfer *xf);

/* Perform one request, waiting for it (http_start, http_multi_run
 * until done, http_finish; other transfers on the multi move on too).
 * Any HTTP response, 4xx/5xx included, is a success: returns 0 and fills *resp, which the
 * caller frees with http_response_free. "HEAD" reads no body. A body is
 * sent with Content-Length (never chunked) and exactly the caller's
 * Content-Type (none when the caller gives none); Expect: 100-continue
 * is never sent. On failure returns -1, fills *err with a kind of
 * "timeout", "connect" (DNS, refused, unreachable), "tls" (verification,
 * handshake), "too_large" (body over max_body, headers over
 * LUACME_HTTP_MAX_HEADERS), "interrupted" (luacme_interrupted was set)
 * or "protocol" (anything else, including a URL scheme not allowed,
 * refused before any connection), and leaves *resp empty. The caller
 * must have checked the method and headers with http_method_ok and
 * http_header_ok; a bad one fails with kind "protocol". */
int http_request(struct http_client *c, const struct http_request *req,
    struct http_response *resp, struct luacme_err *err);

/* Parse len bytes of response header lines, each ending in LF (CRLF),
 * as libcurl hands them to http_request: status lines, fields, the blank
 * line, trailers. Fills resp->headers / nheaders / hbuf exactly as
 * http_request does (status and body stay empty). For the fuzzer and the
 * tests. Returns 0 (free resp with http_response_free), or -1 with err
 * filled ("too_large" over LUACME_HTTP_MAX_HEADERS, "protocol" when out
 * of memory) and resp empty. */
int http_parse_headers(const char *block, size_t len,
    struct http_response *resp, struct luacme_err *err);

/* Free what http_request put into resp and empty it. Idempotent. */
void http_response_free(struct http_response *resp);

/* The client's counters since it was made. */
void http_client_stats(const struct http_client *c, struct http_stats *st);

#endif
