#!/usr/bin/env bash
# Aggregate decode throughput with B sequences per forward pass, nsed vs
# llama.cpp's `llama-batched-bench` on the same GGUF file, 2 threads, in one
# invocation (rounds interleaved so machine drift hits both alike):
#   nsed perf --model M --batch B,... --prompt-tokens 128 --gen-tokens 64
#   llama-batched-bench -m FILE -npp 128 -ntg 64 -npl B,... -t 2
# Both prefill each sequence's own 128-token prompt, then decode 64 tokens
# for all B sequences together; the aggregate decode rate is B·64 tokens over
# the decode time (llama-batched-bench's S_TG). Prints a markdown table per
# model (medians over rounds): nsed tok/s and its gain over B = 1, llama.cpp
# tok/s and its gain, nsed/llama.cpp; raw rows go to $OUT/perf/batched.jsonl.
#
# usage: scripts/bench-batched.sh [MODEL_ID ...]   (default: the two qwen models)
# env:   BATCHES (default 1,2,4,8,16), ROUNDS (default 2), THREADS (default 2),
#        NSED_KERNEL (e.g. avx2) with LLAMACPP_ISA (e.g. avx2) for a like-for-like
#        pairing, OUT (default results), NSED_BIN as in scripts/lib/runs.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/lib/runs.sh
batches="${BATCHES:-1,2,4,8,16}" rounds="${ROUNDS:-2}" threads="${THREADS:-2}"
out="${OUT:-results}/perf"
models=("$@")
[[ ${#models[@]} -gt 0 ]] || models=(qwen2.5-coder-0.5b qwen2.5-coder-1.5b)
[[ $batches =~ ^[0-9]+(,[0-9]+)*$ ]] || { echo "bench-batched: BATCHES is a comma-separated list of sizes, not '$batches'" >&2; exit 2; }

llama="$(LLAMACPP_TOOL=llama-batched-bench scripts/bench-llamacpp.sh)"
kernel="$("$nsed" models inspect "${models[0]}" | sed -n 's/^kernel: \([a-z0-9]*\).*/\1/p')"
[[ -n $kernel ]] || exit 2
mkdir -p "$out"
raw="$out/batched.jsonl"
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
cpu="$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)"

for model in "${models[@]}"; do
    file="$("$nsed" models inspect "$model" | sed -n 's/^file: \(.*\) ([0-9]* bytes.*/\1/p')"
    [[ -f "$file" ]] || { echo "bench-batched: $model is not downloaded (scripts/fetch-models.sh)" >&2; exit 2; }
    for round in $(seq "$rounds"); do
        echo "bench-batched: $model round $round/$rounds (nsed $kernel, llama.cpp ${LLAMACPP_ISA:-native}; B = $batches)" >&2
        "$nsed" --threads "$threads" perf --model "$model" --batch "$batches" --prompt-tokens 128 \
            --gen-tokens 64 --repeats 1 --json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    print(json.dumps({"tool": "nsed", "model": sys.argv[1], "round": int(sys.argv[2]), "batch": r["batch"],
                      "decode": r["decode_tok_per_s"], "prefill": r["prefill_tok_per_s"], "kernel": r["kernel"],
                      "rss_mib": r["peak_rss_mib"], "kv_mib": r["kv_mib"], "commit": sys.argv[3], "cpu": sys.argv[4]}))
' "$model" "$round" "$commit" "$cpu" >>"$raw"
        # -c: room for every sequence's 128 + 64 tokens; -b/-ub: one
        # sequence's prompt per micro-batch at most, as nsed's steps.
        "$llama" -m "$file" -t "$threads" -c $(( (128 + 64) * 16 + 256 )) -b 2048 -ub 512 \
            -npp 128 -ntg 64 -npl "$batches" 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) < 8 or not cells[0].isdigit():
        continue
    pp, tg, b = int(cells[0]), int(cells[1]), int(cells[2])
    print(json.dumps({"tool": "llama.cpp", "model": sys.argv[1], "round": int(sys.argv[2]), "batch": b,
                      "decode": float(cells[7]), "prefill": float(cells[5]), "isa": sys.argv[3]}))
' "$model" "$round" "${LLAMACPP_ISA:-native}" >>"$raw"
    done
done

python3 - "$raw" "$commit" "$kernel" "${LLAMACPP_ISA:-native}" "$cpu" "${models[@]}" <<'PY'
import json, statistics, sys
raw, commit, kernel, isa, cpu, models = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:]
rows = [json.loads(l) for l in open(raw) if l.strip()]
for model in models:
    def med(tool, b):
        v = [r["decode"] for r in rows if r["model"] == model and r["tool"] == tool and r["batch"] == b
             and (tool != "nsed" or (r["kernel"] == kernel and r.get("commit") == commit))]
        return statistics.median(v) if v else float("nan")
    sizes = sorted({r["batch"] for r in rows if r["model"] == model})
    print(f"\n{model} — nsed {kernel} (commit {commit}) vs llama-batched-bench ({isa} build), {cpu}, decode tok/s of all sequences")
    print("| B | nsed tok/s | nsed x B=1 | llama.cpp tok/s | llama.cpp x B=1 | nsed / llama.cpp |")
    print("|---|---|---|---|---|---|")
    n1, l1 = med("nsed", 1), med("llama.cpp", 1)
    for b in sizes:
        n, l = med("nsed", b), med("llama.cpp", b)
        print(f"| {b} | {n:.1f} | {n / n1:.2f}x | {l:.1f} | {l / l1:.2f}x | {n / l:.2f} |")
PY
