/* http.c without a server: the validators, the checks made before any
 * connection (scheme, method, headers), an interrupt from before the
 * request (not fatal), and a refused connection on a port that is bound but not listening. The transfers
 * themselves are tested against a real server in http_test.lua. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "http.h"

static struct http_client *
client(int allow_http)
{
    struct http_opts o;
    struct http_client *c = NULL;
    struct luacme_err err;

    memset(&o, 0, sizeof(o));
    o.allow_http = allow_http;
    CHECK(http_client_new(&o, &c, &err) == 0);
    return c;
}

/* Request url with method; returns the error kind or "ok". */
static const char *
kind_of(struct http_client *c, const char *method, const char *url,
    const struct http_header *h, size_t nh, const char *body)
{
    struct http_request req;
    struct http_response resp;
    struct luacme_err err;

    memset(&req, 0, sizeof(req));
    req.method = method;
    req.url = url;
    req.headers = h;
    req.nheaders = nh;
    req.body = body;
    req.body_len = body != NULL ? strlen(body) : 0;
    if (http_request(c, &req, &resp, &err) != 0) {
        CHECK(resp.body == NULL && resp.headers == NULL);
        return err.kind;
    }
    http_response_free(&resp);
    return "ok";
}

/* A port on 127.0.0.1 that is bound (so nobody else takes it) but not
 * listening: a connect there is refused at once. */
static int
closed_port(int *fd)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    *fd = socket(AF_INET, SOCK_STREAM, 0);
    if (*fd < 0 || bind(*fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        getsockname(*fd, (struct sockaddr *)&sa, &len) != 0)
        return -1;
    return ntohs(sa.sin_port);
}

int
main(void)
{
    struct http_client *c = client(0), *plain = client(1);
    struct http_stats st;
    struct http_header bad = {"X-A", "a\r\nX-B: b"};
    struct http_header badname = {"X A", "a"};
    char url[64];
    int fd = -1, port;

    CHECK(http_method_ok("GET"));
    CHECK(http_method_ok("POST"));
    CHECK(http_method_ok("ABCDEFGHIJKLMNOP"));
    CHECK(!http_method_ok("ABCDEFGHIJKLMNOPQ"));
    CHECK(!http_method_ok(""));
    CHECK(!http_method_ok("get"));
    CHECK(!http_method_ok("GET "));
    CHECK(!http_method_ok("GET\r\n"));

    CHECK(http_header_ok("Content-Type", "application/jose+json", 21));
    CHECK(http_header_ok("X-Empty", "", 0));
    CHECK(http_header_ok("x!#$%&'*+-.^_`|~9", "v", 1));
    CHECK(!http_header_ok("", "v", 1));
    CHECK(!http_header_ok("X:Y", "v", 1));
    CHECK(!http_header_ok("X Y", "v", 1));
    CHECK(!http_header_ok("X\r", "v", 1));
    CHECK(!http_header_ok("X", "a\rb", 3));
    CHECK(!http_header_ok("X", "a\nb", 3));
    CHECK(!http_header_ok("X", "a\0b", 3));

    /* Refused before libcurl is even asked: no transfer counted. */
    CHECK_STR(kind_of(c, NULL, "http://127.0.0.1:1/", NULL, 0, NULL),
        "protocol");
    CHECK_STR(kind_of(c, NULL, "ftp://127.0.0.1:1/", NULL, 0, NULL),
        "protocol");
    CHECK_STR(kind_of(c, NULL, NULL, NULL, 0, NULL), "protocol");
    CHECK_STR(kind_of(plain, NULL, "ftp://127.0.0.1:1/", NULL, 0, NULL),
        "protocol");
    CHECK_STR(kind_of(c, "get", "https://127.0.0.1:1/", NULL, 0, NULL),
        "protocol");
    CHECK_STR(kind_of(c, "HEAD", "https://127.0.0.1:1/", NULL, 0, "x"),
        "protocol");
    CHECK_STR(kind_of(c, "POST", "https://127.0.0.1:1/", &bad, 1, "x"),
        "protocol");
    CHECK_STR(kind_of(c, "POST", "https://127.0.0.1:1/", &badname, 1,
        "x"), "protocol");
    http_client_stats(c, &st);
    CHECK(st.requests == 0 && st.connects == 0);

    port = closed_port(&fd);
    CHECK(port > 0);
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/", port);
    /* A signal that came BEFORE the request does not stop it: cleanup
     * after Ctrl-C still needs HTTP. It reaches the (refused) port. */
    luacme_interrupted = SIGINT;
    CHECK_STR(kind_of(c, NULL, url, NULL, 0, NULL), "connect");
    luacme_interrupted = 0;
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port);
    CHECK_STR(kind_of(plain, "POST", url, NULL, 0, "x"), "connect");
    http_client_stats(c, &st);
    CHECK(st.requests == 1 && st.connects == 0);

    if (fd >= 0)
        close(fd);
    http_client_free(c);
    http_client_free(plain);
    http_client_free(NULL);
    return check_done();
}
