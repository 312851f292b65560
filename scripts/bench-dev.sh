#!/usr/bin/env bash
# The dev pool of the deliberation evidence (results/deliberation.md): runs
# that choose the protocol and measure the judges, never reported as results.
# Dev items: GSM8K test items 1000-1318 (`--offset 1000`; the reported GSM8K
# runs take items from 0) and AIME 1983-2024 (`aime`, likely in every model's
# pre-training data). Round 1 only (`--method qv`, with the single models and
# plurality it shares calls with), in both evaluation modes, so that
# `nsed report judges` and `nsed report protocols` see every judge on the same
# proposals; and full NSED (2 rounds) on the first 30 of those items, for the
# revision ablation (round 2 shows each agent the others' answers and the
# vote: `nsed report budgets` compares NSED after 1 and 2 rounds on the same
# items). Resumable like every run (scripts/lib/runs.sh: OUT, NSED_BIN,
# THREADS, SLICE, PARALLEL); LIMIT (default 60) items per run.
#
# Usage: scripts/bench-dev.sh [RUN ...]   (default: all, in order), RUN one of
#   gsm8k-high-perf gsm8k-high-perf-logprob gsm8k-consumer aime-high-perf
#   gsm8k-high-perf-nsed report
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib/runs.sh
common=(--method qv,single,plurality)
limit=(--limit "${LIMIT:-60}")

one() {
  case $1 in
    gsm8k-high-perf) run "dev/$1" gsm8k --offset 1000 "${limit[@]}" --config configs/high-perf.toml ;;
    gsm8k-high-perf-logprob)
      run "dev/$1" gsm8k --offset 1000 "${limit[@]}" --config configs/high-perf.toml --eval-mode logprob ;;
    gsm8k-consumer) run "dev/$1" gsm8k --offset 1000 "${limit[@]}" --config configs/consumer.toml ;;
    aime-high-perf) run "dev/$1" aime "${limit[@]}" --config configs/high-perf.toml ;;
    gsm8k-high-perf-nsed)
      common=(--method nsed,single,plurality --rounds 2)
      run "dev/$1" gsm8k --offset 1000 --limit 30 --config configs/high-perf.toml ;;
    report) ;;
    *) echo "unknown run $1" >&2; exit 2 ;;
  esac
}

all=(gsm8k-high-perf gsm8k-high-perf-logprob gsm8k-consumer aime-high-perf gsm8k-high-perf-nsed)
for r in "${@:-${all[@]}}"; do one "$r"; done
# The deliberation page shows the dev pool's judge table and protocol
# ablations apart from the results (figures in $OUT/deliberation/).
page deliberation
