//! A run's log of finished model calls, so that a stopped run loses none of
//! the work of its items in flight.
//!
//! A bench run journals whole items; with `--parallel 8` and items that take
//! an hour each, a stop (a time slice, the end of a session, a kill) used to
//! throw away up to eight half-finished items. Every call an agent's memo
//! completes is appended here (one fsynced JSON line: item, call key, reply),
//! and a resumed run answers those calls from the log instead of running them
//! again. Inference is deterministic, so a reply read back is the reply the
//! call would produce; the recorded timings are the original call's.
//!
//! Opening the log drops the calls of items already in the run's journal
//! (they are never asked again) and a torn last line, so it holds only the
//! unfinished items' calls: a few hundred kilobytes at most.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The file name of the log inside a run directory.
pub const CALLS: &str = "calls.jsonl";

/// Why the call log could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum CallLogError {
    /// Reading, writing or renaming the log file failed.
    #[error("{path}: {source}")]
    Io {
        /// The log file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A complete line of the log is not a valid call record (a torn last line is not an error).
    #[error("{path} line {line}: {message}; delete the file to run those calls again")]
    Corrupt {
        /// The log file.
        path: PathBuf,
        /// The 1-based number of the bad line.
        line: usize,
        /// Why the line does not parse.
        message: String,
    },
}

/// One finished call.
#[derive(Debug, Serialize, Deserialize)]
struct Line {
    item: String,
    key: String,
    reply: serde_json::Value,
}

/// The replies of finished calls by key, and the file new ones go to. Empty
/// and writing nowhere until [`CallLog::open`] attaches it to a run.
#[derive(Default)]
pub struct CallLog {
    state: Mutex<Option<State>>,
}

struct State {
    path: PathBuf,
    file: std::fs::File,
    /// By call key: the item and the reply.
    replies: HashMap<String, (String, serde_json::Value)>,
}

impl State {
    /// Replace the file by the calls in memory (in key order) and append
    /// to the new one.
    fn rewrite(&mut self) -> Result<(), CallLogError> {
        let mut lines: Vec<Line> = self
            .replies
            .iter()
            .map(|(key, (item, reply))| Line {
                item: item.clone(),
                key: key.clone(),
                reply: reply.clone(),
            })
            .collect();
        lines.sort_by(|a, b| a.key.cmp(&b.key));
        self.file = write_lines(&self.path, &lines)?;
        Ok(())
    }
}

/// Write `lines` to `path` through a temporary file and open it to append.
fn write_lines(path: &Path, lines: &[Line]) -> Result<std::fs::File, CallLogError> {
    let io = |source| CallLogError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut text = String::new();
    for line in lines {
        text.push_str(&serde_json::to_string(line).unwrap_or_default());
        text.push('\n');
    }
    let tmp = path.with_extension("jsonl.tmp");
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io)
}

impl CallLog {
    /// Attach the log to `path`: keep the calls of items not in `finished`
    /// (rewriting the file without the others), then append to it.
    pub fn open(&self, path: &Path, finished: &HashSet<String>) -> Result<usize, CallLogError> {
        let kept = read_unfinished(path, finished)?;
        let file = write_lines(path, &kept)?;
        let replies: HashMap<String, (String, serde_json::Value)> = kept
            .into_iter()
            .map(|l| (l.key, (l.item, l.reply)))
            .collect();
        let n = replies.len();
        if let Ok(mut state) = self.state.lock() {
            *state = Some(State {
                path: path.to_path_buf(),
                file,
                replies,
            });
        }
        Ok(n)
    }

    /// `item` is in the run's journal now: drop its calls from memory and
    /// from the file, which so keeps only the items in flight.
    pub fn finish(&self, item: &str) -> Result<(), CallLogError> {
        let Ok(mut guard) = self.state.lock() else {
            return Ok(());
        };
        let Some(state) = guard.as_mut() else {
            return Ok(());
        };
        let before = state.replies.len();
        state.replies.retain(|_, (of, _)| of != item);
        if state.replies.len() == before {
            return Ok(());
        }
        state.rewrite()
    }

