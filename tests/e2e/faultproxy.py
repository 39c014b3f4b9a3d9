#!/usr/bin/env python3
"""A fault-injecting HTTPS proxy in front of Pebble, for the ambiguous-reply
tests (tests/e2e/faults_test.lua).

    faultproxy.py ADDR PORT CONTROL_PORT UPSTREAM_PORT CERT KEY

Terminates TLS itself on ADDR:PORT with CERT/KEY (HTTP/1.1 only), sends
every request on to Pebble at https://ADDR:UPSTREAM_PORT (verified with
CERT as the CA: the harness gives both the same test certificate), and
passes the reply back, unless a rule says otherwise.  The Host header is
passed on unchanged, so Pebble builds its URLs (and checks the JWS "url")
with the proxy's address.

Rules are set over plain HTTP on ADDR:CONTROL_PORT:
  POST /rules  {"rules": [RULE, ...]}   replaces the rules, resets counts
  GET  /log    every request seen: [{"n", "method", "path", "rule",
               "action", "upstream"}] (upstream: Pebble's status or null)
  POST /clear  forgets the rules and the log
A RULE matches a request by "method" (default any), "path" (a Python
regular expression searched in the path) and "payload" (a regular
expression searched in the JWS payload, base64url-decoded; "^$" is a
POST-as-GET).  It fires on its "nth" match (default 1) and the "count" - 1 matches
after it (default: once), with:
  "action": "cut_status"  the status line, then the connection closed
            "cut_body"    status, headers, half of the body, then closed
            "empty"       closed without a byte of reply
            "reset"       closed with a TCP reset (SO_LINGER 0)
            "status"      reply "status" (500, 502, 503, 504 ...) with an
                          error body instead of Pebble's reply
            "delay"       Pebble's reply, "delay" seconds late
  "success": true         count and fire only on requests Pebble
                          answered with a 2xx (it did the work: not a
                          badNonce it rejected); the fault then replaces
                          that reply
  "forward": false        do not send the request to Pebble at all (the
                          fault happens before the CA sees it); by
                          default the request reaches Pebble first, so
                          the CA did the work and only the reply is lost.
"delay" may also be given with any other action (waits before it, so
before Pebble sees the request unless "forward" is false).
"""

import base64
import http.client
import http.server
import json
import re
import socket
import ssl
import struct
import sys
import threading
import time

HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection",
       "upgrade", "te", "trailer", "content-length"}


class Rules:
    def __init__(self):
        self.lock = threading.Lock()
        self.rules = []
        self.log = []

    def set(self, rules):
        with self.lock:
            self.rules = []
            for i, r in enumerate(rules):
                r = dict(r)
                r.setdefault("id", i)
                r["seen"] = 0
                r["fired"] = False
                self.rules.append(r)

    def clear(self):
        with self.lock:
            self.rules = []
            self.log = []

    def match(self, method, path, payload, upstream=None):
        """The rule that fires for this request, or None; counts every
        rule's matches.  Rules with "success" are asked after Pebble
        answered (upstream: its status), the others before."""
        with self.lock:
            fire = None
            for r in self.rules:
                if r["fired"]:
                    continue
                if bool(r.get("success")) != (upstream is not None):
                    continue
                if upstream is not None and not 200 <= upstream < 300:
                    continue
                if r.get("method") and r["method"] != method:
                    continue
                if r.get("path") and not re.search(r["path"], path):
                    continue
                if "payload" in r:
                    if payload is None or not re.search(r["payload"],
                                                        payload):
                        continue
                r["seen"] += 1
                first = r.get("nth", 1)
                last = first + r.get("count", 1) - 1
                if first <= r["seen"] <= last and fire is None:
                    r["fired"] = r["seen"] == last
                    fire = dict(r)
            return fire

    def record(self, entry):
        with self.lock:
            entry["n"] = len(self.log) + 1
            self.log.append(entry)

    def entries(self):
        with self.lock:
            return list(self.log)


RULES = Rules()


def jws_payload(body):
    """The decoded payload of a flattened JWS body, or None."""
    try:
        doc = json.loads(body)
        p = doc["payload"]
        p += "=" * (-len(p) % 4)
        return base64.urlsafe_b64decode(p).decode("utf-8", "replace")
    except (ValueError, KeyError, TypeError):
        return None


