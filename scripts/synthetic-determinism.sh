#!/usr/bin/env bash
# Determinism hashes of nsed's synthetic models of the NSED paper's
# architectures and weight formats (`nsed models synth --like ID
# --scaled-down [--quant Q]`): one 16-token seed-bound generation each, on
# this CPU's best kernel path, written to tests/data/golden/determinism/synthetic.json.
# tests/it/kernel_paths.rs regenerates every model and requires these hashes
# on every kernel path the CPU has; a machine with other paths checks them
# there (the hashes do not depend on the CPU).
#
# usage: scripts/synthetic-determinism.sh [NSED_BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
nsed=${1:-target/release/nsed}
ids=(qwen3-8b gemma3-12b qwen3-30b-a3b llama3.1-8b gpt-oss-20b mistral-nemo-12b
     qwen3-8b:Q2_K qwen3-8b:Q3_K qwen3-8b:Q5_K qwen3-8b:IQ4_NL qwen3-8b:IQ4_XS)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
out=tests/data/golden/determinism/synthetic.json
{
  echo "{"
  echo "  \"generator\": \"scripts/synthetic-determinism.sh\","
  echo "  \"commit\": \"$(git rev-parse --short HEAD)\","
  echo "  \"cpu\": \"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)\","
  echo "  \"kernel\": \"${NSED_KERNEL:-the best path of this CPU}\","
  echo "  \"settings\": \"nsed --threads 2 determinism -n 16 --runs 1 --hashes-only (T 0.8, seed 42)\","
  echo "  \"models\": {"
  first=1
  for id in "${ids[@]}"; do
    like=${id%%:*}; quant=""; [[ $id == *:* ]] && quant=${id#*:}
    file="$tmp/${id//:/-}.gguf"
    args=(models synth --like "$like" --scaled-down -o "$file")
    [[ -n $quant ]] && args+=(--quant "$quant")
    "$nsed" "${args[@]}" >/dev/null
    json=$("$nsed" --threads 2 determinism --model "$file" -n 16 --runs 1 --hashes-only --json 2>/dev/null)
    hashes=$(python3 -c 'import json,sys; r=json.load(sys.stdin)["runs"][0]; assert r["identical_logits_share"]==1.0; print(r["logits_sha256"], r["output_sha256"])' <<<"$json")
    read -r logits output <<<"$hashes"
    [[ $first == 1 ]] || echo ","
    first=0
    printf '    "%s": {"logits_sha256": "%s", "output_sha256": "%s"}' "$id" "$logits" "$output"
    echo "$id $logits" >&2
  done
  echo
  echo "  }"
  echo "}"
} > "$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $out" >&2
