#!/usr/bin/env bash
# Writing a staging set onto an NTFS volume in Azure's layout, plain and BitLocker-encrypted,
# side by side with cp and dd in the same run, on the same target.
#
#   tests/bench/ntfs-vs-cp.sh [-w WORKDIR] [-r RUNS] [-s CORPUS_MIB]
#
# The staged data: a staging set made by `source-agent backup --offline` from a generated
# corpus (tests/corpus/corpus.py). Each run, on the same file system, each image formatted
# with `mkntfs -Q -s 512` and mounted with ntfs-3g:
#   cp             cp -r staging/. <mount>, then umount (the data is on the image then)
#   seedship copy  `copy-agent bench-ntfs`: every staging file written through the mount, its
#                  SHA-256 and MD5 checked against the seed manifest, 4 MiB block MD5s for the
#                  drive manifest, the manifest, umount
#   dd write       dd if=<staged data, one file> of=<raw image> bs=4M oflag=direct
#   seedship read  the raw read-back of the same command (the `ntfs` crate, every file's MD5)
#   bitlocker      the same write, then the volume encrypted in place (XTS-AES-256, the copy
#                  agent's way); its read-back goes through a read-only dislocker-fuse unlock
#   via dislocker  the alternative: an empty BitLocker volume unlocked read-write by
#                  dislocker-fuse, NTFS formatted and written through it (two FUSE layers)
#   dd read        dd if=<raw image> of=/dev/null bs=4M iflag=direct
# Sources are read from the page cache for all (pre-read each run). Median of RUNS.
# Needs ntfs-3g and dislocker (deploy/debian/install.sh). Results: WORKDIR/summary-ntfs-<stamp>.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/seedship-target}"
WORK=/tmp/seedship-ntfsbench
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
deploy/debian/install.sh
cargo build --release --workspace --bins --locked
BIN="$CARGO_TARGET_DIR/release"
mkdir -p "$WORK"
cd "$WORK"

if [ ! -f staging/manifest.json ]; then
  rm -rf corpus staging
  python3 "$ROOT/tests/corpus/corpus.py" generate --out corpus --size-mib "$MIB" --seed 11 >/dev/null
  (umask 077 && echo "bench passphrase" > passphrase)
  "$BIN/source-agent" backup --offline --quiet --no-register --job-name ntfs-bench \
    --storage-account bench --container bench --location westeurope \
    --subscription-id 0f0e0d0c-0000-4000-8000-00000000abcd \
    --staging staging --passphrase-file passphrase corpus >/dev/null
fi
python3 - <<'PY'
import json
m = json.load(open("staging/manifest.json"))
with open("staged.bin", "wb") as out:
    for f in m["files"]:
        out.write(open("staging/" + f["path"], "rb").read())
PY
TOTAL=$(stat -c %s staged.bin)
MB=$(python3 -c "print($TOTAL / 1e6)")
CAP=$(( TOTAL * 110 / 100 + (96 << 20) ))
BLOCKS=$(( (TOTAL + (4 << 20) - 1) / (4 << 20) ))

now() { date +%s.%N; }
warm() { cat staged.bin staging/manifest.json >/dev/null; find staging -type f -exec cat {} + >/dev/null; }
declare -A R
add() { R[$1]="${R[$1]:-} $2"; }
mkdir -p cp.mnt

