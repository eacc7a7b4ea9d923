#!/usr/bin/env bash
# scripts/soak.sh: runs ringtls for N minutes under mixed traffic on loopback and fails if it leaks
# memory or file descriptors, lets a good client fail, lets a bad client through, or does not stop
# cleanly.
#
#   scripts/soak.sh [--minutes N] [--out DIR] [--bin PATH] [--no-build] [--keep]
#
# --minutes N  length of the mixed phase (default 10)
# --out DIR    where summary.txt and samples.csv go (default benches/results/soak)
# --bin PATH   the ringtls binary (default target/release/ringtls, built first unless --no-build)
# --keep       keep the work dir (PKIs, logs, load JSON) even when the run passes
#
# Traffic, all at once for N minutes, each stream a loop of `ringtls load --json` runs of at most
# 15 s until the end time: full handshakes (concurrency 16), resumed handshakes (8), bulk-up
# (2 x 1 MiB per connection), bulk-down (2 x 4 MiB), echo (8 connections, 1 KiB, 1,000 round trips
# per second), a client signed by a CA the server does not trust (2; a second `ringtls pki`,
# refused as unknown_ca, alert 48; runs before 2026-11-29's CA naming saw alert 51) and a client without a
# certificate (2); 200 idle connections held from start to end; every 30 s the CA bundle is
# rewritten, alternately our CA alone and our CA plus an unrelated one, and SIGHUP sent.
# The monitored server has an echo upstream. bulk-down needs an upstream that sends, so it goes
# through a second ringtls (same PKI, `upstream --mode source`), which gets the same reloads and
# the same end-of-run checks except the memory bounds.
#
# Every 10 s: the server's VmRSS, open fds and ringtls_connections_active -> samples.csv.
#
# A stalled log reader, mid-run: the monitored server's stderr is a pipe that a relay (`cat` into
# server.log) empties; in the middle of the mixed phase the relay is stopped (SIGSTOP) for 60 s
# (a third of runs shorter than 3 minutes), as a stuck log collector or a paused terminal would
# stall. The pipe fills, and every bound below must hold through it; afterwards the server must
# have counted dropped lines (ringtls_log_events_dropped_total > 0) and logged `log.dropped`.
# Reloads are therefore confirmed from /metrics (ringtls_reloads_total{result="ok"}), not from
# the log.
#
# Bounds (any violation: exit 1, work dir kept):
# - RSS: the median of the last minute's samples (6; half the samples after warm-up in runs
#   shorter than 3 minutes) may exceed the median of the first minute after warm-up (60 s, or the
#   first 20% of shorter runs) by at most max(20%, 16 MiB). On the 2-core machine RSS climbs from
#   25 MiB (idle connections only) to 35-47 MiB within the first 20 s and then swings by up to
#   15 MiB between samples with the bulk buffers in use (128 KiB per direction per connection) and
#   the allocator's arenas: medians, not single samples, and a bound above one swing. A leak of even
#   1 KiB per handshake would add over 500 MiB in 10 minutes at ~1,000 handshakes/s.
# - fds: with only the 200 idle connections open (before the mix and again after it), the server's
#   fd count may differ by at most 4 (a scrape connection of the metrics thread in flight);
#   each connection costs 2 fds, so three connections leaked over the whole run show.
# - good clients: zero failures in every run; bad clients: zero successes in every run; every load
#   run ends by itself within its duration + 30 s; every SIGHUP logs reload.ok.
# - both servers alive at the end, exit 0 within --drain-timeout (5 s) + 5 s of SIGTERM while the
#   idle connections are still held; no panic in their logs.
#
# Loopback only. The machine this was written on has 2 cores: ringtls runs --threads 2, every load
# generator --threads 1, niced, so the server gets the CPU it asks for.
set -euo pipefail

usage() { sed -n '2,51p' "$0" | sed 's/^# \{0,1\}//'; }

MINUTES=10
BUILD=1
KEEP=0
BIN=
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="$ROOT/benches/results/soak"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --minutes) MINUTES=${2:?--minutes needs a number}; shift ;;
        --out) OUT=${2:?--out needs a directory}; shift ;;
        --bin) BIN=${2:?--bin needs a path}; shift ;;
        --no-build) BUILD=0 ;;
        --keep) KEEP=1 ;;
        -h | --help) usage; exit 0 ;;
        *) printf 'soak: unknown option %s\n' "$1" >&2; usage >&2; exit 64 ;;
    esac
    shift
