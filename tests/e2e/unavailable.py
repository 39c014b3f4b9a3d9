#!/usr/bin/env python3
"""A CA in maintenance for tests/e2e/cli_outage_test.lua: an HTTPS server
on a free loopback port that answers every request with 503, a
Retry-After and an ACME problem document, and appends one line per
request to LOG (the scenario counts them). Writes its port to PORTFILE
once it listens; runs until killed (the scenario stops it by PID) or
for at most --lifetime seconds.

    unavailable.py CERT KEY PORTFILE LOG [--retry-after S] [--lifetime S]
"""
import argparse
import http.server
import json
import os
import ssl
import threading


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cert")
    ap.add_argument("key")
    ap.add_argument("portfile")
    ap.add_argument("log")
    ap.add_argument("--retry-after", default="120")
    ap.add_argument("--lifetime", type=float, default=300)
    o = ap.parse_args()

    class Handler(http.server.BaseHTTPRequestHandler):
        def answer(self):
            with open(o.log, "a") as f:
                f.write("%s %s\n" % (self.command, self.path))
            body = json.dumps({
                "type": "urn:ietf:params:acme:error:serverInternal",
                "detail": "down for maintenance",
                "status": 503}).encode()
            self.send_response(503)
            self.send_header("Content-Type", "application/problem+json")
            self.send_header("Retry-After", o.retry_after)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_POST = do_HEAD = answer

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(o.cert, o.key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    tmp = o.portfile + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % srv.server_address[1])
    os.rename(tmp, o.portfile)
    threading.Timer(o.lifetime, srv.shutdown).start()
    srv.serve_forever()


if __name__ == "__main__":
    main()
