#!/usr/bin/env bash
# nsed vs llama.cpp on the same GGUF files, 2 threads, one invocation:
# for each model and each of ROUNDS rounds, `nsed perf` then
# `llama-bench -t 2 -p 128 -n 64` (interleaved, so drift in machine speed hits
# both alike). Every measurement goes to $OUT/perf/raw.jsonl, then
# `nsed report tables --only perf` writes $OUT/perf.md and perf.csv: prefill
# and decode tok/s (median over rounds), the nsed/llama.cpp ratios, peak RSS.
#
# usage: scripts/bench-compare.sh [MODEL_ID ...]    (default: the four models)
# env:   PAIRS: space-separated NSED_KERNEL:LLAMACPP_ISA pairings to measure,
#          each a row of its own (default "auto:native": the best path against
#          a native llama.cpp). Like for like on AVX2 from an AVX-512 machine:
#          PAIRS="avx512vnni:native avx2:avx2 portable:native"
#        ROUNDS (default 3), REPEATS per round (default 3), THREADS (default 2),
#        LLAMACPP=0 to measure nsed alone (no llama.cpp build),
#        OUT (results directory, default results), NSED_BIN as in scripts/lib/runs.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/lib/runs.sh
rounds="${ROUNDS:-3}" repeats="${REPEATS:-3}" threads="${THREADS:-2}"
models=("$@")
[[ ${#models[@]} -gt 0 ]] || models=(smollm2-135m gemma3-270m qwen2.5-coder-0.5b qwen2.5-coder-1.5b)

read -r -a pairs <<<"${PAIRS:-auto:native}"
declare -A llama_bench=() kernel_of=()
for pair in "${pairs[@]}"; do
    path="${pair%%:*}" isa="${pair#*:}"
    [[ $pair == *:* && -n $path && -n $isa ]] || { echo "bench-compare: a pairing is NSED_KERNEL:LLAMACPP_ISA, not '$pair'" >&2; exit 2; }
    # The path name as nsed resolves it (auto -> this CPU's best), checked before any run.
    kernel_of[$pair]="$(NSED_KERNEL="$path" "$nsed" models inspect "${models[0]}" | sed -n 's/^kernel: \([a-z0-9]*\).*/\1/p')"
    [[ -n ${kernel_of[$pair]} ]] || exit 2
    if [[ ${LLAMACPP:-1} != 0 && -z ${llama_bench[$isa]:-} ]]; then
        llama_bench[$isa]="$(LLAMACPP_ISA="$isa" scripts/bench-llamacpp.sh)"
    fi
done
raw="$(mktemp)"
trap 'rm -f "$raw" "$raw.time"' EXIT

for model in "${models[@]}"; do
    file="$("$nsed" models inspect "$model" | sed -n 's/^file: \(.*\) ([0-9]* bytes.*/\1/p')"
    [[ -f "$file" ]] || { echo "bench-compare: $model is not downloaded (scripts/fetch-models.sh)" >&2; exit 2; }
    for round in $(seq "$rounds"); do
      for pair in "${pairs[@]}"; do
        path="${pair%%:*}" isa="${pair#*:}" kernel="${kernel_of[$pair]}"
        echo "bench-compare: $model round $round/$rounds, nsed $kernel vs llama.cpp $isa" >&2
        NSED_KERNEL="$path" "$nsed" --threads "$threads" perf --model "$model" --repeats "$repeats" --json 2>/dev/null \
            | python3 -c 'import json,sys; r=json.load(sys.stdin); print(json.dumps({"tool":"nsed","model":sys.argv[1],"file":sys.argv[2],"kernel":r["kernel"],"prefill":r["prefill_tok_per_s"],"decode":r["decode_tok_per_s"],"rss_mib":r["peak_rss_mib"]}))' "$model" "$file" >>"$raw"
        [[ -n ${llama_bench[$isa]:-} ]] || continue
        /usr/bin/time -f 'RSS_KIB %M' -o "$raw.time" \
            "${llama_bench[$isa]}" -m "$file" -t "$threads" -p 128 -n 64 -r "$repeats" -o jsonl 2>/dev/null \
            | python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin if l.strip()]
pp = next(r["avg_ts"] for r in rows if r["n_prompt"] > 0)
tg = next(r["avg_ts"] for r in rows if r["n_gen"] > 0)
print(json.dumps({"tool": "llama.cpp", "model": sys.argv[1], "file": sys.argv[2], "prefill": pp, "decode": tg, "build": rows[0]["build_commit"], "kernel": sys.argv[3], "llama_isa": sys.argv[4]}))
' "$model" "$file" "$kernel" "$isa" >>"$raw"
        rss_kib="$(sed -n 's/^RSS_KIB \([0-9]*\)/\1/p' "$raw.time")"
        echo "{\"tool\":\"llama.cpp-rss\",\"model\":\"$model\",\"rss_mib\":$((rss_kib / 1024)),\"kernel\":\"$kernel\",\"llama_isa\":\"$isa\"}" >>"$raw"
      done
    done
done
rm -f "$raw.time"
mkdir -p "$OUT/perf"
mv "$raw" "$OUT/perf/raw.jsonl"
page perf
