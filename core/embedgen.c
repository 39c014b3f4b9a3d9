/*
 * embedgen: a build-time host tool, never installed. Writes the Lua
 * modules and built-in hooks into the C file the executable embeds (see
 * embedded.h), each file its own zstd frame (level 19), so a require
 * expands just that module, and only while it loads (issue 11: peak
 * RSS; one frame for all was expanded whole, 300 KB, at the peak of an
 * issuance when a hook was loaded late).
 *
 *   embedgen OUT.c SRCDIR source|bytecode FILE...
 *
 * "source" (the default build) embeds the text minified: comments and
 * the blanks around lines dropped, every newline kept, so messages and
 * tracebacks name the file's own lines. The build fails unless each
 * minified file compiles to the very same stripped bytecode as the
 * file itself (the proof that only blanks and comments went). Minified
 * text compresses to ~100 KB where stripped bytecode takes ~150 KB
 * (the bytecode's 4-byte instructions compress poorly). The executable
 * strips each module of its debug information as it loads it (see
 * strip_loaded in main.c), so once loaded it takes no more memory than
 * bytecode; the parsing costs a few milliseconds of an issuance and
 * about one of `luacme --version`, which loads the command line only.
 * "bytecode" embeds stripped bytecode (lua_dump, strip = 1): loaded
 * without a parser, but only by the same Lua release with the same
 * number sizes and byte order as the tool's own Lua (luaU_undump checks
 * the header and refuses anything else), so a cross build runs an
 * embedgen built for the build machine from the same Lua release and
 * configuration. Source text has no such tie.
 * zstd rather than zlib: 11% smaller, inflating takes microseconds, and
 * libzstd is a dependency of libcurl already.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>
#include <zstd.h>

struct buf {
    unsigned char *p;
    size_t len, cap;
};

/* Append n bytes; returns 0, or -1 when out of memory. */
static int
buf_add(struct buf *b, const void *data, size_t n)
{
    unsigned char *np;
    size_t ncap;

    if (n > ((size_t)-1) - b->len)
        return -1;
    if (b->len + n > b->cap) {
        ncap = b->cap ? b->cap : 65536;
        while (ncap < b->len + n)
            ncap *= 2;
        np = realloc(b->p, ncap);
        if (np == NULL)
            return -1;
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    return 0;
}

static int
dump_writer(lua_State *L, const void *p, size_t n, void *ud)
{
    (void)L;
    return buf_add(ud, p, n) == 0 ? 0 : 1;
}

/* Read path whole into b; returns 0 or -1 (message printed). */
static int
read_file(const char *path, struct buf *b)
{
    unsigned char chunk[8192];
    size_t n;
    FILE *f = fopen(path, "rb");
    int rc = 0;

    if (f == NULL) {
        perror(path);
        return -1;
    }
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (buf_add(b, chunk, n) != 0) {
            fprintf(stderr, "embedgen: out of memory\n");
            rc = -1;
            break;
        }
    }
    if (ferror(f)) {
        perror(path);
        rc = -1;
    }
    fclose(f);
    return rc;
}

/* Level of the long bracket at s[i] ("[", "=" * level, "["), or -1
 * when s[i] does not open one. */
static int
long_bracket(const unsigned char *s, size_t n, size_t i)
{
    size_t j = i + 1;

    if (i >= n || s[i] != '[')
        return -1;
    while (j < n && s[j] == '=')
        j++;
    return j < n && s[j] == '[' ? (int)(j - i - 1) : -1;
}

/* Index just past the long bracket of level lv opened at s[i], or n
 * when it never closes (the compile check then reports the file). */
static size_t
long_end(const unsigned char *s, size_t n, size_t i, int lv)
{
    size_t j = i + (size_t)lv + 2, k;

    for (; j < n; j++) {
        if (s[j] != ']')
            continue;
        for (k = j + 1; k < n && s[k] == '=' && (int)(k - j - 1) < lv; k++)
            ;
        if ((int)(k - j - 1) == lv && k < n && s[k] == ']')
            return k + 1;
    }
    return n;
}

/* Drops blanks at the end of what is written so far (code, never a
 * string: strings are copied whole and end in their delimiter). */
static void
trim_tail(struct buf *out)
{
    while (out->len > 0 && (out->p[out->len - 1] == ' ' ||
        out->p[out->len - 1] == '\t'))
        out->len--;
}

