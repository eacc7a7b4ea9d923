#!/usr/bin/env bash
# scripts/bench.sh: ringtls side by side with HAProxy, nginx (stream module) and stunnel, each doing
# mutual TLS in front of the same plaintext upstream; results in benches/results/.
#
#   scripts/bench.sh            full run (about 10 minutes)
#   scripts/bench.sh --quick    smoke run (about 1-2 minutes), same files, marked quick
#
# The benchmark is scripts/bench/bench.py (options, method and layout: its docstring, or --help);
# this wrapper keeps the commands in the README and in muscle memory working, and installs python3
# on a machine without it, as the benchmark installs its other tools.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if ! command -v python3 > /dev/null; then
    printf 'bench: installing python3\n' >&2
    bash "$here/apt-install.sh" python3
fi
exec python3 "$here/bench/bench.py" "$@"
