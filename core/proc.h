/*
 * Running a hook program: fork and exec without a shell, feed its stdin,
 * capture its stdout and stderr, and never let it wedge or outlive us
 * (a timeout and Ctrl-C stop its whole process group). The Lua side
 * reaches it as core.spawn through lua_proc.c.
 */
#ifndef LUACME_PROC_H
#define LUACME_PROC_H

#include <stddef.h>

#include "err.h"

/* What to run: see spawn_run. */
struct spawn_opts {
    const char *const *argv;    /* NULL-terminated, argv[0] the program */
    const char *const *envp;    /* "NAME=value", NULL-terminated; the
                                 * whole environment. NULL: inherit */
    const char *cwd;            /* NULL: the current directory */
    const char *stdin_data;     /* NULL: stdin is /dev/null */
    size_t stdin_len;
    double timeout;             /* seconds; <= 0: none */
    size_t max_output;          /* cap on each of stdout and stderr */
};

/* What came back from spawn_run. out and err_out are malloc'd (possibly
 * NULL when empty); free with spawn_result_free. */
struct spawn_result {
    int exited;         /* 1: status holds the exit code */
    int status;
    int signaled;       /* 1: signal holds the terminating signal */
    int signal;
    int timed_out;      /* 1: killed because the timeout passed */
    int truncated;      /* 1: output beyond max_output was discarded */
    char *out;
    size_t out_len;
    char *err_out;
    size_t err_len;
};

/* Run a program without a shell: fork, then execve argv[0] (searched in
 * the caller's PATH when it has no '/') with argv as given. The child
 * gets its own process group, default signal dispositions, an empty
 * signal mask, stdin fed from stdin_data (then closed) or /dev/null, and
 * no descriptors of ours beyond 0-2. stdout and stderr are read together
 * with poll(), each kept up to max_output bytes (the rest is read and
 * discarded, setting truncated). After timeout seconds the child's group
 * gets SIGTERM and, LUACME_SPAWN_KILL_GRACE_S later, SIGKILL. When
 * luacme_interrupted becomes non-zero while waiting (it was zero at the
 * start), the child's group gets the same treatment and -1 with kind
 * "interrupted" is returned. The child is always reaped. SIGPIPE is
 * ignored while this runs (restored after).
 * Returns 0 with *res filled (free with spawn_result_free), or -1 with
 * err filled and *res zeroed: "not_found" / "permission" / "io" when the
 * program (or cwd) could not be executed (errno passed back through a
 * close-on-exec pipe), "interrupted", or "io" for a system failure. */
int spawn_run(const struct spawn_opts *opts, struct spawn_result *res,
    struct luacme_err *err);

/* Free the buffers of res and zero it. Accepts a zeroed res. */
void spawn_result_free(struct spawn_result *res);

#endif
