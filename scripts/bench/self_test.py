"""scripts/bench/self_test.py: `bench.py --self-test`. The parsing, arithmetic and rendering
helpers on canned inputs, report.py on canned runs, the order in which blocks 1, 3 and 4 ask for
their runs (on a stand-in Bench), and the cleanup of a child's children; no server is started, and
it takes about a second.
"""

import json
import os
import sys
import tempfile
import time
from types import SimpleNamespace

import bench
import report
from bench import BLOCKS, SERVERS, Usage, fd_budget, parse_args, sizes, usage, write_json
from children import Children
from readings import (idle_progress, idle_why, ktls_paths, ktls_probe, listening_in_proc_net_tcp,
                      listening_port_of, load_summary, machine_ticks_of, info_fields, passthrough_totals, read, render,
                      stat_ticks, stat_times, status_field)

HERE = bench.HERE
META_KEYS = ["date", "quick", "nproc", "cpu_model", "kernel", "memory", "haproxy", "nginx", "stunnel", "openssl",
             "ringtls", "rustc", "duration", "warmup", "handshake_concurrency", "bulk_concurrency", "bulk_bytes",
             "bulk1_bytes", "echo_concurrency", "echo_size", "echo_rate", "echo_runs", "idle_wanted", "idle_n", "idle_batch", "nofile", "clk_tck",
             "servers", "ktls", "elapsed_s", "load_failures", "command"]


