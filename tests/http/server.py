#!/usr/bin/env python3
"""A small HTTPS (or plain HTTP) test server for tests/http/http_test.lua.

Binds 127.0.0.1 on a free port, then writes its PID and port to
DIR/server.pid and DIR/server.port (each written to a temp file and
renamed, so a reader never sees half a number). The port file appearing
means the socket is listening. Exits when the parent PID given with
--parent is gone or after --max-life seconds, so a crashed test leaves
no server behind; the test itself stops it by PID. With --closed it only
binds a port without listening, for a connection that must be refused.

Endpoints (query parameters in brackets):
  /echo             what the server saw: method, path, headers, body digest
  /big [n]          n bytes with Content-Length (HEAD: headers only)
  /chunked [n, trailer]  n bytes, Transfer-Encoding: chunked [+ trailer]
  /close [n]        n bytes, no length, delimited by closing the connection
  /slow [s, kill]   sleeps s seconds first; sends SIGINT to PID kill first
  /links            three Link headers, a padded value, a mixed-case name
  /early            a 103 Early Hints response, then the final 200
  /conn [tag]       distinct client ports seen for tag, counting this one
  /status [code]    answers with that status code
  /headers [n,size] n headers of size bytes each
  /stats            connections accepted so far
  /hangup [tag]     counts the request for tag, then closes the
                    connection without a byte of reply
  /hits [tag]       how many /hangup requests tag had
  /cutstatus        a status line, then the connection closed
"""
import argparse
import hashlib
import json
import os
import signal
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

LOCK = threading.Lock()
PORTS = {}          # tag -> set of client ports
HITS = {}           # tag -> /hangup requests seen
ACCEPTED = [0]      # connections accepted (including failed handshakes)


