/*
 * Operating-system primitives for safe on-disk state and for running hook
 * programs: atomic file writes, directories, locks, and spawning a
 * program without a shell. Plain Lua has none of these; the Lua side
 * (store.lua, hooks) builds on them through lua_fs.c.
 *
 * Every function that can fail returns 0 or -1 with err filled; the kind
 * is one of "not_found" (ENOENT), "exists" (EEXIST, or a non-directory in
 * the way), "permission" (EACCES, EPERM), "busy" (a lock not obtained in
 * time), "too_large", "interrupted", or "io" (anything else). Messages
 * name the operation, the path and strerror.
 */
#ifndef LUACME_FS_H
#define LUACME_FS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* Replace path atomically with len bytes of data: a temporary file
 * path.tmp.XXXXXX in the same directory is created (O_EXCL, O_CLOEXEC)
 * with the final permission bits mode (fchmod'd, so the umask does not
 * narrow or widen them), written in full, fsync'd, closed, renamed over
 * path, and the directory is fsync'd. Returns 0, or -1 with err filled;
 * on failure the temporary file is gone and path is untouched (except
 * when only the final directory fsync fails: the new content is then in
 * place but may not survive a crash). The one atomic writer: keys.c
 * writes keys through it, so every temporary file a crash can leave is
 * named path.tmp.XXXXXX, which state.lua's sweep removes. */
int fs_write_file(const char *path, const void *data, size_t len,
    unsigned mode, struct luacme_err *err);

/* Read the whole file at path, refusing more than max bytes. Returns 0
 * with a malloc'd buffer in *data (caller frees; a NUL byte follows the
 * content) and its length in *len, or -1 with err filled ("too_large"
 * over max) and *data untouched. */
int fs_read_file(const char *path, size_t max, char **data, size_t *len,
    struct luacme_err *err);

/* Create the directory path with exactly the permission bits mode
 * (chmod'd after creation, so the umask does not narrow them) and fsync
 * its parent. Returns 0, or -1 with err filled: "exists" when anything is
 * at path already (a directory too). */
int fs_mkdir(const char *path, unsigned mode, struct luacme_err *err);

/* Create path and its missing parents, each new one with mode as in
 * fs_mkdir. Existing directories (also through symlinks) are fine.
 * Returns 0, or -1 with err filled: "exists" when a non-directory is in
 * the way. */
int fs_mkdir_p(const char *path, unsigned mode, struct luacme_err *err);

/* What fs_stat reports; type is a static string. */
struct fs_stat {
    const char *type;   /* "file", "dir", "link" or "other" */
    unsigned mode;      /* permission bits (st_mode & 07777) */
    int64_t size;
    int64_t mtime;      /* seconds since the epoch */
    int64_t uid, gid;
};

/* stat(2) (follow != 0) or lstat(2) (follow == 0) path into *st.
 * Returns 0, or -1 with err filled. */
int fs_stat(const char *path, int follow, struct fs_stat *st,
    struct luacme_err *err);

/* The entry names of directory path, without "." and "..", sorted by
 * strcmp. Returns 0 with a malloc'd array of *count malloc'd strings in
 * *names (free with fs_free_names), or -1 with err filled and *names
 * untouched. */
int fs_listdir(const char *path, char ***names, size_t *count,
    struct luacme_err *err);

/* Free what fs_listdir returned. Accepts NULL. */
void fs_free_names(char **names, size_t count);

/* unlink(2), rmdir(2), chmod(2), symlink(2). Return 0, or -1 with err
 * filled. */
int fs_unlink(const char *path, struct luacme_err *err);
int fs_rmdir(const char *path, struct luacme_err *err);
int fs_chmod(const char *path, unsigned mode, struct luacme_err *err);
int fs_symlink(const char *target, const char *path,
    struct luacme_err *err);

/* rename(2) from over to, then fsync the directory of to (and of from
 * when it differs) so the rename survives a crash. Returns 0, or -1 with
 * err filled. */
int fs_rename(const char *from, const char *to, struct luacme_err *err);

/* fsync the directory path (file systems that cannot fsync a directory
 * are tolerated). Returns 0, or -1 with err filled. */
int fs_fsync_dir(const char *path, struct luacme_err *err);

/* Open or create path (mode 0600, O_CLOEXEC; a symlink at path fails
 * with kind "io", so the PID never overwrites another file) and take an
 * flock on it,
 * shared when shared != 0, else exclusive. With timeout <= 0 it tries
 * once; otherwise it retries at short intervals until timeout seconds
 * have passed. An exclusive holder writes its PID into the file (shown
 * to the next one that finds it busy). Returns 0 with the descriptor in
 * *fd (release with fs_unlock; the kernel releases it when the process
 * dies, so no lock goes stale), or -1 with err filled: "busy" when
 * another process holds it until the deadline, "interrupted" when
 * luacme_interrupted became non-zero while waiting. */
int fs_lock(const char *path, int shared, double timeout, int *fd,
    struct luacme_err *err);

/* Release and close a lock taken by fs_lock. Accepts -1 (no-op). */
void fs_unlock(int fd);

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
