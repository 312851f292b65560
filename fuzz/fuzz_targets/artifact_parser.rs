//! Fuzz the artifact reader and the model-free comparison: any bytes must
//! give an artifact or an error, never a panic, and any two artifacts that
//! parse must compare without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nsed::verify::artifact::Artifact;
use nsed::verify::{against, Options};

fuzz_target!(|data: &[u8]| {
    let Ok(artifact) = Artifact::from_reader(data) else {
        return;
    };
    let _ = against(&artifact, &artifact, ("a", "a"), &Options::default());
    // The executor against a one-position-shorter copy of itself.
    let mut shorter = artifact.clone();
    shorter.positions.pop();
    let _ = against(&artifact, &shorter, ("a", "b"), &Options::default());
    let _ = artifact.to_json();
});
