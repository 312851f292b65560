//! What the forked child does to itself between `fork` and `exec`.
//!
//! Runs in the child of a multi-threaded parent, so only async-signal-safe
//! calls: raw syscalls through `libc`, static C strings, stack buffers, no
//! allocation.
//!
//! With a private root (the strongest setup) three processes take part:
//!
//! - the **keeper**, nsed's direct child: it enters new PID, mount and
//!   network namespaces (as an ordinary user, inside a new user namespace
//!   that maps only the caller's own uid and gid, so no setuid helper is
//!   needed and the program holds no capability once it execs), closes
//!   every inherited descriptor, forks the init and waits for it;
//! - the **init**, PID 1 of the new namespace: it builds the minimal
//!   read-only root (below), forks the program, reaps, and once the program
//!   has ended kills and counts whatever it left running, then writes one
//!   [`Report`] to nsed. When it exits the kernel kills every process left in
//!   the namespace, whatever it did with `setsid`;
//! - the **program**: it takes the limits and the private uid, marks every
//!   descriptor above 2 close-on-exec, and returns to `exec` Python.
//!
//! The root is a small tmpfs holding read-only binds of `/usr` (the
//! interpreter and its standard library) and `/etc/ld.so.cache`, the
//! distribution's `/bin`-style links, `null`, `zero`, `full`, `random`,
//! `urandom` under `/dev`, a private `/proc` that shows only the run's own
//! processes (`hidepid=2`), and a size-limited tmpfs at `/tmp` holding the
//! working directory `/tmp/sandbox` with a copy of the program. Nothing else
//! of the host is visible, and the program can write at most the tmpfs size.

// Every function here runs between fork and exec and is an `unsafe fn`
// whose `# Safety` section states that contract; its body is a sequence of
// raw syscalls on stack buffers and static C strings, each sound under that
// same contract. Wrapping each of the ~120 calls in its own block would
// repeat one note ~120 times, so this module alone opts out of
// `unsafe_op_in_unsafe_fn` (the rest of the workspace denies it).
#![allow(unsafe_op_in_unsafe_fn)]

use std::ffi::CStr;
use std::io;

/// The protections to apply, decided once by the probe (see `Sandbox::new`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Setup {
    /// `unshare(CLONE_NEWNET)`: a network namespace with no interface up,
    /// so neither loopback nor the outside is reachable.
    pub net_namespace: bool,
    /// `unshare(CLONE_NEWNS)` and fresh tmpfs over the world-writable
    /// directories, so writes "outside" land in memory that dies with the run
    /// (the fallback where a private root is refused).
    pub private_tmp: bool,
    /// A PID namespace whose init ends every descendant, and the minimal
    /// read-only root described above (implies its own mount namespace).
    pub private_root: bool,
    /// Switch to this uid/gid (only possible as root): process limits hold,
    /// the parent cannot be signalled and nsed's files cannot be touched.
    pub uid: Option<u32>,
    /// Create the namespaces inside a new user namespace that maps the
    /// caller's own ids (how an ordinary user gets a private root).
    pub user_namespace: Option<IdMap>,
    /// Install the Landlock ruleset and seccomp filters (see `floor`).
    pub floor: bool,
}

/// The caller's uid and gid, mapped to themselves in a user namespace:
/// unprivileged inside as outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct IdMap {
    pub uid: u32,
    pub gid: u32,
}

/// Resource limits in the units `setrlimit` takes.
#[derive(Clone, Copy, Debug)]
pub(super) struct RawLimits {
    pub address_space: u64,
    pub cpu_seconds: u64,
    pub file_size: u64,
    pub open_files: u64,
    /// RLIMIT_NPROC, or `u64::MAX` to leave it alone (root without a
    /// private uid, where it is not enforced).
    pub processes: u64,
    /// Size of the private root's writable tmpfs, bytes.
    pub disk: u64,
}

/// What the init tells nsed through the report pipe: 12 bytes, a tag then
/// two numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Report {
    /// The program ended with this `wait` status; `leftovers` processes it
    /// left running were killed.
    Ended { status: i32, leftovers: u32 },
    /// A setup step failed with this errno (before the program ran).
    SetupFailed { step: Step, errno: i32 },
}

pub(super) const REPORT_BYTES: usize = 12;

