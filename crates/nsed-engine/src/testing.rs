//! Tiny GGUF models with seeded random weights, for tests: a real file in the
//! real format, small enough to run every architecture in milliseconds
//! (written by [`crate::synth`]).

use std::path::Path;

use crate::synth;

pub use crate::synth::TinySpec;
pub use nsed_stats::SplitMix64;

/// Write a tiny random model of `spec.arch` to `path`.
pub fn write_tiny_model(path: &Path, spec: &TinySpec) -> std::io::Result<()> {
    synth::write(path, spec).map_err(std::io::Error::other)
}

/// `n` deterministic pseudo-random values in [-1, 1) (xorshift64), for
/// kernel tests and benches.
pub fn pseudo_random(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}
