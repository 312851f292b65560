//! Helpers shared by the integration tests: where ../shared and the models are.
#![allow(dead_code)]

pub mod nats;

use std::path::PathBuf;

use nsed::gguf::Gguf;
use nsed::registry::Registry;

/// `../shared` beside the project root (or `$NSED_SHARED`).
pub fn shared_dir() -> PathBuf {
    std::env::var_os("NSED_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"))
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
