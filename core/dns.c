/*
 * DNS queries; see dns.h. libresolv builds the query (res_nmkquery) and
 * walks the reply (ns_initparse, ns_parserr, ns_name_uncompress); the
 * exchange itself is ours. glibc's res_nsend has no wall-clock bound: a
 * server answering NOERROR with no answer and neither AA nor RA (as
 * pebble-challtestsrv does) made it loop at 100 % CPU forever, ignoring
 * the timeout and Ctrl-C. Here every wait is a poll() against one
 * deadline, in ticks short enough to notice luacme_interrupted; a reply
 * counts only when it matches the query (dns_reply_match), and a
 * truncated one is asked again over TCP within the same deadline.
 * What is left is choosing the servers, mapping failures to kinds, and
 * the rdata of the types the propagation check reads, each
 * bounds-checked against its record (tests/fuzz/fuzz_dns.c).
 */
#define _DEFAULT_SOURCE             /* u_char & co. for <resolv.h> */

#include "dns.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <resolv.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "luacme_limits.h"
#include "mono.h"

/* How often a wait wakes to look at luacme_interrupted. */
#define DNS_TICK_MS 100

static const struct {
    unsigned code;
    const char *name;
} types[] = {
    { ns_t_a, "A" }, { ns_t_ns, "NS" }, { ns_t_cname, "CNAME" },
    { ns_t_soa, "SOA" }, { ns_t_ptr, "PTR" }, { ns_t_mx, "MX" },
    { ns_t_txt, "TXT" }, { ns_t_aaaa, "AAAA" }, { ns_t_caa, "CAA" },
};

static const char *const rcodes[] = {
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED",
    "YXDOMAIN", "YXRRSET", "NXRRSET", "NOTAUTH", "NOTZONE",
};

