/*
 * DNS queries for the dns-01 propagation check: one question to one
 * server (or the system's resolvers), the answer turned into records.
 * Packets are built and taken apart by glibc's libresolv (res_nmkquery,
 * ns_initparse, ns_parserr, ns_name_uncompress); the exchange is ours,
 * bounded by one wall-clock deadline (res_nsend has none). This file
 * walks the records and converts the few rdata formats we read. No Lua here: lua_dns.c binds
 * it as core.dns_query and core.dns_parse.
 */
#ifndef LUACME_DNS_H
#define LUACME_DNS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* One resource record. Names are absolute, in presentation form with
 * the trailing dot ("example.test.", the root is "."), case as sent.
 * data/len by type:
 *   A, AAAA           the address as text ("192.0.2.1", "2001:db8::1")
 *   NS, CNAME, PTR    the target name
 *   TXT               the character-strings concatenated (may hold NULs)
 *   SOA               the primary server's name (mname); rname and the
 *                     five numbers in the fields below
 *   anything else     the raw rdata bytes
 * data is NUL terminated after len bytes (never NULL). */
struct dns_rr {
    char *name;
    unsigned type;
    uint32_t ttl;
    char *data;
    size_t len;
    char *rname;                    /* SOA only, else NULL */
    uint32_t serial, refresh, retry, expire, minimum;   /* SOA only */
};

/* The sections a response's records are sorted into. */
enum dns_section {
    DNS_ANSWER = 0,
    DNS_AUTHORITY = 1,
    DNS_ADDITIONAL = 2
};

/* A parsed response. The OPT pseudo-record (EDNS) is left out. */
struct dns_result {
    int rcode;                      /* 0 NOERROR, 3 NXDOMAIN, ... */
    int aa, tc, ra, rd;             /* header flags, 0 or 1 */
    struct dns_rr *rr[3];           /* by enum dns_section */
    size_t n[3];
};

/* How to ask. */
struct dns_query_opts {
    const char *server;             /* "IP", "IP:PORT" or "[IPv6]:PORT";
                                     * NULL: the servers of resolv.conf */
    int timeout_s;                  /* whole query; 0: LUACME_DNS_TIMEOUT_S */
    int recurse;                    /* non-zero: set RD */
    int tcp;                        /* non-zero: TCP only */
};

/* Ask one question: name (presentation form, trailing dot optional, at
 * most LUACME_DNS_NAME_MAX bytes) of type qtype (class IN). An answer
 * that is truncated over UDP is asked again over TCP. The call returns
 * within timeout_s (plus a poll tick) whatever the servers send: replies
 * that do not match the query are ignored, each of resolv.conf's
 * servers gets an equal share of the time.
 * Returns 0 with a new result in *res (free with dns_result_free) for a
 * NOERROR or NXDOMAIN answer, whatever records it holds; or -1 with err
 * filled and *res untouched, kind:
 *   "invalid"      name or server unusable
 *   "timeout"      no answer in time
 *   "connect"      the server refused the connection or port
 *   "servfail", "refused"   the server answered SERVFAIL, REFUSED
 *   "rcode"        any other error code (FORMERR, NOTIMP, ...)
 *   "parse"        the answer could not be taken apart
 *   "network"      any other send/receive failure
 *   "interrupted"  luacme_interrupted became set during the query (one
 *                  set before it began does not count) */
int dns_query(const char *name, unsigned qtype,
    const struct dns_query_opts *o, struct dns_result **res,
    struct luacme_err *err);

/*
 * The same query without blocking the caller, for an event loop
 * (luacme.sched through core.http_run): dns_query runs on a thread of
 * its own (signals blocked there) and a descriptor becomes readable
 * when it is done. A thread rather than a state machine over the
 * exchange above: the query code stays one straight function with one
 * deadline, and the thread's life is bounded by that same deadline.
 */
struct dns_job;                     /* opaque; dns_job_free frees */

/* Start dns_query(name, qtype, o) on a thread; name and o->server are
 * copied. Returns 0 and *out, or -1 with err filled ("memory",
 * "network" when no thread or descriptor could be made). */
int dns_job_start(const char *name, unsigned qtype,
    const struct dns_query_opts *o, struct dns_job **out,
    struct luacme_err *err);

/* A descriptor that polls readable once the query is done (owned by
 * j). */
int dns_job_fd(const struct dns_job *j);

/* Non-zero once the query is done. */
int dns_job_done(struct dns_job *j);

/* After dns_job_done: what dns_query returned (0 and *res to free with
 * dns_result_free, or -1 and err). Call once. */
int dns_job_finish(struct dns_job *j, struct dns_result **res,
    struct luacme_err *err);

/* Drop the caller's hold on j. A query still running is left to end
 * by its own deadline (or luacme_interrupted); its thread then frees
 * what is left. Accepts NULL. */
void dns_job_free(struct dns_job *j);

/* Is the reply r of rlen bytes the answer to the query q of qlen bytes
 * (as res_nmkquery builds it: one question)? Same id, QR set, same
 * opcode, and the same question (name without regard to ASCII case) or,
 * for FORMERR, SERVFAIL, NOTIMP and REFUSED, none. Returns 1 or 0;
 * reads no byte beyond either length. */
int dns_reply_match(const unsigned char *q, size_t qlen,
    const unsigned char *r, size_t rlen);

/* Take a raw response of len bytes (at most LUACME_DNS_PACKET_MAX)
 * apart, whatever its rcode. Returns 0 with a new result in *res (free
 * with dns_result_free), or -1 with err filled (kind "parse", or
 * "too_large" for more than LUACME_DNS_MAX_RECORDS records) and *res
 * untouched. */
int dns_parse(const unsigned char *buf, size_t len, struct dns_result **res,
    struct luacme_err *err);

/* Free a result. Accepts NULL. */
void dns_result_free(struct dns_result *res);

/* The mnemonic of a type ("TXT"), or "TYPE<n>" written into buf (at
 * least 16 bytes). Returns a static string or buf. */
const char *dns_type_name(unsigned type, char *buf, size_t size);

/* The type number of a mnemonic (upper case, as dns_type_name gives), or
 * 0 when unknown. */
unsigned dns_type_code(const char *name);

/* The mnemonic of an rcode ("NXDOMAIN"), or "RCODE<n>" in buf (at least
 * 16 bytes). */
const char *dns_rcode_name(int rcode, char *buf, size_t size);

#endif
