//! The library's layer order, checked: a module may use only the modules
//! below it (`src/lib.rs` lists them). Every `crate::<module>` path in code
//! (comments aside) is read from the sources and compared with the order, so
//! an upward import fails CI instead of waiting for a reviewer.

use std::path::{Path, PathBuf};

/// Lowest first. `testing` (tiny models for tests) belongs to the engine;
/// `pages` sits above every domain it renders.
const LAYERS: [&str; 11] = [
    "stats",
    "sandbox",
    "results",
    "engine",
    "answer",
    "verify",
    "deliberation",
    "federation",
    "bench",
    "fraud",
    "pages",
];

fn layer(module: &str) -> Option<usize> {
    let module = if module == "testing" {
        "engine"
    } else {
        module
    };
    LAYERS.iter().position(|&l| l == module)
}

/// The layer a source file belongs to, from its path under `src/`.
fn layer_of_file(rel: &Path) -> Option<usize> {
    let mut parts = rel.iter().map(|p| p.to_string_lossy().into_owned());
    let first = parts.next()?;
    layer(first.trim_end_matches(".rs"))
}

/// Every upward `crate::` path in `source`, as (line number, target).
fn upward_uses(source: &str, own: usize) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (i, line) in source.lines().enumerate() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        for (at, _) in line.match_indices("crate::") {
            let rest = &line[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let target = name;
            if layer(&target).is_some_and(|t| t > own) {
                found.push((i + 1, target));
            }
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source folder") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_module_imports_a_layer_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut checked = 0;
    let mut violations = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).expect("under src");
        if rel.starts_with("bin") || rel == Path::new("lib.rs") {
            continue; // the binary and the crate root sit above every layer
        }
        let own = layer_of_file(rel).unwrap_or_else(|| {
            panic!("{} is in no layer: add its module to LAYERS", rel.display())
        });
        let source = std::fs::read_to_string(&file).expect("readable source");
        for (line, target) in upward_uses(&source, own) {
            violations.push(format!(
                "{}:{line} uses {target} (layer {own} → {})",
                rel.display(),
                layer(&target).unwrap_or(0)
            ));
        }
        checked += 1;
    }
    assert!(checked > 50, "only {checked} source files found");
    assert!(
        violations.is_empty(),
        "upward imports:\n{}",
        violations.join("\n")
    );
}

#[test]
fn an_upward_import_is_caught_and_comments_are_not() {
    let engine = layer("engine").expect("engine is a layer");
    let source = "//! See [`crate::verify`] for replay.\n\
                  use crate::stats::median;\n\
                  let origin = crate::verify::artifact::isa_level();\n\
                  let t = crate::pages::TABLES;\n";
    assert_eq!(
        upward_uses(source, engine),
        vec![(3, "verify".to_string()), (4, "pages".to_string())]
    );
    let pages = layer("pages").expect("pages is a layer");
    assert!(upward_uses("use crate::fraud::analysis;", pages).is_empty());
    assert_eq!(layer_of_file(Path::new("pages/fraud.rs")), Some(pages));
    assert_eq!(layer_of_file(Path::new("testing.rs")), Some(engine));
}