    /// The logged reply of the call `key`, if there is one that reads as `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        let state = self.state.lock().ok()?;
        let (_, reply) = state.as_ref()?.replies.get(key)?;
        serde_json::from_value(reply.clone()).ok()
    }

    /// Whether the call `key` has a logged reply.
    pub fn contains(&self, key: &str) -> bool {
        self.state
            .lock()
            .is_ok_and(|s| s.as_ref().is_some_and(|s| s.replies.contains_key(key)))
    }

    /// Log the reply of the call `key` of `item`. Nothing is lost when this
    /// fails (the item's record is still written when it finishes), so the
    /// caller may ignore the error: the call would just run again on resume.
    pub fn put<T: Serialize>(&self, item: &str, key: &str, reply: &T) -> Result<(), CallLogError> {
        let Ok(mut guard) = self.state.lock() else {
            return Ok(());
        };
        let Some(state) = guard.as_mut() else {
            return Ok(());
        };
        let line = Line {
            item: item.to_string(),
            key: key.to_string(),
            reply: serde_json::to_value(reply).unwrap_or_default(),
        };
        let mut text = serde_json::to_string(&line).unwrap_or_default();
        text.push('\n');
        let path = state.path.clone();
        let io = |source| CallLogError::Io { path, source };
        state.file.write_all(text.as_bytes()).map_err(io)?;
        state.file.sync_data().map_err(|source| CallLogError::Io {
            path: state.path.clone(),
            source,
        })?;
        state.replies.insert(line.key, (line.item, line.reply));
        Ok(())
    }
}

/// The complete lines of the log whose item is not finished; a torn last
/// line (a kill mid-write) is dropped, any other unreadable line is an error.
fn read_unfinished(path: &Path, finished: &HashSet<String>) -> Result<Vec<Line>, CallLogError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(CallLogError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let mut kept = Vec::new();
    for (n, raw) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
        let complete = raw.ends_with(b"\n");
        match serde_json::from_slice::<Line>(raw) {
            Ok(line) if complete => {
                if !finished.contains(&line.item) {
                    kept.push(line);
                }
            }
            _ if !complete => break,
            Ok(_) => break,
            Err(e) => {
                return Err(CallLogError::Corrupt {
                    path: path.to_path_buf(),
                    line: n + 1,
                    message: e.to_string(),
                })
            }
        }
    }
    Ok(kept)
}

/// The key of a call: who answers it and a digest of the whole request
/// (the request names its item, round and seed).
pub fn call_key<R: Serialize>(agent: &str, model: &str, kind: &str, request: &R) -> String {
    let json = serde_json::to_string(request).unwrap_or_default();
    let digest = Sha256::digest(json.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{agent}|{model}|{kind}|{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(ids: &[&str]) -> HashSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn replies_survive_a_reopen_and_finished_items_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CALLS);
        let log = CallLog::default();
        // Before it is attached, the log remembers nothing and writes nowhere.
        log.put("a", "k0", &0u32).unwrap();
        assert_eq!(log.get::<u32>("k0"), None);
        assert_eq!(log.open(&path, &finished(&[])).unwrap(), 0);
        log.put("a", "k1", &11u32).unwrap();
        log.put("b", "k2", &22u32).unwrap();
        assert_eq!(log.get::<u32>("k1"), Some(11));
        assert!(log.contains("k1") && !log.contains("k3"));

        let again = CallLog::default();
        assert_eq!(again.open(&path, &finished(&[])).unwrap(), 2);
        assert_eq!(again.get::<u32>("k2"), Some(22));
        // A reply that does not read as the asked type is a miss.
        assert_eq!(again.get::<String>("k2"), None);

        // Item a finished: its call is gone from memory and from the file.
        let later = CallLog::default();
        assert_eq!(later.open(&path, &finished(&["a"])).unwrap(), 1);
        assert_eq!(later.get::<u32>("k1"), None);
        assert_eq!(later.get::<u32>("k2"), Some(22));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1);
        assert!(text.contains("\"item\":\"b\""));

        // Finishing b empties the file; later calls still append to it.
        later.put("c", "k3", &33u32).unwrap();
        later.finish("b").unwrap();
        assert_eq!(later.get::<u32>("k2"), None);
        assert_eq!(later.get::<u32>("k3"), Some(33));
        later.put("c", "k4", &44u32).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(!text.contains("\"item\":\"b\""), "{text}");
        later.finish("c").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_a_corrupt_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CALLS);
        let good = "{\"item\":\"a\",\"key\":\"k\",\"reply\":1}\n";
        std::fs::write(&path, format!("{good}{{\"item\":\"b\",\"ke")).unwrap();
        let log = CallLog::default();
        assert_eq!(log.open(&path, &finished(&[])).unwrap(), 1);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), good);

        std::fs::write(&path, format!("not json\n{good}")).unwrap();
        let err = CallLog::default().open(&path, &finished(&[])).unwrap_err();
        assert!(
            matches!(err, CallLogError::Corrupt { line: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn keys_tell_agents_kinds_and_requests_apart() {
        let k = call_key("a", "m", "propose", &("item-1", 1));
        assert_eq!(k, call_key("a", "m", "propose", &("item-1", 1)));
        assert_ne!(k, call_key("b", "m", "propose", &("item-1", 1)));
        assert_ne!(k, call_key("a", "m", "evaluate", &("item-1", 1)));
        assert_ne!(k, call_key("a", "m", "propose", &("item-1", 2)));
    }
}
