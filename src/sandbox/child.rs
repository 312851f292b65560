//! What the forked child does to itself between `fork` and `exec`.
//!
//! Runs in the child of a multi-threaded parent, so only async-signal-safe
//! calls: raw syscalls through `libc`, static C strings, no allocation.

use std::io;

/// The protections to apply, decided once by the probe (see `Sandbox::new`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Setup {
    /// `unshare(CLONE_NEWNET)`: a network namespace with no interface up,
    /// so neither loopback nor the outside is reachable.
    pub net_namespace: bool,
    /// `unshare(CLONE_NEWNS)` and fresh tmpfs over the world-writable
    /// directories, so writes "outside" land in memory that dies with the run.
    pub private_tmp: bool,
    /// Switch to this uid/gid (only possible as root): process limits hold,
    /// the parent cannot be signalled and nsed's files cannot be touched.
    pub uid: Option<u32>,
}

/// Resource limits in the units `setrlimit` takes.
#[derive(Clone, Copy, Debug)]
pub(super) struct RawLimits {
    pub address_space: u64,
    pub cpu_seconds: u64,
    pub file_size: u64,
    pub open_files: u64,
    pub processes: u64,
}

/// World-writable places a hostile program could leave files in.
const SHARED_WRITABLE: [&std::ffi::CStr; 4] = [c"/tmp", c"/var/tmp", c"/dev/shm", c"/run/lock"];

fn check(result: libc::c_int) -> io::Result<()> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn set_limit(resource: libc::__rlimit_resource_t, value: u64) -> io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: setrlimit reads a valid, initialized struct.
    check(unsafe { libc::setrlimit(resource, &limit) })
}

/// Apply `setup` and `limits` to the calling (child) process. The working
/// directory was already set by `Command::current_dir`, before this runs.
///
/// # Safety
/// Call only in the child between fork and exec (`CommandExt::pre_exec`).
pub(super) unsafe fn enter(setup: Setup, limits: RawLimits) -> io::Result<()> {
    // Own session and process group: one kill reaches every descendant that
    // does not call setsid itself (those are found by uid, see `reap`).
    check(libc::setsid())?;
    let mut flags = 0;
    if setup.net_namespace {
        flags |= libc::CLONE_NEWNET;
    }
    if setup.private_tmp {
        flags |= libc::CLONE_NEWNS;
    }
    if flags != 0 {
        check(libc::unshare(flags))?;
    }
    if setup.private_tmp {
        private_tmp()?;
    }
    set_limit(libc::RLIMIT_AS, limits.address_space)?;
    set_limit(libc::RLIMIT_CPU, limits.cpu_seconds)?;
    set_limit(libc::RLIMIT_FSIZE, limits.file_size)?;
    set_limit(libc::RLIMIT_NOFILE, limits.open_files)?;
    set_limit(libc::RLIMIT_CORE, 0)?;
    if let Some(uid) = setup.uid {
        // RLIMIT_NPROC counts the processes of the real uid; it is not
        // enforced for root, hence the switch below.
        set_limit(libc::RLIMIT_NPROC, limits.processes)?;
        check(libc::setgroups(0, std::ptr::null()))?;
        check(libc::setgid(uid))?;
        check(libc::setuid(uid))?;
    }
    // Set after the uid change, which clears it: if nsed dies, so does the run.
    check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0))?;
    Ok(())
}

/// Where the run's directory appears when /tmp is private.
const RUN_DIR: &std::ffi::CStr = c"/tmp/sandbox";

/// Make this mount namespace's mounts private (nothing propagates back to
/// the host), cover each world-writable directory with a small tmpfs, and
/// bind the run's directory (the current one, which may now be covered) at
/// `/tmp/sandbox`, so that absolute paths to it resolve too.
unsafe fn private_tmp() -> io::Result<()> {
    let none = std::ptr::null();
    check(libc::mount(
        c"none".as_ptr(),
        c"/".as_ptr(),
        none,
        libc::MS_REC | libc::MS_PRIVATE,
        std::ptr::null(),
    ))?;
    for dir in SHARED_WRITABLE {
        let result = libc::mount(
            c"tmpfs".as_ptr(),
            dir.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            c"size=64m,mode=1777".as_ptr().cast(),
        );
        if result < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::ENOENT) {
            return Err(io::Error::last_os_error());
        }
    }
    check(libc::mkdir(RUN_DIR.as_ptr(), 0o755))?;
    check(libc::mount(
        c".".as_ptr(),
        RUN_DIR.as_ptr(),
        none,
        libc::MS_BIND,
        std::ptr::null(),
    ))?;
    check(libc::chdir(RUN_DIR.as_ptr()))
}
