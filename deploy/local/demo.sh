#!/usr/bin/env bash
# The main job on one machine: offline seeding against local stand-ins.
#
# What runs today (each later stage extends this script):
#   1. a fresh PKI: CA, coordinator certificate, master key, and identities for a backup
#      server (source), a copy station (copy) and an operator;
#   2. the Azure stand-ins: Azurite (installed through npm into a cache, pinned by
#      deploy/azurite/package-lock.json) holding the storage account, and the emulated Azure
#      Resource Manager (Microsoft.DataBox 2025-02-01) and datacenter, over HTTPS;
#   3. the coordinator on 127.0.0.1 (mTLS, SQLite), with its Azure side pointed at the emulator;
#   4. the source agent and the copy agent register (the copy agent keeps a heartbeat);
#   5. the source agent backs up a sample folder into a staging location (compressed,
#      encrypted, deduplicated), verifies the staging set, and registers the seed;
#   6. the copy agent prepares three shipping disks (image files sized, by its own plan, so
#      the seed must span all three): each formatted as NTFS (mkntfs) and written through an
#      ntfs-3g mount in Azure's customer-disk layout with its drive manifest
#      (DriveManifest.xml), its BitLocker recovery password escrowed with the coordinator
#      first, every staging file checked, then encrypted in place as a BitLocker volume
#      (XTS-AES-256) and read back through dislocker's unlock, every drive reported; its final
#      screen shows the labels and the datacenter's address; bdeinfo shows each disk is
#      BitLocker without a key;
#   7. the coordinator creates the Azure Data Box job (customer disks) from the prepared
#      disks, after Azure's validateInputs; with the keys as Azure lists them
#      (listCredentials), dislocker and libbde, BitLocker readers seedship did not write,
#      unlock every disk, and ntfs-3g's tools list what is on it;
#   8. the operator records the shipment (carrier, tracking number); Azure is told
#      (markDevicesShipped);
#   9. the emulated datacenter receives the package, unlocks each disk with its key through
#      dislocker, reads its NTFS volume through its drive manifest (checked against the job's
#      manifest hash and the disk's serial), copies every file into the storage account (Azurite)
#      with its MD5, writes the copy logs to
#      databoxcopylog, and ships the disks back;
#      the coordinator follows every step;
#  10. the coordinator verifies every blob against the seed manifest and seeds the server's
#      vault (server-side copies), whose first recovery point is the seed's snapshot;
#  11. some files change and the server backs up online: only what changed is read and sent;
#  12. the latest recovery point is restored from the vault into a fresh folder and compared
#      with the source (names, modes, sizes, times, contents);
#  13. a second seed on Microsoft's disks: a Data Box Disk order, two disks delivered as
#      BitLocker volumes (XTS-AES-128) into the station's disk folder; the station gets the
#      order's passkey from the coordinator, unlocks each disk as Microsoft's Linux tool does
#      (dislocker, ntfs-3g), fills it, reads it back and locks it again; the disks go back, the
#      datacenter unlocks and imports them, and that server's vault is seeded;
#  14. the operator view, and a summary: sizes, time and throughput of each stage, ids.
#
#   deploy/local/demo.sh           # run, then stop everything
#   deploy/local/demo.sh --keep    # leave the coordinator and copy agent running
# State and logs go to $SEEDSHIP_DEMO_DIR (default: .demo in the clone), wiped at each run.
# For benchmarks (tests/bench/vault-vs-restic.sh): SEEDSHIP_DEMO_SAMPLE=DIR backs up that
# folder instead of a generated one, SEEDSHIP_DEMO_PROFILE=release uses release binaries, and
# SEEDSHIP_DEMO_UNTIL=seeded stops once the vault is seeded, leaving everything running (the
# process ids are in $SEEDSHIP_DEMO_DIR/pids).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/seedship-target}"
DEMO="${SEEDSHIP_DEMO_DIR:-$ROOT/.demo}"
KEEP=0
# At a terminal (not in CI), the coordinator keeps serving the dashboard after a good run.
KEEP_DASHBOARD=0
if [ -t 1 ] && [ -z "${CI:-}" ]; then KEEP_DASHBOARD=1; fi
[ "${1:-}" = "--keep" ] && KEEP=1

if [ -t 1 ]; then say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }; else say() { printf '\n== %s\n' "$*"; }; fi

