/* proc: spawn_run, the way hook programs run, and the same run in steps
 * for an event loop (core/proc.c). */
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "fs.h"
#include "luacme_limits.h"
#include "proc.h"
#include "scratch.h"

/* Run argv; returns spawn_run's result. */
static int
run(const char *const *argv, const char *const *envp, const char *in,
    double timeout, size_t max, struct spawn_result *res,
    struct luacme_err *err)
{
    struct spawn_opts o;

    memset(&o, 0, sizeof(o));
    o.argv = argv;
    o.envp = envp;
    o.stdin_data = in;
    o.stdin_len = in ? strlen(in) : 0;
    o.timeout = timeout;
    o.max_output = max;
    return spawn_run(&o, res, err);
}

static int
all_bytes(const char *p, size_t len, char c)
{
    size_t i;

    for (i = 0; i < len; i++)
        if (p[i] != c)
            return 0;
    return 1;
}

static void
test_spawn_basic(void)
{
    static const char *const exit7[] = {"sh", "-c",
        "echo out; echo err >&2; exit 7", NULL};
    static const char *const killed[] = {"sh", "-c", "kill -9 $$", NULL};
    static const char *const cat[] = {"cat", NULL};
    static const char *const missing[] = {"luacme-no-such-program", NULL};
    static const char *const missing2[] = {"/nonexistent/prog", NULL};
    static const char *const env[] = {"env", NULL};
    static const char *const one[] = {"FOO=bar baz", NULL};
    static const char *const none[] = {NULL};
    struct spawn_result r;
    struct luacme_err err;
    char exe[256];

    CHECK(run(exit7, NULL, NULL, 0, 1024, &r, &err) == 0);
    CHECK(r.exited && r.status == 7 && !r.signaled && !r.timed_out);
    CHECK(r.out_len == 4 && memcmp(r.out, "out\n", 4) == 0);
    CHECK(r.err_len == 4 && memcmp(r.err_out, "err\n", 4) == 0);
    spawn_result_free(&r);

    CHECK(run(killed, NULL, NULL, 0, 1024, &r, &err) == 0);
    CHECK(!r.exited && r.signaled && r.signal == SIGKILL);
    spawn_result_free(&r);

    CHECK(run(cat, NULL, "hello\n", 0, 1024, &r, &err) == 0);
    CHECK(r.exited && r.status == 0 && r.out_len == 6 &&
        memcmp(r.out, "hello\n", 6) == 0);
    spawn_result_free(&r);
    /* Without stdin data the child reads /dev/null: EOF at once. */
    CHECK(run(cat, NULL, NULL, 5, 1024, &r, &err) == 0);
    CHECK(r.exited && r.status == 0 && r.out_len == 0 && !r.timed_out);
    spawn_result_free(&r);

    CHECK(run(missing, NULL, NULL, 0, 1024, &r, &err) == -1);
    CHECK(kind_is(&err, "not_found"));
    CHECK(strstr(err.msg, "luacme-no-such-program") != NULL);
    CHECK(run(missing2, NULL, NULL, 0, 1024, &r, &err) == -1);
    CHECK(kind_is(&err, "not_found"));
    /* A file that is not executable. */
    CHECK(fs_write_file(tpath("noexec"), "#!/bin/sh\n", 10, 0644, &err)
        == 0);
    snprintf(exe, sizeof(exe), "%s", tpath("noexec"));
    {
        const char *const noexec[] = {exe, NULL};

        CHECK(run(noexec, NULL, NULL, 0, 1024, &r, &err) == -1);
        CHECK(kind_is(&err, "permission"));
    }

    /* env replaces the whole environment; the program is still found in
     * our PATH although the child has none. */
    CHECK(run(env, one, NULL, 0, 1024, &r, &err) == 0);
    CHECK(r.exited && r.status == 0);
    CHECK(r.out_len == 12 && memcmp(r.out, "FOO=bar baz\n", 12) == 0);
    spawn_result_free(&r);
    CHECK(run(env, none, NULL, 0, 1024, &r, &err) == 0);
    CHECK(r.exited && r.status == 0 && r.out_len == 0);
    spawn_result_free(&r);
}

