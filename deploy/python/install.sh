#!/usr/bin/env bash
# Makes a Python virtual environment with the tools of requirements.txt (pinned), in a cache
# folder outside the clone, once; prints the path of its python.
#
#   deploy/python/install.sh            # -> /home/you/.cache/seedship/python-<hash>/bin/python
#
# Safe to run from several processes at once (a lock serialises the install).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
command -v python3 >/dev/null || { echo "error: python3 is not installed (apt-get install python3 python3-venv)" >&2; exit 1; }
hash=$(cat "$here/requirements.txt" | sha256sum | cut -c1-12)
dir="${SEEDSHIP_CACHE:-$HOME/.cache/seedship}/python-$hash"
mkdir -p "$(dirname "$dir")"
(
  flock 9
  if [ ! -f "$dir/.installed" ]; then
    echo "== making a Python environment in $dir (one time)" >&2
    rm -rf "$dir"
    if ! python3 -m venv "$dir" >&2 2>/dev/null; then
      echo "== python3 cannot make a venv; installing python3-venv" >&2
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
        rm -rf "$dir"
        python3 -m venv "$dir" >&2
      else
        echo "error: install python3-venv (apt-get install python3-venv), then run this again" >&2
        exit 1
      fi
    fi
    "$dir/bin/pip" install --quiet --disable-pip-version-check --no-input -r "$here/requirements.txt" >&2
    touch "$dir/.installed"
  fi
) 9>"$dir.lock"
echo "$dir/bin/python"
