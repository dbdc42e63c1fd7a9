#!/usr/bin/env bash
# The offline backup to staging, side by side with restic 0.14 `backup` to a local repository,
# on the same 2 GiB corpus in the same run (../shared/bench/peers.sh does the timing: median
# of N runs, wall time, CPU seconds, peak RSS).
#
#   tests/bench/staging-vs-restic.sh [-w WORKDIR] [-r RUNS]
#
# Needs restic, GNU time and python3 (Debian: apt-get install restic time). Results go to
# WORKDIR/results-<stamp>/summary.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/seedship-target}"
WORK=/tmp/seedship-perf
RUNS=3
while [ $# -gt 0 ]; do
  case "$1" in
    -w) WORK=$2; shift 2 ;;
    -r) RUNS=$2; shift 2 ;;
    *) echo "usage: $0 [-w WORKDIR] [-r RUNS]"; exit 2 ;;
  esac
done
PEERS="$ROOT/../shared/bench/peers.sh"
[ -x "$PEERS" ] || [ -f "$PEERS" ] || { echo "error: $PEERS is missing: this peer benchmark uses the workplace's shared peer scripts, beside the clone"; exit 1; }
command -v restic >/dev/null || { echo "error: restic is not installed (apt-get install restic)"; exit 1; }
cargo build --release --workspace --bins --locked
export SEEDSHIP_BIN="$CARGO_TARGET_DIR/release"
export SEEDSHIP_PASSPHRASE=seedship-bench
echo "CPU:$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
exec bash "$PEERS" -w "$WORK" -r "$RUNS" -t 2400 --only restic,extra --extra "$ROOT/tests/bench/seedship.extra"
