/*
 * The Lua modules and built-in hooks compiled into the executable,
 * generated at build time by core/embedgen.c (minified source text or
 * stripped bytecode, each file its own zstd frame) or, when no host
 * tool can run, by core/embed.cmake (source text, stored). Files are
 * looked up by their path relative to the source tree, e.g.
 * "lua/luacme/client.lua", "hooks/webroot.lua".
 */
#ifndef LUACME_EMBEDDED_H
#define LUACME_EMBEDDED_H

#include <stddef.h>

struct luacme_embedded {
    const char *path;                /* NULL ends the table */
    size_t off, size;                /* slice of the blob's data */
    size_t raw;                      /* bytes once expanded (= size if
                                      * stored) */
};

struct luacme_embedded_blob {
    const unsigned char *data;
    int compressed;                  /* 1: each slice is a zstd frame */
    const char *format;              /* "bytecode" or "source" */
};

extern const struct luacme_embedded luacme_embedded[];
extern const struct luacme_embedded_blob luacme_embedded_blob;

#endif
