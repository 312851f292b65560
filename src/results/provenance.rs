//! Provenance of a results file: which commit, version, CPU, kernel path,
//! models and command produced it, and when.

use serde::{Deserialize, Serialize};

/// What produced a run, stored in its `meta.json` beside the settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    /// When the invocation started, UTC (`YYYY-MM-DDTHH:MM:SSZ`).
    pub started: String,
    /// The git commit of the code (`-dirty` with uncommitted changes; `unknown` outside git).
    pub commit: String,
    /// The nsed crate version.
    pub nsed_version: String,
    /// The CPU model name (`unknown` when it cannot be read).
    pub host_cpu: String,
    /// The qmm kernel path that ran (`avx2`, `avx512vnni`, …); every path
    /// gives the same bits, so it explains speed, not results.
    #[serde(default)]
    pub kernel: String,
    /// Worker threads of the compute pool.
    pub threads: usize,
    /// `(model id, sha256)` of every model the run used.
    pub models: Vec<(String, String)>,
    /// The command line, program name first.
    pub command: Vec<String>,
    /// Code sets: the protections the sandbox actually applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<crate::sandbox::Protections>,
}

/// The git commit of the source tree nsed runs from (`-dirty` when tracked
/// files outside `results/` have changes).
pub fn commit() -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "HEAD"]) {
        Some(head) => {
            // Results written by running experiments do not make the code dirty.
            let dirty = git(&[
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ".",
                ":!results",
            ])
            .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{head}-dirty")
            } else {
                head
            }
        }
        None => "unknown".into(),
    }
}

/// The git commit this binary was built from (`-dirty` when tracked files
/// outside `results/` had changes; `unknown` outside a git checkout).
pub fn build_commit() -> &'static str {
    env!("NSED_BUILD_COMMIT")
}

/// The CPU model name (Linux), for results files.
pub fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Now, as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    utc_timestamp(secs)
}

/// A Unix time (seconds) as `YYYY-MM-DDTHH:MM:SSZ`; the epoch when it is
/// outside the calendar `time` handles (years ±9999).
pub fn utc_timestamp(secs: i64) -> String {
    let t =
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_of_known_timestamps() {
        // Values from Python's datetime.fromtimestamp(s, timezone.utc).
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_timestamp(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_timestamp(1_798_761_599), "2026-12-31T23:59:59Z");
        assert_eq!(utc_timestamp(4_102_444_800), "2100-01-01T00:00:00Z");
        assert_eq!(utc_timestamp(i64::MAX), "1970-01-01T00:00:00Z");
        let now = utc_now();
        assert!(now.as_str() > "2026-01-01" && now.ends_with('Z'), "{now}");
    }
}
