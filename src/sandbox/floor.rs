//! The floor under the namespaces: Landlock and seccomp, for machines where
//! user namespaces are refused (Ubuntu's AppArmor restriction, containers
//! without `CAP_SYS_ADMIN`, `user.max_user_namespaces = 0`).
//!
//! Both are built here, in nsed, before the fork (they allocate), and only
//! installed in the child between fork and exec by [`apply_in_child`], with
//! raw syscalls:
//!
//! - **Landlock** confines the filesystem: the run's directory read-write
//!   (no execute), the interpreter's files and the system libraries
//!   read-and-execute, `/dev/null` and friends; nothing else of the host can
//!   be opened, listed or written — the user's home, `/tmp`, `/proc` (so
//!   other processes' command lines and environments are out of reach).
//!   From ABI 4 TCP bind/connect is denied too, and from ABI 6 signals and
//!   abstract UNIX sockets are scoped to the run (it cannot signal nsed or
//!   any other process of the user).
//! - **seccomp** denies sockets other than AF_UNIX and `connect` on any
//!   socket (no network, no host UNIX socket such as a container runtime's),
//!   `setsid`/`setpgid` (so every descendant stays in the run's process
//!   group and dies with it), new namespaces, `ptrace`, `mount`, `bpf`,
//!   `keyctl`, `perf_event_open`, `io_uring` (which would bypass the socket
//!   rules), kernel modules and signals aimed at nsed.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use landlock::{
    Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreatedAttr, Scope, ABI,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// Why the floor cannot be built or installed.
#[derive(Debug, thiserror::Error)]
pub enum FloorError {
    /// The kernel has no usable Landlock (the text says why).
    #[error("Landlock is not available ({0}); it needs Linux >= 5.13 with `landlock` in the lsm= boot parameter (CONFIG_SECURITY_LANDLOCK)")]
    NoLandlock(&'static str),
    /// seccompiler cannot build filters for this CPU architecture.
    #[error("seccomp filters are not supported on this architecture")]
    UnsupportedArch,
    /// Building the seccomp filter failed.
    #[error("cannot build the seccomp filter: {0}")]
    Seccomp(String),
    /// Building the Landlock ruleset (or adding a path to it) failed.
    #[error("cannot build the Landlock ruleset: {0}")]
    Ruleset(String),
}

/// Read-only system paths every Python needs (absent ones are skipped).
const SYSTEM_PATHS: [&str; 8] = [
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib64",
    "/lib32",
    "/libx32",
    "/etc/ld.so.cache",
];

/// Devices a program may read and write.
const DEVICES_RW: [&str; 3] = ["/dev/null", "/dev/zero", "/dev/full"];
/// Devices a program may read.
const DEVICES_RO: [&str; 2] = ["/dev/random", "/dev/urandom"];

/// The Landlock ABI of the running kernel (0 when it has none).
pub fn landlock_abi() -> Result<u32, FloorError> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a null attribute and the VERSION flag the syscall only
    // returns the ABI version (or fails); it reads and writes no memory.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if v >= 1 {
        return Ok(v as u32);
    }
    let why = match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EOPNOTSUPP) => "built into the kernel but not enabled at boot",
        Some(libc::ENOSYS) => "not built into this kernel",
        _ => "the kernel refused the version query",
    };
    Err(FloorError::NoLandlock(why))
}

/// Everything the floor needs that does not change between runs.
#[derive(Debug)]
pub struct Floor {
    abi: u32,
    /// Read-and-execute paths: the system's and the interpreter's.
    read_only: Vec<PathBuf>,
    /// Installed in order: the EPERM filter, then the ENOSYS one.
    filters: Vec<BpfProgram>,
}

impl Floor {
    /// Check the kernel and build the seccomp filters; `python` decides the
    /// interpreter's own read-only tree, `home` is kept out of it.
    pub fn new(python: &Path, home: Option<&Path>) -> Result<Floor, FloorError> {
        let abi = landlock_abi()?;
        let mut read_only: Vec<PathBuf> = SYSTEM_PATHS.iter().map(PathBuf::from).collect();
        if let Some(prefix) = interpreter_prefix(python, home) {
            read_only.push(prefix);
        }
        Ok(Floor {
            abi,
            read_only,
            filters: seccomp_filters()?,
        })
    }

    pub fn abi(&self) -> u32 {
        self.abi
    }

    /// Signals and abstract UNIX sockets are scoped to the run (ABI >= 6).
    pub fn scopes_signals(&self) -> bool {
        self.abi >= 6
    }

    pub fn filters(&self) -> &[BpfProgram] {
        &self.filters
    }

