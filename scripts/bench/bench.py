#!/usr/bin/env python3
"""scripts/bench/bench.py: ringtls side by side with HAProxy, nginx (stream module) and stunnel,
each doing mutual TLS (client certificate required, verified against the same ca.pem) in front of
the same plaintext `ringtls upstream`, with the same certificates, in one run.

  scripts/bench.sh            full run (about 10 minutes), results in benches/results/
  scripts/bench.sh --quick    smoke run (about 1-2 minutes), same files, marked quick
  scripts/bench/bench.py --self-test   checks this script's helpers on canned inputs (no servers)

Options: --quick, --no-build (use target/release/ringtls as it is), --out DIR (default
benches/results), --servers ringtls,haproxy,nginx,stunnel (a subset, for debugging; ratios need
haproxy), --only 1,5 (run only these measurement blocks, for debugging: 1 handshakes and echo,
2 RSA handshakes, 3 bulk up, 4 bulk down, 5 idle memory, 6 ringtls threads, 7 ringtls kernel TLS
vs user space), --keep (keep the temp dir with configs and logs), --self-test.

Environment: BENCH_KTLS_FORCE=1 runs block 7 (ringtls kernel TLS vs user space) also on a kernel
that offers no kernel TLS, for debugging the block: its "ktls" runs then use --ktls auto instead
of --ktls on and so show 0 kernel TLS connections. Without it, block 7 is skipped on such a
kernel, and stderr and results.md say so.

Method. Every server gets ONE worker pinned to core 0 (taskset -c 0; haproxy nbthread 1; nginx
master_process off so the one process is the worker; stunnel as packaged, thread per connection,
whole process, but logging to its stderr file and not to syslog, see stunnel.conf.in; ringtls
--threads 1). The load generator (`ringtls load`) and the upstreams run on core 1. Server CPU is
utime+stime of the server process (/proc/PID/stat, all threads, including exited ones) read
before and after each load run and divided by the work done in that run: on a busy 2-core machine
that is steadier than a rate. Every load run pins TLS 1.3 and X25519, so that no server pays for a
different key exchange (rustls would otherwise pick X25519MLKEM768 where OpenSSL 3.0 cannot).
Every server writes one log line per connection to a file, as ringtls does. Measurements run
interleaved (one block for all servers, then the next block) so that noise from other work on the
machine spreads over all servers alike.

Layout: this file drives processes and writes raw records into a temp dir (meta.txt, notes.txt,
records/NNN.meta.json, NNN.load.json); scripts/bench/*.in are the config templates (@VAR@
placeholders); scripts/bench/report.py turns the records into raw.json, results.md and
chart.svg. scripts/bench.sh is a wrapper that execs this file. Every child runs in a process
group of its own and is stopped, with its children, on any exit (error, Ctrl-C, TERM); every
wait is bounded. Python 3.11 standard library only.
"""

import atexit
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import report  # noqa: E402  (scripts/bench/report.py, beside this file)

SERVERS = ("ringtls", "haproxy", "nginx", "stunnel")
BLOCKS = ("1", "2", "3", "4", "5", "6", "7")
NGINX_STREAM = "/usr/lib/nginx/modules/ngx_stream_module.so"
T0 = time.monotonic()


class Failed(Exception):
    """The run cannot go on: printed as `bench: FAILED: ...`, exit 1, work dir kept."""


class Usage(Exception):
    """A bad command line: exit 64."""


def log(msg):
    print(f"bench: [{int(time.monotonic() - T0):3d}s] {msg}", file=sys.stderr, flush=True)


def usage():
    return __doc__.split("\n\n", 1)[1].split("\nMethod.", 1)[0].strip("\n") + "\n"


# --- options and sizes ---------------------------------------------------------------------------

@dataclass
class Options:
    quick: bool = False
    build: bool = True
    keep: bool = False
    self_test: bool = False
    help: bool = False
    out: str = os.path.join(ROOT, "benches", "results")
    servers_arg: str = ",".join(SERVERS)
    servers: list = field(default_factory=lambda: list(SERVERS))
    only: set = field(default_factory=lambda: set(BLOCKS))
    ktls_force: bool = False


def parse_args(argv, env):
    o = Options()
    args = list(argv)
    needs = {"--out": "a directory", "--servers": "a list", "--only": "block numbers"}
    while args:
        a = args.pop(0)
        if a in needs:
            if not args or not args[0]:
                raise Usage(f"{a} needs {needs[a]}")
            v = args.pop(0)
            if a == "--out":
                o.out = os.path.abspath(v)
            elif a == "--servers":
                o.servers_arg = v
            else:
                o.only = set(v.split(","))
        elif a == "--quick":
            o.quick = True
        elif a == "--no-build":
            o.build = False
        elif a == "--keep":
            o.keep = True
        elif a == "--self-test":
            o.self_test = True
        elif a in ("-h", "--help"):
            o.help = True
        else:
            raise Usage(f"unknown option {a}")
    o.servers = o.servers_arg.split(",")
    for s in o.servers:
        if s not in SERVERS:
            raise Usage(f"--servers: unknown server {s}")
    unknown = sorted(o.only - set(BLOCKS))
    if unknown:
        raise Usage(f"--only: no block {unknown[0]!r} (blocks are 1-7)")
    o.ktls_force = env.get("BENCH_KTLS_FORCE", "0") == "1"
    return o


@dataclass(frozen=True)
class Sizes:
    dur_ms: int
    warmup_ms: int
    bulk_bytes: str
    idle_want: int
    idle_batch: int  # idle connections opened at once
    idle_bound: int  # seconds to wait for all idle connections
    hs_conc: int = 16
    bulk_conc: int = 4
    echo_conc: int = 16
    echo_size: int = 64
    echo_rate: int = 5000

    @property
    def dur(self):
        return f"{self.dur_ms}ms"

    @property
    def warmup(self):
        return f"{self.warmup_ms}ms"


def sizes(quick):
    if quick:
        return Sizes(dur_ms=1000, warmup_ms=300, bulk_bytes="64MiB", idle_want=1000, idle_batch=500,
                     idle_bound=40)
    return Sizes(dur_ms=12000, warmup_ms=1000, bulk_bytes="256MiB", idle_want=10000, idle_batch=1000,
                 idle_bound=180)