class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    upstream = None                 # (host, port, ssl context)

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (time.strftime("%H:%M:%S"),
                                      fmt % args))
        sys.stderr.flush()

    def do_GET(self):
        self.handle_one()

    do_POST = do_HEAD = do_PUT = do_DELETE = do_GET

    def ask_pebble(self, body):
        host, port, ctx = self.upstream
        conn = http.client.HTTPSConnection(host, port, context=ctx,
                                           timeout=30)
        try:
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() not in HOP}
            if body is not None:
                headers["Content-Length"] = str(len(body))
            conn.request(self.command, self.path, body=body,
                         headers=headers)
            r = conn.getresponse()
            data = r.read()
            return r.status, r.reason, r.getheaders(), data
        finally:
            conn.close()

    def abort(self, reset):
        """Close the client's connection now, without a proper reply:
        with a TCP reset, or after a clean TLS close_notify (an EOF)."""
        self.close_connection = True
        sock = self.connection
        try:
            self.wfile.flush()
        except OSError:
            pass
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                            struct.pack("ii", 1, 0))
        else:
            try:
                sock = sock.unwrap()
            except (OSError, ValueError, ssl.SSLError):
                pass
        # rfile and wfile hold references that would keep the socket
        # open past close().
        for f in (self.rfile, self.wfile):
            try:
                f.close()
            except OSError:
                pass
        try:
            sock.close()
            self.connection.close()
        except OSError:
            pass

    def head_bytes(self, status, reason, headers, length):
        lines = ["HTTP/1.1 %d %s" % (status, reason)]
        for k, v in headers:
            if k.lower() not in HOP:
                lines.append("%s: %s" % (k, v))
        lines.append("Content-Length: %d" % length)
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def handle_one(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n > 0 else None
        if self.command == "POST" and body is None:
            body = b""
        payload = jws_payload(body) if body else ("" if body == b"" else None)
        rule = RULES.match(self.command, self.path, payload)
        entry = {"method": self.command, "path": self.path,
                 "rule": rule and rule.get("id"),
                 "action": rule and rule.get("action"), "upstream": None}
        try:
            action = rule and rule.get("action")
            if action != "delay" and rule and rule.get("delay"):
                time.sleep(float(rule["delay"]))
            reply = None
            if not rule or rule.get("forward", True):
                reply = self.ask_pebble(body)
                entry["upstream"] = reply[0]
            if not rule:
                rule = RULES.match(self.command, self.path, payload,
                                   reply[0])
                action = rule and rule.get("action")
                entry["rule"], entry["action"] = (rule and rule.get("id"),
                                                  action)
                if action != "delay" and rule and rule.get("delay"):
                    time.sleep(float(rule["delay"]))
            RULES.record(entry)
            if action == "delay":
                time.sleep(float(rule.get("delay", 1)))
            if action in (None, "delay"):
                status, reason, headers, data = reply
                self.wfile.write(self.head_bytes(status, reason, headers,
                                                 len(data)))
                if self.command != "HEAD":
                    self.wfile.write(data)
                self.wfile.flush()
            elif action == "cut_status":
                status = reply[0] if reply else 200
                self.wfile.write(("HTTP/1.1 %d OK\r\n" % status).encode())
                self.abort(False)
            elif action == "cut_body":
                status, reason, headers, data = reply or (
                    200, "OK", [("Content-Type", "application/json")],
                    b'{"status": "pending", "padding": "' + b"x" * 64 + b'"}')
                if len(data) < 2:
                    # Nothing to cut in half: promise more than is sent.
                    self.wfile.write(self.head_bytes(status, reason,
                                                     headers, 64))
                else:
                    self.wfile.write(self.head_bytes(status, reason,
                                                     headers, len(data)))
                    self.wfile.write(data[:len(data) // 2])
                self.abort(False)
            elif action == "empty":
                self.abort(False)
            elif action == "reset":
                self.abort(True)
            elif action == "status":
                st = int(rule.get("status", 500))
                if st in (500, 503):
                    ctype = "application/problem+json"
                    data = json.dumps({
                        "type": "urn:ietf:params:acme:error:serverInternal",
                        "detail": "injected %d" % st, "status": st}).encode()
                else:
                    ctype = "text/html"
                    data = b"<html><body>%d Gateway trouble</body></html>" % st
                self.wfile.write(self.head_bytes(
                    st, "Injected", [("Content-Type", ctype)], len(data)))
                self.wfile.write(data)
                self.wfile.flush()
            else:
                raise ValueError("unknown action %r" % action)
        except (OSError, http.client.HTTPException) as e:
            self.log_message("upstream or client failed: %s", e)
            self.close_connection = True


class ProxyServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, addr, ctx):
        super().__init__(addr, Proxy)
        self.ctx = ctx

    def get_request(self):
        sock, addr = self.socket.accept()
        # The handshake runs in the handler's thread (first read).
        return self.ctx.wrap_socket(sock, server_side=True,
                                    do_handshake_on_connect=False), addr

    def handle_error(self, request, client_address):
        pass


class Control(http.server.BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        pass

    def reply(self, code, obj):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/log":
            return self.reply(200, RULES.entries())
        if self.path == "/ready":
            return self.reply(200, {"ok": True})
        self.reply(404, {})

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        if self.path == "/rules":
            try:
                rules = json.loads(body)["rules"]
                if rules == {}:         # an empty Lua table as JSON
                    rules = []
                if not isinstance(rules, list):
                    raise ValueError("rules must be a list")
            except (ValueError, KeyError, TypeError) as e:
                return self.reply(400, {"error": str(e)})
            RULES.set(rules)
            return self.reply(200, {"ok": True})
        if self.path == "/clear":
            RULES.clear()
            return self.reply(200, {"ok": True})
        self.reply(404, {})


def main(addr, port, control_port, upstream_port, cert, key):
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(cert, key)
    sctx.set_alpn_protocols(["http/1.1"])
    uctx = ssl.create_default_context(cafile=cert)
    Proxy.upstream = (addr, int(upstream_port), uctx)
    proxy = ProxyServer((addr, int(port)), sctx)
    control = http.server.ThreadingHTTPServer((addr, int(control_port)),
                                              Control)
    control.daemon_threads = True
    threading.Thread(target=control.serve_forever, daemon=True).start()
    sys.stderr.write("faultproxy on %s:%s -> %s, control %s\n" % (
        addr, port, upstream_port, control_port))
    sys.stderr.flush()
    proxy.serve_forever()


if __name__ == "__main__":
    main(*sys.argv[1:7])