impl Report {
    fn to_bytes(self) -> [u8; REPORT_BYTES] {
        let (tag, a, b) = match self {
            Report::Ended { status, leftovers } => (1u32, status, leftovers),
            Report::SetupFailed { step, errno } => (2u32, errno, step as u32),
        };
        let mut out = [0u8; REPORT_BYTES];
        out[..4].copy_from_slice(&tag.to_le_bytes());
        out[4..8].copy_from_slice(&a.to_le_bytes());
        out[8..].copy_from_slice(&b.to_le_bytes());
        out
    }

    pub(super) fn from_bytes(bytes: &[u8; REPORT_BYTES]) -> Option<Report> {
        let word = |i: usize| [bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]];
        let (tag, a, b) = (
            u32::from_le_bytes(word(0)),
            i32::from_le_bytes(word(4)),
            u32::from_le_bytes(word(8)),
        );
        match tag {
            1 => Some(Report::Ended {
                status: a,
                leftovers: b,
            }),
            2 => Some(Report::SetupFailed {
                step: Step::from_u32(b)?,
                errno: a,
            }),
            _ => None,
        }
    }
}

/// The setup steps, named in a failure report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(super) enum Step {
    Namespaces = 1,
    Fork,
    PrivateMounts,
    RootTmpfs,
    BindUsr,
    SystemLinks,
    Devices,
    Proc,
    TmpTmpfs,
    CopyProgram,
    PivotRoot,
    ReadOnlyRoot,
    Limits,
    Uid,
    Descriptors,
    UserNamespace,
    Landlock,
    Seccomp,
}

impl Step {
    fn from_u32(v: u32) -> Option<Step> {
        use Step::*;
        [
            Namespaces,
            Fork,
            PrivateMounts,
            RootTmpfs,
            BindUsr,
            SystemLinks,
            Devices,
            Proc,
            TmpTmpfs,
            CopyProgram,
            PivotRoot,
            ReadOnlyRoot,
            Limits,
            Uid,
            Descriptors,
            UserNamespace,
            Landlock,
            Seccomp,
        ]
        .into_iter()
        .find(|s| *s as u32 == v)
    }

    pub(super) fn describe(self) -> &'static str {
        match self {
            Step::Namespaces => "unshare (PID, mount, network namespaces)",
            Step::Fork => "fork of the namespace's init or program",
            Step::PrivateMounts => "making mounts private",
            Step::RootTmpfs => "tmpfs for the private root",
            Step::BindUsr => "read-only bind of /usr",
            Step::SystemLinks => "/bin, /lib links or binds",
            Step::Devices => "binding /dev/null and friends",
            Step::Proc => "private /proc",
            Step::TmpTmpfs => "size-limited tmpfs at /tmp",
            Step::CopyProgram => "copying the program into the private root",
            Step::PivotRoot => "pivot_root",
            Step::ReadOnlyRoot => "remounting the root read-only",
            Step::Limits => "setrlimit",
            Step::Uid => "switching to the private uid",
            Step::Descriptors => "closing inherited descriptors",
            Step::UserNamespace => "mapping the caller's ids in the user namespace",
            Step::Landlock => "Landlock restriction",
            Step::Seccomp => "seccomp filter",
        }
    }
}

/// World-writable places a hostile program could leave files in.
const SHARED_WRITABLE: [&CStr; 4] = [c"/tmp", c"/var/tmp", c"/dev/shm", c"/run/lock"];

/// Where the run's directory appears inside the sandbox.
const RUN_DIR: &CStr = c"/tmp/sandbox";

fn check(result: libc::c_int) -> io::Result<()> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `check`, naming the step on failure.
fn step(result: libc::c_int, step: Step) -> Result<(), (Step, i32)> {
    if result < 0 {
        Err((step, errno()))
    } else {
        Ok(())
    }
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
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
/// directory was already set by `Command::current_dir`, before this runs:
/// it is the run's host directory, holding `main.py` and an empty `root`.
/// `report` is the write end of nsed's report pipe; `floor` the Landlock
/// ruleset descriptor and seccomp filters when `setup.floor`. With a private
/// root, only the program's process returns from here (to `exec`); the
/// keeper and the init end inside.
///
/// # Safety
/// Call only in the child between fork and exec (`CommandExt::pre_exec`).
pub(super) unsafe fn enter(
    setup: Setup,
    limits: RawLimits,
    report: libc::c_int,
    floor: Option<(libc::c_int, &[seccompiler::BpfProgram])>,
) -> io::Result<()> {
    // Own session and process group: one kill reaches every descendant that
    // does not call setsid itself (those die with the PID namespace's init,
    // or are found by uid, see `reap`).
    check(libc::setsid())?;
    // If nsed dies, so does the run.
    check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0))?;
    if setup.private_root {
        become_program_in_private_root(setup, limits, report);
    } else {
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
    }
    program(setup, limits)
        .and_then(|()| match floor {
            Some((ruleset, filters)) => {
                super::floor::apply_in_child(ruleset, filters).map_err(|e| match e {
                    super::floor::ApplyError::Landlock(errno) => (Step::Landlock, errno),
                    super::floor::ApplyError::Seccomp(errno) => (Step::Seccomp, errno),
                })
            }
            None => Ok(()),
        })
        .map_err(|(failed, e)| {
            write_report(
                report,
                Report::SetupFailed {
                    step: failed,
                    errno: e,
                },
            );
            io::Error::from_raw_os_error(e)
        })
}

