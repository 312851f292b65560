#!/usr/bin/env bash
# The test suite: fetch the models if missing (checked by sha256), then run
# every unit and integration test (tokenizer and perplexity goldens, generation
# determinism, bad input). Tests run optimized (see [profile.dev] in Cargo.toml).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/fetch-models.sh
command -v nats-server >/dev/null || {
  echo "test.sh: nats-server is missing (apt-get install -y nats-server); the federation tests start one" >&2
  exit 2
}
export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-2}"
cargo test --lib --bins --tests -- --test-threads "${NSED_TEST_THREADS:-1}"
# The criterion benches (benches/kernels.rs) take no libtest flags: built, and
# each benchmark run once as a smoke test.
cargo test --benches
