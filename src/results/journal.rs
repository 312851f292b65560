//! Append-only run journals, shared by `bench` and `fraud`: a directory with
//! `meta.json` (a fingerprint of the settings that must not change, plus one
//! entry per invocation) and a JSONL file with one fsynced line per finished
//! unit of work. A killed run loses at most the unit in flight; `--resume`
//! cuts a torn last line and continues without duplicating. A run holds an
//! exclusive lock on `<dir>/.lock` while it writes, so a second run on the
//! same directory is refused instead of interleaving its lines; readers
//! refuse a journal in which a key occurs twice.

use std::collections::HashSet;
use std::io::Write;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Why a run journal could not be opened, resumed, read or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// A file or directory of the journal could not be created, read, written or locked.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The directory already holds a run and `--resume` was not given, the run was made with
    /// other settings, or its `meta.json` does not parse.
    #[error("{0}")]
    Resume(String),
    /// A record or `meta.json` could not be serialized or written.
    #[error("cannot write results: {0}")]
    Write(String),
    /// Another process holds the directory's lock (`<dir>/.lock`).
    #[error("{dir} is in use by another nsed run (it holds {dir}/.lock); wait for it to end or choose another --out")]
    Busy {
        /// The journal's directory.
        dir: PathBuf,
    },
    /// A key occurs twice in the journal's lines.
    #[error("{path}:{line}: `{key}` was already recorded on line {first}; the file was written by two runs at once or edited: remove the duplicate")]
    Duplicate {
        /// The lines file.
        path: PathBuf,
        /// The 1-based line of the repeat.
        line: usize,
        /// The 1-based line where the key was first recorded.
        first: usize,
        /// The repeated key.
        key: String,
    },
    /// A complete line is not a record (a torn last line is cut, not an error).
    #[error("{path}:{line}: not a result line: {message}")]
    Corrupt {
        /// The lines file.
        path: PathBuf,
        /// The 1-based number of the bad line.
        line: usize,
        /// Why the line does not parse.
        message: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One line of a journal, identified by a key unique within the run.
pub trait Record: Serialize + DeserializeOwned {
    /// The record's key, unique within the run (e.g. the item id).
    fn key(&self) -> String;
}

/// `meta.json`: what the run is (`fingerprint`) and who ran it when (`runs`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta<F, I> {
    /// The journal format's id (e.g. `nsed.fraud/v1`).
    pub schema: String,
    /// The settings that must not change across resumes of the run.
    pub fingerprint: F,
    /// One entry per invocation (a resumed run has several).
    pub runs: Vec<I>,
}

impl<F: DeserializeOwned, I: DeserializeOwned> Meta<F, I> {
    /// Read `<dir>/meta.json`.
    pub fn read(dir: &Path) -> Result<Self, JournalError> {
        let path = dir.join("meta.json");
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        serde_json::from_str(&text)
            .map_err(|e| JournalError::Resume(format!("{}: {e}", path.display())))
    }
}

/// An open journal, appending to `<dir>/<lines>`.
pub struct Journal<R> {
    /// The run's directory.
    pub dir: PathBuf,
    /// Keys of the records already written.
    pub done: HashSet<String>,
    path: PathBuf,
    file: std::fs::File,
    /// Held (locked) for as long as the journal is open.
    _lock: std::fs::File,
    _record: PhantomData<R>,
}

