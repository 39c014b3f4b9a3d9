/*
 * Files, directories and locks for the Lua side: the parts of POSIX that
 * plain Lua lacks, written so that state on disk is never half-written.
 * Running programs is proc.c's.
 */
/* flock(2) is outside POSIX.1-2008. */
#define _DEFAULT_SOURCE

#include "fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/sysmacros.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "mono.h"

/* How often a waiting lock retries. */
#define LOCK_RETRY_MS 25

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
        return err_errno(err, op, dir, errno);
    if (fsync(fd) != 0 && errno != EINVAL && errno != ENOTSUP) {
        e = errno;
        close(fd);
        return err_errno(err, op, dir, e);
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
        return err_errno(err, "write_file", path, ENOENT);
    mode &= 07777;
    tmp = malloc(plen + sizeof(".tmp.XXXXXX"));
    dir = dir_of(path);
    if (tmp == NULL || dir == NULL) {
        err_errno(err, "write_file", path, ENOMEM);
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
            err_errno(err, "write_file", path, errno);
            goto out;
        }
    }
    created = 1;
    /* The umask may have narrowed the mode; the caller asked for it
     * exactly (a public certificate 0644 under umask 077, too). */
    if (fchmod(fd, mode) != 0 || write_all(fd, data, len) != 0 ||
        fsync(fd) != 0) {
        err_errno(err, "write_file", path, errno);
        goto out;
    }
    e = close(fd);
    fd = -1;
    if (e != 0) {
        err_errno(err, "write_file", path, errno);
        goto out;
    }
    if (rename(tmp, path) != 0) {
        err_errno(err, "write_file: rename", path, errno);
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
        err_errno(err, "read_file", path, errno);
        goto out;
    }
    if (fstat(fd, &st) != 0) {
        err_errno(err, "read_file", path, errno);
        goto out;
    }
    if (S_ISDIR(st.st_mode)) {
        err_errno(err, "read_file", path, EISDIR);
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
        err_errno(err, "read_file", path, ENOMEM);
        goto out;
    }
    for (;;) {
        if (used == cap) {
            if (cap > max)
                goto too_large;
            cap = cap > (max + 1) / 2 ? max + 1 : cap * 2;
            nbuf = realloc(buf, cap + 1);
            if (nbuf == NULL) {
                err_errno(err, "read_file", path, ENOMEM);
                goto out;
            }
            buf = nbuf;
        }
        n = read(fd, buf + used, cap - used);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            err_errno(err, "read_file", path, errno);
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
        return err_errno(err, op, path, errno);
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
        err_errno(err, op, path, errno);
        goto out;
    }
    parent = dir_of(path);
    if (parent == NULL) {
        err_errno(err, op, path, ENOMEM);
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
        return err_errno(err, "mkdir", path, EEXIST);
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
        return err_errno(err, "mkdir_p", path, errno);
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
        return err_errno(err, "mkdir_p", path, ENOENT);
    buf = strdup(path);
    if (buf == NULL)
        return err_errno(err, "mkdir_p", path, ENOMEM);
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
        return err_errno(err, follow ? "stat" : "lstat", path, errno);
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
        err_errno(err, "listdir", path, errno);
        goto out;
    }
    for (;;) {
        errno = 0;
        de = readdir(d);
        if (de == NULL) {
            if (errno != 0) {
                err_errno(err, "listdir", path, errno);
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
                err_errno(err, "listdir", path, ENOMEM);
                goto out;
            }
            list = nlist;
        }
        list[n] = strdup(de->d_name);
        if (list[n] == NULL) {
            err_errno(err, "listdir", path, ENOMEM);
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
        return err_errno(err, "unlink", path, errno);
    return 0;
}

int
fs_rmdir(const char *path, struct luacme_err *err)
{
    if (rmdir(path) != 0)
        return err_errno(err, "rmdir", path, errno);
    return 0;
}

int
fs_chmod(const char *path, unsigned mode, struct luacme_err *err)
{
    if (chmod(path, mode & 07777) != 0)
        return err_errno(err, "chmod", path, errno);
    return 0;
}

int
fs_symlink(const char *target, const char *path, struct luacme_err *err)
{
    if (symlink(target, path) != 0)
        return err_errno(err, "symlink", path, errno);
    return 0;
}

int
fs_readlink(const char *path, char *buf, size_t len, struct luacme_err *err)
{
    ssize_t n;

    if (len == 0)
        return err_errno(err, "readlink", path, ENAMETOOLONG);
    n = readlink(path, buf, len);
    if (n < 0)
        return err_errno(err, "readlink", path, errno);
    if ((size_t)n >= len)
        return err_errno(err, "readlink", path, ENAMETOOLONG);
    buf[n] = '\0';
    return 0;
}

int
fs_rename(const char *from, const char *to, struct luacme_err *err)
{
    char *dto = NULL, *dfrom = NULL;
    int rc = -1;

    if (rename(from, to) != 0)
        return err_errno(err, "rename", from, errno);
    dto = dir_of(to);
    dfrom = dir_of(from);
    if (dto == NULL || dfrom == NULL) {
        err_errno(err, "rename", to, ENOMEM);
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

/* The PID holding an flock on fd's file, or 0 when unknown. The kernel
 * says it in /proc/locks ("1: FLOCK  ADVISORY  WRITE 123 fe:00:4567 0
 * EOF"; waiters read "1: -> FLOCK ..."): the holder never writes its PID
 * into the lock file, so a run that only takes the lock (a renew with
 * nothing due, every day from cron) leaves the state untouched (flash
 * wear). The device must match too, except that overlayfs reports the
 * upper layer's; an inode-only match is the fallback. */
static long
lock_holder(int fd)
{
    struct stat st;
    char line[256], kind[16];
    unsigned maj, min;
    unsigned long long ino;
    long pid, exact = 0, loose = 0;
    FILE *f;

    if (fstat(fd, &st) != 0)
        return 0;
    f = fopen("/proc/locks", "re");
    if (f == NULL)
        return 0;
    while (exact == 0 && fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "%*d: %15s %*s %*s %ld %x:%x:%llu", kind, &pid,
            &maj, &min, &ino) != 5 || strcmp(kind, "FLOCK") != 0 ||
            ino != (unsigned long long)st.st_ino || pid <= 0)
            continue;
        if (maj == major(st.st_dev) && min == minor(st.st_dev))
            exact = pid;
        else if (loose == 0)
            loose = pid;
    }
    fclose(f);
    return exact ? exact : loose;
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
        /* Never through a symlink: the lock would guard a file
         * elsewhere, or create one there. */
        do {
            fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        } while (fd < 0 && errno == EINTR);
        /* A shared lock needs no write access. */
        if (fd < 0 && shared && (errno == EACCES || errno == EROFS))
            fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            return err_errno(err, "lock", path, errno);
        for (;;) {
            if (flock(fd, op | LOCK_NB) == 0)
                break;
            e = errno;
            if (e == EINTR)
                continue;
            if (e != EWOULDBLOCK) {
                close(fd);
                return err_errno(err, "lock", path, e);
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