command -v cargo >/dev/null || { echo "error: cargo is not installed (https://rustup.rs)"; exit 1; }
say "building seedship (target dir: $CARGO_TARGET_DIR)"
PROFILE="${SEEDSHIP_DEMO_PROFILE:-debug}"
if [ "$PROFILE" = release ]; then cargo build --release --workspace --bins --locked; else cargo build --workspace --bins --locked; fi
BIN="$CARGO_TARGET_DIR/$PROFILE"
# mkntfs and ntfs-3g write the shipping disks, dislocker and libbde read BitLocker (Debian's
# packages; installed when missing); libbde's current Python bindings read XTS-AES-256 too.
"$ROOT/deploy/debian/install.sh"
PY=$("$ROOT/deploy/python/install.sh")
SAMPLE="${SEEDSHIP_DEMO_SAMPLE:-sample}"
UNTIL="${SEEDSHIP_DEMO_UNTIL:-}"
[ -n "$UNTIL" ] && KEEP=1

rm -rf "$DEMO"
mkdir -p "$DEMO"
cd "$DEMO"
PIDS=()
cleanup() {
  # A run that failed stops what it started, even when asked to keep it running.
  local rc=$?
  if [ "$KEEP" = 0 ] || [ "$rc" != 0 ]; then
    for p in "${PIDS[@]}"; do
      # Run at a terminal, a demo that succeeded leaves the coordinator serving its dashboard.
      [ "$rc" = 0 ] && [ "$KEEP_DASHBOARD" = 1 ] && [ "$p" = "${COORD_PID:-}" ] && continue
      kill "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do [ "$p" = "${COORD_PID:-}" ] && [ "$rc" = 0 ] && [ "$KEEP_DASHBOARD" = 1 ] || wait "$p" 2>/dev/null || true; done
  fi
}
trap cleanup EXIT
# Stage timings for the summary: "name seconds bytes".
T_START=$(date +%s.%N)
stage_begin() { STAGE_T=$(date +%s.%N); }
since() { python3 -c 'import sys, time; print(f"{time.time() - float(sys.argv[1]):.3f}")' "$1"; }
stage_end() { echo "$1 $(since "$STAGE_T") $2" >> timings.txt; }

say "1. a fresh PKI in $DEMO/pki"
"$BIN/coordinator" pki init --dir pki --trust-domain seedship.demo
# The operator's certificate; the agents enroll with one-time tokens (step 4).
"$BIN/coordinator" pki issue --dir pki --role operator --name ops

say "2. the Azure stand-ins: Azurite (storage) and the emulated Azure Data Box service (Microsoft.DataBox)"
AZURITE_MAIN=$("$ROOT/deploy/azurite/install.sh")
# The agents' caches (the vault's small files, the file cache) stay in the demo folder.
export SEEDSHIP_CACHE="$DEMO/agent-cache"
ACCOUNT=demoseeds
(umask 077 && echo "$ACCOUNT=$(head -c 64 /dev/urandom | base64 -w0)" > storage-keys.txt)
mkdir -p azurite
AZURITE_ACCOUNTS="$(sed 's/=/:/' storage-keys.txt)" node "$AZURITE_MAIN" --blobHost 127.0.0.1 --blobPort 0 \
  --location azurite --skipApiVersionCheck --disableTelemetry >azurite.log 2>&1 &
PIDS+=($!)
for _ in $(seq 1 300); do grep -q "successfully listens on" azurite.log && break; sleep 0.1; done
STORAGE_URL=$(sed -n 's/.*successfully listens on \(http[^ ]*\).*/\1/p' azurite.log | head -1)
[ -n "$STORAGE_URL" ] || { cat azurite.log; echo "error: Azurite did not start in 30 s"; exit 1; }
echo "Azurite (blob storage, account $ACCOUNT) on $STORAGE_URL"
SUB=0f0e0d0c-0000-4000-8000-00000000abcd
RG=seedship-demo
"$BIN/seedship-emulator" --state emulator.json --tls-dir emulator-tls --ready-file emulator.ready \
  --resource-group "$SUB/$RG" --storage-url "$STORAGE_URL" --storage-keys storage-keys.txt >emulator.log 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do [ -s emulator.ready ] && break; sleep 0.1; done
