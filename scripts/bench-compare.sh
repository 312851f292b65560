#!/usr/bin/env bash
# nsed vs llama.cpp on the same GGUF files, 2 threads, one invocation:
# for each model and each of ROUNDS rounds, `nsed perf` then
# `llama-bench -t 2 -p 128 -n 64` (interleaved, so drift in machine speed hits
# both alike), then the median over rounds. Prints a markdown table (prefill and
# decode tok/s, the nsed/llama.cpp ratios, peak RSS of both vs the file size)
# and writes it, stamped with date, commit and CPU, to results/perf.md.
#
# usage: scripts/bench-compare.sh [MODEL_ID ...]    (default: the four models)
# env:   ROUNDS (default 3), REPEATS per round (default 3), THREADS (default 2),
#        OUT (default results/perf.md; OUT=- prints only)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
rounds="${ROUNDS:-3}" repeats="${REPEATS:-3}" threads="${THREADS:-2}"
out="${OUT:-results/perf.md}"
models=("$@")
[[ ${#models[@]} -gt 0 ]] || models=(smollm2-135m gemma3-270m qwen2.5-coder-0.5b qwen2.5-coder-1.5b)

cargo build --release -q
nsed="$root/target/release/nsed"
llama_bench="$(scripts/bench-llamacpp.sh)"
raw="$(mktemp)"
trap 'rm -f "$raw"' EXIT

for model in "${models[@]}"; do
    file="$("$nsed" models inspect "$model" | sed -n 's/^file: \(.*\) ([0-9]* bytes.*/\1/p')"
    [[ -f "$file" ]] || { echo "bench-compare: $model is not downloaded (scripts/fetch-models.sh)" >&2; exit 2; }
    for round in $(seq "$rounds"); do
        echo "bench-compare: $model round $round/$rounds" >&2
        "$nsed" --threads "$threads" perf --model "$model" --repeats "$repeats" --json 2>/dev/null \
            | python3 -c 'import json,sys; r=json.load(sys.stdin); print(json.dumps({"tool":"nsed","model":sys.argv[1],"file":sys.argv[2],"prefill":r["prefill_tok_per_s"],"decode":r["decode_tok_per_s"],"rss_mib":r["peak_rss_mib"]}))' "$model" "$file" >>"$raw"
        /usr/bin/time -f 'RSS_KIB %M' -o "$raw.time" \
            "$llama_bench" -m "$file" -t "$threads" -p 128 -n 64 -r "$repeats" -o jsonl 2>/dev/null \
            | python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin if l.strip()]
pp = next(r["avg_ts"] for r in rows if r["n_prompt"] > 0)
tg = next(r["avg_ts"] for r in rows if r["n_gen"] > 0)
print(json.dumps({"tool": "llama.cpp", "model": sys.argv[1], "file": sys.argv[2], "prefill": pp, "decode": tg, "build": rows[0]["build_commit"]}))
' "$model" "$file" "$raw.time" >>"$raw"
        rss_kib="$(sed -n 's/^RSS_KIB \([0-9]*\)/\1/p' "$raw.time")"
        echo "{\"tool\":\"llama.cpp-rss\",\"model\":\"$model\",\"rss_mib\":$((rss_kib / 1024))}" >>"$raw"
    done
done
rm -f "$raw.time"

commit="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml || echo '+dirty')"
cpu="$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
flags="$(grep -o -w -E 'avx512_vnni|avx512bw|avx2' /proc/cpuinfo | sort -u | tr '\n' ' ')"
version="${LLAMACPP_VERSION:-0.3.36}"
python3 - "$raw" "$commit" "$cpu ($(nproc) cores; ${flags% })" "$rounds" "$repeats" "$threads" "$version" "$out" <<'PY'
import datetime, json, os, statistics, sys
raw, commit, cpu, rounds, repeats, threads, version, out = sys.argv[1:]
rows = [json.loads(l) for l in open(raw)]
models = list(dict.fromkeys(r["model"] for r in rows))
med = lambda xs: statistics.median(xs) if xs else float("nan")
def pick(model, tool, key):
    return med([r[key] for r in rows if r["model"] == model and r["tool"] == tool])
lines = [
    "| model | GGUF MiB | nsed prefill tok/s | llama.cpp prefill | ratio | nsed decode tok/s | llama.cpp decode | ratio | nsed peak RSS MiB (x file) | llama.cpp peak RSS MiB |",
    "|---|---|---|---|---|---|---|---|---|---|",
]
build = next((r["build"] for r in rows if r["tool"] == "llama.cpp"), "?")
for m in models:
    f = next(r["file"] for r in rows if r["model"] == m)
    size = os.path.getsize(f) / 2**20
    np_, lp = pick(m, "nsed", "prefill"), pick(m, "llama.cpp", "prefill")
    nd, ld = pick(m, "nsed", "decode"), pick(m, "llama.cpp", "decode")
    rss, lrss = pick(m, "nsed", "rss_mib"), pick(m, "llama.cpp-rss", "rss_mib")
    lines.append(f"| {m} | {size:.0f} | {np_:.1f} | {lp:.1f} | **{np_/lp:.2f}x** | {nd:.1f} | {ld:.1f} | **{nd/ld:.2f}x** | {rss:.0f} ({rss/size:.2f}x) | {lrss:.0f} |")
table = "\n".join(lines)
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
header = f"""# Speed: nsed vs llama.cpp, {threads} threads

Measured by `scripts/bench-compare.sh` on {now}, nsed commit {commit}, CPU: {cpu}.
For each model, {rounds} interleaved rounds of `nsed --threads {threads} perf --repeats {repeats}`
(128-token prompt, then 64 greedy decode steps; median of {repeats} after a warm-up) and
`llama-bench -t {threads} -p 128 -n 64 -r {repeats}` (llama.cpp {build}, vendored in
llama-cpp-python {version}, built by `scripts/bench-llamacpp.sh` with GGML_NATIVE); each cell is
the median over the rounds. Peak RSS is the process high-water mark (nsed: VmHWM, which includes
loading; llama-bench: /usr/bin/time, its weights are mmapped).
"""
text = header + "\n" + table + "\n"
print(table)
if out != "-":
    intro = "results/perf.intro.md"
    extra = open(intro).read() if os.path.exists(intro) else ""
    with open(out, "w") as fh:
        fh.write(text + ("\n" + extra if extra else ""))
    print(f"\nwritten to {out}", file=sys.stderr)
PY
