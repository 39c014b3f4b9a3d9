"""What tests/e2e/pebble-env.py and tests/dns/dns-env.py share: servers
started as child processes on free loopback ports, waited for, stopped by
PID, and one command run in between that gets their facts in its
environment; everything is stopped also when the command fails or a
signal arrives.  dns-env.py finds this module by adding tests/e2e to
sys.path.
"""

import argparse
import ctypes
import os
import signal
import socket
import struct
import subprocess
import sys
import time

STOP_GRACE = 5.0
POLL_INTERVAL = 0.05
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# What a server logs when it lost a port to another process.
LOST_PORT = (b"address already in use", b"unable to bind")


class Interrupted(Exception):
    def __init__(self, signum):
        super().__init__("signal %d" % signum)
        self.signum = signum


class BringUpError(Exception):
    pass


class PortTaken(BringUpError):
    """A port free_ports chose was taken before a server could bind it."""


def logger(prefix):
    """A log(msg) writing "PREFIX: msg" to stderr at once."""
    def log(msg):
        sys.stderr.write("%s: %s\n" % (prefix, msg))
        sys.stderr.flush()
    return log


def child_setup():
    """Child-side, before exec: a process group of its own, so a Ctrl-C
    at the terminal reaches only the env script, which forwards it to the
    command once and then stops the servers in order; and SIGTERM when
    the env script dies, even by SIGKILL (a ctest timeout kills only its
    direct child)."""
    os.setpgid(0, 0)
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)          # PR_SET_PDEATHSIG
    except OSError:
        pass


def port_in_use(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def udp_in_use(port):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def free_ports(n, taken=()):
    """n distinct ports on 127.0.0.1 free for TCP and UDP, none in
    `taken`.  The TCP sockets stay open until every port is chosen, so
    they are distinct; each is then probed once more, and one taken
    meanwhile raises PortTaken (a port race: bring-up is retried)."""
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            p = s.getsockname()[1]
            if p not in taken and p not in ports and not udp_in_use(p):
                ports.append(p)
    finally:
        for s in socks:
            s.close()
    for p in ports:
        if port_in_use(p):
            raise PortTaken("port %d taken while probing" % p)
        if udp_in_use(p):
            raise PortTaken("udp port %d taken while probing" % p)
    return ports


def dns_reply(port, name, qtype, flags, timeout):
    """Ask 127.0.0.1:port (UDP) for name/qtype with the header flags
    given (0x0100: recursion desired).  Returns the reply's (flags,
    answer count), or None when it does not reply in time."""
    qid = os.getpid() & 0xffff
    q = struct.pack(">HHHHHH", qid, flags, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", qtype, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(q, ("127.0.0.1", port))
            data, _ = s.recvfrom(4096)
        except OSError:
            return None
    if len(data) < 12:
        return None
    rid, rflags, _, an = struct.unpack(">HHHH", data[:8])
    if rid != qid:
        return None
    return rflags, an


class Procs:
    """The servers of one run, started in order, each logging to
    WORKDIR/NAME.log; stopped in reverse order."""

    def __init__(self, log, workdir=None):
        self.log = log
        self.workdir = workdir
        self.procs = []            # (name, Popen, logpath)

    def spawn(self, name, argv, env=None, cwd=None):
        logpath = os.path.join(self.workdir, name + ".log")
        logf = open(logpath, "ab")
        try:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                 stdout=logf, stderr=subprocess.STDOUT,
                                 env=env, cwd=cwd, preexec_fn=child_setup)
        finally:
            logf.close()
        self.procs.append((name, p, logpath))
        return p

    def stop_all(self):
        """SIGTERM to every server still running, then wait up to
        STOP_GRACE in all, SIGKILL to any that ignored it."""
        for name, p, _ in reversed(self.procs):
            if p.poll() is None:
                try:
                    p.terminate()
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + STOP_GRACE
        for name, p, _ in reversed(self.procs):
            left = max(0.0, deadline - time.monotonic())
            try:
                p.wait(timeout=left)
            except subprocess.TimeoutExpired:
                self.log("%s (pid %d) ignored SIGTERM; killing"
                         % (name, p.pid))
                p.kill()
                p.wait()
        self.procs = []

    def wait_until(self, what, check, deadline):
        """Poll check() until true; BringUpError when a server exits
        first or the deadline (time.monotonic) passes."""
        while True:
            for name, p, _ in self.procs:
                if p.poll() is not None:
                    raise BringUpError("%s exited with %d while waiting for %s"
                                       % (name, p.returncode, what))
            if check():
                return
            if time.monotonic() > deadline:
                raise BringUpError("timed out waiting for %s" % what)
            time.sleep(POLL_INTERVAL)

    def tail_logs(self, lines=40):
        """The last lines of each running server's log, to stderr."""
        for name, _, path in self.procs:
            try:
                with open(path, "rb") as f:
                    text = f.read().decode("utf-8", "replace").splitlines()
            except OSError:
                continue
            sys.stderr.write("---- %s.log (last %d lines) ----\n"
                             % (name, min(lines, len(text))))
            for line in text[-lines:]:
                sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def port_raced(self, err):
        """Did the bring-up that failed with err lose a port to another
        process?  True when free_ports found a port taken or a server
        logged that its address was in use."""
        if isinstance(err, PortTaken):
            return True
        for _, _, path in self.procs:
            try:
                with open(path, "rb") as f:
                    text = f.read().lower()
            except OSError:
                continue
            if any(m in text for m in LOST_PORT):
                return True
        return False


def parse_command(ap, argv):
    """Parse argv with ap plus the trailing "-- COMMAND [ARGS...]" (the
    "--" is optional); o.command is the command's argv, never empty."""
    ap.add_argument("command", nargs=argparse.REMAINDER)
    o = ap.parse_args(argv)
    if o.command and o.command[0] == "--":
        o.command = o.command[1:]
    if not o.command:
        ap.error("no command given")
    return o


def run(log, bring_up, tear_down, tail_logs, logs=False,
        child_grace=STOP_GRACE):
    """Run a command between bring_up() and tear_down(), forwarding
    SIGINT/SIGTERM/SIGHUP to it.  bring_up() returns (argv, facts): the
    command and the variables added to its environment; it raises
    BringUpError when the servers do not come up.  tail_logs() runs when
    the command fails (always with logs).  tear_down() runs in every case,
    with the signals ignored so a second one cannot skip it.  Returns the
    exit status: the command's (128+N when it died by signal N), 1 when
    bring-up failed, 128+N when this process got signal N (the command
    then gets child_grace seconds before SIGKILL)."""
    child = None

    def on_signal(signum, _frame):
        if child is not None and child.poll() is None:
            try:
                child.send_signal(signum)
            except ProcessLookupError:
                pass
        raise Interrupted(signum)

    for s in SIGNALS:
        signal.signal(s, on_signal)

    status = 1
    try:
        argv, facts = bring_up()
        env = dict(os.environ)
        env.update(facts)
        child = subprocess.Popen(argv, env=env, preexec_fn=child_setup)
        status = child.wait()
        if status < 0:
            status = 128 - status
        if status != 0 or logs:
            tail_logs()
    except BringUpError as e:
        log("bring-up failed: %s" % e)
        status = 1
    except Interrupted as e:
        log("interrupted by signal %d; stopping" % e.signum)
        if child is not None:
            try:
                child.wait(timeout=child_grace)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        status = 128 + e.signum
    finally:
        for s in SIGNALS:
            signal.signal(s, signal.SIG_IGN)
        tear_down()
    return status