/* Lua text without its comments and the blanks around its lines, every
 * newline kept. Strings are copied as they are; a comment on one line
 * becomes a blank so the tokens around it stay apart. Returns 0 or -1
 * (out of memory). */
static int
minify(const unsigned char *s, size_t n, struct buf *out)
{
    size_t i = 0, j, k;
    int lv, line_start = 1, nl;
    unsigned char c, q;

    if (n > 0 && s[0] == '#')            /* as luaL_loadfile skips it */
        while (i < n && s[i] != '\n')
            i++;
    while (i < n) {
        c = s[i];
        if (c == '\n') {
            trim_tail(out);
            if (buf_add(out, "\n", 1) != 0)
                return -1;
            line_start = 1;
            i++;
        } else if (c == ' ' || c == '\t' || c == '\r') {
            if (!line_start && out->len > 0 && out->p[out->len - 1] != ' ' &&
                buf_add(out, " ", 1) != 0)
                return -1;
            i++;
        } else if (c == '-' && i + 1 < n && s[i + 1] == '-') {
            lv = long_bracket(s, n, i + 2);
            if (lv < 0) {
                while (i < n && s[i] != '\n')
                    i++;
                continue;
            }
            j = long_end(s, n, i + 2, lv);
            for (nl = 0, k = i; k < j; k++) {
                if (s[k] == '\n') {
                    if (!nl)
                        trim_tail(out);
                    nl = 1;
                    if (buf_add(out, "\n", 1) != 0)
                        return -1;
                }
            }
            if (nl)
                line_start = 1;
            else if (buf_add(out, " ", 1) != 0)
                return -1;
            i = j;
        } else if (c == '"' || c == '\'') {
            q = c;
            for (j = i + 1; j < n && s[j] != q && s[j] != '\n'; j++) {
                if (s[j] != '\\')
                    continue;
                j++;                 /* the escaped byte: a newline too */
                if (j < n && s[j] == 'z')    /* \z skips the blanks after */
                    while (j + 1 < n && isspace(s[j + 1]))
                        j++;
            }
            j = j < n ? j + 1 : n;
            if (buf_add(out, s + i, j - i) != 0)
                return -1;
            line_start = 0;
            i = j;
        } else if ((lv = long_bracket(s, n, i)) >= 0) {
            j = long_end(s, n, i, lv);
            if (buf_add(out, s + i, j - i) != 0)
                return -1;
            line_start = 0;
            i = j;
        } else {
            if (buf_add(out, &c, 1) != 0)
                return -1;
            line_start = 0;
            i++;
        }
    }
    trim_tail(out);
    return 0;
}

/* Compiles text (chunk name name) and appends its stripped bytecode to
 * b. Returns 0 or -1 (message printed). */
static int
dump_stripped(lua_State *L, const unsigned char *text, size_t len,
    const char *name, struct buf *b)
{
    int rc = 0;

    if (luaL_loadbufferx(L, (const char *)text, len, name, "t") != LUA_OK) {
        fprintf(stderr, "embedgen: %s\n", lua_tostring(L, -1));
        rc = -1;
    } else if (lua_dump(L, dump_writer, b, 1) != 0) {
        fprintf(stderr, "embedgen: out of memory dumping %s\n", name);
        rc = -1;
    }
    lua_settop(L, 0);
    return rc;
}

/* One file's chunk (its minified text or its bytecode) into chunk.
 * Returns 0 or -1 (message printed). */
static int
make_chunk(lua_State *L, const char *path, const char *rel, int bytecode,
    struct buf *chunk)
{
    struct buf src = {NULL, 0, 0}, a = {NULL, 0, 0}, b = {NULL, 0, 0};
    char name[4200];
    int rc = -1;

    snprintf(name, sizeof(name), "=[embedded]/%s", rel);
    if (read_file(path, &src) != 0)
        goto out;
    if (bytecode) {
        rc = dump_stripped(L, src.p, src.len, name, chunk);
        goto out;
    }
    if (minify(src.p, src.len, chunk) != 0) {
        fprintf(stderr, "embedgen: out of memory\n");
        goto out;
    }
    if (dump_stripped(L, src.p, src.len, name, &a) != 0 ||
        dump_stripped(L, chunk->p, chunk->len, name, &b) != 0)
        goto out;
    if (a.len != b.len || memcmp(a.p, b.p, a.len) != 0) {
        fprintf(stderr, "embedgen: %s: minified text compiles to other "
            "code than the file (a bug in minify)\n", rel);
        goto out;
    }
    rc = 0;
out:
    free(src.p);
    free(a.p);
    free(b.p);
    return rc;
}

