#!/usr/bin/env bash
# scripts/ktls-vm.sh: runs one static binary as root inside a throwaway QEMU VM whose kernel has
# kernel TLS (Debian's cloud kernel, CONFIG_TLS=m), for the kTLS tests on hosts without it.
#
#   scripts/ktls-vm.sh [OPTIONS] -- BINARY [ARGS...]      run BINARY ARGS in the VM
#   scripts/ktls-vm.sh [OPTIONS] --build-test NAME [-- TEST_ARGS...]
#        build ringtls and tests/NAME.rs static, run that test binary in the VM with
#        --test-threads=1 --nocapture TEST_ARGS, ringtls at its CARGO_BIN_EXE_ringtls path
#
# Options: --cache DIR (kernel, busybox, base initramfs; default ~/.cache/ringtls-ktls-vm),
# --timeout SECS (boot + run, default 300), --mem MB (default 1024), --file HOST[:VM] (repeatable;
# VM defaults to the same absolute path), --env K=V (repeatable), --cwd DIR (default /tmp),
# --build-timeout SECS (--build-test's cargo, default 1500: a cold static build takes minutes on
# 2 busy cores), --kernel-suite SUITE (the kernel of that Debian suite's linux-image-cloud-amd64,
# e.g. trixie-backports for a newer one, fetched through an apt state of its own in the cache;
# default: the host's apt sources), --keep (keep the temp dir with the console log and the
# initramfs).
# Exit: the binary's exit code; 77 this host cannot run the VM (no qemu and apt cannot get it);
# 70 the VM never reported a result; 124 timed out; 64 usage.
#
# The VM is QEMU TCG (pure emulation: -accel tcg -cpu max), so it proves behaviour, never speed.
# It has no libc and no disk: BINARY and every --file travel in the initramfs, so BINARY must be
# statically linked (--build-test does that: host gnu target with +crt-static, into
# target/ktls-vm). /init mounts proc, sys and devtmpfs (/tmp is writable: the root is RAM),
# insmods the kTLS modules, brings up lo, checks that tcp_available_ulp offers "tls", runs the
# binary and prints VM_RESULT=<rc>, which is what this script reads: QEMU itself exits 0 whatever
# happened. TCG and not KVM: on the machine this was written on, /dev/kvm is a nested PVM device
# on which an unmodified Debian guest dies (lock cmpxchg16b) or crawls.
set -euo pipefail

usage() { sed -n '2,/^# The VM is QEMU TCG/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/ringtls-ktls-vm
TIMEOUT=300
BUILD_TIMEOUT=1500
MEM=1024
VM_CWD=/tmp
BUILD_TEST=
KSUITE=
KEEP=0
FILES=()
ENVS=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --cache) CACHE=${2:?--cache needs a directory}; shift ;;
        --timeout) TIMEOUT=${2:?--timeout needs seconds}; shift ;;
        --build-timeout) BUILD_TIMEOUT=${2:?--build-timeout needs seconds}; shift ;;
        --mem) MEM=${2:?--mem needs megabytes}; shift ;;
        --file) FILES+=("${2:?--file needs HOSTPATH[:VMPATH]}"); shift ;;
        --env) ENVS+=("${2:?--env needs K=V}"); shift ;;
        --cwd) VM_CWD=${2:?--cwd needs a directory}; shift ;;
        --build-test) BUILD_TEST=${2:?--build-test needs a test name}; shift ;;
        --kernel-suite) KSUITE=${2:?--kernel-suite needs a Debian suite}; shift ;;
        --keep) KEEP=1 ;;
        -h | --help) usage; exit 0 ;;
        --) shift; break ;;
        *) printf 'ktls-vm: unknown option %s\n' "$1" >&2; usage >&2; exit 64 ;;
    esac
    shift
done
[[ $TIMEOUT =~ ^[0-9]+$ && $BUILD_TIMEOUT =~ ^[0-9]+$ && $MEM =~ ^[0-9]+$ ]] ||
    { echo 'ktls-vm: --timeout, --build-timeout and --mem take whole numbers' >&2; exit 64; }