/// Keeper, then init, then program: returns only in the program's process.
///
/// # Safety
/// Only in nsed's forked child (the keeper), right after fork, with `report`
/// the write end of the report pipe; it returns only in the program's process.
unsafe fn become_program_in_private_root(setup: Setup, limits: RawLimits, report: libc::c_int) {
    // Descriptors nsed had open (other runs' pipes, files of the caller)
    // are closed here, since the keeper and the init never exec. Only the
    // standard streams and the report pipe stay.
    close_all_but(report);
    let mut flags = libc::CLONE_NEWPID | libc::CLONE_NEWNS;
    if setup.net_namespace {
        flags |= libc::CLONE_NEWNET;
    }
    if setup.user_namespace.is_some() {
        // Created first by the kernel, so it owns the other namespaces and
        // this process holds every capability in them (and none outside).
        flags |= libc::CLONE_NEWUSER;
    }
    if libc::unshare(flags) < 0 {
        fail(report, Step::Namespaces, errno());
    }
    if let Some(ids) = setup.user_namespace {
        if let Err(e) = map_own_ids(ids) {
            fail(report, Step::UserNamespace, e);
        }
        // A change of credentials may clear the parent-death signal.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
    }
    let init = libc::fork();
    if init < 0 {
        fail(report, Step::Fork, errno());
    }
    if init > 0 {
        // The keeper ends as the init does.
        let status = wait_for(init);
        if libc::WIFEXITED(status) {
            libc::_exit(libc::WEXITSTATUS(status));
        }
        libc::_exit(128 + libc::WTERMSIG(status));
    }
    // PID 1 of the new namespace, in a session of its own (group 1 as the
    // program sees it), so that no group the program can name holds both
    // the init and itself.
    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
    libc::setsid();
    if let Err((failed, e)) = private_root(setup, limits) {
        fail(report, failed, e);
    }
    let program_pid = libc::fork();
    if program_pid < 0 {
        fail(report, Step::Fork, errno());
    }
    if program_pid > 0 {
        let status = reap_until(program_pid);
        let leftovers = kill_the_rest();
        write_report(report, Report::Ended { status, leftovers });
        libc::_exit(0);
    }
    // The program: its own process group. A timeout kills the keeper's
    // group; the init dies with the keeper (PDEATHSIG) and the namespace
    // with the init.
    libc::setpgid(0, 0);
}

/// # Safety
/// Only in a forked child, with `report` the report pipe's write end: it writes
/// the report and `_exit`s without unwinding or running destructors.
unsafe fn fail(report: libc::c_int, failed: Step, e: i32) -> ! {
    write_report(
        report,
        Report::SetupFailed {
            step: failed,
            errno: e,
        },
    );
    libc::_exit(125);
}

/// # Safety
/// Only in a forked child, with `fd` the report pipe's write end.
unsafe fn write_report(fd: libc::c_int, report: Report) {
    let bytes = report.to_bytes();
    libc::write(fd, bytes.as_ptr().cast(), bytes.len());
}

/// Wait for `pid`, retrying on EINTR; its raw wait status.
///
/// # Safety
/// Only in a child forked by [`enter`]'s caller, before it execs: async-signal-safe calls only.
unsafe fn wait_for(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    while libc::waitpid(pid, &mut status, 0) < 0 {
        if errno() != libc::EINTR {
            return 0;
        }
    }
    status
}

