#!/usr/bin/env bash
# Installs the Debian packages seedship's tests and demo run, where they are missing:
#   ntfs-3g         mkntfs (formats customer disks), ntfs-3g (mounts them through FUSE), ntfsls/ntfscat
#   dislocker       dislocker-file/-fuse: opens BitLocker volumes (the datacenter's and the tests' reader)
#   libbde-utils    bdeinfo/bdemount: libbde, a second BitLocker reader
#   cryptsetup-bin  cryptsetup bitlkDump: a third one, for the metadata
#   groff-base      nroff: renders the programs' man pages in the tests
#   prometheus      promtool: checks and unit-tests the alert rules in deploy/prometheus/
#   chromium, chromium-driver  the real browser the dashboard tests drive
#   systemd         systemd-analyze: verifies the service units in deploy/systemd/ and scores them
#   faketime        runs an agent with a skewed clock (the enrollment refusal for clock skew)
#   podman, runc, mmdebstrap  build and start the container images (deploy/container) with no
#                   registry: a Debian base from Debian's packages
#   postgresql      the PostgreSQL backend's tests: a fresh cluster (initdb) per run, as the
#                   postgres user
# Needs root or sudo for apt-get. Prints nothing on stdout; says what it installs on stderr.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }

need=()
for tool in mkntfs ntfs-3g ntfsls; do
  if ! have "$tool"; then need+=(ntfs-3g); break; fi
done
have dislocker-file || need+=(dislocker)
have bdeinfo || need+=(libbde-utils)
have cryptsetup || need+=(cryptsetup-bin)
have nroff || need+=(groff-base)
have promtool || need+=(prometheus)
{ have chromium && have chromedriver; } || need+=(chromium chromium-driver)
have systemd-analyze || need+=(systemd)
have faketime || need+=(faketime)
{ have podman && have runc && have mmdebstrap; } || need+=(podman runc mmdebstrap)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)

if ((${#need[@]})); then
  if [ "$(id -u)" = 0 ]; then
    sudo=()
  elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    echo "error: the Debian packages ${need[*]} are missing, and installing them needs root (or sudo)" >&2
    exit 1
  fi
  echo "== installing Debian packages: ${need[*]}" >&2
  "${sudo[@]}" apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi

if [ ! -c /dev/fuse ]; then
  echo "error: /dev/fuse is missing, so ntfs-3g cannot mount the disks' NTFS volumes; load the fuse module (modprobe fuse) or give the container the device" >&2
  exit 1
fi
