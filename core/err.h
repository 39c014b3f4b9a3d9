/*
 * Error reporting shared by the C core. A failing function fills a
 * struct luacme_err; the Lua binding turns it into nil, message, kind.
 */
#ifndef LUACME_ERR_H
#define LUACME_ERR_H

#include <stddef.h>

struct luacme_err {
    const char *kind;   /* short, static: "crypto", "parse", "too_large", ... */
    char msg[512];
};

/* Set kind and a printf-style message. Always returns -1 so callers can
 * write `return err_set(...)`. */
int err_set(struct luacme_err *err, const char *kind, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Like err_set, then appends the reasons in OpenSSL's error queue and
 * clears the queue, so a later call never reports a stale reason.
 * Returns -1. */
int err_openssl(struct luacme_err *err, const char *kind, const char *what);

#endif
