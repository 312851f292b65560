#!/usr/bin/env bash
# Regenerate the measurements of results/verify.md: verification cost vs
# generation (N = 64, 256, 1024 output tokens) and the determinism study, for
# the four models, at 2 threads. Prints Markdown tables; takes ~20 minutes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release
nsed=target/release/nsed
models=(smollm2-135m gemma3-270m qwen2.5-coder-0.5b qwen2.5-coder-1.5b)
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
for m in "${models[@]}"; do
  runs=10; [[ $m == qwen2.5-coder-1.5b ]] && runs=5
  echo; echo "determinism: $m"; echo
  "$nsed" determinism --model "$m" --runs "$runs" --threads 1,2
done
