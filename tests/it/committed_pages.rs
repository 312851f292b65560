//! The committed results pages are what `nsed report tables` builds from the
//! committed data, byte for byte: every table, CSV and generated finding on
//! `results/*.md`, `results/README.md` and the findings block of the
//! project's README.md is recomputed here from the runs' samples and items
//! (the targets from the fraud samples, the distinct-node counts, the paired
//! tests of the deliberation runs), so none can be typed by hand or go stale
//! when a run grows. A page that differs fails with the command that
//! rebuilds it.

use std::path::{Path, PathBuf};
use std::process::Command;

use nsed::pages::TABLES;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// `nsed report tables` in `dir`, on its `results/`, with the findings
/// written into its README.md.
fn rebuild(dir: &Path, only: Option<&str>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nsed"));
    cmd.current_dir(dir)
        .args(["report", "tables", "--results", "results"])
        .args(["--findings-into", "README.md"]);
    if let Some(only) = only {
        cmd.args(["--only", only]);
    }
    let out = cmd.output().expect("run nsed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn committed_pages_rebuild_byte_for_byte_from_the_committed_data() {
    let work = tempfile::tempdir().expect("tempdir");
    copy_tree(&repo().join("results"), &work.path().join("results"));
    std::fs::copy(repo().join("README.md"), work.path().join("README.md")).expect("README");
    rebuild(work.path(), None);
    let mut files: Vec<PathBuf> = TABLES
        .iter()
        .flat_map(|t| [format!("results/{t}.md"), format!("results/{t}.csv")])
        .map(PathBuf::from)
        .collect();
    files.push("results/README.md".into());
    files.push("README.md".into());
    for file in &files {
        let committed = read(&repo().join(file));
        let rebuilt = read(&work.path().join(file));
        assert!(
            committed == rebuilt,
            "{} is not what the committed data give; rebuild it with \
             `nsed report tables --results results --findings-into README.md` and commit the result",
            file.display()
        );
    }
}

#[test]
fn a_changed_run_changes_its_page() {
    // Negative control: one GSM8K item fewer in the headline run changes
    // the deliberation page (its n, its paired tests, its findings).
    let work = tempfile::tempdir().expect("tempdir");
    copy_tree(&repo().join("results"), &work.path().join("results"));
    std::fs::copy(repo().join("README.md"), work.path().join("README.md")).expect("README");
    let items = work.path().join("results/runs/gsm8k-high-perf/items.jsonl");
    let text = read(&items);
    let kept: Vec<&str> = text.lines().collect();
    std::fs::write(&items, format!("{}\n", kept[..kept.len() - 1].join("\n"))).expect("write");
    rebuild(work.path(), Some("deliberation"));
    let committed = read(&repo().join("results/deliberation.md"));
    let rebuilt = read(&work.path().join("results/deliberation.md"));
    assert_ne!(committed, rebuilt, "the page did not follow its data");
    let n = kept.len() - 1;
    assert!(
        rebuilt.contains(&format!("n = {n} of 300 planned")),
        "the generated headline gives the new n"
    );
    assert_ne!(
        read(&repo().join("README.md")),
        read(&work.path().join("README.md")),
        "the README's findings follow the page"
    );
}
