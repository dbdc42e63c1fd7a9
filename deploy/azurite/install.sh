#!/usr/bin/env bash
# Installs Azurite (the Azure Storage emulator), pinned by package-lock.json here, into a cache
# folder outside the clone, once; prints the path of its blob service's main.js.
#
#   deploy/azurite/install.sh            # -> /home/you/.cache/seedship/azurite-<hash>/node_modules/azurite/dist/src/blob/main.js
#
# Safe to run from several processes at once (a lock serialises the install).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
command -v node >/dev/null || { echo "error: Node.js is not installed (Azurite needs it: https://nodejs.org)" >&2; exit 1; }
command -v npm >/dev/null || { echo "error: npm is not installed (it comes with Node.js)" >&2; exit 1; }
hash=$(cat "$here/package.json" "$here/package-lock.json" | sha256sum | cut -c1-12)
dir="${SEEDSHIP_CACHE:-$HOME/.cache/seedship}/azurite-$hash"
main="$dir/node_modules/azurite/dist/src/blob/main.js"
mkdir -p "$dir"
(
  flock 9
  if [ ! -f "$dir/.installed" ]; then
    echo "== installing Azurite into $dir (one time, about 30 s)" >&2
    cp "$here/package.json" "$here/package-lock.json" "$dir/"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
    [ -f "$main" ] || { echo "error: Azurite installed, but $main is missing" >&2; exit 1; }
    touch "$dir/.installed"
  fi
) 9>"$dir.lock"
echo "$main"