const char *
dns_type_name(unsigned type, char *buf, size_t size)
{
    size_t i;

    for (i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (types[i].code == type)
            return types[i].name;
    snprintf(buf, size, "TYPE%u", type);
    return buf;
}

unsigned
dns_type_code(const char *name)
{
    size_t i;

    for (i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (strcmp(types[i].name, name) == 0)
            return types[i].code;
    return 0;
}

const char *
dns_rcode_name(int rcode, char *buf, size_t size)
{
    if (rcode >= 0 && (size_t)rcode < sizeof(rcodes) / sizeof(rcodes[0]))
        return rcodes[rcode];
    snprintf(buf, size, "RCODE%d", rcode);
    return buf;
}

static void
rr_clear(struct dns_rr *rr)
{
    free(rr->name);
    free(rr->data);
    free(rr->rname);
}

void
dns_result_free(struct dns_result *res)
{
    size_t s, i;

    if (res == NULL)
        return;
    for (s = 0; s < 3; s++) {
        for (i = 0; i < res->n[s]; i++)
            rr_clear(&res->rr[s][i]);
        free(res->rr[s]);
    }
    free(res);
}

/* A malloc'd copy of len bytes plus a NUL, or NULL. */
static char *
dup_bytes(const void *p, size_t len)
{
    char *s = malloc(len + 1);

    if (s == NULL)
        return NULL;
    if (len > 0)
        memcpy(s, p, len);
    s[len] = '\0';
    return s;
}

/* A malloc'd absolute name: libresolv gives "example.test" (the root as
 * "" or "."); we add the trailing dot. */
static char *
absolute(const char *name)
{
    size_t len = strlen(name);
    char *s;

    if (len == 0 || strcmp(name, ".") == 0)
        return dup_bytes(".", 1);
    s = malloc(len + 2);
    if (s == NULL)
        return NULL;
    memcpy(s, name, len);
    s[len] = '.';
    s[len + 1] = '\0';
    return s;
}

/* Expand the (possibly compressed) name at p inside rdata [p, end) of
 * message msg into a malloc'd absolute name in *out; *p advances past
 * it. Returns 0, or -1 when it does not fit the record or the message. */
static int
rdata_name(const ns_msg *msg, const unsigned char **p,
    const unsigned char *end, char **out)
{
    char buf[NS_MAXDNAME];
    int n;

    n = ns_name_uncompress(ns_msg_base(*msg), ns_msg_end(*msg), *p, buf,
        sizeof(buf));
    if (n < 0 || n > end - *p)
        return -1;
    *p += n;
    *out = absolute(buf);
    return *out == NULL ? -1 : 0;
}

/* Fill dst from the record rr of msg. Returns 0, or -1 with err filled. */
static int
convert_rr(const ns_msg *msg, const ns_rr *rr, struct dns_rr *dst,
    struct luacme_err *err)
{
    const unsigned char *p = ns_rr_rdata(*rr);
    const unsigned char *end = p + ns_rr_rdlen(*rr);
    size_t rdlen = ns_rr_rdlen(*rr), used = 0, l;
    char addr[INET6_ADDRSTRLEN];
    char tbuf[16];
    uint32_t v[5];
    int i;

    dst->type = ns_rr_type(*rr);
    dst->ttl = ns_rr_ttl(*rr);
    dst->name = absolute(ns_rr_name(*rr));
    if (dst->name == NULL)
        return err_set(err, "memory", "dns: out of memory");

    switch (dst->type) {
    case ns_t_a:
    case ns_t_aaaa:
        if (rdlen != (dst->type == ns_t_a ? 4u : 16u) ||
            inet_ntop(dst->type == ns_t_a ? AF_INET : AF_INET6, p, addr,
                sizeof(addr)) == NULL)
            goto bad;
        dst->data = dup_bytes(addr, strlen(addr));
        break;
    case ns_t_ns:
    case ns_t_cname:
    case ns_t_ptr:
        if (rdata_name(msg, &p, end, &dst->data) != 0 || p != end)
            goto bad;
        break;
    case ns_t_txt:
        /* One or more <length, bytes> character-strings filling the
         * rdata exactly; the value is their concatenation. */
        dst->data = malloc(rdlen + 1);
        if (dst->data == NULL)
            break;
        while (p < end) {
            l = *p++;
            if (l > (size_t)(end - p))
                goto bad;
            memcpy(dst->data + used, p, l);
            used += l;
            p += l;
        }
        dst->data[used] = '\0';
        dst->len = used;
        return 0;
    case ns_t_soa:
        if (rdata_name(msg, &p, end, &dst->data) != 0 ||
            rdata_name(msg, &p, end, &dst->rname) != 0 || end - p != 20)
            goto bad;
        for (i = 0; i < 5; i++)
            NS_GET32(v[i], p);
        dst->serial = v[0];
        dst->refresh = v[1];
        dst->retry = v[2];
        dst->expire = v[3];
        dst->minimum = v[4];
        break;
    default:
        dst->data = dup_bytes(p, rdlen);
        if (dst->data != NULL)
            dst->len = rdlen;
        break;
    }
    if (dst->data == NULL)
        return err_set(err, "memory", "dns: out of memory");
    if (dst->len == 0)
        dst->len = strlen(dst->data);
    return 0;
bad:
    return err_set(err, "parse", "dns: malformed %s record for %s",
        dns_type_name(dst->type, tbuf, sizeof(tbuf)), dst->name);
}

int
dns_parse(const unsigned char *buf, size_t len, struct dns_result **res,
    struct luacme_err *err)
{
    static const ns_sect sects[3] = { ns_s_an, ns_s_ns, ns_s_ar };
    struct dns_result *r = NULL;
    ns_msg msg;
    ns_rr rr;
    size_t total = 0, s, i, count;
    int rc = -1;

    if (len > LUACME_DNS_PACKET_MAX) {
        err_set(err, "too_large", "dns: answer over LUACME_DNS_PACKET_MAX");
        goto out;
    }
    if (ns_initparse(buf, (int)len, &msg) < 0) {
        err_set(err, "parse", "dns: malformed answer (%zu bytes)", len);
        goto out;
    }
    for (s = 0; s < 3; s++)
        total += ns_msg_count(msg, sects[s]);
    if (total > LUACME_DNS_MAX_RECORDS) {
        err_set(err, "too_large", "dns: %zu records, over "
            "LUACME_DNS_MAX_RECORDS", total);
        goto out;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        err_set(err, "memory", "dns: out of memory");
        goto out;
    }
    r->rcode = ns_msg_getflag(msg, ns_f_rcode);
    r->aa = ns_msg_getflag(msg, ns_f_aa) != 0;
    r->tc = ns_msg_getflag(msg, ns_f_tc) != 0;
    r->ra = ns_msg_getflag(msg, ns_f_ra) != 0;
    r->rd = ns_msg_getflag(msg, ns_f_rd) != 0;
    for (s = 0; s < 3; s++) {
        count = ns_msg_count(msg, sects[s]);
        if (count == 0)
            continue;
        r->rr[s] = calloc(count, sizeof(struct dns_rr));
        if (r->rr[s] == NULL) {
            err_set(err, "memory", "dns: out of memory");
            goto out;
        }
        for (i = 0; i < count; i++) {
            if (ns_parserr(&msg, sects[s], (int)i, &rr) < 0) {
                err_set(err, "parse", "dns: malformed record %zu of "
                    "section %zu", i, s);
                goto out;
            }
            if (ns_rr_type(rr) == ns_t_opt)
                continue;           /* EDNS pseudo-record, not data */
            /* Counted first: rr_clear must see the half-filled one. */
            r->n[s]++;
            if (convert_rr(&msg, &rr, &r->rr[s][r->n[s] - 1], err) != 0)
                goto out;
        }
    }
    *res = r;
    r = NULL;
    rc = 0;
out:
    dns_result_free(r);
    return rc;
}

/* Parse "IP", "IP:PORT" or "[IPv6]:PORT" into sin or sin6; *family
 * tells which. Returns 0, or -1 with err filled. */
static int
parse_server(const char *server, struct sockaddr_in *sin,
    struct sockaddr_in6 *sin6, int *family, struct luacme_err *err)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *port = NULL, *colon, *close;
    size_t hlen;
    unsigned long pn = 53;
    char *endp;

    if (server[0] == '[') {
        close = strchr(server, ']');
        if (close == NULL || (close[1] != '\0' && close[1] != ':'))
            goto bad;
        hlen = (size_t)(close - server - 1);
        if (hlen >= sizeof(host))
            goto bad;
        memcpy(host, server + 1, hlen);
        if (close[1] == ':')
            port = close + 2;
    } else {
        colon = strchr(server, ':');
        if (colon != NULL && strchr(colon + 1, ':') == NULL) {
            hlen = (size_t)(colon - server);    /* IPv4:PORT */
            port = colon + 1;
        } else {
            hlen = strlen(server);              /* IPv4 or bare IPv6 */
        }
        if (hlen >= sizeof(host))
            goto bad;
        memcpy(host, server, hlen);
    }
    host[hlen] = '\0';
    if (port != NULL) {
        if (port[0] < '0' || port[0] > '9')
            goto bad;
        errno = 0;
        pn = strtoul(port, &endp, 10);
        if (errno != 0 || *endp != '\0' || pn < 1 || pn > 65535)
            goto bad;
    }
    memset(sin, 0, sizeof(*sin));
    memset(sin6, 0, sizeof(*sin6));
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)pn);
        *family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)pn);
        *family = AF_INET6;
        return 0;
    }
