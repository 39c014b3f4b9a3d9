/*
 * Files, directories, locks and child processes for the Lua side: the
 * parts of POSIX that plain Lua lacks, written so that state on disk is
 * never half-written and a hook program can never wedge or outlive us.
 */
/* flock(2), NSIG and syscall(2) are outside POSIX.1-2008. */
#define _DEFAULT_SOURCE

#include "fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "luacme_limits.h"

extern char **environ;

/* How often a waiting lock retries, and how often the spawn loop wakes
 * to look at the clock and luacme_interrupted when nothing happens. */
#define LOCK_RETRY_MS 25
#define SPAWN_TICK_MS 100

/* The close_range(2) flag, for headers that predate it. */
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

static const char *
kind_of(int e)
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

/* Fill err from errno value e for operation op on path. Returns -1. */
static int
sys_fail(struct luacme_err *err, const char *op, const char *path, int e)
{
    return err_set(err, kind_of(e), "%s: %s: %s", op, path, strerror(e));
}

static double
mono_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
sleep_ms(long ms)
{
    struct timespec ts;

    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    /* A signal ends the sleep early; callers look at the clock and at
     * luacme_interrupted again, which is what we want. */
    nanosleep(&ts, NULL);
}

/* The directory part of path, malloc'd: "." without a slash, "/" for a
 * file in the root. NULL when out of memory. */
static char *
dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');

    if (slash == NULL)
        return strdup(".");
    while (slash > path && slash[-1] == '/')
        slash--;
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

/* Write all len bytes, across short writes and EINTR. Returns 0, or -1
 * with errno set. */