    /// A Landlock ruleset for one run whose directory is `run_dir`; its
    /// descriptor is handed to [`apply_in_child`].
    pub fn ruleset(&self, run_dir: &Path) -> Result<OwnedFd, FloorError> {
        let abi = ABI::from(self.abi as i32);
        let err = |e: landlock::RulesetError| FloorError::Ruleset(e.to_string());
        let mut ruleset = Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(AccessFs::from_all(abi))
            .map_err(err)?;
        if self.abi >= 4 {
            ruleset = ruleset
                .handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)
                .map_err(err)?;
        }
        if self.abi >= 6 {
            ruleset = ruleset
                .scope(Scope::Signal | Scope::AbstractUnixSocket)
                .map_err(err)?;
        }
        let mut created = ruleset.create().map_err(err)?;
        let read = AccessFs::from_read(abi);
        for path in &self.read_only {
            created = add_path(created, path, read)?;
        }
        let file_rw = AccessFs::ReadFile | AccessFs::WriteFile;
        for device in DEVICES_RW {
            created = add_path(created, Path::new(device), file_rw)?;
        }
        for device in DEVICES_RO {
            created = add_path(created, Path::new(device), AccessFs::ReadFile.into())?;
        }
        let own = AccessFs::from_all(abi) & !AccessFs::Execute;
        let fd = PathFd::new(run_dir).map_err(|e| FloorError::Ruleset(e.to_string()))?;
        created = created.add_rule(PathBeneath::new(fd, own)).map_err(err)?;
        Option::<OwnedFd>::from(created)
            .ok_or_else(|| FloorError::Ruleset("the kernel gave no ruleset descriptor".into()))
    }
}

/// Add a rule for `path` if it exists (a file gets only the file rights).
fn add_path(
    created: landlock::RulesetCreated,
    path: &Path,
    access: BitFlags<AccessFs>,
) -> Result<landlock::RulesetCreated, FloorError> {
    let Ok(fd) = PathFd::new(path) else {
        return Ok(created);
    };
    let access = if path.is_file() || path.starts_with("/dev") {
        access & AccessFs::from_file(ABI::V3)
    } else {
        access
    };
    created
        .add_rule(PathBeneath::new(fd, access))
        .map_err(|e| FloorError::Ruleset(e.to_string()))
}

/// The interpreter's installation tree (`<prefix>/bin/python3` →
/// `<prefix>`), when it lies outside the system paths; never `/` nor a
/// directory that holds the user's home.
fn interpreter_prefix(python: &Path, home: Option<&Path>) -> Option<PathBuf> {
    let real = std::fs::canonicalize(python).ok()?;
    let prefix = real.parent()?.parent()?.to_path_buf();
    let covered = SYSTEM_PATHS.iter().any(|p| prefix.starts_with(p));
    let holds_home = home.is_some_and(|h| h.starts_with(&prefix));
    (!covered && !holds_home && prefix != Path::new("/")).then_some(prefix)
}

/// The syscalls denied with EPERM, with their conditions (none: always).
fn denied_syscalls() -> Result<BTreeMap<i64, Vec<SeccompRule>>, FloorError> {
    let cond = |arg: u8, op: SeccompCmpOp, value: u64| {
        SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value)
            .map_err(|e| FloorError::Seccomp(e.to_string()))
    };
    let rule = |c: Vec<SeccompCondition>| {
        SeccompRule::new(c).map_err(|e| FloorError::Seccomp(e.to_string()))
    };
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for nr in [
        libc::SYS_connect,
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_bpf,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_perf_event_open,
        libc::SYS_userfaultfd,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_open_by_handle_at,
        libc::SYS_name_to_handle_at,
        libc::SYS_setsid,
        libc::SYS_setpgid,
        libc::SYS_tkill,
    ] {
        rules.insert(nr, Vec::new());
    }
    let unix = libc::AF_UNIX as u64;
    for nr in [libc::SYS_socket, libc::SYS_socketpair] {
        rules.insert(nr, vec![rule(vec![cond(0, SeccompCmpOp::Ne, unix)?])?]);
    }
    // Namespace flags in clone(2)'s first argument.
    let namespaces = [
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWNS,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWNET,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWCGROUP,
    ];
    let clone_rules = namespaces
        .iter()
        .map(|&flag| {
            let flag = flag as u64;
            rule(vec![cond(0, SeccompCmpOp::MaskedEq(flag), flag)?])
        })
        .collect::<Result<Vec<_>, _>>()?;
    rules.insert(libc::SYS_clone, clone_rules);
    // Signals at nsed, its process group, or every process of the user.
    // SAFETY: getpid and getpgrp cannot fail.
    let (pid, pgrp) = unsafe { (libc::getpid(), libc::getpgrp()) };
    let as_arg = |v: i32| v as u32 as u64;
    let mut kill_rules = Vec::new();
    for target in [pid, -pgrp, -1] {
        kill_rules.push(rule(vec![cond(0, SeccompCmpOp::Eq, as_arg(target))?])?);
    }
    rules.insert(libc::SYS_kill, kill_rules);
    for nr in [
        libc::SYS_tgkill,
        libc::SYS_rt_sigqueueinfo,
        libc::SYS_rt_tgsigqueueinfo,
        libc::SYS_pidfd_open,
    ] {
        rules.insert(
            nr,
            vec![rule(vec![cond(0, SeccompCmpOp::Eq, as_arg(pid))?])?],
        );
    }
    Ok(rules)
}

