#!/usr/bin/env python3
"""An HTTPS test server whose HTTP/2 connections swallow every POST, for
tests/http/http_test.lua: what the client does when a shared HTTP/2
connection stops answering (seen with Pebble under load: each POST
reached the server and timed out with 0 bytes received, HEADs and GETs
still went through; likely libcurl 7.88's HTTP/2 upload stall).

ALPN h2: GET /ok answers 200 "h2 ok"; a POST is read (headers and body)
and never answered. ALPN http/1.1 (or none): every request answers 200
"h1 ok" with keep-alive. GET /stats (either protocol) answers
"h2=N h1=M posts=P": connections accepted per protocol, POSTs swallowed.

Like server.py: writes DIR/server.pid and DIR/server.port (temp file,
rename), exits when --parent is gone or after --max-life seconds.
Needs python3-h2 (Debian's package; tests/deps.sh installs it).
"""
import argparse
import os
import socket
import ssl
import sys
import threading
import time

import h2.config
import h2.connection
import h2.events

LOCK = threading.Lock()
COUNTS = {"h2": 0, "h1": 0, "posts": 0}


def stats():
    with LOCK:
        return "h2=%(h2)d h1=%(h1)d posts=%(posts)d" % COUNTS


def serve_h2(sock):
    conn = h2.connection.H2Connection(
        config=h2.config.H2Configuration(client_side=False))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    methods = {}
    while True:
        data = sock.recv(65536)
        if not data:
            return
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.RequestReceived):
                hdrs = dict((k.decode() if isinstance(k, bytes) else k,
                             v.decode() if isinstance(v, bytes) else v)
                            for k, v in ev.headers)
                methods[ev.stream_id] = (hdrs.get(":method"),
                                         hdrs.get(":path"))
                if hdrs.get(":method") == "POST":
                    with LOCK:
                        COUNTS["posts"] += 1
            elif isinstance(ev, h2.events.DataReceived):
                # take the body in, so flow control is not what stalls
                conn.acknowledge_received_data(ev.flow_controlled_length,
                                               ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                method, path = methods.get(ev.stream_id, (None, None))
                if method != "POST":
                    body = (stats() if path == "/stats" else "h2 ok").encode()
                    conn.send_headers(ev.stream_id, [
                        (":status", "200"),
                        ("content-length", str(len(body)))])
                    conn.send_data(ev.stream_id, body, end_stream=True)
        out = conn.data_to_send()
        if out:
            sock.sendall(out)


def serve_h1(sock):
    buf = b""
    while True:
        while b"\r\n\r\n" not in buf:
            data = sock.recv(65536)
            if not data:
                return
            buf += data
        head, buf = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1] if len(lines[0].split(" ")) > 1 else "/"
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        while len(buf) < length:
            data = sock.recv(65536)
            if not data:
                return
            buf += data
        buf = buf[length:]
        body = (stats() if path == "/stats" else "h1 ok").encode()
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(body), body))


def handle(ctx, raw):
    try:
        sock = ctx.wrap_socket(raw, server_side=True)
    except (ssl.SSLError, OSError):
        raw.close()
        return
    proto = sock.selected_alpn_protocol()
    with LOCK:
        COUNTS["h2" if proto == "h2" else "h1"] += 1
    try:
        if proto == "h2":
            serve_h2(sock)
        else:
            serve_h1(sock)
    except (OSError, ValueError, ssl.SSLError):
        pass
    finally:
        sock.close()


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def watchdog(parent, max_life):
    start = time.monotonic()
    while time.monotonic() - start < max_life:
        if parent and not os.path.exists("/proc/%d" % parent):
            break
        time.sleep(0.5)
    os._exit(0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--parent", type=int, default=0)
    ap.add_argument("--max-life", type=float, default=120)
    a = ap.parse_args()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    threading.Thread(target=watchdog, args=(a.parent, a.max_life),
                     daemon=True).start()
    write_atomic(os.path.join(a.dir, "server.pid"), str(os.getpid()))
    write_atomic(os.path.join(a.dir, "server.port"),
                 str(srv.getsockname()[1]))
    while True:
        raw, _ = srv.accept()
        threading.Thread(target=handle, args=(ctx, raw), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
