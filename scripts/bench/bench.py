#!/usr/bin/env python3
"""scripts/bench/bench.py: ringtls side by side with HAProxy, nginx (stream module) and stunnel,
each doing mutual TLS (client certificate required, verified against the same ca.pem) in front of
the same plaintext `ringtls upstream`, with the same certificates, in one run.

  scripts/bench.sh            full run (about 12 minutes), results in benches/results/
  scripts/bench.sh --quick    smoke run (about 1-2 minutes), same files, marked quick
  scripts/bench/bench.py --self-test   checks this script's helpers on canned inputs (no servers)

Options: --quick, --no-build (use target/release/ringtls as it is, compile nothing: no crypto
floor then), --out DIR (default
benches/results), --servers ringtls,haproxy,nginx,stunnel (a subset, for debugging; ratios need
haproxy), --only 1,5 (run only these measurement blocks, for debugging: 1 handshakes (full and
resumed) and echo latency (three fixed-rate runs per server), 2 RSA handshakes, 3 bulk up and 4
bulk down (each with four connections and with one), 5 idle memory, 6 ringtls threads, 7 ringtls
kernel TLS vs user space, 8 TLS passthrough edges: ringtls vs HAProxy mode tcp, with and without
splice), --keep (keep the temp dir with configs and logs), --self-test.

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
that is steadier than a rate. The same reads keep utime and stime apart (fields 14 and 15), so that
results.md shows user and kernel time per handshake and per GiB, and ringtls' user time against the
crypto floor (below). Every load run pins TLS 1.3 and X25519, so that no server pays for a
different key exchange (rustls would otherwise pick X25519MLKEM768 where OpenSSL 3.0 cannot).
Every server writes one log line per connection to a file, as ringtls does. Measurements run
interleaved (one block for all servers, then the next block) so that noise from other work on the
machine spreads over all servers alike.

Block 1 runs, per server: the check that a client without a certificate gets nothing through, a
warm-up, full handshakes, resumed handshakes, the fixed-rate echo (run 1) and the unpaced one-
connection echo. The fixed-rate echo then runs twice more per server, interleaved (every server's
run 2, then every server's run 3), each on a fresh server after a warm-up; results.md shows the
medians of the three p50s and p99s and the p99s' spread. Blocks 3 and 4 run, per server, the
four-connection bulk load and then the one-connection one (`--concurrency 1 --bytes 1GiB`, 64MiB
with --quick) on the same server. The load reconnects after each --bytes until --duration is up,
so CPU per GiB is over the bytes the load counted, whichever ended the run.

The crypto floor (`cargo bench --bench crypto_floor -- --json`, skipped with --no-build) is what a
handshake's crypto costs alone; results.md holds ringtls' user time per full ECDSA handshake against
its mtls_handshake_floor_cached_us (target <= 1.3x) and full_mtls_handshake_floor_us, and its user
time per resumed handshake (estimated as for all CPU: the run less its full handshakes at table 1's
cost) against resumed_handshake_floor_us (target <= 1.5x); "floor not measured" without a floor.

Block 8 measures passthrough edges, not terminators: the server on core 0 routes each connection
by the SNI of its ClientHello and relays the TLS bytes untouched, both ways, to one ringtls
terminator (mutual TLS, certificate for app.test, --threads 1, --ktls off) that runs on core 1
with the load and the upstreams; the load asks for app.test. The edges: ringtls `serve --config`
with one `mode = "passthrough"` endpoint (ringtls-passthrough.toml.in), and HAProxy `mode tcp`
routing on `req.ssl_sni` (haproxy-passthrough.cfg.in) three times: without splice, with `option
splice-auto`, and with `option splice-request` + `option splice-response` (splice from the start,
as ringtls does; splice-auto may never decide to). The loads are those of blocks 3 and 4; the
edge's CPU per GiB is read as for every other server, the terminator's CPU counts with the
load's. ringtls' close events must show path=passthrough and spliced= the bytes moved; HAProxy's
stats socket is asked halfway through each run how many pipes it holds (in use or pooled).

Layout (scripts/bench/): this file drives the run, one function per measurement block, and writes
raw records into a temp dir (meta.txt, notes.txt, records/NNN.meta.json, NNN.load.json);
children.py starts and stops the processes (each in a process group of its own, all stopped with
their children on any exit: error, Ctrl-C, TERM); readings.py parses what the run reads (/proc,
the load's output, ringtls' log) and fills the config templates, *.in (@VAR@ placeholders);
report.py turns the records into raw.json, results.md and chart.svg; self_test.py is --self-test.
scripts/bench.sh is a wrapper that execs this file. Every wait is bounded. Python 3.11 standard
library only.
"""

