#!/usr/bin/env bash
# scripts/scan.sh: testssl.sh (the Debian package) against a running ringtls on loopback, and a
# verdict on what it found. Exits non-zero if testssl grades any finding MEDIUM or above, if SSLv2,
# SSLv3, TLS 1.0 or TLS 1.1 is offered, or if a weak cipher suite is (scripts/scan/check.py).
#
#   scripts/scan.sh [--out DIR] [--bin PATH] [--keep]    (about 10 minutes)
#
# Options: --out DIR (default benches/results/scan), --bin PATH (a ringtls binary to scan instead
# of building target/release/ringtls), --keep (keep the temp dir with PKI and server logs).
#
# Three passes, each against `ringtls serve --mutual-tls-cas` in front of an echo upstream:
#   full:ecdsa  default testssl run, ECDSA P-256 server certificate (`ringtls pki`)
#   full:rsa    default testssl run, RSA-2048 server certificate from the same CA
#   auth:ecdsa  -S -R with the client certificate presented, through an openssl wrapper
# testssl 3.0.8 has no client-certificate option, so the full passes see what any peer without a
# certificate sees: everything up to the server's CertificateRequest (protocols, every cipher,
# server order, certificate, the handshake-level vulnerabilities). What needs a completed handshake
# (session tickets and resumption, client-initiated renegotiation) testssl reports as not tested;
# the auth pass runs those checks with a certificate. The server's own log is the proof of which
# is which: a full pass must end with no connection admitted (conn.closed), the auth pass with
# some. Out dir: LABEL.json (testssl's flat JSON), LABEL.log (its text output) and summary.md.
set -euo pipefail

usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="$ROOT/benches/results/scan"
BIN=
KEEP=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --out) OUT=${2:?--out needs a directory}; shift ;;
        --bin) BIN=${2:?--bin needs a path}; shift ;;
        --keep) KEEP=1 ;;
        -h | --help) usage; exit 0 ;;
        *) printf 'scan: unknown option %s\n' "$1" >&2; usage >&2; exit 64 ;;
    esac
    shift
done

READY_S=20          # for a listening line
TESTSSL_BOUND=900   # seconds for one testssl pass (they take 1-3 minutes here)

log() { printf 'scan: [%3ds] %s\n' "$SECONDS" "$*" >&2; }
die() {
    printf '\nscan: FAILED: %s\n' "$*" >&2
    exit 1
}