done
[[ $MINUTES =~ ^[0-9]+$ && $MINUTES -ge 1 && $MINUTES -le 1440 ]] || {
    printf 'soak: --minutes %s: expected a whole number from 1 to 1440\n' "$MINUTES" >&2
    exit 64
}

# --- sizes ---------------------------------------------------------------------------------------
RUN_S=15          # one load run; a fresh load process every RUN_S exercises connection churn too
RELOAD_EVERY=30
SAMPLE_EVERY=10
IDLE_CONNS=200
DRAIN_S=5
TOTAL_S=$((MINUTES * 60))
WARMUP_S=$((TOTAL_S / 5 < 60 ? TOTAL_S / 5 : 60))
RSS_PCT=20
RSS_MIN_KIB=$((16 * 1024))
FD_MARGIN=4
STALL_S=$((TOTAL_S >= 180 ? 60 : TOTAL_S / 3))

log() { printf 'soak: [%4ds] %s\n' "$SECONDS" "$*" >&2; }
die() {
    printf '\nsoak: FAILED: %s\n' "$*" >&2
    exit 1
}

cd "$ROOT"
if [[ -z $BIN ]]; then
    BIN="$ROOT/target/release/ringtls"
    if [[ $BUILD == 1 ]]; then
        log "cargo build --release"
        cargo build --release --quiet
    fi
fi
[[ -x $BIN ]] || die "$BIN not found or not executable (run cargo build --release, or pass --bin)"
for tool in curl python3 timeout; do
    command -v "$tool" > /dev/null || die "$tool not found"
done
# 200 idle connections hold 2 fds each in the server, plus the churn of the other streams.
[[ $(ulimit -n) == unlimited || $(ulimit -n) -ge 4096 ]] || ulimit -n 4096 2> /dev/null ||
    die "open-file limit $(ulimit -n) is below 4096 and cannot be raised"

# --- work dir and cleanup (scripts/lib/work.sh) -----------------------------------------------
# shellcheck source=scripts/lib/work.sh
. "$(dirname "$0")/lib/work.sh"
work_dir soak
mkdir -p "$WORK/loads" "$OUT"

# --- PKI -----------------------------------------------------------------------------------------
# good: the server's CA and the client it signed; rogue: a client signed by a CA the server never
# trusts; extra: a CA added to and removed from the bundle on reload (never rogue's, or the rogue
# client would get in).
for d in good rogue extra; do
    "$BIN" pki "$WORK/$d" > /dev/null 2>&1 || die "ringtls pki $WORK/$d failed"
done
CAS="$WORK/cas.pem"
cp "$WORK/good/ca.pem" "$CAS"

# --- processes -----------------------------------------------------------------------------------
# listening_line FILE PID NAME: waits (bounded) for the `{"listening":[...]}` line, prints it.
listening_line() {
    local file=$1 pid=$2 name=$3 line
    for _ in {1..200}; do
        line=$(grep -m1 '^{"listening"' "$file" 2> /dev/null || true)
        [[ -n $line ]] && { echo "$line"; return 0; }
        kill -0 "$pid" 2> /dev/null || die "$name exited before listening; its stderr: $(tail -n3 "$WORK/$name.log" 2> /dev/null)"
        sleep 0.05
    done
    die "$name did not print its listening line within 10 s"
}
first_addr() { sed -nE 's/^\{"listening":\["([^"]+)".*/\1/p' <<< "$1"; }
metrics_addr() { sed -nE 's/.*"metrics":"([^"]+)".*/\1/p' <<< "$1"; }

# start_upstream NAME MODE -> sets ADDR
start_upstream() {
    local name=$1 mode=$2 pid
    "$BIN" upstream --listen 127.0.0.1:0 --mode "$mode" > "$WORK/$name.out" 2> "$WORK/$name.log" &
    pid=$!
    CHILDREN+=("$pid")
    ADDR=$(first_addr "$(listening_line "$WORK/$name.out" "$pid" "$name")")
}

