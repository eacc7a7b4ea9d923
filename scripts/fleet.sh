#!/usr/bin/env bash
# scripts/fleet.sh: three ringtls replicas behind HAProxy, as a fleet behind an L4 balancer runs,
# and the five things such a fleet must show. Needs root (network namespaces), ip, haproxy, curl
# and python3.
#
#   scripts/fleet.sh [--bin PATH] [--seconds N] [--drain-delay D] [--out DIR] [--keep]
#
# --bin PATH       the ringtls binary (default target/release/ringtls; build it first)
# --seconds N      length of each load run (default 4; the rolling restart and the kill take
#                  longer); about 15 N + 5 s in all
# --drain-delay D  the replicas' --drain-delay (default 1s, five health-check intervals); with
#                  0s a rolling restart may reset the connections queued at a listener's close
# --out DIR        also write the figures there as fleet-<UTC time>.json
# --keep           keep the work dir (PKI, configurations, every log and load report)
#
# The network, made here and removed at exit (the run holds /run/lock/ringtls-fleet.lock, so two
# runs never share it):
#   - replica i (1..3) in its own namespace, one veth: 198.18.i.1 on the host side, and on the
#     replica's side 198.18.i.2 and 198.18.i.3 (two "pod addresses": each restart moves to the
#     other, as a new pod gets a new IP, so the old process may drain while the new one serves),
#     an echo upstream on the namespace's 127.0.0.1:8080;
#   - the load generator (`ringtls load`) in a namespace of its own at 198.18.10.2;
#   - HAProxy on the host at 198.18.10.1:8443, `mode tcp`, `balance random`, `send-proxy-v2`,
#     an HTTP health check of each address's /readyz (every 200 ms, one failure takes it out,
#     one success puts it back), `retries 3` with `option redispatch`; its CSV stats at
#     198.18.10.1:8404.
# 198.18.0.0/15 is the range set aside for benchmarking (RFC 2544); the script refuses to run
# if the host already routes any of it.
#
# Every replica runs `--accept-proxy --accept-proxy-from 198.18.i.1 --drain-delay 1s
# --drain-timeout 60s` (--drain-delay as given); with shared keys, each has its own copy of one `--ticket-keys` file.
#
# The figures, each with its bar (any bar missed: exit 1, work dir kept):
#   1. resumption across replicas: `load --mode handshake --resume`; resumed fraction >= 0.95
#      with a shared key file, and 0.15..0.55 without (a third expected: a client's ticket is
#      from the replica that served it last, and the next connection lands there one time in
#      three);
#   2. rolling restart while a handshake load and an echo load (24 connections held throughout,
#      200 round trips/s) run: each replica in turn gets SIGTERM and is started again on its
#      other address, and the next waits until HAProxy has the new one up: 0 failed handshakes,
#      0 connections cut;
#   3. key rotation during a handshake load: a new key file (the old encrypting key kept as a
#      decrypting one) written on every replica and SIGHUP sent to each: resumed fraction >= 0.9;
#   4. one replica SIGKILLed under the echo and handshake loads: failures no more than the
#      connections it held (its ringtls_connections_active just before the kill plus the
#      handshake load's concurrency, the most that can be in flight), and 0 in a handshake load
#      run once HAProxy has marked it down;
#   5. the replicas' connection events name the load generator's address (198.18.10.2) and
#      never HAProxy's (198.18.i.1).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/target/release/ringtls
SECONDS_PER_RUN=4
DRAIN_DELAY=1s
OUT=
KEEP=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --bin) BIN=$2; shift 2 ;;
        --seconds) SECONDS_PER_RUN=$2; shift 2 ;;
        --drain-delay) DRAIN_DELAY=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        *) echo "fleet: unknown argument $1 (see the header of $0)" >&2; exit 64 ;;
    esac
