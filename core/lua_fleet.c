/*
 * What the shared storage backends need from C (luacme.storage):
 *
 *   core.aead_seal(key32, plaintext, aad) -> nonce..ciphertext..tag
 *   core.aead_open(key32, sealed, aad)    -> plaintext | nil, msg, kind
 *       AES-256-GCM with a random 96-bit nonce: private keys kept in a
 *       shared store are sealed with the fleet's storage key.
 *   core.spawn_bg{argv}  -> pid      a child that dies with us
 *   core.kill(pid, sig)  -> true | nil, msg, kind
 *   core.reap(pid)       -> true (gone) | false (still running)
 *       The lock keeper: a helper process that refreshes a lock's TTL
 *       while its holder runs and stops refreshing the moment the
 *       holder is gone (PR_SET_PDEATHSIG), so a holder killed -9 loses
 *       its lock after the TTL.
 *   core.redis{host=, port=, tls=, ca_file=, timeout=} -> conn
 *   conn:call(arg, ...) -> reply | nil, msg, kind;  conn:close()
 *       RESP2 over TCP, or TLS through OpenSSL for rediss://. Debian's
 *       hiredis (0.14) has no TLS, so a hiredis binding would still need
 *       this TLS code; a command/reply exchange is small enough to write
 *       here on the OpenSSL we already link.
 *
 * Expected failures return nil, message, kind; wrong arguments raise.
 */
#define _GNU_SOURCE
#include "lua_bind.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define AEAD_NONCE 12
#define AEAD_TAG 16
#define AEAD_MAX (16 * 1024 * 1024)

/* ---- AES-256-GCM ---------------------------------------------------- */

static int
aead(lua_State *L, int seal)
{
    size_t klen, inlen, aadlen;
    const char *key = luaL_checklstring(L, 1, &klen);
    const char *in = luaL_checklstring(L, 2, &inlen);
    const char *aad = luaL_optlstring(L, 3, "", &aadlen);
    EVP_CIPHER_CTX *c;
    unsigned char nonce[AEAD_NONCE];
    const unsigned char *ct;
    size_t ctlen;
    unsigned char *out;
    luaL_Buffer b;
    int n = 0, fin = 0, ok;

    luaL_argcheck(L, klen == 32, 1, "key must be 32 bytes");
    luaL_argcheck(L, inlen <= AEAD_MAX, 2, "input too large");
    if (!seal && inlen < AEAD_NONCE + AEAD_TAG)
        return lbind_fail(L, "sealed data too short", "invalid");
    if (seal) {
        if (RAND_bytes(nonce, AEAD_NONCE) != 1)
            return lbind_fail(L, "no random bytes for a nonce", "crypto");
        ct = (const unsigned char *)in;
        ctlen = inlen;
    } else {
        memcpy(nonce, in, AEAD_NONCE);
        ct = (const unsigned char *)in + AEAD_NONCE;
        ctlen = inlen - AEAD_NONCE - AEAD_TAG;
    }
    out = (unsigned char *)luaL_buffinitsize(L, &b,
        ctlen + AEAD_NONCE + AEAD_TAG);
    c = EVP_CIPHER_CTX_new();
    if (c == NULL)
        return luaL_error(L, "aead: out of memory");
    ok = EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL, seal) == 1
        && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, AEAD_NONCE,
            NULL) == 1
        && EVP_CipherInit_ex(c, NULL, NULL, (const unsigned char *)key,
            nonce, seal) == 1;
    if (ok && aadlen > 0)
        ok = EVP_CipherUpdate(c, NULL, &n, (const unsigned char *)aad,
            (int)aadlen) == 1;
    if (seal) {
        memcpy(out, nonce, AEAD_NONCE);
        ok = ok && EVP_CipherUpdate(c, out + AEAD_NONCE, &n, ct,
            (int)ctlen) == 1
            && EVP_CipherFinal_ex(c, out + AEAD_NONCE + n, &fin) == 1
            && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, AEAD_TAG,
                out + AEAD_NONCE + n + fin) == 1;
        EVP_CIPHER_CTX_free(c);
        if (!ok)
            return lbind_fail(L, "AES-256-GCM seal failed", "crypto");
        luaL_pushresultsize(&b, AEAD_NONCE + (size_t)n + (size_t)fin +
            AEAD_TAG);
        return 1;
    }
    ok = ok && EVP_CipherUpdate(c, out, &n, ct, (int)ctlen) == 1
        && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, AEAD_TAG,
            (void *)(ct + ctlen)) == 1;
    /* Final fails when the tag does not verify: wrong key or changed. */
    ok = ok && EVP_CipherFinal_ex(c, out + n, &fin) == 1;
    EVP_CIPHER_CTX_free(c);
    ERR_clear_error();
    if (!ok) {
        luaL_pushresultsize(&b, 0);
        lua_pop(L, 1);
        return lbind_fail(L, "cannot decrypt: wrong storage key or the "
            "data was changed", "crypto");
    }
    luaL_pushresultsize(&b, (size_t)n + (size_t)fin);
    return 1;
}