def fd_budget(nofile, idle_want):
    """(idle connections to hold, maxconn) for an fd limit: the server holds 2 fds per idle
    connection (client + upstream); HAProxy refuses to start when 2 * maxconn plus its own fds
    exceed the limit."""
    idle_n = min(idle_want, (nofile - 100) // 2 // 100 * 100)
    maxconn = min(idle_n + 100, (nofile - 64) // 2)
    return idle_n, maxconn


# --- children: process groups, stopped on every exit ---------------------------------------------

class Children:
    """Every process this run starts, each the leader of a process group of its own (so that its
    own children are reached too, and a Ctrl-C at the terminal reaches only us: we stop them)."""

    def __init__(self):
        self.procs = []

    def spawn(self, cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=None):
        """Starts cmd with stdout/stderr to the given paths (or DEVNULL / STDOUT)."""
        files = []
        try:
            if isinstance(stdout, str):
                stdout = open(stdout, "wb")
                files.append(stdout)
            if isinstance(stderr, str):
                stderr = open(stderr, "wb")
                files.append(stderr)
            p = subprocess.Popen([str(c) for c in cmd], stdin=subprocess.DEVNULL, stdout=stdout,
                                 stderr=stderr, cwd=cwd, start_new_session=True)
        except OSError as e:
            raise Failed(f"cannot start {cmd[0]}: {e}") from e
        finally:
            for f in files:
                f.close()
        self.procs.append(p)
        return p

    def forget(self, p):
        if p in self.procs:
            self.procs.remove(p)

    def run(self, cmd, timeout, **kw):
        """Runs cmd to its end within timeout seconds; the exit code, 124 when it was stopped
        for taking longer (as timeout(1) says), 127 when it cannot be started."""
        try:
            p = self.spawn(cmd, **kw)
        except Failed:
            return 127
        try:
            return p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_group(p, grace=5)
            return 124
        finally:
            self.forget(p)

    def cleanup(self):
        """Children first asked to stop (a loop of theirs may start new processes), then made to."""
        procs, self.procs = self.procs, []
        for p in procs:
            signal_group(p, signal.SIGTERM)
        deadline = time.monotonic() + 3
        for p in procs:
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for p in procs:
            signal_group(p, signal.SIGKILL)
            try:
                p.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass


def signal_group(p, sig):
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_group(p, grace):
    signal_group(p, signal.SIGTERM)
    try:
        p.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        signal_group(p, signal.SIGKILL)
        p.wait(timeout=5)


def alive(p):
    return p.poll() is None


# --- /proc readings (parsers take the text, so that --self-test can feed them) -------------------

def stat_ticks(text):
    """utime+stime in clock ticks from /proc/PID/stat: the process line sums all its threads,
    exited included. The command name may hold spaces and parentheses: fields count from the
    last ')'."""
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def status_field(text, key):
    """An integer field of /proc/PID/status (VmRSS in KiB, Threads)."""
    m = re.search(rf"^{key}:\s+(\d+)", text, re.MULTILINE)
    if not m:
        raise ValueError(f"no {key} in /proc/PID/status")
    return int(m.group(1))


def machine_ticks_of(text):
    """From /proc/stat, all cores: busy ticks, total ticks, and irq+softirq ticks. Without
    CONFIG_IRQ_TIME_ACCOUNTING a tick that lands in a softirq is charged there and not to the
    process it interrupted, so the loopback network work of a run shows up here rather than in any
    process."""
    u, n, s, i, w, irq, sirq, st = (int(x) for x in text.split("\n", 1)[0].split()[1:9])
    return u + n + s + irq + sirq + st, u + n + s + i + w + irq + sirq + st, irq + sirq


def listening_in_proc_net_tcp(text, port):
    """Whether /proc/net/tcp shows a socket in LISTEN (state 0A) on port, any address."""
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) > 3 and f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
            return True
    return False


def listening_port_of(text):
    """The port of `{"listening":["127.0.0.1:PORT"]}`, ringtls' readiness line, or None."""
    m = re.search(r'"127\.0\.0\.1:(\d+)"', text)
    return int(m.group(1)) if m else None


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


def cpu_ticks(pid):
    return stat_ticks(read(f"/proc/{pid}/stat"))


def rss_kb(pid):
    return status_field(read(f"/proc/{pid}/status"), "VmRSS")


def thread_count(pid):
    return status_field(read(f"/proc/{pid}/status"), "Threads")


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def machine_ticks():
    return machine_ticks_of(read("/proc/stat"))


def children_cpu_ms():
    """CPU (user+sys) of this process's reaped children so far, in ms: brackets one load run."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return int((r.ru_utime + r.ru_stime) * 1000)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path, n):
    try:
        return "\n".join(read(path).splitlines()[-n:])
    except OSError:
        return ""


# --- text helpers --------------------------------------------------------------------------------

def render(template_text, values):
    """Fills @KEY@ placeholders; a placeholder left outside comments is an error."""
    out = template_text
    for k, v in values.items():
        out = out.replace(f"@{k}@", str(v))
    for line in out.splitlines():
        if re.match(r"\s*[#;]", line):
            continue
        m = re.search(r"@[A-Z_]*@", line)
        if m:
            raise ValueError(f"unfilled placeholder {m.group(0)}")
    return out


def last_json(text):
    """The load generator's JSON line (the last non-empty line), or None."""
    lines = text.strip().splitlines()
    try:
        j = json.loads(lines[-1])
    except (IndexError, ValueError):
        return None
    return j if isinstance(j, dict) else None


def load_summary(text):
    j = last_json(text)
    try:
        return (f"ok {j['ok']} failed {j['failed']} {j['per_second']}/s {j['mib_per_s']} MiB/s "
                f"p50 {j['latency_us']['p50']}us p99 {j['latency_us']['p99']}us resumed {j['resumed_fraction']}"
                + (f" failures {j['failures']}" if j['failed'] else ""))
    except (TypeError, KeyError) as e:
        return f"no JSON from load ({e.__class__.__name__})"


def idle_progress(err_text):
    """(ok, failed) from the last `load: ... ok N failed M` progress line, or (0, 0)."""
    lines = [l for l in err_text.splitlines() if l.startswith("load:")]
    m = re.search(r"ok (\d+) failed (\d+)", lines[-1]) if lines else None
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def ktls_paths(log_text):
    """The data path each connection took, from ringtls' conn.closed events: connections with
    path=ktls, those with any other path, and the sums of their spliced= and down= bytes (down= is
    what the server sent the client, more than the load counts as read)."""
    k = o = spliced = down = 0
    for line in log_text.splitlines():
        f = line.split()
        if len(f) < 3 or f[2] != "conn.closed":
            continue
        m = re.search(r" path=([a-z]+) up=", line)
        if m and m.group(1) == "ktls":
            k += 1
        else:
            o += 1
        m = re.search(r" spliced=(\d+)", line)
        spliced += int(m.group(1)) if m else 0
        m = re.search(r" down=(\d+)", line)
        down += int(m.group(1)) if m else 0
    return k, o, spliced, down


def ktls_probe(log_text):
    """From the log of `ringtls serve --ktls auto`: (True, "suites=...") when it logged
    ktls.available, else (False, the detail of its ktls.unavailable line, or None)."""
    if re.search(r" ktls\.available", log_text):
        m = re.search(r"suites=\S*", log_text)
        return True, m.group(0) if m else "suites not logged"
    m = re.search(r' ktls\.unavailable .*?detail="((?:[^"\\]|\\.)*)"', log_text)
    return False, m.group(1).replace('\\"', '"') if m else None


def idle_why(log_text):
    """The server's own word on refused idle connections, when it logs one (stunnel: "too many
    clients")."""
    m = re.search(r"^.*(too many|reject|limit|maxconn).*$", log_text, re.IGNORECASE | re.MULTILINE)
    return m.group(0)[:200] if m else ""


def first_line(cmd, pattern=None):
    """First line of a version command's output (stdout and stderr), or the matching one."""
    try:
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=20, text=True, errors="replace")
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{cmd[0]}: {e.__class__.__name__}"
    lines = [l for l in r.stdout.splitlines() if pattern is None or re.match(pattern, l)]
    return lines[0] if lines else ""


# --- the run -------------------------------------------------------------------------------------