ARM_URL=$(sed -n 's/.*"url":"\([^"]*\)".*/\1/p' emulator.ready)
[ -n "$ARM_URL" ] || { cat emulator.log; echo "error: the emulator did not start in 10 s"; exit 1; }
echo "emulated Azure Resource Manager (Microsoft.DataBox 2025-02-01) and datacenter on $ARM_URL (log: $DEMO/emulator.log)"
datacenter() { # job action json
  curl -sS --fail-with-body --cacert emulator-tls/ca.crt -H 'content-type: application/json' \
    -X POST "$ARM_URL/_datacenter/jobs/$SUB/$RG/$1/$2" -d "$3" >"datacenter-$2.json" \
    || { cat "datacenter-$2.json"; echo; echo "error: datacenter command $2 failed"; exit 1; }
}
# Unlocks each disk image with its key from credentials.json (the drive its BitLocker
# description names) through dislocker and through libbde, lists it with ntfs-3g's tools, and
# checks both readers see the same files; the first disk's drive manifest goes to
# disk1-manifest.xml.
unlock_and_list() { # job image...
  local job=$1; shift
  mkdir -p unlocked
  local n=0
  for img in "$@"; do
    n=$((n + 1))
    local drive; drive=$({ bdeinfo "$img" 2>&1 || true; } | sed -n 's/^\tDescription\t*: \([^ ]*\) seedship.*/\1/p')
    (umask 077 && python3 -c '
import json, sys
secrets = json.load(open(sys.argv[1]))["value"][0]["jobSecrets"]["diskSecrets"]
print(next(s["bitLockerKey"] for s in secrets if s["diskSerialNumber"] == sys.argv[2]))' credentials.json "$drive" > key)
    mkdir -p "unlocked/$n"
    echo "\$ dislocker-fuse -r -V $img -p<drive $drive's key> -- unlocked/$n; ntfsls unlocked/$n/dislocker-file"
    dislocker-fuse -r -V "$img" -p"$(cat key)" -- "unlocked/$n" >/dev/null
    ntfsls "unlocked/$n/dislocker-file" | tr '\n' ' '; echo
    [ "$n" = 1 ] && [ -n "$(ntfsls "unlocked/$n/dislocker-file" | grep -x DriveManifest.xml)" ] \
      && ntfscat "unlocked/$n/dislocker-file" DriveManifest.xml > disk1-manifest.xml
    local through_dislocker; through_dislocker=$(ntfsls -R "unlocked/$n/dislocker-file" | sort | sha256sum)
    umount "unlocked/$n"
    echo "\$ tests/py/bde_read.py $img disk.plain < key   # libbde $("$PY" -c 'import pybde; print(pybde.get_version())')"
    "$PY" "$ROOT/tests/py/bde_read.py" "$img" disk.plain < key | python3 -c '
import json, sys
j = json.load(sys.stdin)
print("  unlocked: %s; encryption method 0x%04x; description %r" % (j["unlocked"], j["encryption_method"], j["description"]))'
    local through_libbde; through_libbde=$(ntfsls -R disk.plain | sort | sha256sum)
    rm -f disk.plain key
    [ "$through_dislocker" = "$through_libbde" ] || { echo "error: dislocker and libbde see different files on $img ($job)"; exit 1; }
    echo "  dislocker and libbde show the same files; raw, the image is ciphertext: $(ntfsls "$img" >/dev/null 2>&1 && echo "NTFS readable!" || echo "no NTFS")"
  done
}
SEED=demo-seed-01
seed_state() { "$BIN/seedctl" --config seedctl.toml --json seed "$SEED" | sed -n 's/^    "state": "\([a-z_]*\)",$/\1/p' | head -1; }
# The seed's states in lifecycle order: a wait is for a state or any later one (a seed can
# pass through a state between two looks).
ORDER="registered disks_ordered queued_for_disk_prep preparing disks_prepared import_job_created shipped at_datacenter importing imported verifying needs_repair seeding_vault seeded"
rank() { local i=0; for s in $ORDER; do [ "$s" = "$1" ] && { echo $i; return; }; i=$((i + 1)); done; echo -1; }
wait_state() { # state seconds: that state or a later one
  local want; want=$(rank "$1")
  for _ in $(seq 1 $(( $2 * 10 ))); do
    local now; now=$(seed_state)
    case "$now" in failed|cancelled) break ;; esac
    [ "$(rank "$now")" -ge "$want" ] && return 0
    sleep 0.1
  done
  "$BIN/seedctl" --config seedctl.toml seed "$SEED"; echo "error: seed $SEED did not reach $1 in $2 s"; exit 1
}

say "3. the coordinator"
cat > coordinator.toml <<TOML
listen = "127.0.0.1:0"
ready_file = "coordinator.ready"
database = "coordinator.db"
trust_domain = "seedship.demo"
master_key_file = "pki/master.key"
[tls]
ca_file = "pki/ca.crt"
cert_file = "pki/coordinator.crt"
key_file = "pki/coordinator.key"
[leases]
heartbeat_interval = "2s"
[web]
listen = "127.0.0.1:0"
[enroll]
cert_lifetime = "7d"
[azure]
arm_endpoint = "$ARM_URL"
ca_file = "emulator-tls/ca.crt"
resource_group = "$RG"
poll_interval = "1s"
credential = { kind = "emulator" }
[azure.return_address]
recipient_name = "Backup team, Contoso"
street_address1 = "1 Main St"
city = "Utrecht"
postal_code = "3511 AA"
country = "NL"
phone = "+31 30 000 0000"
email = "backup@contoso.example"
[azure.return_shipping]
carrier_name = "DHL"
carrier_account_number = "123456789"
[azure.storage]
endpoint = "$STORAGE_URL/{account}"
keys_file = "storage-keys.txt"
TOML
"$BIN/coordinator" serve --config coordinator.toml >coordinator.log 2>&1 &
PIDS+=($!)
COORD_PID=$!
for _ in $(seq 1 100); do
  [ -s coordinator.ready ] && break
  kill -0 "${PIDS[2]}" 2>/dev/null || { cat coordinator.log; echo "error: the coordinator exited"; exit 1; }
  sleep 0.1
