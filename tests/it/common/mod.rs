//! Helpers shared by the integration tests: where the test data, the data
//! sets and the models are, and how results CSVs are read.
#![allow(dead_code)]

pub mod nats;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use nsed::engine::gguf::Gguf;
use nsed::engine::registry::Registry;

/// A seeded random-weight GGUF shaped like roster model `like`, with
/// `layers` layers, written by `nsed models synth` into `dir`: for tests of
/// the machinery around a model (federation faults, the page pipeline) where
/// what the model says does not matter and a real one only costs time.
pub fn synth_model(dir: &Path, like: &str, layers: u32) -> PathBuf {
    synth_model_sized(dir, like, layers, None)
}

/// [`synth_model`] with a smaller vocabulary (`nsed models synth --vocab`):
/// the output layer is most of a small model's time.
pub fn synth_model_sized(dir: &Path, like: &str, layers: u32, vocab: Option<u32>) -> PathBuf {
    let tag = vocab.map_or(String::new(), |v| format!("-v{v}"));
    let path = dir.join(format!("synth-{like}-{layers}{tag}.gguf"));
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_nsed"));
    cmd.args(["models", "synth", "--like", like, "--layers"])
        .arg(layers.to_string())
        .arg("-o")
        .arg(&path);
    if let Some(v) = vocab {
        cmd.args(["--vocab", &v.to_string()]);
    }
    let out = cmd.output().expect("nsed runs");
    assert!(
        out.status.success(),
        "models synth: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// A registry (`NSED_REGISTRY`) and models folder (`NSED_MODELS`) in `dir`
/// where each of `ids` is a synthetic model of its shape with `layers`
/// layers (and `vocab` tokens, when given), under the registry's id, file
/// name and the synthetic file's own
/// sha256 and size; every other entry stays and points at a file that is not
/// there, so using it fails. Returns (registry file, models folder).
pub fn synth_registry(
    dir: &Path,
    ids: &[&str],
    layers: u32,
    vocab: Option<u32>,
) -> (PathBuf, PathBuf) {
    use sha2::{Digest, Sha256};
    let models = dir.join("models");
    std::fs::create_dir_all(&models).expect("models folder");
    let builtin = include_str!("../../../configs/models.toml");
    let mut registry = String::new();
    for (i, block) in builtin.split("[[model]]").enumerate() {
        if i > 0 {
            registry.push_str("[[model]]");
        }
        let field = |key: &str| {
            block.lines().find_map(|l| {
                l.strip_prefix(key)
                    .and_then(|r| r.trim_start().strip_prefix('='))
                    .map(|v| v.trim().trim_matches('"').to_owned())
            })
        };
        let Some(id) = field("id").filter(|id| ids.contains(&id.as_str())) else {
            registry.push_str(block);
            continue;
        };
        let file = field("file").expect("registry entry has a file");
        let synth = synth_model_sized(dir, &id, layers, vocab);
        let bytes = std::fs::read(&synth).expect("synthetic model");
        std::fs::write(models.join(&file), &bytes).expect("write model");
        let sha = format!("{:x}", Sha256::digest(&bytes));
        for line in block.split_inclusive('\n') {
            if line.starts_with("sha256 =") {
                registry.push_str(&format!("sha256 = \"{sha}\"\n"));
            } else if line.starts_with("bytes =") {
                registry.push_str(&format!("bytes = {}\n", bytes.len()));
            } else {
                registry.push_str(line);
            }
        }
    }
    let path = dir.join("models.toml");
    std::fs::write(&path, registry).expect("write registry");
    (path, models)
}

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