@dataclass
class Server:
    name: str
    cert: str
    upmode: str
    threads: int
    proc: subprocess.Popen
    port: int
    log: str
    instance: str  # for notes: "ecdsa certificate, upstream echo, threads 1"
    last_measure: str = "start"

    @property
    def pid(self):
        return self.proc.pid


class Bench:
    """One run: its options, sizes, work dir, PKI, upstreams and the records written so far."""

    def __init__(self, opts, children, work):
        self.o = opts
        self.s = sizes(opts.quick)
        self.children = children
        self.work = work
        self.ringtls = os.path.join(ROOT, "target", "release", "ringtls")
        self.pki = os.path.join(work, "pki")
        self.clk_tck = os.sysconf("SC_CLK_TCK")
        self.seq = 0
        self.failures = 0
        self.instance = 0
        self.upstreams = {}  # mode -> (Popen, port)
        self.ktls_state = "not probed (block 7 did not run)"
        self.nofile = self.idle_n = self.maxconn = 0
        self.stunnel = shutil.which("stunnel") or shutil.which("stunnel4")
        for d in ("records", "logs", "conf"):
            os.makedirs(os.path.join(work, d))

    def path(self, *parts):
        return os.path.join(self.work, *parts)

    def note(self, text):
        with open(self.path("notes.txt"), "a") as f:
            f.write(text + "\n")

    def next_record(self):
        self.seq += 1
        return self.path("records", f"{self.seq:03d}")

    # --- setup ---

    def raise_fd_limit(self):
        """As far as this machine allows; where the hard limit is below what the idle test needs,
        it holds fewer connections and says so."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        for want in (1048576, 65536):
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, want), want))
                break
            except (ValueError, OSError):
                continue
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        self.nofile = 1048576 if hard == resource.RLIM_INFINITY else hard
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, hard))
        self.idle_n, self.maxconn = fd_budget(self.nofile, self.s.idle_want)
        if self.idle_n < self.s.idle_want:
            log(f"fd limit {self.nofile} (hard, cannot be raised here): idle test holds {self.idle_n} "
                f"connections, not {self.s.idle_want}")

    def make_pki(self):
        if self.children.run([self.ringtls, "pki", self.pki], timeout=60) != 0:
            raise Failed(f"{self.ringtls} pki {self.pki} failed")
        # RSA-2048 server certificate signed by the same root, for the handshake rows: the recipe
        # scan.sh uses too, in one place (scripts/lib/pki.sh).
        script = 'die() { echo "$*" >&2; exit 1; }; . "$1"; rsa_server_cert "$2" 30'
        rc = self.children.run(["bash", "-c", script, "bench", os.path.join(ROOT, "scripts/lib/pki.sh"),
                                self.pki], timeout=120, stderr=self.path("logs", "pki-rsa.err"))
        if rc != 0:
            raise Failed(f"the RSA server certificate: {tail(self.path('logs', 'pki-rsa.err'), 3)}")
        # HAProxy wants certificate and key in one file.
        for cert, stem in (("ecdsa", "server"), ("rsa", "server-rsa")):
            with open(os.path.join(self.pki, f"haproxy-{cert}.pem"), "w") as f:
                f.write(read(os.path.join(self.pki, f"{stem}.pem")) + read(os.path.join(self.pki, f"{stem}.key")))

    def wait_port_line(self, p, stdout_path):
        """The port of ringtls' listening line (bounded wait), or None."""
        for _ in range(100):
            try:
                port = listening_port_of(read(stdout_path))
            except OSError:
                port = None
            if port:
                return port
            if not alive(p):
                return None
            time.sleep(0.1)
        return None

    def start_upstreams(self):
        for mode in ("echo", "sink", "source"):
            out, err = self.path("logs", f"upstream-{mode}.out"), self.path("logs", f"upstream-{mode}.err")
            p = self.children.spawn(["taskset", "-c", "1", self.ringtls, "upstream", "--listen", "127.0.0.1:0",
                                     "--mode", mode], stdout=out, stderr=err)
            port = self.wait_port_line(p, out)
            if port is None:
                raise Failed(f"ringtls upstream --mode {mode} did not print its listening line: {tail(err, 3)}")
            self.upstreams[mode] = (p, port)

    # --- servers ---

    def render_conf(self, template, out, **values):
        try:
            text = render(read(os.path.join(HERE, template)), values)
        except ValueError as e:
            raise Failed(f"{out}: {e}") from e
        with open(out, "w") as f:
            f.write(text)

    def start_server(self, name, cert, upmode, threads=1, pin=True, extra=()):
        """One server in front of the upstream of that mode; ringtls takes `extra` flags."""
        up = self.upstreams[upmode][1]
        self.instance += 1
        tag = f"{self.instance}-{name}-{cert}-{upmode}"
        d = self.path("conf", tag)
        os.makedirs(d)
        stem = "server-rsa" if cert == "rsa" else "server"
        crt, key, ca = (os.path.join(self.pki, f) for f in (f"{stem}.pem", f"{stem}.key", "ca.pem"))
        pincmd = ["taskset", "-c", "0"] if pin else []
        srv_log = self.path("logs", f"{tag}.log")
        extra = list(extra) if name == "ringtls" else []
        if name == "ringtls":
            p = self.children.spawn(pincmd + [self.ringtls, "serve", "--listen", "127.0.0.1:0", "--upstream",
                                              f"127.0.0.1:{up}", "--crt", crt, "--key", key, "--mutual-tls-cas", ca,
                                              "--threads", threads] + extra,
                                    stdout=os.path.join(d, "stdout"), stderr=srv_log)
            port = self.wait_port_line(p, os.path.join(d, "stdout"))
            if port is None:
                raise Failed(f"ringtls ({cert}, upstream {upmode}) did not print its listening line; "
                             f"log: {srv_log}: {tail(srv_log, 5)}")
        else:
            port = free_port()
            if name == "haproxy":
                conf = os.path.join(d, "haproxy.cfg")
                self.render_conf("haproxy.cfg.in", conf, PORT=port, UPSTREAM_PORT=up,
                                 CRT_AND_KEY=os.path.join(self.pki, f"haproxy-{cert}.pem"), CA=ca,
                                 MAXCONN=self.maxconn)
                check = os.path.join(d, "check.log")
                if self.children.run(["haproxy", "-c", "-q", "-f", conf], timeout=30, stdout=check,
                                     stderr=subprocess.STDOUT) != 0:
                    raise Failed(f"haproxy rejects its config {conf}: {tail(check, 20)}")
                cmd = ["haproxy", "-db", "-f", conf]
            elif name == "nginx":
                conf = os.path.join(d, "nginx.conf")
                self.render_conf("nginx.conf.in", conf, PORT=port, UPSTREAM_PORT=up, CRT=crt, KEY=key, CA=ca,
                                 DIR=d, NOFILE=self.nofile,
                                 WORKER_CONNECTIONS=min(2 * self.maxconn + 100, self.nofile),
                                 STREAM_MODULE=NGINX_STREAM)
                cmd = ["nginx", "-p", d, "-e", os.path.join(d, "nginx-error.log"), "-c", conf]
            else:
                conf = os.path.join(d, "stunnel.conf")
                self.render_conf("stunnel.conf.in", conf, PORT=port, UPSTREAM_PORT=up, CRT=crt, KEY=key, CA=ca)
                cmd = [self.stunnel, conf]
            p = self.children.spawn(pincmd + cmd, stdout=srv_log, stderr=subprocess.STDOUT)
            if not self.wait_listening(p, port):
                logs = [srv_log] + [os.path.join(d, f) for f in sorted(os.listdir(d)) if f.endswith("error.log")]
                raise Failed(f"{name} ({cert}, upstream {upmode}) did not come up on 127.0.0.1:{port}; config in "
                             f"{d}; log " + " ".join(f"{l}: {tail(l, 5)}" for l in logs))
            if name == "nginx":
                srv_log = os.path.join(d, "nginx-access.log")
        shown = f", {' '.join(extra)}" if extra else ""
        log(f"{name} up: pid {p.pid} port {port} (cert {cert}, upstream {upmode}, threads {threads}, "
            f"pinned {int(pin)}{shown})")
        return Server(name, cert, upmode, threads, p, port, srv_log,
                      f"{cert} certificate, upstream {upmode}, threads {threads}{shown}")

    def wait_listening(self, p, port):
        """Polls until something listens on port (bounded), or the process is gone."""
        for _ in range(100):
            if not alive(p):
                return False
            if listening_in_proc_net_tcp(read("/proc/net/tcp"), port):
                return True
            time.sleep(0.1)
        return False

    def stop_server(self, srv):
        p = srv.proc
        if alive(p):
            p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)
        self.children.forget(p)
        # SIGTERM and SIGKILL are ours; a crash on the way out is worth a line in the results.
        sig = -p.returncode if p.returncode < 0 else 0
        if sig in (signal.SIGABRT, signal.SIGBUS, signal.SIGFPE, signal.SIGSEGV):
            rc = 128 + sig
            log(f"  !! {srv.name} exited with status {rc} (signal {sig}) when stopped with SIGTERM; log {srv.log}")
            self.note(f"{srv.name} ({srv.instance}) crashed when stopped with SIGTERM: exit status {rc} "
                      f"(signal {sig}), after '{srv.last_measure}'")

    # --- load runs ---

    def load_cmd(self, srv, args, nocert=False):
        cmd = ["taskset", "-c", "1", self.ringtls, "load", "--connect", f"127.0.0.1:{srv.port}", "--ca",
               os.path.join(self.pki, "ca.pem"), "--server-name", "localhost", "--tls", "1.3", "--group", "X25519",
               "--json"]
        # Without a certificate every operation must fail; the caller counts them, not the exit code.
        if nocert:
            cmd += ["--max-failures", "100%"]
        else:
            cmd += ["--crt", os.path.join(self.pki, "client.pem"), "--key", os.path.join(self.pki, "client.key")]
        return cmd + [str(a) for a in args]

    def run_load(self, srv, measure, cert, args, nocert=False):
        """One load run against srv, with the server's CPU read around it; writes
        records/SEQ.meta.json and records/SEQ.load.json. The meta record's path, or None when the
        server died during the run."""
        srv.last_measure = measure
        base = self.next_record()
        cmd = self.load_cmd(srv, args, nocert)
        up_pid = self.upstreams[srv.upmode][0].pid
        try:
            before = cpu_ticks(srv.pid) if alive(srv.proc) else None
        except OSError:
            before = None
        if before is None:
            raise Failed(f"{srv.name} (pid {srv.pid}) is gone before '{measure}'; log {srv.log}")
        up0, m0, load0 = self.upstream_ticks(up_pid), machine_ticks(), children_cpu_ms()
        t0 = time.monotonic()
        rc = self.children.run(cmd, timeout=self.s.dur_ms // 1000 + 90, stdout=base + ".load.json",
                               stderr=base + ".load.err")
        load1 = children_cpu_ms()
        time.sleep(0.3)  # the server finishes closing the last connections
        t1 = time.monotonic()
        is_alive = alive(srv.proc)
        after = cpu_ticks(srv.pid) if is_alive else None
        up1, m1 = self.upstream_ticks(up_pid), machine_ticks()
        meta = {
            "seq": self.seq, "server": srv.name, "measure": measure, "cert": cert,
            "server_threads": srv.threads, "load_args": " ".join(cmd[4:]), "load_rc": rc,
            "cpu_ticks_before": before, "cpu_ticks_after": after, "clk_tck": self.clk_tck,
            "load_cpu_ms": load1 - load0, "upstream_cpu_ticks": up1 - up0,
            "machine_busy_ticks": m1[0] - m0[0], "machine_total_ticks": m1[1] - m0[1],
            "machine_irq_ticks": m1[2] - m0[2], "wall_s": round(t1 - t0, 3),
            "server_alive_after": is_alive, "server_log": os.path.basename(srv.log),
        }
        write_json(base + ".meta.json", meta)
        cpu_ms = ((after if after is not None else before) - before) * 1000 // self.clk_tck
        log(f"  {srv.name} {measure} ({cert}): {load_summary(read(base + '.load.json'))}; server cpu {cpu_ms} ms")
        if not is_alive:
            self.failures += 1
            log(f"  !! {srv.name} DIED during '{measure}': {' '.join(cmd)}; its log: {srv.log}")
            print(tail(srv.log, 5), file=sys.stderr)
            return None
        if rc != 0:
            self.failures += 1
            log(f"  !! load exited {rc} against {srv.name} ('{measure}'): {' '.join(cmd)}")
            print(tail(base + ".load.err", 3), file=sys.stderr)
        return base + ".meta.json"

    def upstream_ticks(self, pid):
        try:
            return cpu_ticks(pid)
        except OSError as e:
            raise Failed(f"the upstream (pid {pid}) is gone: {e}") from e

    def handshakes(self, srv, measure, cert, dur=None, resume=False):
        args = ["--mode", "handshake", "--concurrency", self.s.hs_conc, "--duration", dur or self.s.dur]
        return self.run_load(srv, measure, cert, args + (["--resume"] if resume else []))

    def warmup(self, srv, cert):
        self.handshakes(srv, "warmup", cert, dur=self.s.warmup)

    def bulk(self, srv, measure, direction):
        self.run_load(srv, measure, "ecdsa", ["--mode", f"bulk-{direction}", "--concurrency", self.s.bulk_conc,
                                               "--bytes", self.s.bulk_bytes, "--duration", self.s.dur])

    def check_mtls(self, srv):
        """A client without a certificate must get no byte through: proves each server really does
        mutual TLS. Echo mode, because a server may complete the TLS 1.3 handshake (even send a
        ticket) and only then close, without an alert (nginx's stream module does); no round trip
        may succeed either way."""
        if self.run_load(srv, "mtls-check", "ecdsa", ["--mode", "echo", "--concurrency", 1, "--duration", "1s"],
                         nocert=True) is None:
            raise Failed(f"{srv.name} died during the check with a client that has no certificate; log {srv.log}")
        j = last_json(read(self.path("records", f"{self.seq:03d}.load.json"))) or {}
        if j.get("ok") != 0:
            raise Failed(f"{srv.name} echoed {j.get('ok', 'an unknown number of')} messages for a client that has "
                         f"NO certificate (expected 0): it is not enforcing mutual TLS; config under "
                         f"{self.path('conf')}")

    def measure_idle(self, srv, n):
        """Idle connections: RSS before and once all n are established, divided by n. The
        connections are opened in batches (one load process per batch, each holding its batch
        open), the next batch once the load's progress line counts the previous one: a single
        burst of 10,000 handshakes queues at a server doing a few hundred per second for longer
        than the load's 10 s connect timeout."""
        batch, bound = self.s.idle_batch, self.s.idle_bound
        srv.last_measure = f"idle ({n} connections)"
        base = self.next_record()
        rss0, fds0, thr0 = rss_kb(srv.pid), fd_count(srv.pid), thread_count(srv.pid)
        t0 = time.monotonic()
        deadline = t0 + bound
        ok = failed = started = batches = 0
        loads, cmd = [], []
        while started < n and time.monotonic() < deadline:
            want = min(n - started, batch)
            batches += 1
            # Long enough to never end by itself before we stop it; `bound` bounds the wait.
            cmd = self.load_cmd(srv, ["--mode", "idle", "--concurrency", want, "--duration", f"{bound + 60}s"])
            err = f"{base}.load-{batches}.err"
            lp = self.children.spawn(cmd, stdout=f"{base}.load-{batches}.json", stderr=err)
            loads.append(lp)
            started += want
            bok = bfailed = 0
            batch_deadline = min(time.monotonic() + 30, deadline)
            while time.monotonic() < batch_deadline:
                time.sleep(0.25)
                bok, bfailed = idle_progress(read(err))
                if bok + bfailed >= want or not alive(lp) or not alive(srv.proc):
                    break
            ok, failed = ok + bok, failed + bfailed
            # A batch that did not finish within its wait ends the ramp; what is held is measured.
            if not alive(srv.proc) or bok + bfailed < want:
                break
        # The load counts a connection once its handshake is confirmed; the server may still be
        # connecting it to the upstream. Wait (bounded) for the server's fd count to settle.
        prev = -1
        for _ in range(20):
            if not alive(srv.proc):
                break
            fds = fd_count(srv.pid)
            if fds == prev:
                break
            prev = fds
            time.sleep(0.5)
        is_alive = alive(srv.proc)
        rss1, fds1, thr1 = (rss_kb(srv.pid), fd_count(srv.pid), thread_count(srv.pid)) if is_alive else (None,) * 3
        waited = round(time.monotonic() - t0, 2)
        for lp in loads:
            signal_group(lp, signal.SIGTERM)
        for lp in loads:
            try:
                lp.wait(timeout=10)
            except subprocess.TimeoutExpired:
                stop_group(lp, grace=0)
            self.children.forget(lp)
        write_json(base + ".meta.json", {
            "seq": self.seq, "server": srv.name, "measure": "idle", "cert": "ecdsa", "server_threads": 1,
            "load_args": " ".join(cmd[4:]) + f" (x{batches} batches, {batch} each)",
            "idle_target": n, "idle_wanted": self.s.idle_want, "idle_batch": batch, "idle_batches": batches,
            "idle_ok": ok, "idle_failed": failed, "rss_kb_before": rss0, "rss_kb_after": rss1,
            "fds_before": fds0, "fds_after": fds1, "threads_before": thr0, "threads_after": thr1,
            "wait_s": waited, "nofile_limit": self.nofile, "server_alive_after": is_alive,
            "server_log": os.path.basename(srv.log),
        })
        log(f"  {srv.name} idle: {ok} of {n} established ({failed} failed, {batches} batches) in {waited:.2f}s; "
            f"rss {rss0} -> {null(rss1)} KiB; fds {fds0} -> {null(fds1)}; threads {thr0} -> {null(thr1)}")
        if not is_alive:
            self.failures += 1
            log(f"  !! {srv.name} DIED while holding idle connections; its log: {srv.log}")
        if failed:
            try:
                why = idle_why(read(srv.log))
            except OSError:
                why = ""
            self.note(f"{srv.name} idle: {failed} of {n} connections were not established"
                      + (f"; its log says: `{why}`" if why else ""))


