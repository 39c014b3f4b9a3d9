/*
 * What the file and process tests share: a scratch directory under /tmp
 * (made by scratch_open, removed with its contents by scratch_close),
 * paths inside it, a monotonic clock and a check on an error's kind.
 * Include after check.h and err.h.
 */
#ifndef LUACME_SCRATCH_H
#define LUACME_SCRATCH_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char tmpdir[64];

/* Make /tmp/luacme-test-NAME.XXXXXX. Returns 0, or -1 (reported). */
static int
scratch_open(const char *name)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/luacme-test-%s.XXXXXX", name);
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return -1;
    }
    return 0;
}

static void
scratch_close(void)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", tmpdir);
}

/* tmpdir/name in one of 8 rotating buffers (so a few can be live). */
static char *
tpath(const char *name)
{
    static char buf[8][256];
    static int n;
    char *p = buf[n++ % 8];

    snprintf(p, 256, "%s/%s", tmpdir, name);
    return p;
}

static double
now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int
kind_is(const struct luacme_err *err, const char *kind)
{
    return err->kind != NULL && strcmp(err->kind, kind) == 0;
}

#endif
