/*
 * The one monotonic clock of the core, in seconds: deadlines of locks
 * and child processes, and Lua's core.monotonic. It never jumps with
 * the wall clock.
 */
#ifndef LUACME_MONO_H
#define LUACME_MONO_H

#include <time.h>

static inline double
mono_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

#endif