# start_server NAME UPSTREAM [RELAYED] -> sets PID, ADDR, METRICS; with RELAYED, stderr is a
# FIFO that a relay (RELAY_PID) copies to NAME.log, so the test can stall it.
start_server() {
    local name=$1 upstream=$2 relayed=${3:-} line err
    err="$WORK/$name.log"
    if [[ -n $relayed ]]; then
        mkfifo "$WORK/$name.fifo"
        cat "$WORK/$name.fifo" > "$WORK/$name.log" &
        RELAY_PID=$!
        CHILDREN+=("$RELAY_PID")
        err="$WORK/$name.fifo"
    fi
    "$BIN" serve --listen 127.0.0.1:0 --metrics 127.0.0.1:0 --upstream "$upstream" \
        --crt "$WORK/good/server.pem" --key "$WORK/good/server.key" --mutual-tls-cas "$CAS" \
        --threads 2 --drain-timeout "${DRAIN_S}s" --idle-timeout "$((TOTAL_S + 300))s" \
        > "$WORK/$name.out" 2> "$err" &
    PID=$!
    CHILDREN+=("$PID")
    line=$(listening_line "$WORK/$name.out" "$PID" "$name")
    ADDR=$(first_addr "$line")
    METRICS=$(metrics_addr "$line")
    [[ -n $ADDR && -n $METRICS ]] || die "$name: cannot read the addresses from its listening line: $line"
}

start_upstream upstream-echo echo
UP_ECHO=$ADDR
start_upstream upstream-source source
UP_SOURCE=$ADDR
start_server server "$UP_ECHO" relayed
SRV_PID=$PID SRV_ADDR=$ADDR SRV_METRICS=$METRICS
start_server server-down "$UP_SOURCE"
DOWN_PID=$PID DOWN_ADDR=$ADDR DOWN_METRICS=$METRICS
log "server pid $SRV_PID on $SRV_ADDR (metrics $SRV_METRICS, upstream echo $UP_ECHO); bulk-down server pid $DOWN_PID on $DOWN_ADDR (upstream source $UP_SOURCE); work dir $WORK"

# --- /proc and /metrics readings -----------------------------------------------------------------
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2> /dev/null; }
fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2> /dev/null | wc -l; }
scrape() { curl -sf --max-time 3 "http://$1/metrics"; }
# metric ADDR NAME{LABELS}: the value of one series (sum over matching lines), 0 if absent.
metric() {
    scrape "$1" | awk -v want="$2" 'index($0, want) == 1 { s += $NF } END { printf "%d\n", s }'
}
active() { metric "$1" 'ringtls_connections_active'; }
reloads_ok() { metric "$1" 'ringtls_reloads_total{result="ok"}' || echo 0; }

# staller: in the middle of the mixed phase, stops the server's stderr relay for STALL_S.
staller() {
    sleep $(((TOTAL_S - STALL_S) / 2))
    log "stderr relay stopped for ${STALL_S}s (a stalled log reader)"
    echo "$(date +%s) stop" > "$WORK/stall.txt"
    kill -STOP "$RELAY_PID"
    sleep "$STALL_S"
    kill -CONT "$RELAY_PID"
    echo "$(date +%s) cont" >> "$WORK/stall.txt"
    log "stderr relay resumed"
}

# quiet_fds PID METRICS: waits (bounded, 20 s) until only the idle connections are active and the
# fd count has held still for a second, then prints it.
quiet_fds() {
    local pid=$1 m=$2 a f prev=-1
    for _ in {1..40}; do
        a=$(active "$m" || true)
        f=$(fd_count "$pid")
        [[ $a == "$IDLE_CONNS" && $f == "$prev" ]] && { echo "$f"; return 0; }
        prev=$f
        sleep 0.5
    done
    log "  !! fds did not settle with $IDLE_CONNS active connections (active $a, fds $f)" >&2
    echo "$f"
}

# --- load streams --------------------------------------------------------------------------------
# load_args CLIENT -> LOAD array; CLIENT is good, rogue or nocert.
load_args() {
    LOAD=(nice -n 5 "$BIN" load --ca "$WORK/good/ca.pem" --server-name localhost --threads 1 --json)
    case $1 in
        good) LOAD+=(--crt "$WORK/$1/client.pem" --key "$WORK/$1/client.key") ;;
        # Every one of their handshakes must fail: that is no reason for a non-zero exit.
        rogue) LOAD+=(--crt "$WORK/$1/client.pem" --key "$WORK/$1/client.key" --max-failures 100%) ;;
        nocert) LOAD+=(--max-failures 100%) ;;
    esac
}

