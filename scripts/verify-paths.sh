#!/usr/bin/env bash
# Which verdict each (made on, replayed on) pair of paths gets: for each
# downloaded roster model, a sampled artifact (64 tokens, T = 0.8, seed 7,
# top-5) is made on the host path, the quantized candle path (the code of
# `--device cuda`) and the f32 candle path (`cuda/f32`), then verified with
# `nsed verify` as it picks the path itself (each path replays its own
# artifacts: bit-exact pairs) and, for the candle artifacts, on the host path
# (judged by the pair's committed calibration, or no verdict without one).
# Fraud rows: an int4 executor (weights re-quantized to Q4_0, claiming the
# file; `nsed simulate-fraud --keep-artifacts`) on each path, same prompt and
# seed, and the 1.5B's artifact claimed as the 0.5B (substitution). Prints
# the table of docs/gpu.md ("Which path checks which artifact"); about 30
# minutes on 2 cores (candle's quantized CPU kernels decode the 1.5B at
# about 1 token/s).
#
#   scripts/verify-paths.sh [OUT]        # default OUT: /tmp/verify-paths
#   NSED_BIN=path/to/nsed                # default: target/release/nsed
#   MODELS="gemma3-270m"                 # make only these models' rows again
#                                        # (the table keeps the others in OUT)
#
# The calibrations are read from configs/thresholds (the committed files,
# not the user's own), so the table shows what the repository decides.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:-/tmp/verify-paths}
bin=${NSED_BIN:-target/release/nsed}
[ -x "$bin" ] || { echo "error: no nsed at $bin: cargo build --release, or set NSED_BIN" >&2; exit 2; }
mkdir -p "$out"
prompt="Write a short story about a lighthouse keeper who finds a message in a bottle."
all_models="smollm2-135m gemma3-270m qwen2.5-coder-0.5b qwen2.5-coder-1.5b"
models=${MODELS:-$all_models}
export NSED_THRESHOLDS_DIR="$PWD/configs/thresholds"
# verify TAG ARGS...: the JSON report, or the one-line error, and the exit code.
verify() {
  local tag=$1; shift
  local rc=0
  "$bin" "$@" --json > "$out/$tag.json" 2> "$out/$tag.err" || rc=$?
  echo "$rc" > "$out/$tag.rc"
}
for model in $models; do
  for device in cpu cpu-candle cpu-candle/f32; do
    tag=$model.${device//\//_}
    "$bin" --device "$device" generate -m "$model" -p "$prompt" --temperature 0.8 --seed 7 \
      --inference-id verify-paths -n 64 --top-logprobs 5 --artifact "$out/$tag.artifact.json" > /dev/null
    verify "$tag.auto" verify --artifact "$out/$tag.artifact.json"
    [ "$device" = cpu ] || verify "$tag.host" --device cpu verify --artifact "$out/$tag.artifact.json"
  done
  echo "verify-paths: $model done" >&2
done
# int4: the same prompt, seed and temperature, by an executor whose weights
# were re-quantized to Q4_0 and which claims the file.
printf '{"id": "story", "prompt": "%s"}\n' "$prompt" > "$out/prompt.jsonl"
for model in $models; do
  for device in cpu cpu-candle cpu-candle/f32; do
    tag=$model.${device//\//_}
    rm -rf "$out/int4-run.$tag" "$out/int4.$tag"
    "$bin" simulate-fraud --model "$model" --quant int4 --honest file --validator file \
      --samples-honest 0 --samples-fraud 1 --max-tokens 64 --temp-fraud 0.8 --seed 7 --top-k 5 \
      --prompts "$out/prompt.jsonl" --executor-device "$device" --validator-device cpu \
      --keep-artifacts "$out/int4.$tag" --out "$out/int4-run.$tag" > /dev/null 2>&1
    cp "$out/int4.$tag/int4-0.json" "$out/int4.$tag.artifact.json"
    verify "int4.$tag.auto" verify --artifact "$out/int4.$tag.artifact.json"
    [ "$device" = cpu ] || verify "int4.$tag.host" --device cpu verify --artifact "$out/int4.$tag.artifact.json"
  done
  echo "verify-paths: $model int4 done" >&2
done
# Substitution: the 1.5B ran, the 0.5B is claimed (same tokenizer).
[[ " $models " == *" qwen2.5-coder-1.5b "* ]] && for device in cpu cpu-candle cpu-candle/f32; do
  tag=qwen2.5-coder-1.5b.${device//\//_}
  python3 - "$out/$tag.artifact.json" "$out/substituted.$tag.artifact.json" <<'PY'
import json, sys
a = json.load(open(sys.argv[1]))
a["model"] = {**a["model"], "id": "qwen2.5-coder-0.5b", "sha256": ""}
json.dump(a, open(sys.argv[2], "w"))
PY
  verify "substituted.$tag.host" --device cpu verify --artifact "$out/substituted.$tag.artifact.json"
done
python3 - "$out" "$all_models" <<'PY'
import json, os, sys
out, models = sys.argv[1], sys.argv[2].split()
made = {"cpu": "host", "cpu-candle": "candle, quantized", "cpu-candle_f32": "candle, f32"}
def row(label, made_on, tag, replay):
    path = os.path.join(out, tag)
    if not os.path.exists(path + ".rc"):
        return
    rc = open(path + ".rc").read().strip()
    try:
        r = json.load(open(path + ".json"))
    except (ValueError, OSError):
        r = None
    if not r:
        err = open(path + ".err").read().strip().splitlines()
        why = "no calibration" if err and "no calibrated thresholds" in err[-1] else (err[-1] if err else "error")
        print(f"| {label} | {made_on} | {replay} | no verdict (exit {rc}): {why} | | | | |")
        return
    m = {x["name"]: x for x in r["metrics"]}
    p = r.get("policy") or {}
    judged = "bit-exact" if p.get("bit_exact") else ("calibrated" if p.get("calibration") else "defaults")
    seed = r.get("seed") or {}
    def cell(name, fmt):
        x = m[name]
        t = x.get("threshold")
        return f"{x['value']:{fmt}}" + ("" if t is None else f" ({'>' if x['better'] == 'higher' else '≤'} {t:{fmt}})")
    print(f"| {label} | {made_on} | {p.get('replayed_on', replay)} | **{r['verdict'].upper()}** ({judged}) | "
          f"{seed.get('mismatches')} / {seed.get('positions')} (≤ {seed.get('tolerance', 0) * 100:.1f}%) | "
          f"{cell('gonka_distance2', '.4f')} | {cell('stage2_mae', '.3f')} | {m['argmax_agreement']['value']:.3f} |")
print("| model | made on | replayed on | verdict (rule) | seed mismatches / n (bound) | gonka_distance2 (bound) | stage2_mae (bound) | argmax agreement |")
print("|---|---|---|---|---|---|---|---|")
for model in models:
    for dev, name in made.items():
        row(model, name, f"{model}.{dev}.auto", "its own path")
        row(model, name, f"{model}.{dev}.host", "host")
for model in models:
    for dev, name in made.items():
        row(f"{model} at int4 (claims the file)", name, f"int4.{model}.{dev}.auto", "its own path")
        row(f"{model} at int4 (claims the file)", name, f"int4.{model}.{dev}.host", "host")
for dev, name in made.items():
    row("qwen2.5-coder-1.5b claimed as 0.5b (substitution)", name, f"substituted.qwen2.5-coder-1.5b.{dev}.host", "host")
PY
# The committed calibrations that judged the calibrated rows.
python3 - <<'PY'
import glob, json
print()
print("| model | made on → replayed on | n (prompts) | gonka_similarity > | gonka_distance2 ≤ | stage2_mae ≤ | seed mismatch share ≤ | held-out honest flag rate (95% of splits) | fit on |")
print("|---|---|---|---|---|---|---|---|---|")
for path in sorted(glob.glob("configs/thresholds/*/*.json")):
    c = json.load(open(path))
    fit = c.get("fit")
    if not fit:
        continue
    t = c["thresholds"]
    h = fit["held_out_flag_rate"]
    p = c.get("provenance", {})
    print(f"| {c['model']['id']} | {c['made_on']} → {c['replayed_on']} | {fit['samples']} ({', '.join(fit.get('prompts') or ['default mix'])}) | "
          f"{t['gonka_similarity']:.4f} | {t['gonka_distance2']:.4f} | {t['stage2_mae']:.3f} | {t['seed_mismatch_share']:.3f} | "
          f"{h[0] * 100:.1f}% ({h[1] * 100:.0f}-{h[2] * 100:.0f}%) | {p.get('cpu', '?')}, {p.get('made_class', '?')} → {p.get('replayed_class', '?')} |")
PY
