/*
 * The http-01 and tls-alpn-01 responders over real loopback sockets,
 * with this thread as the client: what is served and refused, the
 * request size, connection count and timeout limits, stop freeing the
 * port, and the TLS handshake rules (ALPN acme-tls/1 only, certificate
 * by SNI, reverse names for IPs). Every client socket has a receive
 * timeout, so a responder bug fails a check instead of hanging.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "check.h"
#include "luacme_limits.h"
#include "responder.h"
#include "x509.h"

#define TOKEN "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"
#define KEYAUTH TOKEN ".9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"
#define PATH "/.well-known/acme-challenge/" TOKEN

/* Seconds a client waits for any one read or write. */
#define CLIENT_TIMEOUT_S 5

static int
connect_to(int family, int port)
{
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    struct timeval tv = {CLIENT_TIMEOUT_S, 0};
    int fd = socket(family, SOCK_STREAM, 0), rc;

    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (family == AF_INET6) {
        memset(&a6, 0, sizeof(a6));
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons((unsigned short)port);
        a6.sin6_addr = in6addr_loopback;
        rc = connect(fd, (struct sockaddr *)&a6, sizeof(a6));
    } else {
        memset(&a4, 0, sizeof(a4));
        a4.sin_family = AF_INET;
        a4.sin_port = htons((unsigned short)port);
        a4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        rc = connect(fd, (struct sockaddr *)&a4, sizeof(a4));
    }
    if (rc != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int
send_all(int fd, const char *s, size_t len)
{
    ssize_t n;

    while (len > 0) {
        n = send(fd, s, len, MSG_NOSIGNAL);
        if (n <= 0)
            return -1;
        s += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Read until the server closes (or the timeout); NUL-terminated. */
static size_t
read_all(int fd, char *buf, size_t size)
{
    size_t len = 0;
    ssize_t n;

    while (len + 1 < size) {
        n = recv(fd, buf + len, size - 1 - len, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    return len;
}

/* One request on a fresh IPv4 connection; the whole response in buf. */
static const char *
exchange(int port, const char *req, char *buf, size_t size)
{
    int fd = connect_to(AF_INET, port);

    buf[0] = '\0';
    if (fd < 0)
        return buf;
    if (send_all(fd, req, strlen(req)) == 0)
        read_all(fd, buf, size);
    close(fd);
    return buf;
}

static int
status_of(const char *resp)
{
    int st = 0;

    if (sscanf(resp, "HTTP/1.1 %d ", &st) != 1)
        return -1;
    return st;
}

static const char *
body_of(const char *resp)
{
    const char *p = strstr(resp, "\r\n\r\n");

    return p ? p + 4 : "";
}

static int64_t
mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait (bounded) until the responder has `active` connections open. */
static int
wait_active(struct responder *r, unsigned active)
{
    struct responder_stats st;
    int64_t end = mono_ms() + CLIENT_TIMEOUT_S * 1000;
    struct timespec pause = {0, 2 * 1000 * 1000};

    for (;;) {
        responder_stats(r, &st);
        if (st.active == active)
            return 1;
        if (mono_ms() > end)
            return 0;
        nanosleep(&pause, NULL);
    }
}

static struct responder *
start(enum responder_kind kind, const char *addr, int port, int max_conns,
    size_t max_request, int timeout_ms)
{
    struct responder_opts o;
    struct responder *r = NULL;
    struct luacme_err err;

    memset(&o, 0, sizeof(o));
    o.address = addr;
    o.port = port;
    o.max_conns = max_conns;
    o.max_request = max_request;
    o.timeout_ms = timeout_ms;
    if (responder_start(kind, &o, &r, &err) != 0) {
        fprintf(stderr, "responder_start: %s\n", err.msg);
        return NULL;
    }
    return r;
}

static void
test_http_basics(void)
{
    struct responder *r = start(RESPONDER_HTTP01, "127.0.0.1", 0, 0, 0, 0);
    struct responder_stats st;
    struct luacme_err err;
    char buf[4096], want[64];
    const char *resp;
    int port;

    CHECK(r != NULL);
    if (r == NULL)
        return;
    port = responder_port(r);
    CHECK(port > 0);
    CHECK(responder_kind(r) == RESPONDER_HTTP01);
    CHECK(responder_http_add(r, TOKEN, KEYAUTH, strlen(KEYAUTH), &err) == 0);

    resp = exchange(port, "GET " PATH " HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "User-Agent: test\r\nAccept: */*\r\n\r\n", buf, sizeof(buf));
    CHECK(status_of(resp) == 200);
    CHECK_STR(body_of(resp), KEYAUTH);
    CHECK(strstr(resp, "\r\nContent-Type: text/plain\r\n") != NULL);
    CHECK(strstr(resp, "\r\nConnection: close\r\n") != NULL);
    snprintf(want, sizeof(want), "\r\nContent-Length: %zu\r\n",
        strlen(KEYAUTH));
    CHECK(strstr(resp, want) != NULL);
    resp = exchange(port, "GET " PATH " HTTP/1.0\r\n\r\n", buf,
        sizeof(buf));
    CHECK(status_of(resp) == 200);
    CHECK_STR(body_of(resp), KEYAUTH);
    /* HEAD: the same headers, no body. */
    resp = exchange(port, "HEAD " PATH " HTTP/1.1\r\nHost: x\r\n\r\n",
        buf, sizeof(buf));
    CHECK(status_of(resp) == 200);
    CHECK(strstr(resp, want) != NULL);
    CHECK_STR(body_of(resp), "");
    /* Bare LF line ends, and the absolute form of the target. */
    resp = exchange(port, "GET " PATH " HTTP/1.1\nHost: x\n\n", buf,
        sizeof(buf));
    CHECK(status_of(resp) == 200);
    CHECK_STR(body_of(resp), KEYAUTH);
    resp = exchange(port, "GET http://a.example" PATH " HTTP/1.1\r\n"
        "Host: a.example\r\n\r\n", buf, sizeof(buf));
    CHECK(status_of(resp) == 200);
    CHECK_STR(body_of(resp), KEYAUTH);

    /* Everything else is 404: other tokens and paths, prefixes,
     * suffixes, queries, traversal. */
    CHECK(status_of(exchange(port, "GET /.well-known/acme-challenge/nope "
        "HTTP/1.1\r\n\r\n", buf, sizeof(buf))) == 404);
    CHECK(status_of(exchange(port, "GET / HTTP/1.1\r\n\r\n", buf,
        sizeof(buf))) == 404);
    CHECK(status_of(exchange(port, "GET /.well-known/acme-challenge/ "
        "HTTP/1.1\r\n\r\n", buf, sizeof(buf))) == 404);
    CHECK(status_of(exchange(port, "GET " PATH "x HTTP/1.1\r\n\r\n", buf,
        sizeof(buf))) == 404);
    CHECK(status_of(exchange(port, "GET " PATH "?a=b HTTP/1.1\r\n\r\n",
        buf, sizeof(buf))) == 404);
    CHECK(status_of(exchange(port, "GET /x" PATH " HTTP/1.1\r\n\r\n", buf,
        sizeof(buf))) == 404);
    CHECK(status_of(exchange(port, "GET /.well-known/acme-challenge/../"
        TOKEN " HTTP/1.1\r\n\r\n", buf, sizeof(buf))) == 404);
    CHECK(status_of(exchange(port, "GET /.well-known/acme-challenge/"
        "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-OA HTTP/1.1\r\n\r\n",
        buf, sizeof(buf))) == 404);          /* tokens are case-sensitive */

    /* Methods and malformed requests. */
    resp = exchange(port, "POST " PATH " HTTP/1.1\r\nContent-Length: 2"
        "\r\n\r\n{}", buf, sizeof(buf));
    CHECK(status_of(resp) == 405);
    CHECK(strstr(resp, "\r\nAllow: GET, HEAD\r\n") != NULL);
    CHECK(status_of(exchange(port, "get " PATH " HTTP/1.1\r\n\r\n", buf,
        sizeof(buf))) == 405);
    CHECK(status_of(exchange(port, "hello\r\n\r\n", buf, sizeof(buf)))
        == 400);
    CHECK(status_of(exchange(port, "GET " PATH "\r\n\r\n", buf,
        sizeof(buf))) == 400);                /* HTTP/0.9 */
    CHECK(status_of(exchange(port, "GET " PATH " HTTP/2.0\r\n\r\n", buf,
        sizeof(buf))) == 505);
    CHECK(status_of(exchange(port, "GET  " PATH " HTTP/1.1\r\n\r\n", buf,
        sizeof(buf))) == 400);
    CHECK(status_of(exchange(port, "G(T " PATH " HTTP/1.1\r\n\r\n", buf,
        sizeof(buf))) == 400);

    /* Replace, then remove. */
    CHECK(responder_http_add(r, TOKEN, "other", 5, &err) == 0);
    CHECK_STR(body_of(exchange(port, "GET " PATH " HTTP/1.1\r\n\r\n", buf,
        sizeof(buf))), "other");
    responder_stats(r, &st);
    CHECK(st.entries == 1);
    CHECK(responder_remove(r, TOKEN) == 1);
    CHECK(responder_remove(r, TOKEN) == 0);
    CHECK(status_of(exchange(port, "GET " PATH " HTTP/1.1\r\n\r\n", buf,
        sizeof(buf))) == 404);

    responder_stats(r, &st);
    CHECK(st.entries == 0);
    CHECK(st.served == 6);
    CHECK(st.not_found == 9);
    CHECK(st.bad == 7);
    CHECK(st.requests == 15);              /* served + not_found */
    CHECK(st.connections == 22);

    /* What add refuses. */
    CHECK(responder_http_add(r, "a/b", "x", 1, &err) == -1);
    CHECK_STR(err.kind, "invalid");
    CHECK(responder_http_add(r, "", "x", 1, &err) == -1);
    CHECK(responder_http_add(r, "..", "x", 1, &err) == -1);
    {
        char tok[LUACME_RESPONDER_MAX_TOKEN + 2];
        static char big[LUACME_RESPONDER_MAX_BODY + 1];
        memset(tok, 'a', sizeof(tok) - 1);
        tok[sizeof(tok) - 1] = '\0';
        CHECK(responder_http_add(r, tok, "x", 1, &err) == -1);
        tok[sizeof(tok) - 2] = '\0';            /* exactly the cap */
        CHECK(responder_http_add(r, tok, "x", 1, &err) == 0);
        CHECK(responder_remove(r, tok) == 1);
        CHECK(responder_http_add(r, "t", big, sizeof(big), &err) == -1);
        CHECK_STR(err.kind, "too_large");
        CHECK(responder_http_add(r, "t", big, sizeof(big) - 1, &err) == 0);
    }
    CHECK(responder_tls_add(r, "a.example", "x", 1, NULL, &err) == -1);
    CHECK_STR(err.kind, "invalid");
    responder_stop(r);
}

/* LUACME_RESPONDER_MAX_ENTRIES tokens fit, one more does not. */
static void
test_http_entries(void)
{
    struct responder *r = start(RESPONDER_HTTP01, "127.0.0.1", 0, 0, 0, 0);
    struct luacme_err err;
    char tok[32];
    int i, ok = 1;

    CHECK(r != NULL);
    if (r == NULL)
        return;
    for (i = 0; i < LUACME_RESPONDER_MAX_ENTRIES; i++) {
        snprintf(tok, sizeof(tok), "t%d", i);
        ok &= responder_http_add(r, tok, "x", 1, &err) == 0;
    }
    CHECK(ok);
    CHECK(responder_http_add(r, "one-more", "x", 1, &err) == -1);
    CHECK_STR(err.kind, "too_large");
    CHECK(responder_http_add(r, "t7", "y", 1, &err) == 0);  /* replace */
    responder_stop(r);
}

static void
test_http_request_size(void)
{
    struct responder *r = start(RESPONDER_HTTP01, "127.0.0.1", 0, 0,
        LUACME_RESPONDER_MAX_REQUEST_MIN, 0);
    struct responder *d = start(RESPONDER_HTTP01, "127.0.0.1", 0, 0, 0, 0);
    struct responder_stats st;
    struct luacme_err err;
    static char req[LUACME_RESPONDER_MAX_REQUEST + 64];
    char buf[1024];
    size_t head;

    CHECK(r != NULL && d != NULL);
    if (r == NULL || d == NULL)
        goto out;
    CHECK(responder_http_add(r, TOKEN, KEYAUTH, strlen(KEYAUTH), &err) == 0);
    CHECK(responder_http_add(d, TOKEN, KEYAUTH, strlen(KEYAUTH), &err) == 0);
    /* A head of exactly max_request bytes is served... */
    head = strlen("GET " PATH " HTTP/1.1\r\nX: \r\n\r\n");
    snprintf(req, sizeof(req), "GET " PATH " HTTP/1.1\r\nX: %0*d\r\n\r\n",
        (int)(LUACME_RESPONDER_MAX_REQUEST_MIN - head), 0);
    CHECK(strlen(req) == LUACME_RESPONDER_MAX_REQUEST_MIN);
    CHECK(status_of(exchange(responder_port(r), req, buf, sizeof(buf)))
        == 200);
    /* ...one more byte is 431, and so is a head that never ends. */
    snprintf(req, sizeof(req), "GET " PATH " HTTP/1.1\r\nX: %0*d\r\n\r\n",
        (int)(LUACME_RESPONDER_MAX_REQUEST_MIN - head + 1), 0);
    CHECK(status_of(exchange(responder_port(r), req, buf, sizeof(buf)))
        == 431);
    /* The default cap: LUACME_RESPONDER_MAX_REQUEST bytes without the
     * blank line. */
    memcpy(req, "GET " PATH " HTTP/1.1\r\n", strlen("GET " PATH
        " HTTP/1.1\r\n"));
    memset(req + strlen("GET " PATH " HTTP/1.1\r\n"), 'x',
        LUACME_RESPONDER_MAX_REQUEST + 10 - strlen("GET " PATH
        " HTTP/1.1\r\n"));
    req[LUACME_RESPONDER_MAX_REQUEST + 10] = '\0';
    CHECK(status_of(exchange(responder_port(d), req, buf, sizeof(buf)))
        == 431);
    responder_stats(d, &st);
    CHECK(st.bad == 1 && st.served == 0);
out:
    responder_stop(r);
    responder_stop(d);
}

/* A client that sends half a request holds one slot and nothing else;
 * the connection timeout closes it. */
/* The number of sockets bound to local port port (the responder's
 * listening socket and the connections it accepted) that are not
 * close-on-exec; -1 when /proc cannot be read. A hook forked by the Lua
 * thread must inherit none of them. */
static int
responder_fds_leaking(int port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int fd, n = 0, seen = 0;

    for (fd = 3; fd < 1024; fd++) {
        len = sizeof(ss);
        if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0 ||
            (ss.ss_family != AF_INET && ss.ss_family != AF_INET6))
            continue;
        if (ntohs(((struct sockaddr_in *)&ss)->sin_port) != port)
            continue;
        seen++;
        if ((fcntl(fd, F_GETFD) & FD_CLOEXEC) == 0)
            n++;
    }
    return seen >= 2 ? n : -1;
}

static void
test_http_slow_client(void)
{
    struct responder *r = start(RESPONDER_HTTP01, "127.0.0.1", 0, 0, 0,
        300);
    struct responder_stats st;
    struct luacme_err err;
    char buf[1024];
    int64_t t0;
    int slow;

    CHECK(r != NULL);
    if (r == NULL)
        return;
    CHECK(responder_http_add(r, TOKEN, KEYAUTH, strlen(KEYAUTH), &err) == 0);
    slow = connect_to(AF_INET, responder_port(r));
    CHECK(slow >= 0);
    CHECK(send_all(slow, "GET /.well-kn", 13) == 0);
    t0 = mono_ms();
    CHECK(wait_active(r, 1));
    CHECK(responder_fds_leaking(responder_port(r)) == 0);
    CHECK_STR(body_of(exchange(responder_port(r), "GET " PATH
        " HTTP/1.1\r\n\r\n", buf, sizeof(buf))), KEYAUTH);
    /* The timeout closes the slow one without an answer. */
    CHECK(read_all(slow, buf, sizeof(buf)) == 0);
    CHECK(mono_ms() - t0 >= 250);
    CHECK(mono_ms() - t0 < CLIENT_TIMEOUT_S * 1000);
    close(slow);
    CHECK(wait_active(r, 0));
    responder_stats(r, &st);
    CHECK(st.timeouts == 1);
    CHECK(st.served == 1);
    responder_stop(r);
}

/* With max_conns busy connections (answered, not yet closed by the
 * client), the next one waits in the listen queue and is served once a
 * slot is free; many at once are all served. Connections that sent
 * nothing are not busy: they are evicted for a newcomer (A#9.5; this
 * test used to hold the slots with such idle connections). */
static void
test_http_conn_limit(void)
{
    struct responder *r = start(RESPONDER_HTTP01, "127.0.0.1", 0, 2, 0, 0);
    struct responder_stats st;
    struct luacme_err err;
    struct pollfd pfd;
    char buf[1024];
    int idle1, idle2, third, fds[40], i, ok;

    CHECK(r != NULL);
    if (r == NULL)
        return;
    CHECK(responder_http_add(r, TOKEN, KEYAUTH, strlen(KEYAUTH), &err) == 0);
    idle1 = connect_to(AF_INET, responder_port(r));
    idle2 = connect_to(AF_INET, responder_port(r));
    CHECK(idle1 >= 0 && idle2 >= 0);
    CHECK(send_all(idle1, "GET " PATH " HTTP/1.1\r\n\r\n",
        strlen("GET " PATH " HTTP/1.1\r\n\r\n")) == 0);
    CHECK(send_all(idle2, "GET " PATH " HTTP/1.1\r\n\r\n",
        strlen("GET " PATH " HTTP/1.1\r\n\r\n")) == 0);
    CHECK(wait_active(r, 2));
    third = connect_to(AF_INET, responder_port(r));
    CHECK(third >= 0);
    CHECK(send_all(third, "GET " PATH " HTTP/1.1\r\n\r\n",
        strlen("GET " PATH " HTTP/1.1\r\n\r\n")) == 0);
    pfd.fd = third;
    pfd.events = POLLIN;
    CHECK(poll(&pfd, 1, 300) == 0);          /* not accepted yet */
    responder_stats(r, &st);
    CHECK(st.connections == 2 && st.active == 2);
    close(idle1);
    CHECK(read_all(third, buf, sizeof(buf)) > 0);
    CHECK_STR(body_of(buf), KEYAUTH);
    close(third);
    close(idle2);
    CHECK(wait_active(r, 0));

    /* 40 clients at once against 2 slots: all served, never more than
     * 2 open on the server. */
    ok = 1;
    for (i = 0; i < 40; i++) {
        fds[i] = connect_to(AF_INET, responder_port(r));
        ok &= fds[i] >= 0 && send_all(fds[i], "GET " PATH " HTTP/1.1\r\n\r\n",
            strlen("GET " PATH " HTTP/1.1\r\n\r\n")) == 0;
    }
    CHECK(ok);
    for (i = 0; i < 40; i++) {
        if (fds[i] < 0)
            continue;
        read_all(fds[i], buf, sizeof(buf));
        ok &= status_of(buf) == 200 && strcmp(body_of(buf), KEYAUTH) == 0;
        close(fds[i]);
    }
    CHECK(ok);
    responder_stats(r, &st);
    CHECK(st.peak == 2);
    CHECK(st.served == 43);
    CHECK(st.evicted == 0);

    /* Two connections that send nothing, older than IDLE_MIN_MS: a
     * newcomer evicts the older one and is served at once. */
    idle1 = connect_to(AF_INET, responder_port(r));
    CHECK(wait_active(r, 1));
    idle2 = connect_to(AF_INET, responder_port(r));
    CHECK(wait_active(r, 2));
    poll(NULL, 0, LUACME_RESPONDER_IDLE_MIN_MS + 50);
    third = connect_to(AF_INET, responder_port(r));
    CHECK(third >= 0);
    CHECK(send_all(third, "GET " PATH " HTTP/1.1\r\n\r\n",
        strlen("GET " PATH " HTTP/1.1\r\n\r\n")) == 0);
    CHECK(read_all(third, buf, sizeof(buf)) > 0);
    CHECK_STR(body_of(buf), KEYAUTH);
    CHECK(read_all(idle1, buf, sizeof(buf)) == 0);  /* the older: closed */
    responder_stats(r, &st);
    CHECK(st.evicted == 1);
    close(third);
    close(idle1);
    close(idle2);
    responder_stop(r);
}

/* Stop closes the listening socket: the port refuses connections and
 * can be bound again at once. A second responder on a used port fails
 * with "bind". */
static void
test_http_stop_and_bind(void)
{
    struct responder *r = start(RESPONDER_HTTP01, "127.0.0.1", 0, 0, 0, 0);
    struct responder *r2 = NULL;
    struct responder_opts o;
    struct luacme_err err;
    int port, fd, idle;

    CHECK(r != NULL);
    if (r == NULL)
        return;
    port = responder_port(r);
    memset(&o, 0, sizeof(o));
    o.address = "127.0.0.1";
    o.port = port;
    CHECK(responder_start(RESPONDER_HTTP01, &o, &r2, &err) == -1);
    CHECK_STR(err.kind, "bind");
    CHECK(strstr(err.msg, "in use") != NULL);
    /* A client still connected does not keep stop from finishing. */
    idle = connect_to(AF_INET, port);
    CHECK(idle >= 0);
    CHECK(wait_active(r, 1));
    responder_stop(r);
    fd = connect_to(AF_INET, port);
    CHECK(fd < 0);
    if (fd >= 0)
        close(fd);
    if (idle >= 0)
        close(idle);
    r = NULL;
    CHECK(responder_start(RESPONDER_HTTP01, &o, &r, &err) == 0);
    responder_stop(r);

    o.address = "localhost";
    CHECK(responder_start(RESPONDER_HTTP01, &o, &r, &err) == -1);
    CHECK_STR(err.kind, "invalid");
    o.address = "192.0.2.1";                   /* not ours */
    o.port = 0;
    CHECK(responder_start(RESPONDER_HTTP01, &o, &r, &err) == -1);
    CHECK_STR(err.kind, "bind");
    o.address = "127.0.0.1";
    o.port = 65536;
    CHECK(responder_start(RESPONDER_HTTP01, &o, &r, &err) == -1);
    CHECK_STR(err.kind, "invalid");
    o.port = 0;
    o.max_request = 10;
    CHECK(responder_start(RESPONDER_HTTP01, &o, &r, &err) == -1);
    CHECK_STR(err.kind, "invalid");
    responder_stop(NULL);
}

/* "*" listens on every address: IPv4 and, where the host has IPv6,
 * IPv6 too (one dual-stack socket). */
static void
test_http_any_address(void)
{
    struct responder *r = start(RESPONDER_HTTP01, "*", 0, 0, 0, 0);
    struct luacme_err err;
    char buf[1024];
    int fd;

    CHECK(r != NULL);
    if (r == NULL)
        return;
    CHECK(responder_http_add(r, TOKEN, KEYAUTH, strlen(KEYAUTH), &err) == 0);
    CHECK_STR(body_of(exchange(responder_port(r), "GET " PATH
        " HTTP/1.1\r\n\r\n", buf, sizeof(buf))), KEYAUTH);
    fd = connect_to(AF_INET6, responder_port(r));
    if (fd >= 0) {
        CHECK(send_all(fd, "GET " PATH " HTTP/1.1\r\n\r\n",
            strlen("GET " PATH " HTTP/1.1\r\n\r\n")) == 0);
        read_all(fd, buf, sizeof(buf));
        CHECK_STR(body_of(buf), KEYAUTH);
        close(fd);
    } else {
        printf("note: no IPv6 loopback, dual-stack half not checked\n");
    }
    responder_stop(r);
}

/*
 * tls-alpn-01
 */

struct tls_result {
    int ok;                 /* handshake completed */
    unsigned long reason;   /* ERR_GET_REASON of the failure */
    char alpn[32];
    X509 *peer;
    int closed_clean;       /* server sent close_notify, no data */
};

/* Handshake with sni (NULL: none) offering alpn (wire format, NULL:
 * none), TLS versions min..max. */
static void
tls_try(int port, const char *sni, const char *alpn, size_t alpn_len,
    int minv, int maxv, struct tls_result *res)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = NULL;
    const unsigned char *sel;
    unsigned int sel_len;
    char b;
    int fd = connect_to(AF_INET, port), rc;

    memset(res, 0, sizeof(*res));
    if (ctx == NULL || fd < 0)
        goto out;
    SSL_CTX_set_min_proto_version(ctx, minv);
    SSL_CTX_set_max_proto_version(ctx, maxv);
    ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (sni != NULL)
        SSL_set_tlsext_host_name(ssl, sni);
    if (alpn != NULL)
        SSL_set_alpn_protos(ssl, (const unsigned char *)alpn,
            (unsigned int)alpn_len);
    ERR_clear_error();
    rc = SSL_connect(ssl);
    if (rc != 1) {
        res->reason = ERR_GET_REASON(ERR_peek_error());
        goto out;
    }
    res->ok = 1;
    SSL_get0_alpn_selected(ssl, &sel, &sel_len);
    if (sel_len < sizeof(res->alpn)) {
        memcpy(res->alpn, sel, sel_len);
        res->alpn[sel_len] = '\0';
    }
    res->peer = SSL_get1_peer_certificate(ssl);
    rc = SSL_read(ssl, &b, 1);
    res->closed_clean = rc <= 0 &&
        SSL_get_error(ssl, rc) == SSL_ERROR_ZERO_RETURN;
out:
    ERR_clear_error();
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    if (fd >= 0)
        close(fd);
}

#define ALPN_ACME "\x0a" "acme-tls/1"
#define ALPN_H2 "\x02" "h2"
#define ALPN_BOTH "\x02" "h2" "\x0a" "acme-tls/1" "\x08" "http/1.1"

static X509 *
pem_cert(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);

    BIO_free(b);
    return x;
}

static void
test_tls(void)
{
    struct responder *r = start(RESPONDER_TLS_ALPN01, "127.0.0.1", 0, 0, 0,
        0);
    struct responder_stats st;
    struct luacme_err err;
    struct tls_result res;
    EVP_PKEY *k1 = NULL, *k2 = NULL;
    char *pem1 = NULL, *pem2 = NULL;
    X509 *c1 = NULL, *c2 = NULL;
    int port;

    CHECK(r != NULL);
    if (r == NULL)
        return;
    port = responder_port(r);
    CHECK(x509_tls_alpn01("a.example", KEYAUTH, strlen(KEYAUTH), &k1, &pem1,
        &err) == 0);
    CHECK(x509_tls_alpn01("127.0.0.1", KEYAUTH, strlen(KEYAUTH), &k2, &pem2,
        &err) == 0);
    if (pem1 == NULL || pem2 == NULL)
        goto out;
    c1 = pem_cert(pem1);
    c2 = pem_cert(pem2);
    CHECK(responder_tls_add(r, "A.Example.", pem1, strlen(pem1), k1,
        &err) == 0);
    CHECK(responder_tls_add(r, "127.0.0.1", pem2, strlen(pem2), k2,
        &err) == 0);

    /* The name, in any case, with or without the trailing dot; TLS 1.2
     * and 1.3; acme-tls/1 among other protocols. */
    tls_try(port, "a.example", ALPN_ACME, sizeof(ALPN_ACME) - 1,
        TLS1_3_VERSION, TLS1_3_VERSION, &res);
    CHECK(res.ok);
    CHECK_STR(res.alpn, "acme-tls/1");
    CHECK(res.peer != NULL && X509_cmp(res.peer, c1) == 0);
    CHECK(res.closed_clean);
    X509_free(res.peer);
    tls_try(port, "A.EXAMPLE.", ALPN_BOTH, sizeof(ALPN_BOTH) - 1,
        TLS1_2_VERSION, TLS1_2_VERSION, &res);
    CHECK(res.ok);
    CHECK_STR(res.alpn, "acme-tls/1");
    CHECK(res.peer != NULL && X509_cmp(res.peer, c1) == 0);
    CHECK(res.closed_clean);
    X509_free(res.peer);
    /* The IP by its reverse name, without and with the trailing dot. */
    tls_try(port, "1.0.0.127.in-addr.arpa", ALPN_ACME,
        sizeof(ALPN_ACME) - 1, TLS1_2_VERSION, TLS1_3_VERSION, &res);
    CHECK(res.ok);
    CHECK(res.peer != NULL && X509_cmp(res.peer, c2) == 0);
    X509_free(res.peer);
    tls_try(port, "1.0.0.127.in-addr.arpa.", ALPN_ACME,
        sizeof(ALPN_ACME) - 1, TLS1_2_VERSION, TLS1_3_VERSION, &res);
    CHECK(res.ok);
    CHECK(res.peer != NULL && X509_cmp(res.peer, c2) == 0);
    X509_free(res.peer);

    /* No ALPN, or only other protocols: no_application_protocol. */
    tls_try(port, "a.example", NULL, 0, TLS1_2_VERSION, TLS1_3_VERSION,
        &res);
    CHECK(!res.ok);
    CHECK(res.reason == SSL_R_TLSV1_ALERT_NO_APPLICATION_PROTOCOL);
    tls_try(port, "a.example", ALPN_H2, sizeof(ALPN_H2) - 1, TLS1_2_VERSION,
        TLS1_2_VERSION, &res);
    CHECK(!res.ok);
    CHECK(res.reason == SSL_R_TLSV1_ALERT_NO_APPLICATION_PROTOCOL);
    /* Unknown SNI, no SNI, the IP itself as SNI: unrecognized_name. */
    tls_try(port, "b.example", ALPN_ACME, sizeof(ALPN_ACME) - 1,
        TLS1_2_VERSION, TLS1_3_VERSION, &res);
    CHECK(!res.ok);
    CHECK(res.reason == SSL_R_TLSV1_UNRECOGNIZED_NAME);
    tls_try(port, NULL, ALPN_ACME, sizeof(ALPN_ACME) - 1, TLS1_2_VERSION,
        TLS1_3_VERSION, &res);
    CHECK(!res.ok);
    CHECK(res.reason == SSL_R_TLSV1_UNRECOGNIZED_NAME);
    tls_try(port, "x.a.example", ALPN_ACME, sizeof(ALPN_ACME) - 1,
        TLS1_2_VERSION, TLS1_3_VERSION, &res);
    CHECK(!res.ok);
    /* Below TLS 1.2: refused. */
    tls_try(port, "a.example", ALPN_ACME, sizeof(ALPN_ACME) - 1,
        TLS1_VERSION, TLS1_1_VERSION, &res);
    CHECK(!res.ok);
    responder_stats(r, &st);
    CHECK(st.served == 4);
    CHECK(st.not_found == 3);

    /* Removed names are unknown; remove normalises like add. */
    CHECK(responder_remove(r, "a.example") == 1);
    CHECK(responder_remove(r, "a.example") == 0);
    tls_try(port, "a.example", ALPN_ACME, sizeof(ALPN_ACME) - 1,
        TLS1_2_VERSION, TLS1_3_VERSION, &res);
    CHECK(!res.ok);
    CHECK(res.reason == SSL_R_TLSV1_UNRECOGNIZED_NAME);
    CHECK(responder_remove(r, "127.0.0.1") == 1);
    responder_stats(r, &st);
    CHECK(st.entries == 0);

    /* What add refuses. */
    CHECK(responder_tls_add(r, "a.example", pem1, strlen(pem1), k2,
        &err) == -1);
    CHECK_STR(err.kind, "invalid");
    CHECK(responder_tls_add(r, "a.example", "junk", 4, k1, &err) == -1);
    CHECK_STR(err.kind, "parse");
    CHECK(responder_tls_add(r, "*.a.example", pem1, strlen(pem1), k1,
        &err) == -1);
    CHECK_STR(err.kind, "invalid");
    CHECK(responder_tls_add(r, "a b", pem1, strlen(pem1), k1, &err) == -1);
    CHECK(responder_http_add(r, "tok", "x", 1, &err) == -1);
    CHECK_STR(err.kind, "invalid");
    /* IPv6 by its ip6.arpa name; the key was up-ref'd, so freeing ours
     * first does not matter. */
    CHECK(responder_tls_add(r, "::1", pem2, strlen(pem2), k2, &err) == 0);
    EVP_PKEY_free(k2);
    k2 = NULL;
    tls_try(port, "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0."
        "0.0.0.0.0.ip6.arpa", ALPN_ACME, sizeof(ALPN_ACME) - 1,
        TLS1_2_VERSION, TLS1_3_VERSION, &res);
    CHECK(res.ok);
    X509_free(res.peer);
    /* A plain-HTTP client gets nothing and is not counted as served. */
    {
        char buf[256];
        exchange(port, "GET / HTTP/1.1\r\n\r\n", buf, sizeof(buf));
        CHECK(strncmp(buf, "HTTP", 4) != 0);
    }
out:
    responder_stop(r);
    X509_free(c1);
    X509_free(c2);
    EVP_PKEY_free(k1);
    EVP_PKEY_free(k2);
    free(pem1);
    free(pem2);
}

/* Many handshakes at once (Pebble makes 3 per challenge): all complete. */
static void
test_tls_parallel(void)
{
    struct responder *r = start(RESPONDER_TLS_ALPN01, "127.0.0.1", 0, 4, 0,
        0);
    struct responder_stats st;
    struct luacme_err err;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl[12];
    int fd[12], done[12], i, left, rc, ok = 1;
    EVP_PKEY *k = NULL;
    char *pem = NULL;

    memset(ssl, 0, sizeof(ssl));
    CHECK(r != NULL && ctx != NULL);
    if (r == NULL || ctx == NULL)
        goto out;
    CHECK(x509_tls_alpn01("p.example", KEYAUTH, strlen(KEYAUTH), &k, &pem,
        &err) == 0);
    CHECK(responder_tls_add(r, "p.example", pem, strlen(pem), k, &err) == 0);
    /* Non-blocking clients, stepped round-robin, so all 12 are in
     * flight at once against 4 server slots. */
    for (i = 0; i < 12; i++) {
        fd[i] = connect_to(AF_INET, responder_port(r));
        done[i] = 0;
        ssl[i] = SSL_new(ctx);
        SSL_set_fd(ssl[i], fd[i]);
        SSL_set_tlsext_host_name(ssl[i], "p.example");
        SSL_set_alpn_protos(ssl[i], (const unsigned char *)ALPN_ACME,
            sizeof(ALPN_ACME) - 1);
        SSL_set_connect_state(ssl[i]);
        {
            int fl = fcntl(fd[i], F_GETFL);
            fcntl(fd[i], F_SETFL, fl | O_NONBLOCK);
        }
    }
    left = 12;
    {
        int64_t end = mono_ms() + CLIENT_TIMEOUT_S * 1000;
        while (left > 0 && mono_ms() < end) {
            struct pollfd p[12];
            int n = 0;
            for (i = 0; i < 12; i++) {
                if (done[i])
                    continue;
                rc = SSL_do_handshake(ssl[i]);
                if (rc == 1) {
                    /* Hang up at once, as Pebble does: the server slot
                     * is free once we close. */
                    done[i] = 1;
                    left--;
                    SSL_free(ssl[i]);
                    ssl[i] = NULL;
                    close(fd[i]);
                    fd[i] = -1;
                    continue;
                }
                rc = SSL_get_error(ssl[i], rc);
                if (rc != SSL_ERROR_WANT_READ && rc != SSL_ERROR_WANT_WRITE) {
                    done[i] = -1;
                    left--;
                    continue;
                }
                p[n].fd = fd[i];
                p[n++].events = rc == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
            }
            if (n > 0)
                poll(p, (nfds_t)n, 100);
        }
    }
    for (i = 0; i < 12; i++)
        ok &= done[i] == 1;
    CHECK(ok);
    for (i = 0; i < 12; i++) {
        SSL_free(ssl[i]);
        if (fd[i] >= 0)
            close(fd[i]);
    }
    /* The server counts a handshake when it reads our Finished, which
     * may be after we saw its Finished. */
    {
        int64_t end = mono_ms() + CLIENT_TIMEOUT_S * 1000;
        struct timespec pause = {0, 2 * 1000 * 1000};
        do {
            responder_stats(r, &st);
            if (st.served == 12)
                break;
            nanosleep(&pause, NULL);
        } while (mono_ms() < end);
    }
    CHECK(st.served == 12);
    CHECK(st.peak <= 4);
out:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    responder_stop(r);
    EVP_PKEY_free(k);
    free(pem);
}

int
main(void)
{
    test_http_basics();
    test_http_entries();
    test_http_request_size();
    test_http_slow_client();
    test_http_conn_limit();
    test_http_stop_and_bind();
    test_http_any_address();
    test_tls();
    test_tls_parallel();
    return check_done();
}