# stream NAME ADDR CLIENT LOAD-ARGS...: load runs of at most RUN_S until END_AT, each one JSON
# line appended to loads/NAME.jsonl; a run that prints no JSON (killed, crashed) appends a line
# saying so, so that the summary counts it as a violation.
stream() {
    local name=$1 addr=$2 client=$3 left d n=0 rc
    shift 3
    load_args "$client"
    while :; do
        left=$((END_AT - $(date +%s)))
        [[ $left -ge 2 ]] || break
        d=$((left < RUN_S ? left : RUN_S))
        n=$((n + 1))
        rc=0
        timeout --kill-after=5 $((d + 30)) "${LOAD[@]}" --connect "$addr" "$@" --duration "${d}s" \
            > "$WORK/loads/$name.$n.json" 2> "$WORK/loads/$name.$n.err" || rc=$?
        if grep -q '^{' "$WORK/loads/$name.$n.json"; then
            grep '^{' "$WORK/loads/$name.$n.json" | tail -n1 |
                sed "s/^{/{\"stream\":\"$name\",\"client\":\"$client\",\"rc\":$rc,/" >> "$WORK/loads/$name.jsonl"
        else
            printf '{"stream":"%s","client":"%s","rc":%d,"nojson":true}\n' "$name" "$client" "$rc" >> "$WORK/loads/$name.jsonl"
        fi
    done
}

# reloader: every RELOAD_EVERY s, a new CA bundle (alternately ours + extra, ours alone), SIGHUP
# to both servers, and a bounded wait for each one's next reload.ok; one line per reload.
reloader() {
    local k=0 pid name want got
    while [[ $(($(date +%s) + RELOAD_EVERY)) -lt $END_AT ]]; do
        sleep "$RELOAD_EVERY"
        k=$((k + 1))
        if ((k % 2)); then
            cat "$WORK/good/ca.pem" "$WORK/extra/ca.pem" > "$CAS.new"
        else
            cp "$WORK/good/ca.pem" "$CAS.new"
        fi
        mv "$CAS.new" "$CAS"
        for name in server server-down; do
            [[ $name == server ]] && pid=$SRV_PID m=$SRV_METRICS || pid=$DOWN_PID m=$DOWN_METRICS
            want=$(($(reloads_ok "$m") + 1))
            kill -HUP "$pid" 2> /dev/null || true
            got=0
            for _ in {1..100}; do
                got=$(reloads_ok "$m")
                [[ $got -ge $want ]] && break
                sleep 0.1
            done
            if [[ $got -ge $want ]]; then
                echo "$(date +%s) $name $k ok" >> "$WORK/reloads.txt"
            else
                echo "$(date +%s) $name $k missing: reloads ok $got, wanted $want; $(grep 'reload\.' "$WORK/$name.log" | tail -n1)" >> "$WORK/reloads.txt"
            fi
        done
    done
}

# sampler: one CSV row every SAMPLE_EVERY s until END_AT.
sampler() {
    local t0 now
    t0=$(date +%s)
    echo "time,elapsed_s,rss_kib,fds,active,down_rss_kib,down_fds" > "$WORK/samples.csv"
    while :; do
        now=$(date +%s)
        printf '%s,%d,%s,%s,%s,%s,%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" $((now - t0)) \
            "$(rss_kib "$SRV_PID" || echo)" "$(fd_count "$SRV_PID")" "$(active "$SRV_METRICS" || echo)" \
            "$(rss_kib "$DOWN_PID" || echo)" "$(fd_count "$DOWN_PID")" >> "$WORK/samples.csv"
        [[ $((now + SAMPLE_EVERY)) -le $END_AT ]] || break
        sleep $((SAMPLE_EVERY - ($(date +%s) - now)))
    done
}

