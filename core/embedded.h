/*
 * The Lua modules and built-in hooks compiled into the executable,
 * generated at build time by core/embedgen.c (stripped bytecode or
 * source text, one zstd frame) or, when no host tool can run, by
 * core/embed.cmake (source text, stored). Files are looked up by their
 * path relative to the source tree, e.g. "lua/luacme/client.lua",
 * "hooks/webroot.lua"; each is a slice of the blob once expanded.
 */
#ifndef LUACME_EMBEDDED_H
#define LUACME_EMBEDDED_H

#include <stddef.h>

struct luacme_embedded {
    const char *path;                /* NULL ends the table */
    size_t off, len;                 /* slice of the expanded blob */
};

struct luacme_embedded_blob {
    const unsigned char *data;
    size_t size;                     /* bytes in data */
    size_t raw_size;                 /* bytes once expanded */
    int compressed;                  /* 1: data is a zstd frame */
    const char *format;              /* "bytecode" or "source" */
};

extern const struct luacme_embedded luacme_embedded[];
extern const struct luacme_embedded_blob luacme_embedded_blob;

#endif
