//! Result files written atomically: the bytes go to a temporary file beside
//! the target, which is renamed into place only once complete. A crash or an
//! error never leaves a partial file, and an existing file is replaced whole.

use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {source}")]
pub struct OutputError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Write `bytes` to `path` atomically (same-directory temp file + rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    let err = |source| OutputError {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| {
        err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the path names no file",
        ))
    })?;
    let tmp = dir.join(format!(
        ".{}.{}.partial",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_whole_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.json");
        write_atomic(&path, b"{\"a\":1}").expect("write");
        write_atomic(&path, b"{\"a\":2}").expect("replace");
        assert_eq!(std::fs::read(&path).expect("read"), b"{\"a\":2}");
        let names: Vec<_> = std::fs::read_dir(dir.path()).expect("ls").collect();
        assert_eq!(names.len(), 1, "no temp file left");
    }

    #[test]
    fn unwritable_directory_is_an_error() {
        let err = write_atomic(Path::new("/nonexistent-dir/out.json"), b"x").expect_err("no dir");
        assert!(err.to_string().contains("/nonexistent-dir/out.json"));
    }
}
