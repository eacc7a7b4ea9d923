#!/usr/bin/env python3
"""Turns the records of one scripts/bench/bench.py run into benches/results/{raw.json,results.md,chart.svg}.

bench.py imports this file and calls write_from_work; run alone, it re-renders a kept work dir
(--work) or a raw.json (--from-raw).

Input (the run's temp dir, --work): meta.txt (key=value lines: machine, versions, sizes),
records/NNN.meta.json (what bench.py measured around one load run: server CPU ticks before and after,
wall time, RSS and fd counts for the idle run) and records/NNN.load.json (the load generator's JSON
line), plus crypto_floor.out when the crypto_floor bench exists.

Every figure in results.md is derived here, from raw.json's numbers, so the tables can be
recomputed from raw.json alone: `report.py --from-raw benches/results/raw.json --out DIR`.
Standard library only: the chart is hand-written SVG.
"""

import argparse
import glob
import json
import os
import statistics
from html import escape

SERVERS = ["ringtls", "haproxy", "nginx", "stunnel"]
BASE = "haproxy"
COLORS = {"ringtls": "#d9480f", "haproxy": "#1c7ed6", "nginx": "#2b8a3e", "stunnel": "#7048e8"}
GIB = 1 << 30
MIB = 1 << 20


def read_meta(path):
    meta = {}
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if "=" in line:
                k, v = line.split("=", 1)
                meta[k] = v
    return meta


def last_json_line(path):
    """The last line of a file that parses as a JSON object, or None."""
    try:
        with open(path) as f:
            lines = [l.strip() for l in f if l.strip()]
    except OSError:
        return None
    for line in reversed(lines):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


def tail(path, n=5):
    try:
        with open(path) as f:
            return [l.rstrip("\n") for l in f.readlines()[-n:]]
    except OSError:
        return []


def read_runs(work):
    runs = []
    for meta_path in sorted(glob.glob(os.path.join(work, "records", "*.meta.json"))):
        base = meta_path[: -len(".meta.json")]
        with open(meta_path) as f:
            run = json.load(f)
        run["load"] = last_json_line(base + ".load.json")
        run["derived"] = derive(run)
        if run["load"] is None or run["load"].get("failed") or run.get("load_rc"):
            run["load_stderr_tail"] = tail(base + ".load.err")
        runs.append(run)
    return runs


def derive(run):
    """Per-run figures: server CPU per unit of work, busy fraction, RSS per connection."""
    d = {}
    load = run.get("load") or {}
    before, after = run.get("cpu_ticks_before"), run.get("cpu_ticks_after")
    if isinstance(before, int) and isinstance(after, int):
        cpu_s = (after - before) / run["clk_tck"]
        d["server_cpu_s"] = cpu_s
        wall = run.get("wall_s") or 0
        if wall > 0:
            # Cores kept busy during the run: the server, the load generator with the upstream
            # (core 1), interrupts and softirqs (mostly this run's loopback traffic, charged to no
            # process), and everything else on the machine, which tells how noisy the run was.
            d["server_busy"] = cpu_s / wall
            if "load_cpu_ms" in run and "upstream_cpu_ticks" in run:
                # Block 8: the terminator behind the passthrough edge shares core 1 with them.
                core1_ticks = run["upstream_cpu_ticks"] + run.get("terminator_cpu_ticks", 0)
                d["load_busy"] = (run["load_cpu_ms"] / 1000 + core1_ticks / run["clk_tck"]) / wall
                if run.get("machine_total_ticks"):
                    machine = run["machine_busy_ticks"] / run["clk_tck"] / wall
                    d["irq_busy"] = run.get("machine_irq_ticks", 0) / run["clk_tck"] / wall
                    d["other_busy"] = max(0.0, machine - d["server_busy"] - d["load_busy"] - d["irq_busy"])
        ok = load.get("ok") or 0
        if ok:
            d["server_cpu_us_per_op"] = cpu_s * 1e6 / ok
        if load.get("bytes"):
            d["server_cpu_s_per_gib"] = cpu_s / (load["bytes"] / GIB)
    split = [run.get(k) for k in ("cpu_utime_before", "cpu_utime_after", "cpu_stime_before", "cpu_stime_after")]
    if all(isinstance(x, int) for x in split):
        # utime and stime apart (records from before the split have only their sum): the user
        # part is what the crypto floor bounds, the kernel part is sockets and the event loop.
        for part, ticks in (("user", split[1] - split[0]), ("kernel", split[3] - split[2])):
            part_s = ticks / run["clk_tck"]
            d[f"server_{part}_s"] = part_s
            if load.get("ok"):
                d[f"server_{part}_us_per_op"] = part_s * 1e6 / load["ok"]
            if load.get("bytes"):
                d[f"server_{part}_s_per_gib"] = part_s / (load["bytes"] / GIB)
    if isinstance(run.get("ktls_conns"), int) and isinstance(run.get("other_conns"), int):
        # Block 7: the data path of each connection, from the server's close events.
        conns = run["ktls_conns"] + run["other_conns"]
        if conns:
            d["ktls_conn_fraction"] = run["ktls_conns"] / conns
        # Of the bytes the server logged as sent down (down=, more than the load read: the source
        # upstream never stops and the client closes after --bytes), those spliced.
        if run.get("logged_down_bytes") and isinstance(run.get("spliced_bytes"), int):
            d["spliced_fraction"] = run["spliced_bytes"] / run["logged_down_bytes"]
    if isinstance(run.get("passthrough_conns"), int) and isinstance(run.get("other_conns"), int):
        # Block 8, a ringtls edge: the path of each connection and the share of the bytes it moved
        # (both ways, ClientHello included) that went through pipes, from its close events.
        conns = run["passthrough_conns"] + run["other_conns"]
        if conns:
            d["passthrough_conn_fraction"] = run["passthrough_conns"] / conns
        moved = (run.get("logged_up_bytes") or 0) + (run.get("logged_down_bytes") or 0)
        if moved and isinstance(run.get("spliced_bytes"), int):
            d["spliced_fraction"] = run["spliced_bytes"] / moved
    if run.get("measure") == "idle":
        ok = run.get("idle_ok") or 0
        if ok and isinstance(run.get("rss_kb_after"), int):
            d["rss_kib_per_conn"] = (run["rss_kb_after"] - run["rss_kb_before"]) / ok
            d["rss_mib_before"] = run["rss_kb_before"] / 1024
            d["rss_mib_after"] = run["rss_kb_after"] / 1024
    return d


def crypto_floor(work):
    out = os.path.join(work, "crypto_floor.out")
    if not os.path.exists(out):
        return None
    return last_json_line(out) or {"error": "crypto_floor ran but printed no JSON line",
                                   "stderr_tail": tail(os.path.join(work, "crypto_floor.err"))}


# --- formatting ----------------------------------------------------------------------------------

def num(x, digits=None):
    if x is None:
        return "n/a"
    if digits is None:
        digits = 0 if abs(x) >= 100 else 1 if abs(x) >= 10 else 2
    return f"{x:,.{digits}f}"


def ratio(x, base):
    if x is None or not base:
        return "n/a"
    return f"{x / base:.2f}×"