/// As init: reap every child (adopted orphans included) until `program`
/// ends; its raw wait status.
///
/// # Safety
/// Only as the init of the private PID namespace, with `program` its child.
unsafe fn reap_until(program: libc::pid_t) -> i32 {
    loop {
        let mut status = 0;
        let pid = libc::waitpid(-1, &mut status, 0);
        if pid == program {
            return status;
        }
        if pid < 0 && errno() != libc::EINTR {
            return 0;
        }
    }
}

/// After the program ended: reap the zombies, kill every process still in
/// the namespace, and count them as they are reaped.
///
/// # Safety
/// Only as the init (PID 1) of a private PID namespace: there `kill(-1)`
/// reaches the run's processes only; anywhere else it would signal every
/// process the user may signal.
unsafe fn kill_the_rest() -> u32 {
    let mut status = 0;
    while libc::waitpid(-1, &mut status, libc::WNOHANG) > 0 {}
    // kill(-1) from a namespace's init reaches every other process in it.
    if libc::kill(-1, libc::SIGKILL) < 0 {
        return 0;
    }
    let mut killed = 0;
    loop {
        let pid = libc::waitpid(-1, &mut status, 0);
        if pid > 0 {
            killed += 1;
        } else if errno() != libc::EINTR {
            return killed;
        }
    }
}

/// Close every descriptor above 2 except `keep`.
///
/// # Safety
/// Only in a forked child that will exec or exit: descriptors the parent's
/// threads use are closed under them otherwise.
unsafe fn close_all_but(keep: libc::c_int) {
    let keep = keep as libc::c_uint;
    if keep > 3 {
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            keep - 1,
            0 as libc::c_uint,
        );
    }
    libc::syscall(
        libc::SYS_close_range,
        keep + 1,
        libc::c_uint::MAX,
        0 as libc::c_uint,
    );
}

/// The program's own setup: limits, uid, descriptors. Shared by every
/// setup (with or without a private root).
///
/// # Safety
/// Only in the forked program process, just before it execs Python: it lowers
/// limits, drops to the private uid and marks descriptors close-on-exec for
/// this process.
unsafe fn program(setup: Setup, limits: RawLimits) -> Result<(), (Step, i32)> {
    let as_step = |r: io::Result<()>, s: Step| r.map_err(|e| (s, e.raw_os_error().unwrap_or(0)));
    as_step(
        set_limit(libc::RLIMIT_AS, limits.address_space),
        Step::Limits,
    )?;
    as_step(
        set_limit(libc::RLIMIT_CPU, limits.cpu_seconds),
        Step::Limits,
    )?;
    as_step(
        set_limit(libc::RLIMIT_FSIZE, limits.file_size),
        Step::Limits,
    )?;
    as_step(
        set_limit(libc::RLIMIT_NOFILE, limits.open_files),
        Step::Limits,
    )?;
    as_step(set_limit(libc::RLIMIT_CORE, 0), Step::Limits)?;
    // RLIMIT_NPROC counts the tasks of the real uid (within a user
    // namespace: of the uid in that namespace only); it is not enforced
    // for root, hence the switch to a private uid below.
    if limits.processes != u64::MAX {
        as_step(
            set_limit(libc::RLIMIT_NPROC, limits.processes),
            Step::Limits,
        )?;
    }
    if let Some(uid) = setup.uid {
        step(libc::setgroups(0, std::ptr::null()), Step::Uid)?;
        step(libc::setgid(uid), Step::Uid)?;
        step(libc::setuid(uid), Step::Uid)?;
    }
    // Set after the uid change, which clears it.
    step(
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0),
        Step::Uid,
    )?;
    // Every descriptor above 2 (the report pipe, anything the caller of nsed
    // left open) closes at exec; Rust's exec-error pipe still works.
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    let closed = libc::syscall(
        libc::SYS_close_range,
        3 as libc::c_uint,
        libc::c_uint::MAX,
        CLOSE_RANGE_CLOEXEC,
    );
    if closed < 0 {
        return Err((Step::Descriptors, errno()));
    }
    Ok(())
}

/// Map the caller's uid and gid to themselves in the user namespace just
/// created (one line each, as an unprivileged process may write for
/// itself; `setgroups` must be denied before the gid map).
///
/// # Safety
/// Only in a child that has just unshared a user namespace and has not yet written its id maps.
unsafe fn map_own_ids(ids: IdMap) -> Result<(), i32> {
    write_proc_file(c"/proc/self/setgroups", b"deny")?;
    let mut line = [0u8; 40];
    let len = id_map_line(ids.uid, &mut line);
    write_proc_file(c"/proc/self/uid_map", &line[..len])?;
    let len = id_map_line(ids.gid, &mut line);
    write_proc_file(c"/proc/self/gid_map", &line[..len])
}