def run():
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
    check("stat: utime and stime apart (fields 14 and 15)", stat_times(stat), (123, 45))
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
    check("one-connection bulk sizes", (sizes(True).bulk1_bytes, sizes(False).bulk1_bytes), ("64MiB", "1GiB"))
    # options
    o = parse_args(["--quick", "--no-build", "--servers", "ringtls,haproxy", "--only", "1,5", "--out", "x"],
                   {"BENCH_KTLS_FORCE": "1"})
    check("options", (o.quick, o.build, o.servers, sorted(o.only), o.out, o.ktls_force),
          (True, False, ["ringtls", "haproxy"], ["1", "5"], os.path.abspath("x"), True))
    check("options: defaults", (parse_args([], {}).servers, sorted(parse_args([], {}).only), parse_args([], {}).build),
          (list(SERVERS), list(BLOCKS), True))
    check("options: unknown server", raises(parse_args, ["--servers", "ringtls,envoy"], {}),
          "Usage: --servers: unknown server envoy")
    check("options: unknown block", raises(parse_args, ["--only", "9"], {}), "Usage: --only: no block '9' (blocks are 1-8)")
    check("options: block 8", sorted(parse_args(["--only", "8"], {}).only), ["8"])
    check("options: missing value", raises(parse_args, ["--out"], {}), "Usage: --out needs a directory")
    check("options: unknown option", raises(parse_args, ["--fast"], {}), "Usage: unknown option --fast")
    check("options: --help", parse_args(["--quick", "-h"], {}).help, True)
    check("a program that is not there", Children().run(["/nonexistent/ringtls-bench-selftest"], timeout=5), 127)
    # meta.txt: the keys and their order, as report.py and earlier runs' raw.json have them
    fake = SimpleNamespace(s=sizes(True), o=parse_args(["--quick"], {}), idle_n=1000, nofile=20000, clk_tck=100,
                           failures=0, ktls_state="not probed", stunnel=None)
    meta = bench.machine_meta(fake, 1)
    check("meta.txt keys", [k for k, _ in meta], META_KEYS)
    check("meta.txt command", dict(meta)["command"], "scripts/bench.sh --quick")
    check("meta.txt command, partial run",
          bench.command_line(parse_args(["--only", "8,3", "--servers", "ringtls,haproxy", "--no-build"], {})),
          "scripts/bench.sh --only 3,8 --servers ringtls,haproxy")
    check("usage text", (usage().startswith("  scripts/bench.sh "), "Method." in usage()), (True, False))
    # templates: every placeholder of the real ones is filled by the keys start_server passes
    values = {"haproxy.cfg.in": ("PORT", "UPSTREAM_PORT", "CRT_AND_KEY", "CA", "MAXCONN"),
              "nginx.conf.in": ("PORT", "UPSTREAM_PORT", "CRT", "KEY", "CA", "DIR", "NOFILE", "WORKER_CONNECTIONS",
                                "STREAM_MODULE"),
              "stunnel.conf.in": ("PORT", "UPSTREAM_PORT", "CRT", "KEY", "CA"),
              "haproxy-passthrough.cfg.in": ("PORT", "UPSTREAM_PORT", "MAXCONN", "SPLICE", "STATS_SOCKET"),
              "ringtls-passthrough.toml.in": ("PORT", "UPSTREAM_PORT")}
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
    edge_log = ('2026-12-01T00:00:00Z INFO conn.closed peer=x endpoint=app sni="app.test" path=passthrough '
                'up=1000 down=5000 spliced=5800 reason=eof\n'
                '2026-12-01T00:00:00Z INFO conn.closed peer=y endpoint=app sni="other" reason=no_route up=300 down=0\n'
                '2026-12-01T00:00:00Z INFO serve.ready path=passthrough up=7\n')
    check("passthrough totals", passthrough_totals(edge_log),
          {"passthrough": 1, "other": 1, "up": 1300, "down": 5000, "spliced": 5800})
    check("show info", info_fields("Name: HAProxy\nMaxpipes: 275\nPipesUsed: 4\nPipesFree: 0\nUptime: 0d 0h00m03s\n"),
          {"Maxpipes": 275, "PipesUsed": 4, "PipesFree": 0})
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
        check("raw.json: top-level keys", list(raw), ["meta", "crypto_floor", "runs", "passthrough", "targets"])
        check("raw.json: derived CPU per handshake", [r["derived"].get("server_cpu_us_per_op") for r in raw["runs"]],
              [200.0, 1000.0, None])
        check("raw.json: derived RSS per connection", raw["runs"][2]["derived"].get("rss_kib_per_conn"), 20.0)
        row = next((l for l in md.splitlines() if l.startswith("| ringtls | 200 |")), None)
        check("results.md: handshake row with ratio", row is not None and "0.20×" in row, True)
        check("results.md: idle row", "| ringtls | 500 of 500 | 10.0 | 19.8 | 20.0 | n/a | 1 |" in md, True)
        check("results.md: quick banner and note", ("QUICK smoke run" in md, "- ringtls idle: 3 of" in md), (True, True))
        check("chart.svg", (svg.startswith("<svg"), "0.20× (200 µs)" in svg), (True, True))
        # Records from before the user/kernel split, and no crypto floor: n/a and "floor not measured".
        check("results.md: handshake row without the split",
              row is not None and "| 200 | 0.20× | n/a | n/a | n/a | floor not measured | floor not measured |" in row,
              True)
        check("results.md: floor ratios without the split or a floor",
              "- full ECDSA handshake, client chain cached: ringtls user n/a (no ringtls run with the user/kernel "
              "split); `mtls_handshake_floor_cached_us`: floor not measured" in md, True)
        check("results.md: no one-connection bulk run",
              "not measured: no one-connection run in these records" in md, True)
    # the user/kernel split, the floor ratios, one-connection bulk and the repeated echo
    split_cases(check)
    floor_cases(check)
    bulk_order_cases(check)
    echo_cases(check)
    with tempfile.TemporaryDirectory() as d:
        canned_split(d)
        report.write_from_work(os.path.join(d, "work"), os.path.join(d, "out"))
        raw = json.load(open(os.path.join(d, "out", "raw.json")))
        md = read(os.path.join(d, "out", "results.md"))
        floor_report_cases(check, raw, md)
        bulk1_report_cases(check, raw, md)
        echo_report_cases(check, raw, md)
    # block 8: the edges' table, the ratios and the spliced share, in results.md and raw.json
    with tempfile.TemporaryDirectory() as d:
        canned_passthrough(d)
        report.write_from_work(os.path.join(d, "work"), os.path.join(d, "out"))
        raw = json.load(open(os.path.join(d, "out", "raw.json")))
        md = read(os.path.join(d, "out", "results.md"))
        up = raw["passthrough"].get("up", {})
        check("raw.json: passthrough ratios", (up.get("ringtls_vs_haproxy"), up.get("ringtls_vs_haproxy_splice"),
                                               up.get("ringtls_vs_haproxy_splice_forced")), (0.5, 1.25, 1.0))
        check("raw.json: passthrough spliced share", up.get("ringtls_spliced_fraction"), 0.995)
        check("raw.json: no down runs", "down" in raw["passthrough"], False)
        check("results.md: passthrough ringtls row",
              "| client → upstream | ringtls | 0.500 | 0.50× | 1.25× | 1.00× | 1,024 | 4 of 4 | 0.0 MiB (99.50%) |" in md, True)
        check("results.md: passthrough goals",
              "- client → upstream: ringtls 0.50× HAProxy (goal ≤ 0.6×: met), 1.25× HAProxy + splice-auto "
              "(goal ≤ 1×: NOT met), 1.00× HAProxy + splice-request/response (goal ≤ 1×: met)" in md, True)
        check("results.md: HAProxy's pipes halfway",
              ("| — | no: 0 pipes held halfway |" in md, "| — | yes: 3 pipes held halfway |" in md), (True, True))
        check("results.md: busy counts the terminator", "| 0.50 / 0.80 / 0.05 / 0.00 |" in md, True)
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


