#!/usr/bin/env python3
"""Run one command next to a real DNS server on loopback.

    dns-env.py --server pdns|bind [--keep] -- COMMAND [ARGS...]

Starts PowerDNS Authoritative (pdns_server, gsqlite3 backend, HTTP API)
or BIND 9 (named, zones open to TSIG-signed dynamic updates) as a
foreground process on free 127.0.0.1 ports in a fresh temp directory,
serving two zones:

    example.test.  NS ns1.example.test.;  ns1.example.test. A 127.0.0.1
    alias.test.    NS ns1.example.test.   (a second zone, for alias mode)

waits until it answers, runs COMMAND with the facts in environment
variables (every "@DNS@" in COMMAND's arguments becomes 127.0.0.1:PORT,
so `-- pebble-env.py --dnsserver @DNS@ -- ...` works), and stops the
server by PID afterwards, also when COMMAND fails or this script is
interrupted.  Exit status: COMMAND's, or 1 when the server did not come
up, 128+N on signal N.

Facts: LUACME_DNS_KIND (pdns|bind), LUACME_DNS_ADDR (127.0.0.1:PORT),
LUACME_DNS_PORT, LUACME_DNS_WORKDIR; pdns: LUACME_PDNS_API_URL,
LUACME_PDNS_API_KEY; bind: LUACME_TSIG_KEY_FILE, LUACME_TSIG_KEY_NAME,
LUACME_TSIG_ALG, LUACME_TSIG_SECRET, LUACME_TSIG_WRONG_SECRET.
"""

import argparse
import base64
import ctypes
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

PDNS = shutil.which("pdns_server") or "/usr/sbin/pdns_server"
NAMED = shutil.which("named") or "/usr/sbin/named"
SCHEMA_DIRS = ("/usr/share/pdns-backend-sqlite3/schema",
               "/usr/share/doc/pdns-backend-sqlite3")
ZONES = ("example.test.", "alias.test.")
READY_TIMEOUT = 30.0
STOP_GRACE = 5.0
ATTEMPTS = 3


class Interrupted(Exception):
    def __init__(self, signum):
        super().__init__("signal %d" % signum)
        self.signum = signum


class BringUpError(Exception):
    pass


def log(msg):
    sys.stderr.write("dns-env: %s\n" % msg)
    sys.stderr.flush()


def child_setup():
    """Before exec: own process group (a terminal Ctrl-C reaches only
    this script, which forwards it), and SIGTERM when this script dies
    even by SIGKILL (ctest timeouts kill only the direct child)."""
    os.setpgid(0, 0)
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)          # PR_SET_PDEATHSIG
    except OSError:
        pass


def free_ports(n):
    """n distinct ports free for TCP and UDP on 127.0.0.1."""
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            p = s.getsockname()[1]
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                u.bind(("127.0.0.1", p))
            except OSError:
                continue
            finally:
                u.close()
            if p not in ports:
                ports.append(p)
    finally:
        for s in socks:
            s.close()
    return ports


def dns_soa_ok(port, zone):
    """True when 127.0.0.1:port answers SOA zone authoritatively."""
    q = struct.pack(">HHHHHH", 0x4c55, 0, 1, 0, 0, 0)
    for label in zone.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", 6, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.3)
        try:
            s.sendto(q, ("127.0.0.1", port))
            data, _ = s.recvfrom(4096)
        except OSError:
            return False
    if len(data) < 12:
        return False
    qid, flags, _, an = struct.unpack(">HHHH", data[:8])
    return qid == 0x4c55 and flags & 0x0400 and flags & 0xf == 0 and an >= 1


class Server:
    def __init__(self, kind, workdir):
        self.kind = kind
        self.workdir = workdir
        self.proc = None
        self.logpath = os.path.join(workdir, kind + ".log")
        self.facts = {}

    def spawn(self, argv):
        with open(self.logpath, "ab") as logf:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                         stdout=logf,
                                         stderr=subprocess.STDOUT,
                                         cwd=self.workdir,
                                         preexec_fn=child_setup)

    def stop(self):
        p, self.proc = self.proc, None
        if p is None or p.poll() is not None:
            return
        try:
            p.terminate()
        except ProcessLookupError:
            return
        try:
            p.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            log("%s (pid %d) ignored SIGTERM; killing" % (self.kind, p.pid))
            p.kill()
            p.wait()

    def wait_until(self, what, check, deadline):
        while True:
            if self.proc.poll() is not None:
                raise BringUpError("%s exited with %d while waiting for %s"
                                   % (self.kind, self.proc.returncode, what))
            if check():
                return
            if time.monotonic() > deadline:
                raise BringUpError("timed out waiting for %s" % what)
            time.sleep(0.05)

    def tail(self, lines=30):
        try:
            with open(self.logpath, "rb") as f:
                text = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return
        sys.stderr.write("---- %s.log (last %d lines) ----\n"
                         % (self.kind, min(lines, len(text))))
        for line in text[-lines:]:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def lost_port(self):
        try:
            with open(self.logpath, "rb") as f:
                t = f.read().lower()
        except OSError:
            return False
        return b"address already in use" in t or b"unable to bind" in t


