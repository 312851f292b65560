#!/usr/bin/env bash
# Regenerate every results table from scratch: run the experiments, then
# write <out>/<table>.md and <table>.csv (figures beside the runs), each page
# stamped with this command, the commit, the date, the CPU and the sha256 of
# the models and data (<out>/stamps/<table>.json).
#
# usage: scripts/reproduce.sh --scale full|ci|smoke [--only TABLES] [--out DIR]
#   --scale full  the published tables, into results/ (and the index page
#                 results/README.md). Days of CPU on 2 cores: every run is resumable, so
#                 re-running continues where it stopped (SLICE=40m bounds each
#                 bench run per invocation; see scripts/lib/runs.sh).
#   --scale ci    a reduced version of every table in ~20 minutes, into
#                 target/reproduce-ci (the CI-scale figures: every table's
#                 floors hold; run it by hand).
#   --scale smoke every table's pipeline at the smallest size that runs each
#                 stage (a few minutes; the figures mean nothing), into
#                 target/reproduce-smoke: tests/it/reproduce.rs runs it on
#                 synthetic models (NSED_REGISTRY, NSED_MODELS) and checks
#                 the pages, stamps and rebuild.
#   --only        comma-separated: deliberation, code, fraud, determinism,
#                 perf, federation (default: all, in that order).
#   --out         the results directory (default by scale, as above).
# env: NSED_BIN (default target/release/nsed, built if missing), THREADS,
#      NSED_DATA_DIR (default datasets/). Rebuild the pages from the
#      data alone with `nsed report tables --results DIR`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command_line="scripts/reproduce.sh $*"
usage() { sed -n '7,24p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }

scale="" only="deliberation,code,fraud,determinism,perf,federation" out=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --scale) scale=${2:-}; shift ;;
    --only) only=${2:-}; shift ;;
    --out) out=${2:-}; shift ;;
    -h|--help) usage 0 ;;
    *) echo "reproduce: unknown argument $1" >&2; usage >&2 ;;
  esac
  shift
done
case $scale in
  full) out=${out:-results} ;;
  ci) out=${out:-target/reproduce-ci} ;;
  smoke) out=${out:-target/reproduce-smoke} ;;
  *) echo "reproduce: --scale full, ci or smoke" >&2; usage >&2 ;;
esac
IFS=, read -r -a tables <<< "$only"
for t in "${tables[@]}"; do
  case $t in
    deliberation|code|fraud|determinism|perf|federation) ;;
    *) echo "reproduce: unknown table $t (deliberation, code, fraud, determinism, perf, federation)" >&2; exit 2 ;;
  esac
done
export OUT=$out
mkdir -p "$OUT"
source scripts/lib/runs.sh

consumer=smollm2-135m,gemma3-270m,qwen2.5-coder-0.5b
all_models=$consumer,qwen2.5-coder-1.5b

