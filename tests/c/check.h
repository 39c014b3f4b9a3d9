/*
 * A minimal test harness for the C unit tests: CHECK records a failure
 * and goes on; check_done() prints "N passed, N failed" and gives the
 * exit status.
 */
#ifndef LUACME_CHECK_H
#define LUACME_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_passed, check_failed;

#define CHECK(cond) do { \
        if (cond) { \
            check_passed++; \
        } else { \
            check_failed++; \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, \
                __LINE__, #cond); \
        } \
    } while (0)

#define CHECK_STR(got, want) do { \
        const char *g_ = (got), *w_ = (want); \
        if (g_ != NULL && strcmp(g_, w_) == 0) { \
            check_passed++; \
        } else { \
            check_failed++; \
            fprintf(stderr, "%s:%d: %s\n  got:  %s\n  want: %s\n", \
                __FILE__, __LINE__, #got, g_ ? g_ : "(null)", w_); \
        } \
    } while (0)

static int
check_done(void)
{
    printf("%d passed, %d failed\n", check_passed, check_failed);
    return check_failed == 0 && check_passed > 0 ? 0 : 1;
}

#endif
