//! Result files written atomically and safely: the bytes go to a new file
//! beside the target, fsynced, then renamed into place. On Linux that file
//! is unnamed while it is written (`O_TMPFILE`) and gets a name, random and
//! never following or replacing what is there, only when complete, so even
//! SIGKILL mid-write leaves nothing behind; elsewhere it is created
//! exclusively under an unpredictable name (a planted symlink cannot
//! redirect the write). A crash or an error never leaves a partial file at
//! the target, an interrupt (SIGINT, SIGTERM, SIGHUP) removes the temporary
//! file, and only regular files are ever replaced (never a device, FIFO,
//! directory or link).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A result file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {source}")]
pub struct OutputError {
    /// The target file.
    pub path: PathBuf,
    /// The underlying I/O error.
    pub source: std::io::Error,
}

/// Temporary files being written now, removed by the signal handler.
static IN_FLIGHT: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Write `bytes` to `path` atomically, readable by everyone (mode 0644 less
/// the umask): results, tables, artifacts.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    write_with_mode(path, bytes, 0o644, Replace::Yes)
}

/// Write `bytes` to a new file at `path` readable by its owner only (0600),
/// atomically: a key file is either whole or absent, never empty, and an
/// existing file is never replaced (also not one created meanwhile).
pub fn write_private_new(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    if path.symlink_metadata().is_ok() {
        return Err(OutputError {
            path: path.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "the file exists; it is kept (choose another path or remove it)",
            ),
        });
    }
    write_with_mode(path, bytes, 0o600, Replace::No)
}

/// Whether the final rename may replace a file at the target.
#[derive(Clone, Copy)]
enum Replace {
    Yes,
    No,
}

fn write_with_mode(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    replace: Replace,
) -> Result<(), OutputError> {
    let err = |source| OutputError {
        path: path.to_path_buf(),
        source,
    };
    refuse_non_regular(path).map_err(err)?;
    let (dir, name) = split(path).map_err(err)?;
    let prefix = format!(".{name}.");
    let temp_name = || {
        let mut builder = tempfile::Builder::new();
        builder
            .prefix(&prefix)
            .suffix(".partial")
            .permissions(std::fs::Permissions::from_mode(mode));
        builder
    };
    let tmp = match write_unnamed(&dir, temp_name(), bytes, mode) {
        Ok(tmp) => tmp,
        // Not supported by this file system or kernel: a named temp file.
        Err(Unnamed::Unsupported) => write_named(&dir, temp_name(), bytes).map_err(err)?,
        Err(Unnamed::Io(e)) => return Err(err(e)),
    };
    place(tmp, path, &dir, replace).map_err(err)
}

enum Unnamed {
    Unsupported,
    Io(std::io::Error),
}

/// Write through an `O_TMPFILE` file in `dir` and, once complete, link it
/// under a fresh temporary name (`linkat` neither follows nor replaces an
/// existing entry; `tempfile` draws the names and retries).
fn write_unnamed(
    dir: &Path,
    names: tempfile::Builder,
    bytes: &[u8],
    mode: u32,
) -> Result<tempfile::TempPath, Unnamed> {
    use rustix::fs::{linkat, openat, AtFlags, Mode, OFlags, CWD};
    use rustix::io::Errno;
    let flags = OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC;
    let fd = match openat(CWD, dir, flags, Mode::from_raw_mode(mode)) {
        Ok(fd) => fd,
        Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL | Errno::NOSYS) => {
            return Err(Unnamed::Unsupported)
        }
        Err(e) => return Err(Unnamed::Io(e.into())),
    };
    let mut file = std::fs::File::from(fd);
    file.write_all(bytes).map_err(Unnamed::Io)?;
    file.sync_all().map_err(Unnamed::Io)?;
    let proc_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file));
    let linked = names.make_in(dir, |tmp| {
        linkat(CWD, &proc_path, CWD, tmp, AtFlags::SYMLINK_FOLLOW).map_err(std::io::Error::from)
    });
    match linked {
        Ok(linked) => Ok(linked.into_temp_path()),
        // No /proc to name the file by: a named temp file instead.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Err(Unnamed::Unsupported),
        Err(e) => Err(Unnamed::Io(e)),
    }
}

/// Write through a new file under a fresh temporary name (`O_EXCL`), listed
/// for the signal handler while it is written.
fn write_named(
    dir: &Path,
    names: tempfile::Builder,
    bytes: &[u8],
) -> std::io::Result<tempfile::TempPath> {
    let mut tmp = names.tempfile_in(dir)?;
    track(tmp.path(), true);
    let written = tmp.write_all(bytes).and_then(|()| tmp.as_file().sync_all());
    track(tmp.path(), false);
    written?;
    Ok(tmp.into_temp_path())
}

