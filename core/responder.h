/*
 * Challenge responders: luacme itself answers the CA's validation
 * requests while an order is being validated.
 *
 *   http-01      (RFC 8555 §8.3) plain HTTP/1.x; serves GET/HEAD of
 *                /.well-known/acme-challenge/<token> for added tokens,
 *                404 for everything else.
 *   tls-alpn-01  (RFC 8737, RFC 8738) TLS 1.2+; completes only handshakes
 *                offering ALPN "acme-tls/1" whose SNI names an added
 *                identifier (IP identifiers by their reverse name, with
 *                or without the trailing dot), presents that identifier's
 *                challenge certificate and closes without application
 *                data.
 *
 * Each responder serves from its own thread (the caller's thread keeps
 * running the ACME flow while the CA validates): one poll() loop over
 * non-blocking sockets, so a slow client costs one connection slot and
 * never blocks the others. Connections are capped in number and in
 * lifetime, http-01 requests in size (core/luacme_limits.h). The content is
 * shared with the caller's thread under a mutex. responder_stop() wakes
 * the thread through a pipe and joins it.
 */
#ifndef LUACME_RESPONDER_H
#define LUACME_RESPONDER_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "err.h"

enum responder_kind {
    RESPONDER_HTTP01,
    RESPONDER_TLS_ALPN01
};

struct responder_opts {
    /* Numeric IPv4 or IPv6 address (no names are resolved; an IPv6
     * scope "%if" is allowed). NULL, "" or "*": every address, as an
     * IPv6 dual-stack socket, or IPv4 only when the host has no IPv6.
     * "::" is dual-stack too (fails without IPv6); "0.0.0.0" IPv4 only. */
    const char *address;
    int port;               /* 0..65535; 0 = ephemeral (tests) */
    int max_conns;          /* 0 = LUACME_RESPONDER_MAX_CONNS */
    size_t max_request;     /* http-01; 0 = LUACME_RESPONDER_MAX_REQUEST */
    int timeout_ms;         /* 0 = LUACME_RESPONDER_TIMEOUT_MS */
};

/* Counters since the start. For tls-alpn-01 a "request" is a received
 * ClientHello and "served" a completed handshake; "not_found" counts
 * unknown tokens (http-01) or unknown/absent SNI (tls-alpn-01); "bad"
 * counts malformed, oversize or refused requests (wrong method, no or
 * another ALPN protocol, TLS errors); "timeouts" connections closed
 * because they outlived the connection timeout (or, without a complete
 * request head or handshake, LUACME_RESPONDER_HEAD_MS); "evicted" idle
 * connections closed to make room (LUACME_RESPONDER_PER_ADDR, a full
 * responder). */
struct responder_stats {
    uint64_t connections, requests, served, not_found, bad, timeouts;
    uint64_t evicted;
    unsigned active;        /* connections open now */
    unsigned peak;          /* most connections open at once */
    size_t entries;         /* tokens / identifiers currently added */
};

struct responder;

/* Bind, listen and start the serving thread. Returns 0 and a new
 * responder in *out (free with responder_stop), listening already, so a
 * client may connect as soon as this returns. On failure returns -1 and
 * fills err: "bind" when the address cannot be used (in use, permission,
 * not local), "invalid" for a bad address, port or limit, "crypto" when
 * the TLS context cannot be made, "system" for other failures
 * (sockets, threads, memory). */
int responder_start(enum responder_kind kind, const struct responder_opts *o,
    struct responder **out, struct luacme_err *err);

/* The port actually bound (the chosen one for port 0). */
int responder_port(const struct responder *r);

/* The kind given to responder_start. */
enum responder_kind responder_kind(const struct responder *r);

/* http-01: serve body (copied) for token, replacing an earlier body for
 * the same token. The token must match ^[A-Za-z0-9_-]+$ and be at most
 * LUACME_RESPONDER_MAX_TOKEN bytes, the body at most
 * LUACME_RESPONDER_MAX_BODY. Returns 0, or -1 with err kind "invalid"
 * (bad token, body, or a tls-alpn-01 responder), "too_large" (body, or
 * more than LUACME_RESPONDER_MAX_ENTRIES entries), "system" (memory). */
int responder_http_add(struct responder *r, const char *token,
    const void *body, size_t body_len, struct luacme_err *err);

/* tls-alpn-01: present the certificate (PEM, cert_len bytes, the first
 * certificate is used) with key for identifier, a DNS name (matched
 * case-insensitively, with or without a trailing dot) or an IP address
 * in text form (matched by its RFC 8738 reverse name). Replaces an
 * earlier entry of the same identifier. key is borrowed (a reference is
 * taken). Returns 0, or -1 with err kind "invalid" (identifier, a key
 * not matching the certificate, an http-01 responder), "parse" (PEM),
 * "too_large" (PEM over LUACME_PEM_MAX, too many entries), "system". */
int responder_tls_add(struct responder *r, const char *identifier,
    const char *cert_pem, size_t cert_len, EVP_PKEY *key,
    struct luacme_err *err);

/* Stop serving name: a token (http-01) or an identifier (tls-alpn-01,
 * normalised as in responder_tls_add). Returns 1 when it was there, 0
 * when not. Connections already past the lookup finish as they began. */
int responder_remove(struct responder *r, const char *name);

/* Copy the counters into *st. */
void responder_stats(struct responder *r, struct responder_stats *st);

/* Stop the thread (it closes every connection and the listening socket,
 * so the port is free again when this returns), join it and free r.
 * NULL is accepted. */
void responder_stop(struct responder *r);

#endif
