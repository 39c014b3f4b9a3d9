/* dns_query against a one-shot UDP server on 127.0.0.1 (a thread here),
 * which answers every question with one TXT record "hello". Checks the
 * answer, and that a signal from before the query (Ctrl-C already being
 * handled, a hook cleaning up) does not turn it into "interrupted".
 * Then the hard bound (A#9.4): a "lame" server that answers NOERROR with
 * no answer and neither AA nor RA, after a reply with a wrong id (as
 * pebble-challtestsrv does; glibc's res_nsend looped on it at 100 % CPU
 * forever), must give a result within the timeout; a silent server and
 * a Ctrl-C during the query must give "interrupted" at once. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "dns.h"
#include "mono.h"

static int ufd = -1;

/* Answer each query: the question copied, one TXT record appended. */
static void *
serve(void *arg)
{
    static const unsigned char rr[] = {
        0xc0, 0x0c,                 /* the question's name */
        0x00, 0x10, 0x00, 0x01,     /* TXT, IN */
        0x00, 0x00, 0x00, 0x3c,     /* TTL 60 */
        0x00, 0x06, 0x05, 'h', 'e', 'l', 'l', 'o'
    };
    unsigned char buf[512];
    struct sockaddr_storage from;
    socklen_t flen;
    ssize_t n;
    int i;

    (void)arg;
    for (i = 0; i < 2; i++) {
        flen = sizeof(from);
        n = recvfrom(ufd, buf, sizeof(buf) - sizeof(rr), 0,
            (struct sockaddr *)&from, &flen);
        if (n < 12)
            return NULL;
        buf[2] = 0x81;              /* QR, RD */
        buf[3] = 0x80;              /* RA, NOERROR */
        buf[6] = 0;
        buf[7] = 1;                 /* ANCOUNT 1 */
        buf[8] = buf[9] = buf[10] = buf[11] = 0;
        memcpy(buf + n, rr, sizeof(rr));
        if (sendto(ufd, buf, (size_t)n + sizeof(rr), 0,
            (struct sockaddr *)&from, flen) < 0)
            return NULL;
    }
    return NULL;
}

static int lamefd = -1, silentfd = -1;

/* Answer every query twice: first with a wrong id, then NOERROR, no
 * records, flags QR only. Runs until the socket is shut down. */
static void *
serve_lame(void *arg)
{
    unsigned char buf[512];
    struct sockaddr_storage from;
    socklen_t flen;
    ssize_t n;

    (void)arg;
    for (;;) {
        flen = sizeof(from);
        n = recvfrom(lamefd, buf, sizeof(buf), 0, (struct sockaddr *)&from,
            &flen);
        if (n < 12)
            return NULL;
        buf[2] = 0x80;              /* QR; no AA, no RD */
        buf[3] = 0x00;              /* no RA, NOERROR */
        buf[6] = buf[7] = buf[8] = buf[9] = buf[10] = buf[11] = 0;
        buf[0] ^= 0xff;             /* another query's reply */
        (void)sendto(lamefd, buf, (size_t)n, 0, (struct sockaddr *)&from,
            flen);
        buf[0] ^= 0xff;
        if (sendto(lamefd, buf, (size_t)n, 0, (struct sockaddr *)&from,
            flen) < 0)
            return NULL;
    }
}

/* Ctrl-C 300 ms into the query. */
static void *
interrupt_soon(void *arg)
{
    struct timespec ts = { 0, 300 * 1000 * 1000 };

    (void)arg;
    nanosleep(&ts, NULL);
    luacme_interrupted = SIGINT;
    return NULL;
}

/* A UDP socket on 127.0.0.1; its "IP:PORT" into server. */
static int
udp_socket(char *server, size_t size)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int fd;

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK(fd >= 0);
    CHECK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&sa, &len) == 0);
    snprintf(server, size, "127.0.0.1:%d", ntohs(sa.sin_port));
    return fd;
}

/* Ask server for a TXT with timeout_s; the kind ("ok" for a result) and
 * the seconds it took in *took. */