def split_cases(check):
    """The user/kernel split on canned records: per handshake, per GiB, and its absence."""
    common = {"clk_tck": 100, "wall_s": 1.0, "cpu_ticks_before": 0, "cpu_utime_before": 0, "cpu_stime_before": 0}
    full = dict(common, measure="handshake", cpu_ticks_after=30, cpu_utime_after=24, cpu_stime_after=6,
                load={"ok": 1000, "resumed_fraction": 0.0})
    d = report.derive(full)
    check("split: user and kernel µs per handshake",
          (round(d["server_user_us_per_op"], 6), round(d["server_kernel_us_per_op"], 6),
           round(d["server_cpu_us_per_op"], 6)), (240.0, 60.0, 300.0))
    bulk = dict(common, cpu_ticks_after=80, cpu_utime_after=50, cpu_stime_after=30, load={"ok": 2, "bytes": 2 << 30})
    d = report.derive(bulk)
    check("split: user and kernel s per GiB", (d["server_user_s_per_gib"], d["server_kernel_s_per_gib"]), (0.25, 0.15))
    old = {k: v for k, v in bulk.items() if not k.startswith(("cpu_utime", "cpu_stime"))}
    check("split: records from before it have the sum only",
          sorted(k for k in report.derive(old) if "user" in k or "kernel" in k), [])
    died = dict(bulk, cpu_ticks_after=None, cpu_utime_after=None, cpu_stime_after=None)
    check("split: a server that died has none", "server_user_s" in report.derive(died), False)


