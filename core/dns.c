/*
 * DNS queries through glibc's libresolv; see dns.h. libresolv builds the
 * query (res_nmkquery), sends it, matches the reply to it by id,
 * question and source address, falls back to TCP on truncation
 * (res_nsend), and walks the message (ns_initparse, ns_parserr,
 * ns_name_uncompress). What is left here is choosing the server, mapping
 * failures to kinds, and the rdata of the types the propagation check
 * reads, each bounds-checked against its record (tests/fuzz/fuzz_dns.c).
 */
#define _DEFAULT_SOURCE             /* u_char & co. for <resolv.h> */

#include "dns.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <netinet/in.h>
#include <resolv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "luacme_limits.h"

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

/* Make res use only the one server given. IPv4 goes into nsaddr_list;
 * IPv6 into the _u._ext.nsaddrs slot that glibc reads when the IPv4
 * slot's family is 0, and frees (with free()) in res_nclose. Returns 0,
 * or -1 with err filled. */
static int
use_server(res_state st, const char *server, struct luacme_err *err)
{
    struct sockaddr_in sin;
    struct sockaddr_in6 sin6, *copy;
    int family = 0;

    if (parse_server(server, &sin, &sin6, &family, err) != 0)
        return -1;
    if (family == AF_INET) {
        st->nsaddr_list[0] = sin;
        free(st->_u._ext.nsaddrs[0]);
        st->_u._ext.nsaddrs[0] = NULL;
    } else {
        copy = malloc(sizeof(*copy));
        if (copy == NULL)
            return err_set(err, "memory", "dns: out of memory");
        *copy = sin6;
        free(st->_u._ext.nsaddrs[0]);
        st->_u._ext.nsaddrs[0] = copy;
        memset(&st->nsaddr_list[0], 0, sizeof(st->nsaddr_list[0]));
    }
    st->nscount = 1;
    return 0;
}

/* A resolver state in st for one query with o: o's own server when
 * given, two tries of half of timeout seconds each, recursion and TCP as
 * asked. Returns 0 (release st with res_nclose), or -1 with err filled
 * and nothing to release. */
static int
resolver_open(struct __res_state *st, const struct dns_query_opts *o,
    int timeout, struct luacme_err *err)
{
    memset(st, 0, sizeof(*st));
    if (res_ninit(st) != 0)
        return err_set(err, "network", "dns: res_ninit failed");
    if (o->server != NULL && use_server(st, o->server, err) != 0) {
        res_nclose(st);
        return -1;
    }
    /* Two tries of half the time each: one lost UDP packet is not yet a
     * timeout. glibc waits retrans seconds per try for the first server. */
    st->retry = 2;
    st->retrans = (timeout + 1) / 2;
    st->options = RES_INIT | (o->recurse ? RES_RECURSE : 0) |
        (o->tcp ? RES_USEVC : 0);
    /* Without pfcode glibc hides SERVFAIL and REFUSED answers behind a
     * generic timeout; with it, res_nsend returns them to us (pfcode
     * otherwise only steers printing in dig). */
    st->pfcode = RES_PRF_HEAD1;
    return 0;
}

/* Fill err for a query of tname name to where that res_nsend failed with
 * errno e after timeout seconds at most. Returns -1. */
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
    return err_set(err, "network", "dns: %s %s: %s: %s", tname, name,
        where, strerror(e));
}

int
dns_query(const char *name, unsigned qtype, const struct dns_query_opts *o,
    struct dns_result **res, struct luacme_err *err)
{
    struct __res_state st;
    struct dns_result *r = NULL;
    unsigned char query[NS_PACKETSZ];
    unsigned char *answer = NULL;
    char tbuf[16], rbuf[16];
    const char *tname, *where;
    int inited = 0, qlen, alen, timeout, saved, rc = -1;
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

    if (resolver_open(&st, o, timeout, err) != 0)
        goto out;
    inited = 1;

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
    errno = 0;
    alen = res_nsend(&st, query, qlen, answer, LUACME_DNS_PACKET_MAX);
    saved = errno;
    /* Only a signal that came during this query counts: once Ctrl-C has
     * unwound into cleanup, a hook may still need DNS (as http.c). */
    if (start_int == 0 && luacme_interrupted != 0) {
        err_set(err, "interrupted", "dns: interrupted");
        goto out;
    }
    if (alen < 0) {
        send_failed(err, saved, tname, name, where, timeout);
        goto out;
    }
    if (dns_parse(answer, (size_t)alen, &r, err) != 0)
        goto out;
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
    free(answer);
    if (inited)
        res_nclose(&st);
    return rc;
}
