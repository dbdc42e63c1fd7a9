#!/usr/bin/env bash
# After seeding: online incrementals and a full restore from the vault, side by side with
# restic 0.14 on the same 2 GiB corpus in the same run.
#
#   tests/bench/vault-vs-restic.sh [-w WORKDIR] [-s SIZE_MIB] [-r RUNS]
#
# 1. generates the corpus (tests/corpus/corpus.py, seed 1);
# 2. runs the demo (deploy/local/demo.sh, release binaries) on it until the vault is seeded:
#    Azurite, the emulated Azure, the coordinator, an offline seed, disks, import, vault;
# 3. restic: init a local repository and back the corpus up once (the baseline);
# 4. both, RUNS times each, median: an incremental with nothing changed;
# 5. corpus.py mutate (5 % of files), then one incremental each, with the bytes each
#    sent (ours: uploaded to the vault; restic: added to its repository);
# 6. a full restore each into an empty folder, RUNS times, alternating (ours, restic, ours,
#    ...; the page cache makes whichever runs on freshly freed memory slower), median: ours
#    from the vault in Azurite (a fresh local cache each time: only the small files are
#    cached; the packs are read from the vault while the files are written), restic from its
#    local repository. Every restore is compared with the corpus.
# 7. for reference, ours from the staging set (a local repository, as restic's; it holds the
#    seed's snapshot, from before the mutation).
# Results: WORKDIR/vault-vs-restic.md. Needs restic, python3, GNU time, Node.js (Azurite).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/seedship-target}"
WORK=/tmp/seedship-vault-bench
SIZE=2048
RUNS=3
while [ $# -gt 0 ]; do
  case "$1" in
    -w) WORK=$2; shift 2 ;;
    -s) SIZE=$2; shift 2 ;;
    -r) RUNS=$2; shift 2 ;;
    *) echo "usage: $0 [-w WORKDIR] [-s SIZE_MIB] [-r RUNS]"; exit 2 ;;
  esac
done
command -v restic >/dev/null || { echo "error: restic is not installed (apt-get install restic)"; exit 1; }
TOOL="$ROOT/tests/corpus/corpus.py"
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
CORPUS="$WORK/corpus"
rm -rf "$CORPUS" "$WORK/undo" "$WORK/restic" "$WORK/restore-"* "$WORK/cache-restore"* "$WORK/results.tsv"
echo "== corpus: $SIZE MiB"
python3 "$TOOL" generate --out "$CORPUS" --size-mib "$SIZE" --seed 1 >/dev/null
BYTES=$(du -sb "$CORPUS" | cut -f1)

echo "== the chain until the vault is seeded (deploy/local/demo.sh)"
DEMO="$WORK/demo"
# Whatever happens from here, what the demo left running is stopped when this script ends (a
# failed demo stops its own processes).
stop() { [ -f "$DEMO/pids" ] && kill $(cat "$DEMO/pids") 2>/dev/null || true; }
trap stop EXIT
SEEDSHIP_DEMO_DIR="$DEMO" SEEDSHIP_DEMO_SAMPLE="$CORPUS" SEEDSHIP_DEMO_PROFILE=release SEEDSHIP_DEMO_UNTIL=seeded \
  deploy/local/demo.sh > "$WORK/demo.log" 2>&1 || { tail -40 "$WORK/demo.log"; exit 1; }
BIN="$CARGO_TARGET_DIR/release"
export SEEDSHIP_CACHE="$DEMO/agent-cache"
PASS="$DEMO/passphrase"
OURS=(env -C "$DEMO" "$BIN/source-agent" --config fileserver-01.toml)
export RESTIC_REPOSITORY="$WORK/restic" RESTIC_PASSWORD_FILE="$PASS"
restic init >/dev/null
restic backup --quiet "$CORPUS" >/dev/null

# timed NAME CMD...: wall seconds and CPU seconds of CMD into results.tsv.
timed() {
  local name=$1; shift
  /usr/bin/time -f "%e %U %S %M" -o "$WORK/time.out" "$@" > "$WORK/out-$name.txt" 2>&1 || { cat "$WORK/out-$name.txt"; exit 1; }
  read -r wall user sys rss < "$WORK/time.out"
  echo "$name $wall $(python3 -c "print(round($user + $sys, 2))") $rss" >> "$WORK/results.tsv"
  echo "   $name: ${wall}s"
}
: > "$WORK/results.tsv"
echo "== incremental, nothing changed ($RUNS runs each)"
for i in $(seq 1 "$RUNS"); do
  timed "ours-nochange-$i" "${OURS[@]}" backup --passphrase-file "$PASS" "$CORPUS"
  timed "restic-nochange-$i" restic backup "$CORPUS"
