#!/usr/bin/env python3
"""Run one command against a private Pebble on loopback.

    pebble-env.py [options] -- COMMAND [ARGS...]

Starts pebble-challtestsrv (as DNS only: every name resolves to 127.0.0.1),
Pebble (pointed at that DNS) and a plain HTTP server serving a webroot on
Pebble's httpPort, all on free loopback ports in a fresh temp directory;
waits until each answers; runs COMMAND with the facts in LUACME_E2E_*
variables; stops everything it started by PID, also when COMMAND fails or
this script is interrupted.  The exit status is COMMAND's (or 1 when the
environment could not be brought up, 130/143 on SIGINT/SIGTERM).

Parallel runs do not collide: ports come from the kernel (bind to port 0)
and are probed again before use, and each run has its own directory.  A
run that loses a port race (a server exits or logs "address already in
use") is retried on new ports a bounded number of times.
"""

import argparse
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

# The process, port and signal handling dns-env.py uses too (this
# script's directory is on sys.path).
sys.dont_write_bytecode = True          # no __pycache__ in the source tree
from envlib import (BringUpError, Procs, dns_reply,  # noqa: E402
                    free_ports, logger, parse_command, run)

PEBBLE = shutil.which("pebble") or "/usr/bin/pebble"
CHALLTESTSRV = shutil.which("pebble-challtestsrv") or "/usr/bin/pebble-challtestsrv"
EAB_EXAMPLE = ("/usr/share/doc/pebble/examples/"
               "pebble-config-external-account-bindings.json")
# The MAC keys of the example above, in case the doc file is absent
# (Debian may strip /usr/share/doc in minimal images).
EAB_FALLBACK = {
    "kid-1": "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W",
    "kid-2": "b10lLJs8l1GPIzsLP0s6pMt8O0XVGnfTaCeROxQM0BIt2XrJMDHJZBM5NuQmQJQH",
}
BRINGUP_ATTEMPTS = 3
SERVERS = ("challtestsrv", "pebble", "webroot", "faultproxy")

log = logger("pebble-env")


def make_cert(workdir):
    cert = os.path.join(workdir, "cert.pem")
    key = os.path.join(workdir, "key.pem")
    cmd = ["openssl", "req", "-x509", "-newkey", "ec",
           "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
           "-keyout", key, "-out", cert, "-days", "30",
           "-subj", "/CN=localhost",
           "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise BringUpError("openssl req failed: %s" % r.stdout.decode())
    os.chmod(key, 0o600)
    return cert, key


def eab_keys():
    try:
        with open(EAB_EXAMPLE) as f:
            return json.load(f)["pebble"]["externalAccountMACKeys"]
    except (OSError, ValueError, KeyError):
        return dict(EAB_FALLBACK)


def dns_answers(port, name, qtype):
    """Number of answers challtestsrv's DNS (UDP) gives for name/qtype
    (1 = A, 16 = TXT), or -1 when it does not reply."""
    r = dns_reply(port, name, qtype, 0x0100, 0.2)
    return -1 if r is None else r[1]


def post_json(url, obj):
    req = urllib.request.Request(url, data=json.dumps(obj).encode(),
                                 method="POST")
    try:
        with urllib.request.urlopen(req, timeout=1) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, OSError):
        return -1


def http_body(url):
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.read()
    except (urllib.error.URLError, OSError):
        return None


def http_answers(url, ctx=None, want_status=None):
    """True when url gives an HTTP response (of want_status, if given)."""
    try:
        with urllib.request.urlopen(url, timeout=1, context=ctx) as r:
            status = r.status
    except urllib.error.HTTPError as e:
        status = e.code
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False
    return want_status is None or status == want_status