for run in $(seq 1 "$RUNS"); do
  echo "run $run of $RUNS ($MB MB staged)"
  rm -f cp.img s.img dd.img
  warm
  truncate -s "$CAP" cp.img
  mkntfs -F -Q -s 512 -L bench cp.img >/dev/null 2>&1
  ntfs-3g cp.img cp.mnt
  t=$(now); cp -r staging/. cp.mnt/; umount cp.mnt; add cp "$(python3 -c "print($(now) - $t)")"
  rm -f cp.img
  warm
  truncate -s "$CAP" s.img
  j=$("$BIN/copy-agent" bench-ntfs --staging staging --disk s.img)
  add s_copy "$(python3 -c "import json; print(json.loads('$j')['copy_seconds'])")"
  add s_read "$(python3 -c "import json; print(json.loads('$j')['verify_seconds'])")"
  rm -f s.img
  warm
  truncate -s "$CAP" s.img
  j=$("$BIN/copy-agent" bench-ntfs --staging staging --disk s.img --bitlocker in-place)
  add bl_copy "$(python3 -c "import json; j = json.loads('$j'); print(j['copy_seconds'] + j['encrypt_seconds'])")"
  add bl_encrypt "$(python3 -c "import json; print(json.loads('$j')['encrypt_seconds'])")"
  add bl_read "$(python3 -c "import json; print(json.loads('$j')['verify_seconds'])")"
  rm -f s.img
  warm
  truncate -s "$CAP" s.img
  j=$("$BIN/copy-agent" bench-ntfs --staging staging --disk s.img --bitlocker dislocker)
  add dl_copy "$(python3 -c "import json; print(json.loads('$j')['copy_seconds'])")"
  rm -f s.img
  warm
  truncate -s "$CAP" dd.img
  t=$(now); dd if=staged.bin of=dd.img bs=4M oflag=direct conv=notrunc status=none; sync; add dd_write "$(python3 -c "print($(now) - $t)")"
  t=$(now); dd if=dd.img of=/dev/null bs=4M iflag=direct count="$BLOCKS" status=none; add dd_read "$(python3 -c "print($(now) - $t)")"
  rm -f dd.img
done

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT="$WORK/summary-ntfs-$STAMP.md"
python3 - "$MB" "$RUNS" "$OUT" <<PY
import statistics, sys
mb, runs, out = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
r = {k: [float(x) for x in v.split()] for k, v in {
  "cp": "${R[cp]}", "s_copy": "${R[s_copy]}", "dd_write": "${R[dd_write]}",
  "s_read": "${R[s_read]}", "dd_read": "${R[dd_read]}", "bl_copy": "${R[bl_copy]}",
  "bl_encrypt": "${R[bl_encrypt]}", "bl_read": "${R[bl_read]}", "dl_copy": "${R[dl_copy]}"}.items()}
med = {k: statistics.median(v) for k, v in r.items()}
rate = {k: mb / v for k, v in med.items()}
rows = [
  ("write to an ntfs-3g mount", "cp -r, umount", rate["cp"], "seedship copy", rate["s_copy"]),
  ("write, raw", "dd oflag=direct", rate["dd_write"], "seedship copy", rate["s_copy"]),
  ("read back", "dd iflag=direct", rate["dd_read"], "seedship read-back (raw NTFS)", rate["s_read"]),
  ("BitLocker write", "cp -r, umount (no encryption)", rate["cp"], "seedship copy, then encrypted in place", rate["bl_copy"]),
  ("BitLocker write", "cp -r, umount (no encryption)", rate["cp"], "seedship copy through dislocker-fuse", rate["dl_copy"]),
  ("BitLocker write, raw", "dd oflag=direct", rate["dd_write"], "seedship copy, then encrypted in place", rate["bl_copy"]),
  ("BitLocker read back", "dd iflag=direct", rate["dd_read"], "seedship read-back through dislocker-fuse", rate["bl_read"]),
]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown CPU")
cost = med["bl_copy"] / med["s_copy"]
lines = [f"CPU: {cpu}; staged data: {mb:.0f} MB; median of {runs} runs (seconds: " +
         ", ".join(f"{k} {med[k]:.2f}" for k in med) + ")", "",
         "| step | peer | peer MB/s | seedship | seedship MB/s | ratio |", "|---|---|---:|---|---:|---:|"]
for step, peer, pr, us, ur in rows:
    lines.append(f"| {step} | {peer} | {pr:.0f} | {us} | {ur:.0f} | {ur / pr:.2f}x |")
lines += ["", f"Encryption's cost: the encrypted write takes {cost:.2f}x the plain write's time "
          f"(of it, the in-place pass {med['bl_encrypt']:.2f} s); through dislocker-fuse "
          f"{med['dl_copy'] / med['s_copy']:.2f}x; the encrypted read-back {med['bl_read'] / med['s_read']:.2f}x the plain one's."]
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
echo "summary: $OUT"
