#!/usr/bin/env bash
# Setup and the main job on a fresh machine: build nsed, fetch the four models,
# list them, and run each one on a GSM8K-style question (greedy, chat template),
# then measure its speed.
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
for model in smollm2-135m gemma3-270m qwen2.5-coder-0.5b qwen2.5-coder-1.5b; do
  "$nsed" --threads 2 perf --model "$model"
done