static void
write_bytes(FILE *f, const unsigned char *p, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        fprintf(f, "%u,%s", p[i], i % 20 == 19 ? "\n" : "");
}

int
main(int argc, char **argv)
{
    struct buf all = {NULL, 0, 0}, chunk = {NULL, 0, 0};
    size_t *offs = NULL, *lens = NULL, *raws = NULL;
    unsigned char *z = NULL;
    size_t zcap, zlen, total = 0;
    lua_State *L = NULL;
    FILE *f = NULL;
    char path[4096];
    char tmp[4096];
    int bytecode, i, nfiles, rc = 1;

    if (argc < 4) {
        fprintf(stderr, "usage: embedgen OUT.c SRCDIR source|bytecode "
            "FILE...\n");
        return 2;
    }
    bytecode = strcmp(argv[3], "bytecode") == 0;
    if (!bytecode && strcmp(argv[3], "source") != 0) {
        fprintf(stderr, "embedgen: format must be source or bytecode\n");
        return 2;
    }
    nfiles = argc - 4;
    offs = calloc((size_t)nfiles + 1, sizeof(*offs));
    lens = calloc((size_t)nfiles + 1, sizeof(*lens));
    raws = calloc((size_t)nfiles + 1, sizeof(*raws));
    L = luaL_newstate();
    if (offs == NULL || lens == NULL || raws == NULL || L == NULL) {
        fprintf(stderr, "embedgen: out of memory\n");
        goto out;
    }
    for (i = 0; i < nfiles; i++) {
        if (snprintf(path, sizeof(path), "%s/%s", argv[2], argv[4 + i]) >=
            (int)sizeof(path)) {
            fprintf(stderr, "embedgen: path too long: %s\n", argv[4 + i]);
            goto out;
        }
        chunk.len = 0;
        if (make_chunk(L, path, argv[4 + i], bytecode, &chunk) != 0)
            goto out;
        zcap = ZSTD_compressBound(chunk.len);
        free(z);
        z = malloc(zcap);
        if (z == NULL) {
            fprintf(stderr, "embedgen: out of memory\n");
            goto out;
        }
        zlen = ZSTD_compress(z, zcap, chunk.p, chunk.len, 19);
        if (ZSTD_isError(zlen)) {
            fprintf(stderr, "embedgen: compression failed: %s\n",
                ZSTD_getErrorName(zlen));
            goto out;
        }
        offs[i] = all.len;
        lens[i] = zlen;
        raws[i] = chunk.len;
        total += chunk.len;
        if (buf_add(&all, z, zlen) != 0) {
            fprintf(stderr, "embedgen: out of memory\n");
            goto out;
        }
    }

    /* Written aside and renamed, so an interrupted build leaves no
     * half file that looks up to date. */
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", argv[1]) >= (int)sizeof(tmp))
        goto out;
    f = fopen(tmp, "w");
    if (f == NULL) {
        perror(tmp);
        goto out;
    }
    fprintf(f, "/* Generated by core/embedgen.c; do not edit. %lu bytes "
        "of %s in %lu. */\n"
        "#include <stddef.h>\n#include \"embedded.h\"\n"
        "static const unsigned char blob[] = {\n",
        (unsigned long)total, argv[3], (unsigned long)all.len);
    write_bytes(f, all.p, all.len);
    fprintf(f, "0};\nconst struct luacme_embedded_blob luacme_embedded_blob"
        " = {\n    blob, 1, \"%s\"\n};\n"
        "const struct luacme_embedded luacme_embedded[] = {\n", argv[3]);
    for (i = 0; i < nfiles; i++)
        fprintf(f, "    {\"%s\", %lu, %lu, %lu},\n", argv[4 + i],
            (unsigned long)offs[i], (unsigned long)lens[i],
            (unsigned long)raws[i]);
    fprintf(f, "    {NULL, 0, 0, 0}\n};\n");
    if (fclose(f) != 0) {
        f = NULL;
        perror(tmp);
        goto out;
    }
    f = NULL;
    if (rename(tmp, argv[1]) != 0) {
        perror(argv[1]);
        goto out;
    }
    rc = 0;
out:
    if (f != NULL)
        fclose(f);
    if (L != NULL)
        lua_close(L);
    free(z);
    free(all.p);
    free(chunk.p);
    free(offs);
    free(lens);
    free(raws);
    return rc;
}
