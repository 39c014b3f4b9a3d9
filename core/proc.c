/*
 * Child processes for the hook programs. spawn_start starts a program
 * without a shell, spawn_step moves its stdin, stdout and stderr without
 * blocking while watching the clock and luacme_interrupted, and
 * spawn_finish collects its end: a hook program can never wedge or
 * outlive us. spawn_run is those steps with a poll() between them; an
 * event loop (luacme.sched, through core.http_run) waits on
 * spawn_wait_fds together with its other work instead, so a running
 * program holds up nobody else.
 */
/* NSIG and syscall(2) are outside POSIX.1-2008. */
#define _DEFAULT_SOURCE

#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fs.h"                 /* fs_free_names */
#include "luacme_limits.h"
#include "mono.h"

extern char **environ;

/* How often the spawn loop wakes to look at the clock and
 * luacme_interrupted when nothing happens. */
#define SPAWN_TICK_MS 100

/* The close_range(2) flag, for headers that predate it. */
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

/* One captured output stream. */
struct capture {
    int fd;             /* -1 once EOF was seen */
    char *buf;
    size_t len, cap;
};

/* Move fd to a number >= 3 (close-on-exec), so the child's dup2 onto
 * 0-2 can never clobber another of our descriptors. Returns the new fd,
 * or -1 with errno set (fd is closed either way on failure). */
static int
fd_high(int fd)
{
    int nfd;

    if (fd < 0 || fd >= 3)
        return fd;
    nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    close(fd);
    return nfd;
}

/* A close-on-exec pipe with both ends >= 3. Returns 0 or -1 (errno). */
static int
make_pipe(int *r, int *w)
{
    int p[2];

    if (pipe(p) != 0)
        return -1;
    p[0] = fd_high(p[0]);
    p[1] = fd_high(p[1]);
    if (p[0] < 0 || p[1] < 0 ||
        fcntl(p[0], F_SETFD, FD_CLOEXEC) != 0 ||
        fcntl(p[1], F_SETFD, FD_CLOEXEC) != 0) {
        if (p[0] >= 0)
            close(p[0]);
        if (p[1] >= 0)
            close(p[1]);
        return -1;
    }
    *r = p[0];
    *w = p[1];
    return 0;
}

static int
set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);

    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void
close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* The paths execve tries for prog, as execvp would, but searched in our
 * own PATH (the child's environment may be a different one, or empty).
 * Returns a malloc'd NULL-terminated array (free with fs_free_names), or
 * NULL when out of memory. */
static char **
exec_candidates(const char *prog, size_t *count)
{
    const char *path = getenv("PATH"), *p, *colon;
    char **list = NULL;
    size_t n = 0, max = 2, dlen, plen = strlen(prog);

    if (strchr(prog, '/') != NULL || plen == 0)
        path = NULL;
    else if (path == NULL)
        path = "/bin:/usr/bin";
    for (p = path; p != NULL && *p != '\0'; p++)
        if (*p == ':')
            max++;
    list = calloc(max, sizeof(*list));
    if (list == NULL)
        return NULL;
    if (path == NULL) {
        if (plen > 0 && (list[n++] = strdup(prog)) == NULL)
            goto fail;
        *count = n;
        return list;
    }
    for (p = path;; p = colon + 1) {
        colon = strchr(p, ':');
        dlen = colon ? (size_t)(colon - p) : strlen(p);
        list[n] = malloc(dlen + plen + 3);
        if (list[n] == NULL)
            goto fail;
        /* An empty PATH element means the current directory. */
        snprintf(list[n], dlen + plen + 3, "%.*s/%s", (int)(dlen ? dlen : 1),
            dlen ? p : ".", prog);
        n++;
        if (colon == NULL)
            break;
    }
    *count = n;
    return list;
fail:
    fs_free_names(list, n);
    return NULL;
}

/* The highest descriptor number that can be open, plus one: the
 * RLIMIT_NOFILE soft limit (descriptors above it may exist after the
 * limit was lowered, but none we or a library opened since). Called
 * before fork: sysconf and getrlimit are not async-signal-safe. */
static int
fd_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
        rl.rlim_cur > (rlim_t)INT_MAX)
        return 1 << 20;
    return (int)rl.rlim_cur;
}

/* In the child, between fork and exec: only async-signal-safe calls.
 * Reports a failure as two ints (stage: 0 exec, 1 chdir; errno) on
 * report_fd, which close-on-exec shuts on success. */