# --- the run -------------------------------------------------------------------------------------
# Idle connections first, held until after the drain; the fd baseline is taken with them alone.
T0=$(date +%s)
IDLE_END=$((T0 + TOTAL_S + 300)) # stopped by us after the drain; this only bounds it
load_args good
timeout --kill-after=5 $((TOTAL_S + 360)) "${LOAD[@]}" --connect "$SRV_ADDR" --mode idle \
    --concurrency "$IDLE_CONNS" --duration "$((IDLE_END - T0))s" \
    > "$WORK/loads/idle.json" 2> "$WORK/loads/idle.err" &
IDLE_PID=$!
CHILDREN+=("$IDLE_PID")
FDS_START=$(quiet_fds "$SRV_PID" "$SRV_METRICS")
DOWN_FDS_START=$(fd_count "$DOWN_PID")
log "$IDLE_CONNS idle connections held; server fds $FDS_START, rss $(rss_kib "$SRV_PID") KiB; mixing for $MINUTES min"

T_MIX=$(date +%s)
END_AT=$((T_MIX + TOTAL_S))
LOOPS=()
spawn() {
    "$@" &
    CHILDREN+=("$!")
    LOOPS+=("$!")
}
spawn stream handshake "$SRV_ADDR" good --mode handshake --concurrency 16
spawn stream resume "$SRV_ADDR" good --mode handshake --concurrency 8 --resume
spawn stream bulk-up "$SRV_ADDR" good --mode bulk-up --concurrency 2 --bytes 1MiB
spawn stream bulk-down "$DOWN_ADDR" good --mode bulk-down --concurrency 2 --bytes 4MiB
spawn stream echo "$SRV_ADDR" good --mode echo --concurrency 8 --size 1KiB --rate 1000
spawn stream reject-untrusted-ca "$SRV_ADDR" rogue --mode handshake --concurrency 2
spawn stream reject-no-cert "$SRV_ADDR" nocert --mode handshake --concurrency 2
spawn reloader
spawn sampler
spawn staller

# Wait for the loops: each stops by itself at END_AT; a stuck one is bounded by its timeout.
for pid in "${LOOPS[@]}"; do
    while kill -0 "$pid" 2> /dev/null; do
        sleep 1
        if [[ $(date +%s) -gt $((END_AT + RUN_S + 60)) ]]; then
            log "  !! a load loop (pid $pid) is still running 60 s after the end"
            break
        fi
        kill -0 "$SRV_PID" 2> /dev/null || break
    done
    wait "$pid" 2> /dev/null || true
    forget_child "$pid"
done
log "mixed phase over"

VIOLATIONS=()
violation() {
    VIOLATIONS+=("$*")
    log "  !! $*"
}

SRV_ALIVE=true DOWN_ALIVE=true
kill -0 "$SRV_PID" 2> /dev/null || { SRV_ALIVE=false; violation "server (pid $SRV_PID) died during the run"; }
kill -0 "$DOWN_PID" 2> /dev/null || { DOWN_ALIVE=false; violation "bulk-down server (pid $DOWN_PID) died during the run"; }
FDS_END=null DOWN_FDS_END=null METRICS_END=""
if [[ $SRV_ALIVE == true ]]; then
    FDS_END=$(quiet_fds "$SRV_PID" "$SRV_METRICS")
    METRICS_END=$(scrape "$SRV_METRICS" || true)
    printf '%s\n' "$METRICS_END" > "$WORK/metrics-end.txt"
    scrape "$DOWN_METRICS" > "$WORK/metrics-down-end.txt" 2> /dev/null || true
fi
[[ $DOWN_ALIVE == true ]] && DOWN_FDS_END=$(fd_count "$DOWN_PID")