class Env(Procs):
    def __init__(self, opts):
        super().__init__(log)
        self.opts = opts
        self.facts = {}

    # -- bring-up ----------------------------------------------------
    def bring_up(self, taken):
        o = self.opts
        acme, mgmt, dns, cts, http, tls, fproxy, fctl = free_ports(8, taken)
        taken.update((acme, mgmt, dns, cts, http, tls, fproxy, fctl))
        cert, key = self.cert, self.key
        webroot = os.path.join(self.workdir, "webroot")
        os.makedirs(os.path.join(webroot, ".well-known", "acme-challenge"),
                    exist_ok=True)

        cfg = {
            "listenAddress": "127.0.0.1:%d" % acme,
            "managementListenAddress": "127.0.0.1:%d" % mgmt,
            "certificate": cert,
            "privateKey": key,
            "httpPort": http,
            "tlsPort": tls,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": bool(o.eab),
            "domainBlocklist": o.blocklist or ["blocked.test"],
        }
        if o.eab:
            cfg["externalAccountMACKeys"] = eab_keys()
        if o.validity is not None:
            cfg["certificateValidityPeriod"] = o.validity
        config = os.path.join(self.workdir, "pebble.json")
        with open(config, "w") as f:
            json.dump({"pebble": cfg}, f, indent=2)

        # challtestsrv: DNS only; A queries answer 127.0.0.1, no AAAA.
        self.spawn("challtestsrv", [
            CHALLTESTSRV, "-dns01", "127.0.0.1:%d" % dns,
            "-http01", "", "-https01", "", "-tlsalpn01", "",
            "-management", "127.0.0.1:%d" % cts,
            "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])

        penv = {k: v for k, v in os.environ.items()
                if not k.startswith("PEBBLE_")}
        if not o.sleep:
            penv["PEBBLE_VA_NOSLEEP"] = "1"
        for kv in o.env:
            k, _, v = kv.partition("=")
            penv[k] = v
        # --dnsserver: Pebble resolves through a real DNS server the
        # caller started (tests/dns/dns-env.py); challtestsrv still runs.
        argv = [PEBBLE, "-config", config, "-dnsserver",
                o.dnsserver or "127.0.0.1:%d" % dns]
        if o.strict:
            argv.append("-strict")
        self.spawn("pebble", argv, env=penv, cwd=self.workdir)

        # The http-01 responder: a real server reading files from webroot
        # (webroot.py: http.server with a real listen backlog).  Its
        # access log (webroot.log) shows what Pebble's VA fetched.
        # --no-webroot leaves httpPort free for the scenario's own
        # responder (luacme's standalone http-01 hook).
        if not o.no_webroot:
            self.spawn("webroot", [
                sys.executable, "-u",
                os.path.join(os.path.dirname(os.path.abspath(__file__)),
                             "webroot.py"), "127.0.0.1", str(http), webroot,
                str(o.webroot_delay)])

        # --fault-proxy: tests/e2e/faultproxy.py in front of Pebble's
        # ACME listener, with the same test certificate.
        if o.fault_proxy:
            self.spawn("faultproxy", [
                sys.executable, "-u",
                os.path.join(os.path.dirname(os.path.abspath(__file__)),
                             "faultproxy.py"), "127.0.0.1", str(fproxy),
                str(fctl), str(acme), cert, key])

        ctx = ssl.create_default_context(cafile=cert)
        deadline = time.monotonic() + o.ready_timeout
        self.wait_until("challtestsrv management",
                        lambda: http_answers("http://127.0.0.1:%d/" % cts),
                        deadline)
        self.wait_until("challtestsrv DNS",
                        lambda: dns_answers(dns, "ready.test", 1) >= 0,
                        deadline)
        # Ports are shared machine-wide: make sure the servers answering
        # are ours, not another run's that took a port we chose.  A TXT
        # record set over our management port must show in our DNS; the
        # webroot must serve a file we wrote; Pebble must present our
        # certificate (checked by ctx below).
        marker = os.path.basename(self.workdir).replace(".", "-").replace(
            "_", "-").lower()
        txt_host = "_ready.%s.test." % marker
        if post_json("http://127.0.0.1:%d/set-txt" % cts,
                     {"host": txt_host, "value": marker}) != 200:
            raise BringUpError("challtestsrv set-txt refused")
        self.wait_until("challtestsrv DNS TXT",
                        lambda: dns_answers(dns, txt_host, 16) >= 1,
                        deadline)
        post_json("http://127.0.0.1:%d/clear-txt" % cts, {"host": txt_host})
        if not o.no_webroot:
            with open(os.path.join(webroot, ".ready"), "w") as f:
                f.write(marker)
            self.wait_until("webroot server",
                            lambda: http_body("http://127.0.0.1:%d/.ready"
                                              % http) == marker.encode(),
                            deadline)
            os.unlink(os.path.join(webroot, ".ready"))
        self.wait_until("pebble directory",
                        lambda: http_answers("https://127.0.0.1:%d/dir"
                                             % acme, ctx, 200), deadline)
        self.wait_until("pebble management",
                        lambda: http_answers("https://127.0.0.1:%d/roots/0"
                                             % mgmt, ctx, 200), deadline)
        if o.fault_proxy:
            self.wait_until("fault proxy control",
                            lambda: http_answers("http://127.0.0.1:%d/ready"
                                                 % fctl, None, 200),
                            deadline)
            self.wait_until("pebble directory through the fault proxy",
                            lambda: http_answers("https://127.0.0.1:%d/dir"
                                                 % fproxy, ctx, 200),
                            deadline)
        self.wait_until("all servers alive", lambda: True, deadline)

        self.facts = {
            "LUACME_E2E_DIRECTORY": "https://127.0.0.1:%d/dir" % acme,
            "LUACME_E2E_CA_FILE": cert,
            "LUACME_E2E_MGMT": "https://127.0.0.1:%d" % mgmt,
            "LUACME_E2E_CHALLTESTSRV": "http://127.0.0.1:%d" % cts,
            "LUACME_E2E_WEBROOT": webroot,
            "LUACME_E2E_HTTP_PORT": str(http),
            "LUACME_E2E_TLS_PORT": str(tls),
            "LUACME_E2E_DNS_PORT": str(dns),
            "LUACME_E2E_WORKDIR": self.workdir,
            "LUACME_E2E_CONFIG": config,
            "LUACME_E2E_PEBBLE_LOG": os.path.join(self.workdir, "pebble.log"),
            "LUACME_E2E_HTTP_LOG": os.path.join(self.workdir, "webroot.log"),
            "LUACME_E2E_STRICT": "1" if o.strict else "0",
        }
        if o.fault_proxy:
            self.facts["LUACME_E2E_PROXY_DIRECTORY"] = (
                "https://127.0.0.1:%d/dir" % fproxy)
            self.facts["LUACME_E2E_PROXY_CONTROL"] = "http://127.0.0.1:%d" % fctl

    def start(self):
        self.workdir = tempfile.mkdtemp(prefix="luacme-e2e.")
        self.cert, self.key = make_cert(self.workdir)
        taken = set()
        for attempt in range(1, BRINGUP_ATTEMPTS + 1):
            try:
                self.bring_up(taken)
                return
            except BringUpError as e:
                raced = self.port_raced(e)
                self.tail_logs(10)
                self.stop_all()
                if attempt == BRINGUP_ATTEMPTS or not raced:
                    raise
                log("attempt %d lost a port race (%s); retrying" % (attempt, e))
                for name in SERVERS:
                    path = os.path.join(self.workdir, name + ".log")
                    if os.path.exists(path):
                        os.rename(path, path + ".%d" % attempt)

    def cleanup(self):
        self.stop_all()
        if self.workdir and not self.opts.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)
        elif self.workdir:
            log("kept %s" % self.workdir)


def parse(argv):
    ap = argparse.ArgumentParser(
        description="Run COMMAND against a private Pebble on loopback.")
    ap.add_argument("--env", action="append", default=[], metavar="K=V",
                    help="PEBBLE_* setting for Pebble (repeatable)")
    ap.add_argument("--strict", action="store_true",
                    help="start Pebble with -strict")
    ap.add_argument("--eab", action="store_true",
                    help="require external account binding (MAC keys of "
                         "Pebble's example config)")
    ap.add_argument("--validity", type=int, metavar="SECONDS",
                    help="certificateValidityPeriod")
    ap.add_argument("--blocklist", action="append", metavar="NAME",
                    help="domainBlocklist entry (repeatable; default "
                         "blocked.test)")
    ap.add_argument("--sleep", action="store_true",
                    help="keep Pebble's random validation sleep (do not "
                         "set PEBBLE_VA_NOSLEEP=1)")
    ap.add_argument("--no-webroot", action="store_true",
                    help="start no webroot HTTP server, leaving Pebble's "
                         "httpPort free for the scenario's own responder")
    ap.add_argument("--webroot-delay", type=float, default=0.0,
                    metavar="SECONDS", help="the webroot server holds each "
                    "challenge reply this long: a CA that takes that long "
                    "to validate http-01, without Pebble's random sleep")
    ap.add_argument("--fault-proxy", action="store_true",
                    help="start tests/e2e/faultproxy.py in front of Pebble "
                         "(LUACME_E2E_PROXY_DIRECTORY, _PROXY_CONTROL)")
    ap.add_argument("--ready-timeout", type=float, default=60.0,
                    metavar="SECONDS", help="bring-up deadline")
    ap.add_argument("--keep", action="store_true",
                    help="keep the work directory (also LUACME_E2E_KEEP=1)")
    ap.add_argument("--dnsserver", metavar="HOST:PORT",
                    help="DNS server Pebble's VA asks (default: the "
                         "challtestsrv started here)")
    ap.add_argument("--logs", action="store_true",
                    help="print the servers' log tails even on success")
    o = parse_command(ap, argv)
    for kv in o.env:
        if "=" not in kv or not kv.startswith("PEBBLE_"):
            ap.error("--env wants PEBBLE_NAME=VALUE, got %r" % kv)
    if os.environ.get("LUACME_E2E_KEEP") == "1":
        o.keep = True
    return o


def main(argv):
    o = parse(argv)
    for prog in (PEBBLE, CHALLTESTSRV, "openssl"):
        if not shutil.which(prog):
            log("%s not found (Debian: apt-get install pebble openssl)" % prog)
            return 1
    env = Env(o)

    def bring_up():
        env.start()
        log("pebble %s (mgmt %s), workdir %s" % (
            env.facts["LUACME_E2E_DIRECTORY"], env.facts["LUACME_E2E_MGMT"],
            env.workdir))
        return o.command, env.facts

    return run(log, bring_up, env.cleanup, env.tail_logs, logs=o.logs)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
