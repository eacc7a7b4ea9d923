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
# shellcheck source=scripts/lib/rig.sh
source "$ROOT/scripts/lib/rig.sh"
rig_start "$BIN"

for run in $(seq 1 "$RUNS"); do
    rig_pinned "$BIN"
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
    rig_stop
done
