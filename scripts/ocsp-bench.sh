#!/usr/bin/env bash
# scripts/ocsp-bench.sh [BINARY] [RUNS] — what `--ocsp` costs, measured against itself in one run:
#
#  1. server CPU per full mTLS handshake with `--ocsp hard` and a warm answer cache, beside the
#     same server with `--ocsp off` (the ratio is the figure: the issue's bar is 1.05);
#  2. handshake latency (p50/p90/p99 of `ringtls load --mode handshake`, which waits for the
#     server's first record after the handshake, so the certificate check is inside it) of
#     clients whose answer is cached, with and without 50 other clients' connections waiting on
#     a responder that never answers, all on one worker.
#
# Everything is on 127.0.0.1: OpenSSL's own responder (`openssl ocsp -port 0`) for the cached
# answers, a python3 listener that accepts and never answers for the slow one. The PKI is made
# here with `ringtls pki` and openssl, in a temporary directory removed at exit. RUNS (default 6)
# measures both sides each time, in alternating order; the per-run figures and their medians
# are printed and written to benches/results/ocsp/. A 1% difference is below this machine's
# run-to-run noise (±10%): read the spread before the median.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${1:-$ROOT/target/release/ringtls}
RUNS=${2:-6}
WAITING=50
[[ -x $BIN ]] || { echo "ocsp-bench: $BIN is not an executable (cargo build --release?)" >&2; exit 64; }
for tool in openssl python3 taskset curl; do
    command -v "$tool" > /dev/null || { echo "ocsp-bench: needs $tool" >&2; exit 69; }
done
# shellcheck source=scripts/lib/rig.sh
source "$ROOT/scripts/lib/rig.sh"
rig_start "$BIN"
P=$WORK/pki

# Waits (bounded) for a file to hold a line matching a pattern and prints that line.
wait_line() {
    local file=$1 pattern=$2
    for _ in $(seq 1 200); do
        if grep -q -- "$pattern" "$file" 2>/dev/null; then
            grep -m1 -- "$pattern" "$file"
            return
        fi
        sleep 0.05
    done
    echo "ocsp-bench: nothing matching $pattern in $file" >&2
    exit 1
}

# The responders: OpenSSL's, whose index names the answered certificate (serial 0x1000) before
# it exists, and one that holds every connection without a word, for at most five minutes.
printf 'V\t491231235959Z\t\t1000\tunknown\t/CN=answered\n' > "$WORK/index.txt"
openssl ocsp -index "$WORK/index.txt" -port 0 -CA "$P/ca.pem" -rsigner "$P/ca.pem" -rkey "$P/ca.key" \
    -ndays 1 -ignore_err > "$WORK/ocsp.out" 2> "$WORK/ocsp.err" & pids+=($!)
fast=$(wait_line "$WORK/ocsp.out" '^ACCEPT' | sed -E 's/.*:([0-9]+) PID.*/\1/')
python3 - "$WORK/silent.port" <<'PY' & pids+=($!)
import os, socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(128)
open(sys.argv[1] + ".tmp", "w").write(str(s.getsockname()[1]))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
s.settimeout(1)
held, end = [], time.time() + 300
while time.time() < end and len(held) < 1000:
    try:
        held.append(s.accept()[0])
    except socket.timeout:
        pass
PY
for _ in $(seq 1 100); do [[ -s $WORK/silent.port ]] && break; sleep 0.05; done
silent=$(cat "$WORK/silent.port")

# Client certificates naming their responder (authorityInfoAccess): one answered, WAITING not.
issue() { # NAME URL SERIAL
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
        -keyout "$WORK/$1.key" -out "$WORK/$1.csr" 2> /dev/null
    printf 'extendedKeyUsage=clientAuth\nauthorityInfoAccess=OCSP;URI:%s\n' "$2" > "$WORK/$1.ext"
    openssl x509 -req -in "$WORK/$1.csr" -CA "$P/ca.pem" -CAkey "$P/ca.key" -set_serial "$3" \
        -days 1 -extfile "$WORK/$1.ext" -out "$WORK/$1.pem" 2> /dev/null
}
issue answered "http://127.0.0.1:$fast/" 4096
for i in $(seq 1 "$WAITING"); do issue "waiting$i" "http://127.0.0.1:$silent/" $((5000 + i)); done

taskset -c 1 "$BIN" upstream --mode echo > "$WORK/up.out" & pids+=($!)
up=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["listening"][0])' "$(wait_line "$WORK/up.out" listening)")

