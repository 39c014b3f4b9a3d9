/*
 * Every size and time cap of the C core, named, in one place. Each one is
 * exercised by a test (tests/c or tests/lua/unit) so a change here shows.
 */
#ifndef LUACME_LIMITS_H
#define LUACME_LIMITS_H

/* Largest PEM (key, certificate chain, CSR) accepted from Lua or disk. */
#define LUACME_PEM_MAX (1024 * 1024)

/* Largest input to base64url encode/decode and to the digests: the biggest
 * thing we ever encode is a certificate chain or a JWS payload. */
#define LUACME_B64_MAX (8 * 1024 * 1024)

/* Default cap on an HTTP response body; core.http{max_body=} overrides. */
#define LUACME_HTTP_MAX_BODY (2 * 1024 * 1024)

/* Hard ceiling for max_body, whatever the caller asks. */
#define LUACME_HTTP_MAX_BODY_CEIL (64 * 1024 * 1024)

/* Cap on the total size of response headers kept for Lua. */
#define LUACME_HTTP_MAX_HEADERS (64 * 1024)

/* Default whole-request and connect timeouts in seconds. */
#define LUACME_HTTP_TIMEOUT_S 30
#define LUACME_HTTP_CONNECT_TIMEOUT_S 10

/* Longest timeout core.http{} accepts (seconds); longer ones are a typo. */
#define LUACME_HTTP_TIMEOUT_MAX_S (24 * 60 * 60)

/* Most bytes core.random() hands out in one call. */
#define LUACME_RANDOM_MAX 4096

/* Most names (DNS + IP) in one CSR; RFC 8555 CAs allow about 100. */
#define LUACME_CSR_MAX_NAMES 1000

/* Longest identifier we put into a certificate (DNS name limit + slack). */
#define LUACME_NAME_MAX 255

/* Most certificates core.pem_split accepts in one chain (leaf, a few
 * intermediates, maybe a cross-sign). */
#define LUACME_CHAIN_MAX_CERTS 16

/* Smallest RSA key we load or sign with (RFC 8555 CAs refuse less). */
#define LUACME_RSA_MIN_BITS 2048

/* Deepest nesting of tables the JWS protected-header encoder accepts. */
#define LUACME_JSON_MAX_DEPTH 16

/* Default cap of core.read_file (state files, PEM, JSON are far
 * smaller); read_file(path, max) may ask up to LUACME_FILE_MAX_CEIL. */
#define LUACME_FILE_MAX (16 * 1024 * 1024)
#define LUACME_FILE_MAX_CEIL (256 * 1024 * 1024)

/* Default cap on each of a spawned program's stdout and stderr; the rest
 * is read and discarded. spawn{max_output=} may ask up to the ceiling. */
#define LUACME_SPAWN_MAX_OUTPUT (1024 * 1024)
#define LUACME_SPAWN_MAX_OUTPUT_CEIL (64 * 1024 * 1024)

/* Seconds between SIGTERM and SIGKILL for a spawned program that timed
 * out or was interrupted. */
#define LUACME_SPAWN_KILL_GRACE_S 1

/* Longest timeout core.spawn and core.lock accept, in seconds (a week). */
#define LUACME_WAIT_MAX_S (7 * 24 * 3600)

#endif