static int
write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    ssize_t n;

    while (len > 0) {
        n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Six characters for a temporary name. O_EXCL makes the name safe to
 * guess; the mix only keeps two writers from colliding repeatedly. */
static void
tmp_suffix(char *out)
{
    static const char set[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    static unsigned long counter;
    struct timespec ts;
    unsigned long long x;
    int i;

    clock_gettime(CLOCK_REALTIME, &ts);
    x = (unsigned long long)ts.tv_nsec ^
        ((unsigned long long)ts.tv_sec << 20) ^
        ((unsigned long long)getpid() << 40) ^
        (unsigned long long)(++counter) * 0x9e3779b97f4a7c15ULL;
    for (i = 0; i < 6; i++) {
        x ^= x >> 29;
        x *= 0xbf58476d1ce4e5b9ULL;
        x ^= x >> 32;
        out[i] = set[x % (sizeof(set) - 1)];
    }
    out[6] = '\0';
}

/* fsync the directory at dir; EINVAL and ENOTSUP (file systems that do
 * not sync directories) count as done. Returns 0 or -1 with err. */
static int
sync_dir(const char *op, const char *dir, struct luacme_err *err)
{
    int fd, e;

    do {
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return sys_fail(err, op, dir, errno);
    if (fsync(fd) != 0 && errno != EINVAL && errno != ENOTSUP) {
        e = errno;
        close(fd);
        return sys_fail(err, op, dir, e);
    }
    close(fd);
    return 0;
}

int
fs_fsync_dir(const char *path, struct luacme_err *err)
{
    return sync_dir("fsync_dir", path, err);
}

int
fs_write_file(const char *path, const void *data, size_t len,
    unsigned mode, struct luacme_err *err)
{
    char *tmp = NULL, *dir = NULL;
    size_t plen = strlen(path);
    int fd = -1, created = 0, rc = -1, tries, e;

    /* "" would name a temporary file in the current directory. */
    if (plen == 0)
        return sys_fail(err, "write_file", path, ENOENT);
    mode &= 07777;
    tmp = malloc(plen + sizeof(".tmp.XXXXXX"));
    dir = dir_of(path);
    if (tmp == NULL || dir == NULL) {
        sys_fail(err, "write_file", path, ENOMEM);
        goto out;
    }
    for (tries = 0;; tries++) {
        memcpy(tmp, path, plen);
        memcpy(tmp + plen, ".tmp.", 5);
        tmp_suffix(tmp + plen + 5);
        /* Created with the final mode: a private key is never readable
         * by others, not even for a moment. */
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
        if (fd >= 0)
            break;
        if ((errno != EEXIST && errno != EINTR) || tries >= 100) {
            sys_fail(err, "write_file", path, errno);
            goto out;
        }
    }
    created = 1;
    /* The umask may have narrowed the mode; the caller asked for it
     * exactly (a public certificate 0644 under umask 077, too). */
    if (fchmod(fd, mode) != 0 || write_all(fd, data, len) != 0 ||
        fsync(fd) != 0) {
        sys_fail(err, "write_file", path, errno);
        goto out;
    }
    e = close(fd);
    fd = -1;
    if (e != 0) {
        sys_fail(err, "write_file", path, errno);
        goto out;
    }
    if (rename(tmp, path) != 0) {
        sys_fail(err, "write_file: rename", path, errno);
        goto out;
    }
    created = 0;
    if (sync_dir("write_file", dir, err) != 0)
        goto out;
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    if (created)
        unlink(tmp);
    free(tmp);
    free(dir);
    return rc;
}

int
fs_read_file(const char *path, size_t max, char **data, size_t *len,
    struct luacme_err *err)
{
    struct stat st;
    char *buf = NULL, *nbuf;
    size_t cap, used = 0;
    ssize_t n;
    int fd = -1, rc = -1;

    do {
        fd = open(path, O_RDONLY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        sys_fail(err, "read_file", path, errno);
        goto out;
    }
    if (fstat(fd, &st) != 0) {
        sys_fail(err, "read_file", path, errno);
        goto out;
    }
    if (S_ISDIR(st.st_mode)) {
        sys_fail(err, "read_file", path, EISDIR);
        goto out;
    }
    /* The size is a hint only (/proc files say 0, files grow): read to
     * the end, but never more than max + 1 bytes. */
    if (st.st_size > 0 && (uint64_t)st.st_size > max)
        goto too_large;
    cap = st.st_size > 0 ? (size_t)st.st_size + 1 : 4096;
    if (cap > max + 1)
        cap = max + 1;
    buf = malloc(cap + 1);
    if (buf == NULL) {
        sys_fail(err, "read_file", path, ENOMEM);
        goto out;
    }
    for (;;) {
        if (used == cap) {
            if (cap > max)
                goto too_large;
            cap = cap > (max + 1) / 2 ? max + 1 : cap * 2;
            nbuf = realloc(buf, cap + 1);
            if (nbuf == NULL) {
                sys_fail(err, "read_file", path, ENOMEM);
                goto out;
            }
            buf = nbuf;
        }
        n = read(fd, buf + used, cap - used);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            sys_fail(err, "read_file", path, errno);
            goto out;
        }
        if (n == 0)
            break;
        used += (size_t)n;
    }
    if (used > max)
        goto too_large;
    buf[used] = '\0';
    *data = buf;
    *len = used;
    buf = NULL;
    rc = 0;
    goto out;
too_large:
    err_set(err, "too_large", "read_file: %s: larger than %zu bytes", path,
        max);
out:
    if (fd >= 0)
        close(fd);
    free(buf);
    return rc;
}

/* mkdir path, then set the mode exactly and make the new entry durable.
 * *made tells whether it was created (0 with EEXIST in errno else). */
static int
make_dir(const char *op, const char *path, unsigned mode, int *made,
    struct luacme_err *err)
{
    char *parent = NULL;
    int fd = -1, bad, rc = -1;

    *made = 0;
    if (mkdir(path, mode & 07777) != 0) {
        if (errno == EEXIST)
            return 0;
        return sys_fail(err, op, path, errno);
    }
    *made = 1;
    /* Through a descriptor of the new directory, never chmod(path):
     * whoever can write the parent (a web server's user owning a
     * webroot) could swap the new entry for a symlink to any file
     * between the two calls, and chmod would follow it. */
    do {
        fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd >= 0)
        bad = fchmod(fd, mode & 07777) != 0;
    else if (errno == EACCES)
        /* A mode without the owner's read bit: no descriptor then, but
         * fchmodat without following works (glibc goes via /proc). */
        bad = fchmodat(AT_FDCWD, path, mode & 07777,
            AT_SYMLINK_NOFOLLOW) != 0;
    else
        bad = 1;
    if (bad) {
        sys_fail(err, op, path, errno);
        goto out;
    }
    parent = dir_of(path);
    if (parent == NULL) {
        sys_fail(err, op, path, ENOMEM);
        goto out;
    }
    if (sync_dir(op, parent, err) != 0)
        goto out;
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    free(parent);
    return rc;
}

int
fs_mkdir(const char *path, unsigned mode, struct luacme_err *err)
{
    int made;

    if (make_dir("mkdir", path, mode, &made, err) != 0)
        return -1;
    if (!made)
        return sys_fail(err, "mkdir", path, EEXIST);
    return 0;
}

/* Make sure path is a directory, creating it when missing. */
static int
ensure_dir(const char *path, unsigned mode, struct luacme_err *err)
{
    struct stat st;
    int made;

    if (make_dir("mkdir_p", path, mode, &made, err) != 0)
        return -1;
    if (made)
        return 0;
    if (stat(path, &st) != 0)
        return sys_fail(err, "mkdir_p", path, errno);
    if (!S_ISDIR(st.st_mode))
        return err_set(err, "exists",
            "mkdir_p: %s: exists and is not a directory", path);
    return 0;
}

int
fs_mkdir_p(const char *path, unsigned mode, struct luacme_err *err)
{
    char *buf = NULL;
    size_t i, len = strlen(path);
    int rc = -1;

    if (len == 0)
        return sys_fail(err, "mkdir_p", path, ENOENT);
    buf = strdup(path);
    if (buf == NULL)
        return sys_fail(err, "mkdir_p", path, ENOMEM);
    /* Each prefix that ends a component, then the whole path. */
    for (i = 1; i < len; i++) {
        if (buf[i] != '/' || buf[i - 1] == '/')
            continue;
        buf[i] = '\0';
        if (ensure_dir(buf, mode, err) != 0)
            goto out;
        buf[i] = '/';
    }
    if (ensure_dir(buf, mode, err) != 0)
        goto out;
    rc = 0;
out:
    free(buf);
    return rc;
}

int
fs_stat(const char *path, int follow, struct fs_stat *st,
    struct luacme_err *err)
{
    struct stat sb;
    int r = follow ? stat(path, &sb) : lstat(path, &sb);

    if (r != 0)
        return sys_fail(err, follow ? "stat" : "lstat", path, errno);
    if (S_ISREG(sb.st_mode))
        st->type = "file";
    else if (S_ISDIR(sb.st_mode))
        st->type = "dir";
    else if (S_ISLNK(sb.st_mode))
        st->type = "link";
    else
        st->type = "other";
    st->mode = (unsigned)(sb.st_mode & 07777);
    st->size = (int64_t)sb.st_size;
    st->mtime = (int64_t)sb.st_mtime;
    st->uid = (int64_t)sb.st_uid;
    st->gid = (int64_t)sb.st_gid;
    return 0;
}

static int
cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void
fs_free_names(char **names, size_t count)
{
    size_t i;

    if (names == NULL)
        return;
    for (i = 0; i < count; i++)
        free(names[i]);
    free(names);
}

int
fs_listdir(const char *path, char ***names, size_t *count,
    struct luacme_err *err)
{
    DIR *d = NULL;
    struct dirent *de;
    char **list = NULL, **nlist;
    size_t n = 0, cap = 0;
    int rc = -1;

    d = opendir(path);
    if (d == NULL) {
        sys_fail(err, "listdir", path, errno);
        goto out;
    }
    for (;;) {
        errno = 0;
        de = readdir(d);
        if (de == NULL) {
            if (errno != 0) {
                sys_fail(err, "listdir", path, errno);
                goto out;
            }
            break;
        }
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            nlist = realloc(list, cap * sizeof(*list));
            if (nlist == NULL) {
                sys_fail(err, "listdir", path, ENOMEM);
                goto out;
            }
            list = nlist;
        }
        list[n] = strdup(de->d_name);
        if (list[n] == NULL) {
            sys_fail(err, "listdir", path, ENOMEM);
            goto out;
        }
        n++;
    }
    if (n > 0)
        qsort(list, n, sizeof(*list), cmp_names);
    *names = list;
    *count = n;
    list = NULL;
    rc = 0;
out:
    if (d != NULL)
        closedir(d);
    fs_free_names(list, n);
    return rc;
}

int
fs_unlink(const char *path, struct luacme_err *err)
{
    if (unlink(path) != 0)
        return sys_fail(err, "unlink", path, errno);
    return 0;
}

int
fs_rmdir(const char *path, struct luacme_err *err)
{
    if (rmdir(path) != 0)
        return sys_fail(err, "rmdir", path, errno);
    return 0;
}

int
fs_chmod(const char *path, unsigned mode, struct luacme_err *err)
{
    if (chmod(path, mode & 07777) != 0)
        return sys_fail(err, "chmod", path, errno);
    return 0;
}

int
fs_symlink(const char *target, const char *path, struct luacme_err *err)
{
    if (symlink(target, path) != 0)
        return sys_fail(err, "symlink", path, errno);
    return 0;
}

int
fs_rename(const char *from, const char *to, struct luacme_err *err)
{
    char *dto = NULL, *dfrom = NULL;
    int rc = -1;

    if (rename(from, to) != 0)
        return sys_fail(err, "rename", from, errno);
    dto = dir_of(to);
    dfrom = dir_of(from);
    if (dto == NULL || dfrom == NULL) {
        sys_fail(err, "rename", to, ENOMEM);
        goto out;
    }
    if (sync_dir("rename", dto, err) != 0)
        goto out;
    /* The entry also left from's directory; that must stick too, or a
     * crash could show the file under both names. */
    if (strcmp(dto, dfrom) != 0 && sync_dir("rename", dfrom, err) != 0)
        goto out;
    rc = 0;
out:
    free(dto);
    free(dfrom);
    return rc;
}

/* The PID an exclusive holder wrote into the lock file, or 0. */
static long
lock_holder(int fd)
{
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    long pid;

    if (n <= 0)
        return 0;
    buf[n] = '\0';
    pid = strtol(buf, NULL, 10);
    return pid > 0 ? pid : 0;
}

static void
lock_write_pid(int fd)
{
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());

    /* Informational only: a failure here does not lose the lock. */
    if (ftruncate(fd, 0) == 0 && pwrite(fd, buf, (size_t)n, 0) < 0)
        return;
}

/* 1 when fd is still the file named path: another process may have
 * removed or replaced the lock file between our open and our flock, and
 * a lock on an unlinked inode would exclude nobody. */
static int
lock_same_file(int fd, const char *path)
{
    struct stat a, b;

    if (fstat(fd, &a) != 0 || stat(path, &b) != 0)
        return 0;
    return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

int
fs_lock(const char *path, int shared, double timeout, int *fdp,
    struct luacme_err *err)
{
    double deadline = mono_now() + (timeout > 0 ? timeout : 0);
    sig_atomic_t start_int = luacme_interrupted;
    int fd = -1, op = shared ? LOCK_SH : LOCK_EX, reopen = 0, e;
    long left, pid;

    for (;;) {
        /* Never through a symlink: the holder truncates the file to
         * write its PID, which must not land in a file elsewhere. */
        do {
            fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        } while (fd < 0 && errno == EINTR);
        /* A shared lock needs no write access. */
        if (fd < 0 && shared && (errno == EACCES || errno == EROFS))
            fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            return sys_fail(err, "lock", path, errno);
        for (;;) {
            if (flock(fd, op | LOCK_NB) == 0)
                break;
            e = errno;
            if (e == EINTR)
                continue;
            if (e != EWOULDBLOCK) {
                close(fd);
                return sys_fail(err, "lock", path, e);
            }
            if (start_int == 0 && luacme_interrupted != 0) {
                close(fd);
                return err_set(err, "interrupted", "interrupted");
            }
            left = (long)((deadline - mono_now()) * 1000);
            if (left <= 0) {
                pid = lock_holder(fd);
                close(fd);
                if (pid > 0)
                    return err_set(err, "busy", "lock: %s is locked by "
                        "another process (pid %ld)", path, pid);
                return err_set(err, "busy", "lock: %s is locked by "
                    "another process", path);
            }
            sleep_ms(left < LOCK_RETRY_MS ? left : LOCK_RETRY_MS);
        }
        if (lock_same_file(fd, path) || ++reopen > 100)
            break;
        close(fd);
    }
    if (!shared)
        lock_write_pid(fd);
    *fdp = fd;
    return 0;
}

void
fs_unlock(int fd)
{
    if (fd < 0)
        return;
    flock(fd, LOCK_UN);
    close(fd);
}

/*
 * spawn
 */

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

int
spawn_run(const struct spawn_opts *o, struct spawn_result *res,
    struct luacme_err *err)
{
    struct capture cout = {-1, NULL, 0, 0}, cerr = {-1, NULL, 0, 0};
    struct sigaction ign, pipe_old;
    struct pollfd pfd[3];
    sigset_t all, oldmask;
    siginfo_t si;
    char **paths = NULL;
    size_t npaths = 0, in_off = 0;
    const char *prog;
    sig_atomic_t start_int = luacme_interrupted;
    pid_t pid = -1;
    int in_r = -1, in_w = -1, out_w = -1, err_w = -1, rep_r = -1,
        rep_w = -1;
    int rc = -1, pipe_saved = 0, reaped = 0, exited = 0, wstatus = 0;
    int stopping = 0, killed = 0, interrupted = 0, timed_out = 0, lost = 0;
    int truncated = 0, msg[2], nfd, tmo, ok, e, idle_ms = 1;
    int idx_in, idx_out, idx_err, max_fd = fd_limit();
    double now, deadline = 0, kill_at = 0;
    ssize_t n;

    memset(res, 0, sizeof(*res));
    prog = o->argv != NULL ? o->argv[0] : NULL;
    if (prog == NULL) {
        err_set(err, "io", "spawn: empty argv");
        goto out;
    }
    paths = exec_candidates(prog, &npaths);
    if (paths == NULL) {
        sys_fail(err, "spawn", prog, ENOMEM);
        goto out;
    }
    if (o->stdin_data != NULL) {
        ok = make_pipe(&in_r, &in_w) == 0;
    } else {
        in_r = fd_high(open("/dev/null", O_RDONLY | O_CLOEXEC));
        ok = in_r >= 0;
    }
    if (!ok || make_pipe(&cout.fd, &out_w) != 0 ||
        make_pipe(&cerr.fd, &err_w) != 0 ||
        make_pipe(&rep_r, &rep_w) != 0) {
        sys_fail(err, "spawn", prog, errno);
        goto out;
    }
    /* A child that exits without reading its stdin must give us EPIPE,
     * not kill us with SIGPIPE. */
    memset(&ign, 0, sizeof(ign));
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    if (sigaction(SIGPIPE, &ign, &pipe_old) == 0)
        pipe_saved = 1;

    /* No handler of ours may run in the child before it resets them. */
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &oldmask);
    pid = fork();
    if (pid == 0)
        child_exec(o, paths, npaths, in_r, out_w, err_w, rep_w, max_fd);
    e = errno;
    sigprocmask(SIG_SETMASK, &oldmask, NULL);
    if (pid < 0) {
        sys_fail(err, "spawn: fork", prog, e);
        goto out;
    }
    /* Also here, so a kill of the group cannot race the child's own
     * setpgid; EACCES once it has exec'd is fine. */
    setpgid(pid, pid);
    close_fd(&in_r);
    close_fd(&out_w);
    close_fd(&err_w);
    close_fd(&rep_w);

    /* EOF: the exec happened (close-on-exec). Two ints: it failed. */
    do {
        n = read(rep_r, msg, sizeof(msg));
    } while (n < 0 && errno == EINTR);
    close_fd(&rep_r);
    if (n == (ssize_t)sizeof(msg)) {
        while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR)
            ;
        reaped = 1;
        if (msg[0] == 1)
            err_set(err, kind_of(msg[1]), "spawn: cwd %s: %s", o->cwd,
                strerror(msg[1]));
        else
            sys_fail(err, "spawn", prog, msg[1]);
        goto out;
    }

    if (in_w >= 0 && (o->stdin_len == 0 || set_nonblock(in_w) != 0))
        close_fd(&in_w);
    if (set_nonblock(cout.fd) != 0 || set_nonblock(cerr.fd) != 0) {
        sys_fail(err, "spawn", prog, errno);
        goto out;
    }
    if (o->timeout > 0)
        deadline = mono_now() + o->timeout;

    for (;;) {
        /* Exited? Look without reaping: while the zombie exists its PID
         * (our process group id) cannot be reused, so the group can
         * still be killed safely below. */
        memset(&si, 0, sizeof(si));
        if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0)
            exited = si.si_pid == pid;
        else if (errno == ECHILD)
            exited = lost = 1;  /* SIGCHLD ignored: reaped, status lost */
        if (exited) {
            /* All it wrote is in the pipes now; take that and stop, even
             * if a descendant keeps them open. */
            if (capture_read(&cout, o->max_output, &truncated, 64) != 0 ||
                capture_read(&cerr, o->max_output, &truncated, 64) != 0) {
                sys_fail(err, "spawn: read", prog, errno);
                goto out;
            }
            break;
        }
        now = mono_now();
        if (!interrupted && start_int == 0 && luacme_interrupted != 0)
            interrupted = 1;
        if (!timed_out && deadline > 0 && now >= deadline)
            timed_out = 1;
        if ((interrupted || timed_out) && !stopping) {
            stopping = 1;
            kill(-pid, SIGTERM);
            kill_at = now + LUACME_SPAWN_KILL_GRACE_S;
        }
        if (stopping && !killed && now >= kill_at) {
            killed = 1;
            kill(-pid, SIGKILL);
        }

        nfd = 0;
        idx_in = idx_out = idx_err = -1;
        if (in_w >= 0) {
            pfd[nfd].fd = in_w;
            pfd[nfd].events = POLLOUT;
            idx_in = nfd++;
        }
        if (cout.fd >= 0) {
            pfd[nfd].fd = cout.fd;
            pfd[nfd].events = POLLIN;
            idx_out = nfd++;
        }
        if (cerr.fd >= 0) {
            pfd[nfd].fd = cerr.fd;
            pfd[nfd].events = POLLIN;
            idx_err = nfd++;
        }
        /* With every pipe closed only the exit is left to notice: look
         * again soon (it is usually a moment away), then less often. */
        if (nfd == 0)
            idle_ms = idle_ms < SPAWN_TICK_MS / 2 ? idle_ms * 2 : SPAWN_TICK_MS;
        tmo = nfd > 0 ? SPAWN_TICK_MS : idle_ms;
        if (deadline > 0 && !timed_out)
            tmo = ms_until(deadline, now, tmo);
        if (stopping && !killed)
            tmo = ms_until(kill_at, now, tmo);
        if (poll(pfd, (nfds_t)nfd, tmo) < 0) {
            if (errno == EINTR)
                continue;
            sys_fail(err, "spawn: poll", prog, errno);
            goto out;
        }
        if (idx_in >= 0 && pfd[idx_in].revents != 0) {
            n = write(in_w, o->stdin_data + in_off, o->stdin_len - in_off);
            if (n > 0)
                in_off += (size_t)n;
            /* EPIPE: the child does not want the rest, which is its
             * business; the exit status tells the story. */
            if (in_off == o->stdin_len || (n < 0 && errno != EAGAIN &&
                errno != EWOULDBLOCK && errno != EINTR))
                close_fd(&in_w);
        }
        if ((idx_out >= 0 && pfd[idx_out].revents != 0 &&
            capture_read(&cout, o->max_output, &truncated, 16) != 0) ||
            (idx_err >= 0 && pfd[idx_err].revents != 0 &&
            capture_read(&cerr, o->max_output, &truncated, 16) != 0)) {
            sys_fail(err, "spawn: read", prog, errno);
            goto out;
        }
    }

    /* Stopped on purpose: nothing of that job may linger. */
    if (stopping)
        kill(-pid, SIGKILL);
    while (!lost && waitpid(pid, &wstatus, 0) < 0 && errno == EINTR)
        ;
    reaped = 1;
    if (interrupted) {
        err_set(err, "interrupted", "interrupted");
        goto out;
    }
    /* When lost, neither is set: the caller sees no status. */
    if (!lost && WIFEXITED(wstatus)) {
        res->exited = 1;
        res->status = WEXITSTATUS(wstatus);
    } else if (!lost && WIFSIGNALED(wstatus)) {
        res->signaled = 1;
        res->signal = WTERMSIG(wstatus);
    }
    res->timed_out = timed_out;
    res->truncated = truncated;
    res->out = cout.buf;
    res->out_len = cout.len;
    res->err_out = cerr.buf;
    res->err_len = cerr.len;
    cout.buf = cerr.buf = NULL;
    rc = 0;
out:
    if (pid > 0 && !reaped) {
        /* A failure of ours while it ran: it must not outlive us. */
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
        while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR)
            ;
    }
    close_fd(&in_r);
    close_fd(&in_w);
    close_fd(&out_w);
    close_fd(&err_w);
    close_fd(&rep_r);
    close_fd(&rep_w);
    close_fd(&cout.fd);
    close_fd(&cerr.fd);
    free(cout.buf);
    free(cerr.buf);
    if (pipe_saved)
        sigaction(SIGPIPE, &pipe_old, NULL);
    fs_free_names(paths, npaths);
    return rc;
}
