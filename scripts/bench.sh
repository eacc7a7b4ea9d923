#!/usr/bin/env bash
# scripts/bench.sh: ringtls side by side with HAProxy, nginx (stream module) and stunnel, each doing
# mutual TLS (client certificate required, verified against the same ca.pem) in front of the same
# plaintext `ringtls upstream`, with the same certificates, in one run.
#
#   scripts/bench.sh            full run (about 10 minutes), results in benches/results/
#   scripts/bench.sh --quick    smoke run (about 1-2 minutes), same files, marked quick
#
# Options: --quick, --no-build (use target/release/ringtls as it is), --out DIR (default
# benches/results), --servers ringtls,haproxy,nginx,stunnel (a subset, for debugging; ratios need
# haproxy), --only 1,5 (run only these measurement blocks, for debugging: 1 handshakes and echo,
# 2 RSA handshakes, 3 bulk up, 4 bulk down, 5 idle memory, 6 ringtls threads, 7 ringtls kernel TLS
# vs user space), --keep (keep the temp dir with configs and logs).
#
# Environment: BENCH_KTLS_FORCE=1 runs block 7 (ringtls kernel TLS vs user space) also on a kernel
# that offers no kernel TLS, for debugging the block: its "ktls" runs then use --ktls auto instead
# of --ktls on and so show 0 kernel TLS connections. Without it, block 7 is skipped on such a
# kernel, and stderr and results.md say so.
#
# Method. Every server gets ONE worker pinned to core 0 (taskset -c 0; haproxy nbthread 1; nginx
# master_process off so the one process is the worker; stunnel as packaged, thread per connection,
# whole process, but logging to its stderr file and not to syslog, see stunnel.conf.in; ringtls
# --threads 1). The load generator (`ringtls load`) and the upstreams run on
# core 1. Server CPU is utime+stime of the server process (/proc/PID/stat, all threads, including
# exited ones) read before and after each load run and divided by the work done in that run: on a
# busy 2-core machine that is steadier than a rate. Every load run pins TLS 1.3 and X25519, so that
# no server pays for a different key exchange (rustls would otherwise pick X25519MLKEM768 where
# OpenSSL 3.0 cannot). Every server writes one log line per connection to a file, as ringtls does.
# Measurements run interleaved (one block for all servers, then the next block) so that noise from
# other work on the machine spreads over all servers alike.
#
# Layout: this file drives processes and writes raw records; scripts/bench/*.in are the config
# templates (@VAR@ placeholders); scripts/bench/report.py turns the records into raw.json,
# results.md and chart.svg.
set -euo pipefail

usage() { sed -n '2,/^# Method\./p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

QUICK=0
BUILD=1
KEEP=0
SERVERS="ringtls,haproxy,nginx,stunnel"
ONLY="1,2,3,4,5,6,7"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="$ROOT/benches/results"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --no-build) BUILD=0 ;;
        --keep) KEEP=1 ;;
        --out) OUT=${2:?--out needs a directory}; shift ;;
        --servers) SERVERS=${2:?--servers needs a list}; shift ;;
        --only) ONLY=${2:?--only needs block numbers}; shift ;;
        -h | --help) usage; exit 0 ;;
        *) printf 'bench: unknown option %s\n' "$1" >&2; usage >&2; exit 64 ;;
    esac
    shift
done
IFS=, read -r -a SERVER_LIST <<< "$SERVERS"
for s in "${SERVER_LIST[@]}"; do
    case "$s" in ringtls | haproxy | nginx | stunnel) ;; *) printf 'bench: --servers: unknown server %s\n' "$s" >&2; exit 64 ;; esac
done

# --- sizes ---------------------------------------------------------------------------------------
if [[ $QUICK == 1 ]]; then
    DUR_MS=1000      # per load run
    WARMUP_MS=300
    BULK_BYTES=64MiB
    IDLE_WANT=1000
    IDLE_BATCH=500   # idle connections opened at once
    IDLE_BOUND=40    # seconds to wait for all idle connections
else
    DUR_MS=12000
    WARMUP_MS=1000
    BULK_BYTES=256MiB
    IDLE_WANT=10000
    IDLE_BATCH=1000
    IDLE_BOUND=180
fi
HS_CONC=16
BULK_CONC=4
ECHO_CONC=16
ECHO_SIZE=64
ECHO_RATE=5000
DUR=${DUR_MS}ms
WARMUP=${WARMUP_MS}ms

log() { printf 'bench: [%3ds] %s\n' "$SECONDS" "$*" >&2; }
die() {
    printf '\nbench: FAILED: %s\n' "$*" >&2
    exit 1
}

