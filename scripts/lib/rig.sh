# shellcheck shell=bash
# scripts/lib/rig.sh: sourced by the single-server measurement scripts (handshake-cpu.sh,
# profile-handshake.sh, ocsp-bench.sh). rig_start makes $WORK and a dev PKI in $WORK/pki with
# BINARY, and on any exit stops every process recorded with pids+=(PID) and removes $WORK.

rig_start() { # rig_start BINARY
    WORK=$(mktemp -d)
    pids=()
    trap rig_cleanup EXIT
    "$1" pki "$WORK/pki" > /dev/null
}

# shellcheck disable=SC2329 # invoked by the EXIT trap
rig_cleanup() {
    rig_stop
    rm -rf "$WORK"
}

# listening FILE: waits (bounded, 5 s) for a ringtls process's one-line readiness JSON in FILE
# and prints its first address.
listening() {
    local file=$1 _
    for _ in $(seq 1 100); do
        if [[ -s $file ]]; then
            python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["listening"][0])' "$file"
            return
        fi
        sleep 0.05
    done
    echo "$(basename "$0" .sh): no listening line in $file" >&2
    exit 1
}

# rig_pinned BINARY: an echo upstream on core 1 and `serve --threads 1` on core 0 in front of
# it, with $WORK/pki; sets spid (the server's pid) and addr (its address), and load (the
# handshake load's command, on core 1, to which the caller adds --duration and more).
rig_pinned() {
    local bin=$1 up
    taskset -c 1 "$bin" upstream --mode echo > "$WORK/up.out" & pids+=($!)
    up=$(listening "$WORK/up.out")
    taskset -c 0 "$bin" serve --threads 1 --listen 127.0.0.1:0 --upstream "$up" \
        --crt "$WORK/pki/server.pem" --key "$WORK/pki/server.key" \
        --mutual-tls-cas "$WORK/pki/ca.pem" > "$WORK/serve.out" 2> /dev/null & spid=$!; pids+=("$spid")
    addr=$(listening "$WORK/serve.out")
    load=(taskset -c 1 "$bin" load --connect "$addr" --ca "$WORK/pki/ca.pem"
          --crt "$WORK/pki/client.pem" --key "$WORK/pki/client.key"
          --mode handshake --group X25519 --concurrency 16)
}

# rig_stop: stops what rig_pinned (or anything else in pids) started.
rig_stop() {
    local p
    for p in "${pids[@]+"${pids[@]}"}"; do kill "$p" 2> /dev/null || true; done
    wait 2> /dev/null || true
    pids=()
}
