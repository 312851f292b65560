#!/usr/bin/env bash
# The code-benchmark evidence of results/code.md: every method on HumanEval
# (164), the first 100 MBPP test problems (11-110) and the first 100 easy and
# medium LiveCodeBench release_v1 problems, with the consumer and high-perf
# rosters. Each run is resumable: re-running this script continues unfinished
# runs and skips finished items (items run in the set's order, so a partial
# run holds the first n). A full pass is days of CPU on 2 cores: spread it
# over sessions, and use SLICE to share a session between runs. Then
# $OUT/code.md is rebuilt from the runs (OUT as in scripts/lib/runs.sh,
# default results).
#
# Usage: scripts/bench-code.sh [RUN ...]   (default: all runs, in order)
#   RUN is one of humaneval-consumer humaneval-high-perf mbpp-consumer
#   mbpp-high-perf lcb-consumer lcb-high-perf, or `report` (tables only).
#   THREADS (default 2) sets the kernel threads: two runs side by side with
#   THREADS=1 each use a 2-core machine best. SLICE (e.g. 40m) stops each run
#   after that long; the items in flight continue from their finished calls on resume.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib/runs.sh
common=(--method all --rounds 2)

one() {
  case $1 in
    humaneval-consumer) run "$1" humaneval --config configs/consumer.toml ;;
    humaneval-high-perf) run "$1" humaneval --config configs/high-perf.toml ;;
    mbpp-consumer) run "$1" mbpp --config configs/consumer.toml --limit 100 ;;
    mbpp-high-perf) run "$1" mbpp --config configs/high-perf.toml --limit 100 ;;
    lcb-consumer) run "$1" lcb --difficulty easy,medium --config configs/consumer.toml --limit 100 ;;
    lcb-high-perf) run "$1" lcb --difficulty easy,medium --config configs/high-perf.toml --limit 100 ;;
    report) ;;
    *) echo "unknown run $1" >&2; exit 2 ;;
  esac
}

all=(humaneval-consumer humaneval-high-perf mbpp-consumer mbpp-high-perf lcb-consumer lcb-high-perf)
for r in "${@:-${all[@]}}"; do one "$r"; done
page code