impl<R: Record> Journal<R> {
    /// Open a new run in `dir`, or with `resume` continue one made with an
    /// equal fingerprint (the error names the settings that differ).
    pub fn open<F, I>(
        dir: &Path,
        lines: &str,
        schema: &str,
        fingerprint: &F,
        info: I,
        resume: bool,
    ) -> Result<Self, JournalError>
    where
        F: Serialize + DeserializeOwned + PartialEq + Clone,
        I: Serialize + DeserializeOwned,
    {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let lock = lock_dir(dir)?;
        let path = dir.join(lines);
        let meta_path = dir.join("meta.json");
        let mut meta = Meta {
            schema: schema.into(),
            fingerprint: fingerprint.clone(),
            runs: Vec::new(),
        };
        let mut done = HashSet::new();
        if holds_run(dir, lines) {
            if !resume {
                return Err(not_resumed(dir));
            }
            let old: Meta<F, I> = Meta::read(dir)?;
            if &old.fingerprint != fingerprint {
                return Err(other_settings(dir, &old.fingerprint, fingerprint));
            }
            meta.runs = old.runs;
            done = recover::<R>(&path)?;
        }
        meta.runs.push(info);
        let json =
            serde_json::to_vec_pretty(&meta).map_err(|e| JournalError::Write(e.to_string()))?;
        crate::results::output::write_atomic(&meta_path, &json)
            .map_err(|e| JournalError::Write(e.to_string()))?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            done,
            path,
            file,
            _lock: lock,
            _record: PhantomData,
        })
    }

    /// Append one record's line and flush it to disk.
    pub fn append(&mut self, rec: &R) -> Result<(), JournalError> {
        let mut line = serde_json::to_vec(rec).map_err(|e| JournalError::Write(e.to_string()))?;
        line.push(b'\n');
        self.file.write_all(&line).map_err(io(&self.path))?;
        self.file.sync_data().map_err(io(&self.path))?;
        self.done.insert(rec.key());
        Ok(())
    }
}

/// Refuse now what [`Journal::open`] will refuse later, before the caller
/// spends minutes on setup (loading models): `dir` holds a run and `resume`
/// is false, or its recorded settings differ from `fingerprint`'s. `settle`
/// blanks the parts of a fingerprint that are only known after that setup
/// (a build stamp measured on the loaded models), in the recorded one and in
/// `fingerprint` alike; [`Journal::open`] compares them whole.
pub fn preflight<F>(
    dir: &Path,
    lines: &str,
    fingerprint: &F,
    resume: bool,
    settle: impl Fn(&mut F),
) -> Result<(), JournalError>
where
    F: Serialize + DeserializeOwned + PartialEq + Clone,
{
    if !holds_run(dir, lines) {
        return Ok(());
    }
    if !resume {
        return Err(not_resumed(dir));
    }
    let mut old = Meta::<F, serde::de::IgnoredAny>::read(dir)?.fingerprint;
    let mut new = fingerprint.clone();
    settle(&mut old);
    settle(&mut new);
    if old != new {
        return Err(other_settings(dir, &old, &new));
    }
    Ok(())
}

fn holds_run(dir: &Path, lines: &str) -> bool {
    dir.join(lines).exists() || dir.join("meta.json").exists()
}

fn not_resumed(dir: &Path) -> JournalError {
    JournalError::Resume(format!(
        "{} already holds a run: pass --resume to continue it, or choose another --out",
        dir.display()
    ))
}

fn other_settings<F: Serialize>(dir: &Path, old: &F, new: &F) -> JournalError {
    JournalError::Resume(format!(
        "{} was made with different settings ({}); use another --out",
        dir.display(),
        differences(old, new)
    ))
}

/// Take the run directory's lock (released when the file is closed, also
/// when the process is killed), or say which directory is busy.
fn lock_dir(dir: &Path) -> Result<std::fs::File, JournalError> {
    let path = dir.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(JournalError::Busy {
            dir: dir.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(io(&path)(e)),
    }
}

/// Where two serialized values disagree (for a refused resume, the settings
/// two fingerprints disagree on): each differing field by its dotted path,
/// list elements by index when both lists have the same length, with its
/// old and new value (or only its path when the values are too long to read
/// in one line). Empty when they agree.
pub fn differences<F: Serialize>(old: &F, new: &F) -> String {
    let value = |f: &F| serde_json::to_value(f).unwrap_or(serde_json::Value::Null);
    let mut found = Vec::new();
    diff_values("", &value(old), &value(new), &mut found);
    found.join(", ")
}

fn diff_values(
    path: &str,
    old: &serde_json::Value,
    new: &serde_json::Value,
    found: &mut Vec<String>,
) {
    const READABLE: usize = 60;
    if old == new {
        return;
    }
    if let (Some(a), Some(b)) = (old.as_object(), new.as_object()) {
        let null = serde_json::Value::Null;
        let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for k in keys {
            let child = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            diff_values(
                &child,
                a.get(k).unwrap_or(&null),
                b.get(k).unwrap_or(&null),
                found,
            );
        }
        return;
    }
    if let (Some(a), Some(b)) = (old.as_array(), new.as_array()) {
        if a.len() == b.len() {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff_values(&format!("{path}[{i}]"), x, y, found);
            }
            return;
        }
    }
    let name = if path.is_empty() {
        String::new()
    } else {
        format!("`{path}` ")
    };
    let (was, now) = (old.to_string(), new.to_string());
    if was.len() + now.len() <= READABLE {
        found.push(format!("{name}was {was}, now {now}"));
    } else {
        found.push(format!("{name}differs"));
    }
}

