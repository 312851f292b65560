#!/usr/bin/env bash
# Fuzz the artifact parser (cargo-fuzz, libFuzzer; needs a nightly toolchain
# and `cargo install cargo-fuzz`). Seeds the corpus with the Gonka fixtures
# (tests/data/gonka) and a small nsed artifact, then runs for SECONDS (default 600).
#
#   scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
corpus=fuzz/corpus/artifact_parser
mkdir -p "$corpus"
cp tests/data/gonka/*.json "$corpus"/
cat > "$corpus"/nsed_small.json <<'JSON'
{"schema":"nsed.artifact/v1","nsed_version":"0.1.0","isa":"x86_64-avx512",
 "model":{"id":"smollm2-135m","sha256":"","arch":"llama"},
 "request":{"messages":[{"role":"user","content":"hi"}],"sampling":{"temperature":0.8,"top_k":0,"top_p":1.0,"min_p":0.0,"repeat_penalty":1.0,"repeat_last_n":64},"seed":1,"inference_id":"x","max_tokens":4,"stop":[],"top_logprobs":2},
 "prompt_ids":[1,2,3],
 "positions":[{"id":5,"token":"a","logprob":-0.1,"top_logprobs":[{"id":5,"token":"a","logprob":-0.1},{"id":6,"token":"b","logprob":-2.5}]},
              {"id":6,"token":"b","logprob":-1.0,"top_logprobs":[{"id":7,"token":"c","logprob":-0.6},{"id":6,"token":"b","logprob":-1.0}]}],
 "proof":{"scheme":"toploc-bf16-v1","chunk":32,"topk":128,"chunks":["e1ff0000"]}}
JSON
cargo +nightly fuzz run artifact_parser "$corpus" -- -max_total_time="$seconds" -rss_limit_mb=2048 2>&1 | tee fuzz/last-run.log | grep -E "^#|Done|ERROR|panicked" | tail -5
