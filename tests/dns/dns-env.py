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
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

# The process, port and signal handling pebble-env.py uses too.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "e2e"))
sys.dont_write_bytecode = True          # no __pycache__ in the source tree
from envlib import (BringUpError, Procs, dns_reply,  # noqa: E402
                    free_ports, logger, parse_command, run)

PDNS = shutil.which("pdns_server") or "/usr/sbin/pdns_server"
NAMED = shutil.which("named") or "/usr/sbin/named"
SCHEMA_DIRS = ("/usr/share/pdns-backend-sqlite3/schema",
               "/usr/share/doc/pdns-backend-sqlite3")
ZONES = ("example.test.", "alias.test.")
READY_TIMEOUT = 30.0
CHILD_GRACE = 15.0      # the command is pebble-env.py: it stops servers too
ATTEMPTS = 3

log = logger("dns-env")


def dns_soa_ok(port, zone):
    """True when 127.0.0.1:port answers SOA zone authoritatively."""
    r = dns_reply(port, zone, 6, 0, 0.3)
    if r is None:
        return False
    flags, an = r
    return bool(flags & 0x0400) and flags & 0xf == 0 and an >= 1


class Server(Procs):
    """One DNS server (kind "pdns" or "bind") in workdir; start() brings
    it up and fills self.facts."""

    def __init__(self, kind, workdir):
        super().__init__(log, workdir)
        self.kind = kind
        self.logpath = os.path.join(workdir, kind + ".log")
        self.facts = {}

    def spawn(self, argv):
        super().spawn(self.kind, argv, cwd=self.workdir)

    def serving(self, port, deadline, facts):
        """Wait until the server answers for every zone on port, then
        set self.facts: the common ones plus facts."""
        for zone in ZONES:
            self.wait_until("DNS for %s" % zone,
                            lambda z=zone: dns_soa_ok(port, z), deadline)
        self.facts = {
            "LUACME_DNS_KIND": self.kind,
            "LUACME_DNS_ADDR": "127.0.0.1:%d" % port,
            "LUACME_DNS_PORT": str(port),
        }
        self.facts.update(facts)


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
        self.serving(dns, deadline, {
            "LUACME_PDNS_API_URL": api,
            "LUACME_PDNS_API_KEY": key,
        })

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
        self.serving(dns, deadline, {
            "LUACME_TSIG_KEY_FILE": keyfile,
            "LUACME_TSIG_KEY_NAME": self.KEY_NAME,
            "LUACME_TSIG_ALG": self.ALG,
            "LUACME_TSIG_SECRET": secret,
            # A well-formed secret that is not the key's (tests of a
            # bad credential name it in key_secret_env).
            "LUACME_TSIG_WRONG_SECRET": base64.b64encode(
                os.urandom(32)).decode(),
        })


def bring_up(kind, workdir):
    cls = PowerDNS if kind == "pdns" else Bind
    for attempt in range(1, ATTEMPTS + 1):
        srv = cls(kind, workdir)
        try:
            srv.start()
            srv.facts["LUACME_DNS_WORKDIR"] = workdir
            return srv
        except BringUpError as e:
            srv.tail_logs(15)
            lost = srv.port_raced(e)
            srv.stop_all()
            if attempt == ATTEMPTS or not lost:
                raise
        except BaseException:
            srv.stop_all()
            raise
        log("attempt %d lost a port race; retrying" % attempt)
        if os.path.exists(srv.logpath):
            os.rename(srv.logpath, srv.logpath + ".%d" % attempt)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server", choices=("pdns", "bind"), required=True)
    ap.add_argument("--keep", action="store_true",
                    help="keep the work directory")
    ap.add_argument("--logs", action="store_true",
                    help="print the server's log tail even on success")
    o = parse_command(ap, argv)
    prog = PDNS if o.server == "pdns" else NAMED
    if not os.path.exists(prog):
        log("%s not found (Debian: apt-get install %s)" % (
            prog, "pdns-server pdns-backend-sqlite3 sqlite3"
            if o.server == "pdns" else "bind9 bind9-dnsutils"))
        return 1

    workdir = tempfile.mkdtemp(prefix="luacme-dns.")
    srv = None

    def start():
        nonlocal srv
        srv = bring_up(o.server, workdir)
        addr = srv.facts["LUACME_DNS_ADDR"]
        log("%s on %s, workdir %s" % (o.server, addr, workdir))
        return [a.replace("@DNS@", addr) for a in o.command], srv.facts

    def tear_down():
        if srv is not None:
            srv.stop_all()
        if o.keep:
            log("kept %s" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    return run(log, start, tear_down, lambda: srv.tail_logs(30),
               logs=o.logs, child_grace=CHILD_GRACE)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
