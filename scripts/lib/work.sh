# shellcheck shell=bash
# scripts/lib/work.sh: sourced by scan.sh and soak.sh (scripts/bench/bench.py does the same in
# Python). A work directory and the children a script starts, all stopped on any exit (error,
# Ctrl-C, TERM), their own children too; the work directory is removed unless the run failed or
# --keep was given.
#
# The caller defines log() and KEEP before calling work_dir NAME, then records each background
# process with CHILDREN+=("$!") and forgets a finished one with forget_child PID.

work_dir() {
    WORK=$(mktemp -d "/tmp/ringtls-$1.XXXXXX")
    CHILDREN=()
    trap work_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# shellcheck disable=SC2329 # invoked by the EXIT trap
work_cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    # Children first asked to stop (a loop of theirs may start new processes), then made to.
    for pid in "${CHILDREN[@]+"${CHILDREN[@]}"}"; do
        pkill -TERM -P "$pid" 2> /dev/null || true
        kill -TERM "$pid" 2> /dev/null || true
    done
    for pid in "${CHILDREN[@]+"${CHILDREN[@]}"}"; do
        for _ in {1..30}; do
            kill -0 "$pid" 2> /dev/null || break
            sleep 0.1
        done
        pkill -KILL -P "$pid" 2> /dev/null || true
        kill -KILL "$pid" 2> /dev/null || true
        wait "$pid" 2> /dev/null || true
    done
    # shellcheck disable=SC2153 # KEEP is the caller's (--keep)
    if [[ $rc -ne 0 || $KEEP == 1 ]]; then
        log "work dir kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}

forget_child() {
    local keep=() pid
    for pid in "${CHILDREN[@]+"${CHILDREN[@]}"}"; do [[ $pid == "$1" ]] || keep+=("$pid"); done
    CHILDREN=("${keep[@]+"${keep[@]}"}")
}
