#!/usr/bin/env bash
# The deliberation evidence of results/deliberation.md, at the sizes of the
# deliberation-evidence issue: GSM8K items 0-299 with the high-perf and
# homogeneous rosters and 0-199 with the consumer roster; the first 200
# integer-answer MATH-500 items (high-perf); all 30 AIME 2025 and 30 AIME
# 2024 problems (high-perf). The methods of the headline: NSED, each model
# alone, plurality, the one-round votes (free: NSED's round 1) and
# self-consistency with k = 16 samples, so that `nsed report budgets` can
# compare it with NSED at matched tokens (k = 1, 2, 4, 8, 16 from the same
# samples). The protocol is the one chosen on the dev pool
# (scripts/bench-dev.sh). Each run is resumable: re-running this script
# continues unfinished runs and skips finished items, so it can be spread
# over several sessions (THREADS, SLICE, PARALLEL, NSED_BIN as in
# scripts/lib/runs.sh). A run is resumed by any build whose stamp (prompts,
# parsing, the models' numerics) equals the run's, on any kernel path; a run
# made before stamps only by the binary that started it (NSED_BIN=~/.cache/
# nsed/bin/nsed-<commit>, NSED_KERNEL as it recorded), until
# scripts/stamp-legacy-run.sh has replayed one of its items with the current
# build and stamped it. Then $OUT/deliberation.md is rebuilt.
#
# Usage: scripts/bench-deliberation.sh [RUN ...]   (default: all runs, in order)
#   RUN is one of gsm8k-high-perf gsm8k-homogeneous gsm8k-consumer
#   math500-high-perf aime25-high-perf aime24-high-perf, or `report` (tables only).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib/runs.sh
common=(--method nsed,single,plurality,qv,weighted,self-consistency --sc-k 16)

one() {
  case $1 in
    gsm8k-high-perf) run "$1" gsm8k --config configs/high-perf.toml --limit 300 ;;
    gsm8k-homogeneous) run "$1" gsm8k --config configs/homogeneous.toml --limit 300 ;;
    gsm8k-consumer) run "$1" gsm8k --config configs/consumer.toml --limit 200 ;;
    math500-high-perf) run "$1" math500 --integer-only --config configs/high-perf.toml --limit 200 ;;
    aime25-high-perf) run "$1" aime25 --config configs/high-perf.toml ;;
    aime24-high-perf) run "$1" aime24 --config configs/high-perf.toml ;;
    report) ;;
    *) echo "unknown run $1" >&2; exit 2 ;;
  esac
}

all=(gsm8k-high-perf gsm8k-homogeneous gsm8k-consumer math500-high-perf aime25-high-perf aime24-high-perf)
for r in "${@:-${all[@]}}"; do one "$r"; done
page deliberation