done
[ -s coordinator.ready ] || { cat coordinator.log; echo "error: the coordinator did not start in 10 s"; exit 1; }
ADDR=$(sed -n 's/.*"addr":"\([^"]*\)".*/\1/p' coordinator.ready)
WEB=$(sed -n 's/.*"web":"\([^"]*\)".*/\1/p' coordinator.ready)
echo "coordinator listening on https://$ADDR, dashboard on https://localhost:${WEB##*:} (log: $DEMO/coordinator.log)"

cat > seedctl.toml <<TOML
url = "https://$ADDR"
ca_file = "pki/ca.crt"
cert_file = "pki/ops.crt"
key_file = "pki/ops.key"
server_name = "localhost"
TOML
# Each agent gets a config naming where its key, certificate and CA will be; then an
# operator's one-time token, and the agent enrolls with it (its key is made there, 0600).
mkdir -p agents
agent_config() { # name site
  cat > "$1.toml" <<TOML
site = "$2"
[coordinator]
url = "https://$ADDR"
ca_file = "agents/$1/ca.crt"
cert_file = "agents/$1/agent.crt"
key_file = "agents/$1/agent.key"
server_name = "localhost"
TOML
}
enroll() { # program name role site
  local out fp
  out=$("$BIN/seedctl" --config seedctl.toml --json enroll create --role "$3" --name "$2" --site "$4" \
    --ttl-seconds 900 --reason "the demo enrolls its agents")
  (umask 077 && python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])' <<<"$out" >"agents/$2.token")
  fp=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["ca_fingerprint"])' <<<"$out")
  "$BIN/$1" --config "$2.toml" enroll --url "https://localhost:${WEB##*:}" --ca-fingerprint "sha256:$fp" \
    --token-file "agents/$2.token" --name "$2"
  rm -f "agents/$2.token"
}
agent_config fileserver-01 hq
agent_config fileserver-02 branch
agent_config station-01 hq
mkdir -p disks
cat >> station-01.toml <<TOML
[station]
disk_dir = "disks"
state_dir = "copy-station"
staging_roots = ["staging", "staging2"]
poll_interval = "1s"
progress_interval = "1s"
TOML

say "4. agents enroll with one-time tokens and register"
enroll source-agent fileserver-01 source hq
enroll source-agent fileserver-02 source branch
enroll copy-agent station-01 copy hq
"$BIN/source-agent" --config fileserver-01.toml register 2>>source-agent.log
"$BIN/source-agent" --config fileserver-02.toml register 2>>source-agent.log
"$BIN/copy-agent" --config station-01.toml run >copy-agent.out 2>copy-agent.log &
COPY_PID=$!
PIDS+=($COPY_PID)
for _ in $(seq 1 100); do grep -q "registered" copy-agent.log 2>/dev/null && break; sleep 0.1; done
grep -q "registered" copy-agent.log || { cat copy-agent.log; echo "error: the copy agent did not register"; exit 1; }
echo "copy agent station-01 is running and sending heartbeats (log: $DEMO/copy-agent.log)"

say "5. an offline backup of a sample folder into a staging location"
CORPUS_TOOL="$ROOT/tests/corpus/corpus.py"
if [ "$SAMPLE" != sample ]; then
  [ -d "$SAMPLE" ] || { echo "error: SEEDSHIP_DEMO_SAMPLE=$SAMPLE is not a folder"; exit 1; }
elif [ -f "$CORPUS_TOOL" ] && command -v python3 >/dev/null; then
  python3 "$CORPUS_TOOL" generate --out sample --size-mib 64 --seed 7 >/dev/null
else
  mkdir -p sample/docs sample/media
  for i in $(seq 1 200); do seq 1 $((i * 50)) > "sample/docs/file-$i.txt"; done
  head -c 20000000 /dev/urandom > sample/media/video.bin
  cp sample/media/video.bin sample/media/copy-of-video.bin
