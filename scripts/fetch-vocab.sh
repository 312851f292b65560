#!/usr/bin/env bash
# Put llama.cpp's vocabulary test files (models/ggml-vocab-NAME.gguf, the
# vocabulary alone, with .inp texts and the .out token ids llama.cpp gives)
# into a cache folder, without root, from the llama-cpp-python source
# package on the Python registry (sha256-pinned), and print the folder.
# tests/it/tokenizer_golden.rs checks nsed's tokenizer against them.
#
# usage: scripts/fetch-vocab.sh      → prints e.g. ~/.cache/nsed/vocab/0.3.36
# env:   NSED_VOCAB_DIR (default ~/.cache/nsed/vocab)
set -euo pipefail

version=0.3.36
sha256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
names=(llama-bpe llama-spm qwen2 qwen35)
dir="${NSED_VOCAB_DIR:-$HOME/.cache/nsed/vocab}/$version"
complete() {
    for n in "${names[@]}"; do
        for ext in "" .inp .out; do [[ -s "$dir/ggml-vocab-$n.gguf$ext" ]] || return 1; done
    done
}
if complete; then
    echo "$dir"
    exit 0
fi
command -v python3 >/dev/null || { echo "fetch-vocab: python3 is required (pip download)" >&2; exit 2; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "fetch-vocab: llama.cpp's vocabulary tests from llama-cpp-python $version (source package)" >&2
python3 -m pip download -q --no-deps --no-binary llama-cpp-python --disable-pip-version-check \
    -d "$tmp" "llama-cpp-python==$version" >&2
sdist="$tmp/llama_cpp_python-$version.tar.gz"
echo "$sha256  $sdist" | sha256sum --check --status \
    || { echo "fetch-vocab: $sdist does not have the pinned sha256" >&2; exit 2; }
members=()
for n in "${names[@]}"; do
    for ext in "" .inp .out; do
        members+=("llama_cpp_python-$version/vendor/llama.cpp/models/ggml-vocab-$n.gguf$ext")
    done
done
tar -xzf "$sdist" -C "$tmp" "${members[@]}"
mkdir -p "$dir"
mv "$tmp/llama_cpp_python-$version/vendor/llama.cpp/models/"ggml-vocab-* "$dir/"
echo "$dir"
