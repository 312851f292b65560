#!/usr/bin/env bash
# Setup and the main job on a fresh machine: build nsed, fetch the four models,
# list them, run each one on a GSM8K-style question (greedy, chat template),
# deliberate on it with the consumer trio and bench every method on 3 GSM8K
# items, verify an inference artifact (honest, then Gonka's INT4 fixtures), and
# measure speed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release
scripts/fetch-models.sh
nsed=target/release/nsed
"$nsed" models list
question="Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May? Reason step by step, then give the final answer in \\boxed{}."
for model in qwen2.5-coder-1.5b qwen2.5-coder-0.5b smollm2-135m; do
  echo "=== $model"
  "$nsed" --threads 2 generate --model "$model" --prompt "$question" --max-tokens 320
done
echo "=== gemma3-270m (base model: plain-text prompt)"
"$nsed" --threads 2 generate --model gemma3-270m --raw --max-tokens 60 --stop $'\n\n' \
  --prompt $'Q: Tom has 3 apples and buys 4 more. How many apples does he have?\nA: 3 + 4 = 7. The answer is 7.\n\nQ: '"${question%% Reason*}"$'\nA:'
echo "=== NSED deliberation: consumer trio (smollm2-135m, gemma3-270m, qwen2.5-coder-0.5b)"
"$nsed" --threads 2 deliberate --config configs/consumer.toml --kind numeric --max-tokens 320 "${question%% Reason*}"
echo "=== every method on GSM8K items 0-2 (results in a temporary run directory)"
"$nsed" --threads 2 bench gsm8k --config configs/consumer.toml \
  --method all --limit 3 --rounds 2 --max-tokens 320 --out "$(mktemp -d)/gsm8k-consumer"
echo "=== verification: an artifact with top-5 logprobs and activation proofs, then its check"
artifact="$(mktemp -d)/run.json"
"$nsed" --threads 2 generate --model qwen2.5-coder-0.5b --prompt "$question" --max-tokens 96 \
  --temperature 0.8 --seed 7 --inference-id demo-1 --top-logprobs 5 --proof --artifact "$artifact" >/dev/null
"$nsed" --threads 2 verify --artifact "$artifact" --replay
echo "=== Gonka's real fixtures: QwQ-32B INT4 executor vs FP8 validator (exit 1 = fraud)"
"$nsed" verify --artifact tests/data/gonka/inference_response_int4.json \
  --against tests/data/gonka/validation_response_fp8.json || echo "(exit $?: fraud detected)"
for model in smollm2-135m gemma3-270m qwen2.5-coder-0.5b qwen2.5-coder-1.5b; do
  "$nsed" --threads 2 perf --model "$model"
done