/// `"<id> <id> 1"` into `out`; its length.
fn id_map_line(id: u32, out: &mut [u8; 40]) -> usize {
    let mut at = write_decimal(u64::from(id), out, 0);
    out[at] = b' ';
    at = write_decimal(u64::from(id), out, at + 1);
    out[at] = b' ';
    out[at + 1] = b'1';
    at + 2
}

/// Write `bytes` to the file at `path` in one `write`.
///
/// # Safety
/// Only in a child forked by [`enter`]'s caller, before it execs: async-signal-safe calls only.
unsafe fn write_proc_file(path: &CStr, bytes: &[u8]) -> Result<(), i32> {
    let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
    if fd < 0 {
        return Err(errno());
    }
    let written = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
    let result = if written == bytes.len() as isize {
        Ok(())
    } else {
        Err(errno())
    };
    libc::close(fd);
    result
}

/// The decimal digits of `n` into `out` from `at`; the position after them.
fn write_decimal(n: u64, out: &mut [u8], at: usize) -> usize {
    let mut digits = [0u8; 20];
    let mut n = n;
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        out[at + i] = digits[len - 1 - i];
    }
    at + len
}

/// Make this mount namespace's mounts private (nothing propagates back to
/// the host), cover each world-writable directory with a small tmpfs, and
/// bind the run's directory (the current one, which may now be covered) at
/// `/tmp/sandbox`, so that absolute paths to it resolve too.
///
/// # Safety
/// Only in a forked child that has unshared its own mount namespace: the mounts
/// made here would otherwise cover the host's directories.
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

/// Entries of `/` that distributions make links into `/usr` (merged /usr) or
/// keep as directories; linked or bound read-only alike.
const SYSTEM_DIRS: [(&CStr, &CStr); 6] = [
    (c"/bin", c"root/bin"),
    (c"/sbin", c"root/sbin"),
    (c"/lib", c"root/lib"),
    (c"/lib64", c"root/lib64"),
    (c"/lib32", c"root/lib32"),
    (c"/libx32", c"root/libx32"),
];

/// Devices a Python program may open.
const DEVICES: [(&CStr, &CStr); 5] = [
    (c"/dev/null", c"root/dev/null"),
    (c"/dev/zero", c"root/dev/zero"),
    (c"/dev/full", c"root/dev/full"),
    (c"/dev/random", c"root/dev/random"),
    (c"/dev/urandom", c"root/dev/urandom"),
];

const DEVICE_LINKS: [(&CStr, &CStr); 5] = [
    (c"/proc/self/fd", c"root/dev/fd"),
    (c"/proc/self/fd/0", c"root/dev/stdin"),
    (c"/proc/self/fd/1", c"root/dev/stdout"),
    (c"/proc/self/fd/2", c"root/dev/stderr"),
    // POSIX semaphores (multiprocessing) live in /dev/shm.
    (c"/tmp", c"root/dev/shm"),
];

