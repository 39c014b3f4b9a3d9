/* fs: atomic writes, directories and locks (core/fs.c). */
#define _DEFAULT_SOURCE     /* setgroups */

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "fs.h"
#include "scratch.h"

/* 1 when path holds exactly want. */
static int
content_is(const char *path, const char *want)
{
    char *data = NULL;
    size_t len = 0;
    struct luacme_err err;
    int ok;

    if (fs_read_file(path, 1 << 20, &data, &len, &err) != 0)
        return 0;
    ok = len == strlen(want) && memcmp(data, want, len) == 0;
    free(data);
    return ok;
}

/* Number of entries in dir (-1 on error). */
static long
entries(const char *dir)
{
    char **names = NULL;
    size_t n = 0;
    struct luacme_err err;

    if (fs_listdir(dir, &names, &n, &err) != 0)
        return -1;
    fs_free_names(names, n);
    return (long)n;
}

static unsigned
mode_of(const char *path)
{
    struct fs_stat st;
    struct luacme_err err;

    if (fs_stat(path, 1, &st, &err) != 0)
        return 0xffff;
    return st.mode;
}

static void
test_write_file(void)
{
    struct luacme_err err;
    const char *f = tpath("w/a.txt");
    mode_t old;

    CHECK(fs_mkdir(tpath("w"), 0700, &err) == 0);
    CHECK(fs_write_file(f, "first", 5, 0644, &err) == 0);
    CHECK(content_is(f, "first"));
    CHECK(fs_write_file(f, "second!", 7, 0644, &err) == 0);
    CHECK(content_is(f, "second!"));
    CHECK(entries(tpath("w")) == 1);        /* no temp file left */

    /* The mode asked for, whatever the umask. */
    old = umask(077);
    CHECK(fs_write_file(f, "x", 1, 0644, &err) == 0);
    CHECK(mode_of(f) == 0644);
    umask(000);
    CHECK(fs_write_file(f, "y", 1, 0600, &err) == 0);
    CHECK(mode_of(f) == 0600);
    CHECK(fs_write_file(tpath("w/b"), "", 0, 0640, &err) == 0);
    CHECK(mode_of(tpath("w/b")) == 0640);
    CHECK(content_is(tpath("w/b"), ""));
    umask(old);
    CHECK(entries(tpath("w")) == 2);

    /* Missing directory. */
    CHECK(fs_write_file(tpath("nodir/a"), "x", 1, 0644, &err) == -1);
    CHECK(kind_is(&err, "not_found"));
    CHECK(strstr(err.msg, "nodir/a") != NULL);

    /* The rename fails (a directory is in the way): the temp file made
     * before it must be gone and the directory untouched. */
    CHECK(fs_mkdir(tpath("w/d"), 0700, &err) == 0);
    CHECK(fs_write_file(tpath("w/d"), "x", 1, 0644, &err) == -1);
    CHECK(kind_is(&err, "io"));
    CHECK(entries(tpath("w")) == 3);
    CHECK(entries(tpath("w/d")) == 0);
}

/* In a directory we may not write to, the old file stays as it was and
 * no temp file appears. Root may write anywhere, so as root the attempt
 * runs in a child that dropped to nobody. */
static void
test_write_readonly_dir(void)
{
    struct luacme_err err;
    const char *dir = tpath("ro"), *f = tpath("ro/cert.pem");
    pid_t pid;
    int st = -1, rc;

    CHECK(fs_mkdir(dir, 0755, &err) == 0);
    CHECK(fs_write_file(f, "old", 3, 0644, &err) == 0);
    CHECK(fs_chmod(dir, 0555, &err) == 0);
    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        if (geteuid() == 0 && (setgroups(0, NULL) != 0 ||
            setgid(65534) != 0 || setuid(65534) != 0))
            _exit(3);
        rc = fs_write_file(f, "new", 3, 0644, &err);
        _exit(rc == -1 && kind_is(&err, "permission") &&
            strstr(err.msg, "cert.pem") != NULL ? 0 : 1);
    }
    CHECK(pid > 0 && waitpid(pid, &st, 0) == pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(content_is(f, "old"));
    CHECK(entries(dir) == 1);
    CHECK(fs_chmod(dir, 0755, &err) == 0);
}