def floor_cases(check):
    """The floor lines, the ratios to them with and without a floor, and the resumed estimate
    from user time."""
    floor = {"mtls_handshake_floor_cached_us": 200.0, "full_mtls_handshake_floor_us": 186, "x25519_us": 34.8}
    check("floor: one line", report.floor_us(floor, "full_mtls_handshake_floor_us"), 186.0)
    check("floor: not measured, failed, older", [report.floor_us(f, "mtls_handshake_floor_cached_us") for f in
                                                 (None, {"error": "crypto_floor ran but printed no JSON line"},
                                                  {"full_mtls_handshake_floor_us": 186})], [None, None, None])
    check("floor ratio: met", report.floor_cell(report.vs_target(240.0, 200.0, 1.3)), "1.20×, target met")
    check("floor ratio: NOT met", report.floor_cell(report.vs_target(300.0, 200.0, 1.3)), "1.50×, target NOT met")
    check("floor ratio: no target", report.floor_cell(report.vs_target(372.0, 186.0, None)), "2.00×")
    check("floor ratio: no floor", report.floor_cell(report.vs_target(240.0, None, 1.3)), "floor not measured")
    check("floor ratio: no user time", report.floor_cell(report.vs_target(None, 200.0, 1.3)), "n/a")
    check("floor ratio: no floor, no user time", report.floor_cell(report.vs_target(None, None, 1.3)),
          "floor not measured")
    # 1000 handshakes, 800 resumed, 0.12 s of user time, less the 200 full ones at the full
    # run's 240 µs: (120000 - 48000) / 800
    common = {"clk_tck": 100, "wall_s": 1.0, "cpu_ticks_before": 0, "cpu_utime_before": 0, "cpu_stime_before": 0}
    full = dict(common, measure="handshake", cpu_ticks_after=30, cpu_utime_after=24, cpu_stime_after=6,
                load={"ok": 1000, "resumed_fraction": 0.0})
    full["derived"] = report.derive(full)
    res = dict(common, measure="resume", cpu_ticks_after=20, cpu_utime_after=12, cpu_stime_after=8,
               load={"ok": 1000, "resumed_fraction": 0.8})
    res["derived"] = report.derive(res)
    check("resumed estimate: user time", round(report.resumed_cpu(res, full, "user"), 6), 90.0)
    check("resumed estimate: all CPU as before", round(report.resumed_cpu(res, full), 6), 175.0)
    old_full = {k: v for k, v in full.items() if not k.startswith(("cpu_utime", "cpu_stime"))}
    old_full["derived"] = report.derive(old_full)
    check("resumed estimate: no user time in the full run", report.resumed_cpu(res, old_full, "user"), None)


class StandIn:
    """A Bench that records what a block asks of it, and starts nothing."""
    s = sizes(False)
    o = SimpleNamespace(servers=["ringtls", "haproxy"])

    def __init__(self):
        self.calls = []

    def start_server(self, name, cert, upmode):
        self.calls.append(("start", name, upmode))
        return name

    def stop_server(self, srv):
        self.calls.append(("stop", srv))

    def check_mtls(self, srv):
        pass

    def warmup(self, srv, cert):
        pass

    def handshakes(self, srv, measure, cert, resume=False):
        self.calls.append((srv, measure))

    def run_load(self, srv, measure, cert, args):
        self.calls.append((srv, measure))

    def echo(self, srv, measure):
        self.calls.append((srv, measure))

    def bulk(self, srv, measure, direction, concurrency=None, size=None):
        self.calls.append((srv, measure, concurrency, size))


def quietly(block, stand):
    """Runs a block on a stand-in without its log lines."""
    log = bench.log
    bench.log = lambda msg: None
    try:
        block(stand)
    finally:
        bench.log = log
    return stand.calls


def bulk_order_cases(check):
    """Blocks 3 and 4: per server, the four-connection load and then the one-connection one."""
    calls = quietly(bench.block_bulk_up, StandIn()) + quietly(bench.block_bulk_down, StandIn())
    check("blocks 3 and 4: four connections, then one",
          [c for c in calls if c[0] not in ("start", "stop")],
          [("ringtls", "bulk-up", None, None), ("ringtls", "bulk-up-1", 1, "1GiB"),
           ("haproxy", "bulk-up", None, None), ("haproxy", "bulk-up-1", 1, "1GiB"),
           ("ringtls", "bulk-down", None, None), ("ringtls", "bulk-down-1", 1, "1GiB"),
           ("haproxy", "bulk-down", None, None), ("haproxy", "bulk-down-1", 1, "1GiB")])