/// Build the minimal root on a tmpfs mounted over `./root` and pivot into
/// it; the working directory ends as `/tmp/sandbox`. Runs as the init of
/// the new PID namespace (a fresh `/proc` needs it), in a new mount
/// namespace, as root.
///
/// # Safety
/// Only as the init of a new PID namespace in its own mount namespace (as root
/// there): it mounts and pivots the root of that namespace.
unsafe fn private_root(setup: Setup, limits: RawLimits) -> Result<(), (Step, i32)> {
    let null = std::ptr::null();
    step(
        libc::mount(
            c"none".as_ptr(),
            c"/".as_ptr(),
            null,
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ),
        Step::PrivateMounts,
    )?;
    step(
        libc::mount(
            c"tmpfs".as_ptr(),
            c"root".as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            c"size=1m,mode=755".as_ptr().cast(),
        ),
        Step::RootTmpfs,
    )?;
    step(libc::mkdir(c"root/usr".as_ptr(), 0o755), Step::BindUsr)?;
    bind_read_only(c"/usr", c"root/usr", libc::MS_NOSUID | libc::MS_NODEV)
        .map_err(|e| (Step::BindUsr, e))?;
    for (host, inside) in SYSTEM_DIRS {
        link_or_bind(host, inside).map_err(|e| (Step::SystemLinks, e))?;
    }
    step(libc::mkdir(c"root/etc".as_ptr(), 0o755), Step::SystemLinks)?;
    // The dynamic linker's cache: without it, libraries outside the default
    // paths are not found. Absent on some systems; then nothing is bound.
    if libc::access(c"/etc/ld.so.cache".as_ptr(), libc::R_OK) == 0 {
        touch(c"root/etc/ld.so.cache").map_err(|e| (Step::SystemLinks, e))?;
        bind_read_only(
            c"/etc/ld.so.cache",
            c"root/etc/ld.so.cache",
            libc::MS_NOSUID,
        )
        .map_err(|e| (Step::SystemLinks, e))?;
    }
    step(libc::mkdir(c"root/dev".as_ptr(), 0o755), Step::Devices)?;
    for (host, inside) in DEVICES {
        touch(inside).map_err(|e| (Step::Devices, e))?;
        step(
            libc::mount(
                host.as_ptr(),
                inside.as_ptr(),
                null,
                libc::MS_BIND,
                std::ptr::null(),
            ),
            Step::Devices,
        )?;
    }
    for (target, link) in DEVICE_LINKS {
        step(libc::symlink(target.as_ptr(), link.as_ptr()), Step::Devices)?;
    }
    step(libc::mkdir(c"root/proc".as_ptr(), 0o555), Step::Proc)?;
    step(
        libc::mount(
            c"proc".as_ptr(),
            c"root/proc".as_ptr(),
            c"proc".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            c"hidepid=2".as_ptr().cast(),
        ),
        Step::Proc,
    )?;
    step(libc::mkdir(c"root/tmp".as_ptr(), 0o1777), Step::TmpTmpfs)?;
    let mut options = [0u8; 64];
    tmpfs_options(limits.disk, &mut options);
    step(
        libc::mount(
            c"tmpfs".as_ptr(),
            c"root/tmp".as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            options.as_ptr().cast(),
        ),
        Step::TmpTmpfs,
    )?;
    step(
        libc::mkdir(c"root/tmp/sandbox".as_ptr(), 0o755),
        Step::TmpTmpfs,
    )?;
    if let Some(uid) = setup.uid {
        step(
            libc::chown(c"root/tmp/sandbox".as_ptr(), uid, uid),
            Step::TmpTmpfs,
        )?;
    }
    copy_file(c"main.py", c"root/tmp/sandbox/main.py").map_err(|e| (Step::CopyProgram, e))?;
    step(libc::mkdir(c"root/.old".as_ptr(), 0o700), Step::PivotRoot)?;
    step(libc::chdir(c"root".as_ptr()), Step::PivotRoot)?;
    let pivoted = libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".old".as_ptr());
    if pivoted < 0 {
        return Err((Step::PivotRoot, errno()));
    }
    step(libc::chdir(c"/".as_ptr()), Step::PivotRoot)?;
    step(
        libc::umount2(c"/.old".as_ptr(), libc::MNT_DETACH),
        Step::PivotRoot,
    )?;
    step(libc::rmdir(c"/.old".as_ptr()), Step::PivotRoot)?;
    step(
        libc::mount(
            null,
            c"/".as_ptr(),
            null,
            libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
            std::ptr::null(),
        ),
        Step::ReadOnlyRoot,
    )?;
    step(libc::chdir(RUN_DIR.as_ptr()), Step::PivotRoot)
}

/// Bind `host` at `inside`, then make the bind read-only.
///
/// # Safety
/// Only inside the sandbox's own mount namespace (see [`private_root`]).
unsafe fn bind_read_only(host: &CStr, inside: &CStr, extra: libc::c_ulong) -> Result<(), i32> {
    let null = std::ptr::null();
    if libc::mount(
        host.as_ptr(),
        inside.as_ptr(),
        null,
        libc::MS_BIND | libc::MS_REC,
        std::ptr::null(),
    ) < 0
    {
        return Err(errno());
    }
    let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | extra;
    if libc::mount(null, inside.as_ptr(), null, flags, std::ptr::null()) < 0 {
        return Err(errno());
    }
    Ok(())
}