static void
test_spawn_cwd(void)
{
    static const char *const pwd[] = {"pwd", NULL};
    struct spawn_opts o;
    struct spawn_result r;
    struct luacme_err err;
    char want[300];

    memset(&o, 0, sizeof(o));
    o.argv = pwd;
    o.cwd = tmpdir;
    o.max_output = 1024;
    CHECK(spawn_run(&o, &r, &err) == 0);
    snprintf(want, sizeof(want), "%s\n", tmpdir);
    CHECK(r.out_len == strlen(want) && memcmp(r.out, want, r.out_len) == 0);
    spawn_result_free(&r);
    o.cwd = tpath("no-such-dir");
    CHECK(spawn_run(&o, &r, &err) == -1);
    CHECK(kind_is(&err, "not_found") && strstr(err.msg, "cwd") != NULL);
}

/* Over 1 MiB on each stream, interleaved, plus a big stdin: a reader
 * that drained one pipe at a time (or wrote all of stdin first) would
 * deadlock here, so a timeout guards the test. */
static void
test_spawn_large(void)
{
    static const char *const both[] = {"sh", "-c",
        "i=0; while [ $i -lt 24 ]; do head -c 65536 /dev/zero | tr '\\0' o;"
        " head -c 65536 /dev/zero | tr '\\0' e >&2; i=$((i+1)); done",
        NULL};
    static const char *const cat[] = {"cat", NULL};
    static const char *const yes_[] = {"sh", "-c",
        "head -c 3000000 /dev/zero", NULL};
    static const char *const true_[] = {"true", NULL};
    const size_t each = 24 * 65536;                 /* 1.5 MiB */
    struct spawn_result r;
    struct luacme_err err;
    char *big;
    size_t i, blen = 3 * 1024 * 1024;

    CHECK(run(both, NULL, NULL, 30, 4 << 20, &r, &err) == 0);
    CHECK(r.exited && r.status == 0 && !r.timed_out && !r.truncated);
    CHECK(r.out_len == each && all_bytes(r.out, r.out_len, 'o'));
    CHECK(r.err_len == each && all_bytes(r.err_out, r.err_len, 'e'));
    spawn_result_free(&r);

    /* The default cap: 1 MiB kept of each, the rest discarded, and the
     * child still runs to its end (no SIGPIPE, no block). */
    CHECK(run(both, NULL, NULL, 30, LUACME_SPAWN_MAX_OUTPUT, &r, &err) == 0);
    CHECK(r.exited && r.status == 0 && !r.timed_out && r.truncated);
    CHECK(r.out_len == LUACME_SPAWN_MAX_OUTPUT &&
        r.err_len == LUACME_SPAWN_MAX_OUTPUT);
    CHECK(all_bytes(r.out, r.out_len, 'o'));
    spawn_result_free(&r);

    CHECK(run(yes_, NULL, NULL, 30, 100, &r, &err) == 0);
    CHECK(r.exited && r.status == 0 && r.truncated && r.out_len == 100);
    spawn_result_free(&r);

    big = malloc(blen + 1);
    CHECK(big != NULL);
    if (big == NULL)
        return;
    for (i = 0; i < blen; i++)
        big[i] = (char)('a' + i % 26);
    big[blen] = '\0';
    CHECK(run(cat, NULL, big, 30, 4 << 20, &r, &err) == 0);
    CHECK(r.exited && r.status == 0 && !r.timed_out);
    CHECK(r.out_len == blen && memcmp(r.out, big, blen) == 0);
    spawn_result_free(&r);
    /* A child that never reads its stdin: EPIPE for us, not SIGPIPE. */
    CHECK(run(true_, NULL, big, 30, 1024, &r, &err) == 0);
    CHECK(r.exited && r.status == 0);
    spawn_result_free(&r);
    free(big);
}

