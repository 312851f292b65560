#!/usr/bin/env bash
# Aggregate decode throughput with B sequences per forward pass, nsed vs
# llama.cpp's `llama-batched-bench` on the same GGUF file, 2 threads, in one
# invocation (rounds interleaved so machine drift hits both alike):
#   nsed perf --model M --batch B,... --prompt-tokens 128 --gen-tokens 64
#   llama-batched-bench -m FILE -npp 128 -ntg 64 -npl B,... -t 2
# Both prefill each sequence's own 128-token prompt, then decode 64 tokens
# for all B sequences together; the aggregate decode rate is B·64 tokens over
# the decode time (llama-batched-bench's S_TG). Rounds are the outer loop
# and the tool that goes first alternates. Prints the markdown table of this
# invocation's rows (its `session`): nsed tok/s and its gain over
# B = 1, llama.cpp tok/s and its gain, nsed/llama.cpp, each the median of the
# rounds with their range (gains and ratios taken within a round), as the
# speed page renders it (`nsed report tables --only perf`, rebuilt here);
# raw rows, with the nsed build that ran, go to $OUT/perf/batched.jsonl.
#
# usage: scripts/bench-batched.sh [MODEL_ID ...]   (default: the two qwen models)
# env:   BATCHES (default 1,2,4,8,16), ROUNDS (default 3), THREADS (default 2),
#        NSED_KERNEL (e.g. avx2) with LLAMACPP_ISA (e.g. avx2) for a like-for-like
#        pairing, OUT (default results), NSED_BIN as in scripts/lib/runs.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/lib/runs.sh
batches="${BATCHES:-1,2,4,8,16}" rounds="${ROUNDS:-3}" threads="${THREADS:-2}"
OUT="${OUT:-results}"
out="$OUT/perf"
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

session="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

nsed_round() { # MODEL ROUND
    "$nsed" --threads "$threads" perf --model "$1" --batch "$batches" --prompt-tokens 128 \
        --gen-tokens 64 --repeats 1 --json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    print(json.dumps({"tool": "nsed", "session": sys.argv[5], "model": sys.argv[1], "round": int(sys.argv[2]),
                      "batch": r["batch"], "decode": r["decode_tok_per_s"], "prefill": r["prefill_tok_per_s"],
                      "kernel": r["kernel"], "rss_mib": r["peak_rss_mib"], "kv_mib": r["kv_mib"],
                      "commit": r.get("build", sys.argv[3]), "cpu": sys.argv[4]}))
' "$1" "$2" "$commit" "$cpu" "$session" >>"$raw"
}

llama_round() { # MODEL ROUND FILE
    # -c: room for every sequence's 128 + 64 tokens; -b/-ub: one
    # sequence's prompt per micro-batch at most, as nsed's steps.
    "$llama" -m "$3" -t "$threads" -c $(( (128 + 64) * 16 + 256 )) -b 2048 -ub 512 \
        -npp 128 -ntg 64 -npl "$batches" 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) < 8 or not cells[0].isdigit():
        continue
    pp, tg, b = int(cells[0]), int(cells[1]), int(cells[2])
    print(json.dumps({"tool": "llama.cpp", "session": sys.argv[4], "model": sys.argv[1], "round": int(sys.argv[2]),
                      "batch": b, "decode": float(cells[7]), "prefill": float(cells[5]), "isa": sys.argv[3],
                      "cpu": sys.argv[5]}))
' "$1" "$2" "${LLAMACPP_ISA:-native}" "$session" "$cpu" >>"$raw"
}

declare -A files
for model in "${models[@]}"; do
    file="$("$nsed" models inspect "$model" | sed -n 's/^file: \(.*\) ([0-9]* bytes.*/\1/p')"
    [[ -f "$file" ]] || { echo "bench-batched: $model is not downloaded (scripts/fetch-models.sh)" >&2; exit 2; }
    files[$model]=$file
done
# Rounds outermost, and the tool that goes first alternates, so that the
# machine's drift over the session falls on both tools and every model.
for round in $(seq "$rounds"); do
    for model in "${models[@]}"; do
        echo "bench-batched: $model round $round/$rounds (nsed $kernel, llama.cpp ${LLAMACPP_ISA:-native}; B = $batches)" >&2
        if (( round % 2 )); then
            nsed_round "$model" "$round"; llama_round "$model" "$round" "${files[$model]}"
        else
            llama_round "$model" "$round" "${files[$model]}"; nsed_round "$model" "$round"
        fi
    done
done

# The table is the speed page's (`nsed report tables --only perf` renders the
# latest session with every model at 3+ rounds of both tools): printed here
# from the page, never computed twice.
page perf >&2
if ! sed -n '/^## Many sequences per pass: nsed vs llama-batched-bench/,/^Produced by/p' "$OUT/perf.md" | grep -q "^Session $session:"; then
    echo "bench-batched: session $session has fewer than 3 rounds of both tools for some model: no table (raw rows in $raw)" >&2
    exit 1
fi
sed -n '/^## Many sequences per pass: nsed vs llama-batched-bench/,/^Produced by/p' "$OUT/perf.md"
