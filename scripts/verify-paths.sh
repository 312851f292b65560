#!/usr/bin/env bash
# Which CPU path can check an artifact made on which: for each downloaded
# roster model, a sampled artifact (64 tokens, T = 0.8, seed 7, top-5) is
# made on the host path, the quantized candle path (the code of
# `--device cuda`) and the f32 candle path (`cuda/f32`), then verified with
# `nsed verify` as it picks the path itself, quantized candle artifacts also
# on the quantized candle path, and f32 artifacts also forced onto the host
# path. Prints the table of docs/gpu.md ("Which CPU path
# checks a GPU artifact"); runs in about 3 minutes on 2 cores.
#
#   scripts/verify-paths.sh [OUT]        # default OUT: /tmp/verify-paths
#   NSED_BIN=path/to/nsed                # default: target/release/nsed
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:-/tmp/verify-paths}
bin=${NSED_BIN:-target/release/nsed}
[ -x "$bin" ] || { echo "error: no nsed at $bin: cargo build --release, or set NSED_BIN" >&2; exit 2; }
mkdir -p "$out"
prompt="Write a short story about a lighthouse keeper who finds a message in a bottle."
for model in smollm2-135m gemma3-270m qwen2.5-coder-0.5b qwen2.5-coder-1.5b; do
  for device in cpu cpu-candle cpu-candle/f32; do
    tag=$model.${device//\//_}
    "$bin" --device "$device" generate -m "$model" -p "$prompt" --temperature 0.8 --seed 7 \
      --inference-id verify-paths -n 64 --top-logprobs 5 --artifact "$out/$tag.json" > /dev/null
    "$bin" verify --artifact "$out/$tag.json" --json > "$out/$tag.auto.json" 2>/dev/null || true
    case $device in
      # The same path replaying itself: is the quantized candle path's
      # prefill the same as its decode?
      cpu-candle) "$bin" --device cpu-candle verify --artifact "$out/$tag.json" --json > "$out/$tag.self.json" || true ;;
      cpu-candle/f32) "$bin" --device cpu verify --artifact "$out/$tag.json" --json > "$out/$tag.host.json" || true ;;
    esac
  done
  echo "verify-paths: $model done" >&2
done
python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
made = {"cpu": "host", "cpu-candle": "candle, quantized", "cpu-candle_f32": "candle, f32"}
print("| model | made on | replayed on | verdict | seed mismatches / n | gonka_distance2 (≤ 0.0357) | stage2_mae (≤ 0.25) | argmax agreement |")
print("|---|---|---|---|---|---|---|---|")
for model in ["smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]:
    for dev, name in made.items():
        for side in ["auto", "self", "host"]:
            path = os.path.join(out, f"{model}.{dev}.{side}.json")
            if not os.path.exists(path):
                continue
            r = json.load(open(path))
            m = {x["name"]: x["value"] for x in r["metrics"]}
            on = {"auto": "candle, f32" if dev == "cpu-candle_f32" else "host",
                  "self": "candle, quantized", "host": "host"}[side]
            print(f"| {model} | {name} | {on} | {r['verdict']} | {r['seed']['mismatches']} / {r['seed']['positions']} | "
                  f"{m['gonka_distance2']:.4f} | {m['stage2_mae']:.3f} | {m['argmax_agreement']:.3f} |")
PY