class Table:
    def __init__(self, runs, measure):
        self.by_server = {}
        for r in runs:
            if r.get("measure") == measure:
                self.by_server[r["server"]] = r  # the last run of a measure wins

    def get(self, server):
        return self.by_server.get(server)


def value(run, path):
    """run['derived'|'load'][...] by a dotted path, or None."""
    cur = run
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur if isinstance(cur, (int, float)) else None


def failure_note(server, run):
    load = run.get("load")
    if load is None:
        return f"{server}: the load printed no JSON (exit {run.get('load_rc')}): " + \
            " / ".join(run.get("load_stderr_tail", [])[-2:])
    if load.get("failed"):
        return f"{server}: {load['failed']} of {load['ok'] + load['failed']} operations failed: " + \
            ", ".join(f"{k} ×{v}" for k, v in sorted(load["failures"].items()))
    if run.get("server_alive_after") is False:
        return f"{server}: the server process died during this run"
    return None


NOISY = 0.25  # cores of other work above which a run's rate is flagged


def busy(run):
    """'server / load+upstream / softirq / other' cores busy during the run."""
    parts = [value(run, "derived.server_busy"), value(run, "derived.load_busy"),
             value(run, "derived.irq_busy"), value(run, "derived.other_busy")]
    text = " / ".join("n/a" if p is None else f"{p:.2f}" for p in parts)
    return text + (" †" if noisy(run) else "")


def noisy(run):
    other = value(run, "derived.other_busy")
    return other is not None and other > NOISY


BUSY_HEADER = "cores busy: server / load+upstream / softirq / other"


def md_table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["--:"] * (len(header) - 1)) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def section(title, note, header, rows, notes):
    parts = [f"### {title}", "", note, "", md_table(header, rows)]
    if any(c.endswith(" †") for r in rows for c in r):
        parts += ["", f"† other work used more than {NOISY} cores of the machine during that run: its rate "
                  "and latency are depressed by it; its CPU per operation much less so."]
    if notes:
        parts += ["", "Failures: " + "; ".join(notes) + "."]
    return "\n".join(parts) + "\n"


def resumed_cpu(run, full_run, part="cpu"):
    """Server CPU per resumed handshake, estimated: the run's CPU less its full handshakes at the
    cost the same server showed in the full-handshake run, over the resumed handshakes. part
    "user" does the same with user time alone (utime), which the resumed floor bounds."""
    cpu, ok, frac = value(run, f"derived.server_{part}_s"), value(run, "load.ok"), value(run, "load.resumed_fraction")
    full = value(full_run, f"derived.server_{part}_us_per_op") if full_run else None
    if None in (cpu, ok, frac, full) or frac <= 0 or ok <= 0:
        return None
    resumed = frac * ok
    return max(0.0, (cpu * 1e6 - (ok - resumed) * full) / resumed)


# The issue's targets for ringtls' user time against the crypto floor: the line of crypto_floor's
# JSON that bounds each handshake table, and how far above it ringtls may be. A full handshake is
# also shown against the floor that verifies the client chain afresh, without a target.
FLOOR_TARGETS = {"handshake": ("mtls_handshake_floor_cached_us", 1.3), "resume": ("resumed_handshake_floor_us", 1.5)}
FLOOR_FULL = "full_mtls_handshake_floor_us"
NO_FLOOR = "floor not measured"


def floor_us(floor, key):
    """One line of the crypto floor in µs, or None: not measured (a --no-build run, no bench),
    failed, or from before that line existed."""
    v = floor.get(key) if isinstance(floor, dict) else None
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 else None


def vs_target(user_us, floor_value, target):
    """{user_us, floor_us, ratio, target, met} for one ratio to a floor (or to a peer); ratio and
    met are None when either side is missing, met also when there is no target."""
    q = user_us / floor_value if user_us is not None and floor_value else None
    return {"user_us": user_us, "floor_us": floor_value, "ratio": q, "target": target,
            "met": None if q is None or target is None else q <= target}


def met_text(t, show_target=False):
    """'1.20×, target met' / '1.45×, target NOT met' / '1.10×' (no target) for a vs_target dict;
    show_target names it: '1.20×, target ≤ 1.3× met'."""
    if t["ratio"] is None:
        return "n/a"
    if t["target"] is None:
        return f"{t['ratio']:.2f}×"
    goal = f" ≤ {t['target']:g}×" if show_target else ""
    return f"{t['ratio']:.2f}×, target{goal} {'met' if t['met'] else 'NOT met'}"


def floor_cell(t):
    """A ratio to a floor line as a table cell: 'floor not measured' when the floor is missing."""
    return NO_FLOOR if t["floor_us"] is None else met_text(t)


def floor_targets(runs, floor):
    """ringtls' user time against the crypto floor: full ECDSA handshakes (per handshake) and
    resumed ones (per resumed handshake, estimated as resumed_cpu does, from user time alone)."""
    full = Table(runs, "handshake").get("ringtls")
    res = Table(runs, "resume").get("ringtls")
    full_user = value(full, "derived.server_user_us_per_op") if full else None
    res_user = resumed_cpu(res, full, "user") if res else None
    key, target = FLOOR_TARGETS["handshake"]
    rkey, rtarget = FLOOR_TARGETS["resume"]
    return {
        "handshake_user_vs_floor_cached": dict(vs_target(full_user, floor_us(floor, key), target), floor=key),
        "handshake_user_vs_floor_full": dict(vs_target(full_user, floor_us(floor, FLOOR_FULL), None), floor=FLOOR_FULL),
        "resumed_user_vs_floor": dict(vs_target(res_user, floor_us(floor, rkey), rtarget), floor=rkey),
    }


def handshake_section(runs, servers, measure, title, note, floor=None):
    t = Table(runs, measure)
    full_t = Table(runs, "handshake")
    b_res = resumed_cpu(t.get(BASE), full_t.get(BASE)) if t.get(BASE) else None
    base = t.get(BASE)
    b_cpu = value(base, "derived.server_cpu_us_per_op") if base else None
    b_kernel = value(base, "derived.server_kernel_us_per_op") if base else None
    b_rate = value(base, "load.per_second") if base else None
    targets = floor_targets(runs, floor)
    rows, notes = [], []
    for s in servers:
        r = t.get(s)
        if not r:
            continue
        cpu, rate = value(r, "derived.server_cpu_us_per_op"), value(r, "load.per_second")
        user, kernel = value(r, "derived.server_user_us_per_op"), value(r, "derived.server_kernel_us_per_op")
        row = [s, num(cpu), ratio(cpu, b_cpu), num(user), num(kernel), ratio(kernel, b_kernel)]
        if measure == "handshake":
            # The floor is ringtls' own (rustls + aws-lc-rs), so only its row is held to it.
            row += ([floor_cell(targets["handshake_user_vs_floor_cached"]),
                     floor_cell(targets["handshake_user_vs_floor_full"])] if s == "ringtls" else ["—", "—"])
        row += [num(rate), ratio(rate, b_rate)]
        if measure == "resume":
            frac = value(r, "load.resumed_fraction")
            res = resumed_cpu(r, full_t.get(s))
            row += ["n/a" if frac is None else f"{frac:.3f}", num(res), ratio(res, b_res),
                    num(resumed_cpu(r, full_t.get(s), "user")),
                    floor_cell(targets["resumed_user_vs_floor"]) if s == "ringtls" else "—"]
        row += [
            busy(r),
            f"{num(value(r, 'load.latency_us.p50'), 0)} / {num(value(r, 'load.latency_us.p99'), 0)}",
            num(value(r, "load.failed"), 0),
        ]
        rows.append(row)
        n = failure_note(s, r)
        if n:
            notes.append(n)
    header = ["server", "server CPU µs / handshake", "vs HAProxy", "user µs / handshake", "kernel µs / handshake",
              "kernel vs HAProxy"]
    if measure == "handshake":
        header += [f"ringtls user vs floor, cached chain (target ≤ {FLOOR_TARGETS['handshake'][1]:g}×)",
                   "ringtls user vs floor, full"]
    header += ["handshakes/s", "vs HAProxy"]
    if measure == "resume":
        header += ["resumed fraction", "CPU µs / resumed handshake (est.)", "vs HAProxy",
                   "user µs / resumed handshake (est.)",
                   f"ringtls user vs resumed floor (target ≤ {FLOOR_TARGETS['resume'][1]:g}×)"]
    header += [BUSY_HEADER, "latency p50 / p99 µs", "failed"]
    return section(title, note, header, rows, notes)


