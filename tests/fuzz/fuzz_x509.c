/* Certificate data from the CA: the chain splitter (PEM from the
 * certificate URL), the loader for PEM or DER, and everything
 * cert_info reads (names, dates, key identifiers, serial). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509.h>

#include "x509.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct luacme_err err;
    struct x509_info info;
    char **certs = NULL;
    size_t n = 0, i;
    X509 *cert = NULL;

    if (x509_pem_split((const char *)data, size, &certs, &n, &err) == 0) {
        /* Every piece handed out must load again on its own. */
        for (i = 0; i < n; i++) {
            if (x509_load(certs[i], strlen(certs[i]), &cert, &err) != 0)
                abort();
            X509_free(cert);
            cert = NULL;
        }
        x509_strv_free(certs, n);
    }
    if (x509_load(data, size, &cert, &err) == 0) {
        if (x509_info(cert, &info, &err) == 0)
            x509_info_free(&info);
        X509_free(cert);
    }
    return 0;
}
