#!/usr/bin/env bash
# Peak memory and load time of a model on the CPU path, against its file
# size: `nsed perf` on a synthetic file of a paper model's shape (random
# weights, the real widths, formats and layer structure; fewer layers than
# the original by default so that it is quick to write), under
# /usr/bin/time. The target (issue [models]): peak RSS ≤ 1.15 × the file.
#
# usage: scripts/model-memory.sh [SHAPE] [LAYERS]   (default gpt-oss-20b, 4)
# env:   NSED_BIN (default target/release/nsed), OUT (default target/memory)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
shape="${1:-gpt-oss-20b}"
layers="${2:-4}"
bin="${NSED_BIN:-target/release/nsed}"
out="${OUT:-target/memory}"
[[ -x $bin ]] || { echo "model-memory: $bin missing (cargo build --release)" >&2; exit 2; }
mkdir -p "$out"
model="$out/$shape-$layers.gguf"
[[ -s $model ]] || "$bin" models synth --like "$shape" --layers "$layers" -o "$model"
/usr/bin/time -v "$bin" --threads 2 perf -m "$model" --prompt-tokens 16 --gen-tokens 4 --repeats 1 \
    > "$out/$shape-$layers.perf.txt" 2> "$out/$shape-$layers.time.txt"
file_kib=$(( $(stat -c %s "$model") / 1024 ))
rss_kib=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$out/$shape-$layers.time.txt")
cat "$out/$shape-$layers.perf.txt"
python3 - "$shape" "$layers" "$file_kib" "$rss_kib" <<'PY'
import sys
shape, layers, file_kib, rss_kib = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
print(f"{shape} ({layers} layers): file {file_kib/1024:.0f} MiB, peak RSS {rss_kib/1024:.0f} MiB "
      f"= {rss_kib/file_kib:.3f} x the file (target <= 1.15)")
PY