def null(x):
    return "null" if x is None else x


def write_json(path, obj):
    with open(path, "w") as f:
        f.write(json.dumps(obj, separators=(",", ":")) + "\n")


# --- the measurement blocks ----------------------------------------------------------------------

def block_handshakes(b):
    log("block 1/7: full and resumed handshakes, echo latency (ECDSA, echo upstream)")
    s = b.s
    for name in b.o.servers:
        srv = b.start_server(name, "ecdsa", "echo")
        b.check_mtls(srv)
        b.warmup(srv, "ecdsa")
        b.handshakes(srv, "handshake", "ecdsa")
        b.handshakes(srv, "resume", "ecdsa", resume=True)
        b.run_load(srv, "echo", "ecdsa", ["--mode", "echo", "--concurrency", s.echo_conc, "--size", s.echo_size,
                                          "--rate", s.echo_rate, "--duration", s.dur])
        # Closed loop, one connection: the round trip itself, without the load's pacing timer.
        b.run_load(srv, "echo-unpaced", "ecdsa", ["--mode", "echo", "--concurrency", 1, "--size", s.echo_size,
                                                  "--duration", s.dur])
        b.stop_server(srv)


def block_rsa(b):
    log("block 2/7: full handshakes with the RSA-2048 server certificate")
    for name in b.o.servers:
        srv = b.start_server(name, "rsa", "echo")
        b.warmup(srv, "rsa")
        b.handshakes(srv, "handshake-rsa", "rsa")
        b.stop_server(srv)