import atexit
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import report  # noqa: E402  (scripts/bench/report.py, beside this file)
from children import Children, ChildError, alive, signal_group, stop_group  # noqa: E402
from readings import (  # noqa: E402
    children_cpu_ms, cpu_ticks, cpu_times, fd_count, first_line, free_port, idle_progress, idle_why,
    haproxy_info, ktls_paths, ktls_probe, last_json, listening_in_proc_net_tcp, listening_port_of,
    load_summary, machine_ticks, passthrough_totals, read, render, rss_kb, tail, thread_count)

SERVERS = ("ringtls", "haproxy", "nginx", "stunnel")
BLOCKS = ("1", "2", "3", "4", "5", "6", "7", "8")
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
        raise Usage(f"--only: no block {unknown[0]!r} (blocks are 1-{BLOCKS[-1]})")
    o.ktls_force = env.get("BENCH_KTLS_FORCE", "0") == "1"
    return o


@dataclass(frozen=True)
class Sizes:
    dur_ms: int
    warmup_ms: int
    bulk_bytes: str
    bulk1_bytes: str  # per connection of the one-connection bulk runs (bulk-up-1, bulk-down-1)
    idle_want: int
    idle_batch: int  # idle connections opened at once
    idle_bound: int  # seconds to wait for all idle connections
    hs_conc: int = 16
    bulk_conc: int = 4
    echo_conc: int = 16
    echo_size: int = 64
    echo_rate: int = 5000
    echo_runs: int = 3  # fixed-rate echo runs per server, interleaved across servers

    @property
    def dur(self):
        return f"{self.dur_ms}ms"

    @property
    def warmup(self):
        return f"{self.warmup_ms}ms"


def sizes(quick):
    if quick:
        return Sizes(dur_ms=1000, warmup_ms=300, bulk_bytes="64MiB", bulk1_bytes="64MiB", idle_want=1000,
                     idle_batch=500, idle_bound=40)
    return Sizes(dur_ms=12000, warmup_ms=1000, bulk_bytes="256MiB", bulk1_bytes="1GiB", idle_want=10000,
                 idle_batch=1000, idle_bound=180)