bad:
    return err_set(err, "invalid", "dns: server must be IP, IP:PORT or "
        "[IPv6]:PORT");
}

/* The servers to ask: o->server alone, or those of resolv.conf as
 * res_ninit read them into st (IPv4 in nsaddr_list, IPv6 in the
 * _u._ext.nsaddrs slot whose IPv4 family is 0). Returns the count (at
 * least 1), or -1 with err filled. */
static int
servers_of(const struct dns_query_opts *o, const struct __res_state *st,
    struct sockaddr_storage *ss, socklen_t *sl, struct luacme_err *err)
{
    struct sockaddr_in sin;
    struct sockaddr_in6 sin6;
    int family = 0, i, n = 0;

    if (o->server != NULL) {
        if (parse_server(o->server, &sin, &sin6, &family, err) != 0)
            return -1;
        memset(&ss[0], 0, sizeof(ss[0]));
        if (family == AF_INET) {
            memcpy(&ss[0], &sin, sizeof(sin));
            sl[0] = sizeof(sin);
        } else {
            memcpy(&ss[0], &sin6, sizeof(sin6));
            sl[0] = sizeof(sin6);
        }
        return 1;
    }
    for (i = 0; i < st->nscount && i < MAXNS; i++) {
        memset(&ss[n], 0, sizeof(ss[n]));
        if (st->nsaddr_list[i].sin_family == AF_INET) {
            memcpy(&ss[n], &st->nsaddr_list[i], sizeof(struct sockaddr_in));
            sl[n++] = sizeof(struct sockaddr_in);
        } else if (st->_u._ext.nsaddrs[i] != NULL &&
            st->_u._ext.nsaddrs[i]->sin6_family == AF_INET6) {
            memcpy(&ss[n], st->_u._ext.nsaddrs[i], sizeof(sin6));
            sl[n++] = sizeof(sin6);
        }
    }
    if (n == 0)
        return err_set(err, "network", "dns: no name server configured");
    return n;
}