# --- tools ---------------------------------------------------------------------------------------
need_pkgs=()
command -v testssl > /dev/null || need_pkgs+=(testssl.sh)
command -v python3 > /dev/null || need_pkgs+=(python3)
command -v openssl > /dev/null || need_pkgs+=(openssl)
command -v timeout > /dev/null || need_pkgs+=(coreutils)
if [[ ${#need_pkgs[@]} -gt 0 ]]; then
    log "installing ${need_pkgs[*]}"
    bash "$ROOT/scripts/apt-install.sh" "${need_pkgs[@]}" || die "could not install ${need_pkgs[*]} (above)"
fi
# The parser is checked before minutes are spent on a scan it could not read.
python3 "$ROOT/scripts/scan/check.py" --self-test > /dev/null || die "scripts/scan/check.py --self-test fails"

if [[ -z $BIN ]]; then
    log "cargo build --release"
    (cd "$ROOT" && cargo build --release --quiet)
    BIN=$ROOT/target/release/ringtls
fi
[[ -x $BIN ]] || die "$BIN is not an executable ringtls"
RINGTLS=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")

# --- work dir and cleanup (scripts/lib/work.sh) -----------------------------------------------
# shellcheck source=scripts/lib/work.sh
. "$(dirname "$0")/lib/work.sh"
work_dir scan

# start_ringtls NAME ARGS...: runs `ringtls ARGS...` in the background (stderr to WORK/NAME.err)
# and sets PORT and PID once it printed its listening line `{"listening":["127.0.0.1:PORT"]}`.
# Its stdout is a FIFO read with a deadline: no polling, and an early exit is seen at once (EOF).
# The FIFO stays open until the script ends, so a later write to stdout never meets a closed pipe.
start_ringtls() {
    local name=$1 line=
    local fifo=$WORK/$name.stdout
    shift
    mkfifo "$fifo"
    "$RINGTLS" "$@" > "$fifo" 2> "$WORK/$name.err" &
    PID=$!
    CHILDREN+=("$PID")
    exec {fd}< "$fifo"
    read -r -t "$READY_S" -u "$fd" line || true
    [[ $line =~ \"127\.0\.0\.1:([0-9]+)\" ]] ||
        die "ringtls $1 ($name) printed no listening line within ${READY_S}s (got '$line'): $(tail -n5 "$WORK/$name.err")"
    PORT=${BASH_REMATCH[1]}
}

stop_ringtls() {
    local pid=$1 keep=() p
    kill -TERM "$pid" 2> /dev/null || true
    wait "$pid" 2> /dev/null || true
    for p in "${CHILDREN[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    CHILDREN=("${keep[@]+"${keep[@]}"}")
}

# echo_count PORT [--crt FILE --key FILE]: round trips a client got through in one second.
echo_count() {
    local port=$1
    shift
    timeout 30 "$RINGTLS" load --connect "127.0.0.1:$port" --ca "$PKI/ca.pem" --server-name localhost \
        --mode echo --concurrency 1 --duration 1s --json --max-failures 100% "$@" 2> /dev/null |
        python3 -c 'import json, sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])["ok"])' ||
        echo error
}

# Before minutes of scanning: the server under test answers a client with a certificate and lets
# nothing through for one without. A scan of a server that does not enforce mTLS proves nothing.
preflight() {
    local port=$1 with without
    with=$(echo_count "$port" --crt "$PKI/client.pem" --key "$PKI/client.key")
    without=$(echo_count "$port")
    [[ $with =~ ^[1-9][0-9]*$ ]] || die "a client WITH a certificate got no echo through port $port ($with)"
    [[ $without == 0 ]] || die "a client WITHOUT a certificate got $without echoes through port $port"
}

# Lines of a server log with EVENT: conn.closed is a connection that passed the handshake and
# client verification (a refused one is conn.rejected).
events() { grep -c " $1 " "$2" || true; }

# run_testssl LABEL PORT [TESTSSL-OPTIONS...]: one pass, loopback only (--ip, no DNS, no phoning
# out), SNI localhost, our CA added to testssl's trust stores so the chain is judged as a
# deployment's would be. testssl's exit code sums its checks' return values (3.0.8), so the
# verdict comes from the JSON alone; that the JSON is complete is check.py's job.
run_testssl() {
    local label=$1 port=$2 t0 rc=0 admitted0 rejected0 admitted
    shift 2
    t0=$SECONDS
    admitted0=$(events conn.closed "$SERVE_LOG") rejected0=$(events conn.rejected "$SERVE_LOG")
    log "testssl $label on 127.0.0.1:$port"
    # From the temp dir: testssl prints the git commit of its working directory in its banner.
    (cd "$WORK" && timeout --kill-after=10 "$TESTSSL_BOUND" testssl --quiet --color 0 --warnings batch \
        --sneaky --nodns none --ip 127.0.0.1 --connect-timeout 10 --add-ca "$PKI/ca.pem" \
        --jsonfile "$WORK/$label.json" "$@" "localhost:$port") > "$WORK/$label.log" 2>&1 || rc=$?
    [[ $rc -lt 124 ]] || die "testssl $label did not finish within ${TESTSSL_BOUND}s (exit $rc); log $WORK/$label.log"
    admitted=$(($(events conn.closed "$SERVE_LOG") - admitted0))
    log "testssl $label done in $((SECONDS - t0))s (exit $rc); the server admitted $admitted connections, refused $(($(events conn.rejected "$SERVE_LOG") - rejected0))"
    PASS_TIMES+=("$label $((SECONDS - t0))s")
    ADMITTED+=("$label $admitted")
    case $label in
        full-*) [[ $admitted == 0 ]] || GATE_FAIL+=("$label: the server admitted $admitted connections of a scanner without a client certificate; $SERVE_LOG") ;;
        auth-*) [[ $admitted -gt 0 ]] || GATE_INCOMPLETE+=("$label: the server admitted no connection, so the client certificate was never presented") ;;
    esac
}

# --- PKI -----------------------------------------------------------------------------------------
PKI=$WORK/pki
"$RINGTLS" pki "$PKI" > /dev/null
# RSA-2048 server certificate signed by the same root: with it the server offers ECDHE-RSA
# suites, and ROBOT and DROWN have an RSA key to look at.
# shellcheck source=scripts/lib/pki.sh
. "$(dirname "$0")/lib/pki.sh"
rsa_server_cert "$PKI" 730
# testssl 3.0.8 cannot present a client certificate: for the auth pass, its openssl is this
# wrapper, which adds ours to every s_client (socket-level checks send no certificate anyway).
OPENSSL_REAL=$(command -v openssl)
cat > "$WORK/openssl-with-client-cert" << EOF
#!/bin/sh
if [ "\${1:-}" = s_client ]; then
    shift
    exec "$OPENSSL_REAL" s_client -cert "$PKI/client.pem" -key "$PKI/client.key" "\$@"
fi
exec "$OPENSSL_REAL" "\$@"
EOF
chmod +x "$WORK/openssl-with-client-cert"

# --- servers and passes --------------------------------------------------------------------------
T_START=$SECONDS
PASS_TIMES=()
ADMITTED=()
GATE_FAIL=()
GATE_INCOMPLETE=()
start_ringtls upstream upstream --listen 127.0.0.1:0 --mode echo
UPSTREAM_PORT=$PORT

serve() { # serve NAME CRT KEY
    SERVE_LOG=$WORK/$1.err
    start_ringtls "$1" serve --listen 127.0.0.1:0 --upstream "127.0.0.1:$UPSTREAM_PORT" \
        --crt "$2" --key "$3" --mutual-tls-cas "$PKI/ca.pem"
    preflight "$PORT"
}

serve serve-ecdsa "$PKI/server.pem" "$PKI/server.key"
run_testssl full-ecdsa "$PORT"
run_testssl auth-ecdsa "$PORT" --openssl "$WORK/openssl-with-client-cert" -S -R
stop_ringtls "$PID"

serve serve-rsa "$PKI/server-rsa.pem" "$PKI/server-rsa.key"
run_testssl full-rsa "$PORT"
stop_ringtls "$PID"

# --- verdict -------------------------------------------------------------------------------------
mkdir -p "$OUT"
for label in full-ecdsa auth-ecdsa full-rsa; do
    cp "$WORK/$label.json" "$WORK/$label.log" "$OUT/"
done
version=$(dpkg-query -W -f '${Version}' testssl.sh 2> /dev/null ||
    testssl --version 2>&1 | sed 's/\x1b\[[0-9;]*m//g' | grep -oE 'testssl +[0-9][^ ]*' | head -n1)
commit=$(git -C "$ROOT" rev-parse --short HEAD 2> /dev/null || echo unknown)
git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml 2> /dev/null || commit+=" (+ uncommitted changes in src/)"
rc=0
python3 "$ROOT/scripts/scan/check.py" --summary-md "$OUT/summary.md" \
    --meta "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    --meta "command: scripts/scan.sh" \
    --meta "testssl.sh $version (Debian package), $(openssl version)" \
    --meta "ringtls $commit" \
    --meta "pass times: ${PASS_TIMES[*]}; whole scan $((SECONDS - T_START))s" \
    --meta "connections the server admitted (its conn.closed lines) per pass: ${ADMITTED[*]}" \
    "full:ecdsa=$OUT/full-ecdsa.json" "auth:ecdsa=$OUT/auth-ecdsa.json" "full:rsa=$OUT/full-rsa.json" || rc=$?
for msg in "${GATE_FAIL[@]+"${GATE_FAIL[@]}"}"; do
    printf 'FAIL: %s\n' "$msg"
    [[ $rc == 2 ]] || rc=1
done
for msg in "${GATE_INCOMPLETE[@]+"${GATE_INCOMPLETE[@]}"}"; do
    printf 'INCOMPLETE: %s\n' "$msg"
    rc=2
done
case $rc in
    0) log "PASS in $((SECONDS - T_START))s: $OUT/summary.md" ;;
    1) log "FAIL: findings above; $OUT/summary.md" ;;
    *) log "INCOMPLETE: a scan did not run through; logs in $OUT" ;;
esac
exit "$rc"