static void
test_read_file(void)
{
    struct luacme_err err;
    char *data = NULL;
    size_t len = 0;

    CHECK(fs_write_file(tpath("r"), "0123456789", 10, 0600, &err) == 0);
    CHECK(fs_read_file(tpath("r"), 10, &data, &len, &err) == 0);
    CHECK(len == 10 && data != NULL && data[10] == '\0');
    free(data);
    data = NULL;
    CHECK(fs_read_file(tpath("r"), 9, &data, &len, &err) == -1);
    CHECK(kind_is(&err, "too_large") && data == NULL);
    /* /proc files report size 0: read to the end anyway. */
    CHECK(fs_read_file("/proc/self/status", 1 << 20, &data, &len, &err)
        == 0);
    CHECK(len > 0 && data != NULL && strstr(data, "Pid:") != NULL);
    free(data);
    data = NULL;
    CHECK(fs_read_file("/proc/self/status", 8, &data, &len, &err) == -1);
    CHECK(kind_is(&err, "too_large"));
    CHECK(fs_read_file(tpath("nope"), 10, &data, &len, &err) == -1);
    CHECK(kind_is(&err, "not_found"));
    CHECK(fs_read_file(tmpdir, 10, &data, &len, &err) == -1);
    CHECK(kind_is(&err, "io"));
}

static void
test_dirs(void)
{
    struct luacme_err err;
    char **names = NULL;
    size_t n = 0;
    mode_t old = umask(077);

    CHECK(fs_mkdir_p(tpath("p/q//r/"), 0750, &err) == 0);
    CHECK(mode_of(tpath("p")) == 0750 && mode_of(tpath("p/q/r")) == 0750);
    CHECK(fs_mkdir_p(tpath("p/q/r"), 0700, &err) == 0);   /* exists: ok */
    CHECK(mode_of(tpath("p/q/r")) == 0750);               /* untouched */
    CHECK(fs_mkdir(tpath("p/q"), 0700, &err) == -1 && kind_is(&err,
        "exists"));
    CHECK(fs_write_file(tpath("p/file"), "x", 1, 0600, &err) == 0);
    CHECK(fs_mkdir_p(tpath("p/file/sub"), 0700, &err) == -1);
    CHECK(kind_is(&err, "exists") && strstr(err.msg, "not a directory"));
    CHECK(fs_mkdir_p(tpath("p/file"), 0700, &err) == -1);
    CHECK(kind_is(&err, "exists"));
    umask(old);

    CHECK(fs_write_file(tpath("p/b"), "", 0, 0600, &err) == 0);
    CHECK(fs_write_file(tpath("p/a"), "", 0, 0600, &err) == 0);
    CHECK(fs_listdir(tpath("p"), &names, &n, &err) == 0);
    CHECK(n == 4 && strcmp(names[0], "a") == 0 &&
        strcmp(names[1], "b") == 0 && strcmp(names[2], "file") == 0 &&
        strcmp(names[3], "q") == 0);
    fs_free_names(names, n);
}

static void
test_lock(void)
{
    struct luacme_err err;
    const char *f = tpath("lock");
    int fd = -1, fd2 = -1, st = -1;
    pid_t pid;
    double t0;
    char want[32];
    struct stat sb;

    CHECK(fs_lock(f, 0, 0, &fd, &err) == 0 && fd >= 0);
    CHECK(mode_of(f) == 0600);
    /* Nothing written into the lock file: a daily lock wears no flash. */
    CHECK(stat(f, &sb) == 0 && sb.st_size == 0);
    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        /* Another process: busy after about the timeout. */
        t0 = now();
        if (fs_lock(f, 0, 0.3, &fd2, &err) != -1 || !kind_is(&err, "busy"))
            _exit(1);
        if (now() - t0 < 0.29 || now() - t0 > 2)
            _exit(2);
        if (strstr(err.msg, "locked by another process") == NULL)
            _exit(3);
        /* The holder is named from the kernel's lock table. */
        snprintf(want, sizeof(want), "(pid %ld)", (long)getppid());
        if (strstr(err.msg, want) == NULL)
            _exit(4);
        _exit(0);
    }
    CHECK(pid > 0 && waitpid(pid, &st, 0) == pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    fs_unlock(fd);
    CHECK(fs_lock(f, 0, 0, &fd2, &err) == 0);
    fs_unlock(fd2);
}

int
main(void)
{
    if (scratch_open("fs") != 0)
        return 1;
    chmod(tmpdir, 0755);    /* the unprivileged child must get in */
    test_write_file();
    test_write_readonly_dir();
    test_read_file();
    test_dirs();
    test_lock();
    scratch_close();
    return check_done();
}
