/* fs_mkdir sets the exact mode after mkdir(2). Whoever can write the
 * parent directory (the web server's user owning a webroot, where the
 * webroot hook makes .well-known) can swap the new directory for a
 * symlink to any file in between; following it, luacme (often root)
 * would chmod that file, e.g. make /etc/shadow 0755. This file defines
 * mkdir() itself, which the linker prefers to libc's for fs.c, and plays
 * that attacker right after the real mkdir. */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "fs.h"

static const char *victim;      /* the file the symlink points to */
static int attack;

int
mkdir(const char *path, mode_t mode)
{
    char moved[4096];

    if (mkdirat(AT_FDCWD, path, mode) != 0)
        return -1;
    if (attack) {
        snprintf(moved, sizeof(moved), "%s.moved", path);
        if (rename(path, moved) != 0 || symlink(victim, path) != 0)
            abort();
    }
    return 0;
}

int
main(void)
{
    char dir[] = "/tmp/luacme-mkdir-race.XXXXXX";
    char file[4096], sub[4096], cmd[4200];
    struct luacme_err err;
    struct stat st;
    int fd;

    CHECK(mkdtemp(dir) != NULL);
    snprintf(file, sizeof(file), "%s/secret", dir);
    snprintf(sub, sizeof(sub), "%s/.well-known", dir);
    fd = open(file, O_WRONLY | O_CREAT | O_EXCL, 0600);
    CHECK(fd >= 0);
    close(fd);
    victim = file;

    /* Without the attacker: the exact mode, despite the umask. */
    umask(077);
    CHECK(fs_mkdir(sub, 0755, &err) == 0);
    CHECK(stat(sub, &st) == 0 && (st.st_mode & 07777) == 0755);
    CHECK(rmdir(sub) == 0);

    /* With it: the chmod must not reach the victim. Failing is fine. */
    attack = 1;
    CHECK(fs_mkdir(sub, 0755, &err) == -1);
    attack = 0;
    CHECK(stat(file, &st) == 0);
    CHECK((st.st_mode & 07777) == 0600);

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    return check_done();
}
