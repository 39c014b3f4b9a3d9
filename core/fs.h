/*
 * Operating-system primitives for safe on-disk state: atomic file
 * writes, directories and locks (running programs is proc.h's). Plain
 * Lua has none of these; the Lua side (store.lua, hooks) builds on them
 * through lua_fs.c.
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

/* readlink(2): the target of the symbolic link at path, NUL-terminated,
 * in buf of size len. Returns 0, or -1 with err filled ("not_found";
 * "io" when path is not a link or the target does not fit). */
int fs_readlink(const char *path, char *buf, size_t len,
    struct luacme_err *err);

/* rename(2) from over to, then fsync the directory of to (and of from
 * when it differs) so the rename survives a crash. Returns 0, or -1 with
 * err filled. */
int fs_rename(const char *from, const char *to, struct luacme_err *err);

/* fsync the directory path (file systems that cannot fsync a directory
 * are tolerated). Returns 0, or -1 with err filled. */
int fs_fsync_dir(const char *path, struct luacme_err *err);

/* Open or create path (mode 0600, O_CLOEXEC; a symlink at path fails
 * with kind "io") and take an flock on it, shared when shared != 0,
 * else exclusive. With timeout <= 0 it tries once; otherwise it retries
 * at short intervals until timeout seconds have passed. The file is
 * never written (a lock taken daily must not wear flash); the "busy"
 * message names the holder's PID from /proc/locks. Returns 0 with the
 * descriptor in
 * *fd (release with fs_unlock; the kernel releases it when the process
 * dies, so no lock goes stale), or -1 with err filled: "busy" when
 * another process holds it until the deadline, "interrupted" when
 * luacme_interrupted became non-zero while waiting. */
int fs_lock(const char *path, int shared, double timeout, int *fd,
    struct luacme_err *err);

/* Release and close a lock taken by fs_lock. Accepts -1 (no-op). */
void fs_unlock(int fd);

#endif
