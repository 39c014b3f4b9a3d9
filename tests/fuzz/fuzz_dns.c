/* DNS answers from any server on the path (the propagation check asks
 * resolvers and authoritative servers we do not control): dns_parse,
 * which walks the message with libresolv and converts the rdata of the
 * types we read, and dns_reply_match, which decides whether a datagram
 * answers our query. Checks the shape of every record handed out. The
 * input is tried as it is and with the id and question of our query
 * written over it, so the header flags (QR, opcode, AA, TC, RD, RA,
 * rcode, counts) and what follows vary against a matching reply: odd
 * flags once made glibc's res_nsend loop forever (A#9.4). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dns.h"
#include "luacme_limits.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Our query: id 0x1234, RD, one question _acme-challenge.x.test. TXT IN,
 * as res_nmkquery builds it. */
static const uint8_t query[] = {
    0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    15, '_', 'a', 'c', 'm', 'e', '-', 'c', 'h', 'a', 'l', 'l', 'e', 'n',
    'g', 'e', 1, 'x', 4, 't', 'e', 's', 't', 0,
    0x00, 0x10, 0x00, 0x01
};

/* dns_reply_match must agree with the rules of dns.h, computed here
 * independently on the header, and never read past either buffer (ASan
 * would see it). */
static void
check_match(const uint8_t *r, size_t n)
{
    int m = dns_reply_match(query, sizeof(query), r, n);
    int rcode;

    if (m != 0 && m != 1)
        abort();
    if (!m)
        return;
    rcode = n >= 4 ? (r[3] & 0x0f) : -1;
    if (n < 12 || r[0] != 0x12 || r[1] != 0x34 || (r[2] & 0x80) == 0 ||
        (r[2] & 0x78) != 0)
        abort();
    if (r[4] == 0 && r[5] == 0 && rcode != 1 && rcode != 2 && rcode != 4 &&
        rcode != 5)
        abort();
    if ((r[4] != 0 || r[5] != 0) && (r[4] != 0 || r[5] != 1 ||
        n < sizeof(query)))
        abort();
}

static int check_parse(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *r;
    size_t n;

    check_match(data, size);
    check_parse(data, size);
    /* A reply with our id and question: flags from the first two
     * input bytes, the answer, authority and additional counts from the
     * next six, the records from the rest. */
    if (size >= 8) {
        n = sizeof(query) + size - 8;
        r = malloc(n);
        if (r == NULL)
            return 0;
        memcpy(r, query, sizeof(query));
        r[2] = data[0] | 0x80;
        r[3] = data[1];
        memcpy(r + 6, data + 2, 6);
        memcpy(r + sizeof(query), data + 8, size - 8);
        if (dns_reply_match(query, sizeof(query), r, n) !=
            ((r[2] & 0x78) == 0))
            abort();
        check_match(r, n);
        check_parse(r, n);
        free(r);
    }
    return 0;
}

static int
check_parse(const uint8_t *data, size_t size)
{
    struct luacme_err err;
    struct dns_result *res = NULL;
    const struct dns_rr *rr;
    size_t s, i, total = 0;

    if (dns_parse(data, size, &res, &err) != 0) {
        if (err.kind == NULL || err.msg[0] == '\0')
            abort();
        return 0;
    }
    for (s = 0; s < 3; s++) {
        total += res->n[s];
        for (i = 0; i < res->n[s]; i++) {
            rr = &res->rr[s][i];
            /* Names are absolute; data is NUL terminated after len. */
            if (rr->name == NULL || rr->name[strlen(rr->name) - 1] != '.')
                abort();
            if (rr->data == NULL || rr->data[rr->len] != '\0')
                abort();
            /* Copied bytes (TXT, raw rdata) come from the packet;
             * expanded names may be longer through compression. */
            if (rr->type == 16 && rr->len > size)
                abort();
            if ((rr->rname != NULL) != (rr->type == 6))
                abort();
        }
    }
    if (total > LUACME_DNS_MAX_RECORDS || res->rcode < 0 || res->rcode > 15)
        abort();
    dns_result_free(res);
    return 0;
}