def block_bulk_up(b):
    log("block 3/7: bulk up (to a sink upstream)")
    for name in b.o.servers:
        srv = b.start_server(name, "ecdsa", "sink")
        b.bulk(srv, "bulk-up", "up")
        b.stop_server(srv)


def block_bulk_down(b):
    log("block 4/7: bulk down (from a source upstream)")
    for name in b.o.servers:
        srv = b.start_server(name, "ecdsa", "source")
        b.bulk(srv, "bulk-down", "down")
        b.stop_server(srv)


def block_idle(b):
    log(f"block 5/7: RSS per idle connection ({b.idle_n} connections)")
    for name in b.o.servers:
        srv = b.start_server(name, "ecdsa", "echo")
        # A short handshake run first, so that one-time allocations (TLS contexts, buffer pools)
        # land in the baseline rather than in the per-connection figure.
        b.warmup(srv, "ecdsa")
        time.sleep(0.5)
        b.measure_idle(srv, b.idle_n)
        b.stop_server(srv)


def block_threads(b):
    if "ringtls" not in b.o.servers:
        return
    log("block 6/7: ringtls --threads 1 vs --threads 2 (not pinned by taskset; load on core 1)")
    for t in (1, 2):
        srv = b.start_server("ringtls", "ecdsa", "echo", threads=t, pin=False)
        b.warmup(srv, "ecdsa")
        b.handshakes(srv, f"threads-{t}", "ecdsa")
        b.stop_server(srv)