# stop NAME PID ALIVE -> exit status and seconds into STOP_RC, STOP_S
stop_server() {
    local name=$1 pid=$2 t0
    STOP_RC=dead STOP_S=0
    [[ $3 == true ]] || return 0
    t0=$(date +%s.%N)
    kill -TERM "$pid"
    for _ in $(seq 1 $(((DRAIN_S + 5) * 10))); do
        kill -0 "$pid" 2> /dev/null || break
        sleep 0.1
    done
    STOP_S=$(awk "BEGIN {printf \"%.1f\", $(date +%s.%N) - $t0}")
    if kill -0 "$pid" 2> /dev/null; then
        violation "$name did not exit within $((DRAIN_S + 5)) s of SIGTERM"
        kill -KILL "$pid" 2> /dev/null || true
    fi
    STOP_RC=0
    wait "$pid" 2> /dev/null || STOP_RC=$?
    forget_child "$pid"
    [[ $STOP_RC == 0 ]] || violation "$name exited $STOP_RC after SIGTERM (want 0)"
}
stop_server server "$SRV_PID" "$SRV_ALIVE"
SRV_STOP_RC=$STOP_RC SRV_STOP_S=$STOP_S
# The relay ends at the server's EOF, with the whole log written.
kill -CONT "$RELAY_PID" 2> /dev/null || true
wait "$RELAY_PID" 2> /dev/null || true
forget_child "$RELAY_PID"
stop_server server-down "$DOWN_PID" "$DOWN_ALIVE"
DOWN_STOP_RC=$STOP_RC DOWN_STOP_S=$STOP_S
log "servers stopped: exit $SRV_STOP_RC in ${SRV_STOP_S}s, $DOWN_STOP_RC in ${DOWN_STOP_S}s"

# The drain closed the idle connections, but the idle load sleeps to its own deadline: stop it and
# take its counts from its last progress line.
kill -TERM "$IDLE_PID" 2> /dev/null || true
wait "$IDLE_PID" 2> /dev/null || true
forget_child "$IDLE_PID"
idle_line=$(grep '^load:' "$WORK/loads/idle.err" | tail -n1 || true)
if [[ $idle_line =~ ok\ ([0-9]+)\ failed\ ([0-9]+) ]]; then
    printf '{"stream":"idle","client":"good","rc":0,"ok":%d,"failed":%d,"failures":{},"bytes":0,"resumed_fraction":0}\n' \
        "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}" > "$WORK/loads/idle.jsonl"
else
    printf '{"stream":"idle","client":"good","rc":0,"nojson":true}\n' > "$WORK/loads/idle.jsonl"
fi

# --- verdict -------------------------------------------------------------------------------------
# The stalled log reader: lines were dropped (not waited for), and the server said so once the
# relay took lines again.
LOG_DROPPED=$(awk '/^ringtls_log_events_dropped_total / {print $NF}' <<< "$METRICS_END")
LOG_DROPPED_LINES=$(grep -c 'log\.dropped' "$WORK/server.log" || true)
[[ ${LOG_DROPPED:-0} -gt 0 ]] ||
    violation "stderr stalled for ${STALL_S} s, yet ringtls_log_events_dropped_total is ${LOG_DROPPED:-absent}"
[[ ${LOG_DROPPED_LINES:-0} -gt 0 ]] || violation "no log.dropped line after the stderr stall"
for name in server server-down; do
    if grep -qiE 'panick|panic:' "$WORK/$name.log"; then
        violation "$name logged a panic: $(grep -m1 -iE 'panick|panic:' "$WORK/$name.log" | cut -c1-200)"
    fi
done
RELOADS_OK=$(grep -c ' ok$' "$WORK/reloads.txt" 2> /dev/null || true)
RELOADS_MISSING=$(grep -c ' missing' "$WORK/reloads.txt" 2> /dev/null || true)
[[ ${RELOADS_MISSING:-0} -eq 0 ]] || violation "$RELOADS_MISSING SIGHUP(s) without reload.ok: $(grep -m1 ' missing' "$WORK/reloads.txt")"

