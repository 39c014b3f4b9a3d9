/*
 * The http-01 and tls-alpn-01 responders (see responder.h). One thread
 * per responder runs a poll() loop over the wake pipe, the listening
 * socket and up to max_conns non-blocking connections, each a small
 * state machine with a deadline:
 *
 *   http-01      READ (request head) -> WRITE (response) -> DRAIN
 *   tls-alpn-01  HANDSHAKE -> SHUTDOWN (close_notify) -> DRAIN
 *
 * DRAIN half-closes the socket and reads until the client closes, so the
 * last bytes of the response are never destroyed by a reset. The entries
 * (tokens, certificates) and the counters are shared with the caller's
 * thread under r->mu; everything else belongs to the serving thread.
 */
/* accept4(2) and pipe2(2): descriptors close-on-exec from birth. */
#define _GNU_SOURCE

#include "responder.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "luacme_limits.h"
#include "x509.h"

#define ACME_TLS_ALPN "acme-tls/1"
#define ACME_TLS_ALPN_LEN 10
#define CHALLENGE_PREFIX "/.well-known/acme-challenge/"

/* Longest SNI / identifier key we keep: a DNS name (253) or a reverse
 * name (X509_REVERSE_NAME_MAX), plus a trailing dot and the NUL. */
#define NAME_BUF (LUACME_NAME_MAX + 2)

/* Pause before accepting again after accept failed (out of
 * descriptors, memory...): the listening socket stays readable, so
 * without it the loop would spin. */
#define ACCEPT_PAUSE_MS 100

enum conn_state {
    ST_READ,            /* http-01: reading the request head */
    ST_WRITE,           /* http-01: writing the response */
    ST_HANDSHAKE,       /* tls-alpn-01: SSL_do_handshake */
    ST_SHUTDOWN,        /* tls-alpn-01: sending close_notify */
    ST_DRAIN            /* half-closed, reading until the client closes */
};

/* Why a TLS handshake failed, as the callbacks saw it. */
enum tls_fail {
    FAIL_NONE,
    FAIL_NAME,          /* no SNI, or an SNI we do not serve */
    FAIL_ALPN           /* no ALPN, or not acme-tls/1 */
};

struct entry {
    char *name;         /* token, or normalised SNI name */
    char *body;         /* http-01 */
    size_t body_len;
    X509 *cert;         /* tls-alpn-01, one reference each */
    EVP_PKEY *key;
};

struct conn {
    int fd;
    enum conn_state state;
    short events;       /* POLLIN / POLLOUT to wait for */
    int64_t born;       /* monotonic ms of the accept */
    struct sockaddr_storage peer;   /* its port ignored */
    SSL *ssl;
    enum tls_fail fail;
    int hello;          /* a ClientHello arrived (counted) */
    char *in;           /* max_request bytes */
    size_t in_len;
    char *out;
    size_t out_len, out_off;
    size_t drained;
};

struct responder {
    enum responder_kind kind;
    int lfd;
    int wake_r, wake_w;
    int port;
    int max_conns;
    size_t max_request;
    int timeout_ms;
    SSL_CTX *ctx;
    pthread_t thread;
    int started;

    pthread_mutex_t mu;     /* guards entries and st */
    struct entry *entries;
    size_t n_entries, cap_entries;
    struct responder_stats st;

    /* The serving thread's own. */
    struct conn **conns;
    size_t n_conns;
    struct pollfd *pfds;
    int64_t accept_pause;
};

static int64_t
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
stat_add(struct responder *r, uint64_t *counter)
{
    pthread_mutex_lock(&r->mu);
    (*counter)++;
    pthread_mutex_unlock(&r->mu);
}

/*
 * Names and entries
 */

