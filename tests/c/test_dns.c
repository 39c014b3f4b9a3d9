/* dns_query against a one-shot UDP server on 127.0.0.1 (a thread here),
 * which answers every question with one TXT record "hello". Checks the
 * answer, and that a signal from before the query (Ctrl-C already being
 * handled, a hook cleaning up) does not turn it into "interrupted". */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "dns.h"

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
    return check_done();
}