static void
child_exec(const struct spawn_opts *o, char *const *paths, size_t npaths,
    int in_fd, int out_fd, int err_fd, int report_fd, int max_fd)
{
    struct sigaction dfl;
    sigset_t none;
    char *const *envp = o->envp ? (char *const *)o->envp : environ;
    int msg[2] = {0, ENOENT}, sig, fd, done = 0;
    size_t i;

    setpgid(0, 0);
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    for (sig = 1; sig < NSIG; sig++)
        sigaction(sig, &dfl, NULL);
    if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0) {
        msg[1] = errno;
        goto fail;
    }
    /* Descriptors we opened without O_CLOEXEC (or a library did: libcurl's
     * socketpair) are no business of a hook. Kernels before 5.11 lack
     * CLOSE_RANGE_CLOEXEC: then mark them one by one. */
#ifdef SYS_close_range
    done = syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) == 0;
#endif
    for (fd = 3; !done && fd < max_fd; fd++)
        fcntl(fd, F_SETFD, FD_CLOEXEC);
    if (o->cwd != NULL && chdir(o->cwd) != 0) {
        msg[0] = 1;
        msg[1] = errno;
        goto fail;
    }
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (i = 0; i < npaths; i++) {
        execve(paths[i], (char *const *)o->argv, envp);
        /* Like execvp: a missing or non-directory entry means go on;
         * remember a permission problem in case nothing else works. */
        if (errno == EACCES)
            msg[1] = EACCES;
        else if (errno != ENOENT && errno != ENOTDIR) {
            msg[1] = errno;
            break;
        }
    }
fail:
    if (write(report_fd, msg, sizeof(msg)) < 0)
        _exit(127);
    _exit(127);
}

/* Read what is available from c; keep up to max bytes in total, count
 * the rest as truncated. Returns 0 (would block, or EOF: c->fd is then
 * -1) or -1 with errno set. At most rounds reads, so a flood from one
 * stream cannot starve the rest of the loop. */
static int
capture_read(struct capture *c, size_t max, int *truncated, int rounds)
{
    char chunk[65536], *nbuf;
    size_t keep, ncap;
    ssize_t n;

    while (c->fd >= 0 && rounds-- > 0) {
        n = read(c->fd, chunk, sizeof(chunk));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return -1;
        }
        if (n == 0) {
            close_fd(&c->fd);
            return 0;
        }
        keep = max - c->len < (size_t)n ? max - c->len : (size_t)n;
        if (keep < (size_t)n)
            *truncated = 1;
        if (keep == 0)
            continue;
        if (c->len + keep > c->cap) {
            ncap = c->cap ? c->cap : 65536;
            while (ncap < c->len + keep)
                ncap *= 2;
            if (ncap > max)
                ncap = max;
            nbuf = realloc(c->buf, ncap);
            if (nbuf == NULL) {
                errno = ENOMEM;
                return -1;
            }
            c->buf = nbuf;
            c->cap = ncap;
        }
        memcpy(c->buf + c->len, chunk, keep);
        c->len += keep;
    }
    return 0;
}

/* Milliseconds until t (>= 0), capped at cap. */
static int
ms_until(double t, double now, int cap)
{
    double ms = (t - now) * 1000;

    if (ms <= 0)
        return 0;
    return ms < cap ? (int)ms + 1 : cap;
}

void
spawn_result_free(struct spawn_result *res)
{
    free(res->out);
    free(res->err_out);
    memset(res, 0, sizeof(*res));
}

/* One run: what its stages share. */
struct spawn_proc {
    char *prog;                 /* copy of argv[0], for messages */
    char *stdin_data;           /* copy of the stdin bytes, or NULL */
    size_t stdin_len;
    size_t max_output;
    sig_atomic_t start_int;     /* luacme_interrupted when we began */
    pid_t pid;                  /* -1 until forked */
    int reaped;                 /* 1 once waited for */
    int lost;                   /* 1: the kernel reaped it, no status */
    int exited;                 /* 1: exited, all it wrote captured */
    int wstatus;
    int in_w;                   /* our end of its stdin; -1 once closed */
    size_t in_off;              /* bytes of stdin_data written so far */
    struct capture out, err;    /* its stdout and stderr */
    int truncated;              /* output beyond max_output discarded */
    int interrupted, timed_out; /* why we stop it, if we do */
    int cancelled;              /* spawn_stop asked for it */
    int stopping, killed;       /* SIGTERM sent; SIGKILL sent */
    double deadline, kill_at;   /* deadline 0: no timeout */
    int idle_ms;                /* poll wait once only the exit is left */
};

