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
 * ignored around each write to the child's stdin.
 * Returns 0 with *res filled (free with spawn_result_free), or -1 with
 * err filled and *res zeroed: "not_found" / "permission" / "io" when the
 * program (or cwd) could not be executed (errno passed back through a
 * close-on-exec pipe), "interrupted", or "io" for a system failure.
 * It is spawn_start, spawn_step and poll on spawn_wait_fds until done,
 * spawn_finish, spawn_free. */
int spawn_run(const struct spawn_opts *opts, struct spawn_result *res,
    struct luacme_err *err);

/*
 * The same run in steps, for an event loop that waits on many things at
 * once (luacme.sched: other programs, HTTP transfers, timers): start
 * it, then wait on its spawn_wait_fds for at most the time given there
 * and call spawn_step, until spawn_step says it exited; spawn_finish
 * gives the result. Nothing here blocks but spawn_start (until the
 * exec happened or failed: the time of a fork and an exec) and
 * spawn_stop. Every guarantee of spawn_run holds as long as the loop
 * keeps calling spawn_step within the time spawn_wait_fds asked for.
 */
struct spawn_proc;                  /* opaque; spawn_free frees */
struct pollfd;

/* Start the program (see spawn_run). What the run needs later (argv[0]
 * for messages, stdin_data) is copied: opts may go once this returns.
 * Returns 0 and *out (free with spawn_free), or -1 with err filled as
 * spawn_run fails before the program runs, *out untouched. */
int spawn_start(const struct spawn_opts *opts, struct spawn_proc **out,
    struct luacme_err *err);

/* Move data without blocking: feed stdin, read what stdout and stderr
 * hold, send SIGTERM / SIGKILL when the timeout or an interrupt (or
 * spawn_stop) makes it due. Returns 1 once the program has exited and
 * all it wrote is captured (then at once on every further call), 0
 * while it runs, or -1 with err filled (a failed read: the run is lost;
 * spawn_free still stops it). */
int spawn_step(struct spawn_proc *p, struct luacme_err *err);

/* The descriptors to wait on before the next spawn_step: fills up to 3
 * entries of pfd (fd, events; revents zeroed) and returns how many
 * (possibly 0: only the exit is left to notice), and sets *wait_ms to
 * the longest the caller may wait before calling spawn_step again (a
 * tick to see the clock and luacme_interrupted, less when the timeout
 * or the SIGKILL is nearer; 0 once exited). */
int spawn_wait_fds(struct spawn_proc *p, struct pollfd *pfd, int *wait_ms);

/* After spawn_step returned 1: reap the program. Returns 0 with *res
 * filled (free with spawn_result_free; the output moves from p to
 * res), or -1 with err: "interrupted" when it was stopped for an
 * interrupt, "io" when called before it exited. Call once. */
int spawn_finish(struct spawn_proc *p, struct spawn_result *res,
    struct luacme_err *err);

/* Stop a program still running, politely: SIGTERM to its group, up to
 * LUACME_SPAWN_KILL_GRACE_S for it to end (its output still drained),
 * then SIGKILL. Blocks that long at most. Does nothing once it exited. */
void spawn_stop(struct spawn_proc *p);

/* Free p; a program not reaped yet is killed with its group (SIGKILL)
 * and reaped: it must not outlive us. Accepts NULL. */
void spawn_free(struct spawn_proc *p);

/* Free the buffers of res and zero it. Accepts a zeroed res. */
void spawn_result_free(struct spawn_result *res);

#endif
