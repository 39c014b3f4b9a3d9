#!/usr/bin/env python3
"""Serve a webroot directory over plain HTTP for http-01 validation.

    webroot.py ADDR PORT DIR [DELAY]

python3 -m http.server with two changes that a real web server (nginx:
backlog 511, TCP_NODELAY) has too: a listen backlog large enough for
Pebble's VA, which opens three connections per challenge at once (sixty
for a twenty-name order; the stock backlog of 5 drops SYNs and costs a
one-second retransmit), and no Nagle delay.  Files are read from DIR on
every request; the access log (stderr) has millisecond timestamps.
DELAY (seconds, default 0) holds every challenge reply that long: a CA
whose validation takes that long, with no randomness (the benchmark's
slow case; Pebble's own VA sleep is a random whole number of seconds).
"""

import functools
import http.server
import sys
import time


class Handler(http.server.SimpleHTTPRequestHandler):
    disable_nagle_algorithm = True
    delay = 0.0

    def do_GET(self):
        if self.delay > 0 and self.path.startswith("/.well-known/"):
            time.sleep(self.delay)
        super().do_GET()

    def log_message(self, fmt, *args):
        t = time.time()
        sys.stderr.write("%s - - [%s.%03d] %s\n" % (
            self.address_string(),
            time.strftime("%d/%b/%Y %H:%M:%S", time.localtime(t)),
            int(t * 1000) % 1000, fmt % args))
        sys.stderr.flush()


class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 256
    daemon_threads = True


def main(addr, port, root, delay="0"):
    Handler.delay = float(delay)
    handler = functools.partial(Handler, directory=root)
    with Server((addr, int(port)), handler) as srv:
        sys.stderr.write("Serving HTTP on %s port %s\n" % (addr, port))
        sys.stderr.flush()
        srv.serve_forever()


if __name__ == "__main__":
    main(*sys.argv[1:5])