cat "$WORK"/loads/*.jsonl > "$WORK/loads.jsonl"
verdict=$(python3 - "$WORK" "$OUT" << EOF
import csv, json, os, sys
work, out = sys.argv[1], sys.argv[2]
warmup_s, total_s = $WARMUP_S, $TOTAL_S
rss_pct, rss_min = $RSS_PCT, $RSS_MIN_KIB
fd_margin, idle_conns = $FD_MARGIN, $IDLE_CONNS
fds_start, fds_end = "$FDS_START", "$FDS_END"
down_fds_start, down_fds_end = "$DOWN_FDS_START", "$DOWN_FDS_END"

viol = []
runs = [json.loads(l) for l in open(os.path.join(work, "loads.jsonl")) if l.strip()]
streams = {}
for r in runs:
    s = streams.setdefault(r["stream"], {"client": r["client"], "runs": 0, "ok": 0, "failed": 0,
                                         "bytes": 0, "failures": {}, "bad_runs": 0, "resumed": 0.0})
    s["runs"] += 1
    if r.get("nojson") or r["rc"] not in (0,):
        s["bad_runs"] += 1
        viol.append(f"load run of {r['stream']} exited {r['rc']}" + (" without a result" if r.get("nojson") else ""))
        if r.get("nojson"):
            continue
    s["ok"] += r["ok"]; s["failed"] += r["failed"]; s["bytes"] += r["bytes"]
    s["resumed"] += r["resumed_fraction"] * r["ok"]
    for k, v in r["failures"].items():
        s["failures"][k] = s["failures"].get(k, 0) + v
for name, s in sorted(streams.items()):
    if s["client"] == "good" and s["failed"]:
        viol.append(f"{name}: {s['failed']} failures for a good client: {s['failures']}")
    if s["client"] != "good" and s["ok"]:
        viol.append(f"{name}: {s['ok']} successes for a client that must be refused")
    if s["client"] != "good" and not s["failed"]:
        viol.append(f"{name}: no rejection counted at all")
idle = streams.get("idle", {"ok": 0})
if idle["ok"] != idle_conns:
    viol.append(f"idle: {idle['ok']} of {idle_conns} connections established")

rows = list(csv.DictReader(open(os.path.join(work, "samples.csv"))))
rows = [r for r in rows if r["rss_kib"]]
if len(rows) < 2:
    viol.append(f"only {len(rows)} RSS samples")
    rss = {"min": 0, "max": 0, "warm": 0, "end": 0, "warm_at": 0}
else:
    # RSS swings by 10-15 MiB from one sample to the next with the bulk buffers in use at that
    # moment, so single samples are compared through medians: the first minute after warm-up
    # against the last minute (up to 6 samples each; half the samples each for short runs).
    after = [int(r["rss_kib"]) for r in rows if int(r["elapsed_s"]) >= warmup_s] or [int(rows[-1]["rss_kib"])]
    k = max(1, min(6, len(after) // 2))
    med = lambda xs: sorted(xs)[len(xs) // 2]
    vals = [int(r["rss_kib"]) for r in rows]
    rss = {"min": min(vals), "max": max(vals), "start": vals[0], "end": vals[-1], "k": k,
           "warm": med(after[:k]), "last": med(after[-k:]), "max_after_warm": max(after)}
    bound = max(rss["warm"] * rss_pct // 100, rss_min)
    rss["bound"] = bound
    if rss["last"] - rss["warm"] > bound:
        viol.append(f"RSS grew {rss['last'] - rss['warm']} KiB after warm-up (median of {k} samples: {rss['warm']} -> {rss['last']} KiB), bound {bound} KiB")
if fds_end == "null":
    viol.append("no fd reading at the end")
elif abs(int(fds_end) - int(fds_start)) > fd_margin:
    viol.append(f"server fds with {idle_conns} idle connections: {fds_start} before, {fds_end} after (margin {fd_margin})")
if down_fds_end != "null" and abs(int(down_fds_end) - int(down_fds_start)) > fd_margin:
    viol.append(f"bulk-down server fds when quiet: {down_fds_start} before, {down_fds_end} after (margin {fd_margin})")

def series(path):
    m = {}
    try:
        for l in open(path):
            if l.startswith("#") or not l.strip():
                continue
            k, v = l.rsplit(" ", 1)
            m[k] = float(v)
    except OSError:
        pass
    return m
def total(m, prefix):
    return int(sum(v for k, v in m.items() if k.startswith(prefix)))
m = series(os.path.join(work, "metrics-end.txt"))
md = series(os.path.join(work, "metrics-down-end.txt"))
json.dump({"streams": streams, "rss": rss, "viol": viol,
           "hs_ok": total(m, 'ringtls_handshakes_total{result="ok"') + total(md, 'ringtls_handshakes_total{result="ok"'),
           "hs_rejected": total(m, 'ringtls_handshakes_total{result="') - total(m, 'ringtls_handshakes_total{result="ok"'),
           "rejected_by_reason": {k.split('reason="')[1].split('"')[0]: int(v) for k, v in m.items()
                                  if k.startswith('ringtls_handshakes_total{') and 'result="ok"' not in k and 'reason="' in k and v},
           "bytes_up": total(m, 'ringtls_bytes_total{direction="up"') + total(md, 'ringtls_bytes_total{direction="up"'),
           "bytes_down": total(m, 'ringtls_bytes_total{direction="down"') + total(md, 'ringtls_bytes_total{direction="down"'),
           "closed_by_reason": {k.split('reason="')[1].split('"')[0]: int(v) for k, v in m.items()
                                if k.startswith('ringtls_connections_closed_total{') and v},
           }, open(os.path.join(work, "verdict.json"), "w"))
for v in viol:
    print(v)
EOF
) || die "summary script failed"
while IFS= read -r line; do
    [[ -n $line ]] && violation "$line"
done <<< "$verdict"

# --- summary -------------------------------------------------------------------------------------
python3 - "$WORK/verdict.json" > "$WORK/summary.txt" << EOF
import json, sys
v = json.load(open(sys.argv[1]))
r, s = v["rss"], v["streams"]
mib = lambda b: f"{b / 2**20:,.0f} MiB"
print("ringtls soak: $MINUTES min mixed phase, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git -C "$ROOT" rev-parse --short HEAD 2> /dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml 2> /dev/null || echo ' + uncommitted src changes')")
print("machine: $(nproc) cores, $(uname -sr); server --threads 2, loads --threads 1 each")
print("command: scripts/soak.sh --minutes $MINUTES")
print()
print(f"handshakes ok (server, both instances): {v['hs_ok']:,}")
print(f"handshakes rejected (server): {v['hs_rejected']:,} {v['rejected_by_reason']}")
print(f"bytes through the servers: up {mib(v['bytes_up'])}, down {mib(v['bytes_down'])}")
print(f"connections closed by reason (server): {v['closed_by_reason']}")
print("reloads (SIGHUP every ${RELOAD_EVERY} s, to both servers): ${RELOADS_OK:-0} reload.ok, ${RELOADS_MISSING:-0} missing")
print("stderr stalled ${STALL_S} s mid-run: ${LOG_DROPPED:-0} event lines dropped and counted, ${LOG_DROPPED_LINES:-0} log.dropped line(s)")
print()
print(f"{'stream':<20} {'client':<7} {'runs':>5} {'ok':>10} {'failed':>9} {'MiB':>8}  notes")
for name, x in sorted(s.items()):
    notes = ""
    if x["failures"]:
        notes = "failures " + ", ".join(f"{k} {n}" for k, n in sorted(x["failures"].items()))
    if name == "resume" and x["ok"]:
        notes = f"resumed {x['resumed'] / x['ok']:.1%}"
    print(f"{name:<20} {x['client']:<7} {x['runs']:>5} {x['ok']:>10,} {x['failed']:>9,} {x['bytes'] / 2**20:>8,.0f}  {notes}")
print()
if r.get("warm"):
    print(f"RSS KiB: start {r['start']:,}, end {r['end']:,}, min {r['min']:,}, max {r['max']:,}; "
          f"median of {r['k']} samples after warm-up ($WARMUP_S s) {r['warm']:,}, of the last {r['k']} {r['last']:,}: "
          f"growth {r['last'] - r['warm']:+,} (bound {r['bound']:,})")
print("fds with $IDLE_CONNS idle connections only: before $FDS_START, after $FDS_END (margin $FD_MARGIN); "
      "bulk-down server $DOWN_FDS_START -> $DOWN_FDS_END")
print("SIGTERM with idle connections held: server exit $SRV_STOP_RC in ${SRV_STOP_S} s, "
      "bulk-down server exit $DOWN_STOP_RC in ${DOWN_STOP_S} s (drain timeout ${DRAIN_S} s)")
EOF
{
    cat "$WORK/summary.txt"
    echo
    if [[ ${#VIOLATIONS[@]} -eq 0 ]]; then
        echo "verdict: PASS"
    else
        echo "verdict: FAIL"
        printf '  - %s\n' "${VIOLATIONS[@]}"
    fi
} > "$OUT/summary.txt"
cp "$WORK/samples.csv" "$OUT/samples.csv"
cat "$OUT/summary.txt"
[[ ${#VIOLATIONS[@]} -eq 0 ]] || exit 1