static int l_aead_seal(lua_State *L) { return aead(L, 1); }
static int l_aead_open(lua_State *L) { return aead(L, 0); }

/* ---- the lock keeper's process --------------------------------------- */

/* core.spawn_bg{argv...} -> pid: fork and exec argv[1] with stdin,
 * stdout and stderr on /dev/null (a caller reading our output to its
 * end must not wait for the helper too). The child gets SIGKILL when we
 * exit, whatever the way. */
static int
l_spawn_bg(lua_State *L)
{
    lua_Integer n, i;
    const char **argv;
    pid_t parent = getpid(), pid;

    luaL_checktype(L, 1, LUA_TTABLE);
    n = (lua_Integer)lua_rawlen(L, 1);
    luaL_argcheck(L, n >= 1 && n < 256, 1, "argv must have 1..255 entries");
    argv = lua_newuserdatauv(L, sizeof(*argv) * (size_t)(n + 1), 0);
    for (i = 1; i <= n; i++) {
        lua_rawgeti(L, 1, i);
        argv[i - 1] = lua_tostring(L, -1);
        if (argv[i - 1] == NULL)
            return luaL_error(L, "spawn_bg: argv[%d] is not a string",
                (int)i);
        lua_pop(L, 1);          /* still referenced by the table */
    }
    argv[n] = NULL;
    fflush(NULL);
    pid = fork();
    if (pid < 0)
        return lbind_fail(L, strerror(errno), "io");
    if (pid == 0) {
        int fd = open("/dev/null", O_RDWR);

        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
            _exit(1);
        if (fd >= 0) {
            dup2(fd, 0);
            dup2(fd, 1);
            dup2(fd, 2);
            if (fd > 2)
                close(fd);
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    lua_pushinteger(L, (lua_Integer)pid);
    return 1;
}

static int
l_kill(lua_State *L)
{
    lua_Integer pid = luaL_checkinteger(L, 1);
    lua_Integer sig = luaL_optinteger(L, 2, SIGTERM);

    luaL_argcheck(L, pid > 0, 1, "pid must be positive");
    if (kill((pid_t)pid, (int)sig) != 0)
        return lbind_fail(L, strerror(errno),
            errno == ESRCH ? "not_found" : "io");
    lua_pushboolean(L, 1);
    return 1;
}

/* core.reap(pid [, wait]) -> true when the child has exited (collected),
 * false while it runs. wait: block until it exits. */
static int
l_reap(lua_State *L)
{
    lua_Integer pid = luaL_checkinteger(L, 1);
    int wait_it = lua_toboolean(L, 2);
    pid_t r;

    do
        r = waitpid((pid_t)pid, NULL, wait_it ? 0 : WNOHANG);
    while (r < 0 && errno == EINTR);
    lua_pushboolean(L, r != 0);
    return 1;
}

/* ---- Redis ----------------------------------------------------------- */

#define REDIS_MT "luacme.redis"
#define REDIS_MAX_BULK (64 * 1024 * 1024)
#define REDIS_MAX_DEPTH 8

struct redis {
    int fd;                 /* -1 once closed */
    SSL_CTX *ctx;
    SSL *ssl;
    int timeout_ms;
    char buf[16384];
    size_t start, end;      /* unread bytes are buf[start..end) */
    char err[256];
    const char *kind;
};

static void
redis_shut(struct redis *r)
{
    if (r->ssl != NULL) {
        SSL_free(r->ssl);
        r->ssl = NULL;
    }
    if (r->ctx != NULL) {
        SSL_CTX_free(r->ctx);
        r->ctx = NULL;
    }
    if (r->fd >= 0) {
        close(r->fd);
        r->fd = -1;
    }
}

static int
set_err(struct redis *r, const char *kind, const char *msg)
{
    snprintf(r->err, sizeof(r->err), "%s", msg);
    r->kind = kind;
    return -1;
}

/* Wait for the socket to be readable (events POLLIN) or writable. */
static int
wait_fd(struct redis *r, short events)
{
    struct pollfd p = { r->fd, events, 0 };
    int n;

    do
        n = poll(&p, 1, r->timeout_ms);
    while (n < 0 && errno == EINTR);
    if (n == 0)
        return set_err(r, "timeout", "redis: timed out");
    if (n < 0)
        return set_err(r, "io", strerror(errno));
    return 0;
}

static int
tls_wait(struct redis *r, int ret)
{
    switch (SSL_get_error(r->ssl, ret)) {
    case SSL_ERROR_WANT_READ:
        return wait_fd(r, POLLIN);
    case SSL_ERROR_WANT_WRITE:
        return wait_fd(r, POLLOUT);
    default: {
        char e[200];

        ERR_error_string_n(ERR_get_error(), e, sizeof(e));
        ERR_clear_error();
        return set_err(r, "tls", e);
    }
    }
}

/* After send or recv on the plain socket failed (errno set): wait for
 * events when the call would block or was interrupted (0: call it
 * again), else fill the error (-1). */
static int
sock_again(struct redis *r, short events)
{
    if (errno == EAGAIN || errno == EINTR)
        return wait_fd(r, events);
    return set_err(r, "io", strerror(errno));
}

static int
redis_write(struct redis *r, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n;

        if (r->ssl != NULL) {
            int k = SSL_write(r->ssl, p, (int)(len > 65536 ? 65536 : len));

            if (k <= 0) {
                if (tls_wait(r, k) != 0)
                    return -1;
                continue;
            }
            n = k;
        } else {
            n = send(r->fd, p, len, MSG_NOSIGNAL);
            if (n < 0) {
                if (sock_again(r, POLLOUT) != 0)
                    return -1;
                continue;
            }
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Read more bytes into the buffer (compacting it first). */
static int
redis_fill(struct redis *r)
{
    ssize_t n;

    if (r->start > 0) {
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->end -= r->start;
        r->start = 0;
    }
    if (r->end == sizeof(r->buf))
        return set_err(r, "protocol", "redis: reply line too long");
    for (;;) {
        if (r->ssl != NULL) {
            int k = SSL_read(r->ssl, r->buf + r->end,
                (int)(sizeof(r->buf) - r->end));

            if (k <= 0) {
                if (SSL_get_error(r->ssl, k) == SSL_ERROR_ZERO_RETURN)
                    return set_err(r, "io", "redis: connection closed");
                if (tls_wait(r, k) != 0)
                    return -1;
                continue;
            }
            n = k;
        } else {
            n = recv(r->fd, r->buf + r->end, sizeof(r->buf) - r->end, 0);
            if (n < 0) {
                if (sock_again(r, POLLIN) != 0)
                    return -1;
                continue;
            }
            if (n == 0)
                return set_err(r, "io", "redis: connection closed");
        }
        r->end += (size_t)n;
        return 0;
    }
}

/* One CRLF-terminated line; *line points into the buffer (valid until
 * the next read), without the CRLF. */
static int
redis_line(struct redis *r, const char **line, size_t *len)
{
    for (;;) {
        char *s = r->buf + r->start;
        char *e = memchr(s, '\n', r->end - r->start);

        if (e != NULL && e > s && e[-1] == '\r') {
            *line = s;
            *len = (size_t)(e - 1 - s);
            r->start += (size_t)(e - s) + 1;
            return 0;
        }
        if (redis_fill(r) != 0)
            return -1;
    }
}

static int
parse_int(struct redis *r, const char *s, size_t len, long long *out)
{
    char tmp[32];
    char *end;

    if (len == 0 || len >= sizeof(tmp))
        return set_err(r, "protocol", "redis: bad integer");
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    errno = 0;
    *out = strtoll(tmp, &end, 10);
    if (errno != 0 || *end != '\0')
        return set_err(r, "protocol", "redis: bad integer");
    return 0;
}

/* Push one reply. An error reply pushes a table { err = "..." }. */
static int
redis_reply(lua_State *L, struct redis *r, int depth)
{
    const char *line;
    size_t len;
    long long n, i;

    if (depth > REDIS_MAX_DEPTH)
        return set_err(r, "protocol", "redis: reply nested too deep");
    if (redis_line(r, &line, &len) != 0)
        return -1;
    if (len == 0)
        return set_err(r, "protocol", "redis: empty reply line");
    switch (line[0]) {
    case '+':
        lua_pushlstring(L, line + 1, len - 1);
        return 0;
    case '-':
        lua_createtable(L, 0, 1);
        lua_pushlstring(L, line + 1, len - 1);
        lua_setfield(L, -2, "err");
        return 0;
    case ':':
        if (parse_int(r, line + 1, len - 1, &n) != 0)
            return -1;
        lua_pushinteger(L, (lua_Integer)n);
        return 0;
    case '$': {
        luaL_Buffer b;
        size_t want;

        if (parse_int(r, line + 1, len - 1, &n) != 0)
            return -1;
        if (n < 0) {
            lua_pushboolean(L, 0);
            return 0;
        }
        if (n > REDIS_MAX_BULK)
            return set_err(r, "too_large", "redis: value too large");
        want = (size_t)n + 2;
        luaL_buffinit(L, &b);
        while (want > 0) {
            size_t have = r->end - r->start, take;

            if (have == 0) {
                if (redis_fill(r) != 0) {
                    luaL_pushresult(&b);
                    lua_pop(L, 1);
                    return -1;
                }
                continue;
            }
            take = have < want ? have : want;
            /* The trailing CRLF is not part of the value. */
            if (want - take < 2) {
                size_t keep = want > 2 ? want - 2 : 0;

                luaL_addlstring(&b, r->buf + r->start,
                    keep < take ? keep : take);
            } else {
                luaL_addlstring(&b, r->buf + r->start, take);
            }
            r->start += take;
            want -= take;
        }
        luaL_pushresult(&b);
        return 0;
    }
    case '*':
        if (parse_int(r, line + 1, len - 1, &n) != 0)
            return -1;
        if (n < 0) {
            lua_pushboolean(L, 0);
            return 0;
        }
        if (n > 1000000)
            return set_err(r, "too_large", "redis: array too large");
        lua_createtable(L, (int)n, 0);
        for (i = 1; i <= n; i++) {
            if (redis_reply(L, r, depth + 1) != 0) {
                lua_pop(L, 1);
                return -1;
            }
            lua_rawseti(L, -2, (lua_Integer)i);
        }
        return 0;
    default:
        return set_err(r, "protocol", "redis: unknown reply type");
    }
}

static struct redis *
redis_check(lua_State *L)
{
    struct redis *r = luaL_checkudata(L, 1, REDIS_MT);

    if (r->fd < 0)
        luaL_error(L, "attempt to use a closed redis connection");
    return r;
}

/* conn:call(arg, ...) -> reply, or nil, msg, kind. A Redis error reply
 * comes back as nil, message, "redis". A transport failure closes the
 * connection (a reply could be half read). */
static int
l_redis_call(lua_State *L)
{
    struct redis *r = redis_check(L);
    int n = lua_gettop(L) - 1, i;
    luaL_Buffer b;
    size_t len;
    const char *s;

    luaL_argcheck(L, n >= 1, 2, "a command is needed");
    luaL_buffinit(L, &b);
    lua_pushfstring(L, "*%d\r\n", n);
    luaL_addvalue(&b);
    for (i = 2; i <= n + 1; i++) {
        s = luaL_checklstring(L, i, &len);
        lua_pushfstring(L, "$%I\r\n", (lua_Integer)len);
        luaL_addvalue(&b);
        luaL_addlstring(&b, s, len);
        luaL_addlstring(&b, "\r\n", 2);
    }
    luaL_pushresult(&b);
    s = lua_tolstring(L, -1, &len);
    if (redis_write(r, s, len) != 0 || redis_reply(L, r, 0) != 0) {
        redis_shut(r);
        return lbind_fail(L, r->err, r->kind);
    }
    if (lua_istable(L, -1)) {
        if (lua_getfield(L, -1, "err") == LUA_TSTRING)
            return lbind_fail(L, lua_tostring(L, -1), "redis");
        lua_pop(L, 1);
    }
    return 1;
}

static int
l_redis_close(lua_State *L)
{
    struct redis *r = luaL_checkudata(L, 1, REDIS_MT);

    redis_shut(r);
    return 0;
}

static int
tcp_connect(struct redis *r, const char *host, const char *port)
{
    struct addrinfo hints, *res, *ai;
    int rc, fd = -1, soerr;
    socklen_t sl = sizeof(soerr);

    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0)
        return set_err(r, "io", gai_strerror(rc));
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC |
            SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0)
            continue;
        r->fd = fd;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        /* connect's own errno, kept before wait_fd can change it; with
         * EINPROGRESS the result is the socket's SO_ERROR. */
        soerr = errno == EINPROGRESS ? 0 : errno;
        if (soerr == 0 && wait_fd(r, POLLOUT) == 0) {
            sl = sizeof(soerr);
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0)
                soerr = errno;
            if (soerr == 0)
                break;
        }
        /* wait_fd reports its own timeout; soerr 0 is none of ours. */
        if (r->kind == NULL)
            set_err(r, "io", strerror(soerr != 0 ? soerr : ETIMEDOUT));
        close(fd);
        r->fd = fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        if (r->kind == NULL)
            set_err(r, "io", "no address to connect to");
        return -1;
    }
    rc = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &rc, sizeof(rc));
    return 0;
}