fi
echo "sample folder: $(du -sh "$SAMPLE" | cut -f1) in $(find "$SAMPLE" -type f | wc -l) files"
(umask 077 && echo "demo passphrase $RANDOM$RANDOM$RANDOM" > passphrase)
echo '$ source-agent backup --offline --staging staging --job-name demo-seed-01 ... sample'
stage_begin
"$BIN/source-agent" --config fileserver-01.toml backup --offline --quiet \
  --staging staging --staging-share "$DEMO/staging" \
  --job-name demo-seed-01 --storage-account demoseeds --pack-target-mib 8 \
  --subscription-id 0f0e0d0c-0000-4000-8000-00000000abcd --location westeurope \
  --passphrase-file passphrase "$SAMPLE" 2>>source-agent.log
stage_end "offline-backup" "$(du -sb "$SAMPLE" | cut -f1)"
echo
echo '$ source-agent verify --staging staging'
"$BIN/source-agent" verify --staging staging

say "6. the copy station prepares the shipping disks"
TOTAL=$(du -sb staging | cut -f1)
# The copy agent's plan says what size three disks must be (whole files, NTFS's overhead).
echo '$ copy-agent plan --staging staging --disks 3'
"$BIN/copy-agent" plan --staging staging --disks 3
SIZE=$("$BIN/copy-agent" plan --staging staging --disks 3 --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["disk_size"])')
NEED=$("$BIN/copy-agent" plan --staging staging --disk-size "$SIZE" --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["disks"])')
for i in 1 2 3; do truncate -s "$SIZE" "disks/disk$i.img"; done
echo "three blank disk images of $((SIZE / 1048576)) MiB in $DEMO/disks ($NEED of that size are needed)"
# One machine plays both the backup server and the copy station; Azure wants them apart.
echo '$ seedctl allow-virtual-station demo-seed-01 --reason "..."'
stage_begin
"$BIN/seedctl" --config seedctl.toml allow-virtual-station demo-seed-01 \
  --reason "demo: the backup server and the copy station are one machine" >/dev/null
for _ in $(seq 1 12000); do grep -q "^Ship to:" copy-agent.out 2>/dev/null && break; sleep 0.1; done
grep -q "^Ship to:" copy-agent.out || { cat copy-agent.log; echo "error: the disks were not prepared within 20 min"; exit 1; }
stage_end "disk-preparation" "$TOTAL"
sleep 0.2
grep -E "^job demo-seed-01  (copy|verify)" copy-agent.log | tail -2 || true
cat copy-agent.out
echo '$ copy-agent status'
"$BIN/copy-agent" --config station-01.toml status
mounted=$(grep -c "$DEMO/copy-station" /proc/self/mountinfo || true)
echo "mounts left at the station: $mounted (every read-back locked again)"
[ "$mounted" = 0 ] || { grep "$DEMO/copy-station" /proc/self/mountinfo; echo "error: a disk was left unlocked at the station"; exit 1; }
# Each shipped disk is a BitLocker volume: libbde reads its header and metadata without a key.
for i in 1 2 3; do
  echo "\$ bdeinfo disks/disk$i.img"
  { bdeinfo "disks/disk$i.img" 2>&1 || true; } | grep -E "Encryption method|Description|Type" | sed 's/^\t*/  /'
done

say "7. the coordinator creates the Azure import job"
wait_state import_job_created 30
echo '$ seedctl job demo-seed-01'
"$BIN/seedctl" --config seedctl.toml job demo-seed-01

# The disks' keys as Azure lists them (listCredentials, what `az databox job list-credentials`
# shows the operator), kept in 0600 files and never printed. With them, two BitLocker readers
# seedship did not write unlock every disk: dislocker (FUSE, read-only) and libbde (its Python
# bindings); ntfs-3g's tools read the NTFS volume inside.
(umask 077 && curl -sS --fail-with-body --cacert emulator-tls/ca.crt -H "Authorization: Bearer demo" -X POST \
  "$ARM_URL/subscriptions/$SUB/resourceGroups/$RG/providers/Microsoft.DataBox/jobs/demo-seed-01/listCredentials?api-version=2025-02-01" \
  > credentials.json)
unlock_and_list "demo-seed-01" disks/disk1.img disks/disk2.img disks/disk3.img
head -12 disk1-manifest.xml | sed 's/<ContainerSas>.*<\/ContainerSas>/<ContainerSas>(redacted)<\/ContainerSas>/'

say "8. the disks are shipped; the operator records the tracking number"
echo "$ seedctl ship --job demo-seed-01 --carrier DHL --tracking 1234567890 --drives 3 --date $(date +%F)"
"$BIN/seedctl" --config seedctl.toml ship --job demo-seed-01 --carrier DHL --tracking 1234567890 --drives 3 --date "$(date +%F)"
wait_state shipped 10
echo
echo '$ seedctl jobs'
"$BIN/seedctl" --config seedctl.toml jobs