int
dns_reply_match(const unsigned char *q, size_t qlen, const unsigned char *r,
    size_t rlen)
{
    size_t i, namelen;
    int rcode;
    unsigned char a, b;

    if (qlen < NS_HFIXEDSZ + NS_QFIXEDSZ + 1 || rlen < NS_HFIXEDSZ)
        return 0;
    if (r[0] != q[0] || r[1] != q[1])
        return 0;                       /* another query's reply */
    if ((r[2] & 0x80) == 0 || (r[2] & 0x78) != (q[2] & 0x78))
        return 0;                       /* not a response, or opcode */
    rcode = r[3] & 0x0f;
    /* A server that cannot read the question may leave it out. */
    if (r[4] == 0 && r[5] == 0)
        return rcode == ns_r_formerr || rcode == ns_r_servfail ||
            rcode == ns_r_notimpl || rcode == ns_r_refused;
    if (r[4] != 0 || r[5] != 1 || rlen < qlen)
        return 0;
    /* The question as asked: the name (uncompressed at offset 12, where
     * there is nothing to point back to) without regard to ASCII case,
     * which some servers change (0x20 encoding); type and class exact.
     * Label lengths are below 64 and so never letters. */
    namelen = qlen - NS_HFIXEDSZ - NS_QFIXEDSZ;
    for (i = NS_HFIXEDSZ; i < NS_HFIXEDSZ + namelen; i++) {
        a = q[i] >= 'A' && q[i] <= 'Z' ? (unsigned char)(q[i] + 32) : q[i];
        b = r[i] >= 'A' && r[i] <= 'Z' ? (unsigned char)(r[i] + 32) : r[i];
        if (a != b)
            return 0;
    }
    return memcmp(q + NS_HFIXEDSZ + namelen, r + NS_HFIXEDSZ + namelen,
        NS_QFIXEDSZ) == 0;
}

/* Why an exchange ended, beyond errno values. */
#define DNS_INTERRUPTED (-2)

/* Wait for events on fd until until (mono_now seconds), waking every
 * DNS_TICK_MS for luacme_interrupted (only a signal after start_int was
 * taken counts). Returns 1 ready, 0 at until, DNS_INTERRUPTED, or -1
 * with errno set. */
static int
wait_fd(int fd, short events, double until, sig_atomic_t start_int)
{
    struct pollfd p;
    double left;
    int ms, n;

    for (;;) {
        if (start_int == 0 && luacme_interrupted != 0)
            return DNS_INTERRUPTED;
        left = until - mono_now();
        if (left <= 0)
            return 0;
        ms = left * 1000 < DNS_TICK_MS ? (int)(left * 1000) + 1 :
            DNS_TICK_MS;
        p.fd = fd;
        p.events = events;
        p.revents = 0;
        n = poll(&p, 1, ms);
        if (n < 0 && errno != EINTR)
            return -1;
        if (n > 0)
            return 1;
    }
}

/* A non-blocking close-on-exec socket of type for ss, connected (UDP:
 * so only that address's datagrams arrive, and ICMP refusals are
 * reported; TCP: the connect is begun). Returns the fd, or -1 with
 * errno set. */