static int
tls_start(struct redis *r, const char *host, const char *ca_file)
{
    int k;

    r->ctx = SSL_CTX_new(TLS_client_method());
    if (r->ctx == NULL)
        return set_err(r, "tls", "cannot make a TLS context");
    SSL_CTX_set_min_proto_version(r->ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(r->ctx, SSL_VERIFY_PEER, NULL);
    if ((ca_file != NULL ? SSL_CTX_load_verify_locations(r->ctx, ca_file,
        NULL) : SSL_CTX_set_default_verify_paths(r->ctx)) != 1)
        return set_err(r, "tls", "cannot load the CA certificates");
    r->ssl = SSL_new(r->ctx);
    if (r->ssl == NULL || SSL_set_fd(r->ssl, r->fd) != 1)
        return set_err(r, "tls", "cannot make a TLS connection");
    /* An address literal is checked against the certificate's IP
     * entries, a name against its DNS names (and sent as SNI). */
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(r->ssl), host) != 1) {
        SSL_set_tlsext_host_name(r->ssl, host);
        if (SSL_set1_host(r->ssl, host) != 1)
            return set_err(r, "tls", "cannot set the host to verify");
    }
    while ((k = SSL_connect(r->ssl)) != 1) {
        long v = SSL_get_verify_result(r->ssl);

        if (v != X509_V_OK) {
            char msg[200];

            snprintf(msg, sizeof(msg), "redis TLS: %s",
                X509_verify_cert_error_string(v));
            ERR_clear_error();
            return set_err(r, "tls", msg);
        }
        if (tls_wait(r, k) != 0)
            return -1;
    }
    return 0;
}