def pattern(n):
    block = b"0123456789abcdef" * 4096
    out = bytearray()
    while len(out) < n:
        out += block[: n - len(out)]
    return bytes(out)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"   # keep-alive

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.client_address[1], fmt % args))

    def query(self):
        parts = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        return parts.path, q

    def read_body(self):
        te = self.headers.get("Transfer-Encoding")
        if te is not None and "chunked" in te.lower():
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def send_bytes(self, status, body, ctype="application/octet-stream",
                   extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, obj, status=200):
        self.send_bytes(status, json.dumps(obj).encode(), "application/json")

    def write_quietly(self, data):
        """Write; a client that gave up (body cap) is not an error."""
        try:
            self.wfile.write(data)
            self.wfile.flush()
            return True
        except (OSError, ssl.SSLError):
            self.close_connection = True
            return False

    def handle_any(self):
        path, q = self.query()
        body = self.read_body()
        if path == "/echo":
            self.send_json({
                "method": self.command,
                "path": self.path,
                "headers": [[k.lower(), v] for k, v in self.headers.items()],
                "body_len": len(body),
                "body_sha256": hashlib.sha256(body).hexdigest(),
                "content_length": self.headers.get("Content-Length"),
                "transfer_encoding": self.headers.get("Transfer-Encoding"),
            })
        elif path == "/big":
            n = int(q.get("n", "0"))
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            if self.command == "HEAD":
                return
            data = pattern(min(n, 65536))
            left = n
            while left > 0:
                if not self.write_quietly(data[:min(left, len(data))]):
                    return
                left -= min(left, len(data))
        elif path == "/chunked":
            n = int(q.get("n", "0"))
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            if "trailer" in q:
                self.send_header("Trailer", "X-Trailer")
            self.end_headers()
            data = pattern(min(n, 16384))
            left = n
            while left > 0:
                k = min(left, len(data))
                if not self.write_quietly(b"%x\r\n%s\r\n" % (k, data[:k])):
                    return
                left -= k
            if "trailer" in q:
                self.write_quietly(b"0\r\nX-Trailer: late\r\n\r\n")
            else:
                self.write_quietly(b"0\r\n\r\n")
        elif path == "/close":
            n = int(q.get("n", "0"))
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            data = pattern(min(n, 65536))
            left = n
            while left > 0:
                k = min(left, len(data))
                if not self.write_quietly(data[:k]):
                    return
                left -= k
        elif path == "/slow":
            if "kill" in q:
                os.kill(int(q["kill"]), signal.SIGINT)
            time.sleep(float(q.get("s", "5")))
            try:
                self.send_bytes(200, b"slow")
            except (OSError, ssl.SSLError):
                self.close_connection = True
        elif path == "/links":
            self.send_bytes(200, b"links", "text/plain", [
                ("Link", '<https://a.test/1>;rel="next"'),
                ("X-Pad", "  padded value \t"),
                ("Link", '<https://a.test/2>;rel="up"'),
                ("X-Mixed-Case", "Kept-Case"),
                ("Link", '<https://a.test/3>;rel="alternate"'),
            ])
        elif path == "/early":
            # An interim response whose headers must not leak into the
            # final one's.
            self.wfile.write(b"HTTP/1.1 103 Early Hints\r\n"
                             b"Link: </interim.css>; rel=preload\r\n"
                             b"X-Interim: yes\r\n\r\n")
            self.send_bytes(200, b"final", "text/plain",
                            [("Link", "</final>; rel=next")])
        elif path == "/conn":
            tag = q.get("tag", "")
            with LOCK:
                ports = PORTS.setdefault(tag, set())
                ports.add(self.client_address[1])
                count = len(ports)
            self.send_json({"count": count, "port": self.client_address[1]})
        elif path == "/status":
            code = int(q.get("code", "200"))
            self.send_bytes(code, b"status %d" % code, "text/plain",
                            [("X-Status", str(code))])
        elif path == "/headers":
            n, size = int(q.get("n", "1")), int(q.get("size", "10"))
            self.send_bytes(200, b"headers", "text/plain",
                            [("X-H-%d" % i, "h" * size) for i in range(n)])
        elif path == "/hangup":
            with LOCK:
                tag = q.get("tag", "")
                HITS[tag] = HITS.get(tag, 0) + 1
            self.close_connection = True
        elif path == "/hits":
            with LOCK:
                n = HITS.get(q.get("tag", ""), 0)
            self.send_json({"hits": n})
        elif path == "/cutstatus":
            self.wfile.write(b"HTTP/1.1 201 Created\r\n")
            self.wfile.flush()
            self.close_connection = True
        elif path == "/stats":
            with LOCK:
                accepted = ACCEPTED[0]
            self.send_json({"accepted": accepted})
        else:
            self.send_bytes(404, b"no such endpoint", "text/plain")

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = handle_any


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    ctx = None

    def finish_request(self, request, client_address):
        with LOCK:
            ACCEPTED[0] += 1
        conn = request
        request.settimeout(30)
        if self.ctx is not None:
            # The handshake runs here, in the connection's thread, so a
            # client that refuses our certificate blocks nobody else.
            try:
                conn = self.ctx.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError) as e:
                sys.stderr.write("handshake failed: %s\n" % e)
                return
        try:
            self.RequestHandlerClass(conn, client_address, self)
        except (OSError, ssl.SSLError) as e:
            sys.stderr.write("connection error: %s\n" % e)
        finally:
            if conn is not request:
                # Send close_notify so a close-delimited body ends
                # cleanly for the client, then close.
                try:
                    conn.settimeout(2)
                    conn.unwrap()
                except (OSError, ssl.SSLError, ValueError):
                    pass
                conn.close()


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def watchdog(parent, max_life):
    start = time.monotonic()
    while True:
        time.sleep(0.5)
        if time.monotonic() - start > max_life:
            os._exit(0)
        if parent > 0:
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                os._exit(0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--plain", action="store_true")
    ap.add_argument("--closed", action="store_true",
                    help="bind a port but never listen: connects are refused")
    ap.add_argument("--parent", type=int, default=0)
    ap.add_argument("--max-life", type=float, default=300)
    a = ap.parse_args()

    threading.Thread(target=watchdog, args=(a.parent, a.max_life),
                     daemon=True).start()
    if a.closed:
        # Holding the bound port keeps anyone else from taking it, so a
        # connect there is refused for as long as this process lives.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        write_atomic(os.path.join(a.dir, "server.pid"), "%d\n" % os.getpid())
        write_atomic(os.path.join(a.dir, "server.port"),
                     "%d\n" % sock.getsockname()[1])
        threading.Event().wait()
    srv = Server(("127.0.0.1", 0), Handler)
    if not a.plain:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(a.cert, a.key)
        ctx.set_alpn_protocols(["http/1.1"])
        srv.ctx = ctx
    write_atomic(os.path.join(a.dir, "server.pid"), "%d\n" % os.getpid())
    write_atomic(os.path.join(a.dir, "server.port"),
                 "%d\n" % srv.server_address[1])
    srv.serve_forever()


if __name__ == "__main__":
    main()
