#!/usr/bin/env bash
# scripts/profile-handshake.sh [BINARY] [SECONDS] — where a worker's CPU goes in full and in
# resumed mutual-TLS 1.3 handshakes, by function group, with perf (`perf record -e cpu-clock`,
# no call graphs: each sample is charged to the function it landed in, its "self" time).
#
# One worker pinned to core 0, `ringtls load --mode handshake --concurrency 16` (with and
# without `--resume`) and an echo upstream on core 1, 127.0.0.1 only; SECONDS (default 8) of
# load per kind, after a 1 s warm-up. The groups, by symbol (first match wins):
#   crypto          aws-lc: ECDSA, X25519, SHA-2, HMAC/HKDF, AES-GCM (the ticket seal and
#                   open, and the records, are in here too)
#   x509            webpki, x509-parser, der, pki-types
#   rustls          the state machine, message encoding and parsing, the transcript
#   allocation      mimalloc, malloc/free
#   copies          memcpy, memmove, memset
#   events          ringtls' event formatting and log writing (telemetry, outcome)
#   runtime         monoio and its io_uring/epoll driver, futures
#   ringtls         ringtls itself otherwise (the adapter, buffers, routing, verification glue)
#   kernel          every kernel symbol: the syscalls, TCP, io_uring's kernel side
#   other           the rest (libc, std)
# Prints the table (µs per handshake by group, from the share of samples times the measured
# CPU per handshake) and the top symbols, and writes both to benches/results/profile/.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${1:-$ROOT/target/release/ringtls}
SECONDS_PER_KIND=${2:-8}
[[ -x $BIN ]] || { echo "profile-handshake: $BIN is not an executable (cargo build --release?)" >&2; exit 64; }
for tool in perf taskset python3; do
    command -v "$tool" > /dev/null || { echo "profile-handshake: needs $tool" >&2; exit 69; }
done
# shellcheck source=scripts/lib/rig.sh
source "$ROOT/scripts/lib/rig.sh"
rig_start "$BIN"
OUT=$ROOT/benches/results/profile
mkdir -p "$OUT"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(git -C "$ROOT" status --porcelain 2>/dev/null | grep -q . && echo " (uncommitted changes)" || true)
REPORT=$OUT/$STAMP.md


{
    echo "# Handshake profile, $STAMP, commit $COMMIT$DIRTY"
    echo
    echo "One worker pinned to core 0, \`ringtls load --mode handshake --concurrency 16 --group X25519\`"
    echo "on core 1, ${SECONDS_PER_KIND} s per kind; perf cpu-clock samples of the server only, self time."
    echo "\`scripts/profile-handshake.sh\` produced this file."
} > "$REPORT"

for kind in full resumed; do
    rig_pinned "$BIN"
    [[ $kind == resumed ]] && load+=(--resume)
    "${load[@]}" --duration 1s > /dev/null 2>&1   # warm-up (and the verdict cache)
    read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$spid/stat")
    perf record -q -e cpu-clock -F 4999 -p "$spid" -o "$WORK/$kind.data" \
        -- sleep "$SECONDS_PER_KIND" 2> "$WORK/perf.err" & perf_pid=$!
    "${load[@]}" --duration "${SECONDS_PER_KIND}s" --json > "$WORK/$kind.json" 2> /dev/null
    wait "$perf_pid" || { cat "$WORK/perf.err" >&2; exit 1; }
    read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$spid/stat")
    perf report -i "$WORK/$kind.data" --no-children --sort dso,symbol --stdio -q \
        --percent-limit 0 2> /dev/null > "$WORK/$kind.txt"
    python3 - "$kind" "$WORK/$kind.json" "$WORK/$kind.txt" "$((u1 - u0))" "$((s1 - s0))" \
        "$(getconf CLK_TCK)" >> "$REPORT" <<'PY'
import json, re, sys
kind, load, report, user, system, hz = sys.argv[1], sys.argv[2], sys.argv[3], *map(int, sys.argv[4:7])
d = json.load(open(load))
n = max(d["ok"], 1)
cpu_us = (user + system) / hz * 1e6 / n
GROUPS = [
    ("kernel", None),
    ("crypto", r"aws_lc|^ec_|^EC_|^bn_|^BN_|p256|nistz|x25519|fiat_|sha256|sha512|SHA\d|hmac|HMAC|hkdf|HKDF|aes|gcm|GFp|ECDSA|ecdsa|CRYPTO_|OPENSSL_|beeu|ecp_"),
    ("x509", r"webpki::|x509_parser|\bder\b|der::|der_parser|asn1_rs|rustls_pki_types|pki_types"),
    ("rustls", r"rustls::"),
    ("allocation", r"^mi_|^_mi_|mimalloc|malloc|^free$|^cfree|realloc|calloc|__rust_alloc|__rust_dealloc|__rust_realloc|alloc::alloc"),
    ("copies", r"memcpy|memmove|memset|memcmp|bcmp"),
    ("events", r"ringtls::telemetry|ringtls::outcome|ringtls::proxy::record|core::fmt|alloc::fmt|<.* as core::fmt"),
    ("runtime", r"monoio|io_uring|futures|core::future|tokio"),
    ("ringtls", r"ringtls::"),
    ("other", r"."),
]
totals, symbols = {}, []
for line in open(report):
    m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*)$", line)
    if not m:
        continue
    # perf pads the symbol and may add columns after it ("-  -"): the symbol ends at a gap.
    pct, dso, where = float(m[1]), m[2], m[3]
    sym = re.split(r"\s{2,}", m[4].strip())[0]
    if where == "k" or dso.startswith("[kernel"):
        group = "kernel"
    else:
        group = next(g for g, pat in GROUPS[1:] if re.search(pat, sym))
    totals[group] = totals.get(group, 0.0) + pct
    symbols.append((pct, group, sym))
whole = sum(totals.values()) or 1.0
print()
print(f"## {kind} handshakes: {d['per_second']:.0f}/s, {cpu_us:.0f} µs server CPU per handshake "
      f"(user {user / hz * 1e6 / n:.0f}, kernel {system / hz * 1e6 / n:.0f}), resumed fraction {d['resumed_fraction']:.2f}")
print()
print("| group | share | µs per handshake |")
print("|---|---:|---:|")
for g, _ in GROUPS:
    if g in totals:
        print(f"| {g} | {100 * totals[g] / whole:.1f}% | {cpu_us * totals[g] / whole:.1f} |")
print()
print("Top symbols (self time):")
print()
print("| share | group | symbol |")
print("|---:|---|---|")
for pct, group, sym in sorted(symbols, reverse=True)[:25]:
    print(f"| {100 * pct / whole:.1f}% | {group} | `{sym[:100]}` |")
PY
    rig_stop
done
cat "$REPORT"
echo "profile-handshake: wrote $REPORT" >&2