static const char *
ask_timed(const char *server, int timeout_s, double *took,
    struct dns_result **out)
{
    struct dns_query_opts o;
    struct dns_result *res = NULL;
    struct luacme_err err;
    double t0 = mono_now();
    int rc;

    memset(&o, 0, sizeof(o));
    o.server = server;
    o.timeout_s = timeout_s;
    rc = dns_query("_acme-challenge.x.test.", 16, &o, &res, &err);
    *took = mono_now() - t0;
    if (rc != 0)
        return err.kind;
    *out = res;
    return "ok";
}

static void
check_bounds(void)
{
    char lame[32], silent[32];
    pthread_t th, ti;
    struct dns_result *res = NULL;
    double took;

    lamefd = udp_socket(lame, sizeof(lame));
    silentfd = udp_socket(silent, sizeof(silent));
    CHECK(pthread_create(&th, NULL, serve_lame, NULL) == 0);

    /* The lame answer is an answer: NOERROR, no records, no AA, no RA;
     * what to make of it is the caller's business. */
    CHECK_STR(ask_timed(lame, 2, &took, &res), "ok");
    CHECK(took < 2.5);
    if (res != NULL) {
        CHECK(res->rcode == 0);
        CHECK(res->n[DNS_ANSWER] == 0);
        CHECK(res->aa == 0 && res->ra == 0);
        dns_result_free(res);
        res = NULL;
    }

    /* Silence: a timeout within the timeout (plus scheduling slack). */
    CHECK_STR(ask_timed(silent, 1, &took, &res), "timeout");
    CHECK(took >= 0.9 && took < 1.5);

    /* Ctrl-C during the query ends it at once. */
    luacme_interrupted = 0;
    CHECK(pthread_create(&ti, NULL, interrupt_soon, NULL) == 0);
    CHECK_STR(ask_timed(silent, 10, &took, &res), "interrupted");
    CHECK(took < 1.5);
    pthread_join(ti, NULL);
    luacme_interrupted = 0;

    shutdown(lamefd, SHUT_RDWR);
    close(lamefd);
    pthread_join(th, NULL);
    close(silentfd);
}

/* Ask for the TXT of name; returns the error kind or "ok" (and checks
 * the record). */
static const char *
ask(const char *server)
{
    struct dns_query_opts o;
    struct dns_result *res = NULL;
    struct luacme_err err;

    memset(&o, 0, sizeof(o));
    o.server = server;
    o.timeout_s = 5;
    o.recurse = 1;
    if (dns_query("_acme-challenge.example.test", 16, &o, &res, &err) != 0)
        return err.kind;
    CHECK(res->rcode == 0);
    CHECK(res->n[DNS_ANSWER] == 1);
    if (res->n[DNS_ANSWER] == 1) {
        CHECK_STR(res->rr[DNS_ANSWER][0].name,
            "_acme-challenge.example.test.");
        CHECK(res->rr[DNS_ANSWER][0].len == 5);
        CHECK_STR(res->rr[DNS_ANSWER][0].data, "hello");
    }
    dns_result_free(res);
    return "ok";
}

int
main(void)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    pthread_t th;
    char server[32];

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ufd = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK(ufd >= 0);
    CHECK(bind(ufd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    CHECK(getsockname(ufd, (struct sockaddr *)&sa, &len) == 0);
    snprintf(server, sizeof(server), "127.0.0.1:%d", ntohs(sa.sin_port));
    CHECK(pthread_create(&th, NULL, serve, NULL) == 0);

    CHECK_STR(ask(server), "ok");
    /* Ctrl-C came before: the query still runs (cleanup needs it). */
    luacme_interrupted = SIGINT;
    CHECK_STR(ask(server), "ok");
    luacme_interrupted = 0;

    pthread_join(th, NULL);
    close(ufd);

    /* A hang is a failure, not a stuck test run. */
    alarm(30);
    check_bounds();
    return check_done();
}
