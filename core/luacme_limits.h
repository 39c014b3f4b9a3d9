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

/* Connections the transport keeps per host and in all, and idle ones
 * cached for reuse: many transfers at once (renew --parallel) queue
 * rather than open a socket each; HTTP/2 multiplexes them on one. */
#define LUACME_HTTP_MAX_HOST_CONNS 8
#define LUACME_HTTP_MAX_TOTAL_CONNS 32
#define LUACME_HTTP_MAX_CACHED_CONNS 16

/* Longest wait of one core.http_run call, in milliseconds, so Ctrl-C
 * and the scheduler's sleepers are looked at regularly. */
#define LUACME_HTTP_RUN_MAX_MS 1000

/* Longest timeout core.http{} accepts (seconds); longer ones are a typo. */
#define LUACME_HTTP_TIMEOUT_MAX_S (24 * 60 * 60)

/* Most bytes core.random() hands out in one call. */
#define LUACME_RANDOM_MAX 4096

/* Most names (DNS + IP) in one CSR; RFC 8555 CAs allow about 100. */
#define LUACME_CSR_MAX_NAMES 1000

/* Most subject attributes, and most extra extensions, a CSR template
 * adds; and the largest value of one such extension (DER bytes). */
#define LUACME_CSR_MAX_TEMPLATE 16
#define LUACME_CSR_MAX_EXT_VALUE 4096

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

/* The challenge responders (core/responder.c). Connections served at
 * once by one responder (default; responder{max_conns=} may ask up to
 * the ceiling); more wait in the kernel's listen queue. Pebble opens 3
 * per challenge at once. */
#define LUACME_RESPONDER_MAX_CONNS 64
#define LUACME_RESPONDER_MAX_CONNS_CEIL 1024

/* One peer must not starve the validation (A#9.5). A request head (or
 * a TLS handshake) must arrive within HEAD_MS of the connection, however
 * long the connection timeout; a peer address holding PER_ADDR
 * connections, or a full responder, evicts the oldest connection still
 * without a complete head that is at least IDLE_MIN_MS old (younger ones
 * are the CA's own, whose request is on its way). */
#define LUACME_RESPONDER_HEAD_MS 2500
#define LUACME_RESPONDER_PER_ADDR 16
#define LUACME_RESPONDER_IDLE_MIN_MS 200

/* Largest http-01 request head (request line and headers) read before
 * answering 431; max_request= may ask from the floor up to the ceiling. */
#define LUACME_RESPONDER_MAX_REQUEST (8 * 1024)
#define LUACME_RESPONDER_MAX_REQUEST_MIN 256
#define LUACME_RESPONDER_MAX_REQUEST_CEIL (64 * 1024)

/* Longest life of one responder connection in milliseconds (request and
 * response, or the TLS handshake), so a slow client cannot keep a slot;
 * timeout= may ask up to the ceiling. */
#define LUACME_RESPONDER_TIMEOUT_MS (10 * 1000)
#define LUACME_RESPONDER_TIMEOUT_MAX_MS (10 * 60 * 1000)

/* Most tokens or identifiers one responder serves at once (one per
 * identifier of an order; CSRs stop at LUACME_CSR_MAX_NAMES). */
#define LUACME_RESPONDER_MAX_ENTRIES 1000

/* Longest http-01 token and body (a key authorization is a token, a dot
 * and 43 characters of thumbprint). */
#define LUACME_RESPONDER_MAX_TOKEN 256
#define LUACME_RESPONDER_MAX_BODY 4096

/* Most bytes read and dropped after a response, waiting for the client
 * to close first (closing with unread input would reset the connection
 * and could destroy the response in flight). */
#define LUACME_RESPONDER_DRAIN_MAX (64 * 1024)

/* Length of the kernel's queue of connections not yet accepted. */
#define LUACME_RESPONDER_BACKLOG 128

/* DNS (core.dns_query, the dns-01 propagation check). Longest name asked
 * for, in presentation form with the trailing dot (the wire limit is 255
 * octets); largest answer taken apart (a TCP message's maximum); most
 * records in one answer; default and longest timeout of one query in
 * whole seconds (libresolv counts in seconds). */
#define LUACME_DNS_NAME_MAX 254
#define LUACME_DNS_PACKET_MAX 65535
#define LUACME_DNS_MAX_RECORDS 1024
#define LUACME_DNS_TIMEOUT_S 5
#define LUACME_DNS_TIMEOUT_MAX_S 60

#endif