def echo_cases(check):
    """Block 1's echo runs interleaved across servers; their order from the measure names, the
    medians, the spread and the best peer."""
    calls = quietly(bench.block_handshakes, StandIn())
    check("block 1: echo runs interleaved across servers",
          [c for c in calls if len(c) == 2 and c[1].startswith("echo") and c[1] != "echo-unpaced"],
          [("ringtls", "echo"), ("haproxy", "echo"), ("ringtls", "echo-2"), ("haproxy", "echo-2"),
           ("ringtls", "echo-3"), ("haproxy", "echo-3")])
    check("block 1: each later echo run on a server of its own",
          [c[1] for c in calls if c[0] == "start"], ["ringtls", "haproxy"] * 3)

    def echo(measure, server, p50, p99):
        r = {"clk_tck": 100, "wall_s": 1.0, "cpu_ticks_before": 0, "cpu_ticks_after": 5, "measure": measure,
             "server": server,
             "load": {"ok": 5000, "failed": 1, "per_second": 5000.0, "latency_us": {"p50": p50, "p99": p99}}}
        r["derived"] = report.derive(r)
        return r
    runs = [echo("echo-3", "ringtls", 320, 900), echo("echo", "ringtls", 300, 700), echo("echo-unpaced", "ringtls", 50, 60),
            echo("echo-2", "ringtls", 280, 500), echo("echo", "haproxy", 400, 650)]
    check("echo runs: in run order, unpaced left out",
          [r["measure"] for r in report.echo_runs(runs, "ringtls")], ["echo", "echo-2", "echo-3"])
    st = report.echo_stats(report.echo_runs(runs, "ringtls"))
    check("echo stats: medians, spread, failures, median run",
          (st["runs"], st["p50"], st["p99"], st["p99_min"], st["p99_max"], st["failed"], st["median_run"]["measure"]),
          (3, 300, 700, 500, 900, 3, "echo"))
    check("echo stats: two runs", report.echo_stats(report.echo_runs(runs, "ringtls")[:2])["p99"], 600.0)
    check("echo stats: no run", report.echo_stats([]), None)
    stats = {"ringtls": st, "haproxy": report.echo_stats(report.echo_runs(runs, "haproxy")),
             "nginx": {"p99": 800}}
    check("echo: best peer is the lowest median p99 of the others",
          (report.best_peer(stats, "ringtls"), report.best_peer(stats, "haproxy")), (("haproxy", 650), ("ringtls", 700)))
    t = report.echo_target(stats)
    check("echo target: NOT met", (round(t["ratio"], 4), t["met"]), (1.0769, False))
    check("echo target: no peer", report.echo_target({"ringtls": st})["met"], None)


def floor_report_cases(check, raw, md):
    """canned_split's handshake tables and floor ratios."""
    t = raw["targets"]
    check("raw.json: handshake user vs cached floor", (round(t["handshake_user_vs_floor_cached"]["ratio"], 6),
                                                      t["handshake_user_vs_floor_cached"]["met"]), (1.2, True))
    check("raw.json: resumed user vs floor", (round(t["resumed_user_vs_floor"]["user_us"], 6),
                                              round(t["resumed_user_vs_floor"]["ratio"], 6),
                                              t["resumed_user_vs_floor"]["met"]), (90.0, 1.8, False))
    check("results.md: handshake row, user and kernel, floors",
          "| ringtls | 300 | 0.30× | 240 | 60.0 | 0.20× | 1.20×, target met | 1.29× | 1,000 | 1.00× |" in md, True)
    check("results.md: handshake row, HAProxy has no floor cells",
          "| haproxy | 1,000 | 1.00× | 700 | 300 | 1.00× | — | — |" in md, True)
    check("results.md: RSA row, split but no floor column",
          "| ringtls | 500 | 0.50× | 400 | 100 | 0.33× | 1,000 | 1.00× |" in md, True)
    check("results.md: resumed row, user estimate against its floor",
          "| 0.800 | 175 | 0.17× | 90.0 | 1.80×, target NOT met |" in md, True)
    check("results.md: floor ratios",
          ("- full ECDSA handshake, client chain cached: ringtls user 240 µs, `mtls_handshake_floor_cached_us` "
           "200 µs: 1.20×, target ≤ 1.3× met" in md,
           "- full ECDSA handshake, client chain verified: ringtls user 240 µs, `full_mtls_handshake_floor_us` "
           "186 µs: 1.29×" in md,
           "- resumed handshake, per resumed handshake (est.): ringtls user 90.0 µs, `resumed_handshake_floor_us` "
           "50.0 µs: 1.80×, target ≤ 1.5× NOT met" in md), (True, True, True))


