#include "err.h"

#include <errno.h>
#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

volatile sig_atomic_t luacme_interrupted = 0;

int
err_set(struct luacme_err *err, const char *kind, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return -1;
    err->kind = kind;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return -1;
}

int
err_openssl(struct luacme_err *err, const char *kind, const char *what)
{
    unsigned long e;
    size_t used;
    char buf[256];

    if (err == NULL) {
        ERR_clear_error();
        return -1;
    }
    err_set(err, kind, "%s", what);
    /* Keep the most specific reasons that fit; the queue is drained in
     * any case so the next operation starts clean. */
    while ((e = ERR_get_error()) != 0) {
        used = strlen(err->msg);
        if (used + 3 >= sizeof(err->msg))
            continue;
        ERR_error_string_n(e, buf, sizeof(buf));
        snprintf(err->msg + used, sizeof(err->msg) - used, ": %s", buf);
    }
    return -1;
}

const char *
err_errno_kind(int e)
{
    switch (e) {
    case ENOENT:
        return "not_found";
    case EEXIST:
        return "exists";
    case EACCES:
    case EPERM:
        return "permission";
    default:
        return "io";
    }
}

int
err_errno(struct luacme_err *err, const char *op, const char *path, int e)
{
    return err_set(err, err_errno_kind(e), "%s: %s: %s", op, path,
        strerror(e));
}
