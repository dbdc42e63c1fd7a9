#!/usr/bin/env bash
# Preparing shipping disks, side by side with dd in the same run, on the same target.
#
#   tests/bench/disks-vs-dd.sh [-w WORKDIR] [-r RUNS] [-s CORPUS_MIB]
#
# The staged data: a staging set made by `source-agent backup --offline` from a generated
# corpus (tests/corpus/corpus.py). Each run, on the same file system:
#   dd write       dd if=<staged data, one file> of=<image> bs=4M oflag=direct
#   seedship copy  `copy-agent bench`: the copy agent's own writer threads (plan, encryption,
#                  every staging file checked against the seed manifest, seal), 1 disk and 3
#   dd read        dd if=<image> of=/dev/null bs=4M iflag=direct
#   seedship verify the read-back pass of the same command (page cache dropped first, every
#                  extent decrypted and checked)
#   dd write x3    three dd processes in parallel, a third each (what the device gives to 3 writers)
# Sources are read from the page cache for both (pre-read each run). Median of RUNS.
# Results: WORKDIR/summary-<stamp>.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/seedship-target}"
WORK=/tmp/seedship-diskbench
RUNS=3
MIB=2048
while [ $# -gt 0 ]; do
  case "$1" in
    -w) WORK=$2; shift 2 ;;
    -r) RUNS=$2; shift 2 ;;
    -s) MIB=$2; shift 2 ;;
    *) echo "usage: $0 [-w WORKDIR] [-r RUNS] [-s CORPUS_MIB]"; exit 2 ;;
  esac
done
cargo build --release --workspace --bins --locked
BIN="$CARGO_TARGET_DIR/release"
mkdir -p "$WORK"
cd "$WORK"

if [ ! -f staging/manifest.json ]; then
  rm -rf corpus staging
  python3 "$ROOT/tests/corpus/corpus.py" generate --out corpus --size-mib "$MIB" --seed 11 >/dev/null
  (umask 077 && echo "bench passphrase" > passphrase)
  "$BIN/source-agent" backup --offline --quiet --no-register --job-name disk-bench \
    --storage-account bench --container bench --location westeurope \
    --subscription-id 0f0e0d0c-0000-4000-8000-00000000abcd \
    --staging staging --passphrase-file passphrase corpus >/dev/null
fi
# The same bytes as one file, for dd.
python3 - <<'PY'
import json
m = json.load(open("staging/manifest.json"))
with open("staged.bin", "wb") as out:
    for f in m["files"]:
        out.write(open("staging/" + f["path"], "rb").read())
PY
TOTAL=$(stat -c %s staged.bin)
MB=$(python3 -c "print($TOTAL / 1e6)")
CAP1=$(( TOTAL + (64 << 20) ))
CAP3=$(( TOTAL * 106 / 100 / 3 + (24 << 20) ))
BLOCKS=$(( (TOTAL + (4 << 20) - 1) / (4 << 20) ))
THIRD=$(( (BLOCKS + 2) / 3 ))

now() { date +%s.%N; }
warm() { cat staged.bin staging/data/*/* staging/manifest.json >/dev/null; }
declare -A R
add() { R[$1]="${R[$1]:-} $2"; }

for run in $(seq 1 "$RUNS"); do
  echo "run $run of $RUNS ($MB MB staged)"
  rm -f dd.img dd3-*.img s1.img s3-*.img
  warm
  truncate -s "$CAP1" dd.img
  t=$(now); dd if=staged.bin of=dd.img bs=4M oflag=direct conv=notrunc status=none; sync; add dd_write "$(python3 -c "print($(now) - $t)")"
  t=$(now); dd if=dd.img of=/dev/null bs=4M iflag=direct count="$BLOCKS" status=none; add dd_read "$(python3 -c "print($(now) - $t)")"
  rm -f dd.img
  warm
  for i in 0 1 2; do truncate -s "$CAP3" "dd3-$i.img"; done
  t=$(now)
  for i in 0 1 2; do
    dd if=staged.bin of="dd3-$i.img" bs=4M skip=$((i * THIRD)) count="$THIRD" oflag=direct conv=notrunc status=none &
  done
  wait; sync; add dd_write3 "$(python3 -c "print($(now) - $t)")"
  rm -f dd3-*.img
  warm
  truncate -s "$CAP1" s1.img
  j=$("$BIN/copy-agent" bench --staging staging --disk s1.img)
  add s_copy1 "$(python3 -c "import json; print(json.loads('$j')['copy_seconds'])")"
  add s_verify1 "$(python3 -c "import json; print(json.loads('$j')['verify_seconds'])")"
  rm -f s1.img
  warm
  for i in 1 2 3; do truncate -s "$CAP3" "s3-$i.img"; done
  j=$("$BIN/copy-agent" bench --staging staging --disk s3-1.img --disk s3-2.img --disk s3-3.img)
  add s_copy3 "$(python3 -c "import json; print(json.loads('$j')['copy_seconds'])")"
  add s_verify3 "$(python3 -c "import json; print(json.loads('$j')['verify_seconds'])")"
  rm -f s3-*.img
done

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT="$WORK/summary-$STAMP.md"
python3 - "$MB" "$RUNS" "$OUT" <<PY
import statistics, sys
mb, runs, out = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
r = {k: [float(x) for x in v.split()] for k, v in {
  "dd_write": "${R[dd_write]}", "dd_read": "${R[dd_read]}", "dd_write3": "${R[dd_write3]}",
  "s_copy1": "${R[s_copy1]}", "s_verify1": "${R[s_verify1]}",
  "s_copy3": "${R[s_copy3]}", "s_verify3": "${R[s_verify3]}"}.items()}
med = {k: statistics.median(v) for k, v in r.items()}
rate = {k: mb / v for k, v in med.items()}
rows = [
  ("write, 1 disk", "dd oflag=direct", rate["dd_write"], "seedship copy", rate["s_copy1"]),
  ("write, 3 disks", "3 x dd oflag=direct in parallel", rate["dd_write3"], "seedship copy", rate["s_copy3"]),
  ("read back, 1 disk", "dd iflag=direct", rate["dd_read"], "seedship verify", rate["s_verify1"]),
  ("read back, 3 disks", "dd iflag=direct (1 disk)", rate["dd_read"], "seedship verify", rate["s_verify3"]),
]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown CPU")
lines = [f"CPU: {cpu}; staged data: {mb:.0f} MB; median of {runs} runs (seconds: " +
         ", ".join(f"{k} {med[k]:.2f}" for k in med) + ")", "",
         "| step | peer | peer MB/s | seedship | seedship MB/s | ratio |", "|---|---|---:|---|---:|---:|"]
for step, peer, pr, us, ur in rows:
    lines.append(f"| {step} | {peer} | {pr:.0f} | {us} | {ur:.0f} | {ur / pr:.2f}x |")
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
echo "summary: $OUT"