static void
test_spawn_timeout(void)
{
    static const char *const slp[] = {"sleep", "30", NULL};
    static const char *const stubborn[] = {"sh", "-c",
        "trap '' TERM; sleep 30", NULL};
    static const char *const bg[] = {"sh", "-c", "sleep 30 & echo hi",
        NULL};
    struct spawn_result r;
    struct luacme_err err;
    double t0 = now(), el;

    CHECK(run(slp, NULL, NULL, 0.3, 1024, &r, &err) == 0);
    el = now() - t0;
    CHECK(r.timed_out && r.signaled && r.signal == SIGTERM && !r.exited);
    CHECK(el >= 0.29 && el < 2);
    spawn_result_free(&r);

    /* Ignoring SIGTERM only buys the grace period. */
    t0 = now();
    CHECK(run(stubborn, NULL, NULL, 0.3, 1024, &r, &err) == 0);
    el = now() - t0;
    CHECK(r.timed_out && r.signaled && r.signal == SIGKILL);
    CHECK(el >= 0.3 + LUACME_SPAWN_KILL_GRACE_S - 0.05 &&
        el < 0.3 + LUACME_SPAWN_KILL_GRACE_S + 2);
    spawn_result_free(&r);

    /* A descendant keeping stdout open does not keep us waiting once
     * the child itself has exited. */
    t0 = now();
    CHECK(run(bg, NULL, NULL, 10, 1024, &r, &err) == 0);
    el = now() - t0;
    CHECK(r.exited && r.status == 0 && !r.timed_out && el < 5);
    CHECK(r.out_len == 3 && memcmp(r.out, "hi\n", 3) == 0);
    spawn_result_free(&r);
}

static void
on_alarm(int sig)
{
    luacme_interrupted = sig;
}

static void
test_spawn_interrupt(void)
{
    static const char *const slp[] = {"sleep", "30", NULL};
    static const char *const echo[] = {"echo", "still", NULL};
    struct spawn_result r;
    struct luacme_err err;
    struct sigaction sa;
    double t0 = now(), el;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    alarm(1);
    CHECK(run(slp, NULL, NULL, 0, 1024, &r, &err) == -1);
    el = now() - t0;
    CHECK(kind_is(&err, "interrupted"));
    CHECK(strcmp(err.msg, "interrupted") == 0);
    CHECK(el >= 0.9 && el < 4);
    CHECK(r.out == NULL && r.out_len == 0);

    /* Already interrupted when called (cleanup hooks run while the
     * interrupt unwinds): the program still runs to its end. */
    CHECK(run(echo, NULL, NULL, 5, 1024, &r, &err) == 0);
    CHECK(r.exited && r.status == 0 && r.out_len == 6);
    spawn_result_free(&r);
    luacme_interrupted = 0;
    signal(SIGALRM, SIG_DFL);
}

/* The child starts clean: default dispositions, empty mask, none of our
 * descriptors. */