done
log() { printf 'fleet: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
[[ -x $BIN ]] || { log "$BIN is not an executable (cargo build --release?)"; exit 64; }
[[ $(id -u) == 0 ]] || { log "needs root: it creates network namespaces"; exit 69; }
for tool in ip haproxy curl python3 flock; do
    command -v "$tool" > /dev/null || { log "needs $tool"; exit 69; }
done
[[ $SECONDS_PER_RUN =~ ^[1-9][0-9]*$ ]] || { log "--seconds $SECONDS_PER_RUN: a whole number of seconds"; exit 64; }

exec 9> /run/lock/ringtls-fleet.lock # children close it (9>&-): a leftover must not hold the lock
flock -w 600 9 || die "another fleet run holds /run/lock/ringtls-fleet.lock"
# Holding the lock, whatever an earlier run left (one killed with SIGKILL runs no trap) is
# nobody's: its namespaces, with their processes, and its HAProxy.
for ns in $(ip netns list | awk '/^rtf[0-9]+-(r[123]|c)( |$)/ { print $1 }'); do
    log "removing $ns, left by an earlier run"
    ip netns pids "$ns" | xargs -r kill -KILL 2> /dev/null || true
    ip netns del "$ns" || true
done
pkill -KILL -f '^haproxy -f /tmp/ringtls-fleet\.[^/]*/haproxy\.cfg' 2> /dev/null || true
if ip route show | grep -qE '^198\.(18|19)\.'; then
    die "the host already routes part of 198.18.0.0/15: $(ip route show | grep -E '^198\.(18|19)\.' | head -1)"
fi

# shellcheck source=scripts/lib/work.sh
source "$ROOT/scripts/lib/work.sh"
work_dir fleet
TAG=rtf$$
NAMESPACES=()
cleanup_network() {
    local ns
    for ns in "${NAMESPACES[@]+"${NAMESPACES[@]}"}"; do
        # The processes in it first: a namespace with a process left keeps its addresses.
        ip netns pids "$ns" 2> /dev/null | xargs -r kill -KILL 2> /dev/null || true
        ip netns del "$ns" 2> /dev/null || true
    done
}
# work.sh's EXIT trap stops the children and removes the work dir; the network goes first.
# (exit "$rc") hands work_cleanup the script's own exit status, which it keeps.
trap 'rc=$?; cleanup_network; (exit "$rc"); work_cleanup' EXIT

# namespace NAME HOST_ADDR NS_ADDR...: a namespace joined to the host by one veth pair.
namespace() {
    local ns=$TAG-$1 host=$2 addr
    shift 2
    ip netns add "$ns"
    NAMESPACES+=("$ns")
    ip link add "$ns-h" type veth peer name "$ns-n"
    ip link set "$ns-n" netns "$ns"
    ip addr add "$host/24" dev "$ns-h"
    ip link set "$ns-h" up
    for addr in "$@"; do ip -n "$ns" addr add "$addr/24" dev "$ns-n"; done
    ip -n "$ns" link set "$ns-n" up
    ip -n "$ns" link set lo up
}
# Run in namespace NAME: `ip netns exec` execs the program, so $! of `in_ns ... &` would be a
# subshell's; background processes call `ip netns exec "$TAG-NAME"` themselves.

for i in 1 2 3; do namespace "r$i" "198.18.$i.1" "198.18.$i.2" "198.18.$i.3"; done
namespace c 198.18.10.1 198.18.10.2
CLIENT_ADDR=198.18.10.2

"$BIN" pki "$WORK/pki" > /dev/null
P=$WORK/pki
new_key() { head -c 80 /dev/urandom | base64 -w0; echo; }
KEYS=("$(new_key)" "$(new_key)" "$(new_key)" "$(new_key)")
# Each replica's own copy of the file, as each pod mounts the Secret.
write_keys() { # write_keys LINES...: the same file on every replica, replaced by rename
    local i
    for i in 1 2 3; do
        mkdir -p "$WORK/r$i"
        printf '%s\n' "$@" > "$WORK/r$i/ticket-keys.new"
        chmod 600 "$WORK/r$i/ticket-keys.new"
        mv "$WORK/r$i/ticket-keys.new" "$WORK/r$i/ticket-keys"
    done
}
write_keys "${KEYS[0]}" "${KEYS[1]}" "${KEYS[2]}"

for i in 1 2 3; do
    ip netns exec "$TAG-r$i" "$BIN" upstream --listen 127.0.0.1:8080 > "$WORK/upstream$i.out" 2>&1 9>&- &
    CHILDREN+=("$!")
    disown "$!" # killed with the namespace at exit, without bash's "Killed" line
done

cat > "$WORK/haproxy.cfg" <<EOF
global
    maxconn 4000
defaults
    mode tcp
    timeout connect 2s
    timeout client 90s
    timeout server 90s
    retries 3
    option redispatch 1
listen stats
    mode http
    bind 198.18.10.1:8404
    stats enable
    stats uri /stats
frontend fleet
    bind 198.18.10.1:8443
    default_backend replicas
backend replicas
    balance random
    option httpchk
    http-check send meth GET uri /readyz
    http-check expect status 200
    default-server check port 9090 inter 200ms fall 1 rise 1 send-proxy-v2
EOF
for i in 1 2 3; do
    for slot in 2 3; do
        echo "    server r$i-$slot 198.18.$i.$slot:8443" >> "$WORK/haproxy.cfg"
    done
done
haproxy -f "$WORK/haproxy.cfg" -db > "$WORK/haproxy.log" 2>&1 9>&- &
CHILDREN+=("$!")
for _ in $(seq 1 100); do
    curl -s -o /dev/null --max-time 1 'http://198.18.10.1:8404/stats;csv' && break
    kill -0 "${CHILDREN[-1]}" 2> /dev/null || die "haproxy exited: $(cat "$WORK/haproxy.log")"
    sleep 0.05
done

# HAProxy's view of one server address (UP, DOWN, ...), from its CSV stats.
server_status() {
    curl -s --max-time 2 'http://198.18.10.1:8404/stats;csv' |
        awk -F, -v s="$1" '$1 == "replicas" && $2 == s { print $18 }'
}
# wait_status SERVER STATUS: bounded (20 s).
wait_status() {
    local _
    for _ in $(seq 1 200); do
        [[ $(server_status "$1") == "$2"* ]] && return 0
        sleep 0.1
    done
    die "HAProxy never had $1 $2 (now: $(server_status "$1")); $WORK/haproxy.log"
}

# Replica i's running process, the address slot it uses, and how many it has started.
declare -A PID SLOT STARTS
# start_replica I [shared]: a new process on the address slot the last one did not use.
start_replica() {
    local i=$1 shared=${2:-} slot args n
    slot=$(( ${SLOT[$i]:-3} == 2 ? 3 : 2 ))
    n=$(( ${STARTS[$i]:-0} + 1 ))
    local addr=198.18.$i.$slot
    args=(serve --listen "$addr:8443" --upstream 127.0.0.1:8080
          --crt "$P/server.pem" --key "$P/server.key" --mutual-tls-cas "$P/ca.pem"
          --accept-proxy --accept-proxy-from "198.18.$i.1"
          --metrics "$addr:9090" --drain-delay "$DRAIN_DELAY" --drain-timeout 60s --log-format json)
    [[ $shared == shared ]] && args+=(--ticket-keys "$WORK/r$i/ticket-keys")
    ip netns exec "$TAG-r$i" "$BIN" "${args[@]}" > "$WORK/r$i.$n.out" 2> "$WORK/r$i.$n.log" 9>&- &
    PID[$i]=$!
    CHILDREN+=("$!")
    disown "$!" # as the upstreams
    SLOT[$i]=$slot
    STARTS[$i]=$n
    local _
    for _ in $(seq 1 200); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://$addr:9090/readyz") == 200 ]] && break
        kill -0 "${PID[$i]}" 2> /dev/null || die "replica $i exited at start: $(tail -3 "$WORK/r$i.$n.log")"
        sleep 0.05
    done
    wait_status "r$i-$slot" UP
}
# stop_replica I: SIGTERM and wait for the exit (bounded by the drain, 60 s, plus a margin).
stop_replica() {
    local pid=${PID[$1]} _
    kill -TERM "$pid"
    for _ in $(seq 1 700); do
        kill -0 "$pid" 2> /dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2> /dev/null && die "replica $1 (pid $pid) did not exit after SIGTERM"
    forget_child "$pid"
}

# load NAME ARGS...: `ringtls load --json` from the client namespace, in the background; the
# report goes to $WORK/NAME.json. `--max-failures 100%`: the figures judge the failures.
load() {
    local name=$1
    shift
    ip netns exec "$TAG-c" "$BIN" load --connect 198.18.10.1:8443 --ca "$P/ca.pem" \
        --crt "$P/client.pem" --key "$P/client.key" --json --max-failures 100% "$@" \
        > "$WORK/$name.json" 2> "$WORK/$name.err" 9>&- &
    LOAD_PID=$!
    CHILDREN+=("$!")
}
finish_load() { # finish_load PID NAME: waits for it and checks it reported
    wait "$1" || die "load $2 exited $?: $(cat "$WORK/$2.err")"
    forget_child "$1"
    [[ -s $WORK/$2.json ]] || die "load $2 printed no report: $(cat "$WORK/$2.err")"
}
field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$WORK/$1.json" "$2"; }
handshakes() { load "$1" --mode handshake --resume --concurrency 8 --duration "$2"; }
echoes() { load "$1" --mode echo --concurrency 24 --rate 200 --duration "$2"; }
active_connections() { # active_connections I
    curl -s --max-time 2 "http://198.18.$1.${SLOT[$1]}:9090/metrics" |
        awk '/^ringtls_connections_active[ {]/ { n += $NF } END { print n + 0 }'
}
FAILED=0
verdict() { # verdict OK TEXT
    if [[ $1 == 1 ]]; then log "PASS $2"; else log "FAIL $2"; FAILED=1; fi
}
ge() { python3 -c 'import sys; print(int(float(sys.argv[1]) >= float(sys.argv[2])))' "$1" "$2"; }
between() { python3 -c 'import sys; a, lo, hi = map(float, sys.argv[1:]); print(int(lo <= a <= hi))' "$1" "$2" "$3"; }

# 1. Resumption without shared keys, then with them.
for i in 1 2 3; do start_replica "$i"; done
handshakes resume-own "${SECONDS_PER_RUN}s"; finish_load "$LOAD_PID" resume-own
for i in 1 2 3; do stop_replica "$i"; done
for i in 1 2 3; do start_replica "$i" shared; done
handshakes resume-shared "${SECONDS_PER_RUN}s"; finish_load "$LOAD_PID" resume-shared
own=$(field resume-own resumed_fraction)
shared=$(field resume-shared resumed_fraction)
verdict "$(ge "$shared" 0.95)" "1. resumed fraction with a shared key file: $shared (bar >= 0.95)"
verdict "$(between "$own" 0.15 0.55)" "1. resumed fraction with per-process keys: $own (about 1/3 expected: 0.15..0.55)"

# 2. Rolling restart.
roll=$(( SECONDS_PER_RUN * 3 + 10 ))
handshakes roll-handshakes "${roll}s"; roll_h=$LOAD_PID
echoes roll-echo "${roll}s"; roll_e=$LOAD_PID
for i in 1 2 3; do
    old=${PID[$i]}
    old_slot=${SLOT[$i]}
    kill -TERM "$old"
    start_replica "$i" shared
    wait_status "r$i-$old_slot" DOWN
    log "replica $i restarted: pid $old (198.18.$i.$old_slot) draining, pid ${PID[$i]} (198.18.$i.${SLOT[$i]}) serving"
    sleep "$SECONDS_PER_RUN" # let the load run on the new set before the next restart
done
finish_load "$roll_h" roll-handshakes
finish_load "$roll_e" roll-echo
roll_failed=$(field roll-handshakes failed)
roll_cut=$(field roll-echo failed)
verdict "$(( roll_failed == 0 ))" "2. rolling restart: $roll_failed failed handshakes of $(field roll-handshakes ok) (bar 0)"
verdict "$(( roll_cut == 0 ))" "2. rolling restart: $roll_cut of 24 held connections cut (bar 0)"

# 3. Key rotation: the second key (encrypting so far) stays to decrypt, the third encrypts.
handshakes rotate "$(( SECONDS_PER_RUN * 2 ))s"; rotate_pid=$LOAD_PID
sleep "$(( SECONDS_PER_RUN / 2 + 1 ))"
write_keys "${KEYS[1]}" "${KEYS[2]}" "${KEYS[3]}"
for i in 1 2 3; do kill -HUP "${PID[$i]}"; done
finish_load "$rotate_pid" rotate
for i in 1 2 3; do
    grep -q '"reload.ok"' "$WORK/r$i.${STARTS[$i]}.log" || die "replica $i did not reload the new keys: $WORK/r$i.${STARTS[$i]}.log"
done
rotated=$(field rotate resumed_fraction)
verdict "$(ge "$rotated" 0.9)" "3. resumed fraction across a key rotation: $rotated (bar >= 0.9)"

# 4. SIGKILL one replica under load; then a load once HAProxy has taken it out.
kill_run=$(( SECONDS_PER_RUN * 2 + 4 ))
echoes kill-echo "${kill_run}s"; kill_e=$LOAD_PID
handshakes kill-handshakes "${kill_run}s"; kill_h=$LOAD_PID
sleep "$SECONDS_PER_RUN"
held=$(active_connections 2)
kill -KILL "${PID[2]}"
forget_child "${PID[2]}"
wait_status "r2-${SLOT[2]}" DOWN
finish_load "$kill_e" kill-echo
finish_load "$kill_h" kill-handshakes
handshakes after-kill "${SECONDS_PER_RUN}s"; finish_load "$LOAD_PID" after-kill
kill_failed=$(( $(field kill-echo failed) + $(field kill-handshakes failed) ))
bound=$(( held + 8 ))
verdict "$(( kill_failed <= bound ))" "4. SIGKILL: $kill_failed failures ($(field kill-echo failed) cut, $(field kill-handshakes failed) handshakes); the replica held $held (bound $bound with the handshakes in flight)"
after=$(field after-kill failed)
verdict "$(( after == 0 ))" "4. after HAProxy took it out: $after failures of $(field after-kill ok) (bar 0)"

# 5. Whose address the replicas' events name.
read -r from_client from_haproxy <<< "$(cat "$WORK"/r[123].*.log | python3 -c '
import json, sys
client = haproxy = 0
for line in sys.stdin:
    try:
        event = json.loads(line)
    except ValueError:
        continue
    peer = str(event.get("peer", ""))
    if not event.get("event", "").startswith("conn."):
        continue
    if peer.startswith(sys.argv[1] + ":"):
        client += 1
    elif peer.startswith("198.18."):
        haproxy += 1
print(client, haproxy)' "$CLIENT_ADDR")"
verdict "$(( from_client > 0 && from_haproxy == 0 ))" "5. connection events naming $CLIENT_ADDR: $from_client; naming HAProxy's side: $from_haproxy (bar 0)"

figures=$(printf '{"resumed_shared":%s,"resumed_own":%s,"roll_failed_handshakes":%s,"roll_cut":%s,"rotation_resumed":%s,"kill_failures":%s,"kill_held":%s,"kill_bound":%s,"after_kill_failures":%s,"events_client":%s,"events_balancer":%s}' \
    "$shared" "$own" "$roll_failed" "$roll_cut" "$rotated" "$kill_failed" "$held" "$bound" "$after" "$from_client" "$from_haproxy")
echo "$figures"
if [[ -n $OUT ]]; then
    mkdir -p "$OUT"
    echo "$figures" > "$OUT/fleet-$(date -u +%Y%m%dT%H%M%SZ).json"
fi
[[ $FAILED == 0 ]] || die "a figure missed its bar (above); work dir kept: $WORK"