/// Keys already done; cut a torn trailing line (a crash mid-write).
pub fn recover<R: Record>(path: &Path) -> Result<HashSet<String>, JournalError> {
    let Ok(bytes) = std::fs::read(path) else {
        return Ok(HashSet::new());
    };
    let mut done = HashSet::new();
    let mut good_len = 0;
    for (n, line) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
        let complete = line.ends_with(b"\n");
        match serde_json::from_slice::<R>(line) {
            Ok(rec) if complete => {
                done.insert(rec.key());
                good_len += line.len();
            }
            Err(_) if !complete => break,
            Ok(_) => break,
            Err(e) => {
                return Err(JournalError::Corrupt {
                    path: path.to_path_buf(),
                    line: n + 1,
                    message: e.to_string(),
                })
            }
        }
    }
    if good_len < bytes.len() {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io(path))?;
        f.set_len(good_len as u64).map_err(io(path))?;
    }
    Ok(done)
}

/// Read every complete record of `<dir>/<lines>`. A last line without its
/// newline is a write in progress (a running experiment) and is left out.
pub fn read<R: Record>(dir: &Path, lines: &str) -> Result<Vec<R>, JournalError> {
    let path = dir.join(lines);
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    let complete = text.rfind('\n').map_or("", |end| &text[..=end]);
    let mut first_line = std::collections::HashMap::new();
    let mut records = Vec::new();
    for (n, l) in complete.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let rec: R = serde_json::from_str(l).map_err(|e| JournalError::Corrupt {
            path: path.clone(),
            line: n + 1,
            message: e.to_string(),
        })?;
        let key = rec.key();
        if let Some(&first) = first_line.get(&key) {
            return Err(JournalError::Duplicate {
                path,
                line: n + 1,
                first,
                key,
            });
        }
        first_line.insert(key, n + 1);
        records.push(rec);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, Deserialize)]
    struct Line {
        id: String,
        value: f64,
    }

    impl Record for Line {
        fn key(&self) -> String {
            self.id.clone()
        }
    }

    fn open(dir: &Path, fp: u32, resume: bool) -> Result<Journal<Line>, JournalError> {
        let info = "run".to_string();
        Journal::open(dir, "lines.jsonl", "test/v1", &fp, info, resume)
    }

    #[test]
    fn preflight_refuses_what_open_will_refuse_and_ignores_the_settled_parts() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A fingerprint: settings (the tens) and a part known only after
        // setup (the units, a stand-in for a build stamp).
        let settle = |fp: &mut u32| *fp -= *fp % 10;
        let check =
            |fp: u32, resume: bool| preflight(dir.path(), "lines.jsonl", &fp, resume, settle);
        // An empty directory: nothing to refuse, with or without --resume.
        assert!(check(41, false).is_ok() && check(41, true).is_ok());
        drop(open(dir.path(), 41, false).expect("new run"));
        // Without --resume, refused; with other settings, refused naming them
        // (settled: the parts known after setup say nothing yet).
        let err = check(41, false).expect_err("needs --resume").to_string();
        assert!(err.contains("pass --resume"), "{err}");
        let err = check(51, true).expect_err("other settings").to_string();
        assert!(err.contains("different settings (was 40, now 50)"), "{err}");
        // Only the settled part differs: left for `open` to judge.
        assert!(check(47, true).is_ok());
        assert!(open(dir.path(), 47, true).is_err());
        assert!(open(dir.path(), 41, true).is_ok());
    }

    #[test]
    fn torn_last_line_is_cut_and_corrupt_lines_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("lines.jsonl");
        let line = |id: &str| {
            serde_json::to_string(&Line {
                id: id.into(),
                value: 1.5,
            })
            .unwrap()
        };
        let mut text = line("a") + "\n";
        let good = text.len();
        text.push_str(&line("b")[..12]);
        std::fs::write(&path, &text).unwrap();
        let done = recover::<Line>(&path).unwrap();
        assert_eq!(done, HashSet::from(["a".to_string()]));
        assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, good);
        std::fs::write(&path, "{\"nope\": 1}\n").unwrap();
        assert!(matches!(
            recover::<Line>(&path),
            Err(JournalError::Corrupt { line: 1, .. })
        ));
    }

    #[test]
    fn a_second_run_on_the_same_directory_is_refused_while_the_first_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = open(dir.path(), 7, false).expect("first run opens");
        let err = open(dir.path(), 7, true).err().expect("busy");
        assert!(matches!(err, JournalError::Busy { .. }), "{err}");
        assert!(err.to_string().contains("another --out"), "{err}");
        drop(first);
        // Released with the first run: the same directory resumes.
        open(dir.path(), 7, true).expect("lock released");
    }

    #[test]
    fn readers_refuse_a_key_recorded_twice() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lines = "{\"id\":\"a\",\"value\":1.0}\n{\"id\":\"b\",\"value\":1.0}\n";
        std::fs::write(dir.path().join("lines.jsonl"), lines).expect("write");
        let records = read::<Line>(dir.path(), "lines.jsonl").expect("distinct keys read");
        assert_eq!(records.len(), 2);
        let twice = format!("{lines}{{\"id\":\"a\",\"value\":2.0}}\n");
        std::fs::write(dir.path().join("lines.jsonl"), twice).expect("write");
        let err = read::<Line>(dir.path(), "lines.jsonl").expect_err("duplicate");
        assert!(
            matches!(
                err,
                JournalError::Duplicate {
                    line: 3,
                    first: 1,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn resume_keeps_records_and_refuses_changed_settings() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut j = open(dir.path(), 7, false).unwrap();
        j.append(&Line {
            id: "x".into(),
            value: 2.0,
        })
        .unwrap();
        drop(j);
        assert!(matches!(
            open(dir.path(), 7, false),
            Err(JournalError::Resume(_))
        ));
        let err = open(dir.path(), 8, true)
            .err()
            .expect("changed fingerprint");
        assert!(err.to_string().contains("was 7, now 8"), "{err}");
        let mut j = open(dir.path(), 7, true).unwrap();
        assert_eq!(j.done, HashSet::from(["x".to_string()]));
        j.append(&Line {
            id: "y".into(),
            value: 3.0,
        })
        .unwrap();
        let all: Vec<Line> = read(dir.path(), "lines.jsonl").unwrap();
        assert_eq!(
            all.iter().map(|l| l.value).collect::<Vec<_>>(),
            vec![2.0, 3.0]
        );
        // A reader during a write sees the finished lines only.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("lines.jsonl"))
            .unwrap();
        f.write_all(b"{\"id\":\"z\",\"va").unwrap();
        let all: Vec<Line> = read(dir.path(), "lines.jsonl").unwrap();
        assert_eq!(all.len(), 2);
        let meta: Meta<u32, String> = Meta::read(dir.path()).unwrap();
        assert_eq!(meta.runs.len(), 2);
    }

    #[test]
    fn differences_name_each_changed_field() {
        let old = serde_json::json!({
            "seed": 42, "model": "a", "roster": "x".repeat(80), "settings": {"max_tokens": 640, "rounds": 2}
        });
        let new = serde_json::json!({
            "seed": 7, "model": "a", "roster": "y".repeat(80), "settings": {"max_tokens": 100, "rounds": 2}, "k": 5
        });
        assert_eq!(
            differences(&old, &new),
            "`k` was null, now 5, `roster` differs, `seed` was 42, now 7, `settings.max_tokens` was 640, now 100"
        );
        assert_eq!(differences(&1u8, &1u8), "");
        // Lists of one length by element; of different lengths whole.
        let (old, new) = (
            serde_json::json!({"agents": [{"t": 0.7}, {"t": 0.8}], "ids": [1, 2]}),
            serde_json::json!({"agents": [{"t": 0.7}, {"t": 0.9}], "ids": [1]}),
        );
        assert_eq!(
            differences(&old, &new),
            "`agents[1].t` was 0.8, now 0.9, `ids` was [1,2], now [1]"
        );
    }
}
