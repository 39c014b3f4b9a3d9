/* base64url decoding of server data (nonces, tokens, EAB keys). Checks
 * that whatever decodes re-encodes to the same text (canonical form). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *out = NULL;
    char *again = NULL;
    size_t outlen = 0;
    struct luacme_err err;

    if (b64url_decode((const char *)data, size, &out, &outlen, &err) != 0)
        return 0;
    if (b64url_encode(out, outlen, &again, &err) != 0)
        abort();
    if (strlen(again) != size || memcmp(again, data, size) != 0)
        abort();
    free(again);
    free(out);
    return 0;
}
