/*
 * Error reporting shared by the C core. A failing function fills a
 * struct luacme_err; the Lua binding turns it into nil, message, kind.
 */
#ifndef LUACME_ERR_H
#define LUACME_ERR_H

#include <signal.h>
#include <stddef.h>

struct luacme_err {
    const char *kind;   /* short, static: "crypto", "parse", "too_large", ... */
    char msg[512];
};

#if defined(__GNUC__)
#define LUACME_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define LUACME_PRINTF(a, b)
#endif

/* Set kind and a printf-style message. Always returns -1 so callers can
 * write `return err_set(...)`. */
int err_set(struct luacme_err *err, const char *kind, const char *fmt, ...)
    LUACME_PRINTF(3, 4);

/* Like err_set, then appends the reasons in OpenSSL's error queue and
 * clears the queue, so a later call never reports a stale reason.
 * Returns -1. */
int err_openssl(struct luacme_err *err, const char *kind, const char *what);

/* The kind for errno value e: "not_found" (ENOENT), "exists" (EEXIST),
 * "permission" (EACCES, EPERM), or "io" for anything else. */
const char *err_errno_kind(int e);

/* Fill err from errno value e for operation op on path: kind as
 * err_errno_kind gives, message "op: path: strerror(e)". Returns -1. */
int err_errno(struct luacme_err *err, const char *op, const char *path,
    int e);

/* Non-zero (the signal number) once SIGINT/SIGTERM arrived; set by the
 * executable's handler (main.c), read by long C operations (an HTTP
 * transfer, a child process wait) so they stop early. Defined in err.c so
 * the C core links without main.c. */
extern volatile sig_atomic_t luacme_interrupted;

#endif
