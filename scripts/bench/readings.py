"""scripts/bench/readings.py: what a bench.py run reads, and how: /proc (CPU ticks, RSS, fds,
threads, listening sockets), the load generator's JSON and progress lines, ringtls' event log, and
the peers' config templates. The parsers take text, not paths, so that `bench.py --self-test` can
feed them canned inputs.
"""

import json
import os
import re
import resource
import socket
import subprocess


def stat_times(text):
    """(utime, stime) in clock ticks from /proc/PID/stat, fields 14 and 15: the process line sums
    all its threads, exited included. The command name may hold spaces and parentheses: fields
    count from the last ')'."""
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def stat_ticks(text):
    """utime+stime in clock ticks from /proc/PID/stat."""
    return sum(stat_times(text))


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


def cpu_times(pid):
    """(utime, stime) of pid in clock ticks; their sum is cpu_ticks, from the same read."""
    return stat_times(read(f"/proc/{pid}/stat"))


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


def passthrough_totals(log_text):
    """From a passthrough edge's conn.closed events: connections with path=passthrough, those with
    any other path (or none), and the sums of up=, down= and spliced= over all of them."""
    t = {"passthrough": 0, "other": 0, "up": 0, "down": 0, "spliced": 0}
    for line in log_text.splitlines():
        f = line.split()
        if len(f) < 3 or f[2] != "conn.closed":
            continue
        m = re.search(r" path=([a-z]+)", line)
        t["passthrough" if m and m.group(1) == "passthrough" else "other"] += 1
        for key in ("up", "down", "spliced"):
            m = re.search(rf" {key}=(\d+)", line)
            t[key] += int(m.group(1)) if m else 0
    return t


def info_fields(text):
    """HAProxy's `show info` answer as a dict of its integer fields (Maxpipes, PipesUsed, ...)."""
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition(":")
        if sep and v.strip().isdigit():
            out[k.strip()] = int(v.strip())
    return out


def haproxy_info(path, timeout=2.0):
    """`show info` over HAProxy's stats socket, parsed; {} when it does not answer in time."""
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(timeout)
            s.connect(path)
            s.sendall(b"show info\n")
            chunks = []
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
    except OSError:
        return {}
    return info_fields(b"".join(chunks).decode(errors="replace"))


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
