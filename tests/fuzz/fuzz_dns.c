/* DNS answers from any server on the path (the propagation check asks
 * resolvers and authoritative servers we do not control): dns_parse,
 * which walks the message with libresolv and converts the rdata of the
 * types we read. Checks the shape of every record it hands out. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dns.h"
#include "luacme_limits.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
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
