#!/usr/bin/env bash
# Checks a seedship evidence bundle with standard tools only (tar, openssl, sha256sum):
#   deploy/evidence/verify.sh evidence-JOB.tar [your-ca.crt]
# 1. the coordinator's certificate was issued by the CA (the bundle's ca.crt, or yours);
# 2. SHA256SUMS carries the coordinator's signature;
# 3. every file matches its line in SHA256SUMS.
# Exits 0 and prints "evidence verified" only when all three hold.
set -euo pipefail
archive=${1:?usage: verify.sh evidence-JOB.tar [ca.crt]}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -xf "$archive" -C "$work"
dir=$(find "$work" -mindepth 1 -maxdepth 1 -type d | head -1)
[ -n "$dir" ] || { echo "error: $archive holds no bundle folder" >&2; exit 1; }
ca=${2:-$dir/ca.crt}
cd "$dir"
openssl verify -CAfile "$ca" coordinator.crt >/dev/null || { echo "error: coordinator.crt was not issued by $ca" >&2; exit 1; }
openssl x509 -in coordinator.crt -pubkey -noout > "$work/coordinator.pub"
openssl dgst -sha256 -verify "$work/coordinator.pub" -signature SHA256SUMS.sig SHA256SUMS >/dev/null \
  || { echo "error: SHA256SUMS does not carry the coordinator's signature" >&2; exit 1; }
sha256sum --quiet -c SHA256SUMS || { echo "error: a file differs from SHA256SUMS" >&2; exit 1; }
echo "evidence verified: $(wc -l < SHA256SUMS) files, signed by $(openssl x509 -in coordinator.crt -noout -subject)"