done
echo "== mutate 5 % of the files, then one incremental each"
python3 "$TOOL" mutate --out "$CORPUS" --undo "$WORK/undo" --fraction 0.05 --seed 2 > "$WORK/mutate.txt"
CHANGED=$(python3 - "$WORK/undo" <<'PY'
import os, sys
print(sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(sys.argv[1]) for f in fs))
PY
)
timed "ours-mutated" "${OURS[@]}" backup --passphrase-file "$PASS" "$CORPUS"
timed "restic-mutated" restic backup "$CORPUS"
# ext4 skips inodes freed in the last minute (five while their blocks are dirty), at a cost to
# whoever creates files next; the corpus and mutation steps free thousands. Let that pass.
sync
sleep 65
echo "== full restore into an empty folder ($RUNS runs each, alternating)"
NAME=$(basename "$CORPUS")
# Azurite runs on the same cores: its CPU time during our restores is counted apart.
AZ_PID=$(head -1 "$DEMO/pids" | cut -d' ' -f1)
az_ticks() { awk '{print $14 + $15}' "/proc/$AZ_PID/stat"; }
AZ_TICKS=0
for i in $(seq 1 "$RUNS"); do
  t0=$(az_ticks)
  timed "ours-restore-$i" "${OURS[@]}" restore --vault --cache "$WORK/cache-restore-$i" --target "$WORK/restore-ours-$i" --passphrase-file "$PASS"
  AZ_TICKS=$((AZ_TICKS + $(az_ticks) - t0))
  timed "restic-restore-$i" restic restore latest --target "$WORK/restore-restic-$i"
  diff -r "$CORPUS" "$WORK/restore-ours-$i/$NAME" >/dev/null || { echo "error: our restore $i differs from the corpus"; exit 1; }
  diff -r "$CORPUS" "$WORK/restore-restic-$i$CORPUS" >/dev/null || { echo "error: restic's restore $i differs from the corpus"; exit 1; }
done
echo "   every restore is identical to the corpus"
AZ_CPU=$(python3 -c "print(round($AZ_TICKS / $(getconf CLK_TCK) / $RUNS, 2))")
echo "   Azurite's CPU time per restore of ours: $AZ_CPU s"
timed "ours-local-restore" "${OURS[@]}" restore --staging "$DEMO/staging" --target "$WORK/restore-ours-local" --passphrase-file "$PASS"
rm -rf "$WORK/restore-"* "$WORK/cache-restore"*

python3 - "$WORK" "$BYTES" "$RUNS" "$AZ_CPU" <<'PY' | tee "$WORK/vault-vs-restic.md"
import re, statistics, sys
work, total, runs, az_cpu = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
r = {}
for line in open(f"{work}/results.tsv"):
    name, wall, cpu, rss = line.split()
    r[name] = (float(wall), float(cpu), int(rss))
def med(prefix):
    xs = [v for k, v in r.items() if k.startswith(prefix)]
    return statistics.median(x[0] for x in xs), statistics.median(x[1] for x in xs)
def out(name):
    return open(f"{work}/out-{name}.txt").read()
ours_up = re.search(r"uploaded\s+(\S+ \S+)", out("ours-mutated"))
# restic prints "Added to the repository: X (Y stored)": X before compression, Y what it stored.
restic_added = re.search(r"Added to the repo(?:sitory)?: (\S+ \S+)(?: \((\S+ \S+) stored\))?", out("restic-mutated"))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown CPU")
print(f"corpus {total / 2**20:.0f} MiB; median of {runs} runs for the no-change incremental and the restores; CPU: {cpu}")
print()
print("| step | seedship wall s | restic wall s | seedship CPU s | restic CPU s | ratio (restic/seedship wall) |")
print("|---|---|---|---|---|---|")
for label, a, b in [("incremental, nothing changed", med("ours-nochange"), med("restic-nochange")),
                    ("incremental after mutate (5 %)", med("ours-mutated"), med("restic-mutated")),
                    ("full restore (ours from the vault in Azurite)", med("ours-restore"), med("restic-restore")),
                    ("full restore, ours from the staging set (local)", r["ours-local-restore"][:2], med("restic-restore"))]:
    print(f"| {label} | {a[0]:.2f} | {b[0]:.2f} | {a[1]:.2f} | {b[1]:.2f} | {b[0] / a[0]:.2f}x |")
print()
print(f"Azurite (on the same cores) used {az_cpu} s of CPU per restore of ours, not counted above.")
stored = (restic_added.group(2) or "? (this restic does not say)") if restic_added else "?"
print(f"after the mutation, stored bytes beside stored bytes: seedship uploaded {ours_up.group(1) if ours_up else '?'} (compressed, encrypted); restic stored {stored} (it added {restic_added.group(1) if restic_added else '?'} before compression)")
PY
echo "   size of the files the mutation changed (their previous versions, in the undo folder): $CHANGED bytes" | tee -a "$WORK/vault-vs-restic.md"
