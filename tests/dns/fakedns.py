#!/usr/bin/env python3
"""A tiny authoritative DNS server for the unit tests (stdlib only).

    fakedns.py CONFIG.json PORTFILE [ADDR...]

Listens on UDP and TCP on every ADDR (default 127.0.0.1) at one port
the kernel picks, writes the port to PORTFILE (atomically) once all
sockets are bound, and answers from CONFIG.json, which it reads again for
every query, so a test changes what it serves by rewriting the file:

    {"127.0.0.1": {"records": [["example.test.", "SOA", 60,
                                "ns1.example.test. h.example.test. 1 60 60 60 60"],
                               ["example.test.", "NS", 60, "ns1.example.test."],
                               ["ns1.example.test.", "A", 60, "127.0.0.1"],
                               ["x.example.test.", "TXT", 60, ["abc", "def"]],
                               ["a.example.test.", "CNAME", 60, "x.example.test."]],
                   "silent": false, "servfail": ["bad.example.test."],
                   "truncate": false, "noaa": false},
     "127.0.0.2": {...}}

Keys are the listening addresses (each address serves its own data, so
two "servers" of one zone can disagree). A TXT value is a string or a list
of character-strings. Zones are the owners of SOA records; a name in no
zone gets REFUSED, a missing one NXDOMAIN with the zone's SOA, a CNAME is
followed inside the data. "silent" drops every query (a timeout),
"servfail" lists names answered SERVFAIL, "truncate" answers UDP with
TC=1 and no records (the full answer over TCP), "noaa" clears AA.
This is test scaffolding; the code under test parses with libresolv.
"""

import json
import os
import socket
import socketserver
import struct
import sys
import threading

TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "TXT": 16, "AAAA": 28}
CONFIG = None


def enc_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def rdata(rtype, data):
    if rtype == "A":
        return socket.inet_pton(socket.AF_INET, data)
    if rtype == "AAAA":
        return socket.inet_pton(socket.AF_INET6, data)
    if rtype in ("NS", "CNAME"):
        return enc_name(data)
    if rtype == "TXT":
        parts = [data] if isinstance(data, str) else data
        return b"".join(bytes([len(p.encode())]) + p.encode() for p in parts)
    if rtype == "SOA":
        f = data.split()
        return enc_name(f[0]) + enc_name(f[1]) + struct.pack(
            ">IIIII", *[int(x) for x in f[2:7]])
    raise ValueError(rtype)


def rr(name, rtype, ttl, data):
    rd = rdata(rtype, data)
    return enc_name(name) + struct.pack(">HHIH", TYPES[rtype], 1, ttl,
                                        len(rd)) + rd


def norm(n):
    return n.lower().rstrip(".") + "."


def answer(query, addr, tcp):
    try:
        with open(CONFIG) as f:
            conf = json.load(f).get(addr, {})
    except (OSError, ValueError):
        conf = {}
    if conf.get("silent"):
        return None
    qid, flags = struct.unpack(">HH", query[:4])
    off, labels = 12, []
    while query[off]:
        n = query[off]
        labels.append(query[off + 1:off + 1 + n].decode())
        off += 1 + n
    qtype = struct.unpack(">H", query[off + 1:off + 3])[0]
    question = query[12:off + 5]
    qname = norm(".".join(labels))
    recs = [(norm(r[0]), r[1], r[2], r[3]) for r in conf.get("records", [])]
    zones = sorted({r[0] for r in recs if r[1] == "SOA"}, key=len,
                   reverse=True)
    rd = flags & 0x0100
    aa = 0 if conf.get("noaa") else 0x0400

    def reply(rcode, an=(), ns=(), tc=0):
        hdr = struct.pack(">HHHHHH", qid, 0x8000 | aa | rd | tc | rcode, 1,
                          len(an), len(ns), 0)
        return hdr + question + b"".join(an) + b"".join(ns)

    zone = next((z for z in zones if qname == z or qname.endswith("." + z)
                 or z == "."), None)
    if zone is None:
        return reply(5)
    if qname in [norm(n) for n in conf.get("servfail", [])]:
        return reply(2)
    if conf.get("truncate") and not tcp:
        return reply(0, tc=0x0200)
    soa = [rr(*r) for r in recs if r[0] == zone and r[1] == "SOA"]
    an, name = [], qname
    for _ in range(8):
        exact = [r for r in recs if r[0] == name]
        hits = [r for r in exact if TYPES[r[1]] == qtype]
        if hits:
            an += [rr(*r) for r in hits]
            return reply(0, an)
        cname = [r for r in exact if r[1] == "CNAME"]
        if cname and qtype != TYPES["CNAME"]:
            an.append(rr(*cname[0]))
            name = norm(cname[0][3])
            continue
        if exact or any(r[0].endswith("." + name) for r in recs):
            return reply(0, an, soa)
        return reply(3 if not an else 0, an, soa)
    return reply(0, an)


class UDP(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        out = answer(data, self.server.server_address[0], False)
        if out is not None:
            sock.sendto(out, self.client_address)


class TCP(socketserver.BaseRequestHandler):
    def handle(self):
        try:
            n = struct.unpack(">H", self.request.recv(2))[0]
            data = b""
            while len(data) < n:
                chunk = self.request.recv(n - len(data))
                if not chunk:
                    return
                data += chunk
        except (OSError, struct.error):
            return
        out = answer(data, self.server.server_address[0], True)
        if out is not None:
            self.request.sendall(struct.pack(">H", len(out)) + out)


class UDPServer(socketserver.ThreadingUDPServer):
    daemon_threads = True


class TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class UDPServer6(UDPServer):
    address_family = socket.AF_INET6


class TCPServer6(TCPServer):
    address_family = socket.AF_INET6


def udp(addr, port):
    return (UDPServer6 if ":" in addr else UDPServer)((addr, port), UDP)


def tcp(addr, port):
    return (TCPServer6 if ":" in addr else TCPServer)((addr, port), TCP)


def bind_all(addrs):
    """Servers on every addr at one free port; retried on a clash."""
    for _ in range(50):
        first = udp(addrs[0], 0)
        port = first.server_address[1]
        servers = [first]
        try:
            for a in addrs:
                if a != addrs[0]:
                    servers.append(udp(a, port))
                servers.append(tcp(a, port))
            return port, servers
        except OSError:
            for s in servers:
                s.server_close()
    raise SystemExit("fakedns: no free port")


def main():
    global CONFIG
    CONFIG = sys.argv[1]
    portfile = sys.argv[2]
    addrs = sys.argv[3:] or ["127.0.0.1"]
    port, servers = bind_all(addrs)
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    with open(portfile + ".tmp", "w") as f:
        f.write(str(port))
    os.rename(portfile + ".tmp", portfile)
    threading.Event().wait()


if __name__ == "__main__":
    main()