def floor_lines(targets):
    """The "Floor ratios" list under the handshake tables, from floor_targets."""
    def line(label, t):
        user = "n/a (no ringtls run with the user/kernel split)" if t["user_us"] is None else f"{num(t['user_us'])} µs"
        if t["floor_us"] is None:
            return f"- {label}: ringtls user {user}; `{t['floor']}`: {NO_FLOOR}"
        return f"- {label}: ringtls user {user}, `{t['floor']}` {num(t['floor_us'])} µs: {met_text(t, show_target=True)}"
    return "\n".join([
        "**Floor ratios** (ringtls' user time, where the floor's crypto runs)",
        "",
        line("full ECDSA handshake, client chain cached", targets["handshake_user_vs_floor_cached"]),
        line("full ECDSA handshake, client chain verified", targets["handshake_user_vs_floor_full"]),
        line("resumed handshake, per resumed handshake (est.)", targets["resumed_user_vs_floor"]),
    ]) + "\n"


def bulk_section(runs, servers, measure, title, note, split=False):
    """A bulk table; split adds user and kernel s / GiB and the connections the run made (the
    one-connection tables, where each connection moves --bytes before the next one starts)."""
    t = Table(runs, measure)
    base = t.get(BASE)
    b_cpu = value(base, "derived.server_cpu_s_per_gib") if base else None
    b_rate = value(base, "load.mib_per_s") if base else None
    rows, notes = [], []
    for s in servers:
        r = t.get(s)
        if not r:
            continue
        cpu, rate = value(r, "derived.server_cpu_s_per_gib"), value(r, "load.mib_per_s")
        gib = (value(r, "load.bytes") or 0) / GIB
        row = [s, num(cpu, 3), ratio(cpu, b_cpu)]
        if split:
            row += [num(value(r, "derived.server_user_s_per_gib"), 3), num(value(r, "derived.server_kernel_s_per_gib"), 3)]
        row += [num(rate), ratio(rate, b_rate), busy(r), num(gib, 2)]
        if split:
            row.append(num(value(r, "load.ok"), 0))
        rows.append(row + [num(value(r, "load.failed"), 0)])
        n = failure_note(s, r)
        if n:
            notes.append(n)
    if split and not rows:
        return (f"### {title}\n\n{note}\n\nnot measured: no one-connection run in these records (`--only` "
                "without this block, or records from before it had one).\n")
    header = ["server", "server CPU s / GiB", "vs HAProxy"]
    if split:
        header += ["user s / GiB", "kernel s / GiB"]
    header += ["MiB/s", "vs HAProxy", BUSY_HEADER, "GiB moved"]
    if split:
        header.append("connections")
    return section(title, note, header + ["failed"], rows, notes)


BULK1_TARGET = 0.8  # ringtls' CPU per GiB, one connection, upstream to client, against HAProxy's


def bulk1_target(runs):
    """ringtls' server CPU per GiB of bulk-down-1 against HAProxy's."""
    t = Table(runs, "bulk-down-1")
    r, b = t.get("ringtls"), t.get(BASE)
    cpu = value(r, "derived.server_cpu_s_per_gib") if r else None
    b_cpu = value(b, "derived.server_cpu_s_per_gib") if b else None
    q = cpu / b_cpu if cpu is not None and b_cpu else None
    return {"ringtls_s_per_gib": cpu, "haproxy_s_per_gib": b_cpu, "ratio": q, "target": BULK1_TARGET,
            "met": None if q is None else q <= BULK1_TARGET}


def bulk1_line(t):
    """The target line under table 3b-1."""
    head = (f"- Target: ringtls' server CPU per GiB upstream → client with one connection ≤ {t['target']:g}× "
            "HAProxy's: ")
    if t["ratio"] is None:
        return head + "not measured (no ringtls or no HAProxy run of bulk-down-1)\n"
    return head + f"{num(t['ringtls_s_per_gib'], 3)} against {num(t['haproxy_s_per_gib'], 3)} s / GiB, {met_text(t)}\n"


def echo_section(runs, servers, measure, title, note):
    t = Table(runs, measure)
    base = t.get(BASE)
    b_p50 = value(base, "load.latency_us.p50") if base else None
    b_p99 = value(base, "load.latency_us.p99") if base else None
    b_cpu = value(base, "derived.server_cpu_us_per_op") if base else None
    rows, notes = [], []
    for s in servers:
        r = t.get(s)
        if not r:
            continue
        p50, p99 = value(r, "load.latency_us.p50"), value(r, "load.latency_us.p99")
        cpu = value(r, "derived.server_cpu_us_per_op")
        rows.append([s, num(p50, 0), ratio(p50, b_p50), num(p99, 0), ratio(p99, b_p99),
                     num(value(r, "load.per_second")), num(cpu), ratio(cpu, b_cpu), busy(r),
                     num(value(r, "load.failed"), 0)])
        n = failure_note(s, r)
        if n:
            notes.append(n)
    header = ["server", "p50 µs", "vs HAProxy", "p99 µs", "vs HAProxy", "round trips/s",
              "server CPU µs / round trip", "vs HAProxy", BUSY_HEADER, "failed"]
    return section(title, note, header, rows, notes)


def echo_runs(runs, server):
    """The fixed-rate echo runs of server in run order: measure `echo` is run 1 (the only one in
    records from before there were three), `echo-N` run N; `echo-unpaced` is not one of them."""
    out = []
    for r in runs:
        m = r.get("measure", "")
        if r.get("server") == server and (m == "echo" or (m.startswith("echo-") and m[5:].isdigit())):
            out.append((1 if m == "echo" else int(m[5:]), r))
    return [r for _, r in sorted(out, key=lambda x: x[0])]


