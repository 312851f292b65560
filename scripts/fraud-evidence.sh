#!/usr/bin/env bash
# The fraud-detection evidence of results/fraud.md: honest Q8_0 vs int4 on
# smollm2-135m and qwen2.5-coder-0.5b (200 honest + 100 fraud samples each),
# and on qwen2.5-coder-1.5b as the claimed model: int4, substitution by
# qwen2.5-coder-0.5b and the prefill attack with it. Each run is resumable:
# re-running continues unfinished runs (hours on a 2-core CPU; spread it over
# sessions). Then every report, figure and economics table is regenerated and
# results/fraud.md assembled.
#
# Usage: scripts/fraud-evidence.sh [RUN ...]   (default: all runs, in order)
#   RUN is one of smollm2-135m qwen2.5-coder-0.5b qwen2.5-coder-1.5b, or
#   `report` (tables only). THREADS (default 2) sets the kernel threads; two
#   runs side by side with THREADS=1 each use a 2-core machine best.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export NSED_DATA_DIR="${NSED_DATA_DIR:-../shared/datasets}"
nsed=target/release/nsed
counts=(--samples-honest "${HONEST:-200}" --samples-fraud "${FRAUD:-100}")

run() {
  local model=$1; shift
  local out="results/fraud/runs/$model"
  "$nsed" --threads "${THREADS:-2}" simulate-fraud --model "$model" "$@" "${counts[@]}" --out "$out" \
    $( [ -f "$out/meta.json" ] && echo --resume )
}

one() {
  case $1 in
    smollm2-135m|qwen2.5-coder-0.5b) run "$1" --quant int4 ;;
    qwen2.5-coder-1.5b) run "$1" --quant int4 --substitute qwen2.5-coder-0.5b --prefill qwen2.5-coder-0.5b ;;
    report) ;;
    *) echo "unknown run $1" >&2; exit 2 ;;
  esac
}

all=(smollm2-135m qwen2.5-coder-0.5b qwen2.5-coder-1.5b)
[ -x "$nsed" ] || cargo build --release
for r in "${@:-${all[@]}}"; do one "$r"; done

{
  cat results/fraud.intro.md
  for r in "${all[@]}"; do
    dir="results/fraud/runs/$r"
    [ -f "$dir/meta.json" ] || continue
    echo
    "$nsed" report fraud "$dir" | sed 's/^# /## /; s/^## \([a-z0-9]\)/### \1/'
    if "$nsed" simulate-fraud --economics --out "$dir" > /dev/null 2>&1; then
      echo
      sed 's/^# /### /' "$dir/economics.md"
    fi
  done
} > results/fraud.md
echo "wrote results/fraud.md"