# The experiments of one table at this scale; `uses MODELS DATASETS` names
# what the stamp records.
uses() { models=$1 data=$2; }
experiments() {
  case $scale:$1 in
    full:deliberation)
      scripts/bench-deliberation.sh >&2
      uses $all_models gsm8k,math500,aime25 ;;
    ci:deliberation)
      # 6 GSM8K items, consumer roster: NSED (2 rounds) against each model
      # alone and the plurality vote (the singles and plurality reuse NSED's
      # round-1 proposals, so they cost nothing more).
      common=(--method nsed,single,plurality --rounds 2 --max-tokens 192)
      run gsm8k-consumer gsm8k --config configs/consumer.toml --limit 6
      uses $consumer gsm8k ;;
    smoke:deliberation)
      # 2 GSM8K items, two short rounds: every stage of the page (singles,
      # plurality, budgets, judges, protocols), not its figures.
      common=(--method nsed,single,plurality --rounds 2 --max-tokens 24 --eval-max-tokens 16)
      run gsm8k-consumer gsm8k --config configs/consumer.toml --limit 2
      uses $consumer gsm8k ;;
    full:code)
      scripts/bench-code.sh >&2
      uses $all_models humaneval,mbpp,lcb ;;
    ci:code)
      # 3 HumanEval items in the sandbox: one round of proposals and votes
      # (NSED halts after it) against each model alone.
      common=(--method nsed,single --rounds 1 --max-tokens 192)
      run humaneval-consumer humaneval --config configs/consumer.toml --limit 3
      uses $consumer humaneval ;;
    smoke:code)
      common=(--method nsed,single --rounds 1 --max-tokens 32 --eval-max-tokens 16)
      run humaneval-consumer humaneval --config configs/consumer.toml --limit 1
      uses $consumer humaneval ;;
    full:fraud)
      scripts/fraud-evidence.sh >&2
      uses $all_models gsm8k,math500,lcb ;;
    ci:fraud)
      HONEST=30 FRAUD=30 MAX_TOKENS=96 scripts/fraud-evidence.sh smollm2-135m >&2
      uses smollm2-135m gsm8k,math500,lcb ;;
    smoke:fraud)
      # 12 prompts: the fewest for the held-out protocol and the economics.
      HONEST=12 FRAUD=12 MAX_TOKENS=16 scripts/fraud-evidence.sh smollm2-135m >&2
      uses smollm2-135m gsm8k,math500,lcb ;;
    full:determinism)
      COST=0 scripts/bench-verify.sh >&2
      uses $all_models - ;;
    ci:determinism)
      COST=0 RUNS=20 TOKENS=32 scripts/bench-verify.sh smollm2-135m >&2
      uses smollm2-135m - ;;
    smoke:determinism)
      COST=0 RUNS=3 TOKENS=8 scripts/bench-verify.sh smollm2-135m >&2
      uses smollm2-135m - ;;
    full:perf)
      # One row per kernel path this CPU has: the best against a native
      # llama.cpp, AVX2 against an AVX2-only llama.cpp (like for like on a
      # machine with AVX-512), and the portable path against native.
      local have best pairs
      have="$("$nsed" models inspect smollm2-135m | sed -n 's/^kernel: [a-z0-9]* (this CPU has: \([a-z0-9, ]*\);.*/\1/p')"
      best="${have##*, }" pairs="$best:native"
      [[ $best != avx2 && $have == *avx2* ]] && pairs+=" avx2:avx2"
      [[ $best != portable ]] && pairs+=" portable:native"
      PAIRS="${PAIRS:-$pairs}" scripts/bench-compare.sh >&2
      uses $all_models - ;;
    ci:perf|smoke:perf)
      # nsed alone: building llama.cpp would take longer than the whole table.
      LLAMACPP=0 ROUNDS=1 REPEATS=1 scripts/bench-compare.sh smollm2-135m >&2
      uses smollm2-135m - ;;
    full:federation)
      local ns=(); [[ $(id -u) == 0 ]] && command -v ip >/dev/null && ns=(--netns)
      scripts/federation-demo.sh "${ns[@]}" --items 5 >&2
      uses $consumer gsm8k ;;
    ci:federation)
      scripts/federation-demo.sh --items 1 --max-tokens 96 --pings 200 >&2
      uses $consumer gsm8k ;;
    smoke:federation)
      scripts/federation-demo.sh --items 1 --max-tokens 24 --eval-max-tokens 16 --pings 20 >&2
      uses $consumer gsm8k ;;
  esac
}

for t in "${tables[@]}"; do
  started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  echo "reproduce: $t ($scale scale) → $OUT" >&2
  experiments "$t"
  [[ $data == - ]] && data=""
  "$nsed" report stamp --results "$OUT" --table "$t" --scale "$scale" \
    --command "$command_line" --started "$started" --models "$models" \
    ${data:+--datasets "$data"}
  "$nsed" report tables --results "$OUT" --only "$t"
done
# Every page again: the NSED table of the deliberation page also holds the
# code sets, so a page can depend on another table's runs. An index page
# $OUT/README.md (results/README.md) gets every table's summary, and the
# repository's README.md the findings when OUT is its results/.
findings=()
[ "$OUT" = results ] && findings=(--findings-into README.md)
"$nsed" report tables --results "$OUT" "${findings[@]}"
echo "reproduce: done; pages in $OUT/" >&2