/* Read the child's exec report: EOF means the exec happened (the pipe
 * is close-on-exec), two ints that it failed (stage and errno, see
 * child_exec). Returns 0, or -1 with err filled and the child reaped. */
static int
exec_report(struct spawn_proc *c, const char *cwd, int rep_r,
    struct luacme_err *err)
{
    int msg[2];
    ssize_t n;

    do {
        n = read(rep_r, msg, sizeof(msg));
    } while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof(msg))
        return 0;
    while (waitpid(c->pid, &c->wstatus, 0) < 0 && errno == EINTR)
        ;
    c->reaped = 1;
    if (msg[0] == 1)
        return err_set(err, err_errno_kind(msg[1]), "spawn: cwd %s: %s",
            cwd, strerror(msg[1]));
    return err_errno(err, "spawn", c->prog, msg[1]);
}

/* Fork and exec the program on fresh pipes. Returns 0 when it runs
 * (c->pid set, our non-blocking ends of its stdin, stdout and stderr in
 * c, the deadline set), or -1 with err filled: a child that could not
 * exec is reaped, one that runs is left to spawn_free. */
static int
fork_exec(struct spawn_proc *c, const struct spawn_opts *o,
    struct luacme_err *err)
{
    sigset_t all, oldmask;
    char **paths = NULL;
    size_t npaths = 0;
    int in_r = -1, out_w = -1, err_w = -1, rep_r = -1, rep_w = -1;
    int max_fd = fd_limit(), rc = -1, ok, e;

    paths = exec_candidates(c->prog, &npaths);
    if (paths == NULL) {
        err_errno(err, "spawn", c->prog, ENOMEM);
        goto out;
    }
    if (o->stdin_data != NULL) {
        ok = make_pipe(&in_r, &c->in_w) == 0;
    } else {
        in_r = fd_high(open("/dev/null", O_RDONLY | O_CLOEXEC));
        ok = in_r >= 0;
    }
    if (!ok || make_pipe(&c->out.fd, &out_w) != 0 ||
        make_pipe(&c->err.fd, &err_w) != 0 ||
        make_pipe(&rep_r, &rep_w) != 0) {
        err_errno(err, "spawn", c->prog, errno);
        goto out;
    }
    /* No handler of ours may run in the child before it resets them. */
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &oldmask);
    c->pid = fork();
    if (c->pid == 0)
        child_exec(o, paths, npaths, in_r, out_w, err_w, rep_w, max_fd);
    e = errno;
    sigprocmask(SIG_SETMASK, &oldmask, NULL);
    if (c->pid < 0) {
        err_errno(err, "spawn: fork", c->prog, e);
        goto out;
    }
    /* Also here, so a kill of the group cannot race the child's own
     * setpgid; EACCES once it has exec'd is fine. */
    setpgid(c->pid, c->pid);
    close_fd(&in_r);
    close_fd(&out_w);
    close_fd(&err_w);
    close_fd(&rep_w);
    if (exec_report(c, o->cwd, rep_r, err) != 0)
        goto out;

    if (c->in_w >= 0 && (c->stdin_len == 0 || set_nonblock(c->in_w) != 0))
        close_fd(&c->in_w);
    if (set_nonblock(c->out.fd) != 0 || set_nonblock(c->err.fd) != 0) {
        err_errno(err, "spawn", c->prog, errno);
        goto out;
    }
    if (o->timeout > 0)
        c->deadline = mono_now() + o->timeout;
    rc = 0;
out:
    close_fd(&in_r);
    close_fd(&out_w);
    close_fd(&err_w);
    close_fd(&rep_r);
    close_fd(&rep_w);
    fs_free_names(paths, npaths);
    return rc;
}

/* 1 when the child has exited. Looks without reaping: while the zombie
 * exists its PID (our process group id) cannot be reused, so the group
 * can still be killed safely. */
