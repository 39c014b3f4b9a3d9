#!/usr/bin/env python3
"""Start the shared stores of the fleet tests on free loopback ports, run
one command with their facts in its environment, stop them by PID.

  store-env.py [--logs] -- COMMAND [ARGS...]

Servers: a 3-member etcd cluster (Debian's etcd-server) and one
redis-server, each in its own scratch directory.  The command gets
  LUACME_TEST_ETCD        http://127.0.0.1:P1;http://...:P2;http://...:P3
  LUACME_TEST_ETCD_PIDS   pid1,pid2,pid3 (a test may stop one member)
  LUACME_TEST_REDIS       redis://127.0.0.1:P/0
  LUACME_TEST_REDIS_PID   pid
  LUACME_TEST_REDISS      rediss://127.0.0.1:P/0 (TLS, same server)
  LUACME_REDIS_CA_FILE    the CA file of its certificate (what
                          luacme reads for rediss://)
Exits 77 (a skip, with the reason printed) when a server is not
installed.
"""
import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "e2e"))
import envlib  # noqa: E402

log = envlib.logger("store-env")
BRING_UP = 30.0
TRIES = 3


def answers(port, payload, want):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(payload)
            s.settimeout(2)
            return want in s.recv(4096)
    except OSError:
        return False


def etcd_ready(port):
    req = ("POST /v3/kv/range HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           "Content-Type: application/json\r\nContent-Length: 17\r\n"
           "Connection: close\r\n\r\n{\"key\":\"AA==\"}\r\n")
    return answers(port, req.encode(), b" 200 ")


class Env:
    def __init__(self):
        self.workdir = tempfile.mkdtemp(prefix="luacme-stores-")
        self.procs = envlib.Procs(log, self.workdir)
        self.facts = {}

    def start(self):
        for attempt in range(TRIES):
            try:
                return self._start()
            except envlib.BringUpError as e:
                raced = self.procs.port_raced(e)
                self.procs.tail_logs()
                self.procs.stop_all()
                if not raced or attempt == TRIES - 1:
                    raise
                log("port race; trying again")

    def _start(self):
        ports = envlib.free_ports(8)
        client, peer, rport, tport = ports[0:3], ports[3:6], ports[6], ports[7]
        names = ["m%d" % i for i in range(3)]
        cluster = ",".join("%s=http://127.0.0.1:%d" % (n, p)
                           for n, p in zip(names, peer))
        pids = []
        for i, n in enumerate(names):
            d = os.path.join(self.workdir, n)
            p = self.procs.spawn("etcd-" + n, [
                "etcd", "--name", n, "--data-dir", d,
                "--listen-client-urls", "http://127.0.0.1:%d" % client[i],
                "--advertise-client-urls", "http://127.0.0.1:%d" % client[i],
                "--listen-peer-urls", "http://127.0.0.1:%d" % peer[i],
                "--initial-advertise-peer-urls",
                "http://127.0.0.1:%d" % peer[i],
                "--initial-cluster", cluster,
                "--initial-cluster-state", "new",
                "--initial-cluster-token", "luacme-test"])
            pids.append(str(p.pid))
        rd = os.path.join(self.workdir, "redis")
        os.makedirs(rd, exist_ok=True)
        # rediss:// on a second port of the same server: a CA of our own
        # and a certificate for 127.0.0.1.
        ca, crt, key = (os.path.join(rd, f) for f in
                        ("ca.pem", "cert.pem", "key.pem"))
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec",
                        "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", key, "-out", crt, "-days", "2",
                        "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1"],
                       check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        shutil.copy(crt, ca)
        rp = self.procs.spawn("redis", [
            "redis-server", "--port", str(rport), "--bind", "127.0.0.1",
            "--tls-port", str(tport), "--tls-cert-file", crt,
            "--tls-key-file", key, "--tls-ca-cert-file", ca,
            "--tls-auth-clients", "no",
            "--save", "", "--appendonly", "no", "--dir", rd])
        deadline = time.monotonic() + BRING_UP
        for c in client:
            self.procs.wait_until("etcd on %d" % c,
                                  lambda c=c: etcd_ready(c), deadline)
        self.procs.wait_until("redis", lambda: answers(
            rport, b"PING\r\n", b"+PONG"), deadline)
        self.facts = {
            "LUACME_TEST_ETCD": ";".join("http://127.0.0.1:%d" % c
                                         for c in client),
            "LUACME_TEST_ETCD_PIDS": ",".join(pids),
            "LUACME_TEST_REDIS": "redis://127.0.0.1:%d/0" % rport,
            "LUACME_TEST_REDIS_PID": str(rp.pid),
            "LUACME_TEST_REDISS": "rediss://127.0.0.1:%d/0" % tport,
            "LUACME_REDIS_CA_FILE": ca,
        }

    def cleanup(self):
        self.procs.stop_all()
        shutil.rmtree(self.workdir, ignore_errors=True)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--logs", action="store_true")
    o = envlib.parse_command(ap, argv)
    for prog in ("etcd", "redis-server"):
        if not shutil.which(prog):
            log("SKIP: %s not found (Debian: apt-get install etcd-server "
                "redis-server; tests/deps.sh installs them)" % prog)
            return 77
    env = Env()

    def bring_up():
        env.start()
        log("etcd %s, redis %s" % (env.facts["LUACME_TEST_ETCD"],
                                   env.facts["LUACME_TEST_REDIS"]))
        return o.command, env.facts

    return envlib.run(log, bring_up, env.cleanup, env.procs.tail_logs,
                      logs=o.logs)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
