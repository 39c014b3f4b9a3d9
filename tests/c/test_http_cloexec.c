/* The TCP connection libcurl keeps open between requests must be
 * close-on-exec: a hook program spawned meanwhile (core.spawn, or a
 * user's io.popen) must not inherit it and hold the server's end open.
 * A tiny keep-alive HTTP/1.1 server on 127.0.0.1 runs in a thread; after
 * one request, every IPv4/IPv6 socket of the process is checked. */
#define _GNU_SOURCE                 /* accept4, SO_DOMAIN */

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "http.h"

static int lfd = -1;

/* Answer one request with "ok", then wait until the client closes. */
static void *
serve(void *arg)
{
    static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
        "Content-Type: text/plain\r\n\r\nok";
    char buf[4096];
    size_t got = 0;
    ssize_t n;
    int fd;

    (void)arg;
    fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return NULL;
    while (got < sizeof(buf) - 1) {
        n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
        buf[got] = '\0';
        if (strstr(buf, "\r\n\r\n") != NULL) {
            if (send(fd, resp, sizeof(resp) - 1, MSG_NOSIGNAL) < 0)
                break;
            /* Keep the connection: read until the client closes it. */
            while (recv(fd, buf, sizeof(buf), 0) > 0)
                ;
            break;
        }
    }
    close(fd);
    return NULL;
}

/* Count the IPv4/IPv6 sockets of this process, and those of them that
 * are not close-on-exec. */
static void
inet_sockets(int *total, int *leaky)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    struct stat st;
    int fd, dom;
    socklen_t len;

    *total = *leaky = 0;
    if (d == NULL)
        return;
    while ((de = readdir(d)) != NULL) {
        fd = atoi(de->d_name);
        if (de->d_name[0] == '.' || fd == dirfd(d) || fd == lfd)
            continue;
        len = sizeof(dom);
        if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode) ||
            getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &len) != 0 ||
            (dom != AF_INET && dom != AF_INET6))
            continue;
        (*total)++;
        if ((fcntl(fd, F_GETFD) & FD_CLOEXEC) == 0) {
            (*leaky)++;
            fprintf(stderr, "fd %d: an inet socket without FD_CLOEXEC\n",
                fd);
        }
    }
    closedir(d);
}

int
main(void)
{
    struct sockaddr_in sa;
    socklen_t slen = sizeof(sa);
    struct http_opts o;
    struct http_client *c = NULL;
    struct http_request req;
    struct http_response resp;
    struct http_stats stats;
    struct luacme_err err;
    pthread_t th;
    char url[64];
    int total, leaky;

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(lfd >= 0);
    CHECK(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    CHECK(listen(lfd, 4) == 0);
    CHECK(getsockname(lfd, (struct sockaddr *)&sa, &slen) == 0);
    CHECK(pthread_create(&th, NULL, serve, NULL) == 0);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", ntohs(sa.sin_port));

    memset(&o, 0, sizeof(o));
    o.allow_http = 1;
    CHECK(http_client_new(&o, &c, &err) == 0);
    memset(&req, 0, sizeof(req));
    req.url = url;
    CHECK(http_request(c, &req, &resp, &err) == 0);
    CHECK(resp.status == 200);
    CHECK(resp.body_len == 2 && memcmp(resp.body, "ok", 2) == 0);
    http_response_free(&resp);
    http_client_stats(c, &stats);
    CHECK(stats.connects == 1);

    /* The client's connection and the server thread's end, both kept
     * open now; neither may leak into a child. */
    inet_sockets(&total, &leaky);
    CHECK(total == 2);
    CHECK(leaky == 0);

    http_client_free(c);            /* closes the connection */
    pthread_join(th, NULL);
    close(lfd);
    return check_done();
}