class PowerDNS(Server):
    def start(self):
        dns, web = free_ports(2)
        key = base64.b64encode(os.urandom(18)).decode()
        db = os.path.join(self.workdir, "pdns.sqlite3")
        if os.path.exists(db):
            os.unlink(db)
        schema = next((os.path.join(d, "schema.sqlite3.sql")
                       for d in SCHEMA_DIRS
                       if os.path.exists(os.path.join(d,
                                                      "schema.sqlite3.sql"))),
                      None)
        if schema is None:
            raise BringUpError("schema.sqlite3.sql of pdns-backend-sqlite3 "
                               "not found")
        with open(schema) as f:
            r = subprocess.run(["sqlite3", db], stdin=f,
                               stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
        if r.returncode != 0:
            raise BringUpError("sqlite3: %s" % r.stdout.decode())
        conf = {
            "launch": "gsqlite3", "gsqlite3-database": db,
            "local-address": "127.0.0.1", "local-port": dns,
            "api": "yes", "api-key": key,
            "webserver": "yes", "webserver-address": "127.0.0.1",
            "webserver-port": web, "webserver-allow-from": "127.0.0.0/8",
            "socket-dir": self.workdir, "guardian": "no", "daemon": "no",
            "disable-syslog": "yes", "security-poll-suffix": "",
            "loglevel": "6", "log-dns-queries": "no",
        }
        with open(os.path.join(self.workdir, "pdns.conf"), "w") as f:
            for k, v in conf.items():
                f.write("%s=%s\n" % (k, v))
        self.spawn([PDNS, "--config-dir=" + self.workdir])
        api = "http://127.0.0.1:%d" % web
        deadline = time.monotonic() + READY_TIMEOUT
        self.wait_until("the pdns API", lambda: self.api(
            api, key, "GET", "/api/v1/servers/localhost")[0] == 200,
            deadline)
        for zone in ZONES:
            rrsets = [{"name": zone, "type": "SOA", "ttl": 60,
                       "changetype": "REPLACE", "records": [{
                           "content": "ns1.example.test. hostmaster.%s "
                                      "1 60 60 600 60" % zone,
                           "disabled": False}]}]
            if zone == "example.test.":
                rrsets.append({"name": "ns1.example.test.", "type": "A",
                               "ttl": 60, "changetype": "REPLACE",
                               "records": [{"content": "127.0.0.1",
                                            "disabled": False}]})
            status, body = self.api(api, key, "POST",
                                    "/api/v1/servers/localhost/zones", {
                                        "name": zone, "kind": "Native",
                                        "nameservers": ["ns1.example.test."],
                                        "rrsets": rrsets})
            if status != 201:
                raise BringUpError("creating %s: HTTP %s %s"
                                   % (zone, status, body))
        for zone in ZONES:
            self.wait_until("DNS for %s" % zone,
                            lambda z=zone: dns_soa_ok(dns, z), deadline)
        self.facts = {
            "LUACME_DNS_KIND": "pdns",
            "LUACME_DNS_ADDR": "127.0.0.1:%d" % dns,
            "LUACME_DNS_PORT": str(dns),
            "LUACME_PDNS_API_URL": api,
            "LUACME_PDNS_API_KEY": key,
        }

    @staticmethod
    def api(base, key, method, path, doc=None):
        data = json.dumps(doc).encode() if doc is not None else None
        req = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"X-API-Key": key,
                                              "Content-Type":
                                              "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=2) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except (urllib.error.URLError, OSError):
            return -1, b""


class Bind(Server):
    KEY_NAME = "luacme-test."
    ALG = "hmac-sha256"

    def start(self):
        (dns,) = free_ports(1)
        w = self.workdir
        secret = base64.b64encode(os.urandom(32)).decode()
        keyfile = os.path.join(w, "tsig.key")
        with open(keyfile, "w") as f:
            f.write('key "%s" {\n\talgorithm %s;\n\tsecret "%s";\n};\n'
                    % (self.KEY_NAME, self.ALG, secret))
        os.chmod(keyfile, 0o600)
        zones = ""
        for zone in ZONES:
            path = os.path.join(w, zone + "zone")
            if os.path.exists(path + ".jnl"):
                os.unlink(path + ".jnl")
            with open(path, "w") as f:
                f.write("$TTL 60\n"
                        "@ IN SOA ns1.example.test. hostmaster.%s "
                        "1 60 60 600 60\n"
                        "@ IN NS ns1.example.test.\n" % zone)
                if zone == "example.test.":
                    f.write("ns1 IN A 127.0.0.1\n")
            zones += ('zone "%s" {\n\ttype primary;\n\tfile "%s";\n'
                      '\tallow-update { key "%s"; };\n};\n'
                      % (zone.rstrip("."), path, self.KEY_NAME))
        conf = os.path.join(w, "named.conf")
        with open(conf, "w") as f:
            f.write('options {\n'
                    '\tdirectory "%s";\n'
                    '\tpid-file "%s/named.pid";\n'
                    '\tsession-keyfile "%s/session.key";\n'
                    '\tmanaged-keys-directory "%s";\n'
                    '\tlisten-on port %d { 127.0.0.1; };\n'
                    '\tlisten-on-v6 { none; };\n'
                    '\trecursion no;\n'
                    '\tdnssec-validation no;\n'
                    '\tnotify no;\n'
                    '\tallow-query { any; };\n'
                    '};\n'
                    'controls { };\n'
                    'include "%s";\n%s' % (w, w, w, w, dns, keyfile, zones))
        self.spawn([NAMED, "-g", "-4", "-c", conf])
        deadline = time.monotonic() + READY_TIMEOUT
        for zone in ZONES:
            self.wait_until("DNS for %s" % zone,
                            lambda z=zone: dns_soa_ok(dns, z), deadline)
        self.facts = {
            "LUACME_DNS_KIND": "bind",
            "LUACME_DNS_ADDR": "127.0.0.1:%d" % dns,
            "LUACME_DNS_PORT": str(dns),
            "LUACME_TSIG_KEY_FILE": keyfile,
            "LUACME_TSIG_KEY_NAME": self.KEY_NAME,
            "LUACME_TSIG_ALG": self.ALG,
            "LUACME_TSIG_SECRET": secret,
            # A well-formed secret that is not the key's (tests of a
            # bad credential name it in key_secret_env).
            "LUACME_TSIG_WRONG_SECRET": base64.b64encode(
                os.urandom(32)).decode(),
        }


def bring_up(kind, workdir):
    cls = PowerDNS if kind == "pdns" else Bind
    for attempt in range(1, ATTEMPTS + 1):
        srv = cls(kind, workdir)
        try:
            srv.start()
            srv.facts["LUACME_DNS_WORKDIR"] = workdir
            return srv
        except BringUpError:
            srv.tail(15)
            lost = srv.lost_port()
            srv.stop()
            if attempt == ATTEMPTS or not lost:
                raise
        except BaseException:
            srv.stop()
            raise
            log("attempt %d lost a port race; retrying" % attempt)
            os.rename(srv.logpath, srv.logpath + ".%d" % attempt)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server", choices=("pdns", "bind"), required=True)
    ap.add_argument("--keep", action="store_true",
                    help="keep the work directory")
    ap.add_argument("--logs", action="store_true",
                    help="print the server's log tail even on success")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    o = ap.parse_args(argv)
    if o.command and o.command[0] == "--":
        o.command = o.command[1:]
    if not o.command:
        ap.error("no command given")
    prog = PDNS if o.server == "pdns" else NAMED
    if not os.path.exists(prog):
        log("%s not found (Debian: apt-get install %s)" % (
            prog, "pdns-server pdns-backend-sqlite3 sqlite3"
            if o.server == "pdns" else "bind9 bind9-dnsutils"))
        return 1

    child = None
    srv = None

    def on_signal(signum, _frame):
        if child is not None and child.poll() is None:
            try:
                child.send_signal(signum)
            except ProcessLookupError:
                pass
        raise Interrupted(signum)

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)

    workdir = tempfile.mkdtemp(prefix="luacme-dns.")
    status = 1
    try:
        srv = bring_up(o.server, workdir)
        addr = srv.facts["LUACME_DNS_ADDR"]
        env = dict(os.environ)
        env.update(srv.facts)
        cmd = [a.replace("@DNS@", addr) for a in o.command]
        log("%s on %s, workdir %s" % (o.server, addr, workdir))
        child = subprocess.Popen(cmd, env=env, preexec_fn=child_setup)
        status = child.wait()
        if status < 0:
            status = 128 - status
        if status != 0 or o.logs:
            srv.tail()
    except BringUpError as e:
        log("bring-up failed: %s" % e)
        status = 1
    except Interrupted as e:
        log("interrupted by signal %d; stopping" % e.signum)
        if child is not None:
            try:
                child.wait(timeout=STOP_GRACE * 3)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        status = 128 + e.signum
    finally:
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        if srv is not None:
            srv.stop()
        if o.keep:
            log("kept %s" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
