//! Standard output that survives a reader who has gone away: `outln!` for
//! results, and the closed-pipe state the handlers consult.

use std::io::Write;

/// `println!` for results on standard output that survives a reader who has
/// gone away (`nsed verify … | head`): instead of panicking on EPIPE, further
/// output is dropped and the command runs to its end, so its exit code (a
/// verdict: 1 for fraud or a failed program) and its result files stand.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::stdout::write(format_args!($($arg)*))
    };
}

/// Set once standard output's reader has gone: nothing more is written there.
static STDOUT_CLOSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub(crate) fn write(line: std::fmt::Arguments) {
    if closed() {
        return;
    }
    let mut out = std::io::stdout().lock();
    let written = out.write_fmt(line).and_then(|()| out.write_all(b"\n"));
    note_written(written);
}

pub(crate) fn closed() -> bool {
    STDOUT_CLOSED.load(std::sync::atomic::Ordering::Relaxed)
}

/// A closed pipe silences standard output (the work goes on); another write
/// error (a full disk behind a redirect) stops the run with exit 2.
pub(crate) fn note_written(result: std::io::Result<()>) {
    match result {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            STDOUT_CLOSED.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Err(e) => {
            eprintln!("error: cannot write to standard output: {e}");
            std::process::exit(2);
        }
    }
}
