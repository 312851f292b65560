#!/usr/bin/env bash
# The determinism study (EigenAI-style) and the verification cost, for the
# four models at 2 threads (~20 minutes).
#   1. `nsed determinism --runs R --threads 1,2` per model (R = 10, 5 for
#      qwen2.5-coder-1.5b) into $OUT/determinism/<model>.json, then
#      $OUT/determinism.md and .csv (a model whose report exists is skipped:
#      delete it to measure again);
#   2. verification cost vs generation (N = 64, 256, 1024 output tokens),
#      printed as a markdown table (results/verify.md quotes it). COST=0 skips it.
# usage: scripts/bench-verify.sh [MODEL ...]
# env:   RUNS (overrides R), TOKENS (tokens per determinism run, default 64),
#        OUT and NSED_BIN as in scripts/lib/runs.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib/runs.sh
models=("$@")
[[ ${#models[@]} -gt 0 ]] || models=(smollm2-135m gemma3-270m qwen2.5-coder-0.5b qwen2.5-coder-1.5b)

mkdir -p "$OUT/determinism"
for m in "${models[@]}"; do
  report="$OUT/determinism/$m.json"
  [[ -f $report ]] && continue
  runs=10; [[ $m == qwen2.5-coder-1.5b ]] && runs=5
  echo "bench-verify: determinism of $m" >&2
  "$nsed" determinism --model "$m" --runs "${RUNS:-$runs}" --max-tokens "${TOKENS:-64}" \
    --threads 1,2 --json > "$report.part"
  mv "$report.part" "$report"
done
page determinism

[[ ${COST:-1} == 0 ]] && exit 0
echo
echo "commit $(git rev-parse --short HEAD), $(date -u +%F), $(nproc) cores"
echo
echo "| model | N | generate s | verify s | verify / generate |"
echo "|---|---|---|---|---|"
for m in "${models[@]}"; do
  "$nsed" --threads 2 perf --model "$m" --verify-cost 64,256,1024 --json |
    python3 -c 'import json, sys
d = json.load(sys.stdin)
for r in d["rows"]:
    print("| %s | %d | %.2f | %.2f | %.3f |" % (d["model"], r["n"], r["generate_seconds"], r["verify_seconds"], r["ratio"]))'
done