def bulk1_report_cases(check, raw, md):
    """canned_split's one-connection bulk tables and their target."""
    t = raw["targets"]["bulk_down_1_vs_haproxy"]
    check("raw.json: bulk-down-1 vs HAProxy", (round(t["ratio"], 6), t["met"]), (0.75, True))
    check("results.md: one-connection bulk rows, user and kernel s / GiB",
          ("| ringtls | 0.750 | 0.75× | 0.500 | 0.250 | 1,024 | 1.00× |" in md,
           "| haproxy | 1.000 | 1.00× | 0.600 | 0.400 | 1,024 | 1.00× |" in md), (True, True))
    check("results.md: one-connection tables follow the four-connection ones",
          [l[4:9] for l in md.splitlines() if l.startswith("### 3")], ["3a. B", "3a-1.", "3b. B", "3b-1."])
    check("results.md: bulk-down-1 target line",
          "- Target: ringtls' server CPU per GiB upstream → client with one connection ≤ 0.8× HAProxy's: 0.750 "
          "against 1.000 s / GiB, 0.75×, target met" in md, True)


def echo_report_cases(check, raw, md):
    """canned_split's echo table over three runs per server, and its target."""
    t = raw["targets"]["echo_p99_vs_best_peer"]
    check("raw.json: echo p99 vs best peer", (t["best_peer"], t["ratio"], t["met"]), ("haproxy", 0.875, True))
    check("results.md: echo row, medians and spread",
          "| ringtls | 3 | 300 | 0.75× | 700 | 500–900 | 0.88× | 0.88× (haproxy), target met |" in md, True)
    check("results.md: echo row of a peer", "| haproxy | 3 | 400 | 1.00× | 800 | 600–1,000 | 1.00× | 1.14× (ringtls) |"
          in md, True)
    check("results.md: echo target line",
          "- Target: ringtls' p99 (median of its runs) no worse than the best peer's: 700 µs against haproxy's "
          "800 µs, 0.88×, target met" in md, True)


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


def canned_passthrough(d):
    """A work dir with block 8's up direction: the four edges, 1 GiB each."""
    work = os.path.join(d, "work")
    os.makedirs(os.path.join(work, "records"))
    with open(os.path.join(work, "meta.txt"), "w") as f:
        f.write("quick=1\nnproc=2\nduration=1000ms\nwarmup=300ms\nidle_n=500\nidle_wanted=500\n"
                "bulk_concurrency=4\nbulk_bytes=64MiB\nservers=ringtls,haproxy\ncommand=scripts/bench.sh --quick\n")
    common = {"cert": "ecdsa", "server_threads": 1, "clk_tck": 100, "load_rc": 0, "load_cpu_ms": 500,
              "upstream_cpu_ticks": 10, "terminator_cpu_ticks": 20, "machine_busy_ticks": 135,
              "machine_total_ticks": 200, "machine_irq_ticks": 5, "wall_s": 1.0, "server_alive_after": True,
              "measure": "passthrough-up", "cpu_ticks_before": 0}
    edges = ((1, "ringtls", 50, None), (2, "haproxy", 100, 0), (3, "haproxy-splice", 40, 0),
             (4, "haproxy-splice-forced", 50, 3))
    for seq, edge, ticks, pipes in edges:
        base = os.path.join(work, "records", f"{seq:03d}")
        meta = dict(common, seq=seq, server=edge, edge=edge, cpu_ticks_after=ticks)
        if pipes is not None:
            meta["haproxy_mid_run"] = {"Maxpipes": 275, "PipesUsed": pipes, "PipesFree": 0, "CurrConns": 4}
        if edge == "ringtls":
            meta.update(passthrough_conns=4, other_conns=0, logged_up_bytes=1000, logged_down_bytes=1000,
                        spliced_bytes=1990)
        write_json(base + ".meta.json", meta)
        with open(base + ".load.json", "w") as f:
            f.write(json.dumps({"ok": 4, "failed": 0, "per_second": 4.0, "mib_per_s": 1024.0, "bytes": 1 << 30,
                                "latency_us": {"p50": 100, "p99": 200}, "resumed_fraction": 0.0,
                                "failures": {}}) + "\n")


