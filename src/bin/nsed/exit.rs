//! nsed's exit codes, and which one a failed command ends with: 2 when the
//! input is at fault (arguments, files, data — the message names the fix),
//! 3 when nsed or the machine is (a bug, a worker that died, an I/O failure
//! such as a full disk). Verdicts (1) are chosen by their commands.

use std::io::ErrorKind;
use std::process::ExitCode;

/// Usage or input error: fix the command or its files.
pub const INPUT: u8 = 2;
/// Internal failure: a bug in nsed or a failure of the machine.
pub const INTERNAL: u8 = 3;

/// nsed's own failure, not the input's: a worker or model thread that died.
#[derive(Debug, thiserror::Error)]
#[error("internal error: {0} (a bug in nsed; please report it with the command line)")]
pub struct Internal(pub String);

/// The exit code of a failed command.
pub fn code_of(error: &anyhow::Error) -> ExitCode {
    ExitCode::from(number(error))
}

fn number(error: &anyhow::Error) -> u8 {
    if is_internal(error) {
        INTERNAL
    } else {
        INPUT
    }
}

fn is_internal(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.is::<Internal>()
            || matches!(
                cause.downcast_ref::<nsed::engine::batch::BatchError>(),
                Some(nsed::engine::batch::BatchError::Stopped { .. })
            )
            || matches!(
                cause.downcast_ref::<nsed::bench::RunError>(),
                Some(nsed::bench::RunError::WorkerPanicked)
            )
            || cause
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| !is_input_io(e.kind()))
    })
}

/// I/O errors that name a problem with the paths the user gave.
fn is_input_io(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::NotFound
            | ErrorKind::PermissionDenied
            | ErrorKind::AlreadyExists
            | ErrorKind::InvalidInput
            | ErrorKind::InvalidData
            | ErrorKind::UnexpectedEof
            | ErrorKind::IsADirectory
            | ErrorKind::NotADirectory
            | ErrorKind::ReadOnlyFilesystem
            | ErrorKind::DirectoryNotEmpty
            | ErrorKind::InvalidFilename
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(e: anyhow::Error) -> u8 {
        number(&e)
    }

    #[test]
    fn input_problems_are_2_and_internal_ones_3() {
        let missing = std::io::Error::new(ErrorKind::NotFound, "no such file");
        assert_eq!(
            code(anyhow::Error::new(missing).context("reading x")),
            INPUT
        );
        assert_eq!(code(anyhow::anyhow!("--limit must be > 0")), INPUT);
        let full = std::io::Error::new(ErrorKind::StorageFull, "no space left");
        assert_eq!(
            code(anyhow::Error::new(full).context("writing y")),
            INTERNAL
        );
        let died = Internal("a bench worker panicked".into());
        assert_eq!(code(anyhow::Error::new(died).context("bench")), INTERNAL);
        let stopped = nsed::engine::batch::BatchError::Stopped { model: "m".into() };
        assert_eq!(code(anyhow::Error::new(stopped)), INTERNAL);
        let panicked = nsed::bench::RunError::WorkerPanicked;
        assert_eq!(code(anyhow::Error::new(panicked)), INTERNAL);
        let empty = nsed::bench::RunError::NoItems {
            set: "gsm8k".into(),
            available: 1319,
        };
        assert_eq!(code(anyhow::Error::new(empty)), INPUT);
    }
}