say "9. the datacenter receives the package and imports the drives into the storage account"
datacenter demo-seed-01 arrive "{\"disks\": [\"$DEMO/disks/disk1.img\", \"$DEMO/disks/disk2.img\", \"$DEMO/disks/disk3.img\"]}"
wait_state at_datacenter 10
echo "package received: 3 drives"
stage_begin
datacenter demo-seed-01 copy '{}'
wait_state imported 900
stage_end "datacenter-import" "$TOTAL"
echo "every drive copied into storage account $ACCOUNT"
datacenter demo-seed-01 ship-back '{"carrier": "DHL", "tracking": "9876543210"}'
for _ in $(seq 1 100); do "$BIN/seedctl" --config seedctl.toml job demo-seed-01 | grep -q "^Azure      Completed" && break; sleep 0.1; done
echo '$ seedctl job demo-seed-01'
"$BIN/seedctl" --config seedctl.toml job demo-seed-01
echo
# The coordinator chose the seed's import container when it was registered.
CONTAINER=$("$BIN/seedctl" --config seedctl.toml --json seed demo-seed-01 | python3 -c '
import json, sys
def find(v):
    if isinstance(v, dict):
        if isinstance(v.get("container"), str):
            return v["container"]
        for x in v.values():
            c = find(x)
            if c:
                return c
    if isinstance(v, list):
        for x in v:
            c = find(x)
            if c:
                return c
print(find(json.load(sys.stdin)) or "")')
echo "The seed's import container ($CONTAINER, chosen by the coordinator), as the datacenter lists it:"
curl -sS --cacert emulator-tls/ca.crt "$ARM_URL/_datacenter/storage/$ACCOUNT/$CONTAINER" > storage.json
python3 - storage.json staging/manifest.json <<'PY'
import json, sys
blobs = {b["name"]: b for b in json.load(open(sys.argv[1]))["blobs"]}
files = json.load(open(sys.argv[2]))["files"]
same = sum(1 for f in files if f["path"] in blobs and blobs[f["path"]]["md5"] == f["md5"] and blobs[f["path"]]["size"] == f["size"])
print(f"  {len(blobs)} blobs; {same} of {len(files)} staging files present with the seed manifest's size and MD5")
for n in sorted(blobs)[:5]:
    print(f"  {n}  {blobs[n]['size']} bytes  md5 {blobs[n]['md5']}")
sys.exit(0 if same == len(files) else 1)
PY

say "10. the coordinator verifies the import and seeds the vault"
stage_begin
wait_state seeded 900
stage_end "verify-and-seed-vault" "$TOTAL"
echo '$ seedctl verification demo-seed-01'
"$BIN/seedctl" --config seedctl.toml verification demo-seed-01
echo
echo '$ seedctl recovery-points'
"$BIN/seedctl" --config seedctl.toml recovery-points
if [ "$UNTIL" = seeded ]; then
  echo "${PIDS[*]}" > pids
  echo "stopping here (SEEDSHIP_DEMO_UNTIL=seeded); still running: ${PIDS[*]}"
  exit 0
fi

say "11. the server protects itself online: some files change, an incremental goes to the vault"
if [ -f "$CORPUS_TOOL" ] && command -v python3 >/dev/null; then
  python3 "$CORPUS_TOOL" mutate --out sample --undo sample-undo --fraction 0.05 --seed 11 >/dev/null
else
  for i in 1 2 3; do echo "changed after seeding" >> "sample/docs/file-$i.txt"; done
fi
echo "about 5 % of the sample's files changed"
echo '$ source-agent backup sample'
stage_begin
"$BIN/source-agent" --config fileserver-01.toml backup --passphrase-file passphrase sample 2>>source-agent.log | tee incremental.out
stage_end "incremental" "$(du -sb sample | cut -f1)"
echo
echo '$ seedctl recovery-points'
"$BIN/seedctl" --config seedctl.toml recovery-points

say "12. restore the latest recovery point from the vault into a fresh folder, and compare"
echo '$ source-agent restore --vault --target restored'
stage_begin
"$BIN/source-agent" --config fileserver-01.toml restore --vault --target restored --passphrase-file passphrase 2>>source-agent.log
stage_end "restore" "$(du -sb restored | cut -f1)"
python3 - sample restored/sample <<'PY'
import hashlib, os, sys
def walk(root):
    out = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            st = os.lstat(p)
            h = None
            if os.path.isfile(p) and not os.path.islink(p):
                h = hashlib.sha256(open(p, "rb").read()).hexdigest()
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_size if h else 0, st.st_mtime_ns, h)
    return out
a, b = walk(sys.argv[1]), walk(sys.argv[2])
diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
files = sum(1 for v in a.values() if v[3])
size = sum(v[1] for v in a.values())
if diff:
    print(f"DIFFERENT: {len(diff)} entries, e.g. {diff[:5]}")
    sys.exit(1)