/// Recreate the host's link at `host` inside, or bind its directory
/// read-only; nothing when the host has neither.
///
/// # Safety
/// Only inside the sandbox's own mount namespace (see [`private_root`]).
unsafe fn link_or_bind(host: &CStr, inside: &CStr) -> Result<(), i32> {
    let mut target = [0u8; 256];
    let n = libc::readlink(host.as_ptr(), target.as_mut_ptr().cast(), target.len() - 1);
    if n >= 0 {
        // `target` is zeroed past the n bytes read, so it is NUL-terminated.
        if libc::symlink(target.as_ptr().cast(), inside.as_ptr()) < 0 {
            return Err(errno());
        }
        return Ok(());
    }
    match errno() {
        libc::ENOENT => Ok(()),
        libc::EINVAL => {
            if libc::mkdir(inside.as_ptr(), 0o755) < 0 {
                return Err(errno());
            }
            bind_read_only(host, inside, libc::MS_NOSUID | libc::MS_NODEV)
        }
        e => Err(e),
    }
}

/// Create an empty file (a mount point for a bind of a file).
///
/// # Safety
/// Only in a forked child, inside the sandbox's new root being built.
unsafe fn touch(path: &CStr) -> Result<(), i32> {
    let fd = libc::open(
        path.as_ptr(),
        libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC,
        0o644,
    );
    if fd < 0 {
        return Err(errno());
    }
    libc::close(fd);
    Ok(())
}

/// Copy `from` to the new file `to` (mode 0644) through a stack buffer.
///
/// # Safety
/// Only in a forked child, inside the sandbox's new root being built.
unsafe fn copy_file(from: &CStr, to: &CStr) -> Result<(), i32> {
    let src = libc::open(from.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
    if src < 0 {
        return Err(errno());
    }
    let dst = libc::open(
        to.as_ptr(),
        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
        0o644,
    );
    if dst < 0 {
        let e = errno();
        libc::close(src);
        return Err(e);
    }
    let mut buf = [0u8; 4096];
    let result = loop {
        let n = libc::read(src, buf.as_mut_ptr().cast(), buf.len());
        if n == 0 {
            break Ok(());
        }
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            break Err(errno());
        }
        let mut done = 0;
        while done < n as usize {
            let w = libc::write(dst, buf[done..].as_ptr().cast(), n as usize - done);
            if w <= 0 {
                return Err(errno());
            }
            done += w as usize;
        }
    };
    libc::close(src);
    libc::close(dst);
    result
}

/// `size=<bytes>,mode=1777` NUL-terminated into `out`, without allocating.
fn tmpfs_options(bytes: u64, out: &mut [u8; 64]) {
    const PREFIX: &[u8] = b"size=";
    const SUFFIX: &[u8] = b",mode=1777";
    out[..PREFIX.len()].copy_from_slice(PREFIX);
    let at = write_decimal(bytes, out, PREFIX.len());
    out[at..at + SUFFIX.len()].copy_from_slice(SUFFIX);
    out[at + SUFFIX.len()] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip() {
        for report in [
            Report::Ended {
                status: 9,
                leftovers: 3,
            },
            Report::SetupFailed {
                step: Step::PivotRoot,
                errno: libc::EPERM,
            },
        ] {
            assert_eq!(Report::from_bytes(&report.to_bytes()), Some(report));
        }
        assert_eq!(Report::from_bytes(&[0; REPORT_BYTES]), None);
    }

    #[test]
    fn tmpfs_options_are_written_without_allocating() {
        let mut out = [0xffu8; 64];
        tmpfs_options(67_108_864, &mut out);
        let text = CStr::from_bytes_until_nul(&out).expect("NUL-terminated");
        assert_eq!(text.to_str(), Ok("size=67108864,mode=1777"));
        tmpfs_options(0, &mut out);
        let text = CStr::from_bytes_until_nul(&out).expect("NUL-terminated");
        assert_eq!(text.to_str(), Ok("size=0,mode=1777"));
        tmpfs_options(u64::MAX, &mut out);
        let text = CStr::from_bytes_until_nul(&out).expect("NUL-terminated");
        assert_eq!(text.to_str(), Ok("size=18446744073709551615,mode=1777"));
    }

    #[test]
    fn id_map_lines_map_one_id_to_itself() {
        let mut out = [0u8; 40];
        let len = id_map_line(65534, &mut out);
        assert_eq!(&out[..len], b"65534 65534 1");
        let len = id_map_line(0, &mut out);
        assert_eq!(&out[..len], b"0 0 1");
        let len = id_map_line(u32::MAX, &mut out);
        assert_eq!(&out[..len], b"4294967295 4294967295 1");
    }
}
