#!/usr/bin/env bash
# The fraud-detection evidence of results/fraud.md: honest Q8_0 vs int4 on
# smollm2-135m and qwen2.5-coder-0.5b (200 honest + 100 fraud samples each),
# and on qwen2.5-coder-1.5b as the claimed model: int4, substitution by
# qwen2.5-coder-0.5b and the prefill attack with it. Each run is resumable:
# re-running continues unfinished runs (hours on a 2-core CPU; spread it over
# sessions). Then every run's report, figures and economics are regenerated
# and $OUT/fraud.md rebuilt.
#
# Usage: scripts/fraud-evidence.sh [RUN ...]   (default: all runs, in order)
#   RUN is one of smollm2-135m qwen2.5-coder-0.5b qwen2.5-coder-0.5b-equal-temp
#   (the equal-temperature control) qwen2.5-coder-1.5b
#   qwen2.5-coder-1.5b-bitexact (prefill vs a bit-exact validator), or
#   `report` (tables only). HONEST / FRAUD (default 200 / 100) set the sample
#   counts, MAX_TOKENS the output length (default: nsed's); OUT, NSED_BIN
#   and THREADS as in scripts/lib/runs.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib/runs.sh
counts=(--samples-honest "${HONEST:-200}" --samples-fraud "${FRAUD:-100}")
[ -n "${MAX_TOKENS:-}" ] && counts+=(--max-tokens "$MAX_TOKENS")

fraud_run() {
  local model=$1; shift
  fraud_run_in "$model" "$model" "$@"
}

# fraud_run_in DIR MODEL ARGS...: a run of MODEL in $OUT/fraud/runs/DIR.
fraud_run_in() {
  local dir=$1 model=$2; shift 2
  local out="$OUT/fraud/runs/$dir"
  "$nsed" --threads "${THREADS:-2}" simulate-fraud --model "$model" "$@" "${counts[@]}" --out "$out" \
    $( [ -f "$out/meta.json" ] && echo --resume )
}

one() {
  case $1 in
    smollm2-135m|qwen2.5-coder-0.5b) fraud_run "$1" --quant int4 ;;
    qwen2.5-coder-1.5b) fraud_run "$1" --quant int4 --substitute qwen2.5-coder-0.5b --prefill qwen2.5-coder-0.5b ;;
    # The temperature control: the cheater samples at the honest
    # temperature (Gonka's setting, 0.99 vs 0.7, is the run above).
    qwen2.5-coder-0.5b-equal-temp) fraud_run_in "$1" qwen2.5-coder-0.5b --quant int4 --temp-fraud 0.99 ;;
    # The seed check at bit-exact replay: the validator runs the honest
    # executor's own Q8_0 weights (the run above replays at f32).
    qwen2.5-coder-1.5b-bitexact) fraud_run_in "$1" qwen2.5-coder-1.5b --validator q8 --prefill qwen2.5-coder-0.5b ;;
    report) ;;
    *) echo "unknown run $1" >&2; exit 2 ;;
  esac
}

all=(smollm2-135m qwen2.5-coder-0.5b qwen2.5-coder-0.5b-equal-temp qwen2.5-coder-1.5b qwen2.5-coder-1.5b-bitexact)
for r in "${@:-${all[@]}}"; do one "$r"; done

for dir in "$OUT"/fraud/runs/*/; do
  [ -f "$dir/meta.json" ] || continue
  # The economics need held-out rates (≥ 10 prompts); a younger run has none.
  # At bit-exact replay the seed check is the detector that sees prefill.
  detector=gonka_similarity
  case $dir in *-bitexact/) detector=seed_mismatch ;; esac
  "$nsed" simulate-fraud --economics --detector "$detector" --out "$dir" > /dev/null 2>&1 || true
done
page fraud