# Starts ringtls on core 0 with one worker and `--ocsp MODE`; sets $spid, $addr and $metrics.
start() {
    taskset -c 0 "$BIN" serve --threads 1 --listen 127.0.0.1:0 --upstream "$up" \
        --crt "$P/server.pem" --key "$P/server.key" --mutual-tls-cas "$P/ca.pem" \
        --ocsp "$1" ${2:+--ocsp-timeout "$2"} --metrics 127.0.0.1:0 --log-connections none \
        > "$WORK/serve.out" 2> "$WORK/serve.err" & spid=$!; pids+=("$spid")
    local ready
    ready=$(wait_line "$WORK/serve.out" listening)
    addr=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["listening"][0])' "$ready")
    metrics=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["metrics"])' "$ready")
}
stop() { kill "$spid" 2>/dev/null || true; wait "$spid" 2>/dev/null || true; }
load() { # DURATION
    taskset -c 1 "$BIN" load --connect "$addr" --ca "$P/ca.pem" --crt "$WORK/answered.pem" \
        --key "$WORK/answered.key" --mode handshake --group X25519 --concurrency "${CONC:-8}" \
        --duration "$1" --json 2> /dev/null
}
cpu_run() { # MODE -> "per_handshake_us user_us kernel_us failed"
    start "$1" "$([[ $1 == off ]] || echo 3s)"
    load 1s > /dev/null   # warm-up: the answer is cached from here on
    read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$spid/stat")
    out=$(load 10s)
    read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$spid/stat")
    stop
    python3 -c '
import json, sys
d = json.loads(sys.argv[1]); u, s, hz = (int(a) for a in sys.argv[2:5])
per = lambda t: t / hz * 1e6 / max(d["ok"], 1)
print("%.1f %.1f %.1f %d" % (per(u + s), per(u), per(s), d["failed"]))
if d["failed"]:
    print("ocsp-bench: failures:", d["failures"], file=sys.stderr)
' "$out" "$((u1 - u0))" "$((s1 - s0))" "$(getconf CLK_TCK)"
}
latency_run() { # WAIT(0|1) -> "p50 p90 p99 failed active"
    start soft 60s
    CONC=1 load 1s > /dev/null
    local held=()
    if [[ $1 == 1 ]]; then
        for i in $(seq 1 "$WAITING"); do
            # Each completes its handshake and then waits, its upstream not yet dialled.
            (sleep 30 | openssl s_client -connect "$addr" -servername localhost -CAfile "$P/ca.pem" \
                -cert "$WORK/waiting$i.pem" -key "$WORK/waiting$i.key" -quiet) > /dev/null 2>&1 &
            held+=($!)
            disown $!
        done
        for _ in $(seq 1 200); do
            active=$(curl -s "http://$metrics/metrics" 2>/dev/null | awk '$1=="ringtls_connections_active"{print $2}')
            [[ ${active:-0} -ge $WAITING ]] && break
            sleep 0.05
        done
    fi
    out=$(CONC=1 load 5s)
    # Still waiting when the measurement ended: the connections held, and no OCSP answer came.
    active=$(curl -s "http://$metrics/metrics" | awk '$1=="ringtls_connections_active"{print $2}')
    for p in "${held[@]}"; do pkill -P "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
    stop
    python3 -c '
import json, sys
d = json.loads(sys.argv[1]); l = d["latency_us"]
print(l["p50"], l["p90"], l["p99"], d["failed"], sys.argv[2])' "$out" "${active:-0}"
}

mkdir -p "$ROOT/benches/results/ocsp"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
report=$ROOT/benches/results/ocsp/$stamp.txt
{
    echo "# scripts/ocsp-bench.sh at $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown), $stamp, $RUNS runs"
    # Odd runs measure off first, even runs hard first: drift over the run cancels out.
    for run in $(seq 1 "$RUNS"); do
        if (( run % 2 )); then
            echo "cpu off $(cpu_run off)"
            echo "cpu hard $(cpu_run hard)"
            echo "latency quiet $(latency_run 0)"
            echo "latency waiting $(latency_run 1)"
        else
            echo "cpu hard $(cpu_run hard)"
            echo "cpu off $(cpu_run off)"
            echo "latency waiting $(latency_run 1)"
            echo "latency quiet $(latency_run 0)"
        fi
    done
} | tee "$report.raw"
python3 - "$report.raw" <<'PY' | tee "$report"
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if not l.startswith("#")]
def col(kind, side, i):
    return [float(r[2 + i]) for r in rows if r[0] == kind and r[1] == side]
off, hard = col("cpu", "off", 0), col("cpu", "hard", 0)
ratios = [h / o for h, o in zip(hard, off)]
print("server CPU per handshake, us (user+kernel): off %s, hard warm %s" % (
    " ".join("%.0f" % v for v in off), " ".join("%.0f" % v for v in hard)))
print("ratio hard/off per run: %s; median %.3f (bar: 1.05)" % (
    " ".join("%.3f" % r for r in ratios), statistics.median(ratios)))
for name, i in (("p50", 0), ("p90", 1), ("p99", 2)):
    q, w = col("latency", "quiet", i), col("latency", "waiting", i)
    print("handshake latency %s us: quiet %s (median %.0f), %d waiting on a silent responder %s (median %.0f)" % (
        name, " ".join("%.0f" % v for v in q), statistics.median(q), 50,
        " ".join("%.0f" % v for v in w), statistics.median(w)))
failed = sum(float(r[5]) for r in rows)
print("failed operations over all runs: %d" % failed)
held = [int(r[6]) for r in rows if r[0] == "latency" and r[1] == "waiting"]
print("connections open at the end of each waiting run (the 50 held, still unanswered): %s" % held)
PY
echo "ocsp-bench: written to $report"
