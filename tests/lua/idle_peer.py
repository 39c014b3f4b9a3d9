#!/usr/bin/env python3
"""One peer trying to starve a challenge responder (issue 9, item 5):
opens argv[2] connections to 127.0.0.1:argv[1] and sends nothing.
Prints "open COUNT PID" once they are open, then holds them until
killed (testlib.idle_peer stops it) or for at most 120 s."""
import os
import socket
import sys
import time

socks = []
for _ in range(int(sys.argv[2])):
    try:
        socks.append(socket.create_connection(
            ("127.0.0.1", int(sys.argv[1])), timeout=2))
    except OSError:
        pass
print("open %d %d" % (len(socks), os.getpid()), flush=True)
time.sleep(120)