print(f"identical: {len(a)} entries ({files} files, {size} bytes): names, modes, sizes, times and contents")
PY

say "13. a second server's seed on Microsoft's Data Box Disks"
# The copy agent stops (SIGTERM: it gives any work back) while this seed registers and its kind
# is chosen; running, it would claim the seed for blank customer disks.
kill -TERM "$COPY_PID"; wait "$COPY_PID" 2>/dev/null || true
SEED=demo-seed-02
if [ -f "$CORPUS_TOOL" ]; then
  python3 "$CORPUS_TOOL" generate --out sample2 --size-mib 16 --seed 8 >/dev/null
else
  mkdir -p sample2; head -c 16000000 /dev/urandom > sample2/data.bin
fi
(umask 077 && echo "demo passphrase two $RANDOM$RANDOM$RANDOM" > passphrase2)
echo '$ source-agent backup --offline --staging staging2 --job-name demo-seed-02 ... sample2   # fileserver-02'
stage_begin
"$BIN/source-agent" --config fileserver-02.toml backup --offline --quiet \
  --staging staging2 --staging-share "$DEMO/staging2" \
  --job-name demo-seed-02 --storage-account demoseeds --pack-target-mib 2 \
  --subscription-id 0f0e0d0c-0000-4000-8000-00000000abcd --location westeurope \
  --passphrase-file passphrase2 sample2 2>>source-agent.log
stage_end "offline-backup-2" "$(du -sb sample2 | cut -f1)"
TOTAL2=$(du -sb staging2 | cut -f1)
echo '$ seedctl kind demo-seed-02 databox_disk --reason "..."'
"$BIN/seedctl" --config seedctl.toml kind demo-seed-02 databox_disk --reason "demo: Microsoft's disks for the branch" >/dev/null
"$BIN/seedctl" --config seedctl.toml allow-virtual-station demo-seed-02 \
  --reason "demo: the backup server and the copy station are one machine" >/dev/null
wait_state disks_ordered 30
echo "Data Box Disk order placed for demo-seed-02"
# Microsoft fulfils the order: two disks, dispatched and delivered into the station's disk
# folder, locked (BitLocker XTS-AES-128; the disk's key and the order's passkey open it).
SIZE2=$("$BIN/copy-agent" plan --staging staging2 --disks 2 --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["disk_size"])')
datacenter demo-seed-02 prepare '{"disks": 2}'
datacenter demo-seed-02 dispatch '{"carrier": "UPS", "tracking": "1Z999AA10123456784"}'
datacenter demo-seed-02 deliver "{\"dir\": \"$DEMO/disks\", \"sizeBytes\": $SIZE2}"
DELIVERED=$(python3 -c 'import json; print(" ".join(sorted(json.load(open("datacenter-deliver.json"))["disks"].values())))')
for img in $DELIVERED; do
  echo "\$ bdeinfo disks/$(basename "$img")"
  { bdeinfo "$img" 2>&1 || true; } | grep -E "Encryption method|Description|Type" | sed 's/^\t*/  /'
done
wait_state queued_for_disk_prep 30
echo '$ copy-agent run   # the station: gets the passkey, unlocks, fills, reads back, locks'
stage_begin
"$BIN/copy-agent" --config station-01.toml run >copy-agent2.out 2>copy-agent2.log &
COPY_PID=$!
PIDS+=($COPY_PID)
wait_state disks_prepared 1200
stage_end "disk-preparation-2" "$TOTAL2"
grep -E "unlocked with the passkey|disk encrypted|drive prepared" copy-agent2.log | sed 's/^.*INFO [^:]*: [^:]*: /  /' | cut -c1-140
mounted=$(grep -c "$DEMO/copy-station" /proc/self/mountinfo || true)
echo "mounts left at the station: $mounted (every disk locked again)"
wait_state import_job_created 30
"$BIN/seedctl" --config seedctl.toml ship --job demo-seed-02 --carrier FedEx --tracking 123456789012 --drives 2 --date "$(date +%F)" >/dev/null
wait_state shipped 10
datacenter demo-seed-02 pickup '{"carrier": "FedEx", "tracking": "123456789012"}'
ARRIVE=$(python3 -c 'import json, sys; print(json.dumps({"disks": sys.argv[1:]}))' $DELIVERED)
datacenter demo-seed-02 arrive "$ARRIVE"
wait_state at_datacenter 10
(umask 077 && curl -sS --fail-with-body --cacert emulator-tls/ca.crt -H "Authorization: Bearer demo" -X POST \
  "$ARM_URL/subscriptions/$SUB/resourceGroups/$RG/providers/Microsoft.DataBox/jobs/demo-seed-02/listCredentials?api-version=2025-02-01" \
  > credentials.json)
