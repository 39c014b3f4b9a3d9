/* spawn_run on a kernel without close_range(CLOSE_RANGE_CLOEXEC) (before
 * Linux 5.11): a descriptor the process holds without close-on-exec (as
 * libcurl's socketpair is) must still not reach the program. This file
 * defines syscall() itself, which the linker prefers to libc's, and
 * answers close_range with ENOSYS as such a kernel would; proc.c uses
 * syscall() for nothing else. */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "check.h"
#include "proc.h"

long
syscall(long number, ...)
{
    (void)number;
    errno = ENOSYS;
    return -1;
}

int
main(void)
{
    const char *argv[] = {"sh", "-c",
        "for f in /proc/$$/fd/*; do echo \"${f##*/}\"; done", NULL};
    struct spawn_opts o;
    struct spawn_result r;
    struct luacme_err err;
    char want[16], *line, *save = NULL, *out;
    int fd, seen = 0, inherited = 0;

    /* A descriptor without FD_CLOEXEC, numbered well above 0-2. */
    fd = fcntl(open("/dev/null", O_RDONLY), F_DUPFD, 40);
    CHECK(fd >= 40);
    CHECK((fcntl(fd, F_GETFD) & FD_CLOEXEC) == 0);
    CHECK(syscall(SYS_close_range, 3U, ~0U, 0) == -1 && errno == ENOSYS);

    memset(&o, 0, sizeof(o));
    o.argv = argv;
    o.max_output = 4096;
    CHECK(spawn_run(&o, &r, &err) == 0);
    CHECK(r.exited && r.status == 0);
    snprintf(want, sizeof(want), "%d", fd);
    /* r.out is not NUL-terminated: copy it to a string. */
    out = calloc(1, r.out_len + 1);
    CHECK(out != NULL);
    if (out != NULL && r.out_len > 0)
        memcpy(out, r.out, r.out_len);
    for (line = out ? strtok_r(out, "\n", &save) : NULL; line != NULL;
        line = strtok_r(NULL, "\n", &save)) {
        seen++;
        if (strcmp(line, want) == 0)
            inherited = 1;
    }
    /* The shell sees 0, 1 and 2 (and maybe its own), never ours. */
    CHECK(seen >= 3);
    CHECK(!inherited);
    free(out);
    spawn_result_free(&r);
    close(fd);
    return check_done();
}