def canned_split(d):
    """A work dir with the user/kernel split, a crypto floor, three echo runs per server and the
    one-connection bulk runs, for ringtls and HAProxy."""
    work = os.path.join(d, "work")
    os.makedirs(os.path.join(work, "records"))
    with open(os.path.join(work, "meta.txt"), "w") as f:
        f.write("quick=1\nnproc=2\nduration=1000ms\nwarmup=300ms\nidle_n=500\nidle_wanted=500\nbulk_concurrency=4\n"
                "bulk_bytes=64MiB\nbulk1_bytes=64MiB\necho_runs=3\nservers=ringtls,haproxy\n"
                "command=scripts/bench.sh --quick\n")
    with open(os.path.join(work, "crypto_floor.out"), "w") as f:
        f.write(json.dumps({"bench": "crypto_floor", "mtls_handshake_floor_cached_us": 200.0,
                            "full_mtls_handshake_floor_us": 186.0, "resumed_handshake_floor_us": 50.0}) + "\n")
    common = {"cert": "ecdsa", "server_threads": 1, "clk_tck": 100, "load_rc": 0, "load_cpu_ms": 500,
              "upstream_cpu_ticks": 10, "machine_busy_ticks": 150, "machine_total_ticks": 200,
              "machine_irq_ticks": 5, "wall_s": 1.0, "server_alive_after": True, "cpu_ticks_before": 0,
              "cpu_utime_before": 0, "cpu_stime_before": 0}
    ops = {"ok": 1000, "failed": 0, "per_second": 1000.0, "mib_per_s": 0.0, "bytes": 0, "resumed_fraction": 0.0,
           "latency_us": {"p50": 100, "p99": 200}, "failures": {}}
    gib = dict(ops, ok=16, per_second=16.0, mib_per_s=1024.0, bytes=1 << 30)
    # (server, measure, utime ticks, stime ticks, load)
    rows = [("ringtls", "handshake", 24, 6, ops), ("haproxy", "handshake", 70, 30, ops),
            ("ringtls", "handshake-rsa", 40, 10, ops), ("haproxy", "handshake-rsa", 70, 30, ops),
            ("ringtls", "resume", 12, 8, dict(ops, resumed_fraction=0.8)),
            ("haproxy", "resume", 70, 30, dict(ops, resumed_fraction=0.8)),
            ("ringtls", "bulk-up-1", 50, 25, gib), ("haproxy", "bulk-up-1", 60, 40, gib),
            ("ringtls", "bulk-down-1", 50, 25, gib), ("haproxy", "bulk-down-1", 60, 40, gib)]
    for server, p50s, p99s in (("ringtls", (300, 280, 320), (700, 500, 900)),
                               ("haproxy", (400, 380, 420), (800, 600, 1000))):
        for n, (p50, p99) in enumerate(zip(p50s, p99s), 1):
            rows.append((server, "echo" if n == 1 else f"echo-{n}", 3, 2,
                         dict(ops, ok=5000, per_second=5000.0, latency_us={"p50": p50, "p99": p99})))
    for seq, (server, measure, utime, stime, load) in enumerate(rows, 1):
        base = os.path.join(work, "records", f"{seq:03d}")
        write_json(base + ".meta.json", dict(common, seq=seq, server=server, measure=measure,
                                             cpu_ticks_after=utime + stime, cpu_utime_after=utime,
                                             cpu_stime_after=stime))
        with open(base + ".load.json", "w") as f:
            f.write(json.dumps(load) + "\n")