static int
token_ok(const char *t)
{
    size_t i, n = strlen(t);

    if (n == 0 || n > LUACME_RESPONDER_MAX_TOKEN)
        return 0;
    for (i = 0; i < n; i++) {
        char c = t[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
            (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return 0;
    }
    return 1;
}

/* Lower-case s into out without one trailing dot. Returns 0, or -1 when
 * it is empty, too long or holds a byte outside letters, digits, '-',
 * '_' and '.' (an SNI or identifier we could never match). */
static int
sni_key(const char *s, char *out, size_t out_size)
{
    size_t i, n = strlen(s);

    if (n > 0 && s[n - 1] == '.')
        n--;
    if (n == 0 || n >= out_size || n > LUACME_NAME_MAX)
        return -1;
    for (i = 0; i < n; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.'))
            return -1;
        out[i] = c;
    }
    out[n] = '\0';
    return 0;
}

/* The key an identifier is stored under: the reverse name of an IP, the
 * normalised DNS name otherwise. */
static int
identifier_key(const char *id, char *out, size_t out_size,
    struct luacme_err *err)
{
    char rev[X509_REVERSE_NAME_MAX];
    struct luacme_err ignored;

    if (x509_reverse_name(id, rev, sizeof(rev), &ignored) == 0)
        return sni_key(rev, out, out_size) == 0 ? 0 :
            err_set(err, "invalid", "responder: bad reverse name");
    if (sni_key(id, out, out_size) != 0)
        return err_set(err, "invalid", "responder: \"%.64s\" is neither "
            "a DNS name nor an IP address", id);
    return 0;
}

static void
entry_free(struct entry *e)
{
    free(e->name);
    free(e->body);
    X509_free(e->cert);
    EVP_PKEY_free(e->key);
    memset(e, 0, sizeof(*e));
}

/* Index of name in r->entries or -1. Call with r->mu held. */
static long
entry_find(struct responder *r, const char *name)
{
    size_t i;

    for (i = 0; i < r->n_entries; i++)
        if (strcmp(r->entries[i].name, name) == 0)
            return (long)i;
    return -1;
}

/* Put e (taking what it owns) under its name, replacing an old entry.
 * On failure e is left to the caller. */
static int
entry_put(struct responder *r, struct entry *e, struct luacme_err *err)
{
    struct entry *grown;
    size_t cap;
    long i;
    int rc = -1;

    pthread_mutex_lock(&r->mu);
    i = entry_find(r, e->name);
    if (i >= 0) {
        entry_free(&r->entries[i]);
        r->entries[i] = *e;
        rc = 0;
        goto out;
    }
    if (r->n_entries >= LUACME_RESPONDER_MAX_ENTRIES) {
        err_set(err, "too_large", "responder: more than %d entries",
            LUACME_RESPONDER_MAX_ENTRIES);
        goto out;
    }
    if (r->n_entries == r->cap_entries) {
        cap = r->cap_entries ? r->cap_entries * 2 : 8;
        grown = realloc(r->entries, cap * sizeof(*grown));
        if (grown == NULL) {
            err_set(err, "system", "responder: out of memory");
            goto out;
        }
        r->entries = grown;
        r->cap_entries = cap;
    }
    r->entries[r->n_entries++] = *e;
    r->st.entries = r->n_entries;
    rc = 0;
out:
    pthread_mutex_unlock(&r->mu);
    if (rc == 0)
        memset(e, 0, sizeof(*e));
    return rc;
}

int
responder_http_add(struct responder *r, const char *token,
    const void *body, size_t body_len, struct luacme_err *err)
{
    struct entry e;
    int rc = -1;

    memset(&e, 0, sizeof(e));
    if (r->kind != RESPONDER_HTTP01) {
        err_set(err, "invalid", "responder: not an http-01 responder");
        goto out;
    }
    if (!token_ok(token)) {
        err_set(err, "invalid", "responder: token is not 1..%d of "
            "[A-Za-z0-9_-]", LUACME_RESPONDER_MAX_TOKEN);
        goto out;
    }
    if (body_len > LUACME_RESPONDER_MAX_BODY) {
        err_set(err, "too_large", "responder: body over "
            "LUACME_RESPONDER_MAX_BODY (%d bytes)",
            LUACME_RESPONDER_MAX_BODY);
        goto out;
    }
    e.name = strdup(token);
    e.body = malloc(body_len + 1);
    if (e.name == NULL || e.body == NULL) {
        err_set(err, "system", "responder: out of memory");
        goto out;
    }
    memcpy(e.body, body, body_len);
    e.body_len = body_len;
    rc = entry_put(r, &e, err);
out:
    entry_free(&e);
    return rc;
}

int
responder_tls_add(struct responder *r, const char *identifier,
    const char *cert_pem, size_t cert_len, EVP_PKEY *key,
    struct luacme_err *err)
{
    char name[NAME_BUF];
    struct entry e;
    BIO *bio = NULL;
    int rc = -1;

    memset(&e, 0, sizeof(e));
    if (r->kind != RESPONDER_TLS_ALPN01) {
        err_set(err, "invalid", "responder: not a tls-alpn-01 responder");
        goto out;
    }
    if (identifier_key(identifier, name, sizeof(name), err) != 0)
        goto out;
    if (cert_len > LUACME_PEM_MAX) {
        err_set(err, "too_large", "responder: certificate PEM over "
            "LUACME_PEM_MAX");
        goto out;
    }
    bio = BIO_new_mem_buf(cert_pem, (int)cert_len);
    if (bio == NULL) {
        err_openssl(err, "system", "responder: BIO_new_mem_buf");
        goto out;
    }
    e.cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    if (e.cert == NULL) {
        err_openssl(err, "parse", "responder: certificate PEM");
        goto out;
    }
    if (X509_check_private_key(e.cert, key) != 1) {
        ERR_clear_error();
        err_set(err, "invalid", "responder: the key does not match the "
            "certificate");
        goto out;
    }
    /* Compute the cached extension data now, in this thread, rather
     * than racing to do it in the handshake. */
    X509_check_purpose(e.cert, -1, 0);
    if (EVP_PKEY_up_ref(key) != 1) {
        err_openssl(err, "system", "responder: EVP_PKEY_up_ref");
        goto out;
    }
    e.key = key;
    e.name = strdup(name);
    if (e.name == NULL) {
        err_set(err, "system", "responder: out of memory");
        goto out;
    }
    rc = entry_put(r, &e, err);
out:
    BIO_free(bio);
    entry_free(&e);
    return rc;
}

int
responder_remove(struct responder *r, const char *name)
{
    char key[NAME_BUF];
    struct luacme_err ignored;
    long i;

    if (r->kind == RESPONDER_TLS_ALPN01) {
        if (identifier_key(name, key, sizeof(key), &ignored) != 0)
            return 0;
        name = key;
    }
    pthread_mutex_lock(&r->mu);
    i = entry_find(r, name);
    if (i >= 0) {
        entry_free(&r->entries[i]);
        r->entries[i] = r->entries[r->n_entries - 1];
        r->n_entries--;
        r->st.entries = r->n_entries;
    }
    pthread_mutex_unlock(&r->mu);
    return i >= 0;
}

void
responder_stats(struct responder *r, struct responder_stats *st)
{
    pthread_mutex_lock(&r->mu);
    *st = r->st;
    pthread_mutex_unlock(&r->mu);
}

int
responder_port(const struct responder *r)
{
    return r->port;
}

enum responder_kind
responder_kind(const struct responder *r)
{
    return r->kind;
}

/*
 * http-01
 */

/* Offset just past the blank line ending the request head, or 0. A bare
 * LF ends lines too (RFC 9112 §2.2 lets a server accept that). */
static size_t
head_end(const char *buf, size_t len)
{
    size_t i;

    for (i = 0; i + 1 < len; i++) {
        if (buf[i] != '\n')
            continue;
        if (buf[i + 1] == '\n')
            return i + 2;
        if (buf[i + 1] == '\r' && i + 2 < len && buf[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

/* Make c->out the response: status, a text/plain body (left out for
 * HEAD) and, for 405, the methods we allow. */
static int
respond(struct conn *c, int status, const char *body, size_t body_len,
    int head)
{
    const char *reason;
    char hdr[256];
    int n;

    switch (status) {
    case 200: reason = "OK"; break;
    case 400: reason = "Bad Request"; break;
    case 404: reason = "Not Found"; break;
    case 405: reason = "Method Not Allowed"; break;
    case 431: reason = "Request Header Fields Too Large"; break;
    default: reason = "HTTP Version Not Supported"; break;
    }
    n = snprintf(hdr, sizeof(hdr), "HTTP/1.1 %d %s\r\n"
        "Content-Type: text/plain\r\nContent-Length: %zu\r\n%s"
        "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        status, reason, body_len,
        status == 405 ? "Allow: GET, HEAD\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof(hdr))
        return -1;
    if (head)
        body_len = 0;
    c->out = malloc((size_t)n + body_len);
    if (c->out == NULL)
        return -1;
    memcpy(c->out, hdr, (size_t)n);
    if (body_len > 0)
        memcpy(c->out + n, body, body_len);
    c->out_len = (size_t)n + body_len;
    c->out_off = 0;
    c->state = ST_WRITE;
    c->events = POLLOUT;
    return 0;
}

static int
respond_text(struct conn *c, int status, const char *text, int head)
{
    return respond(c, status, text, strlen(text), head);
}

/* Is s[0..len) a token (RFC 9110 §5.6.2), as a method must be? */
static int
is_token(const char *s, size_t len)
{
    size_t i;

    if (len == 0)
        return 0;
    for (i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= 32 || ch >= 127 || strchr("\"(),/:;<=>?@[\\]{}", ch))
            return 0;
    }
    return 1;
}

/* Answer the request head in c->in[0..len). Returns 0, or -1 when no
 * memory is left for a response (the connection is then dropped). */
static int
handle_request(struct responder *r, struct conn *c, size_t len)
{
    const char *line = c->in, *sp1, *sp2, *eol, *target, *version;
    size_t line_len, mlen, tlen, vlen, plen;
    const char *path;
    int head = 0, rc;
    long i;

    eol = memchr(line, '\n', len);
    line_len = (size_t)(eol - line);
    if (line_len > 0 && line[line_len - 1] == '\r')
        line_len--;
    sp1 = memchr(line, ' ', line_len);
    sp2 = sp1 ? memchr(sp1 + 1, ' ', line_len - (size_t)(sp1 + 1 - line))
        : NULL;
    if (sp1 == NULL || sp2 == NULL) {
        stat_add(r, &r->st.bad);
        return respond_text(c, 400, "bad request\n", 0);
    }
    mlen = (size_t)(sp1 - line);
    target = sp1 + 1;
    tlen = (size_t)(sp2 - target);
    version = sp2 + 1;
    vlen = line_len - (size_t)(version - line);
    if (!is_token(line, mlen) || tlen == 0 || vlen != 8 ||
        memcmp(version, "HTTP/1.", 7) != 0 ||
        memchr(target, ' ', tlen) != NULL) {
        stat_add(r, &r->st.bad);
        if (vlen >= 5 && memcmp(version, "HTTP/", 5) == 0 &&
            is_token(line, mlen))
            return respond_text(c, 505, "HTTP/1.x only\n", 0);
        return respond_text(c, 400, "bad request\n", 0);
    }
    if (mlen == 4 && memcmp(line, "HEAD", 4) == 0) {
        head = 1;
    } else if (!(mlen == 3 && memcmp(line, "GET", 3) == 0)) {
        stat_add(r, &r->st.bad);
        return respond_text(c, 405, "GET or HEAD only\n", 0);
    }
    /* The absolute form (RFC 9112 §3.2.2) must be accepted too: skip
     * "http://authority". */
    path = target;
    plen = tlen;
    if (tlen >= 7 && strncasecmp(target, "http://", 7) == 0) {
        const char *slash = memchr(target + 7, '/', tlen - 7);
        path = slash ? slash : "/";
        plen = slash ? tlen - (size_t)(slash - target) : 1;
    }
    pthread_mutex_lock(&r->mu);
    r->st.requests++;
    i = -1;
    if (plen > sizeof(CHALLENGE_PREFIX) - 1 &&
        plen - (sizeof(CHALLENGE_PREFIX) - 1) <= LUACME_RESPONDER_MAX_TOKEN &&
        memcmp(path, CHALLENGE_PREFIX, sizeof(CHALLENGE_PREFIX) - 1) == 0) {
        char tok[LUACME_RESPONDER_MAX_TOKEN + 1];
        size_t toklen = plen - (sizeof(CHALLENGE_PREFIX) - 1);
        memcpy(tok, path + sizeof(CHALLENGE_PREFIX) - 1, toklen);
        tok[toklen] = '\0';
        if (token_ok(tok))
            i = entry_find(r, tok);
    }
    if (i >= 0) {
        r->st.served++;
        rc = respond(c, 200, r->entries[i].body, r->entries[i].body_len,
            head);
    } else {
        r->st.not_found++;
        rc = respond_text(c, 404, "not found\n", head);
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

/*
 * tls-alpn-01 callbacks (serving thread, inside SSL_do_handshake)
 */

/* Refuse a ClientHello without ALPN at once: the ALPN callback below is
 * not called when the extension is absent, and such a handshake must
 * not complete (RFC 8737 §3). */
static int
client_hello_cb(SSL *ssl, int *al, void *arg)
{
    struct conn *c = SSL_get_app_data(ssl);
    struct responder *r = arg;
    const unsigned char *ext;
    size_t len;

    if (!c->hello) {
        c->hello = 1;
        stat_add(r, &r->st.requests);
    }
    if (SSL_client_hello_get0_ext(ssl,
        TLSEXT_TYPE_application_layer_protocol_negotiation, &ext, &len) != 1) {
        c->fail = FAIL_ALPN;
        *al = SSL_AD_NO_APPLICATION_PROTOCOL;
        return SSL_CLIENT_HELLO_ERROR;
    }
    return SSL_CLIENT_HELLO_SUCCESS;
}

/* Pick the certificate by SNI. Called also without SNI (OpenSSL 1.1.1
 * and later), which we refuse. */
static int
servername_cb(SSL *ssl, int *al, void *arg)
{
    struct conn *c = SSL_get_app_data(ssl);
    struct responder *r = arg;
    const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    char key[NAME_BUF];
    int ok = 0;
    long i;

    if (sni != NULL && sni_key(sni, key, sizeof(key)) == 0) {
        pthread_mutex_lock(&r->mu);
        i = entry_find(r, key);
        /* SSL_use_* take their own references, so the entry may go
         * once the lock is released. */
        if (i >= 0)
            ok = SSL_use_certificate(ssl, r->entries[i].cert) == 1 &&
                SSL_use_PrivateKey(ssl, r->entries[i].key) == 1;
        pthread_mutex_unlock(&r->mu);
    }
    if (!ok) {
        c->fail = FAIL_NAME;
        *al = SSL_AD_UNRECOGNIZED_NAME;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    return SSL_TLSEXT_ERR_OK;
}

/* Select acme-tls/1, or fail with no_application_protocol. */
static int
alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
    const unsigned char *in, unsigned int inlen, void *arg)
{
    struct conn *c = SSL_get_app_data(ssl);
    unsigned int i = 0, n;

    (void)arg;
    while (i < inlen) {
        n = in[i];
        if (n > inlen - i - 1)
            break;
        if (n == ACME_TLS_ALPN_LEN &&
            memcmp(in + i + 1, ACME_TLS_ALPN, ACME_TLS_ALPN_LEN) == 0) {
            *out = in + i + 1;
            *outlen = (unsigned char)n;
            return SSL_TLSEXT_ERR_OK;
        }
        i += n + 1;
    }
    c->fail = FAIL_ALPN;
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

static int
make_ctx(struct responder *r, struct luacme_err *err)
{
    r->ctx = SSL_CTX_new(TLS_server_method());
    if (r->ctx == NULL)
        return err_openssl(err, "crypto", "responder: SSL_CTX_new");
    if (SSL_CTX_set_min_proto_version(r->ctx, TLS1_2_VERSION) != 1)
        return err_openssl(err, "crypto", "responder: TLS 1.2 minimum");
    /* One handshake per connection and nothing to resume: no tickets,
     * no session cache, no renegotiation. */
    SSL_CTX_set_options(r->ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_num_tickets(r->ctx, 0);
    SSL_CTX_set_session_cache_mode(r->ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_client_hello_cb(r->ctx, client_hello_cb, r);
    SSL_CTX_set_tlsext_servername_callback(r->ctx, servername_cb);
    SSL_CTX_set_tlsext_servername_arg(r->ctx, r);
    SSL_CTX_set_alpn_select_cb(r->ctx, alpn_cb, r);
    return 0;
}

/*
 * Connections (serving thread)
 */

static void
conn_free(struct conn *c)
{
    if (c == NULL)
        return;
    SSL_free(c->ssl);
    if (c->fd >= 0)
        close(c->fd);
    free(c->in);
    free(c->out);
    free(c);
}

/* Has c still no complete request head (http-01) or handshake
 * (tls-alpn-01)? Such a connection may be evicted, and has
 * LUACME_RESPONDER_HEAD_MS to move on. */
static int
conn_waiting(const struct conn *c)
{
    return c->state == ST_READ || c->state == ST_HANDSHAKE;
}

/* When c must be done: HEAD_MS after the accept while it waits for the
 * head, the connection timeout after it otherwise. */
static int64_t
conn_deadline(const struct responder *r, const struct conn *c)
{
    if (conn_waiting(c) && r->timeout_ms > LUACME_RESPONDER_HEAD_MS)
        return c->born + LUACME_RESPONDER_HEAD_MS;
    return c->born + r->timeout_ms;
}

/* Do a and b come from the same address (any port)? */
static int
same_peer(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return 0;
    if (a->ss_family == AF_INET)
        return memcmp(&((const struct sockaddr_in *)a)->sin_addr,
            &((const struct sockaddr_in *)b)->sin_addr,
            sizeof(struct in_addr)) == 0;
    if (a->ss_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
            &((const struct sockaddr_in6 *)b)->sin6_addr,
            sizeof(struct in6_addr)) == 0;
    return 0;
}

/* The oldest evictable connection (waiting, at least IDLE_MIN_MS old),
 * of peer only when peer is not NULL; its index, or -1. Also counts
 * peer's connections into *count when asked. */
static long
oldest_idle(const struct responder *r, const struct sockaddr_storage *peer,
    int64_t now, size_t *count)
{
    long best = -1;
    size_t i;
    const struct conn *c;

    if (count != NULL)
        *count = 0;
    for (i = 0; i < r->n_conns; i++) {
        c = r->conns[i];
        if (peer != NULL && !same_peer(&c->peer, peer))
            continue;
        if (count != NULL)
            (*count)++;
        if (conn_waiting(c) && now - c->born >= LUACME_RESPONDER_IDLE_MIN_MS &&
            (best < 0 || c->born < r->conns[best]->born))
            best = (long)i;
    }
    return best;
}

/* Drop connection i (swap with the last one). */
static void
conn_drop(struct responder *r, size_t i)
{
    conn_free(r->conns[i]);
    r->conns[i] = r->conns[--r->n_conns];
    pthread_mutex_lock(&r->mu);
    r->st.active = (unsigned)r->n_conns;
    pthread_mutex_unlock(&r->mu);
}

static void
start_drain(struct conn *c)
{
    shutdown(c->fd, SHUT_WR);
    c->state = ST_DRAIN;
    c->events = POLLIN;
}

/* Count a failed handshake by what the callbacks saw. */
static void
tls_failed(struct responder *r, struct conn *c)
{
    ERR_clear_error();
    if (!c->hello)
        return;         /* never a ClientHello: a probe or a port scan */
    stat_add(r, c->fail == FAIL_NAME ? &r->st.not_found : &r->st.bad);
}

/* Move c forward as far as it goes without blocking. Returns 1 while it
 * stays open, 0 when it is done (to be dropped). Long: one case per
 * state, so the whole state machine reads in one place. */
static int
conn_step(struct responder *r, struct conn *c)
{
    char sink[4096];
    ssize_t n;
    size_t end;
    int rc;

    for (;;) {
        switch (c->state) {
        case ST_READ:
            n = recv(c->fd, c->in + c->in_len, r->max_request - c->in_len, 0);
            if (n == 0)
                return 0;
            if (n < 0)
                return errno == EAGAIN || errno == EWOULDBLOCK ||
                    errno == EINTR;
            c->in_len += (size_t)n;
            end = head_end(c->in, c->in_len);
            if (end > 0) {
                if (handle_request(r, c, end) != 0)
                    return 0;
            } else if (c->in_len == r->max_request) {
                stat_add(r, &r->st.bad);
                if (respond_text(c, 431, "request head too large\n", 0) != 0)
                    return 0;
            }
            break;
        case ST_WRITE:
            n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
                MSG_NOSIGNAL);
            if (n < 0)
                return errno == EAGAIN || errno == EWOULDBLOCK ||
                    errno == EINTR;
            c->out_off += (size_t)n;
            if (c->out_off == c->out_len)
                start_drain(c);
            break;
        case ST_HANDSHAKE:
            rc = SSL_do_handshake(c->ssl);
            if (rc == 1) {
                stat_add(r, &r->st.served);
                c->state = ST_SHUTDOWN;
                break;
            }
            switch (SSL_get_error(c->ssl, rc)) {
            case SSL_ERROR_WANT_READ:
                c->events = POLLIN;
                return 1;
            case SSL_ERROR_WANT_WRITE:
                c->events = POLLOUT;
                return 1;
            default:
                tls_failed(r, c);
                return 0;
            }
        case ST_SHUTDOWN:
            rc = SSL_shutdown(c->ssl);
            if (rc >= 0) {
                start_drain(c);
                break;
            }
            if (SSL_get_error(c->ssl, rc) == SSL_ERROR_WANT_WRITE) {
                c->events = POLLOUT;
                return 1;
            }
            ERR_clear_error();
            return 0;
        case ST_DRAIN:
            n = recv(c->fd, sink, sizeof(sink), 0);
            if (n == 0)
                return 0;
            if (n < 0)
                return errno == EAGAIN || errno == EWOULDBLOCK ||
                    errno == EINTR;
            c->drained += (size_t)n;
            if (c->drained > LUACME_RESPONDER_DRAIN_MAX)
                return 0;
            break;
        }
    }
}

/* Make room for one more connection from peer: when the responder is
 * full, or peer holds LUACME_RESPONDER_PER_ADDR, evict the oldest idle
 * connection (of peer first). Returns 0 when there is room. */
static int
make_room(struct responder *r, const struct sockaddr_storage *peer,
    int64_t now)
{
    size_t count;
    long i = oldest_idle(r, peer, now, &count);

    if (count >= LUACME_RESPONDER_PER_ADDR && i >= 0) {
        conn_drop(r, (size_t)i);
        stat_add(r, &r->st.evicted);
    }
    if (r->n_conns < (size_t)r->max_conns)
        return 0;
    i = oldest_idle(r, NULL, now, NULL);
    if (i < 0)
        return -1;
    conn_drop(r, (size_t)i);
    stat_add(r, &r->st.evicted);
    return 0;
}

/* Accept what the listening socket has while there is room (see
 * make_room). */
static void
accept_some(struct responder *r, int64_t now)
{
    struct sockaddr_storage peer;
    socklen_t plen;
    struct conn *c;
    int fd;

    while (r->n_conns < (size_t)r->max_conns ||
        oldest_idle(r, NULL, now, NULL) >= 0) {
        /* Close-on-exec at once: the thread running Lua may fork a
         * hook at any moment, and it must not inherit a connection. */
        plen = sizeof(peer);
        memset(&peer, 0, sizeof(peer));
        fd = accept4(r->lfd, (struct sockaddr *)&peer, &plen,
            SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            /* Any other error may repeat at once with the connection
             * still queued (EMFILE, ENOBUFS; ENOSYS or EINVAL from a
             * kernel or emulator without accept4): the listening socket
             * stays readable, and returning straight to poll() would
             * spin on it. Pause instead. */
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                r->accept_pause = now + ACCEPT_PAUSE_MS;
            return;
        }
        if (make_room(r, &peer, now) != 0) {
            close(fd);
            return;
        }
        c = calloc(1, sizeof(*c));
        if (c == NULL) {
            free(c);
            close(fd);
            return;
        }
        c->fd = fd;
        c->born = now;
        c->peer = peer;
        if (r->kind == RESPONDER_HTTP01) {
            c->state = ST_READ;
            c->events = POLLIN;
            c->in = malloc(r->max_request);
        } else {
            c->state = ST_HANDSHAKE;
            c->events = POLLIN;
            c->ssl = SSL_new(r->ctx);
            if (c->ssl != NULL && (SSL_set_fd(c->ssl, fd) != 1 ||
                SSL_set_app_data(c->ssl, c) != 1)) {
                SSL_free(c->ssl);
                c->ssl = NULL;
            }
            if (c->ssl != NULL)
                SSL_set_accept_state(c->ssl);
            ERR_clear_error();
        }
        if (r->kind == RESPONDER_HTTP01 ? c->in == NULL : c->ssl == NULL) {
            conn_free(c);
            continue;
        }
        r->conns[r->n_conns++] = c;
        pthread_mutex_lock(&r->mu);
        r->st.connections++;
        r->st.active = (unsigned)r->n_conns;
        if (r->st.active > r->st.peak)
            r->st.peak = r->st.active;
        pthread_mutex_unlock(&r->mu);
    }
}

static void *
serve(void *arg)
{
    struct responder *r = arg;
    int64_t now, next;
    size_t i, n, base;
    int listening, timeout, rc;
    struct conn *c;

    for (;;) {
        now = now_ms();
        /* Expire first, so the poll timeout below is never negative. */
        for (i = r->n_conns; i-- > 0;) {
            if (conn_deadline(r, r->conns[i]) <= now) {
                if (r->conns[i]->state != ST_DRAIN)
                    stat_add(r, &r->st.timeouts);
                conn_drop(r, i);
            }
        }
        n = 0;
        r->pfds[n].fd = r->wake_r;
        r->pfds[n++].events = POLLIN;
        listening = (r->n_conns < (size_t)r->max_conns ||
            oldest_idle(r, NULL, now, NULL) >= 0) && r->accept_pause <= now;
        if (listening) {
            r->pfds[n].fd = r->lfd;
            r->pfds[n++].events = POLLIN;
        }
        base = n;
        next = -1;
        if (!listening && r->accept_pause > now)
            next = r->accept_pause;
        for (i = 0; i < r->n_conns; i++) {
            c = r->conns[i];
            r->pfds[n].fd = c->fd;
            r->pfds[n++].events = c->events;
            if (next < 0 || conn_deadline(r, c) < next)
                next = conn_deadline(r, c);
            /* Full: wake when the oldest waiting one becomes evictable. */
            if (!listening && r->accept_pause <= now && conn_waiting(c) &&
                c->born + LUACME_RESPONDER_IDLE_MIN_MS < next)
                next = c->born + LUACME_RESPONDER_IDLE_MIN_MS;
        }
        for (i = 0; i < n; i++)
            r->pfds[i].revents = 0;
        timeout = next < 0 ? -1 : next <= now ? 0 : (int)(next - now);
        rc = poll(r->pfds, (nfds_t)n, timeout);
        if (rc < 0 && errno != EINTR)
            break;
        if (rc <= 0)
            continue;
        if (r->pfds[0].revents != 0)
            break;                          /* responder_stop */
        /* Downwards, so dropping (swap with the last) never skips one;
         * connections accepted below are not in pfds yet. */
        for (i = r->n_conns; i-- > 0;) {
            if (r->pfds[base + i].revents == 0)
                continue;
            if (!conn_step(r, r->conns[i]))
                conn_drop(r, i);
        }
        if (listening && r->pfds[1].revents != 0) {
            size_t first = r->n_conns;
            accept_some(r, now_ms());
            /* Most clients have sent their request (or ClientHello)
             * already; try at once rather than after another poll. */
            for (i = r->n_conns; i-- > first;)
                if (!conn_step(r, r->conns[i]))
                    conn_drop(r, i);
        }
    }
    while (r->n_conns > 0)
        conn_drop(r, r->n_conns - 1);
    return NULL;
}

/*
 * Start and stop
 */

/* Bind and listen on host:port (host NULL: every address). Returns the
 * socket, or -1 with errno set and *what naming the failed step. */
static int
listen_on(const char *host, int port, int v6only, const char **what)
{
    struct addrinfo hints, *ai = NULL;
    char serv[8];
    int fd = -1, one = 1, zero = 0, e, rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
    snprintf(serv, sizeof(serv), "%d", port);
    *what = "address";
    rc = getaddrinfo(host, serv, &hints, &ai);
    if (rc != 0) {
        errno = EINVAL;
        return -1;
    }
    *what = "socket";
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK |
        SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0)
        goto fail;
    /* A port in TIME_WAIT from an earlier run (or responder) can be
     * bound again at once. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ai->ai_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6,
        IPV6_V6ONLY, v6only ? &one : &zero, sizeof(one)) != 0)
        goto fail;
    *what = "bind";
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0)
        goto fail;
    *what = "listen";
    if (listen(fd, LUACME_RESPONDER_BACKLOG) != 0)
        goto fail;
    freeaddrinfo(ai);
    return fd;
fail:
    e = errno;
    if (fd >= 0)
        close(fd);
    freeaddrinfo(ai);
    errno = e;
    return -1;
}

static int
bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static int
open_listener(struct responder *r, const char *address, int port,
    struct luacme_err *err)
{
    const char *what, *shown = address;
    int any = address == NULL || address[0] == '\0' ||
        strcmp(address, "*") == 0;
    int e;

    if (any) {
        /* Dual stack: "::" takes IPv4 too (as ::ffff:a.b.c.d). A host
         * without IPv6 gets the IPv4 wildcard instead. */
        shown = "*";
        r->lfd = listen_on("::", port, 0, &what);
        if (r->lfd < 0 && (errno == EAFNOSUPPORT || errno == EADDRNOTAVAIL ||
            errno == EPROTONOSUPPORT))
            r->lfd = listen_on("0.0.0.0", port, 0, &what);
    } else {
        /* "::" asked for by name is dual-stack too; any other IPv6
         * address takes IPv6 only. */
        r->lfd = listen_on(address, port, strcmp(address, "::") != 0, &what);
    }
    if (r->lfd >= 0) {
        r->port = bound_port(r->lfd);
        return r->port < 0 ? err_set(err, "system", "responder: "
            "getsockname: %s", strerror(errno)) : 0;
    }
    e = errno;
    if (strcmp(what, "address") == 0)
        return err_set(err, "invalid", "responder: \"%.64s\" is not a "
            "numeric IPv4 or IPv6 address", shown);
    if (strcmp(what, "bind") == 0 || (strcmp(what, "socket") == 0 &&
        e == EAFNOSUPPORT))
        return err_set(err, "bind", "responder: cannot listen on %.64s "
            "port %d: %s%s", shown, port, strerror(e),
            e == EACCES && port < 1024 ? " (ports below 1024 need root "
            "or CAP_NET_BIND_SERVICE)" : "");
    return err_set(err, "system", "responder: %s: %s", what, strerror(e));
}

static int
make_wake_pipe(struct responder *r, struct luacme_err *err)
{
    int p[2];

    if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0)
        return err_set(err, "system", "responder: pipe: %s",
            strerror(errno));
    r->wake_r = p[0];
    r->wake_w = p[1];
    return 0;
}

/* Free everything of r but the thread (joined before). */
static void
responder_free(struct responder *r)
{
    size_t i;

    for (i = 0; i < r->n_entries; i++)
        entry_free(&r->entries[i]);
    free(r->entries);
    free(r->conns);
    free(r->pfds);
    if (r->lfd >= 0)
        close(r->lfd);
    if (r->wake_r >= 0)
        close(r->wake_r);
    if (r->wake_w >= 0)
        close(r->wake_w);
    SSL_CTX_free(r->ctx);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

int
responder_start(enum responder_kind kind, const struct responder_opts *o,
    struct responder **out, struct luacme_err *err)
{
    struct responder *r = NULL;
    sigset_t all, old;
    int rc = -1, e;

    if (o->port < 0 || o->port > 65535 || o->max_conns < 0 ||
        o->max_conns > LUACME_RESPONDER_MAX_CONNS_CEIL ||
        (o->max_request != 0 &&
        (o->max_request < LUACME_RESPONDER_MAX_REQUEST_MIN ||
        o->max_request > LUACME_RESPONDER_MAX_REQUEST_CEIL)) ||
        o->timeout_ms < 0 || o->timeout_ms > LUACME_RESPONDER_TIMEOUT_MAX_MS)
        return err_set(err, "invalid", "responder: port, max_conns, "
            "max_request or timeout out of range");
    r = calloc(1, sizeof(*r));
    if (r == NULL)
        return err_set(err, "system", "responder: out of memory");
    r->kind = kind;
    r->lfd = r->wake_r = r->wake_w = -1;
    r->max_conns = o->max_conns ? o->max_conns : LUACME_RESPONDER_MAX_CONNS;
    r->max_request = o->max_request ? o->max_request :
        LUACME_RESPONDER_MAX_REQUEST;
    r->timeout_ms = o->timeout_ms ? o->timeout_ms :
        LUACME_RESPONDER_TIMEOUT_MS;
    if (pthread_mutex_init(&r->mu, NULL) != 0) {
        free(r);
        return err_set(err, "system", "responder: pthread_mutex_init");
    }
    r->conns = calloc((size_t)r->max_conns, sizeof(*r->conns));
    r->pfds = calloc((size_t)r->max_conns + 2, sizeof(*r->pfds));
    if (r->conns == NULL || r->pfds == NULL) {
        err_set(err, "system", "responder: out of memory");
        goto out;
    }
    if (kind == RESPONDER_TLS_ALPN01 && make_ctx(r, err) != 0)
        goto out;
    if (make_wake_pipe(r, err) != 0)
        goto out;
    if (open_listener(r, o->address, o->port, err) != 0)
        goto out;
    /* The thread blocks every signal: SIGINT/SIGTERM go to the thread
     * running Lua (whose handler interrupts it), and SIGPIPE from a
     * write to a closed TLS peer only makes that write fail. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    e = pthread_create(&r->thread, NULL, serve, r);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e != 0) {
        err_set(err, "system", "responder: pthread_create: %s",
            strerror(e));
        goto out;
    }
    r->started = 1;
    *out = r;
    r = NULL;
    rc = 0;
out:
    if (r != NULL)
        responder_free(r);
    return rc;
}

void
responder_stop(struct responder *r)
{
    char b = 1;
    ssize_t n;

    if (r == NULL)
        return;
    if (r->started) {
        do
            n = write(r->wake_w, &b, 1);
        while (n < 0 && errno == EINTR);
        pthread_join(r->thread, NULL);
    }
    responder_free(r);
}