fn target_arch() -> Result<TargetArch, FloorError> {
    if cfg!(target_arch = "x86_64") {
        Ok(TargetArch::x86_64)
    } else if cfg!(target_arch = "aarch64") {
        Ok(TargetArch::aarch64)
    } else if cfg!(target_arch = "riscv64") {
        Ok(TargetArch::riscv64)
    } else {
        Err(FloorError::UnsupportedArch)
    }
}

/// The EPERM filter and the ENOSYS one (`clone3`, whose flags a filter
/// cannot read: libc then falls back to `clone`, whose flags it can).
fn seccomp_filters() -> Result<Vec<BpfProgram>, FloorError> {
    let arch = target_arch()?;
    let build = |rules, errno: u32| {
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(errno),
            arch,
        )
        .map_err(|e| FloorError::Seccomp(e.to_string()))?;
        BpfProgram::try_from(filter).map_err(|e| FloorError::Seccomp(e.to_string()))
    };
    let clone3 = BTreeMap::from([(libc::SYS_clone3, Vec::new())]);
    Ok(vec![
        build(denied_syscalls()?, libc::EPERM as u32)?,
        build(clone3, libc::ENOSYS as u32)?,
    ])
}

/// Which installation step failed, with its errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ApplyError {
    Landlock(i32),
    Seccomp(i32),
}

/// Install the Landlock ruleset `ruleset` and the seccomp `filters` on the
/// calling process.
///
/// # Safety
/// Call only in the child between fork and exec: it makes raw syscalls and
/// allocates nothing.
pub(super) unsafe fn apply_in_child(
    ruleset: libc::c_int,
    filters: &[BpfProgram],
) -> Result<(), ApplyError> {
    let errno = || std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    // SAFETY: prctl with integer arguments only changes this process's
    // flags; no memory is passed.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } < 0 {
        return Err(ApplyError::Landlock(errno()));
    }
    // SAFETY: `ruleset` is a descriptor the parent created for this child;
    // the kernel checks it, and an invalid one is an error, not UB.
    if unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset, 0u32) } < 0 {
        return Err(ApplyError::Landlock(errno()));
    }
    for filter in filters {
        let program = libc::sock_fprog {
            len: filter.len() as libc::c_ushort,
            filter: filter.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: `program` points at `filter`'s instructions, which the
        // caller's slice keeps alive for the call; the kernel copies them.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0 as libc::c_ulong,
                &program as *const libc::sock_fprog,
            )
        };
        if rc < 0 {
            return Err(ApplyError::Seccomp(errno()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpreter_prefix_skips_system_trees_and_homes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("py/bin");
        std::fs::create_dir_all(&bin).expect("bin");
        let python = bin.join("python3");
        std::fs::write(&python, "").expect("python");
        let prefix = std::fs::canonicalize(dir.path().join("py")).expect("prefix");
        assert_eq!(interpreter_prefix(&python, None), Some(prefix.clone()));
        // A prefix that holds the home would open the whole home.
        let home = prefix.join("home/me");
        assert_eq!(interpreter_prefix(&python, Some(&home)), None);
        assert_eq!(
            interpreter_prefix(Path::new("/nonexistent/bin/python3"), None),
            None
        );
    }

    #[test]
    fn filters_compile_for_this_machine() {
        let filters = seccomp_filters().expect("filters");
        assert_eq!(filters.len(), 2);
        assert!(filters.iter().all(|f| !f.is_empty()));
        let rules = denied_syscalls().expect("rules");
        for nr in [libc::SYS_setsid, libc::SYS_connect, libc::SYS_ptrace] {
            assert!(rules[&nr].is_empty(), "{nr} denied unconditionally");
        }
        assert_eq!(rules[&libc::SYS_kill].len(), 3);
        assert!(!rules.contains_key(&libc::SYS_read));
    }
}