static int
open_socket(const struct sockaddr_storage *ss, socklen_t sl, int type)
{
    int fd = socket(ss->ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    if (connect(fd, (const struct sockaddr *)ss, sl) != 0 &&
        errno != EINPROGRESS) {
        int e = errno;

        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* Ask over UDP until until, sending again halfway (one lost datagram is
 * not yet a timeout); replies that do not match are ignored. Returns
 * the reply's length in ans, or DNS_INTERRUPTED, or -1 with *e set
 * (ETIMEDOUT at until). */
static int
udp_exchange(const struct sockaddr_storage *ss, socklen_t sl,
    const unsigned char *q, size_t qlen, unsigned char *ans, double until,
    sig_atomic_t start_int, int *e)
{
    double resend = mono_now() + (until - mono_now()) / 2;
    int fd, w, sent = 0, rc = -1;
    ssize_t n;

    fd = open_socket(ss, sl, SOCK_DGRAM);
    if (fd < 0) {
        *e = errno;
        return -1;
    }
    for (;;) {
        if (sent < 2 && (sent == 0 || mono_now() >= resend)) {
            if (send(fd, q, qlen, 0) < 0 && errno != EAGAIN) {
                *e = errno;
                goto out;
            }
            sent++;
        }
        w = wait_fd(fd, POLLIN, sent < 2 ? resend : until, start_int);
        if (w == DNS_INTERRUPTED) {
            rc = DNS_INTERRUPTED;
            goto out;
        }
        if (w < 0) {
            *e = errno;
            goto out;
        }
        if (w == 0) {
            if (sent < 2)
                continue;
            *e = ETIMEDOUT;
            goto out;
        }
        n = recv(fd, ans, LUACME_DNS_PACKET_MAX, 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue;
            *e = errno;
            goto out;
        }
        if (dns_reply_match(q, qlen, ans, (size_t)n)) {
            rc = (int)n;
            goto out;
        }
    }
out:
    close(fd);
    return rc;
}

/* Move len bytes over fd in direction out (send) or in (recv) before
 * until. Returns 0, DNS_INTERRUPTED, or -1 with *e set (ETIMEDOUT; EPIPE
 * for a peer that closed early). */
static int
tcp_move(int fd, unsigned char *buf, size_t len, int out, double until,
    sig_atomic_t start_int, int *e)
{
    size_t done = 0;
    ssize_t n;
    int w;

    while (done < len) {
        n = out ? send(fd, buf + done, len - done, MSG_NOSIGNAL) :
            recv(fd, buf + done, len - done, 0);
        if (n > 0) {
            done += (size_t)n;
            continue;
        }
        if (n == 0) {
            *e = EPIPE;
            return -1;
        }
        if (errno != EAGAIN && errno != EINTR) {
            *e = errno;
            return -1;
        }
        w = wait_fd(fd, out ? POLLOUT : POLLIN, until, start_int);
        if (w == DNS_INTERRUPTED)
            return DNS_INTERRUPTED;
        if (w <= 0) {
            *e = w == 0 ? ETIMEDOUT : errno;
            return -1;
        }
    }
    return 0;
}

/* Ask over TCP (RFC 1035 §4.2.2: two length bytes before each message)
 * until until. Returns the reply's length in ans, DNS_INTERRUPTED, or -1
 * with *e set (a reply that does not match: EPROTO). */
static int
tcp_exchange(const struct sockaddr_storage *ss, socklen_t sl,
    const unsigned char *q, size_t qlen, unsigned char *ans, double until,
    sig_atomic_t start_int, int *e)
{
    unsigned char len2[2], qbuf[2 + NS_PACKETSZ];
    socklen_t elen = sizeof(int);
    int fd, w, soerr = 0, rc = -1;
    size_t n;

    fd = open_socket(ss, sl, SOCK_STREAM);
    if (fd < 0) {
        *e = errno;
        return -1;
    }
    w = wait_fd(fd, POLLOUT, until, start_int);
    if (w == DNS_INTERRUPTED) {
        rc = DNS_INTERRUPTED;
        goto out;
    }
    if (w <= 0) {
        *e = w == 0 ? ETIMEDOUT : errno;
        goto out;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &elen) != 0 ||
        soerr != 0) {
        *e = soerr != 0 ? soerr : errno;
        goto out;
    }
    qbuf[0] = (unsigned char)(qlen >> 8);
    qbuf[1] = (unsigned char)qlen;
    memcpy(qbuf + 2, q, qlen);
    rc = tcp_move(fd, qbuf, qlen + 2, 1, until, start_int, e);
    if (rc == 0)
        rc = tcp_move(fd, len2, 2, 0, until, start_int, e);
    if (rc != 0)
        goto out;
    n = (size_t)len2[0] << 8 | len2[1];
    rc = tcp_move(fd, ans, n, 0, until, start_int, e);
    if (rc != 0)
        goto out;
    if (!dns_reply_match(q, qlen, ans, n)) {
        *e = EPROTO;
        rc = -1;
        goto out;
    }
    rc = (int)n;
out:
    close(fd);
    return rc;
}

/* Fill err for a query of tname name to where that failed with errno e
 * after timeout seconds at most. Returns -1. */
static int
send_failed(struct luacme_err *err, int e, const char *tname,
    const char *name, const char *where, int timeout)
{
    if (e == ETIMEDOUT)
        return err_set(err, "timeout", "dns: %s %s: no answer from %s "
            "within %d s", tname, name, where, timeout);
    if (e == ECONNREFUSED)
        return err_set(err, "connect", "dns: %s %s: %s refused the "
            "connection", tname, name, where);
    if (e == EPROTO)
        return err_set(err, "network", "dns: %s %s: %s answered another "
            "question over TCP", tname, name, where);
    return err_set(err, "network", "dns: %s %s: %s: %s", tname, name,
        where, strerror(e));
}

int
dns_query(const char *name, unsigned qtype, const struct dns_query_opts *o,
    struct dns_result **res, struct luacme_err *err)
{
    struct __res_state st;
    struct dns_result *r = NULL, *kept = NULL;
    struct sockaddr_storage ss[MAXNS];
    socklen_t sl[MAXNS];
    unsigned char query[NS_PACKETSZ];
    unsigned char *answer = NULL;
    char tbuf[16], rbuf[16];
    const char *tname, *where;
    int inited = 0, qlen, alen = -1, timeout, nserv, i, e = ETIMEDOUT;
    int rc = -1;
    double deadline, slot;
    sig_atomic_t start_int = luacme_interrupted;

    tname = dns_type_name(qtype, tbuf, sizeof(tbuf));
    where = o->server != NULL ? o->server : "the system resolver";
    if (strlen(name) > LUACME_DNS_NAME_MAX) {
        err_set(err, "invalid", "dns: name over LUACME_DNS_NAME_MAX");
        goto out;
    }
    timeout = o->timeout_s > 0 ? o->timeout_s : LUACME_DNS_TIMEOUT_S;
    if (timeout > LUACME_DNS_TIMEOUT_MAX_S)
        timeout = LUACME_DNS_TIMEOUT_MAX_S;
    deadline = mono_now() + timeout;

    /* res_ninit only for the query's id and flags and resolv.conf's
     * servers; nothing is sent through it. */
    memset(&st, 0, sizeof(st));
    if (res_ninit(&st) != 0) {
        err_set(err, "network", "dns: res_ninit failed");
        goto out;
    }
    inited = 1;
    st.options = RES_INIT | (o->recurse ? RES_RECURSE : 0);
    nserv = servers_of(o, &st, ss, sl, err);
    if (nserv < 0)
        goto out;
    qlen = res_nmkquery(&st, ns_o_query, name, ns_c_in, (int)qtype, NULL,
        0, NULL, query, sizeof(query));
    if (qlen < 0) {
        err_set(err, "invalid", "dns: cannot ask for %s %s (bad name)",
            tname, name);
        goto out;
    }
    answer = malloc(LUACME_DNS_PACKET_MAX);
    if (answer == NULL) {
        err_set(err, "memory", "dns: out of memory");
        goto out;
    }
    /* Each server gets an equal share of what is left; a server that
     * fails (or answers SERVFAIL or REFUSED) passes on to the next. */
    for (i = 0; i < nserv; i++) {
        slot = mono_now() + (deadline - mono_now()) / (nserv - i);
        if (o->tcp)
            alen = tcp_exchange(&ss[i], sl[i], query, (size_t)qlen, answer,
                slot, start_int, &e);
        else
            alen = udp_exchange(&ss[i], sl[i], query, (size_t)qlen, answer,
                slot, start_int, &e);
        if (alen >= NS_HFIXEDSZ && !o->tcp && (answer[2] & 0x02) != 0)
            alen = tcp_exchange(&ss[i], sl[i], query, (size_t)qlen, answer,
                deadline, start_int, &e);
        if (alen == DNS_INTERRUPTED) {
            err_set(err, "interrupted", "dns: interrupted");
            goto out;
        }
        if (alen < 0)
            continue;
        dns_result_free(r);
        r = NULL;
        if (dns_parse(answer, (size_t)alen, &r, err) != 0)
            goto out;
        if (r->rcode == ns_r_noerror || r->rcode == ns_r_nxdomain)
            break;
        dns_result_free(kept);
        kept = r;
        r = NULL;
    }
    if (r == NULL && kept != NULL) {
        r = kept;
        kept = NULL;
    }
    if (r == NULL) {
        send_failed(err, e, tname, name, where, timeout);
        goto out;
    }
    if (r->rcode != ns_r_noerror && r->rcode != ns_r_nxdomain) {
        err_set(err, r->rcode == ns_r_servfail ? "servfail" :
            r->rcode == ns_r_refused ? "refused" : "rcode",
            "dns: %s %s: %s answered %s", tname, name, where,
            dns_rcode_name(r->rcode, rbuf, sizeof(rbuf)));
        goto out;
    }
    *res = r;
    r = NULL;
    rc = 0;
out:
    dns_result_free(r);
    dns_result_free(kept);
    free(answer);
    if (inited)
        res_nclose(&st);
    return rc;
}

/* A query on its own thread: what the caller and the thread share. */
struct dns_job {
    pthread_mutex_t mu;
    int refs;                       /* the caller's, the thread's */
    int done;                       /* under mu */
    int fd;                         /* eventfd, written once done */
    char *name;
    char *server;
    unsigned qtype;
    struct dns_query_opts o;
    int rc;                         /* dns_query's, once done */
    struct dns_result *res;
    struct luacme_err err;
};

/* Drop one reference; the last frees j. */
static void
job_unref(struct dns_job *j)
{
    int last;

    pthread_mutex_lock(&j->mu);
    last = --j->refs == 0;
    pthread_mutex_unlock(&j->mu);
    if (!last)
        return;
    pthread_mutex_destroy(&j->mu);
    if (j->fd >= 0)
        close(j->fd);
    dns_result_free(j->res);
    free(j->name);
    free(j->server);
    free(j);
}

static void *
job_run(void *arg)
{
    struct dns_job *j = arg;
    struct dns_result *res = NULL;
    struct luacme_err err;
    uint64_t one = 1;
    ssize_t n;
    int rc;

    memset(&err, 0, sizeof(err));
    rc = dns_query(j->name, j->qtype, &j->o, &res, &err);
    pthread_mutex_lock(&j->mu);
    j->rc = rc;
    j->res = res;
    j->err = err;
    j->done = 1;
    pthread_mutex_unlock(&j->mu);
    /* An eventfd write cannot block (one write) nor raise SIGPIPE. */
    n = write(j->fd, &one, sizeof(one));
    (void)n;
    job_unref(j);
    return NULL;
}

int
dns_job_start(const char *name, unsigned qtype,
    const struct dns_query_opts *o, struct dns_job **out,
    struct luacme_err *err)
{
    struct dns_job *j;
    pthread_attr_t attr;
    pthread_t th;
    sigset_t all, old;
    int e;

    j = calloc(1, sizeof(*j));
    if (j == NULL)
        return err_set(err, "memory", "dns: out of memory");
    j->fd = -1;
    j->o = *o;
    j->qtype = qtype;
    j->name = strdup(name);
    j->server = o->server != NULL ? strdup(o->server) : NULL;
    j->o.server = j->server;
    if (j->name == NULL || (o->server != NULL && j->server == NULL)) {
        free(j->name);
        free(j->server);
        free(j);
        return err_set(err, "memory", "dns: out of memory");
    }
    j->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (j->fd < 0 || pthread_mutex_init(&j->mu, NULL) != 0) {
        e = errno;
        if (j->fd >= 0)
            close(j->fd);
        free(j->name);
        free(j->server);
        free(j);
        return err_set(err, "network", "dns: eventfd: %s", strerror(e));
    }
    j->refs = 2;
    /* Signals are the main thread's business (Ctrl-C raises there);
     * the query still sees luacme_interrupted. */
    sigfillset(&all);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    e = pthread_create(&th, &attr, job_run, j);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (e != 0) {
        j->refs = 1;
        job_unref(j);
        return err_set(err, "network", "dns: pthread_create: %s",
            strerror(e));
    }
    *out = j;
    return 0;
}

int
dns_job_fd(const struct dns_job *j)
{
    return j->fd;
}

int
dns_job_done(struct dns_job *j)
{
    int d;

    pthread_mutex_lock(&j->mu);
    d = j->done;
    pthread_mutex_unlock(&j->mu);
    return d;
}

int
dns_job_finish(struct dns_job *j, struct dns_result **res,
    struct luacme_err *err)
{
    int rc;

    pthread_mutex_lock(&j->mu);
    if (!j->done) {
        pthread_mutex_unlock(&j->mu);
        return err_set(err, "network", "dns: query not done yet");
    }
    rc = j->rc;
    if (rc == 0) {
        *res = j->res;
        j->res = NULL;
    } else {
        *err = j->err;
    }
    j->rc = -1;
    err_set(&j->err, "network", "dns: result already taken");
    pthread_mutex_unlock(&j->mu);
    return rc;
}

void
dns_job_free(struct dns_job *j)
{
    if (j != NULL)
        job_unref(j);
}
