#!/usr/bin/env bash
# The code-benchmark evidence of results/code.md: every method on HumanEval
# (164), the first 100 MBPP test problems (11-110) and the first 100 easy and
# medium LiveCodeBench release_v1 problems, with the consumer and high-perf
# rosters. Each run is resumable: re-running this script continues unfinished
# runs and skips finished items (items run in the set's order, so a partial
# run holds the first n). A full pass is days of CPU on 2 cores: spread it
# over sessions, and use SLICE to share a session between runs. Then
# results/code.md is regenerated from the run directories.
#
# Usage: scripts/bench-code.sh [RUN ...]   (default: all runs, in order)
#   RUN is one of humaneval-consumer humaneval-high-perf mbpp-consumer
#   mbpp-high-perf lcb-consumer lcb-high-perf, or `report` (tables only).
#   THREADS (default 2) sets the kernel threads: two runs side by side with
#   THREADS=1 each use a 2-core machine best. SLICE (e.g. 40m) stops each run
#   after that long; the item in flight is redone on resume.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export NSED_DATA_DIR="${NSED_DATA_DIR:-../shared/datasets}"
nsed=target/release/nsed
common=(--method all --rounds 2)

run() {
  local name=$1; shift
  local out="results/runs/$name"
  local limit=()
  [ -n "${SLICE:-}" ] && limit=(timeout --signal=INT --kill-after=30s "$SLICE")
  local rc=0
  "${limit[@]}" "$nsed" --threads "${THREADS:-2}" bench "$@" "${common[@]}" --out "$out" \
    $( [ -f "$out/meta.json" ] && echo --resume ) || rc=$?
  # 124: the slice ran out; the run resumes next time.
  case $rc in 0|124) ;; *) exit "$rc" ;; esac
}

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
[ -x "$nsed" ] || cargo build --release
for r in "${@:-${all[@]}}"; do one "$r"; done

# Regenerate the summaries of every run present (partial runs included: each
# table gives its n), then the results page.
{
  cat results/code.intro.md
  for r in "${all[@]}"; do
    [ -f "results/runs/$r/meta.json" ] || continue
    echo
    "$nsed" report bench "results/runs/$r" | sed 's/^# /## /'
  done
} > results/code.md
echo "wrote results/code.md"
