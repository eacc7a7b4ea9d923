#!/usr/bin/env bash
# scripts/apt-install.sh PKG...: installs Debian packages for the tests, benches and scans, and
# never removes or downgrades a package already on the host.
#
# Each package not yet installed is first simulated (apt-get install -s --no-install-recommends)
# from the host's own sources. A plan that removes (Remv) or downgrades anything is refused, and
# the package is simulated again from the host's sources plus its suite's backports (CODENAME-
# backports, preferred with -t): a host that took one QEMU package from backports needs the rest
# from there too, or apt replaces it with the older release's. Backports are added in an apt state
# of their own (a temp dir: sources, lists), so the host's sources and lists are left as they
# were. Without a safe plan the package is left out, and this says why.
#
# Recommends are never installed (qemu-system-x86 with them is 173 packages, without 21), and
# apt's output goes to a log that is shown only when a step fails.
# Exit: 0 when every package is installed, 1 when some could not be (each is named on stderr).
set -uo pipefail

log() { printf 'apt-install: %s\n' "$*" >&2; }
export DEBIAN_FRONTEND=noninteractive
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

installed() { [[ $(dpkg-query -W -f='${Status}' "$1" 2> /dev/null) == "install ok installed" ]]; }

# unsafe_steps < SIMULATION: prints the removals and downgrades among apt-get -s's lines
# ("Remv PKG [VER]", "Inst PKG [OLD] (NEW ...)").
unsafe_steps() {
    local kind pkg old new
    while read -r kind pkg old new _; do
        case $kind in
            Remv) printf 'removes %s %s\n' "$pkg" "$old" ;;
            Inst)
                [[ $old == \[*\] ]] || continue
                old=${old#[}
                old=${old%]}
                new=${new#(}
                if dpkg --compare-versions "$new" lt "$old"; then
                    printf 'downgrades %s %s -> %s\n' "$pkg" "$old" "$new"
                fi
                ;;
        esac
    done
}

# try_plan NAME PKG APT_OPTS...: simulates, and installs when the plan is safe.
try_plan() {
    local name=$1 pkg=$2
    shift 2
    if ! apt-get "$@" install -s --no-install-recommends "$pkg" > "$WORK/sim" 2>&1; then
        log "$pkg: no plan from $name: $(grep -E '^E:' "$WORK/sim" | head -n2 | tr '\n' ' ')"
        return 1
    fi
    unsafe_steps < "$WORK/sim" > "$WORK/unsafe"
    if [[ -s $WORK/unsafe ]]; then
        log "$pkg: refusing the plan from $name, it $(paste -sd';' "$WORK/unsafe")"
        return 1
    fi
    log "$pkg: installing from $name ($(grep -c '^Inst ' "$WORK/sim") packages, nothing removed or downgraded)"
    if ! apt-get "$@" install -y -q --no-install-recommends "$pkg" > "$WORK/apt.log" 2>&1; then
        log "$pkg: apt-get install failed:"
        tail -n5 "$WORK/apt.log" >&2
        return 1
    fi
}

# The host's sources plus CODENAME-backports, in an apt state of their own; prints apt options.
backports_state() {
    local codename uri dir=$WORK/bpo
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    [[ -n $codename ]] || return 1
    mkdir -p "$dir/sources" "$dir/lists/partial"
    cp /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list "$dir/sources/" 2> /dev/null
    [[ -f /etc/apt/sources.list ]] && cp /etc/apt/sources.list "$dir/sources/host.list"
    # The mirror the host takes CODENAME from (deb822 stanzas), else Debian's own.
    uri=$(awk -v s="$codename" '/^URIs:/ { u = $2 } /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == s) { print u; exit } }' \
        /etc/apt/sources.list.d/*.sources 2> /dev/null)
    printf 'Types: deb\nURIs: %s\nSuites: %s-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "${uri:-http://deb.debian.org/debian}" "$codename" > "$dir/sources/ringtls-backports.sources"
    local opts=(-o "Dir::Etc::SourceParts=$dir/sources" -o "Dir::Etc::SourceList=/dev/null" -o "Dir::State::Lists=$dir/lists")
    apt-get "${opts[@]}" update -qq > "$WORK/bpo-update.log" 2>&1 || {
        log "cannot read $codename-backports: $(tail -n1 "$WORK/bpo-update.log")"
        return 1
    }
    printf '%s\n' "${opts[@]}" -t "$codename-backports"
}

todo=()
for pkg in "$@"; do
    installed "$pkg" || todo+=("$pkg")
done
[[ ${#todo[@]} -gt 0 ]] || exit 0

apt-get update -qq > "$WORK/update.log" 2>&1 || log "apt-get update failed: $(tail -n1 "$WORK/update.log")"
failed=()
bpo_opts=()
bpo_tried=0
for pkg in "${todo[@]}"; do
    try_plan "the host's sources" "$pkg" && continue
    if [[ $bpo_tried == 0 ]]; then
        bpo_tried=1
        mapfile -t bpo_opts < <(backports_state)
    fi
    if [[ ${#bpo_opts[@]} -gt 0 ]] && try_plan "backports" "$pkg" "${bpo_opts[@]}"; then
        continue
    fi
    log "$pkg: NOT INSTALLED: no plan that keeps every installed package at its version"
    failed+=("$pkg")
done
[[ ${#failed[@]} -eq 0 ]] || {
    log "not installed: ${failed[*]}"
    exit 1
}