if [[ -z $BUILD_TEST && $# -eq 0 ]]; then
    echo 'ktls-vm: nothing to run: give -- BINARY [ARGS...] or --build-test NAME' >&2
    usage >&2
    exit 64
fi
for kv in "${ENVS[@]+"${ENVS[@]}"}"; do
    [[ $kv =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || { printf 'ktls-vm: --env %s: want NAME=VALUE\n' "$kv" >&2; exit 64; }
done

log() { printf 'ktls-vm: [%3ds] %s\n' "$SECONDS" "$*" >&2; }
die() { printf 'ktls-vm: FAILED: %s\n' "$1" >&2; exit "${2:-1}"; }
cannot_run() { printf 'ktls-vm: CANNOT RUN HERE: %s\n' "$*" >&2; exit 77; }

# The modules kTLS needs, by file name: tls itself, and AES-GCM with its helpers. Which exist, and
# what they need, varies by kernel (6.1 has ghash-generic and crypto_simd; 7.x has neither, and
# its seqiv needs geniv): each one present goes in with its dependencies (from modules.dep, made
# with the host's depmod), dependencies first. Missing ones are built in or gone.
WANT_MODULES=(gf128mul ghash-generic cryptd crypto_simd aesni-intel ghash-clmulni-intel ctr gcm
    seqiv tls)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ringtls-ktls-vm.XXXXXX")
CHILD=
# shellcheck disable=SC2329 # run by the EXIT trap (shellcheck 0.11 misses that when the script ends in exit)
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $CHILD ]]; then
        # `timeout` runs in a process group of its own, so a Ctrl-C never reaches what it runs
        # (cargo, QEMU): stop it here (timeout passes the TERM on).
        kill -TERM "$CHILD" 2> /dev/null || true
        wait "$CHILD" 2> /dev/null || true
    fi
    if [[ $KEEP == 1 ]]; then
        printf 'ktls-vm: console log and initramfs kept in %s\n' "$WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- build (--build-test) ------------------------------------------------------------------------
if [[ -n $BUILD_TEST ]]; then
    # The host gnu target named explicitly: with --target, RUSTFLAGS reach only the target
    # artefacts, not build scripts and proc macros (crt-static would refuse to build those).
    # Needs no `rustup target add`. strip=debuginfo: a seventh of the size (ringtls 71 -> 11 MB),
    # so the initramfs loads fast under TCG; symbols stay for backtraces. Own target dir: the main build cache
    # keeps its flags, and the outer `cargo test` lock is never in the way.
    triple=x86_64-unknown-linux-gnu
    log "building ringtls and tests/$BUILD_TEST.rs static ($triple +crt-static, target/ktls-vm)"
    build_start=$SECONDS
    unset CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_RUSTFLAGS
    json=$WORK/build.json
    (cd "$ROOT" && RUSTFLAGS="-C target-feature=+crt-static -C strip=debuginfo" \
        exec timeout --kill-after=10 "$BUILD_TIMEOUT" cargo test --no-run --test "$BUILD_TEST" --target "$triple" \
        --target-dir "$ROOT/target/ktls-vm" --message-format=json-render-diagnostics > "$json") &
    CHILD=$!
    build_rc=0
    wait "$CHILD" || build_rc=$?
    CHILD=
    [[ $build_rc == 0 ]] || die "cargo test --no-run --test $BUILD_TEST (static) failed (exit $build_rc)"
    # The executables from cargo's JSON: the test binary, and the ringtls binary the test was
    # compiled against (CARGO_BIN_EXE_ringtls is that path, baked in as a host path).
    artifact() { # artifact KIND NAME -> executable path
        grep '"reason":"compiler-artifact"' "$json" | grep -F "\"kind\":[\"$1\"]" |
            grep -F "\"name\":\"$2\"" | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n1
    }
    test_bin=$(artifact test "$BUILD_TEST")
    ringtls_bin=$(artifact bin ringtls)
    [[ -n $test_bin && -x $test_bin ]] || die "no test executable for $BUILD_TEST in cargo's output"
    [[ -n $ringtls_bin && -x $ringtls_bin ]] || die "no ringtls executable in cargo's output"
    log "built in $((SECONDS - build_start))s: $test_bin, $ringtls_bin"
    FILES+=("$ringtls_bin")
    set -- "$test_bin" --test-threads=1 --nocapture "$@"
fi

BINARY=$1
shift
[[ -f $BINARY && -x $BINARY ]] || die "$BINARY: not an executable file" 64
BINARY=$(realpath "$BINARY")
# The VM has no dynamic loader or libc; a dynamic binary would die there with a bare "not found".
linkage=$(ldd "$BINARY" 2>&1 || true)
if ! grep -qE 'not a dynamic executable|statically linked' <<< "$linkage"; then
    die "$BINARY is dynamically linked; the VM has no libc: build it static (RUSTFLAGS='-C target-feature=+crt-static' cargo build --target x86_64-unknown-linux-gnu, or --build-test)" 64
fi

# --- tools ---------------------------------------------------------------------------------------
mkdir -p "$CACHE"
command -v timeout > /dev/null || cannot_run "timeout (coreutils) is missing"
if ! command -v qemu-system-x86_64 > /dev/null; then
    log "installing qemu-system-x86"
    timeout 900 bash "$ROOT/scripts/apt-install.sh" qemu-system-x86 2> "$WORK/apt.log" ||
        cannot_run "qemu-system-x86_64 is missing and scripts/apt-install.sh qemu-system-x86 failed: $(tail -n2 "$WORK/apt.log")"
    command -v qemu-system-x86_64 > /dev/null || cannot_run "qemu-system-x86 installed, but no qemu-system-x86_64 on PATH"
fi
# depmod (kmod) orders the kernel's modules for the initramfs (modules.dep).
if ! command -v depmod > /dev/null; then
    log "installing kmod (depmod)"
    timeout 900 bash "$ROOT/scripts/apt-install.sh" kmod 2> "$WORK/apt.log" ||
        cannot_run "depmod is missing and scripts/apt-install.sh kmod failed: $(tail -n2 "$WORK/apt.log")"
fi

# apt-get download PKG into DIR (it downloads into the current directory), refreshing the lists
# once if the version they name is gone from the mirror.
fetch_deb() {
    local pkg=$1 dir=$2
    (cd "$dir" && timeout 300 apt-get "${APT[@]}" download -q "$pkg" > /dev/null 2>&1) ||
        { timeout 300 apt-get "${APT[@]}" update -q > /dev/null 2>&1 &&
            (cd "$dir" && timeout 300 apt-get "${APT[@]}" download -q "$pkg" > /dev/null 2>&1); }
}

# --kernel-suite: apt pointed at that suite alone, with lists of its own under the cache (the
# host's apt state is left as it is), refreshed at most once a day.
APT=()
if [[ -n $KSUITE ]]; then
    [[ $KSUITE =~ ^[a-z0-9-]+$ ]] || die "--kernel-suite $KSUITE: not a Debian suite name" 64
    aptdir=$CACHE/apt-$KSUITE
    mkdir -p "$aptdir/lists/partial"
    printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian %s main\n' \
        "$KSUITE" > "$aptdir/sources.list"
    APT=(-o "Dir::Etc::SourceList=$aptdir/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o "Dir::State::Lists=$aptdir/lists" -o APT::Get::List-Cleanup=0)
    if [[ -z $(find "$aptdir/updated" -mmin -1440 2> /dev/null) ]]; then
        log "apt-get update for $KSUITE"
        if timeout 300 apt-get "${APT[@]}" update -q > "$WORK/apt-suite.log" 2>&1; then
            touch "$aptdir/updated"
        else
            log "apt-get update for $KSUITE failed ($(tail -n1 "$WORK/apt-suite.log")); trying what is cached"
        fi
    fi
fi

# Kernel: whatever linux-image-cloud-amd64 points at now, asked at most once a day (apt-cache takes
# seconds on a busy machine); the last answer when apt cannot say.
kfile=$CACHE/kernel-package${KSUITE:+-$KSUITE}
kpkg=
if [[ -n $(find "$kfile" -mmin -1440 2> /dev/null) ]]; then
    kpkg=$(< "$kfile")
else
    kpkg=$(apt-cache "${APT[@]}" depends linux-image-cloud-amd64 2> /dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -n1 || true)
    [[ -z $kpkg ]] || printf '%s\n' "$kpkg" > "$kfile"
fi
if [[ -z $kpkg && -f $kfile ]]; then
    kpkg=$(< "$kfile")
fi
[[ -n $kpkg ]] || cannot_run "apt-cache cannot resolve linux-image-cloud-amd64${KSUITE:+ in $KSUITE}, and none was resolved before"
KV=${kpkg#linux-image-}
KDIR=$CACHE/$kpkg
if [[ ! -f $KDIR/done ]]; then
    log "fetching $kpkg"
    rm -rf "$KDIR" && mkdir -p "$KDIR/deb"
    # Newer kernels split the image package: the kernel in linux-binary-$KV, the modules in
    # linux-modules-$KV.
    parts=("$kpkg")
    while read -r part; do parts+=("$part"); done < <(apt-cache "${APT[@]}" depends "$kpkg" 2> /dev/null |
        sed -n 's/^ *Depends: \(linux-\(binary\|modules\)-.*\)$/\1/p' | grep -Fx -e "linux-binary-$KV" -e "linux-modules-$KV" || true)
    for part in "${parts[@]}"; do
        fetch_deb "$part" "$KDIR/deb" || cannot_run "apt-get download $part failed"
    done
    for deb in "$KDIR"/deb/*.deb; do dpkg-deb -x "$deb" "$KDIR/root"; done
    rm -rf "$KDIR/deb"
    touch "$KDIR/done"
fi
MODDIR=$KDIR/root/lib/modules/$KV
[[ -d $MODDIR ]] || MODDIR=$KDIR/root/usr/lib/modules/$KV
[[ -d $MODDIR ]] || die "no lib/modules/$KV in $kpkg"
VMLINUZ=$KDIR/root/boot/vmlinuz-$KV
[[ -f $VMLINUZ ]] || VMLINUZ=$MODDIR/vmlinuz
[[ -f $VMLINUZ ]] || die "no vmlinuz in $kpkg"

# The module load order (see WANT_MODULES), as paths under $MODDIR.
if [[ ! -s $MODDIR/modules.dep ]]; then
    depmod -b "${MODDIR%/lib/modules/"$KV"}" "$KV" 2> /dev/null || die "depmod for $kpkg failed"
fi
MODULES=()
declare -A ADDED=()
add_module() { # add_module PATH: its dependencies first, then itself, once
    local rel=$1 dep
    [[ -z ${ADDED[$rel]:-} ]] || return 0
    ADDED[$rel]=1
    local deps
    read -ra deps < <(awk -F': *' -v m="$rel" '$1 == m { print $2 }' "$MODDIR/modules.dep")
    for dep in "${deps[@]+"${deps[@]}"}"; do
        add_module "$dep"
    done
    MODULES+=("$rel")
}
for name in "${WANT_MODULES[@]}"; do
    rel=$(cut -d: -f1 "$MODDIR/modules.dep" | grep -E "(^|/)$name\.ko(\.xz|\.zst|\.gz)?$" | head -n1 || true)
    [[ -z $rel ]] || add_module "$rel"
done
if ! printf '%s\n' "${MODULES[@]+"${MODULES[@]}"}" | grep -q '/tls\.ko'; then
    die "no net/tls module in $kpkg: its kernel has no loadable kernel TLS"
fi
# In the VM, uncompressed (busybox insmod may not read xz or zstd).
vm_module() { local m=${1%.xz}; m=${m%.zst}; printf '%s' "${m%.gz}"; }

# busybox: the installed one if it is static (the busybox-static package), else fetched.
BUSYBOX=$(command -v busybox || true)
if [[ -z $BUSYBOX ]] || ! grep -qE 'not a dynamic executable|statically linked' <<< "$(ldd "$BUSYBOX" 2>&1 || true)"; then
    BBDIR=$CACHE/busybox-static
    if [[ ! -f $BBDIR/done ]]; then
        log "fetching busybox-static"
        rm -rf "$BBDIR" && mkdir -p "$BBDIR/deb"
        fetch_deb busybox-static "$BBDIR/deb" || cannot_run "apt-get download busybox-static failed"
        dpkg-deb -x "$BBDIR"/deb/*.deb "$BBDIR/root"
        rm -rf "$BBDIR/deb"
        touch "$BBDIR/done"
    fi
    BUSYBOX=$BBDIR/root/bin/busybox
fi
[[ -x $BUSYBOX ]] || die "$BUSYBOX missing from busybox-static"

# --- base initramfs: busybox, the modules, /init (built once per kernel, busybox and /init) -----
# The run's own part (the command, the binary, the files) comes from /ktls-vm/run.sh in the
# payload archive appended below.
INIT=$(
    cat << EOF
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin HOME=/tmp TMPDIR=/tmp
mkdir -p /proc /sys /dev /tmp
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
# No tmpfs over /tmp: the root is already a writable RAM filesystem, and a mount there would hide
# payload files that live under /tmp on the host (a target dir in /tmp, say).
chmod 1777 /tmp
# Only emergencies on the console from here on: it carries the binary's output.
echo 1 > /proc/sys/kernel/printk
fail() { echo "ktls-vm: ERROR: \$*"; echo VM_RESULT=70; poweroff -f; }
for m in $(for m in "${MODULES[@]}"; do vm_module "$m"; printf ' '; done); do
    insmod /lib/modules/$KV/\$m || fail "insmod \$m"
done
ip link set lo up || fail "ip link set lo up"
ulp=\$(cat /proc/sys/net/ipv4/tcp_available_ulp)
echo "ktls-vm: kernel \$(uname -r), tcp_available_ulp: \$ulp"
case " \$ulp " in *" tls "*) ;; *) fail "no tls in tcp_available_ulp" ;; esac
echo "ktls-vm: ---- run ----"
sh /ktls-vm/run.sh < /dev/null
rc=\$?
echo "VM_RESULT=\$rc"
poweroff -f
EOF
)
base_hash=$({ printf '%s' "$INIT"; cat "$BUSYBOX"; } | md5sum | cut -c1-12)
BASE=$CACHE/base-$KV-$base_hash.cpio.gz
if [[ ! -f $BASE ]]; then
    log "building base initramfs for $KV"
    stage=$WORK/base
    mkdir -p "$stage/bin" "$stage/lib/modules/$KV"
    cp "$BUSYBOX" "$stage/bin/busybox"
    for m in "${MODULES[@]}"; do
        dst=$stage/lib/modules/$KV/$(vm_module "$m")
        mkdir -p "$(dirname "$dst")"
        case $m in
            *.xz) xz -dc "$MODDIR/$m" > "$dst" ;;
            *.zst) zstd -qdc "$MODDIR/$m" > "$dst" ;;
            *.gz) gzip -dc "$MODDIR/$m" > "$dst" ;;
            *) cp "$MODDIR/$m" "$dst" ;;
        esac || die "cannot unpack module $m of $kpkg"
    done
    printf '%s\n' "$INIT" > "$stage/init"
    chmod 755 "$stage/init"
    (cd "$stage" && find . -mindepth 1 | "$BUSYBOX" cpio -o -H newc 2> /dev/null | gzip -1) > "$BASE.tmp"
    mv "$BASE.tmp" "$BASE"
fi

# --- payload: the binary, the files, run.sh ------------------------------------------------------
# POSIX single quotes for busybox sh: ' becomes '\''.
quote() { local s=${1//\'/\'\\\'\'}; printf "'%s'" "$s"; }
payload=$WORK/payload
mkdir -p "$payload/ktls-vm"
place() { # place HOSTPATH VMPATH
    [[ $2 == /* ]] || die "--file $1:$2: the VM path must be absolute" 64
    mkdir -p "$payload$(dirname "$2")"
    cp -a "$1" "$payload$2"
}
place "$BINARY" "$BINARY"
for spec in "${FILES[@]+"${FILES[@]}"}"; do
    host=${spec%%:*}
    vm=${spec#*:}
    [[ $spec == *:* ]] || vm=
    [[ -e $host ]] || die "--file $host: no such file" 64
    host=$(realpath "$host")
    place "$host" "${vm:-$host}"
done
{
    for kv in "${ENVS[@]+"${ENVS[@]}"}"; do
        printf 'export %s=%s\n' "${kv%%=*}" "$(quote "${kv#*=}")"
    done
    printf 'mkdir -p %s && cd %s || exit 70\n' "$(quote "$VM_CWD")" "$(quote "$VM_CWD")"
    printf 'exec %s' "$(quote "$BINARY")"
    for a in "$@"; do printf ' %s' "$(quote "$a")"; done
    printf '\n'
} > "$payload/ktls-vm/run.sh"
# Uncompressed: QEMU loads it as is and the kernel copies it; gunzip of tens of MB under TCG would
# cost seconds. Archives concatenate (the kernel reads one after the other).
(cd "$payload" && find . -mindepth 1 | "$BUSYBOX" cpio -o -H newc 2> /dev/null) > "$WORK/payload.cpio"
# An uncompressed archive is only recognised at a 4-byte aligned offset (init/initramfs.c), and
# zeros between archives are skipped: pad the gzip'd base up to the next multiple of 4.
base_size=$(stat -c %s "$BASE")
{
    cat "$BASE"
    head -c $(((4 - base_size % 4) % 4)) /dev/zero
    cat "$WORK/payload.cpio"
} > "$WORK/initrd"

# --- boot ----------------------------------------------------------------------------------------
log "booting $kpkg (TCG, ${MEM} MB, 2 vCPUs, timeout ${TIMEOUT}s): $BINARY $*"
console=$WORK/console.log
: > "$console"
boot_start=$(date +%s.%N)
# -nic none: no network card, so no iPXE ROM probing it at boot; lo is all the tests need.
timeout --kill-after=10 "$TIMEOUT" qemu-system-x86_64 -accel tcg -cpu max -m "$MEM" -smp 2 \
    -kernel "$VMLINUZ" -initrd "$WORK/initrd" -append 'console=ttyS0 quiet panic=-1' \
    -nographic -no-reboot -nic none < /dev/null > "$console" 2>&1 &
CHILD=$!
# Show the binary's output as it comes: the lines between the run marker and VM_RESULT, without
# the serial console's carriage returns. tail stops when QEMU has gone.
tail -n +1 -s 0.2 -f --pid="$CHILD" "$console" | tr -d '\r' |
    awk '/ktls-vm: ERROR/ { print > "/dev/stderr" } /^ktls-vm: ---- run ----$/ { on = 1; next }
        /^VM_RESULT=/ { on = 0 } on { print; fflush() }'
qemu_rc=0
wait "$CHILD" || qemu_rc=$?
CHILD=
elapsed=$(awk -v s="$boot_start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')

# SeaBIOS's escape sequences may share the first line with it: no ^ anchor.
ulp_line=$(tr -d '\r' < "$console" | grep -o -m1 'ktls-vm: kernel .*' || true)
result=$(tr -d '\r' < "$console" | sed -n 's/^VM_RESULT=\([0-9]*\)$/\1/p' | tail -n1)
if [[ -z $result ]]; then
    printf 'ktls-vm: --- last console lines ---\n' >&2
    tr -d '\r' < "$console" | tail -n 40 >&2
    [[ $qemu_rc == 124 || $qemu_rc == 137 ]] && die "no VM_RESULT within ${TIMEOUT}s (timed out after ${elapsed}s)" 124
    die "the VM printed no VM_RESULT (qemu exit $qemu_rc, after ${elapsed}s)" 70
fi
log "${ulp_line#ktls-vm: }"
log "boot + run took ${elapsed}s; VM_RESULT=$result"
exit "$result"
