#!/usr/bin/env bash
# The whole seedship test suite, from a fresh clone: builds everything, installs what is
# missing (cargo-nextest; Debian packages with apt-get; Azurite through npm; a Python venv
# through pip), and runs unit, service and end-to-end tests with time bounds: all of them
# with the coordinator on SQLite, then the end-to-end tests again on PostgreSQL.
#
#   tests/run.sh            # everything
#   tests/run.sh -E 'test(lease)'   # extra arguments go to cargo nextest
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/seedship-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

command -v cargo >/dev/null || { echo "error: cargo is not installed (https://rustup.rs)"; exit 1; }

# The end-to-end tests spawn the real binaries from the target directory.
echo "== building (target dir: $CARGO_TARGET_DIR)"
cargo build --workspace --bins --all-targets --locked

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "== cargo-nextest is missing; installing it (one time)"
  cargo install cargo-nextest --locked
fi

# Debian packages: ntfs-3g (mkntfs, the FUSE mount, ntfsls) for the shipping disks' NTFS volumes.
echo "== Debian packages"
deploy/debian/install.sh

# Azurite (the Azure Storage emulator) for the import tests, pinned by its lock file and
# installed once into a cache folder; the tests start it themselves.
echo "== Azurite"
SEEDSHIP_AZURITE_MAIN="$(deploy/azurite/install.sh)"
export SEEDSHIP_AZURITE_MAIN

# The Python tools the fidelity tests run (jsonschema, Microsoft's azure-mgmt-databox), pinned
# by deploy/python/requirements.txt, in a venv made once in the same cache.
echo "== Python tools"
SEEDSHIP_PYTHON="$(deploy/python/install.sh)"
export SEEDSHIP_PYTHON

# Each leg is bounded too, in case a process hangs outside any single test's limit.
echo "== running the test suite (the coordinator on SQLite; PostgreSQL's own tests and conformance run here too)"
timeout 1800 cargo nextest run --workspace --locked --profile ci "$@"

# The end-to-end suite again with every test cluster's coordinator on PostgreSQL (TLS, SCRAM).
# SEEDSHIP_TEST_LEGS=sqlite skips it.
if [ "${SEEDSHIP_TEST_LEGS:-sqlite,postgres}" != "sqlite" ]; then
  echo "== running the end-to-end suite again on PostgreSQL (SEEDSHIP_TEST_DATABASE=postgres)"
  # The whole workspace as built above (a package alone would be built again with other
  # features); only the end-to-end package unless the arguments choose.
  if [ $# -eq 0 ]; then set -- -E 'package(seedship-e2e)'; fi
  SEEDSHIP_TEST_DATABASE=postgres timeout 1800 cargo nextest run --workspace --locked --profile ci "$@"
fi