/* core.redis{host=, port=, tls=, ca_file=, timeout=} -> conn, or nil,
 * msg, kind. timeout (seconds, default 10) bounds each wait. */
static int
l_redis(lua_State *L)
{
    static const char *const opts[] = { "host", "port", "tls", "ca_file",
        "timeout", NULL };
    struct redis *r;
    const char *host, *ca_file;
    char port[16];
    lua_Integer p;
    double t;

    luaL_checktype(L, 1, LUA_TTABLE);
    lbind_check_options(L, 1, "redis", opts);
    lua_getfield(L, 1, "host");
    host = luaL_checkstring(L, -1);
    lua_getfield(L, 1, "port");
    p = luaL_optinteger(L, -1, 6379);
    luaL_argcheck(L, p > 0 && p < 65536, 1, "port must be 1..65535");
    lua_getfield(L, 1, "ca_file");
    ca_file = luaL_optstring(L, -1, NULL);
    lua_getfield(L, 1, "timeout");
    t = lua_isnil(L, -1) ? 10 : lbind_opt_timeout(L, lua_gettop(L), "redis");
    lua_getfield(L, 1, "tls");
    snprintf(port, sizeof(port), "%d", (int)p);
    r = lua_newuserdatauv(L, sizeof(*r), 0);
    memset(r, 0, sizeof(*r));
    r->fd = -1;
    r->timeout_ms = (int)(t * 1000);
    luaL_setmetatable(L, REDIS_MT);
    if (tcp_connect(r, host, port) != 0 ||
        (lua_toboolean(L, -2) && tls_start(r, host, ca_file) != 0)) {
        redis_shut(r);
        return lbind_fail(L, r->err, r->kind);
    }
    return 1;
}

void
lbind_fleet(lua_State *L)
{
    static const luaL_Reg meta[] = {
        {"__gc", l_redis_close},
        {"__close", l_redis_close},
        {NULL, NULL}
    };
    static const luaL_Reg methods[] = {
        {"call", l_redis_call},
        {"close", l_redis_close},
        {NULL, NULL}
    };
    static const luaL_Reg funcs[] = {
        {"aead_seal", l_aead_seal},
        {"aead_open", l_aead_open},
        {"spawn_bg", l_spawn_bg},
        {"kill", l_kill},
        {"reap", l_reap},
        {"redis", l_redis},
        {NULL, NULL}
    };

    if (luaL_newmetatable(L, REDIS_MT)) {
        luaL_setfuncs(L, meta, 0);
        luaL_newlib(L, methods);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    luaL_setfuncs(L, funcs, 0);
}