static void
test_spawn_clean_child(void)
{
    static const char *const sig[] = {"grep", "-E", "^Sig(Blk|Ign)",
        "/proc/self/status", NULL};
    static const char *const fds[] = {"ls", "/proc/self/fd", NULL};
    struct spawn_result r;
    struct luacme_err err;
    sigset_t set, old;
    int leak;

    signal(SIGUSR1, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    sigprocmask(SIG_BLOCK, &set, &old);
    CHECK(run(sig, NULL, NULL, 5, 4096, &r, &err) == 0);
    CHECK(r.out != NULL && r.out_len > 0);
    if (r.out != NULL) {
        r.out[r.out_len - 1] = '\0';
        CHECK_STR(r.out, "SigBlk:\t0000000000000000\n"
            "SigIgn:\t0000000000000000");
    }
    spawn_result_free(&r);
    sigprocmask(SIG_SETMASK, &old, NULL);
    signal(SIGUSR1, SIG_DFL);
    signal(SIGINT, SIG_DFL);

    leak = dup2(2, 47);         /* no close-on-exec */
    CHECK(leak == 47);
    CHECK(run(fds, NULL, NULL, 5, 4096, &r, &err) == 0);
    CHECK(r.out != NULL && r.out_len > 0);
    if (r.out != NULL) {
        r.out[r.out_len - 1] = '\0';
        /* 0-2 and ls's own directory handle, nothing of ours. */
        CHECK_STR(r.out, "0\n1\n2\n3");
    }
    spawn_result_free(&r);
    close(47);
}

/* With SIGCHLD ignored the kernel reaps the child itself: the output
 * still arrives and the call returns, just without a status. */
static void
test_spawn_sigchld_ignored(void)
{
    static const char *const echo[] = {"sh", "-c", "echo hi; exit 3", NULL};
    struct spawn_result r;
    struct luacme_err err;
    double t0 = now();

    signal(SIGCHLD, SIG_IGN);
    CHECK(run(echo, NULL, NULL, 10, 1024, &r, &err) == 0);
    CHECK(!r.exited && !r.signaled && !r.timed_out && now() - t0 < 5);
    CHECK(r.out_len == 3 && memcmp(r.out, "hi\n", 3) == 0);
    spawn_result_free(&r);
    signal(SIGCHLD, SIG_DFL);
}

/* Two programs in steps, one poll() over both: they run side by side,
 * each one's timeout holds, and spawn_stop ends one politely. */
static void
test_spawn_steps(void)
{
    static const char *const slow[] = {"sh", "-c", "sleep 0.4; echo a",
        NULL};
    static const char *const hang[] = {"sleep", "30", NULL};
    struct spawn_opts o1, o2;
    struct spawn_proc *p1 = NULL, *p2 = NULL;
    struct spawn_result r1, r2;
    struct pollfd pfd[6];
    struct luacme_err err;
    int d1 = 0, d2 = 0, n, ms1, ms2;
    double t0 = now();

    memset(&o1, 0, sizeof(o1));
    o1.argv = slow;
    o1.max_output = 1024;
    o2 = o1;
    o2.argv = hang;
    o2.timeout = 0.2;
    CHECK(spawn_start(&o1, &p1, &err) == 0);
    CHECK(spawn_start(&o2, &p2, &err) == 0);
    while (!d1 || !d2) {
        n = 0;
        ms1 = ms2 = 1000;
        if (!d1)
            n += spawn_wait_fds(p1, pfd + n, &ms1);
        if (!d2)
            n += spawn_wait_fds(p2, pfd + n, &ms2);
        CHECK((d1 || ms1 <= 100) && (d2 || ms2 <= 100));
        poll(pfd, (nfds_t)n, ms1 < ms2 ? ms1 : ms2);
        if (!d1)
            d1 = spawn_step(p1, &err);
        if (!d2)
            d2 = spawn_step(p2, &err);
        CHECK(d1 >= 0 && d2 >= 0);
        if (now() - t0 > 10)
            break;
    }
    CHECK(spawn_finish(p1, &r1, &err) == 0);
    CHECK(r1.exited && r1.status == 0 && r1.out_len == 2);
    CHECK(spawn_finish(p2, &r2, &err) == 0);
    CHECK(r2.timed_out && r2.signaled && r2.signal == SIGTERM);
    /* Side by side: 0.4 s and a 0.2 s timeout, not one after the other. */
    CHECK(now() - t0 < 0.55);
    CHECK(spawn_step(p1, &err) == 1);
    spawn_result_free(&r1);
    spawn_result_free(&r2);
    spawn_free(p1);
    spawn_free(p2);

    /* spawn_stop: SIGTERM, the program ends at once; not reaped twice. */
    CHECK(spawn_start(&o1, &p1, &err) == 0);
    t0 = now();
    spawn_stop(p1);
    CHECK(now() - t0 < 0.5);
    CHECK(spawn_step(p1, &err) == 1);
    spawn_free(p1);
    spawn_free(NULL);
}

int
main(void)
{
    if (scratch_open("proc") != 0)
        return 1;
    test_spawn_basic();
    test_spawn_cwd();
    test_spawn_large();
    test_spawn_timeout();
    test_spawn_interrupt();
    test_spawn_clean_child();
    test_spawn_sigchld_ignored();
    test_spawn_steps();
    scratch_close();
    return check_done();
}