def echo_stats(server_runs):
    """Median p50 and p99 over one server's echo runs, the p99s' min and max, the median rate and
    CPU per round trip, the failures added up, and the run whose p99 is the median (its cores
    busy are shown); None without a run that has latencies."""
    with_p99 = [r for r in server_runs if value(r, "load.latency_us.p99") is not None]
    if not with_p99:
        return None
    p99s = sorted(value(r, "load.latency_us.p99") for r in with_p99)

    def med(path):
        xs = [value(r, path) for r in with_p99 if value(r, path) is not None]
        return statistics.median(xs) if xs else None
    by_p99 = sorted(with_p99, key=lambda r: value(r, "load.latency_us.p99"))
    return {"runs": len(server_runs), "p50": med("load.latency_us.p50"), "p99": statistics.median(p99s),
            "p99_min": p99s[0], "p99_max": p99s[-1], "per_second": med("load.per_second"),
            "cpu_us_per_op": med("derived.server_cpu_us_per_op"),
            "failed": sum(value(r, "load.failed") or 0 for r in server_runs),
            "median_run": by_p99[(len(by_p99) - 1) // 2], "noisy": any(noisy(r) for r in server_runs)}


def best_peer(stats, server):
    """(name, median p99) of the server other than this one with the lowest median p99, or None."""
    peers = [(st["p99"], s) for s, st in stats.items() if s != server and st]
    return (min(peers)[1], min(peers)[0]) if peers else None


def echo_target(stats):
    """ringtls' median p99 against the best peer's: the target is no worse (≤ 1×)."""
    st, peer = stats.get("ringtls"), best_peer(stats, "ringtls")
    t = vs_target(st["p99"] if st else None, peer[1] if peer else None, 1.0)
    return {"ringtls_p99_us": t["user_us"], "best_peer": peer[0] if peer else None, "best_peer_p99_us": t["floor_us"],
            "ratio": t["ratio"], "target": 1.0, "met": t["met"],
            "ringtls_runs": st["runs"] if st else 0}


def echo_repeated_section(runs, servers, title, note):
    """The fixed-rate echo over its runs (three since they were repeated; one in older records):
    medians, the p99s' spread, p99 against HAProxy and against the best peer."""
    stats = {s: echo_stats(echo_runs(runs, s)) for s in servers}
    stats = {s: st for s, st in stats.items() if st}
    base = stats.get(BASE) or {}
    target = echo_target(stats)
    rows, notes = [], []
    for s in servers:
        st = stats.get(s)
        if not st:
            continue
        peer = best_peer(stats, s)
        vs_peer = f"{ratio(st['p99'], peer[1])} ({peer[0]})" if peer else "n/a"
        if s == "ringtls" and target["met"] is not None:
            vs_peer += f", target {'met' if target['met'] else 'NOT met'}"
        cores = busy(st["median_run"])
        if st["noisy"] and not cores.endswith(" †"):
            cores += " †"
        rows.append([s, str(st["runs"]), num(st["p50"], 0), ratio(st["p50"], base.get("p50")), num(st["p99"], 0),
                     f"{num(st['p99_min'], 0)}–{num(st['p99_max'], 0)}", ratio(st["p99"], base.get("p99")),
                     vs_peer, num(st["per_second"]), num(st["cpu_us_per_op"]),
                     ratio(st["cpu_us_per_op"], base.get("cpu_us_per_op")), cores, num(st["failed"], 0)])
        for i, r in enumerate(echo_runs(runs, s), 1):
            n = failure_note(f"{s} (run {i})", r)
            if n:
                notes.append(n)
    header = ["server", "runs", "p50 µs (median)", "vs HAProxy", "p99 µs (median)", "p99 min–max", "vs HAProxy",
              "p99 vs best peer", "round trips/s (median)", "server CPU µs / round trip (median)", "vs HAProxy",
              f"{BUSY_HEADER} (median-p99 run)", "failed (all runs)"]
    text = section(title, note, header, rows, notes)
    if stats:
        if target["ratio"] is None:
            line = "not measured (no ringtls run, or no peer)"
        else:
            line = (f"{num(target['ringtls_p99_us'], 0)} µs against {target['best_peer']}'s "
                    f"{num(target['best_peer_p99_us'], 0)} µs, {met_text(target)}")
        text += f"\n- Target: ringtls' p99 (median of its runs) no worse than the best peer's: {line}\n"
    return text


def idle_section(runs, servers, title, note):
    t = Table(runs, "idle")
    base = t.get(BASE)
    b = value(base, "derived.rss_kib_per_conn") if base else None
    rows, notes = [], []
    for s in servers:
        r = t.get(s)
        if not r:
            continue
        per = value(r, "derived.rss_kib_per_conn")
        rows.append([s, f"{r.get('idle_ok', 0):,} of {r.get('idle_target', 0):,}",
                     num(value(r, "derived.rss_mib_before"), 1), num(value(r, "derived.rss_mib_after"), 1),
                     num(per, 1), ratio(per, b), str(r.get("threads_after", "n/a"))])
        if r.get("idle_failed"):
            notes.append(f"{s}: {r['idle_failed']} connections failed to establish")
        elif r.get("idle_ok", 0) < r.get("idle_target", 0):
            notes.append(f"{s}: only {r.get('idle_ok', 0)} of {r['idle_target']} connections were "
                         f"established within the wait ({r.get('wait_s')} s)")
        if r.get("server_alive_after") is False:
            notes.append(f"{s}: the server process died while holding the connections")
    header = ["server", "connections held", "RSS before MiB", "RSS after MiB", "KiB / connection",
              "vs HAProxy", "server threads"]
    return section(title, note, header, rows, notes)


def threads_section(runs):
    rows, notes = [], []
    one = None
    for t in (1, 2):
        r = next((x for x in runs if x.get("measure") == f"threads-{t}"), None)
        if not r:
            continue
        rate = value(r, "load.per_second")
        if t == 1:
            one = rate
        rows.append([f"--threads {t}", num(rate), ratio(rate, one), num(value(r, "derived.server_cpu_us_per_op")),
                     busy(r),
                     f"{num(value(r, 'load.latency_us.p50'), 0)} / {num(value(r, 'load.latency_us.p99'), 0)}",
                     num(value(r, "load.failed"), 0)])
        n = failure_note(f"ringtls --threads {t}", r)
        if n:
            notes.append(n)
    if not rows:
        return ""
    header = ["ringtls", "handshakes/s", "vs --threads 1", "server CPU µs / handshake",
              BUSY_HEADER, "latency p50 / p99 µs", "failed"]
    note = ("Full ECDSA handshakes as in table 1, but the server is not pinned with taskset: "
            "ringtls pins its workers itself, to cores 0 and 1 with `--threads 2`, so one worker shares "
            "core 1 with the load generator and the upstream. The rate is then bounded by the load "
            "generator (one thread on core 1) as much as by the server; read it as what the second "
            "core buys on this 2-core machine, not as scaling.")
    return section("6. ringtls `--threads 2` vs `--threads 1` (handshakes/s)", note, header, rows, notes)


KTLS_NOTE = "kernel TLS rows (block 7) "  # how bench.py's notes about block 7 begin


def ktls_section(runs, meta):
    """Block 7: ringtls --ktls off vs --ktls on, bulk up and down; or why it was not measured."""
    title = "7. Kernel TLS (ringtls)"
    note = (f"ringtls alone, `--ktls off` (rustls does the record work in user space) against `--ktls on` "
            "(after the handshake the keys go to the kernel, which does the record work in the server's own "
            f"system calls), with the loads of 3a and 3b (`--concurrency {meta.get('bulk_concurrency')} --bytes "
            f"{meta.get('bulk_bytes')}`, to the sink and from the source upstream); per direction off then on, "
            "each on a fresh server on core 0. Server CPU is utime+stime as above: the kernel's record work in "
            "the server's system calls counts, what it does in softirq context does not (see softirq in cores "
            "busy). The connections that took the kernel path are counted from the kTLS run's `conn.closed` "
            "events (`path=ktls`), not assumed; bytes spliced is the sum of their `spliced=`, and its share of "
            "their `down=`, the bytes the server sent the client (the kernel path forwards upstream to client "
            "with splice(2), client to upstream with read/write). Ratios are "
            "kTLS / user space: below 1 is less CPU or a lower rate.")
    rows, notes, forced = [], [], False
    for d, label in (("up", "bulk up"), ("down", "bulk down")):
        u = Table(runs, f"bulk-{d}-user").get("ringtls")
        k = Table(runs, f"bulk-{d}-ktls").get("ringtls")
        if not u and not k:
            continue
        u_cpu, k_cpu = (value(r, "derived.server_cpu_s_per_gib") if r else None for r in (u, k))
        u_rate, k_rate = (value(r, "load.mib_per_s") if r else None for r in (u, k))
        conns = spliced = "n/a"
        if k and isinstance(k.get("ktls_conns"), int) and isinstance(k.get("other_conns"), int):
            conns = f"{k['ktls_conns']:,} of {k['ktls_conns'] + k['other_conns']:,}"
        if d == "up":
            spliced = "—"
        elif k and isinstance(k.get("spliced_bytes"), int):
            frac = value(k, "derived.spliced_fraction")
            spliced = f"{num(k['spliced_bytes'] / MIB, 1)} MiB" + ("" if frac is None else f" ({frac:.0%} of the bytes sent down)")
        rows.append([label, num(u_cpu, 3), num(k_cpu, 3), ratio(k_cpu, u_cpu),
                     num(u_rate), num(k_rate), ratio(k_rate, u_rate), conns, spliced,
                     busy(u) if u else "n/a", busy(k) if k else "n/a",
                     " / ".join(num(value(r, "load.failed"), 0) if r else "n/a" for r in (u, k))])
        for name, r in ((f"{label}, user space", u), (f"{label}, kTLS", k)):
            n = failure_note(name, r) if r else f"{name}: no run"
            if n:
                notes.append(n)
        if u and u.get("ktls_conns"):
            notes.append(f"{label}, user space: {u['ktls_conns']} connections took path=ktls under `--ktls off`")
        if k and k.get("ktls_mode") == "auto":
            forced = True
    if not rows:
        reason = next((n.split("not measured: ", 1)[1] for n in meta.get("_notes", [])
                       if n.startswith(KTLS_NOTE) and "not measured: " in n), None)
        reason = reason or "block 7 did not run (`--only` without 7, or `--servers` without ringtls)"
        return f"### {title}\n\n{note}\n\nnot measured: {reason}.\n"
    if forced:
        note += (f" **Forced** (`BENCH_KTLS_FORCE=1`): the kTLS runs used `--ktls auto`, not `--ktls on`; kernel TLS "
                 f"on this machine: {meta.get('ktls', 'not recorded')}.")
    header = ["direction", "user CPU s / GiB", "kTLS CPU s / GiB", "kTLS / user", "user MiB/s", "kTLS MiB/s",
              "kTLS / user", "kTLS run, connections on path=ktls", "kTLS run, bytes spliced",
              f"user run, {BUSY_HEADER}", "kTLS run, cores busy", "failed user / kTLS"]
    return section(title, note, header, rows, notes)


EDGES = [("ringtls", "ringtls"), ("haproxy", "HAProxy"), ("haproxy-splice", "HAProxy + splice-auto"),
         ("haproxy-splice-forced", "HAProxy + splice-request/response")]
# The goals for the ringtls edge: against HAProxy without splice, and with it.
GOALS = [("haproxy", 0.6), ("haproxy-splice", 1.0), ("haproxy-splice-forced", 1.0)]
SPLICED_ENOUGH = 0.99  # as bench.py's: below this share of the bytes, the ringtls row says so


def passthrough_summary(runs):
    """Block 8 per direction: each edge's CPU s / GiB and the ringtls edge's ratio to each
    HAProxy edge, plus what its close events showed; raw.json's "passthrough"."""
    out = {}
    for d in ("up", "down"):
        t = Table(runs, f"passthrough-{d}")
        if not t.by_server:
            continue
        cpu = {e: value(t.get(e), "derived.server_cpu_s_per_gib") if t.get(e) else None for e, _ in EDGES}
        r = t.get("ringtls")
        out[d] = {"cpu_s_per_gib": cpu}
        for base, _ in GOALS:
            q = cpu["ringtls"] / cpu[base] if cpu["ringtls"] is not None and cpu[base] else None
            out[d]["ringtls_vs_" + base.replace("-", "_")] = q
        out[d]["ringtls_passthrough_conn_fraction"] = value(r, "derived.passthrough_conn_fraction") if r else None
        out[d]["ringtls_spliced_fraction"] = value(r, "derived.spliced_fraction") if r else None
    return out


def passthrough_section(runs, meta):
    """Block 8: passthrough edges, ringtls against HAProxy mode tcp with and without splice."""
    title = "8. TLS passthrough edges (SNI routing, bytes relayed untouched)"
    note = ("The server on core 0 is a passthrough edge: it reads the ClientHello, routes on its SNI (app.test) "
            "and relays the TLS bytes both ways, untouched, to one ringtls terminator (mutual TLS, `--threads 1`, "
            "`--ktls off`) that runs on core 1 with the load and the upstream. ringtls: `serve --config` with one "
            "`mode = \"passthrough\"` endpoint, `--threads 1`, 1 MiB pipes. HAProxy: `mode tcp`, `tcp-request "
            "inspect-delay 5s`, `tcp-request content accept if { req.ssl_hello_type 1 }`, `use_backend app if "
            "{ req.ssl_sni -i app.test }`; without splice, with `option splice-auto` (HAProxy splices a direction "
            "once it calls it a fast streamer: three reads in a row that fill its 16 KiB buffer), and with `option "
            "splice-request` + `option splice-response` (splice from the first byte, as ringtls does); pipes of "
            "the kernel's default size (`tune.pipesize` unset: 64 KiB). The loads of 3a and 3b (`--concurrency "
            f"{meta.get('bulk_concurrency')} --bytes {meta.get('bulk_bytes')}`) with `--server-name app.test`; per "
            "direction one terminator, every edge in turn in front of it. Edge CPU is utime+stime as above; the "
            "terminator's CPU counts with the load's in cores busy. \"path=passthrough\" and \"spliced\" are "
            "from the ringtls edge's `conn.closed` events (spliced= over up= + down=; the ClientHello, read to "
            "route, is the part not spliced); for HAProxy, \"spliced\" is from `show info` on its stats socket "
            "halfway through the run: the pipes it holds then, in use (`PipesUsed`) or pooled once empty "
            "(`PipesFree`), which is how many it has made; 0 means it has not spliced. Ratios are to each "
            "HAProxy edge; below 1 is less CPU per GiB.")
    summary = passthrough_summary(runs)
    if not summary:
        return f"### {title}\n\n{note}\n\nnot measured: block 8 did not run (`--only` without 8).\n"
    rows, notes, observations = [], [], []
    for d, label in (("up", "client → upstream"), ("down", "upstream → client")):
        if d not in summary:
            continue
        t = Table(runs, f"passthrough-{d}")
        cpu = summary[d]["cpu_s_per_gib"]
        for e, name in EDGES:
            r = t.get(e)
            if not r:
                continue
            conns = spliced = "—"
            if e == "ringtls" and isinstance(r.get("passthrough_conns"), int):
                conns = f"{r['passthrough_conns']:,} of {r['passthrough_conns'] + r.get('other_conns', 0):,}"
                frac = value(r, "derived.spliced_fraction")
                spliced = f"{num((r.get('spliced_bytes') or 0) / MIB, 1)} MiB" + \
                    ("" if frac is None else f" ({frac:.2%})")
                if frac is not None and frac < SPLICED_ENOUGH:
                    observations.append(f"{label}: the ringtls edge spliced only {frac:.1%} of the bytes it moved, "
                                        "not nearly all")
                if r.get("other_conns"):
                    observations.append(f"{label}: {r['other_conns']} connections of the ringtls edge did not take "
                                        "path=passthrough")
            mid = r.get("haproxy_mid_run")
            if isinstance(mid, dict):
                # A pipe goes back to HAProxy's pool whenever it is empty, so in use + pooled is
                # how many it has made: 0 means it never spliced.
                if mid.get("PipesUsed") is None:
                    spliced = "n/a (no answer from the stats socket)"
                else:
                    held = mid["PipesUsed"] + (mid.get("PipesFree") or 0)
                    spliced = f"yes: {held} pipe{'' if held == 1 else 's'} held halfway" if held else "no: 0 pipes held halfway"
            rows.append([label, name, num(cpu[e], 3)] + [ratio(cpu[e], cpu[b]) for b, _ in GOALS] +
                        [num(value(r, "load.mib_per_s")), conns, spliced, busy(r),
                         num((value(r, "load.bytes") or 0) / GIB, 2), num(value(r, "load.failed"), 0)])
            n = failure_note(f"{label}, {name}", r)
            if n:
                notes.append(n)
        parts = []
        names = dict(EDGES)
        for base, goal in GOALS:
            q = summary[d]["ringtls_vs_" + base.replace("-", "_")]
            if q is not None:
                parts.append(f"{q:.2f}× {names[base]} (goal ≤ {goal:g}×: {'met' if q <= goal else 'NOT met'})")
        if parts:
            observations.insert(len(observations), f"{label}: ringtls " + ", ".join(parts))
    header = (["direction", "edge", "edge CPU s / GiB"] + [f"vs {dict(EDGES)[b]}" for b, _ in GOALS] +
              ["MiB/s", "ringtls: connections on path=passthrough", "spliced",
               "cores busy: edge / load+terminator+upstream / softirq / other",
               "GiB moved", "failed"])
    text = section(title, note, header, rows, notes)
    if observations:
        text += "\n" + "\n".join(f"- {o}" for o in observations) + "\n"
    return text


# --- chart ---------------------------------------------------------------------------------------

def chart(runs, servers, meta):
    metrics = [
        ("Full handshake, ECDSA (CPU µs)", "handshake", "derived.server_cpu_us_per_op", "µs"),
        ("Full handshake, RSA-2048 (CPU µs)", "handshake-rsa", "derived.server_cpu_us_per_op", "µs"),
        ("Resumed handshake (CPU µs)", "resume", "derived.server_cpu_us_per_op", "µs"),
        ("Bulk up (CPU s / GiB)", "bulk-up", "derived.server_cpu_s_per_gib", "s"),
        ("Bulk down (CPU s / GiB)", "bulk-down", "derived.server_cpu_s_per_gib", "s"),
        ("Bulk up, one connection (CPU s / GiB)", "bulk-up-1", "derived.server_cpu_s_per_gib", "s"),
        ("Bulk down, one connection (CPU s / GiB)", "bulk-down-1", "derived.server_cpu_s_per_gib", "s"),
        ("Echo round trip (CPU µs)", "echo", "derived.server_cpu_us_per_op", "µs"),
        ("Idle connection (RSS KiB)", "idle", "derived.rss_kib_per_conn", "KiB"),
    ]
    groups = []
    for title, measure, path, unit in metrics:
        t = Table(runs, measure)
        base = t.get(BASE)
        b = value(base, path) if base else None
        bars = []
        for s in servers:
            r = t.get(s)
            v = value(r, path) if r else None
            if v is not None:
                bars.append((s, v, v / b if b else None))
        if bars:
            groups.append((title, unit, bars))
    ratios = [q for _, _, bars in groups for _, _, q in bars if q is not None]
    scale_max = min(max(ratios + [1.5]) * 1.1, 6.0)
    clipped_any = any(q > scale_max for q in ratios)

    left, right, bar_h, gap, group_gap = 190, 900, 13, 3, 18
    plot_w = right - left - 150  # room for the value labels
    width = right + 10
    y = 92
    body = []
    for title, unit, bars in groups:
        body.append(f'<text x="10" y="{y + 10}" class="group">{escape(title)}</text>')
        y += 16
        for s, v, q in bars:
            body.append(f'<text x="{left - 8}" y="{y + bar_h - 3}" class="label" text-anchor="end">{s}</text>')
            if q is None:
                body.append(f'<text x="{left + 4}" y="{y + bar_h - 3}" class="value">{num(v)} {unit} (no HAProxy figure)</text>')
            else:
                w = max(1.0, min(q, scale_max) / scale_max * plot_w)
                clipped = q > scale_max
                body.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{COLORS.get(s, "#888")}"/>')
                label = f'{q:.2f}× ({num(v)} {unit})' + (" ▸" if clipped else "")
                body.append(f'<text x="{left + w + 5:.1f}" y="{y + bar_h - 3}" class="value">{escape(label)}</text>')
            y += bar_h + gap
        y += group_gap
    height = y + 20
    one_x = left + 1.0 / scale_max * plot_w
    quick = "QUICK smoke run, not for comparison · " if meta.get("quick") == "1" else ""
    head = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'font-family="Helvetica, Arial, sans-serif">',
        "<style>.title{font-size:15px;font-weight:bold}.sub{font-size:11px;fill:#555}"
        ".group{font-size:12px;font-weight:bold}.label{font-size:11px}.value{font-size:10px;fill:#333}</style>",
        f'<rect width="{width}" height="{height}" fill="white"/>',
        '<text x="10" y="22" class="title">Server cost per unit of work, relative to HAProxy (lower is better)</text>',
        f'<text x="10" y="40" class="sub">{escape(quick)}{escape(meta.get("date", ""))} · {escape(meta.get("cpu_model", ""))}, '
        f'{escape(meta.get("nproc", "?"))} cores · one server worker on core 0, load generator on core 1</text>',
        '<text x="10" y="55" class="sub">TLS 1.3 mutual TLS, X25519 · CPU = server utime+stime per operation · '
        'RSS = server memory per idle connection</text>',
        f'<text x="10" y="70" class="sub">bars past {scale_max:.1f}× are clipped (▸)</text>' if clipped_any else "",
        f'<line x1="{one_x:.1f}" y1="78" x2="{one_x:.1f}" y2="{height - 22}" stroke="#1c7ed6" stroke-opacity="0.6" stroke-dasharray="4 3"/>',
        f'<text x="{one_x:.1f}" y="{height - 8}" class="sub" text-anchor="middle">HAProxy = 1.00×</text>',
    ]
    return "\n".join(head + body + ["</svg>"]) + "\n"


# --- results.md ----------------------------------------------------------------------------------

def refusals(runs, servers):
    """How each server refused the client without a certificate (the mtls-check runs)."""
    out = []
    for s in servers:
        r = Table(runs, "mtls-check").get(s)
        if not r or not r.get("load"):
            continue
        how = ", ".join(sorted(r["load"].get("failures", {}))) or "?"
        out.append(f"{s}: {how}")
    return "; ".join(out)


def noise(runs):
    """Median and max of the cores used by other work during the measured runs."""
    other = sorted(value(r, "derived.other_busy") for r in runs
                   if r.get("measure") not in ("warmup", "mtls-check") and value(r, "derived.other_busy") is not None)
    if not other:
        return None
    return other[len(other) // 2], other[-1]


def seconds(text):
    """'12000ms' -> '12 s' (the load's duration syntax, as the script passes it)."""
    if text and text.endswith("ms") and text[:-2].isdigit():
        return f"{int(text[:-2]) / 1000:g} s"
    return text


def echo_runs_note(meta):
    """How the fixed-rate echo runs were ordered; records from before it was repeated have one."""
    n = meta.get("echo_runs")
    if n is None:
        return "One run per server (records from before the echo was repeated)."
    return (f"{n} runs per server, interleaved: every server's run 1, then every server's run 2, and so on; run 1 "
            "follows the handshake runs on the server process of table 1, the later runs each on a fresh server "
            "process after a warm-up.")


def results_md(meta, runs, floor, servers):
    quick = meta.get("quick") == "1"
    dur = seconds(meta.get("duration"))
    idle_n, idle_wanted = meta.get("idle_n"), meta.get("idle_wanted")
    lines = ["# ringtls side by side with HAProxy, nginx and stunnel (mutual TLS)", ""]
    if quick:
        lines += ["> **QUICK smoke run** (`--quick`: short runs, few connections). The numbers show that "
                  "the harness works; do not compare them. Run `scripts/bench.sh` for real figures.", ""]
    lines += [
        f"- Date: {meta.get('date')} (run took {meta.get('elapsed_s')} s)",
        f"- Machine: {meta.get('nproc')} cores, {meta.get('cpu_model')}, {meta.get('memory')}, {meta.get('kernel')}",
        f"- ringtls {meta.get('ringtls')}, {meta.get('rustc')} (rustls + aws-lc-rs)",
        f"- {meta.get('haproxy')}",
        f"- {meta.get('nginx')} (stream module)",
        f"- {meta.get('stunnel')}",
        f"- {meta.get('openssl')} (used by HAProxy, nginx and stunnel)",
        "",
        "**Setup.** Each server terminates TLS 1.3 with a required client certificate verified against the "
        "same `ca.pem` (ECDSA P-256 root, server and client certificates from `ringtls pki`) and forwards to "
        "the same plaintext `ringtls upstream` (echo, sink or source). Each server runs ONE worker pinned to "
        "core 0 (`taskset -c 0`; HAProxy `nbthread 1`; nginx `master_process off`, so its one process is the "
        "worker; stunnel as packaged, a thread per connection, whole process; ringtls `--threads 1`); the load "
        "generator (`ringtls load`, one thread) and the upstreams share core 1. Every load run offers X25519 "
        "only (rustls would otherwise negotiate X25519MLKEM768 with ringtls and X25519 with OpenSSL 3.0). "
        "Every server writes one log line per connection to a file. Before measuring, each server is checked "
        f"to let no byte of a client without a certificate through ({refusals(runs, servers)}).",
        "",
        "**Method.** Server CPU is utime+stime of the server process from `/proc/PID/stat` (all threads), "
        "read before and after one load run and divided by the operations of that run; on a busy 2-core "
        "machine this is steadier than a rate, which the load generator on the other core can bound. "
        "\"cores busy\" splits the run's CPU over its wall time: the server, the load generator with the "
        "upstream (core 1), interrupts and softirqs (from `/proc/stat`: most of a run's loopback network "
        "work lands there, charged to no process, so the server CPU figures leave it out for every server "
        "alike), and everything else on the machine. A server near 1.00 was the bottleneck; "
        "\"other\" well above 0 means other work shared the machine (marked †), and the rates (less so "
        f"the CPU per operation) of that row are depressed. Each row is one {dur} load run (after a {seconds(meta.get('warmup'))} "
        "warm-up); ratios are to HAProxy (HAProxy = 1.00×): below 1 is less CPU, memory or latency, above 1 "
        "is more, as the column says. \"user\" and \"kernel\" split the server CPU into utime and stime (fields "
        "14 and 15 of `/proc/PID/stat`, read at the same moments as their sum): user is the TLS library, the "
        "crypto and the proxy's own code, kernel is the system calls (sockets, epoll or io_uring, splice). The "
        "kernel splits a process's runtime between the two by where its timer ticks land, so the split is a "
        "sample: read it over a full run's thousands of ticks, not a quick run's hundred.",
        "",
        "![Server CPU and memory per unit of work, relative to HAProxy](chart.svg)",
        "",
    ]
    n = noise(runs)
    if n:
        lines += [f"Other work on the machine during the measured runs: median {n[0]:.2f} cores, max "
                  f"{n[1]:.2f} cores (of {meta.get('nproc')}).", ""]
    lines += [
        "## Results",
        "",
    ]
    floor_note = (f"ringtls' user µs against the crypto floor (`{FLOOR_TARGETS['handshake'][0]}`, the floor of a "
                  f"full handshake whose client chain is cached, target ≤ {FLOOR_TARGETS['handshake'][1]:g}×; and "
                  f"`{FLOOR_FULL}`, one that verifies it afresh), with \"target met\" or \"NOT met\"; \"floor not "
                  "measured\" when the run had no crypto floor (`--no-build`, or an older floor without that "
                  "line).")
    lines.append(handshake_section(
        runs, servers, "handshake", "1. Full handshake, ECDSA P-256 server certificate",
        f"`--mode handshake --concurrency {meta.get('handshake_concurrency')}`: new TCP connection, full TLS 1.3 "
        "mutual-TLS handshake, the server's first post-handshake record (a session ticket), close. Lower "
        f"CPU is better. Kernel vs HAProxy is the ratio of kernel µs. The floor columns: {floor_note}", floor))
    lines.append(handshake_section(
        runs, servers, "handshake-rsa", "1b. Full handshake, RSA-2048 server certificate",
        "As 1, with an RSA-2048 server certificate signed by the same root (the client certificate stays "
        "ECDSA). No floor column: the crypto floor signs with ECDSA P-256.", floor))
    lines.append(handshake_section(
        runs, servers, "resume", "2. Resumed handshake (session tickets)",
        "As 1 with `--resume`: the client offers its last ticket from that server. \"server CPU µs / "
        "handshake\" averages over all handshakes of the run, resumed or not; the resumed fraction is what the "
        "load generator saw; the estimate per resumed handshake takes out the full handshakes of the run at "
        "the cost that server showed in table 1, and the user estimate does the same with user time alone "
        f"(user µs of this run less its full handshakes at table 1's user µs). ringtls' user estimate is held to "
        f"`{FLOOR_TARGETS['resume'][0]}` (X25519, ticket open and seal; target ≤ {FLOOR_TARGETS['resume'][1]:g}×).",
        floor))
    lines.append(floor_lines(floor_targets(runs, floor)))
    bulk1 = (f"As above with one connection: `--concurrency 1 --bytes {meta.get('bulk1_bytes', 'n/a')}`, run on the "
             "same server process right after the four-connection load. The load reconnects after each `--bytes` "
             "until `--duration` is up, and a connection the deadline cuts short counts what it moved, so CPU per "
             "GiB is over the bytes the load counted (GiB moved), not `--bytes`; connections is how many it made.")
    lines.append(bulk_section(
        runs, servers, "bulk-up", "3a. Bulk, client to upstream",
        f"`--mode bulk-up --concurrency {meta.get('bulk_concurrency')} --bytes {meta.get('bulk_bytes')}` to a sink "
        "upstream. Lower CPU per GiB is better."))
    lines.append(bulk_section(runs, servers, "bulk-up-1", "3a-1. Bulk, client to upstream, one connection",
                              bulk1, split=True))
    lines.append(bulk_section(
        runs, servers, "bulk-down", "3b. Bulk, upstream to client",
        f"`--mode bulk-down --concurrency {meta.get('bulk_concurrency')} --bytes {meta.get('bulk_bytes')}` from a "
        "source upstream."))
    lines.append(bulk_section(runs, servers, "bulk-down-1", "3b-1. Bulk, upstream to client, one connection",
                              bulk1, split=True) + "\n" + bulk1_line(bulk1_target(runs)))
    lines.append(echo_repeated_section(
        runs, servers, "4a. Echo latency at a fixed offered rate",
        f"`--mode echo --concurrency {meta.get('echo_concurrency')} --size {meta.get('echo_size')} --rate "
        f"{meta.get('echo_rate')}`: the same offered rate for every server. A round trip sent on schedule is "
        "timed from the actual send (the load generator's own timer lateness is not the server's); one sent "
        "late because the previous reply was late is timed from its due time, so a server stall still counts "
        f"(no coordinated omission). {echo_runs_note(meta)} The table shows the medians over the runs and the "
        "p99s' spread (min–max); p99 vs best peer is the ratio to the lowest median p99 among the other servers "
        "(named)."))
    lines.append(echo_section(
        runs, servers, "echo-unpaced", "4b. Echo round trip, one connection, unpaced",
        f"`--mode echo --concurrency 1 --size {meta.get('echo_size')}` without `--rate`: closed loop, one "
        "64-byte round trip after another, so the figure is the proxy's own round-trip time."))
    idle_note = (f"`--mode idle`, {idle_n} connections opened in batches of {meta.get('idle_batch')} (one load "
                 "process per batch, the next once the previous is established, so that no handshake waits past "
                 "the load's 10 s connect timeout): RSS (VmRSS) of the server before and once all connections "
                 "are established and its fd count has settled, difference divided by the connections held. "
                 "Each connection holds a client and an upstream socket; the baseline is taken after a warm-up.")
    if idle_n != idle_wanted:
        idle_note += (f" The fd hard limit on this machine is {meta.get('nofile')} and cannot be raised here, "
                      f"so {idle_n} connections were held instead of {idle_wanted}.")
    lines.append(idle_section(runs, servers, f"5. Memory per idle connection ({int(idle_n):,} connections)", idle_note))
    lines.append(threads_section(runs))
    lines.append(ktls_section(runs, meta))
    lines.append(passthrough_section(runs, meta))
    notes_path = meta.get("_notes")
    if notes_path:
        lines += ["### Observations from the run", ""] + [f"- {n}" for n in notes_path] + [""]
    lines += ["### Crypto floor", ""]
    if floor is None:
        lines.append("crypto floor: not measured (no `crypto_floor` bench target, or a `--no-build` run; "
                     "otherwise `cargo bench --bench crypto_floor -- --json` is run and its JSON line is "
                     "shown here).")
    else:
        lines += ["`cargo bench --bench crypto_floor -- --json`, on core 0:", "", "```json",
                  json.dumps(floor, indent=2), "```"]
    lines += [
        "",
        "## How to reproduce",
        "",
        f"`{meta.get('command')}` on a Debian 12 machine with at least 2 cores (it installs haproxy, nginx, "
        "libnginx-mod-stream and stunnel4 if missing, builds ringtls, and writes results.md, chart.svg and "
        "raw.json here; `--quick` is a 1-2 minute smoke run). raw.json holds every load run's JSON and the "
        "CPU, RSS and fd readings taken around it; every figure above is derived from it.",
        "",
    ]
    return "\n".join(lines)


def targets_summary(runs, floor, servers):
    """The issue's targets that results.md marks met or NOT met, as raw.json's "targets"; the same
    dicts the tables print from, so the two cannot disagree."""
    stats = {s: echo_stats(echo_runs(runs, s)) for s in servers}
    out = floor_targets(runs, floor)
    out["bulk_down_1_vs_haproxy"] = bulk1_target(runs)
    out["echo_p99_vs_best_peer"] = echo_target({s: st for s, st in stats.items() if st})
    return out


def write(meta, floor, runs, out):
    """raw.json, results.md and chart.svg into out."""
    wanted = [s for s in meta.get("servers", ",".join(SERVERS)).split(",") if s]
    servers = [s for s in SERVERS if s in wanted]
    raw = {"meta": meta, "crypto_floor": floor, "runs": runs, "passthrough": passthrough_summary(runs),
           "targets": targets_summary(runs, floor, servers)}
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "raw.json"), "w") as f:
        json.dump(raw, f, indent=1)
        f.write("\n")
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(results_md(meta, runs, floor, servers))
    with open(os.path.join(out, "chart.svg"), "w") as f:
        f.write(chart(runs, servers, meta))


def write_from_work(work, out):
    """The report of one bench.py run from its work dir (bench.py calls this)."""
    meta = read_meta(os.path.join(work, "meta.txt"))
    notes = tail(os.path.join(work, "notes.txt"), 100)
    if notes:
        meta["_notes"] = notes
    write(meta, crypto_floor(work), read_runs(work), out)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--work", help="the bench run's temp dir")
    src.add_argument("--from-raw", help="re-render from a raw.json written before")
    ap.add_argument("--out", required=True, help="where results.md, chart.svg and raw.json go")
    args = ap.parse_args()
    if not args.from_raw:
        write_from_work(args.work, args.out)
        return
    with open(args.from_raw) as f:
        raw = json.load(f)
    for run in raw["runs"]:
        run["derived"] = derive(run)
    write(raw["meta"], raw.get("crypto_floor"), raw["runs"], args.out)


if __name__ == "__main__":
    main()