def block_ktls(b):
    if "ringtls" not in b.o.servers:
        log("block 7/7 skipped: ringtls is not in --servers")
        return
    log("block 7/7: ringtls kernel TLS vs user space, bulk up and bulk down")
    # Whether this kernel offers kernel TLS: ringtls probes at start with --ktls auto and says
    # ktls.available (suites=...) or ktls.unavailable (detail="...") in its log.
    srv = b.start_server("ringtls", "ecdsa", "sink", extra=["--ktls", "auto"])
    b.stop_server(srv)
    available, detail = ktls_probe(read(srv.log))
    flag = "on"
    if available:
        b.ktls_state = f"available ({detail})"
        log(f"  kernel TLS is available: ({detail})")
    else:
        why = detail or (f"ringtls --ktls auto logged no ktls.available line at start; log "
                         f"{os.path.basename(srv.log)}")
        b.ktls_state = f"unavailable ({why})"
        if b.o.ktls_force:
            flag = "auto"
            print(f'\nbench: block 7 forced (BENCH_KTLS_FORCE=1) on a kernel without kernel TLS ({why}): its '
                  f'"ktls" runs use --ktls auto and take the user-space path\n', file=sys.stderr)
            b.note(f"kernel TLS rows (block 7) forced with BENCH_KTLS_FORCE=1 on a kernel that offers no kernel "
                   f"TLS (`{why}`): the kTLS rows ran with `--ktls auto` and measure user space again")
        else:
            print(f"\nbench: block 7 skipped: this kernel offers no kernel TLS ({why})\n", file=sys.stderr)
            b.note(f"kernel TLS rows (block 7) not measured: this kernel offers no kernel TLS (`{why}`); "
                   f"BENCH_KTLS_FORCE=1 runs the block anyway with `--ktls auto`")
            return
    # The loads of blocks 3 and 4; per direction --ktls off, then on, each on a fresh server.
    for direction, upmode in (("up", "sink"), ("down", "source")):
        for mode in ("off", flag):
            kind = "user" if mode == "off" else "ktls"
            srv = b.start_server("ringtls", "ecdsa", upmode, extra=["--ktls", mode])
            b.bulk(srv, f"bulk-{direction}-{kind}", direction)
            meta_path = b.path("records", f"{b.seq:03d}.meta.json")
            b.stop_server(srv)
            # Counted from the log once the server is gone, so that every close is in it: the
            # kernel path is shown taken, not assumed.
            k, o, spliced, down = ktls_paths(read(srv.log))
            with open(meta_path) as f:
                meta = json.load(f)
            meta.update(ktls_mode=mode, ktls_conns=k, other_conns=o, spliced_bytes=spliced, logged_down_bytes=down)
            write_json(meta_path, meta)
            log(f"  ringtls bulk-{direction}-{kind} (--ktls {mode}): {k} of {k + o} connections took path=ktls; "
                f"{spliced} bytes spliced")


MEASUREMENTS = {"1": block_handshakes, "2": block_rsa, "3": block_bulk_up, "4": block_bulk_down,
                "5": block_idle, "6": block_threads, "7": block_ktls}


# --- tools, build, machine -----------------------------------------------------------------------

def install_tools(children):
    """A fresh machine gets what is missing (Debian package names), through
    scripts/apt-install.sh, which never removes or downgrades an installed package."""
    need = [pkg for pkg, present in (
        ("haproxy", shutil.which("haproxy")),
        ("nginx", shutil.which("nginx")),
        ("libnginx-mod-stream", os.path.exists(NGINX_STREAM)),
        ("stunnel4", shutil.which("stunnel") or shutil.which("stunnel4")),
        ("openssl", shutil.which("openssl")),
        ("util-linux", shutil.which("taskset") and shutil.which("lscpu")),
        ("procps", shutil.which("free")),
    ) if not present]
    if need:
        log(f"installing {' '.join(need)}")
        if children.run(["bash", os.path.join(ROOT, "scripts", "apt-install.sh")] + need, timeout=1800,
                        stdout=None, stderr=None) != 0:
            raise Failed(f"could not install {' '.join(need)} (above)")
        # The packages start their system services; the benchmark runs its own instances.
        for svc in ("haproxy", "nginx", "stunnel4"):
            children.run(["systemctl", "disable", "--now", svc], timeout=60)


def has_crypto_floor():
    """Crypto floor (placeholder hook): if the crate has a `crypto_floor` bench that prints a JSON
    line with `-- --json`, its line goes into the results; otherwise they say "crypto floor: not
    measured"."""
    try:
        r = subprocess.run(["cargo", "metadata", "--no-deps", "--format-version", "1"], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=120)
        m = json.loads(r.stdout)
        return any(t["name"] == "crypto_floor" and "bench" in t["kind"] for p in m["packages"] for t in p["targets"])
    except (OSError, ValueError, KeyError, subprocess.TimeoutExpired):
        return False


def build(children, has_floor):
    log("cargo build --release")
    if children.run(["cargo", "build", "--release", "--quiet"], timeout=3600, cwd=ROOT, stdout=None,
                    stderr=None) != 0:
        raise Failed("cargo build --release failed (above)")
    # Compiled now, so that the compile does not run in the middle of the measurements.
    if has_floor and children.run(["cargo", "bench", "--quiet", "--bench", "crypto_floor", "--no-run"],
                                  timeout=3600, cwd=ROOT) != 0:
        log("crypto_floor bench does not build; it will be reported as failed")


def crypto_floor(b):
    log("crypto floor: cargo bench --bench crypto_floor -- --json (core 0)")
    err = b.path("crypto_floor.err")
    if b.children.run(["taskset", "-c", "0", "cargo", "bench", "--quiet", "--bench", "crypto_floor", "--", "--json"],
                      timeout=600, cwd=ROOT, stdout=b.path("crypto_floor.out"), stderr=err) != 0:
        log(f"crypto_floor bench failed: {tail(err, 3)}")


def git_rev():
    def git(*args):
        return subprocess.run(["git", "-C", ROOT] + list(args), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True, timeout=30)
    try:
        rev = git("rev-parse", "--short", "HEAD")
        if rev.returncode != 0:
            return "unknown"
        dirty = git("diff", "--quiet", "HEAD", "--", "src", "Cargo.toml").returncode != 0
        return rev.stdout.strip() + (" (+ uncommitted changes in src/)" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def machine_meta(b, elapsed):
    s = b.s
    lscpu = first_line(["lscpu"], r"Model name:")
    mem = first_line(["free", "-g"], r"Mem:").split()
    uname = os.uname()
    rustc = first_line(["rustc", "--version"])
    return [
        ("date", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())),
        ("quick", int(b.o.quick)),
        ("nproc", len(os.sched_getaffinity(0))),
        ("cpu_model", re.sub(r"^Model name:\s+", "", lscpu)),
        ("kernel", f"{uname.sysname} {uname.release} {uname.machine}"),
        ("memory", f"{mem[1]} GiB" if len(mem) > 1 else "unknown"),
        ("haproxy", first_line(["haproxy", "-v"])),
        ("nginx", first_line(["nginx", "-v"])),
        ("stunnel", first_line([b.stunnel or "stunnel", "-version"], r"stunnel")),
        ("openssl", first_line(["openssl", "version"])),
        ("ringtls", git_rev()),
        ("rustc", rustc if rustc.startswith("rustc") else "unknown"),
        ("duration", s.dur), ("warmup", s.warmup),
        ("handshake_concurrency", s.hs_conc), ("bulk_concurrency", s.bulk_conc), ("bulk_bytes", s.bulk_bytes),
        ("echo_concurrency", s.echo_conc), ("echo_size", s.echo_size), ("echo_rate", s.echo_rate),
        ("idle_wanted", s.idle_want), ("idle_n", b.idle_n), ("idle_batch", s.idle_batch),
        ("nofile", b.nofile), ("clk_tck", b.clk_tck), ("servers", b.o.servers_arg), ("ktls", b.ktls_state),
        ("elapsed_s", elapsed), ("load_failures", b.failures),
        ("command", "scripts/bench.sh" + (" --quick" if b.o.quick else "")),
    ]


