#!/usr/bin/env bash
# The deliberation evidence of results/deliberation.md: every method on GSM8K
# items 0-99 and the first 100 integer-answer MATH-500 items with the consumer
# and high-perf rosters, and all 30 AIME 2025 problems. Each run is resumable:
# re-running this script continues unfinished runs and skips finished items,
# so it can be spread over several sessions (a full pass is tens of hours on a
# 2-core CPU; THREADS and SLICE as in scripts/lib/runs.sh). Then
# $OUT/deliberation.md (the NSED table) is rebuilt from the runs (OUT as in
# scripts/lib/runs.sh, default results).
#
# Usage: scripts/bench-deliberation.sh [RUN ...]   (default: all runs, in order)
#   RUN is one of gsm8k-consumer gsm8k-high-perf math500-consumer
#   math500-high-perf aime25-consumer aime25-high-perf, or `report` (tables only).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib/runs.sh
common=(--method all --rounds 2)

one() {
  case $1 in
    gsm8k-consumer) run "$1" gsm8k --config configs/consumer.toml --limit 100 ;;
    gsm8k-high-perf) run "$1" gsm8k --config configs/high-perf.toml --limit 100 ;;
    math500-consumer) run "$1" math500 --integer-only --config configs/consumer.toml --limit 100 ;;
    math500-high-perf) run "$1" math500 --integer-only --config configs/high-perf.toml --limit 100 ;;
    aime25-consumer) run "$1" aime25 --config configs/consumer.toml ;;
    aime25-high-perf) run "$1" aime25 --config configs/high-perf.toml ;;
    report) ;;
    *) echo "unknown run $1" >&2; exit 2 ;;
  esac
}

all=(gsm8k-consumer gsm8k-high-perf math500-consumer math500-high-perf aime25-consumer aime25-high-perf)
for r in "${@:-${all[@]}}"; do one "$r"; done
page deliberation
