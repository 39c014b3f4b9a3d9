#!/usr/bin/env python3
"""Print the TXT values a DNS server gives for a name, one per line.

    dnsq.py PORT NAME

Asks 127.0.0.1:PORT over UDP (pebble-challtestsrv's DNS in the e2e
tests), so a scenario can check what Pebble's VA will see without dig.
Exit status 1 when the server does not answer.
"""

import os
import socket
import struct
import sys


def skip_name(data, off):
    while True:
        n = data[off]
        if n == 0:
            return off + 1
        if n & 0xc0 == 0xc0:
            return off + 2
        off += 1 + n


def main(port, name):
    qid = os.getpid() & 0xffff
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", 16, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(q, ("127.0.0.1", port))
        data, _ = s.recvfrom(65535)
    if struct.unpack(">H", data[:2])[0] != qid:
        return 1
    qd, an = struct.unpack(">HH", data[4:8])
    off = 12
    for _ in range(qd):
        off = skip_name(data, off) + 4
    for _ in range(an):
        off = skip_name(data, off)
        rtype, _, _, rdlen = struct.unpack(">HHIH", data[off:off + 10])
        off += 10
        rdata = data[off:off + rdlen]
        off += rdlen
        if rtype != 16:
            continue
        i, parts = 0, []
        while i < len(rdata):
            n = rdata[i]
            parts.append(rdata[i + 1:i + 1 + n].decode("ascii", "replace"))
            i += 1 + n
        print("".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), sys.argv[2]))