def run(opts, children, state):
    """The whole run; state["work"] is the work dir once there is one (main keeps or removes it)."""
    install_tools(children)
    if len(os.sched_getaffinity(0)) < 2:
        raise Failed(f"needs at least 2 cores (server on core 0, load on core 1); nproc={len(os.sched_getaffinity(0))}")
    has_floor = has_crypto_floor()
    if opts.build:
        build(children, has_floor)
    work = state["work"] = tempfile.mkdtemp(prefix="ringtls-bench.", dir="/tmp")
    b = Bench(opts, children, work)
    if not os.access(b.ringtls, os.X_OK):
        raise Failed(f"{b.ringtls} not found (run cargo build --release)")
    b.raise_fd_limit()
    b.make_pki()
    b.start_upstreams()

    t_start = time.monotonic()
    log(f"work dir {work}; servers: {' '.join(opts.servers)}; {'QUICK' if opts.quick else 'full'} run, "
        f"{b.s.dur} per load run")
    for number, measure in MEASUREMENTS.items():
        if number in opts.only:
            measure(b)
    if has_floor:
        crypto_floor(b)

    with open(b.path("meta.txt"), "w") as f:
        f.writelines(f"{k}={v}\n" for k, v in machine_meta(b, int(time.monotonic() - t_start)))
    report.write_from_work(work, opts.out)
    log(f"done in {int(time.monotonic() - t_start)}s: {opts.out}/results.md, {opts.out}/chart.svg, {opts.out}/raw.json")
    if b.failures:
        log(f"{b.failures} load run(s) had problems; see the log lines marked !! above and raw.json")


# --- self-test -----------------------------------------------------------------------------------

def self_test():
    """The parsing, arithmetic and rendering helpers on canned inputs; no server is started."""
    cases = []

    def check(name, got, want):
        cases.append((name, got, want))

    def raises(fn, *args):
        try:
            fn(*args)
        except (Usage, ValueError) as e:
            return f"{type(e).__name__}: {e}"
        return "no error"

    # /proc
    stat = "4242 (ringtls (w) 1) S 1 4242 4242 0 -1 4194560 620 0 0 0 123 45 0 0 20 0 2 0 99 12345 678"
    check("stat: utime+stime past a ')' in the name", stat_ticks(stat), 168)
    status = "Name:\tringtls\nVmRSS:\t   10240 kB\nThreads:\t3\n"
    check("status: VmRSS", status_field(status, "VmRSS"), 10240)
    check("status: Threads", status_field(status, "Threads"), 3)
    check("status: field missing", raises(status_field, status, "VmHWM"), "ValueError: no VmHWM in /proc/PID/status")
    check("/proc/stat: busy, total, irq+softirq",
          machine_ticks_of("cpu  100 5 50 1000 20 3 7 1 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n"), (166, 1186, 10))
    tcp = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
           "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  0 0 1 1\n"
           "   1: 0100007F:1F91 0100007F:D431 01 00000000:00000000 00:00000000 00000000  0 0 2 1\n")
    check("/proc/net/tcp: listening port", listening_in_proc_net_tcp(tcp, 8080), True)
    check("/proc/net/tcp: established only", listening_in_proc_net_tcp(tcp, 8081), False)
    check("listening line", listening_port_of('{"listening":["127.0.0.1:40123"]}\n'), 40123)
    check("no listening line yet", listening_port_of(""), None)
    # sizes and the fd budget
    check("fd budget: room for all", fd_budget(1048576, 10000), (10000, 10100))
    check("fd budget: 1024 fds", fd_budget(1024, 1000), (400, 480))
    check("quick sizes", (sizes(True).dur, sizes(True).warmup, sizes(True).idle_want), ("1000ms", "300ms", 1000))
    check("full sizes", (sizes(False).dur, sizes(False).bulk_bytes), ("12000ms", "256MiB"))
    # options
    o = parse_args(["--quick", "--no-build", "--servers", "ringtls,haproxy", "--only", "1,5", "--out", "x"],
                   {"BENCH_KTLS_FORCE": "1"})
    check("options", (o.quick, o.build, o.servers, sorted(o.only), o.out, o.ktls_force),
          (True, False, ["ringtls", "haproxy"], ["1", "5"], os.path.abspath("x"), True))
    check("options: defaults", (parse_args([], {}).servers, sorted(parse_args([], {}).only), parse_args([], {}).build),
          (list(SERVERS), list(BLOCKS), True))
    check("options: unknown server", raises(parse_args, ["--servers", "ringtls,envoy"], {}),
          "Usage: --servers: unknown server envoy")
    check("options: unknown block", raises(parse_args, ["--only", "8"], {}), "Usage: --only: no block '8' (blocks are 1-7)")
    check("options: missing value", raises(parse_args, ["--out"], {}), "Usage: --out needs a directory")
    check("options: unknown option", raises(parse_args, ["--fast"], {}), "Usage: unknown option --fast")
    check("options: --help", parse_args(["--quick", "-h"], {}).help, True)
    check("a program that is not there", Children().run(["/nonexistent/ringtls-bench-selftest"], timeout=5), 127)
    check("usage text", (usage().startswith("  scripts/bench.sh "), "Method." in usage()), (True, False))
    # templates: every placeholder of the real ones is filled by the keys start_server passes
    values = {"haproxy.cfg.in": ("PORT", "UPSTREAM_PORT", "CRT_AND_KEY", "CA", "MAXCONN"),
              "nginx.conf.in": ("PORT", "UPSTREAM_PORT", "CRT", "KEY", "CA", "DIR", "NOFILE", "WORKER_CONNECTIONS",
                                "STREAM_MODULE"),
              "stunnel.conf.in": ("PORT", "UPSTREAM_PORT", "CRT", "KEY", "CA")}
    for name, keys in values.items():
        text = render(read(os.path.join(HERE, name)), {k: f"v{i}" for i, k in enumerate(keys)})
        check(f"render {name}: all placeholders filled", "127.0.0.1:v0" in text, True)
    check("render: value with | and &", render("a @X@ b\n", {"X": "p|q&r"}), "a p|q&r b\n")
    check("render: comment placeholders ignored", render("# @VAR@\n; @VAR@\nx=@X@\n", {"X": 1}), "# @VAR@\n; @VAR@\nx=1\n")
    check("render: unfilled", raises(render, "x=@X@\ny=@Y@\n", {"X": 1}), "ValueError: unfilled placeholder @Y@")
    # the load's output
    line = {"ok": 10, "failed": 2, "per_second": 5.0, "mib_per_s": 0.0, "latency_us": {"p50": 7, "p99": 9},
            "resumed_fraction": 0.0, "failures": {"timeout": 2}}
    check("load summary", load_summary("text\n" + json.dumps(line) + "\n"),
          "ok 10 failed 2 5.0/s 0.0 MiB/s p50 7us p99 9us resumed 0.0 failures {'timeout': 2}")
    check("load summary: no JSON", load_summary("load: error\n"), "no JSON from load (TypeError)")
    check("load summary: empty", load_summary(""), "no JSON from load (TypeError)")
    check("idle progress: last line wins",
          idle_progress("load: idle ok 100 failed 0\nwarning\nload: idle ok 480 failed 20 held\n"), (480, 20))
    check("idle progress: none yet", idle_progress("starting\n"), (0, 0))
    # ringtls' log
    log_text = ("2026-12-01T00:00:00Z INFO conn.closed peer=x path=ktls up=10 down=300 spliced=200\n"
                "2026-12-01T00:00:00Z INFO conn.closed peer=y path=user up=10 down=50\n"
                "2026-12-01T00:00:00Z INFO conn.opened peer=z path=ktls up=1 down=1 spliced=1\n"
                "2026-12-01T00:00:00Z INFO conn.closed peer=w reason=reset\n")
    check("ktls paths", ktls_paths(log_text), (1, 2, 200, 350))
    check("ktls probe: available", ktls_probe("x INFO ktls.available suites=AES128,AES256 y\n"),
          (True, "suites=AES128,AES256"))
    check("ktls probe: unavailable, escaped quotes",
          ktls_probe('x WARN ktls.unavailable reason=x detail="setsockopt \\"tls\\": ENOENT" y=1\n'),
          (False, 'setsockopt "tls": ENOENT'))
    check("ktls probe: nothing logged", ktls_probe("x INFO serve.ready\n"), (False, None))
    check("idle why", idle_why("ok\n2026 LOG5[0]: Connection rejected: too many clients (>=500)\n"),
          "2026 LOG5[0]: Connection rejected: too many clients (>=500)")
    check("idle why: nothing", idle_why("fine\n"), "")
    # report.py on a canned run: raw.json, results.md and chart.svg keep their structure
    with tempfile.TemporaryDirectory() as d:
        canned_run(d)
        report.write_from_work(os.path.join(d, "work"), os.path.join(d, "out"))
        raw = json.load(open(os.path.join(d, "out", "raw.json")))
        md = read(os.path.join(d, "out", "results.md"))
        svg = read(os.path.join(d, "out", "chart.svg"))
        check("raw.json: top-level keys", list(raw), ["meta", "crypto_floor", "runs"])
        check("raw.json: derived CPU per handshake", [r["derived"].get("server_cpu_us_per_op") for r in raw["runs"]],
              [200.0, 1000.0, None])
        check("raw.json: derived RSS per connection", raw["runs"][2]["derived"].get("rss_kib_per_conn"), 20.0)
        row = next((l for l in md.splitlines() if l.startswith("| ringtls | 200 |")), None)
        check("results.md: handshake row with ratio", row is not None and "0.20×" in row, True)
        check("results.md: idle row", "| ringtls | 500 of 500 | 10.0 | 19.8 | 20.0 | n/a | 1 |" in md, True)
        check("results.md: quick banner and note", ("QUICK smoke run" in md, "- ringtls idle: 3 of" in md), (True, True))
        check("chart.svg", (svg.startswith("<svg"), "0.20× (200 µs)" in svg), (True, True))
    # cleanup reaches a child's own children
    with tempfile.TemporaryDirectory() as d:
        pidfile = os.path.join(d, "pid")
        ch = Children()
        p = ch.spawn(["sh", "-c", 'sleep 30 & echo $! > "$0"; wait', pidfile])
        grandchild = None
        for _ in range(100):
            try:
                grandchild = int(read(pidfile))
                break
            except (OSError, ValueError):
                time.sleep(0.02)
        ch.cleanup()
        # A signal is delivered when its target next runs: on a busy machine, a moment later.
        for _ in range(100):
            if grandchild is None or stopped(grandchild):
                break
            time.sleep(0.02)
        check("cleanup: child stopped", p.poll() is not None, True)
        check("cleanup: its child stopped", grandchild is not None and stopped(grandchild), True)

    bad = [(n, g, w) for n, g, w in cases if g != w]
    for n, g, w in bad:
        print(f"self-test FAILED: {n}: got {g!r}, want {w!r}", file=sys.stderr)
    print(f"self-test: {len(cases) - len(bad)}/{len(cases)} ok")
    return 1 if bad else 0