static int
child_exited(struct spawn_proc *c)
{
    siginfo_t si;

    memset(&si, 0, sizeof(si));
    if (waitid(P_PID, (id_t)c->pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0)
        return si.si_pid == c->pid;
    if (errno == ECHILD) {
        c->lost = 1;            /* SIGCHLD ignored: reaped, status lost */
        return 1;
    }
    return 0;
}

/* Once the deadline passed, an interrupt came or spawn_stop asked, send
 * the child's group SIGTERM, and SIGKILL when the grace period is over
 * too. */
static void
stop_when_due(struct spawn_proc *c, double now)
{
    if (!c->interrupted && c->start_int == 0 && luacme_interrupted != 0)
        c->interrupted = 1;
    if (!c->timed_out && c->deadline > 0 && now >= c->deadline)
        c->timed_out = 1;
    if ((c->interrupted || c->timed_out || c->cancelled) && !c->stopping) {
        c->stopping = 1;
        kill(-c->pid, SIGTERM);
        c->kill_at = now + LUACME_SPAWN_KILL_GRACE_S;
    }
    if (c->stopping && !c->killed && now >= c->kill_at) {
        c->killed = 1;
        kill(-c->pid, SIGKILL);
    }
}

/* Write what the pipe takes of the rest of stdin_data; close our end
 * once all is written or the child will take no more. */
static void
feed_stdin(struct spawn_proc *c)
{
    struct sigaction ign, pipe_old;
    ssize_t n;
    int e, saved;

    /* A child that exits without reading its stdin must give us EPIPE,
     * not kill us with SIGPIPE; only around the write, since between
     * steps the rest of the process runs with its own disposition. */
    memset(&ign, 0, sizeof(ign));
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    saved = sigaction(SIGPIPE, &ign, &pipe_old) == 0;
    n = write(c->in_w, c->stdin_data + c->in_off, c->stdin_len - c->in_off);
    e = errno;
    if (saved)
        sigaction(SIGPIPE, &pipe_old, NULL);
    if (n > 0)
        c->in_off += (size_t)n;
    /* EPIPE: the child does not want the rest, which is its business;
     * the exit status tells the story. */
    if (c->in_off == c->stdin_len || (n < 0 && e != EAGAIN &&
        e != EWOULDBLOCK && e != EINTR))
        close_fd(&c->in_w);
}

int
spawn_step(struct spawn_proc *c, struct luacme_err *err)
{
    size_t max = c->max_output;

    if (c->exited)
        return 1;
    stop_when_due(c, mono_now());
    if (c->in_w >= 0)
        feed_stdin(c);
    if (capture_read(&c->out, max, &c->truncated, 16) != 0 ||
        capture_read(&c->err, max, &c->truncated, 16) != 0)
        return err_errno(err, "spawn: read", c->prog, errno);
    if (!child_exited(c))
        return 0;
    /* All it wrote is in the pipes now; take that and stop, even if a
     * descendant keeps them open. */
    if (capture_read(&c->out, max, &c->truncated, 64) != 0 ||
        capture_read(&c->err, max, &c->truncated, 64) != 0)
        return err_errno(err, "spawn: read", c->prog, errno);
    c->exited = 1;
    return 1;
}

int
spawn_wait_fds(struct spawn_proc *c, struct pollfd *pfd, int *wait_ms)
{
    double now = mono_now();
    int nfd = 0, tmo;

    if (c->exited) {
        *wait_ms = 0;
        return 0;
    }
    if (c->in_w >= 0) {
        pfd[nfd].fd = c->in_w;
        pfd[nfd].events = POLLOUT;
        pfd[nfd++].revents = 0;
    }
    if (c->out.fd >= 0) {
        pfd[nfd].fd = c->out.fd;
        pfd[nfd].events = POLLIN;
        pfd[nfd++].revents = 0;
    }
    if (c->err.fd >= 0) {
        pfd[nfd].fd = c->err.fd;
        pfd[nfd].events = POLLIN;
        pfd[nfd++].revents = 0;
    }
    /* With every pipe closed only the exit is left to notice: look
     * again soon (it is usually a moment away), then less often. */
    if (nfd == 0)
        c->idle_ms = c->idle_ms < SPAWN_TICK_MS / 2 ? c->idle_ms * 2 :
            SPAWN_TICK_MS;
    tmo = nfd > 0 ? SPAWN_TICK_MS : c->idle_ms;
    if (c->deadline > 0 && !c->timed_out)
        tmo = ms_until(c->deadline, now, tmo);
    if (c->stopping && !c->killed)
        tmo = ms_until(c->kill_at, now, tmo);
    *wait_ms = tmo;
    return nfd;
}

int
spawn_finish(struct spawn_proc *c, struct spawn_result *res,
    struct luacme_err *err)
{
    memset(res, 0, sizeof(*res));
    if (!c->exited || c->reaped)
        return err_set(err, "io", "spawn: %s: not exited yet", c->prog);
    /* Stopped on purpose: nothing of that job may linger. */
    if (c->stopping)
        kill(-c->pid, SIGKILL);
    while (!c->lost && waitpid(c->pid, &c->wstatus, 0) < 0 &&
        errno == EINTR)
        ;
    c->reaped = 1;
    if (c->interrupted)
        return err_set(err, "interrupted", "interrupted");
    /* When lost, neither is set: the caller sees no status. */
    if (!c->lost && WIFEXITED(c->wstatus)) {
        res->exited = 1;
        res->status = WEXITSTATUS(c->wstatus);
    } else if (!c->lost && WIFSIGNALED(c->wstatus)) {
        res->signaled = 1;
        res->signal = WTERMSIG(c->wstatus);
    }
    res->timed_out = c->timed_out;
    res->truncated = c->truncated;
    res->out = c->out.buf;
    res->out_len = c->out.len;
    res->err_out = c->err.buf;
    res->err_len = c->err.len;
    c->out.buf = c->err.buf = NULL;
    c->out.len = c->err.len = 0;
    return 0;
}

/* Step c, waiting on its pipes with poll() in between, until it has
 * exited. Returns 0, or -1 with err filled. */
static int
step_until_exit(struct spawn_proc *c, struct luacme_err *err)
{
    struct pollfd pfd[3];
    int r, nfd, ms;

    while ((r = spawn_step(c, err)) == 0) {
        nfd = spawn_wait_fds(c, pfd, &ms);
        if (poll(pfd, (nfds_t)nfd, ms) < 0 && errno != EINTR)
            return err_errno(err, "spawn: poll", c->prog, errno);
    }
    return r < 0 ? -1 : 0;
}

void
spawn_stop(struct spawn_proc *c)
{
    struct luacme_err err;

    if (c == NULL || c->pid <= 0 || c->reaped || c->exited)
        return;
    c->cancelled = 1;
    /* Bounded: stop_when_due sends SIGKILL once the grace is over. A
     * failed read leaves the rest to spawn_free's SIGKILL. */
    step_until_exit(c, &err);
}

void
spawn_free(struct spawn_proc *c)
{
    if (c == NULL)
        return;
    if (c->pid > 0 && !c->reaped) {
        kill(-c->pid, SIGKILL);
        kill(c->pid, SIGKILL);
        while (waitpid(c->pid, &c->wstatus, 0) < 0 && errno == EINTR)
            ;
    }
    close_fd(&c->in_w);
    close_fd(&c->out.fd);
    close_fd(&c->err.fd);
    free(c->out.buf);
    free(c->err.buf);
    free(c->stdin_data);
    free(c->prog);
    free(c);
}

int
spawn_start(const struct spawn_opts *o, struct spawn_proc **out,
    struct luacme_err *err)
{
    struct spawn_proc *c;

    if (o->argv == NULL || o->argv[0] == NULL)
        return err_set(err, "io", "spawn: empty argv");
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return err_errno(err, "spawn", o->argv[0], ENOMEM);
    c->start_int = luacme_interrupted;
    c->pid = -1;
    c->in_w = c->out.fd = c->err.fd = -1;
    c->idle_ms = 1;
    c->max_output = o->max_output;
    c->prog = strdup(o->argv[0]);
    if (o->stdin_data != NULL) {
        c->stdin_len = o->stdin_len;
        /* +1: a zero-length copy still marks "stdin is a pipe". */
        c->stdin_data = malloc(o->stdin_len + 1);
        if (c->stdin_data != NULL)
            memcpy(c->stdin_data, o->stdin_data, o->stdin_len);
    }
    if (c->prog == NULL || (o->stdin_data != NULL && c->stdin_data == NULL)) {
        err_errno(err, "spawn", o->argv[0], ENOMEM);
        spawn_free(c);
        return -1;
    }
    if (fork_exec(c, o, err) != 0) {
        spawn_free(c);
        return -1;
    }
    *out = c;
    return 0;
}

int
spawn_run(const struct spawn_opts *o, struct spawn_result *res,
    struct luacme_err *err)
{
    struct spawn_proc *c = NULL;
    int rc = -1;

    memset(res, 0, sizeof(*res));
    if (spawn_start(o, &c, err) != 0)
        return -1;
    if (step_until_exit(c, err) == 0 && spawn_finish(c, res, err) == 0)
        rc = 0;
    spawn_free(c);
    return rc;
}