# --- tools ---------------------------------------------------------------------------------------
# A fresh machine gets what is missing; this one already has it (Debian package names).
need_pkgs=()
command -v haproxy > /dev/null || need_pkgs+=(haproxy)
command -v nginx > /dev/null || need_pkgs+=(nginx)
[[ -e /usr/lib/nginx/modules/ngx_stream_module.so ]] || need_pkgs+=(libnginx-mod-stream)
command -v stunnel > /dev/null || command -v stunnel4 > /dev/null || need_pkgs+=(stunnel4)
command -v python3 > /dev/null || need_pkgs+=(python3)
command -v openssl > /dev/null || need_pkgs+=(openssl)
command -v ss > /dev/null || need_pkgs+=(iproute2)
command -v taskset > /dev/null || need_pkgs+=(util-linux)
command -v timeout > /dev/null || need_pkgs+=(coreutils)
if [[ ${#need_pkgs[@]} -gt 0 ]]; then
    log "installing ${need_pkgs[*]}"
    bash "$ROOT/scripts/apt-install.sh" "${need_pkgs[@]}" || die "could not install ${need_pkgs[*]} (above)"
    # The packages start their system services; the benchmark runs its own instances.
    for svc in haproxy nginx stunnel4; do
        systemctl disable --now "$svc" > /dev/null 2>&1 || true
    done
fi
STUNNEL=$(command -v stunnel || command -v stunnel4)
NGINX_STREAM=/usr/lib/nginx/modules/ngx_stream_module.so
[[ $(nproc) -ge 2 ]] || die "needs at least 2 cores (server on core 0, load on core 1); nproc=$(nproc)"

cd "$ROOT"
# Crypto floor (placeholder hook): if the crate has a `crypto_floor` bench that prints a JSON line
# with `-- --json`, its line goes into the results; otherwise they say "crypto floor: not measured".
HAS_FLOOR=$(cargo metadata --no-deps --format-version 1 2> /dev/null | python3 -c '
import json, sys
m = json.load(sys.stdin)
print(any(t["name"] == "crypto_floor" and "bench" in t["kind"] for p in m["packages"] for t in p["targets"]))
' 2> /dev/null || echo False)
if [[ $BUILD == 1 ]]; then
    log "cargo build --release"
    cargo build --release --quiet
    # Compiled now, so that the compile does not run in the middle of the measurements.
    if [[ $HAS_FLOOR == True ]]; then
        cargo bench --quiet --bench crypto_floor --no-run 2> /dev/null || log "crypto_floor bench does not build; it will be reported as failed"
    fi
fi
RINGTLS="$ROOT/target/release/ringtls"
[[ -x $RINGTLS ]] || die "$RINGTLS not found (run cargo build --release)"

# --- file descriptors ----------------------------------------------------------------------------
# The server holds 2 fds per idle connection (client + upstream). Raise the limit as far as this
# machine allows; where the hard limit is below what N needs, hold fewer connections and say so.
ulimit -Hn 1048576 2> /dev/null || ulimit -Hn 65536 2> /dev/null || true
NOFILE=$(ulimit -Hn)
[[ $NOFILE == unlimited ]] && NOFILE=1048576
ulimit -Sn "$NOFILE"
IDLE_N=$IDLE_WANT
fit=$(((NOFILE - 100) / 2 / 100 * 100))
if [[ $fit -lt $IDLE_N ]]; then
    IDLE_N=$fit
    log "fd limit $NOFILE (hard, cannot be raised here): idle test holds $IDLE_N connections, not $IDLE_WANT"
fi
# Connection limit for the servers that want one: the idle connections plus room, but within the fd
# limit (HAProxy refuses to start when 2 * maxconn plus its own fds exceed it).
MAXCONN=$((IDLE_N + 100))
[[ $MAXCONN -le $(((NOFILE - 64) / 2)) ]] || MAXCONN=$(((NOFILE - 64) / 2))

# --- work dir and cleanup (scripts/lib/work.sh) -----------------------------------------------
# shellcheck source=scripts/lib/work.sh
. "$(dirname "$0")/lib/work.sh"
work_dir bench
mkdir -p "$WORK/records" "$WORK/logs" "$WORK/conf"

# --- /proc readings ------------------------------------------------------------------------------
CLK_TCK=$(getconf CLK_TCK)
# utime+stime of a process in clock ticks: the process line sums all its threads, exited included.
cpu_ticks() {
    local s
    s=$(< "/proc/$1/stat") || return 1
    s=${s##*) }
    # shellcheck disable=SC2086
    set -- $s
    echo $((${12} + ${13}))
}
# VmRSS in KiB summed over the given processes.
rss_kb() {
    local total=0 pid kb
    for pid in "$@"; do
        kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status") || return 1
        total=$((total + kb))
    done
    echo "$total"
}
# From /proc/stat, all cores: busy ticks, total ticks, and irq+softirq ticks. Without
# CONFIG_IRQ_TIME_ACCOUNTING a tick that lands in a softirq is charged there and not to the process
# it interrupted, so the loopback network work of a run shows up here rather than in any process.
machine_ticks() {
    local _cpu u n s i w irq sirq st
    read -r _cpu u n s i w irq sirq st _ < /proc/stat
    echo "$((u + n + s + irq + sirq + st)) $((u + n + s + i + w + irq + sirq + st)) $((irq + sirq))"
}
# CPU (user+sys) of this shell's reaped children so far, in ms, into CHILDREN_CPU_MS: brackets one
# foreground load run. Not called as $(...): a subshell has no children of its own to report.
children_cpu_ms() {
    times > "$WORK/.times"
    CHILDREN_CPU_MS=$(awk 'NR == 2 { t = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] }; printf "%d", t * 1000 }' "$WORK/.times")
}
fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2> /dev/null | wc -l; }
thread_count() { awk '/^Threads:/ {print $2}' "/proc/$1/status"; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Reads `{"listening":["127.0.0.1:PORT"]}` from a ringtls stdout file (bounded wait).
listening_port() {
    local name=$1 pid=$2 file=$3 port
    for _ in {1..100}; do
        port=$(sed -nE 's/.*"127\.0\.0\.1:([0-9]+)".*/\1/p' "$file" 2> /dev/null | head -n1)
        [[ -n $port ]] && { echo "$port"; return 0; }
        kill -0 "$pid" 2> /dev/null || break
        sleep 0.1
    done
    return 1
}

# Polls until something listens on PORT (bounded), or the process is gone.
wait_listening() {
    local pid=$1 port=$2
    for _ in {1..100}; do
        kill -0 "$pid" 2> /dev/null || return 1
        [[ -n $(ss -Hltn "sport = :$port") ]] && return 0
        sleep 0.1
    done
    return 1
}

# --- PKI -----------------------------------------------------------------------------------------
PKI=$WORK/pki
"$RINGTLS" pki "$PKI" > /dev/null
# RSA-2048 server certificate signed by the same root, for the handshake rows.
# shellcheck source=scripts/lib/pki.sh
. "$(dirname "$0")/lib/pki.sh"
rsa_server_cert "$PKI" 30
# HAProxy wants certificate and key in one file.
cat "$PKI/server.pem" "$PKI/server.key" > "$PKI/haproxy-ecdsa.pem"
cat "$PKI/server-rsa.pem" "$PKI/server-rsa.key" > "$PKI/haproxy-rsa.pem"

# --- upstreams (core 1, for the whole run) -------------------------------------------------------
declare -A UPSTREAM UPSTREAM_PID
for mode in echo sink source; do
    taskset -c 1 "$RINGTLS" upstream --listen 127.0.0.1:0 --mode "$mode" \
        > "$WORK/logs/upstream-$mode.out" 2> "$WORK/logs/upstream-$mode.err" &
    pid=$!
    CHILDREN+=("$pid")
    UPSTREAM_PID[$mode]=$pid
    UPSTREAM[$mode]=$(listening_port "upstream-$mode" "$pid" "$WORK/logs/upstream-$mode.out") ||
        die "ringtls upstream --mode $mode did not print its listening line: $(tail -n3 "$WORK/logs/upstream-$mode.err")"
done

# --- servers -------------------------------------------------------------------------------------
SRV_PID=
SRV_PORT=
SRV_NAME=
SRV_LOG=
INSTANCE=0
# Extra flags for `ringtls serve` (block 7 sets --ktls and resets it); the other servers ignore it.
RINGTLS_EXTRA=()

render() { # render TEMPLATE OUT KEY=VALUE...
    local template=$1 out=$2 expr=() kv
    shift 2
    for kv in "$@"; do expr+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
    sed "${expr[@]}" "$template" > "$out"
    local left
    left=$(grep -v '^[[:space:]]*[#;]' "$out" | grep -o '@[A-Z_]*@' | head -n1 || true)
    [[ -z $left ]] || die "$out: unfilled placeholder $left"
}

# start_server NAME ecdsa|rsa UPSTREAM_MODE [THREADS] [PIN]
start_server() {
    local name=$1 cert=$2 upmode=$3 threads=${4:-1} pin=${5:-0}
    local up=${UPSTREAM[$upmode]} crt key port pid
    INSTANCE=$((INSTANCE + 1))
    local tag="$INSTANCE-$name-$cert-$upmode"
    local dir=$WORK/conf/$tag
    mkdir -p "$dir"
    if [[ $cert == rsa ]]; then crt=$PKI/server-rsa.pem key=$PKI/server-rsa.key; else crt=$PKI/server.pem key=$PKI/server.key; fi
    local pincmd=(taskset -c 0)
    [[ $pin == 1 ]] || pincmd=()
    SRV_LOG=$WORK/logs/$tag.log
    case "$name" in
        ringtls)
            "${pincmd[@]}" "$RINGTLS" serve --listen 127.0.0.1:0 --upstream "127.0.0.1:$up" \
                --crt "$crt" --key "$key" --mutual-tls-cas "$PKI/ca.pem" --threads "$threads" \
                ${RINGTLS_EXTRA[@]+"${RINGTLS_EXTRA[@]}"} > "$dir/stdout" 2> "$SRV_LOG" &
            pid=$!
            CHILDREN+=("$pid")
            port=$(listening_port ringtls "$pid" "$dir/stdout") ||
                die "ringtls ($cert, upstream $upmode) did not print its listening line; log: $SRV_LOG: $(tail -n5 "$SRV_LOG")"
            ;;
        haproxy)
            port=$(free_port)
            local pem=$PKI/haproxy-$cert.pem
            render "$ROOT/scripts/bench/haproxy.cfg.in" "$dir/haproxy.cfg" PORT="$port" \
                UPSTREAM_PORT="$up" CRT_AND_KEY="$pem" CA="$PKI/ca.pem" MAXCONN="$MAXCONN"
            haproxy -c -q -f "$dir/haproxy.cfg" > "$dir/check.log" 2>&1 ||
                die "haproxy rejects its config $dir/haproxy.cfg: $(cat "$dir/check.log")"
            "${pincmd[@]}" haproxy -db -f "$dir/haproxy.cfg" > "$SRV_LOG" 2>&1 &
            pid=$!
            CHILDREN+=("$pid")
            ;;
        nginx)
            port=$(free_port)
            local wc=$((2 * MAXCONN + 100))
            [[ $wc -gt $NOFILE ]] && wc=$NOFILE
            render "$ROOT/scripts/bench/nginx.conf.in" "$dir/nginx.conf" PORT="$port" \
                UPSTREAM_PORT="$up" CRT="$crt" KEY="$key" CA="$PKI/ca.pem" DIR="$dir" \
                NOFILE="$NOFILE" WORKER_CONNECTIONS="$wc" STREAM_MODULE="$NGINX_STREAM"
            "${pincmd[@]}" nginx -p "$dir" -e "$dir/nginx-error.log" -c "$dir/nginx.conf" > "$SRV_LOG" 2>&1 &
            pid=$!
            CHILDREN+=("$pid")
            SRV_LOG=$dir/nginx-access.log
            ;;
        stunnel)
            port=$(free_port)
            render "$ROOT/scripts/bench/stunnel.conf.in" "$dir/stunnel.conf" PORT="$port" \
                UPSTREAM_PORT="$up" CRT="$crt" KEY="$key" CA="$PKI/ca.pem"
            "${pincmd[@]}" "$STUNNEL" "$dir/stunnel.conf" > "$SRV_LOG" 2>&1 &
            pid=$!
            CHILDREN+=("$pid")
            ;;
    esac
    if [[ $name != ringtls ]]; then
        wait_listening "$pid" "$port" ||
            die "$name ($cert, upstream $upmode) did not come up on 127.0.0.1:$port; config in $dir; log $(tail -n5 "$WORK/logs/$tag.log" "$dir"/*error.log 2> /dev/null)"
    fi
    SRV_PID=$pid
    SRV_PORT=$port
    SRV_NAME=$name
    SRV_UPMODE=$upmode
    local extra=
    [[ $name == ringtls && ${#RINGTLS_EXTRA[@]} -gt 0 ]] && extra=", ${RINGTLS_EXTRA[*]}"
    SRV_INSTANCE="$cert certificate, upstream $upmode, threads $threads$extra"
    LAST_MEASURE=start
    log "$name up: pid $pid port $port (cert $cert, upstream $upmode, threads $threads, pinned $pin$extra)"
}

stop_server() {
    local pid=$SRV_PID
    [[ -n $pid ]] || return 0
    kill -TERM "$pid" 2> /dev/null || true
    for _ in {1..50}; do
        kill -0 "$pid" 2> /dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2> /dev/null || true
    local rc=0
    wait "$pid" 2> /dev/null || rc=$?
    forget_child "$pid"
    SRV_PID=
    # 143 (TERM) and 137 (KILL) are ours; a crash on the way out is worth a line in the results.
    case $rc in
        134 | 135 | 136 | 139)
            log "  !! $SRV_NAME exited with status $rc (signal $((rc - 128))) when stopped with SIGTERM; log $SRV_LOG"
            echo "$SRV_NAME ($SRV_INSTANCE) crashed when stopped with SIGTERM: exit status $rc (signal $((rc - 128))), after '$LAST_MEASURE'" >> "$WORK/notes.txt"
            ;;
    esac
}

# --- load runs -----------------------------------------------------------------------------------
SEQ=0
FAILURES=0

# write_meta FILE KEY=VALUE...  (values are numbers or plain words; strings get quoted here)
write_meta() {
    local file=$1 kv k v sep=""
    shift
    {
        printf '{'
        for kv in "$@"; do
            k=${kv%%=*} v=${kv#*=}
            if [[ $v =~ ^-?[0-9]+(\.[0-9]+)?$ || $v == true || $v == false || $v == null ]]; then
                printf '%s"%s":%s' "$sep" "$k" "$v"
            else
                v=${v//\\/\\\\}
                printf '%s"%s":"%s"' "$sep" "$k" "${v//\"/\\\"}"
            fi
            sep=,
        done
        printf '}\n'
    } > "$file"
}

# append_meta FILE KEY=VALUE...: adds keys to a meta JSON file that write_meta wrote.
append_meta() {
    local file=$1 old add
    shift
    write_meta "$file.add" "$@"
    old=$(< "$file") add=$(< "$file.add")
    rm -f "$file.add"
    printf '%s,%s\n' "${old%\}}" "${add#\{}" > "$file"
}

load_cmd() { # load_cmd [nocert] ARGS... -> LOAD array
    LOAD=(taskset -c 1 "$RINGTLS" load --connect "127.0.0.1:$SRV_PORT" --ca "$PKI/ca.pem"
        --server-name localhost --tls 1.3 --group X25519 --json)
    # Without a certificate every operation must fail; the caller counts them, not the exit code.
    if [[ ${1:-} == nocert ]]; then shift; LOAD+=(--max-failures 100%); else LOAD+=(--crt "$PKI/client.pem" --key "$PKI/client.key"); fi
    LOAD+=("$@")
}

# run_load MEASURE CERT [nocert] LOAD-ARGS...: one load run against the current server, with the
# server's CPU read around it; writes records/SEQ.meta.json and records/SEQ.load.json.
run_load() {
    local measure=$1 cert=$2
    shift 2
    LAST_MEASURE=$measure
    SEQ=$((SEQ + 1))
    local base
    base=$WORK/records/$(printf '%03d' "$SEQ")
    load_cmd "$@"
    local before after t0 t1 rc=0 alive=true up_pid=${UPSTREAM_PID[$SRV_UPMODE]}
    local load0 load1 up0 up1 m0 m1 mb0 mt0 mi0 mb1 mt1 mi1
    before=$(cpu_ticks "$SRV_PID") || die "$SRV_NAME (pid $SRV_PID) is gone before '$measure'; log $SRV_LOG"
    up0=$(cpu_ticks "$up_pid") m0=$(machine_ticks)
    children_cpu_ms
    load0=$CHILDREN_CPU_MS
    t0=$(date +%s.%N)
    timeout --kill-after=5 $((DUR_MS / 1000 + 90)) "${LOAD[@]}" > "$base.load.json" 2> "$base.load.err" || rc=$?
    children_cpu_ms
    load1=$CHILDREN_CPU_MS
    sleep 0.3 # the server finishes closing the last connections
    t1=$(date +%s.%N)
    after=$(cpu_ticks "$SRV_PID") || { alive=false; after=null; }
    up1=$(cpu_ticks "$up_pid") m1=$(machine_ticks)
    read -r mb0 mt0 mi0 <<< "$m0"
    read -r mb1 mt1 mi1 <<< "$m1"
    write_meta "$base.meta.json" seq="$SEQ" server="$SRV_NAME" measure="$measure" cert="$cert" \
        server_threads="${SRV_THREADS:-1}" load_args="${LOAD[*]:4}" load_rc="$rc" \
        cpu_ticks_before="$before" cpu_ticks_after="$after" clk_tck="$CLK_TCK" \
        load_cpu_ms="$((load1 - load0))" upstream_cpu_ticks="$((up1 - up0))" \
        machine_busy_ticks="$((mb1 - mb0))" machine_total_ticks="$((mt1 - mt0))" \
        machine_irq_ticks="$((mi1 - mi0))" \
        wall_s="$(awk "BEGIN {printf \"%.3f\", $t1 - $t0}")" \
        server_alive_after="$alive" server_log="$(basename "$SRV_LOG")"
    local summary
    summary=$(python3 - "$base.load.json" << 'EOF'
import json, sys
try:
    j = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
    print(f"ok {j['ok']} failed {j['failed']} {j['per_second']}/s {j['mib_per_s']} MiB/s "
          f"p50 {j['latency_us']['p50']}us p99 {j['latency_us']['p99']}us resumed {j['resumed_fraction']}"
          + (f" failures {j['failures']}" if j['failed'] else ""))
except Exception as e:
    print(f"no JSON from load ({e.__class__.__name__})")
EOF
    )
    log "  $SRV_NAME $measure ($cert): $summary; server cpu $(((${after/null/$before} - before) * 1000 / CLK_TCK)) ms"
    if [[ $alive == false ]]; then
        FAILURES=$((FAILURES + 1))
        log "  !! $SRV_NAME DIED during '$measure': ${LOAD[*]}; its log: $SRV_LOG"
        tail -n5 "$SRV_LOG" >&2 || true
        return 1
    fi
    if [[ $rc -ne 0 ]]; then
        FAILURES=$((FAILURES + 1))
        log "  !! load exited $rc against $SRV_NAME ('$measure'): ${LOAD[*]}"
        tail -n3 "$base.load.err" >&2 || true
    fi
    return 0
}

# A client without a certificate must get no byte through: proves each server really does mutual
# TLS. Echo mode, because a server may complete the TLS 1.3 handshake (even send a ticket) and only
# then close, without an alert (nginx's stream module does); no round trip may succeed either way.
check_mtls() {
    run_load mtls-check ecdsa nocert --mode echo --concurrency 1 --duration 1s || return 1
    local ok
    ok=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read())["ok"])' \
        "$WORK/records/$(printf '%03d' "$SEQ").load.json" 2> /dev/null || echo error)
    [[ $ok == 0 ]] || die "$SRV_NAME echoed $ok messages for a client that has NO certificate (expected 0): it is not enforcing mutual TLS; config under $WORK/conf"
}

# Idle connections: RSS before and once all N are established, divided by N. The connections are
# opened in batches (one load process per batch, each holding its batch open), the next batch once
# the load's progress line counts the previous one: a single burst of 10,000 handshakes queues at a
# server doing a few hundred per second for longer than the load's 10 s connect timeout.
measure_idle() {
    local n=$1 batch=$IDLE_BATCH
    LAST_MEASURE="idle ($n connections)"
    SEQ=$((SEQ + 1))
    local base
    base=$WORK/records/$(printf '%03d' "$SEQ")
    local rss0 fds0 thr0 t0 lpid line ok=0 failed=0 started=0 batches=0 want bok bfailed
    local lpids=()
    rss0=$(rss_kb "$SRV_PID") fds0=$(fd_count "$SRV_PID") thr0=$(thread_count "$SRV_PID")
    t0=$(date +%s.%N)
    local deadline=$((SECONDS + IDLE_BOUND))
    while [[ $started -lt $n && $SECONDS -lt $deadline ]]; do
        want=$((n - started < batch ? n - started : batch))
        batches=$((batches + 1))
        # Long enough to never end by itself before we stop it; IDLE_BOUND bounds the wait.
        load_cmd --mode idle --concurrency "$want" --duration "$((IDLE_BOUND + 60))s"
        "${LOAD[@]}" > "$base.load-$batches.json" 2> "$base.load-$batches.err" &
        lpid=$!
        CHILDREN+=("$lpid")
        lpids+=("$lpid")
        started=$((started + want))
        bok=0 bfailed=0
        local batch_deadline=$((SECONDS + 30))
        while [[ $SECONDS -lt $batch_deadline && $SECONDS -lt $deadline ]]; do
            sleep 0.25
            line=$(grep '^load:' "$base.load-$batches.err" | tail -n1 || true)
            if [[ $line =~ ok\ ([0-9]+)\ failed\ ([0-9]+) ]]; then
                bok=${BASH_REMATCH[1]} bfailed=${BASH_REMATCH[2]}
            fi
            [[ $((bok + bfailed)) -ge $want ]] && break
            kill -0 "$lpid" 2> /dev/null || break
            kill -0 "$SRV_PID" 2> /dev/null || break
        done
        ok=$((ok + bok)) failed=$((failed + bfailed))
        kill -0 "$SRV_PID" 2> /dev/null || break
        # A batch that did not finish within its wait ends the ramp; what is held is measured.
        [[ $((bok + bfailed)) -ge $want ]] || break
    done
    # The load counts a connection once its handshake is confirmed; the server may still be
    # connecting it to the upstream. Wait (bounded) for the server's fd count to settle.
    local fds prev=-1
    for _ in {1..20}; do
        kill -0 "$SRV_PID" 2> /dev/null || break
        fds=$(fd_count "$SRV_PID")
        [[ $fds == "$prev" ]] && break
        prev=$fds
        sleep 0.5
    done
    local alive=true rss1=null fds1=null thr1=null waited
    if kill -0 "$SRV_PID" 2> /dev/null; then
        rss1=$(rss_kb "$SRV_PID") fds1=$(fd_count "$SRV_PID") thr1=$(thread_count "$SRV_PID")
    else
        alive=false
    fi
    waited=$(awk "BEGIN {printf \"%.2f\", $(date +%s.%N) - $t0}")
    for lpid in "${lpids[@]}"; do kill -TERM "$lpid" 2> /dev/null || true; done
    for lpid in "${lpids[@]}"; do
        wait "$lpid" 2> /dev/null || true
        forget_child "$lpid"
    done
    write_meta "$base.meta.json" seq="$SEQ" server="$SRV_NAME" measure=idle cert=ecdsa \
        server_threads=1 load_args="${LOAD[*]:4} (x$batches batches, $batch each)" \
        idle_target="$n" idle_wanted="$IDLE_WANT" idle_batch="$batch" idle_batches="$batches" \
        idle_ok="$ok" idle_failed="$failed" rss_kb_before="$rss0" rss_kb_after="$rss1" \
        fds_before="$fds0" fds_after="$fds1" threads_before="$thr0" threads_after="$thr1" \
        wait_s="$waited" nofile_limit="$NOFILE" server_alive_after="$alive" \
        server_log="$(basename "$SRV_LOG")"
    log "  $SRV_NAME idle: $ok of $n established ($failed failed, $batches batches) in ${waited}s; rss ${rss0} -> ${rss1} KiB; fds $fds0 -> $fds1; threads $thr0 -> $thr1"
    if [[ $alive == false ]]; then
        FAILURES=$((FAILURES + 1))
        log "  !! $SRV_NAME DIED while holding idle connections; its log: $SRV_LOG"
    fi
    if [[ $failed -gt 0 ]]; then
        # The server's own word on why, when it logs one (stunnel: "too many clients").
        local why
        why=$(grep -m1 -iE 'too many|reject|limit|maxconn' "$SRV_LOG" 2> /dev/null | cut -c1-200 || true)
        echo "$SRV_NAME idle: $failed of $n connections were not established${why:+; its log says: \`$why\`}" >> "$WORK/notes.txt"
    fi
}

# --- the run -------------------------------------------------------------------------------------
block() { [[ ",$ONLY," == *",$1,"* ]]; }
T_START=$SECONDS
log "work dir $WORK; servers: ${SERVER_LIST[*]}; $([[ $QUICK == 1 ]] && echo QUICK || echo full) run, $DUR per load run"

hs_args=(--mode handshake --concurrency "$HS_CONC" --duration "$DUR")
warmup() { run_load warmup "$1" --mode handshake --concurrency "$HS_CONC" --duration "$WARMUP" || true; }

if block 1; then
    log "block 1/7: full and resumed handshakes, echo latency (ECDSA, echo upstream)"
    for s in "${SERVER_LIST[@]}"; do
        start_server "$s" ecdsa echo 1 1
        check_mtls
        warmup ecdsa
        run_load handshake ecdsa "${hs_args[@]}" || true
        run_load resume ecdsa "${hs_args[@]}" --resume || true
        run_load echo ecdsa --mode echo --concurrency "$ECHO_CONC" --size "$ECHO_SIZE" \
            --rate "$ECHO_RATE" --duration "$DUR" || true
        # Closed loop, one connection: the round trip itself, without the load's pacing timer.
        run_load echo-unpaced ecdsa --mode echo --concurrency 1 --size "$ECHO_SIZE" --duration "$DUR" || true
        stop_server
    done
fi

if block 2; then
    log "block 2/7: full handshakes with the RSA-2048 server certificate"
    for s in "${SERVER_LIST[@]}"; do
        start_server "$s" rsa echo 1 1
        warmup rsa
        run_load handshake-rsa rsa "${hs_args[@]}" || true
        stop_server
    done
fi

if block 3; then
    log "block 3/7: bulk up (to a sink upstream)"
    for s in "${SERVER_LIST[@]}"; do
        start_server "$s" ecdsa sink 1 1
        run_load bulk-up ecdsa --mode bulk-up --concurrency "$BULK_CONC" --bytes "$BULK_BYTES" --duration "$DUR" || true
        stop_server
    done
fi

if block 4; then
    log "block 4/7: bulk down (from a source upstream)"
    for s in "${SERVER_LIST[@]}"; do
        start_server "$s" ecdsa source 1 1
        run_load bulk-down ecdsa --mode bulk-down --concurrency "$BULK_CONC" --bytes "$BULK_BYTES" --duration "$DUR" || true
        stop_server
    done
fi

if block 5; then
    log "block 5/7: RSS per idle connection ($IDLE_N connections)"
    for s in "${SERVER_LIST[@]}"; do
        start_server "$s" ecdsa echo 1 1
        # A short handshake run first, so that one-time allocations (TLS contexts, buffer pools)
        # land in the baseline rather than in the per-connection figure.
        warmup ecdsa
        sleep 0.5
        measure_idle "$IDLE_N"
        stop_server
    done
fi

if block 6 && [[ " ${SERVER_LIST[*]} " == *" ringtls "* ]]; then
    log "block 6/7: ringtls --threads 1 vs --threads 2 (not pinned by taskset; load on core 1)"
    for t in 1 2; do
        SRV_THREADS=$t
        start_server ringtls ecdsa echo "$t" 0
        warmup ecdsa
        run_load "threads-$t" ecdsa "${hs_args[@]}" || true
        stop_server
    done
    SRV_THREADS=1
fi

# The data path each connection took, from ringtls' close events in LOG: "KTLS OTHER SPLICED DOWN",
# the connections with path=ktls, those with any other path, and the sums of their spliced= and
# down= bytes (down= is what the server sent the client, more than the load counts as read).
ktls_paths() {
    awk '$3 == "conn.closed" {
        path = "?"
        if (match($0, / path=[a-z]+ up=/)) path = substr($0, RSTART + 6, RLENGTH - 10)
        if (path == "ktls") k++; else o++
        if (match($0, / spliced=[0-9]+/)) s += substr($0, RSTART + 9, RLENGTH - 9)
        if (match($0, / down=[0-9]+/)) d += substr($0, RSTART + 6, RLENGTH - 6)
    }
    END { printf "%d %d %.0f %.0f\n", k, o, s, d }' "$1"
}

KTLS_STATE="not probed (block 7 did not run)"
if block 7; then
    if [[ " ${SERVER_LIST[*]} " != *" ringtls "* ]]; then
        log "block 7/7 skipped: ringtls is not in --servers"
    else
        log "block 7/7: ringtls kernel TLS vs user space, bulk up and bulk down"
        # Whether this kernel offers kernel TLS: ringtls probes at start with --ktls auto and says
        # ktls.available (suites=...) or ktls.unavailable (detail="...") in its log.
        RINGTLS_EXTRA=(--ktls auto)
        start_server ringtls ecdsa sink 1 1
        probe_log=$SRV_LOG
        stop_server
        ktls_flag=on
        if grep -q ' ktls\.available' "$probe_log"; then
            KTLS_STATE="available ($(grep -m1 -o 'suites=[^ ]*' "$probe_log" || echo 'suites not logged'))"
            log "  kernel TLS is available: ${KTLS_STATE#available }"
        else
            why=$(sed -nE 's/.* ktls\.unavailable .*detail="(([^"\\]|\\.)*)".*/\1/p' "$probe_log" | head -n1)
            why=${why//\\\"/\"}
            [[ -n $why ]] || why="ringtls --ktls auto logged no ktls.available line at start; log $(basename "$probe_log")"
            KTLS_STATE="unavailable ($why)"
            if [[ ${BENCH_KTLS_FORCE:-0} == 1 ]]; then
                ktls_flag=auto
                printf '\nbench: block 7 forced (BENCH_KTLS_FORCE=1) on a kernel without kernel TLS (%s): its "ktls" runs use --ktls auto and take the user-space path\n\n' "$why" >&2
                echo "kernel TLS rows (block 7) forced with BENCH_KTLS_FORCE=1 on a kernel that offers no kernel TLS (\`$why\`): the kTLS rows ran with \`--ktls auto\` and measure user space again" >> "$WORK/notes.txt"
            else
                ktls_flag=
                printf '\nbench: block 7 skipped: this kernel offers no kernel TLS (%s)\n\n' "$why" >&2
                echo "kernel TLS rows (block 7) not measured: this kernel offers no kernel TLS (\`$why\`); BENCH_KTLS_FORCE=1 runs the block anyway with \`--ktls auto\`" >> "$WORK/notes.txt"
            fi
        fi
        if [[ -n $ktls_flag ]]; then
            # The loads of blocks 3 and 4; per direction --ktls off, then on, each on a fresh server.
            for dir in up down; do
                upmode=sink
                [[ $dir == down ]] && upmode=source
                for mode in off "$ktls_flag"; do
                    kind=ktls
                    [[ $mode == off ]] && kind=user
                    RINGTLS_EXTRA=(--ktls "$mode")
                    start_server ringtls ecdsa "$upmode" 1 1
                    run_load "bulk-$dir-$kind" ecdsa --mode "bulk-$dir" --concurrency "$BULK_CONC" \
                        --bytes "$BULK_BYTES" --duration "$DUR" || true
                    run_meta=$WORK/records/$(printf '%03d' "$SEQ").meta.json
                    stop_server
                    # Counted from the log once the server is gone, so that every close is in it:
                    # the kernel path is shown taken, not assumed.
                    read -r k_conns o_conns spliced down <<< "$(ktls_paths "$SRV_LOG")"
                    append_meta "$run_meta" ktls_mode="$mode" ktls_conns="$k_conns" \
                        other_conns="$o_conns" spliced_bytes="$spliced" logged_down_bytes="$down"
                    log "  ringtls bulk-$dir-$kind (--ktls $mode): $k_conns of $((k_conns + o_conns)) connections took path=ktls; $spliced bytes spliced"
                done
            done
        fi
        RINGTLS_EXTRA=()
    fi
fi

# --- crypto floor (placeholder hook, see the build step) ----------------------------------------
if [[ $HAS_FLOOR == True ]]; then
    log "crypto floor: cargo bench --bench crypto_floor -- --json (core 0)"
    timeout 600 taskset -c 0 cargo bench --quiet --bench crypto_floor -- --json \
        > "$WORK/crypto_floor.out" 2> "$WORK/crypto_floor.err" || log "crypto_floor bench failed: $(tail -n3 "$WORK/crypto_floor.err")"
fi

# --- machine and report --------------------------------------------------------------------------
{
    echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "quick=$QUICK"
    echo "nproc=$(nproc)"
    echo "cpu_model=$(lscpu | sed -nE 's/^Model name:[[:space:]]+//p' | head -n1)"
    echo "kernel=$(uname -srm)"
    echo "memory=$(free -g | awk '/^Mem:/ {print $2 " GiB"}')"
    echo "haproxy=$(haproxy -v | head -n1)"
    echo "nginx=$(nginx -v 2>&1 | head -n1)"
    echo "stunnel=$("$STUNNEL" -version 2>&1 | grep -m1 '^stunnel')"
    echo "openssl=$(openssl version)"
    echo "ringtls=$(git -C "$ROOT" rev-parse --short HEAD 2> /dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml 2> /dev/null || echo ' (+ uncommitted changes in src/)')"
    echo "rustc=$(rustc --version 2> /dev/null || echo unknown)"
    echo "duration=$DUR"
    echo "warmup=$WARMUP"
    echo "handshake_concurrency=$HS_CONC"
    echo "bulk_concurrency=$BULK_CONC"
    echo "bulk_bytes=$BULK_BYTES"
    echo "echo_concurrency=$ECHO_CONC"
    echo "echo_size=$ECHO_SIZE"
    echo "echo_rate=$ECHO_RATE"
    echo "idle_wanted=$IDLE_WANT"
    echo "idle_n=$IDLE_N"
    echo "idle_batch=$IDLE_BATCH"
    echo "nofile=$NOFILE"
    echo "clk_tck=$CLK_TCK"
    echo "servers=$SERVERS"
    echo "ktls=$KTLS_STATE"
    echo "elapsed_s=$((SECONDS - T_START))"
    echo "load_failures=$FAILURES"
    echo "command=scripts/bench.sh$([[ $QUICK == 1 ]] && echo ' --quick')"
} > "$WORK/meta.txt"

mkdir -p "$OUT"
python3 "$ROOT/scripts/bench/report.py" --work "$WORK" --out "$OUT"
log "done in $((SECONDS - T_START))s: $OUT/results.md, $OUT/chart.svg, $OUT/raw.json"
[[ $FAILURES -eq 0 ]] || log "$FAILURES load run(s) had problems; see the log lines marked !! above and raw.json"
