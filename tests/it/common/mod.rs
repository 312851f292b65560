//! Helpers shared by the integration tests: where the test data, the data
//! sets and the models are, and how results CSVs are read.
#![allow(dead_code)]

pub mod nats;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use nsed::engine::gguf::Gguf;
use nsed::engine::registry::Registry;

/// `tests/data`: the llama.cpp goldens and Gonka's fixtures.
pub fn test_data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// The repository's `datasets/`.
pub fn datasets_dir() -> PathBuf {
    nsed::bench::datasets::bundled_dir()
}

/// The path of a fetched registry model; fails the test (never skips) when the
/// model has not been fetched, since these tests are the check that it works.
pub fn registry_model_path(id: &str) -> PathBuf {
    let registry = Registry::load().expect("registry");
    let entry = registry.get(id).expect("model in registry");
    let path = registry.path_of(entry);
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch-models.sh {id}",
        path.display()
    );
    path
}

pub fn open_registry_gguf(id: &str) -> Gguf {
    Gguf::open(&registry_model_path(id)).expect("GGUF parses")
}

/// Run `cmd` with standard output a pipe whose reader is already gone (as in
/// `cmd | head -0`), capturing standard error.
pub fn output_with_stdout_closed(cmd: &mut std::process::Command) -> std::process::Output {
    use std::process::Stdio;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    child.wait_with_output().expect("wait")
}

/// Rows of a CSV as header → value maps.
pub fn read_csv(path: &Path) -> Vec<HashMap<String, String>> {
    let mut reader = csv::Reader::from_path(path)
        .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_string)
        .collect();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(r.len(), header.len(), "{}: ragged row", path.display());
            header
                .iter()
                .cloned()
                .zip(r.iter().map(str::to_string))
                .collect()
        })
        .collect()
}

pub fn num(row: &HashMap<String, String>, key: &str) -> f64 {
    row.get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{key} is not a number in {row:?}"))
}