def stopped(pid):
    """Gone, or a zombie that init has yet to reap: a killed grandchild is stopped all the same."""
    try:
        return read(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def canned_run(d):
    """A work dir as a quick run leaves it: two handshake runs and one idle run."""
    work = os.path.join(d, "work")
    os.makedirs(os.path.join(work, "records"))
    with open(os.path.join(work, "meta.txt"), "w") as f:
        f.write("quick=1\nnproc=2\nduration=1000ms\nwarmup=300ms\nidle_n=500\nidle_wanted=500\n"
                "servers=ringtls,haproxy\ncommand=scripts/bench.sh --quick\n")
    with open(os.path.join(work, "notes.txt"), "w") as f:
        f.write("ringtls idle: 3 of 500 connections were not established\n")
    common = {"cert": "ecdsa", "server_threads": 1, "clk_tck": 100, "load_rc": 0, "load_cpu_ms": 500,
              "upstream_cpu_ticks": 10, "machine_busy_ticks": 150, "machine_total_ticks": 200,
              "machine_irq_ticks": 5, "wall_s": 1.0, "server_alive_after": True}
    for seq, server, ticks in ((1, "ringtls", 20), (2, "haproxy", 100)):
        base = os.path.join(work, "records", f"{seq:03d}")
        write_json(base + ".meta.json", dict(common, seq=seq, server=server, measure="handshake",
                                             cpu_ticks_before=0, cpu_ticks_after=ticks))
        with open(base + ".load.json", "w") as f:
            f.write(json.dumps({"ok": 1000, "failed": 0, "per_second": 1000.0, "mib_per_s": 0.0, "bytes": 0,
                                "latency_us": {"p50": 100, "p99": 200}, "resumed_fraction": 0.0,
                                "failures": {}}) + "\n")
    write_json(os.path.join(work, "records", "003.meta.json"), {
        "seq": 3, "server": "ringtls", "measure": "idle", "cert": "ecdsa", "idle_target": 500, "idle_ok": 500,
        "idle_failed": 0, "rss_kb_before": 10240, "rss_kb_after": 20240, "threads_after": 1, "wait_s": 1.5,
        "server_alive_after": True})


# --- main ----------------------------------------------------------------------------------------

def main(argv):
    try:
        opts = parse_args(argv, os.environ)
    except Usage as e:
        print(f"bench: {e}", file=sys.stderr)
        print(usage(), end="", file=sys.stderr)
        return 64
    if opts.help:
        print(usage(), end="")
        return 0
    if opts.self_test:
        return self_test()

    children = Children()
    atexit.register(children.cleanup)

    def stop(signum, _frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    rc, state = 1, {}
    try:
        run(opts, children, state)
        rc = 0
    except Failed as e:
        print(f"\nbench: FAILED: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        rc = 130
        log("interrupted (SIGINT): stopping the children")
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 1
        log(f"stopped (exit {rc}): stopping the children")
    finally:
        # A second Ctrl-C must not cut the cleanup short; the cleanup itself is bounded.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        children.cleanup()
        work = state.get("work")
        if work and (rc != 0 or opts.keep):
            log(f"work dir kept: {work}")
        elif work:
            shutil.rmtree(work, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