unlock_and_list demo-seed-02 $DELIVERED
stage_begin
datacenter demo-seed-02 copy '{}'
wait_state seeded 900
stage_end "import-and-seed-2" "$TOTAL2"
echo '$ seedctl seed demo-seed-02'
"$BIN/seedctl" --config seedctl.toml seed demo-seed-02 | head -12
SEED=demo-seed-01

say "14. the operator view (seedctl --config $DEMO/seedctl.toml ...)"
echo '$ seedctl agents'
"$BIN/seedctl" --config seedctl.toml agents
echo
echo '$ seedctl seeds'
"$BIN/seedctl" --config seedctl.toml seeds
echo
echo '$ seedctl seed demo-seed-01'
"$BIN/seedctl" --config seedctl.toml seed demo-seed-01
echo
echo '$ seedctl drives'
"$BIN/seedctl" --config seedctl.toml drives
echo
echo '$ source-agent status'
"$BIN/source-agent" --config fileserver-01.toml status 2>>source-agent.log

say "summary"
JOB_LINE=$("$BIN/seedctl" --config seedctl.toml jobs | sed -n 2p)
echo "job:     demo-seed-01 (seed $(sed -n 's/.*seed \(sd-[0-9a-f]*\).*/\1/p' copy-agent.out | head -1)); $(echo "$JOB_LINE" | awk '{print "Azure state " $3 ", tracking " $7}')"
echo "drives:  $(grep -o 'drive SS-[A-Z0-9]*' copy-agent.out | sort -u | sed 's/drive //' | tr '\n' ' ')"
echo "sample:  $(du -sh sample | cut -f1) in $(find sample -type f | wc -l) files; staged $(du -sh staging | cut -f1)"
grep "uploaded" incremental.out | sed 's/^ */incremental: /' || true
echo
python3 - timings.txt <<'PY'
import sys
print(f"{'STAGE':24} {'SECONDS':>8} {'BYTES':>12} {'MB/s':>8}")
for line in open(sys.argv[1]):
    name, secs, n = line.split()
    secs, n = float(secs), int(n)
    print(f"{name:24} {secs:8.2f} {n:12d} {n / 1e6 / max(secs, 1e-6):8.1f}")
PY
echo "total:   $(since "$T_START") s (the emulated datacenter and shipping take no time here)"
echo
echo "The whole chain ran: an offline backup staged, verified and registered; shipping disks"
echo "prepared, verified and reported; the Azure import job created, shipped, received and imported"
echo "into the storage account; verified and copied into the server's vault; an online incremental;"
echo "and a restore from the vault identical to the source. A second server's seed went the same"
echo "way on Microsoft's Data Box Disks, unlocked at the station with the order's passkey."

say "dashboard"
# The dashboard shows the chain as it ran: checked here through its API with a login link.
LINK=$("$BIN/seedctl" --config seedctl.toml login-link | head -1)
rm -f dashboard.cookies
curl -sS --cacert pki/ca.crt -c dashboard.cookies -o /dev/null -w '%{http_code}' "$LINK" | grep -qx 303 \
  || { echo "error: the login link did not open a dashboard session"; exit 1; }
SEEN=$(curl -sS --cacert pki/ca.crt -b dashboard.cookies "https://localhost:${WEB##*:}/api/seeds/demo-seed-01" \
  | python3 -c 'import json, sys; d = json.load(sys.stdin); print(d["seed"]["state"], len(d["disks"]), len(d["history"]), len(d["recovery_points"]))')
echo "dashboard: demo-seed-01 is $(echo "$SEEN" | awk '{print $1 ", " $2 " disks, " $3 " events in its timeline, " $4 " recovery point(s)"}')"
[ "${SEEN%% *}" = seeded ] || { echo "error: the dashboard does not show demo-seed-01 seeded"; exit 1; }
rm -f dashboard.cookies
echo "Dashboard: https://localhost:${WEB##*:}/  (TLS from the demo's own CA, $DEMO/pki/ca.crt)"
echo "Log in:    $("$BIN/seedctl" --config seedctl.toml login-link | head -1)"
echo "           (single use, 10 minutes; a new one: $BIN/seedctl --config $DEMO/seedctl.toml login-link)"
if [ "$KEEP" = 1 ]; then
  echo "Still running (--keep): Azurite, the emulator, the coordinator and the copy agent. Stop them with: kill ${PIDS[*]}"
elif [ "$KEEP_DASHBOARD" = 1 ]; then
  echo "The coordinator keeps serving the dashboard (pid $COORD_PID; stop it with: kill $COORD_PID)."
else
  echo "The coordinator stops with this script (not at a terminal); run it with --keep to browse the dashboard."
fi
