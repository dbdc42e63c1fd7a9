#!/usr/bin/env bash
# Builds seedship's container images from deploy/container/Containerfile: coordinator,
# source-agent and copy-agent, tagged PREFIX<name>:VERSION (default prefix "seedship/").
#
#   deploy/container/build.sh                      # compiles in the Rust image (needs a registry)
#   deploy/container/build.sh --offline --bin-dir target/release
#       # no container registry needed: the runtime base is made from Debian's packages with
#       # mmdebstrap, and the binaries are the ones in --bin-dir (built on this host)
#
# Options: --engine podman|docker (default: podman if present), --prefix P, --version V.
# Extra flags for every `build` go in SEEDSHIP_BUILD_FLAGS (e.g. "--isolation chroot" where
# the engine cannot start containers of its own). Prints the image names on stdout, one a line.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
engine=""
prefix="seedship/"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -1)"
offline=0
bin_dir=""
while (($#)); do
  case "$1" in
    --engine) engine="$2"; shift 2 ;;
    --prefix) prefix="$2"; shift 2 ;;
    --version) version="$2"; shift 2 ;;
    --offline) offline=1; shift ;;
    --bin-dir) bin_dir="$2"; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$engine" ]; then
  if command -v podman >/dev/null 2>&1; then engine=podman
  elif command -v docker >/dev/null 2>&1; then engine=docker
  else echo "error: neither podman nor docker is installed (apt-get install podman)" >&2; exit 1
  fi
fi
read -r -a extra <<< "${SEEDSHIP_BUILD_FLAGS:-}"
args=(-f "$ROOT/deploy/container/Containerfile")

if ((offline)); then
  [ -n "$bin_dir" ] || { echo "error: --offline needs --bin-dir (where coordinator, seedctl, source-agent and copy-agent are)" >&2; exit 2; }
  command -v mmdebstrap >/dev/null 2>&1 || { echo "error: --offline needs mmdebstrap (apt-get install mmdebstrap)" >&2; exit 1; }
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  # The runtime base: Debian bookworm with apt, from Debian's own packages.
  base="localhost/seedship-base:bookworm"
  if ! "$engine" image exists "$base" 2>/dev/null; then
    echo "== making $base with mmdebstrap" >&2
    # As Debian's slim images: no manuals, documentation (but copyrights) or translations.
    mmdebstrap --quiet --variant=apt \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
      --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
      --dpkgopt='path-exclude=/usr/share/info/*' \
      bookworm "$work/base.tar" http://deb.debian.org/debian >&2
    "$engine" import "$work/base.tar" "$base" >&2
    rm -f "$work/base.tar"
  fi
  # The binaries, without their debug sections, in an image of their own.
  mkdir -p "$work/bin/out"
  for b in coordinator seedctl source-agent copy-agent; do
    [ -x "$bin_dir/$b" ] || { echo "error: $bin_dir/$b is missing; build it first (cargo build --release)" >&2; exit 1; }
    objcopy --strip-debug "$bin_dir/$b" "$work/bin/out/$b"
  done
  printf 'FROM scratch\nCOPY out/ /out/\n' > "$work/bin/Containerfile"
  bins="localhost/seedship-binaries:$version"
  "$engine" build "${extra[@]}" -q -t "$bins" "$work/bin" >&2
  args+=(--build-arg "BASE_IMAGE=$base" --build-arg "BINARIES=$bins")
fi

for target in coordinator source-agent copy-agent; do
  tag="${prefix}${target}:${version}"
  echo "== building $tag" >&2
  "$engine" build "${extra[@]}" "${args[@]}" --target "$target" -t "$tag" "$ROOT" >&2
  echo "$tag"
done
