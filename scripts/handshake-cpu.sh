#!/usr/bin/env bash
# scripts/handshake-cpu.sh [BINARY] [RUNS] — server CPU per full mTLS handshake of one ringtls
# build, for quick A/B checks between builds (scripts/bench.sh is the full comparison).
#
# One worker pinned to core 0, `ringtls load --mode handshake --concurrency 16` and an echo
# upstream on core 1, 127.0.0.1 only; server CPU is utime+stime from /proc before and after a
# 6 s run, divided by the handshakes done, and split into user and kernel time. Prints one line
# per run.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${1:-$ROOT/target/release/ringtls}
RUNS=${2:-3}
[[ -x $BIN ]] || { echo "handshake-cpu: $BIN is not an executable (cargo build --release?)" >&2; exit 64; }
WORK=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
"$BIN" pki "$WORK/pki" > /dev/null

# Waits (bounded) for a process's one-line readiness JSON and prints its first address.
listening() {
    local file=$1
    for _ in $(seq 1 100); do
        if [[ -s $file ]]; then
            python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["listening"][0])' "$file"
            return
        fi
        sleep 0.05
    done
    echo "handshake-cpu: no listening line in $file" >&2
    exit 1
}

for run in $(seq 1 "$RUNS"); do
    taskset -c 1 "$BIN" upstream --mode echo > "$WORK/up.out" & pids+=($!)
    up=$(listening "$WORK/up.out")
    taskset -c 0 "$BIN" serve --threads 1 --listen 127.0.0.1:0 --upstream "$up" \
        --crt "$WORK/pki/server.pem" --key "$WORK/pki/server.key" \
        --mutual-tls-cas "$WORK/pki/ca.pem" > "$WORK/serve.out" 2> /dev/null & spid=$!; pids+=("$spid")
    addr=$(listening "$WORK/serve.out")
    load=(taskset -c 1 "$BIN" load --connect "$addr" --ca "$WORK/pki/ca.pem"
          --crt "$WORK/pki/client.pem" --key "$WORK/pki/client.key"
          --mode handshake --group X25519 --concurrency 16)
    "${load[@]}" --duration 1s > /dev/null 2>&1   # warm-up
    read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$spid/stat")
    out=$("${load[@]}" --duration 6s --json 2> /dev/null)
    read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$spid/stat")
    hz=$(getconf CLK_TCK)
    python3 -c '
import json, sys
d = json.loads(sys.argv[1]); user, system, hz = (int(a) for a in sys.argv[2:5])
per = lambda ticks: ticks / hz * 1e6 / max(d["ok"], 1)
print("run %s: %d handshakes/s, %.0f us server CPU per handshake (user %.0f, kernel %.0f)"
      % (sys.argv[5], d["per_second"], per(user + system), per(user), per(system)))
' "$out" "$((u1 - u0))" "$((s1 - s0))" "$hz" "$run"
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    pids=()
done