/// Rename the complete temporary file over `path` (or, without `replace`,
/// only where nothing is) and make the rename durable. Listed for the signal
/// handler meanwhile; removed if the rename fails.
fn place(
    tmp: tempfile::TempPath,
    path: &Path,
    dir: &Path,
    replace: Replace,
) -> std::io::Result<()> {
    track(&tmp, true);
    let renamed = match replace {
        Replace::Yes => std::fs::rename(&tmp, path),
        Replace::No => rustix::fs::renameat_with(
            rustix::fs::CWD,
            &*tmp,
            rustix::fs::CWD,
            path,
            rustix::fs::RenameFlags::NOREPLACE,
        )
        .map_err(std::io::Error::from),
    };
    track(&tmp, false);
    renamed?;
    // Renamed away: nothing is left for the guard to remove.
    let _ = tmp.keep();
    std::fs::File::open(dir)?.sync_all()
}

/// Only a regular file (or nothing) may be replaced: writing "to" a device
/// or FIFO would replace it with a file, and to a symlink would replace the
/// link where the user meant its target.
fn refuse_non_regular(path: &Path) -> std::io::Result<()> {
    match path.symlink_metadata() {
        Ok(meta) if !meta.file_type().is_file() => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "it is not a regular file (a device, FIFO, directory or symlink); give the path of a new or regular file",
        )),
        _ => Ok(()),
    }
}

fn split(path: &Path) -> std::io::Result<(PathBuf, String)> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path names no file")
    })?;
    Ok((dir, name.to_string_lossy().into_owned()))
}

fn track(tmp: &Path, live: bool) {
    let mut list = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
    if live {
        list.push(tmp.to_path_buf());
    } else {
        list.retain(|p| p != tmp);
    }
}

/// On SIGINT, SIGTERM or SIGHUP: remove the temporary files being written,
/// then end with the conventional status (128 + signal). Call once from the
/// binary's `main`; a handler thread does the work, so no allocation or lock
/// happens inside the signal handler itself.
pub fn remove_partials_on_signal() -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new()
        .name("nsed-signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                let list = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
                for tmp in list.iter() {
                    let _ = std::fs::remove_file(tmp);
                }
                std::process::exit(128 + signal);
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writes_whole_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.json");
        write_atomic(&path, b"{\"a\":1}").expect("write");
        write_atomic(&path, b"{\"a\":2}").expect("replace");
        assert_eq!(std::fs::read(&path).expect("read"), b"{\"a\":2}");
        assert_eq!(names(dir.path()), ["out.json"]);
    }

    #[test]
    fn unwritable_directory_is_an_error() {
        let err = write_atomic(Path::new("/nonexistent-dir/out.json"), b"x").expect_err("no dir");
        assert!(err.to_string().contains("/nonexistent-dir/out.json"));
    }

    #[test]
    fn devices_fifos_and_links_are_never_replaced() {
        let err = write_atomic(Path::new("/dev/full"), b"x").expect_err("a device");
        assert!(err.to_string().contains("not a regular file"), "{err}");
        assert!(Path::new("/dev/full")
            .metadata()
            .is_ok_and(|m| !m.file_type().is_file()));
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").expect("victim");
        let link = dir.path().join("out.json");
        std::os::unix::fs::symlink(&victim, &link).expect("symlink");
        write_atomic(&link, b"x").expect_err("a symlink");
        assert_eq!(std::fs::read_to_string(&victim).expect("read"), "keep");
        let fifo = dir.path().join("fifo");
        let c_path = std::ffi::CString::new(fifo.to_str().expect("utf-8")).expect("c path");
        // SAFETY: mkfifo reads a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        write_atomic(&fifo, b"x").expect_err("a FIFO");
        assert!(fifo.symlink_metadata().is_ok_and(|m| !m.is_file()));
    }

    #[test]
    fn a_planted_link_at_the_old_temp_name_is_not_followed() {
        // The temp name used to be `.NAME.PID.partial`: predictable, so a
        // link planted there redirected the write.
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").expect("victim");
        let planted = dir
            .path()
            .join(format!(".out.json.{}.partial", std::process::id()));
        std::os::unix::fs::symlink(&victim, &planted).expect("symlink");
        write_atomic(&dir.path().join("out.json"), b"new").expect("write");
        assert_eq!(std::fs::read_to_string(&victim).expect("read"), "keep");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("out.json")).expect("read"),
            "new"
        );
    }

    #[test]
    fn unnamed_temp_files_are_used_where_the_kernel_has_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.json");
        match write_unnamed(dir.path(), tempfile::Builder::new(), b"whole", 0o644) {
            Ok(tmp) => {
                place(tmp, &path, dir.path(), Replace::Yes).expect("placed");
                assert_eq!(std::fs::read(&path).expect("read"), b"whole");
                assert_eq!(names(dir.path()), ["out.json"]);
            }
            Err(Unnamed::Unsupported) => {
                eprintln!("O_TMPFILE unsupported here: named temp files are used");
            }
            Err(Unnamed::Io(e)) => panic!("{e}"),
        }
    }

    #[test]
    fn private_files_are_owner_only_and_never_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("agent.key");
        write_private_new(&key, b"secret").expect("write");
        let mode = key.metadata().expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        write_private_new(&key, b"other").expect_err("exists");
        assert_eq!(std::fs::read(&key).expect("read"), b"secret");
        assert_eq!(names(dir.path()), ["agent.key"]);
    }
}
