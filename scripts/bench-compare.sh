#!/usr/bin/env bash
# nsed vs llama.cpp on the same GGUF files, 2 threads, one invocation:
# for each model and each of ROUNDS rounds, `nsed perf` then
# `llama-bench -t 2 -p 128 -n 64` (interleaved, so drift in machine speed hits
# both alike). Every measurement goes to $OUT/perf/raw.jsonl, then
# `nsed report tables --only perf` writes $OUT/perf.md and perf.csv: prefill
# and decode tok/s (median over rounds), the nsed/llama.cpp ratios, peak RSS.
#
# usage: scripts/bench-compare.sh [MODEL_ID ...]    (default: the four models)
# env:   ROUNDS (default 3), REPEATS per round (default 3), THREADS (default 2),
#        LLAMACPP=0 to measure nsed alone (no llama.cpp build),
#        OUT (results directory, default results), NSED_BIN as in scripts/lib/runs.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/lib/runs.sh
rounds="${ROUNDS:-3}" repeats="${REPEATS:-3}" threads="${THREADS:-2}"
models=("$@")
[[ ${#models[@]} -gt 0 ]] || models=(smollm2-135m gemma3-270m qwen2.5-coder-0.5b qwen2.5-coder-1.5b)

llama_bench=""
[[ ${LLAMACPP:-1} == 0 ]] || llama_bench="$(scripts/bench-llamacpp.sh)"
raw="$(mktemp)"
trap 'rm -f "$raw" "$raw.time"' EXIT

for model in "${models[@]}"; do
    file="$("$nsed" models inspect "$model" | sed -n 's/^file: \(.*\) ([0-9]* bytes.*/\1/p')"
    [[ -f "$file" ]] || { echo "bench-compare: $model is not downloaded (scripts/fetch-models.sh)" >&2; exit 2; }
    for round in $(seq "$rounds"); do
        echo "bench-compare: $model round $round/$rounds" >&2
        "$nsed" --threads "$threads" perf --model "$model" --repeats "$repeats" --json 2>/dev/null \
            | python3 -c 'import json,sys; r=json.load(sys.stdin); print(json.dumps({"tool":"nsed","model":sys.argv[1],"file":sys.argv[2],"prefill":r["prefill_tok_per_s"],"decode":r["decode_tok_per_s"],"rss_mib":r["peak_rss_mib"]}))' "$model" "$file" >>"$raw"
        [[ -n $llama_bench ]] || continue
        /usr/bin/time -f 'RSS_KIB %M' -o "$raw.time" \
            "$llama_bench" -m "$file" -t "$threads" -p 128 -n 64 -r "$repeats" -o jsonl 2>/dev/null \
            | python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin if l.strip()]
pp = next(r["avg_ts"] for r in rows if r["n_prompt"] > 0)
tg = next(r["avg_ts"] for r in rows if r["n_gen"] > 0)
print(json.dumps({"tool": "llama.cpp", "model": sys.argv[1], "file": sys.argv[2], "prefill": pp, "decode": tg, "build": rows[0]["build_commit"]}))
' "$model" "$file" >>"$raw"
        rss_kib="$(sed -n 's/^RSS_KIB \([0-9]*\)/\1/p' "$raw.time")"
        echo "{\"tool\":\"llama.cpp-rss\",\"model\":\"$model\",\"rss_mib\":$((rss_kib / 1024))}" >>"$raw"
    done
done
rm -f "$raw.time"
mkdir -p "$OUT/perf"
mv "$raw" "$OUT/perf/raw.jsonl"
page perf