def fd_budget(nofile, idle_want):
    """(idle connections to hold, maxconn) for an fd limit: the server holds 2 fds per idle
    connection (client + upstream); HAProxy refuses to start when 2 * maxconn plus its own fds
    exceed the limit."""
    idle_n = min(idle_want, (nofile - 100) // 2 // 100 * 100)
    maxconn = min(idle_n + 100, (nofile - 64) // 2)
    return idle_n, maxconn


# --- children: process groups, stopped on every exit ---------------------------------------------

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
    server_name: str = "localhost"  # what the load sends as SNI and checks the certificate for
    # Processes besides the load and the upstream that each load run keeps busy on core 1 (the
    # terminator behind a passthrough edge): their CPU is read around the run as the upstream's.
    helpers: tuple = ()
    stats_socket: str = ""  # HAProxy's, asked for `show info` halfway through each load run

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
        # ECDSA P-256 with SAN app.test, same root: the terminator behind block 8's edges, whose
        # clients ask for app.test so that the edges have a name to route on.
        script = 'die() { echo "$*" >&2; exit 1; }; . "$1"; ecdsa_server_cert "$2" 30 server-app app.test'
        rc = self.children.run(["bash", "-c", script, "bench", os.path.join(ROOT, "scripts/lib/pki.sh"),
                                self.pki], timeout=120, stderr=self.path("logs", "pki-app.err"))
        if rc != 0:
            raise Failed(f"the app.test server certificate: {tail(self.path('logs', 'pki-app.err'), 3)}")
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
                cmd = self.haproxy_cmd(conf, d)
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

    def haproxy_cmd(self, conf, d):
        """The command that runs HAProxy on conf, once `haproxy -c` accepts it."""
        check = os.path.join(d, "check.log")
        if self.children.run(["haproxy", "-c", "-q", "-f", conf], timeout=30, stdout=check,
                             stderr=subprocess.STDOUT) != 0:
            raise Failed(f"haproxy rejects its config {conf}: {tail(check, 20)}")
        return ["haproxy", "-db", "-f", conf]

    def start_terminator(self, upmode):
        """Block 8: the ringtls that does the mutual TLS behind the passthrough edges, on core 1
        with the load and the upstreams. `--ktls off`: what the edge relays (the terminator's
        record and write sizes) is then the same on every kernel."""
        up = self.upstreams[upmode][1]
        self.instance += 1
        tag = f"{self.instance}-terminator-{upmode}"
        d = self.path("conf", tag)
        os.makedirs(d)
        crt, key, ca = (os.path.join(self.pki, f) for f in ("server-app.pem", "server-app.key", "ca.pem"))
        srv_log = self.path("logs", f"{tag}.log")
        p = self.children.spawn(["taskset", "-c", "1", self.ringtls, "serve", "--listen", "127.0.0.1:0",
                                 "--upstream", f"127.0.0.1:{up}", "--crt", crt, "--key", key,
                                 "--mutual-tls-cas", ca, "--threads", 1, "--ktls", "off"],
                                stdout=os.path.join(d, "stdout"), stderr=srv_log)
        port = self.wait_port_line(p, os.path.join(d, "stdout"))
        if port is None:
            raise Failed(f"the terminator (ringtls, upstream {upmode}) did not print its listening line; "
                         f"log: {srv_log}: {tail(srv_log, 5)}")
        log(f"terminator up: pid {p.pid} port {port} (ringtls, cert app.test, upstream {upmode}, core 1)")
        return Server("terminator", "ecdsa", upmode, 1, p, port, srv_log, f"terminator, upstream {upmode}",
                      server_name="app.test")

    def start_edge(self, kind, terminator):
        """Block 8: a passthrough edge on core 0 in front of the terminator; kind is one of
        EDGES."""
        self.instance += 1
        tag = f"{self.instance}-edge-{kind}-{terminator.upmode}"
        d = self.path("conf", tag)
        os.makedirs(d)
        srv_log = self.path("logs", f"{tag}.log")
        if kind == "ringtls":
            conf = os.path.join(d, "edge.toml")
            self.render_conf("ringtls-passthrough.toml.in", conf, PORT=0, UPSTREAM_PORT=terminator.port)
            p = self.children.spawn(["taskset", "-c", "0", self.ringtls, "serve", "--config", conf,
                                     "--threads", 1], stdout=os.path.join(d, "stdout"), stderr=srv_log)
            port = self.wait_port_line(p, os.path.join(d, "stdout"))
            if port is None:
                raise Failed(f"ringtls (passthrough edge) did not print its listening line; config {conf}; "
                             f"log: {srv_log}: {tail(srv_log, 5)}")
        else:
            port = free_port()
            conf = os.path.join(d, "haproxy.cfg")
            stats = os.path.join(d, "stats.sock")
            self.render_conf("haproxy-passthrough.cfg.in", conf, PORT=port, UPSTREAM_PORT=terminator.port,
                             MAXCONN=EDGE_MAXCONN, SPLICE=HAPROXY_SPLICE[kind], STATS_SOCKET=stats)
            p = self.children.spawn(["taskset", "-c", "0"] + self.haproxy_cmd(conf, d), stdout=srv_log,
                                    stderr=subprocess.STDOUT)
            if not self.wait_listening(p, port):
                raise Failed(f"haproxy (passthrough edge, {kind}) did not come up on 127.0.0.1:{port}; config "
                             f"{conf}; log {srv_log}: {tail(srv_log, 5)}")
        log(f"{kind} edge started: pid {p.pid} port {port} (passthrough to the terminator on port {terminator.port}, "
            f"upstream {terminator.upmode}, pinned 1)")
        return Server(kind, "ecdsa", terminator.upmode, 1, p, port, srv_log,
                      f"passthrough edge ({kind}), terminator and upstream {terminator.upmode}",
                      server_name="app.test", helpers=(terminator.proc,),
                      stats_socket=stats if kind != "ringtls" else "")

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
               os.path.join(self.pki, "ca.pem"), "--server-name", srv.server_name, "--tls", "1.3", "--group", "X25519",
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
            # One read gives both the sum and the user/kernel split, so that they always agree.
            times0 = cpu_times(srv.pid) if alive(srv.proc) else None
        except OSError:
            times0 = None
        if times0 is None:
            raise Failed(f"{srv.name} (pid {srv.pid}) is gone before '{measure}'; log {srv.log}")
        helpers0 = [self.helper_ticks(srv, h) for h in srv.helpers]
        up0, m0, load0 = self.upstream_ticks(up_pid), machine_ticks(), children_cpu_ms()
        t0 = time.monotonic()
        mid = {}
        if srv.stats_socket:
            # Halfway through: HAProxy counts the pipes in use only while bytes sit in them.
            probe = threading.Timer(self.s.dur_ms / 2000, lambda: mid.update(haproxy_info(srv.stats_socket)))
            probe.start()
        rc = self.children.run(cmd, timeout=self.s.dur_ms // 1000 + 90, stdout=base + ".load.json",
                               stderr=base + ".load.err")
        if srv.stats_socket:
            probe.cancel()
            probe.join(timeout=5)
        load1 = children_cpu_ms()
        time.sleep(0.3)  # the server finishes closing the last connections
        t1 = time.monotonic()
        is_alive = alive(srv.proc)
        try:
            times1 = cpu_times(srv.pid) if is_alive else None
        except OSError:
            times1, is_alive = None, False
        before, after = sum(times0), (sum(times1) if times1 else None)
        up1, m1 = self.upstream_ticks(up_pid), machine_ticks()
        helpers1 = [self.helper_ticks(srv, h) for h in srv.helpers]
        meta = {
            "seq": self.seq, "server": srv.name, "measure": measure, "cert": cert,
            "server_threads": srv.threads, "load_args": " ".join(cmd[4:]), "load_rc": rc,
            "cpu_ticks_before": before, "cpu_ticks_after": after,
            "cpu_utime_before": times0[0], "cpu_stime_before": times0[1],
            "cpu_utime_after": times1[0] if times1 else None, "cpu_stime_after": times1[1] if times1 else None,
            "clk_tck": self.clk_tck,
            "load_cpu_ms": load1 - load0, "upstream_cpu_ticks": up1 - up0,
            "machine_busy_ticks": m1[0] - m0[0], "machine_total_ticks": m1[1] - m0[1],
            "machine_irq_ticks": m1[2] - m0[2], "wall_s": round(t1 - t0, 3),
            "server_alive_after": is_alive, "server_log": os.path.basename(srv.log),
        }
        if srv.helpers:
            meta["terminator_cpu_ticks"] = sum(helpers1) - sum(helpers0)
            meta["server_name"] = srv.server_name
        if srv.stats_socket:
            meta["haproxy_mid_run"] = {k: mid.get(k) for k in ("Maxpipes", "PipesUsed", "PipesFree", "CurrConns")}
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

    def helper_ticks(self, srv, p):
        try:
            return cpu_ticks(p.pid)
        except OSError as e:
            raise Failed(f"the process behind {srv.name} (pid {p.pid}) is gone: {e}") from e

    def handshakes(self, srv, measure, cert, dur=None, resume=False):
        args = ["--mode", "handshake", "--concurrency", self.s.hs_conc, "--duration", dur or self.s.dur]
        return self.run_load(srv, measure, cert, args + (["--resume"] if resume else []))

    def warmup(self, srv, cert):
        self.handshakes(srv, "warmup", cert, dur=self.s.warmup)

    def bulk(self, srv, measure, direction, concurrency=None, size=None):
        """A bulk run; by default the four-connection load of blocks 3, 4, 7 and 8. Each connection
        moves `--bytes` and the load reconnects until `--duration` is up (a connection cut short
        by the deadline counts what it moved): CPU per GiB is over the bytes the load counted."""
        return self.run_load(srv, measure, "ecdsa", ["--mode", f"bulk-{direction}", "--concurrency",
                                                     concurrency or self.s.bulk_conc, "--bytes",
                                                     size or self.s.bulk_bytes, "--duration", self.s.dur])

    def echo(self, srv, measure):
        s = self.s
        return self.run_load(srv, measure, "ecdsa", ["--mode", "echo", "--concurrency", s.echo_conc, "--size",
                                                     s.echo_size, "--rate", s.echo_rate, "--duration", s.dur])

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

def echo_measure(n):
    """The measure name of fixed-rate echo run n (1-based): `echo` for the first, as before there
    were three, then `echo-2`, `echo-3`."""
    return "echo" if n == 1 else f"echo-{n}"


def block_handshakes(b):
    log("block 1/8: full and resumed handshakes, echo latency (ECDSA, echo upstream)")
    s = b.s
    for name in b.o.servers:
        srv = b.start_server(name, "ecdsa", "echo")
        b.check_mtls(srv)
        b.warmup(srv, "ecdsa")
        b.handshakes(srv, "handshake", "ecdsa")
        b.handshakes(srv, "resume", "ecdsa", resume=True)
        b.echo(srv, echo_measure(1))
        # Closed loop, one connection: the round trip itself, without the load's pacing timer.
        b.run_load(srv, "echo-unpaced", "ecdsa", ["--mode", "echo", "--concurrency", 1, "--size", s.echo_size,
                                                  "--duration", s.dur])
        b.stop_server(srv)
    # The fixed-rate echo again, every server once per round (A2 B2 ... A3 B3 ...): a p99 is one
    # run's worst 1%, and a burst of other work on the machine lands in one server's run only.
    # Each on a fresh server after a warm-up, as the servers of block 1 are started one at a time.
    for n in range(2, s.echo_runs + 1):
        for name in b.o.servers:
            srv = b.start_server(name, "ecdsa", "echo")
            b.warmup(srv, "ecdsa")
            b.echo(srv, echo_measure(n))
            b.stop_server(srv)


def block_rsa(b):
    log("block 2/8: full handshakes with the RSA-2048 server certificate")
    for name in b.o.servers:
        srv = b.start_server(name, "rsa", "echo")
        b.warmup(srv, "rsa")
        b.handshakes(srv, "handshake-rsa", "rsa")
        b.stop_server(srv)


def block_bulk_up(b):
    log("block 3/8: bulk up (to a sink upstream), four connections and one")
    for name in b.o.servers:
        srv = b.start_server(name, "ecdsa", "sink")
        b.bulk(srv, "bulk-up", "up")
        b.bulk(srv, "bulk-up-1", "up", concurrency=1, size=b.s.bulk1_bytes)
        b.stop_server(srv)


def block_bulk_down(b):
    log("block 4/8: bulk down (from a source upstream), four connections and one")
    for name in b.o.servers:
        srv = b.start_server(name, "ecdsa", "source")
        b.bulk(srv, "bulk-down", "down")
        b.bulk(srv, "bulk-down-1", "down", concurrency=1, size=b.s.bulk1_bytes)
        b.stop_server(srv)


def block_idle(b):
    log(f"block 5/8: RSS per idle connection ({b.idle_n} connections)")
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
    log("block 6/8: ringtls --threads 1 vs --threads 2 (not pinned by taskset; load on core 1)")
    for t in (1, 2):
        srv = b.start_server("ringtls", "ecdsa", "echo", threads=t, pin=False)
        b.warmup(srv, "ecdsa")
        b.handshakes(srv, f"threads-{t}", "ecdsa")
        b.stop_server(srv)


def block_ktls(b):
    if "ringtls" not in b.o.servers:
        log("block 7/8 skipped: ringtls is not in --servers")
        return
    log("block 7/8: ringtls kernel TLS vs user space, bulk up and bulk down")
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


EDGES = ("ringtls", "haproxy", "haproxy-splice", "haproxy-splice-forced")
# What each HAProxy edge has for @SPLICE@. splice-auto splices a direction only once HAProxy calls it
# a fast streamer (three reads in a row that fill its 16 KiB buffer); splice-request and
# splice-response splice from the start, which is what ringtls does.
HAPROXY_SPLICE = {
    "haproxy": "# no splice option in this run",
    "haproxy-splice": "option splice-auto",
    "haproxy-splice-forced": "option splice-request\n    option splice-response",
}
# HAProxy's maxconn as an edge: the loads hold a few connections at once, and with splicing on
# HAProxy reserves maxconn / 4 pipes (2 fds each) on top of 2 fds per connection, which at the
# idle block's maxconn (10,100) asks for more fds than a 20,000 limit allows: it refuses to start.
EDGE_MAXCONN = 1000
SPLICED_ENOUGH = 0.99  # of the bytes a ringtls edge moved; below this, results.md says so


def block_passthrough(b):
    edges = [e for e in EDGES if e.split("-")[0] in b.o.servers]
    if not edges:
        log("block 8/8 skipped: neither ringtls nor haproxy is in --servers")
        return
    log("block 8/8: TLS passthrough edges (SNI routing, bytes untouched) in front of one ringtls terminator")
    vv = subprocess.run(["haproxy", "-vv"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                        errors="replace", timeout=20).stdout if "haproxy" in b.o.servers else ""
    if "haproxy" in b.o.servers and "+LINUX_SPLICE" not in vv:
        b.note("passthrough (block 8): this HAProxy is built without LINUX_SPLICE (`haproxy -vv`), so its "
               "`option splice-auto` rows cannot splice")
    # The loads of blocks 3 and 4; per direction one terminator, then every edge in turn in front of it.
    for direction, upmode in (("up", "sink"), ("down", "source")):
        term = b.start_terminator(upmode)
        for kind in edges:
            srv = b.start_edge(kind, term)
            meta_path = b.bulk(srv, f"passthrough-{direction}", direction)
            b.stop_server(srv)
            if meta_path is None:
                continue
            with open(meta_path) as f:
                meta = json.load(f)
            meta.update(edge=kind)
            if kind == "ringtls":
                # From the close events once the edge is gone, so that every close is in them: the
                # connections are shown to have been passed through and spliced, not assumed.
                t = passthrough_totals(read(srv.log))
                meta.update(passthrough_conns=t["passthrough"], other_conns=t["other"], logged_up_bytes=t["up"],
                            logged_down_bytes=t["down"], spliced_bytes=t["spliced"])
                moved = t["up"] + t["down"]
                frac = t["spliced"] / moved if moved else 0.0
                log(f"  ringtls edge passthrough-{direction}: {t['passthrough']} of {t['passthrough'] + t['other']} "
                    f"connections took path=passthrough; {t['spliced']} of {moved} bytes spliced ({frac:.2%})")
                if t["other"] or not t["passthrough"]:
                    b.note(f"passthrough (block 8), {direction}: {t['other']} of {t['passthrough'] + t['other']} "
                           f"connections of the ringtls edge did not take path=passthrough")
                if frac < SPLICED_ENOUGH:
                    b.note(f"passthrough (block 8), {direction}: the ringtls edge spliced {frac:.1%} of the "
                           f"bytes it moved ({t['spliced']} of {moved}), not nearly all")
            else:
                m = meta.get("haproxy_mid_run") or {}
                log(f"  {kind} edge passthrough-{direction}, halfway: pipes in use {m.get('PipesUsed')}, "
                    f"pooled {m.get('PipesFree')}, max {m.get('Maxpipes')}, connections {m.get('CurrConns')}")
            write_json(meta_path, meta)
        b.stop_server(term)


MEASUREMENTS = {"1": block_handshakes, "2": block_rsa, "3": block_bulk_up, "4": block_bulk_down,
                "5": block_idle, "6": block_threads, "7": block_ktls, "8": block_passthrough}


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
        ("bulk1_bytes", s.bulk1_bytes),
        ("echo_concurrency", s.echo_conc), ("echo_size", s.echo_size), ("echo_rate", s.echo_rate),
        ("echo_runs", s.echo_runs),
        ("idle_wanted", s.idle_want), ("idle_n", b.idle_n), ("idle_batch", s.idle_batch),
        ("nofile", b.nofile), ("clk_tck", b.clk_tck), ("servers", b.o.servers_arg), ("ktls", b.ktls_state),
        ("elapsed_s", elapsed), ("load_failures", b.failures),
        ("command", command_line(b.o)),
    ]


def command_line(o):
    """The options that change what a run measures, as they would be typed again: a partial run
    (`--only`, `--servers`) must not read as a full one in results.md."""
    cmd = "scripts/bench.sh" + (" --quick" if o.quick else "")
    if o.only != set(BLOCKS):
        cmd += " --only " + ",".join(sorted(o.only, key=int))
    if o.servers != list(SERVERS):
        cmd += " --servers " + o.servers_arg
    return cmd


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
    if has_floor and opts.build:
        crypto_floor(b)
    elif has_floor:
        # `cargo bench` would compile whatever the tree holds now, which --no-build promises
        # not to do (and a half-edited tree would not even build).
        b.note("crypto floor not measured: --no-build compiles nothing, and `cargo bench` would")

    with open(b.path("meta.txt"), "w") as f:
        f.writelines(f"{k}={v}\n" for k, v in machine_meta(b, int(time.monotonic() - t_start)))
    report.write_from_work(work, opts.out)
    log(f"done in {int(time.monotonic() - t_start)}s: {opts.out}/results.md, {opts.out}/chart.svg, {opts.out}/raw.json")
    if b.failures:
        log(f"{b.failures} load run(s) had problems; see the log lines marked !! above and raw.json")


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
        import self_test
        return self_test.run()

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
    except (Failed, ChildError) as e:
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
