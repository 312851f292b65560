#!/usr/bin/env bash
# Recompute the sha256 of every data file and compare it with the value its
# folder's PROVENANCE.md records. Exit 1 on any mismatch.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../datasets"
status=0
for prov in */PROVENANCE.md; do
  dir=$(dirname "$prov")
  want=$(grep -o '^- \*\*sha256:\*\* [0-9a-f]\{64\}' "$prov" | awk '{print $3}')
  file=$(head -1 "$prov" | grep -o '`[^`]*`$' | tr -d '`')
  got=$(sha256sum "$dir/$file" | cut -d' ' -f1)
  if [ "$got" = "$want" ]; then echo "ok   $dir/$file"; else echo "FAIL $dir/$file: $got != $want" >&2; status=1; fi
done
exit $status
