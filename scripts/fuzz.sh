#!/usr/bin/env bash
# scripts/fuzz.sh [SECONDS]: run every cargo-fuzz target in fuzz/ for SECONDS each (default 600),
# one after another, and fail on the first crash. Installs cargo-fuzz when it is missing.
#
# cargo-fuzz needs nightly -Z flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them
# (set FUZZ_SANITIZER=none for builds without AddressSanitizer). Each target keeps its corpus in
# fuzz/corpus/TARGET (not committed) and also reads the committed seeds in fuzz/seeds/TARGET; a
# crash lands in fuzz/artifacts/TARGET/ with the command to reproduce it. The runs get no network
# (a fresh network namespace when unshare allows one): nothing fuzzed should need it.
set -euo pipefail

seconds="${1:-600}"
cd "$(dirname "$0")/../fuzz"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

sanitizer=(-s "${FUZZ_SANITIZER:-address}")
cargo fuzz build "${sanitizer[@]}"

offline=()
if unshare -rn true 2>/dev/null; then
    offline=(unshare -rn)
fi

for target in $(cargo fuzz list); do
    mkdir -p "corpus/$target"
    seeds=()
    [ -d "seeds/$target" ] && seeds=("seeds/$target")
    echo "== $target: ${seconds}s"
    # -print_final_stats: executions and corpus at the end, for the record.
    if ! "${offline[@]}" nice -n 10 cargo fuzz run "${sanitizer[@]}" "$target" \
        "corpus/$target" "${seeds[@]}" -- \
        -max_total_time="$seconds" -print_final_stats=1; then
        echo "fuzz.sh: $target crashed; see fuzz/artifacts/$target/" >&2
        exit 1
    fi
done
echo "fuzz.sh: every target ran ${seconds}s without a crash"
