//! Running untrusted Python — generated programs and their tests — so that
//! hostile code is contained, counted as a failure, and the run goes on.
//!
//! Each run gets `python3 -I` in a fresh temporary directory with a cleared
//! environment, its own session and process group, rlimits set in the child
//! before exec, every inherited descriptor above 2 closed, and the strongest
//! isolation [`Layer`] this machine allows (probed once, reported in
//! [`Protections`]):
//!
//! 1. **namespaces** — a network namespace with no interface up and a
//!    private root: a PID namespace whose init kills every process the
//!    program leaves (whatever it does with `setsid`), a minimal read-only
//!    filesystem (`/usr`, a few devices, a private `/proc`) and a
//!    size-limited tmpfs as the only writable place (see `child`). As root
//!    the program also runs under a private uid; as an ordinary user the
//!    namespaces are made inside a user namespace that maps only the
//!    caller's own ids (no setuid helper).
//! 2. **Landlock + seccomp** (see `floor`) where namespaces are refused:
//!    the filesystem confined to the run's directory and the interpreter's
//!    read-only files, no sockets but AF_UNIX and no `connect`, no `setsid`
//!    (every descendant stays in the run's group and dies with it).
//! 3. **rlimits** only, which contain nothing but resources.
//!
//! Under [`Policy::Require`] (the default) a sandbox whose layers cannot
//! stop writes outside the run's directory, reads of host files or network
//! use refuses to start ([`SandboxError::Refused`]). A wall-clock limit
//! kills the whole group; output is capped while it is read; after every
//! run whatever is left of the group and the uid is killed.

mod child;
mod floor;
mod reap;

pub use floor::{landlock_abi, FloorError};

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use child::{IdMap, RawLimits, Setup};
use floor::Floor;

/// Errors of the sandbox itself (a program that fails is not an error: it is
/// an [`Execution`] with a failing [`Status`]).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// No executable `python3` was found and none was given; the text lists the paths tried.
    #[error("no python3 found (looked in {0}); install python3 or pass --python")]
    NoPython(String),
    /// The interpreter fails to run even under the baseline protections.
    #[error("{path} does not run in the sandbox: {message}")]
    PythonUnusable {
        /// The interpreter tried.
        path: PathBuf,
        /// What went wrong when it ran in the sandbox.
        message: String,
    },
    /// The run's temporary directory or program file could not be made.
    #[error("cannot prepare the sandbox directory: {0}")]
    Scratch(io::Error),
    /// The sandboxed process could not be started.
    #[error("cannot start the sandboxed program: {0}")]
    Spawn(io::Error),
    /// Waiting for the sandboxed process failed.
    #[error("cannot wait for the sandboxed program: {0}")]
    Wait(io::Error),
    /// A protection could not be set up for this run (the run's Landlock ruleset, or a step
    /// in the child before exec).
    #[error("sandbox setup failed at {step}: {source}")]
    Setup {
        /// The step that failed.
        step: &'static str,
        /// Its OS error.
        source: io::Error,
    },
    /// Under [`Policy::Require`], this machine cannot contain a program; the text says what is
    /// missing and how to allow it.
    #[error("{0}")]
    Refused(String),
}

/// Whether untrusted code may run when the sandbox cannot contain it
/// (`--sandbox`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Refuse to run unless the program cannot write outside its directory,
    /// cannot read host files (your home) and has no network.
    #[default]
    Require,
    /// Run with whatever protections this machine allows, warning about
    /// the missing ones.
    BestEffort,
}

/// The strongest layer the probe may use (`--sandbox-layer`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LayerChoice {
    /// Namespaces where the kernel allows them, else Landlock + seccomp.
    #[default]
    Auto,
    /// Skip the namespaces: Landlock + seccomp (what holds where user
    /// namespaces are refused).
    Landlock,
    /// Rlimits only: no isolation (for comparisons; `require` refuses it).
    None,
}

/// What provides a protection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layer {
    /// Namespaces and a private uid, as root.
    RootNamespaces,
    /// Namespaces inside an unprivileged user namespace.
    UserNamespaces,
    /// Landlock and seccomp filters.
    LandlockSeccomp,
    /// Resource limits only (bounds, not isolation).
    Rlimits,
    /// Nothing.
    None,
}

impl Layer {
    /// Whether this layer isolates (more than bounding resources).
    pub fn isolates(self) -> bool {
        !matches!(self, Layer::Rlimits | Layer::None)
    }

    /// The layer's name in logs and result headers.
    pub fn name(self) -> &'static str {
        match self {
            Layer::RootNamespaces => "root namespaces",
            Layer::UserNamespaces => "user namespaces",
            Layer::LandlockSeccomp => "Landlock + seccomp",
            Layer::Rlimits => "rlimits",
            Layer::None => "none",
        }
    }
}

/// Per protection, the layer that provides it on this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Guards {
    /// No file outside the run's directory is created or changed.
    pub writes_outside: Layer,
    /// Host files — the user's home, nsed's files, `/etc` — cannot be read.
    pub host_files: Layer,
    /// No socket reaches loopback or the outside.
    pub network: Layer,
    /// Processes the program leaves (even after `setsid`) end with the run.
    pub leftover_processes: Layer,
    /// Fork bombs are bounded.
    pub process_limit: Layer,
    /// Bytes written in all are bounded (not only per file).
    pub disk_quota: Layer,
    /// Other processes can neither be seen in `/proc` nor signalled.
    pub other_processes: Layer,
}

impl Guards {
    /// The three that `--sandbox require` insists on: no writes outside,
    /// no host files, no network.
    pub fn contained(&self) -> bool {
        [self.writes_outside, self.host_files, self.network]
            .iter()
            .all(|l| l.isolates())
    }
}

/// How to isolate, and whether to run at all when that is not possible.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Isolation {
    /// Whether to run when the sandbox cannot contain a program.
    pub policy: Policy,
    /// The strongest layer the probe may use.
    pub layer: LayerChoice,
}

/// Resource limits of one run (the wall-clock limit is per call).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Limits {
    /// Virtual memory (RLIMIT_AS), bytes.
    pub address_space: u64,
    /// Largest file the program may write (RLIMIT_FSIZE), bytes.
    pub file_size: u64,
    /// Open file descriptors (RLIMIT_NOFILE).
    pub open_files: u64,
    /// Processes of the run's uid (RLIMIT_NPROC; holds only with a private uid).
    pub processes: u64,
    /// Bytes kept of stdout and of stderr; more output ends the run.
    pub output_bytes: usize,
    /// Bytes the program may write in all (the private root's tmpfs).
    #[serde(default = "default_disk")]
    pub disk: u64,
}

fn default_disk() -> u64 {
    Limits::default().disk
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            address_space: 2 << 30,
            file_size: 16 << 20,
            open_files: 64,
            processes: 64,
            output_bytes: 4 << 20,
            disk: 64 << 20,
        }
    }
}

/// Which protections actually apply on this machine (recorded with results).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Protections {
    /// The Python interpreter that runs the programs.
    pub python: PathBuf,
    /// `python3 -I`, empty environment, fresh temp dir, own process group,
    /// rlimits, wall-clock kill of the group, capped output: always.
    pub baseline: bool,
    /// The program runs under a private uid (only as root).
    pub private_uid: bool,
    /// The program runs in a network namespace with no interface up.
    pub network_namespace: bool,
    /// World-writable directories are fresh tmpfs in a private mount namespace (root's
    /// fallback where a private root is refused).
    pub private_tmp: bool,
    /// PID namespace, minimal read-only root, private `/proc`, tmpfs quota.
    #[serde(default)]
    pub private_root: bool,
    /// The namespaces live in an unprivileged user namespace.
    #[serde(default)]
    pub user_namespace: bool,
    /// The Landlock ABI of the ruleset in force (the floor), if any.
    #[serde(default)]
    pub landlock_abi: Option<u32>,
    /// The seccomp filters of the floor are in force.
    #[serde(default)]
    pub seccomp: bool,
    /// The isolation layer in force: the one that keeps writes inside the
    /// run's directory (absent in records made before layers were named).
    #[serde(default)]
    pub layer: Option<Layer>,
    /// Per protection, the layer that provides it.
    #[serde(default)]
    pub guards: Option<Guards>,
    /// Whether the run insisted on containment.
    #[serde(default)]
    pub policy: Option<Policy>,
    /// The resource limits of every run.
    pub limits: Limits,
    /// Why each missing protection is missing.
    pub missing: Vec<String>,
}

impl Protections {
    /// One line for logs and result headers.
    pub fn summary(&self) -> String {
        let on = |b: bool| if b { "yes" } else { "no" };
        let layer = self.layer.map_or("unrecorded", Layer::name);
        let landlock = self
            .landlock_abi
            .map_or_else(|| "no".to_string(), |abi| format!("ABI {abi}"));
        format!(
            "layer {layer}; python {} -I, cleared env, temp dir, process group, inherited fds closed, rlimits (AS {} MiB, fsize {} MiB, nofile {}, nproc {}), wall-clock kill; private uid {}; network namespace {}; private root (PID namespace, read-only /usr, private /proc, {} MiB tmpfs) {}; private /tmp {}; user namespace {}; Landlock {landlock}; seccomp {}",
            self.python.display(),
            self.limits.address_space >> 20,
            self.limits.file_size >> 20,
            self.limits.open_files,
            self.limits.processes,
            on(self.private_uid),
            on(self.network_namespace),
            self.limits.disk >> 20,
            on(self.private_root),
            on(self.private_tmp),
            on(self.user_namespace),
            on(self.seccomp),
        )
    }
}

/// How a run ended.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Status {
    /// The program exited by itself.
    Exited {
        /// Its exit code.
        code: i32,
    },
    /// Killed by a signal: SIGXCPU (24) means the CPU-seconds limit.
    Signaled {
        /// The signal's number.
        signal: i32,
    },
    /// The wall-clock limit passed; the group was killed.
    Timeout,
    /// More output than `Limits::output_bytes`; the group was killed.
    OutputLimit,
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct Execution {
    /// How the run ended.
    pub status: Status,
    /// What the program wrote to stdout, at most `Limits::output_bytes`.
    pub stdout: Vec<u8>,
    /// What the program wrote to stderr, at most `Limits::output_bytes`.
    pub stderr: Vec<u8>,
    /// Wall-clock time of the run.
    pub wall: Duration,
    /// Processes of the run still alive when its main process ended (or was
    /// killed), all killed since; counted only with a private uid.
    pub leftovers_killed: usize,
}

impl Execution {
    /// Exited 0 and left no process behind (a program that plants a
    /// grandchild fails even if its own output was right).
    pub fn succeeded(&self) -> bool {
        self.status == Status::Exited { code: 0 } && self.leftovers_killed == 0
    }

    /// stdout as text (invalid UTF-8 replaced).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// stderr as text (invalid UTF-8 replaced).
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// One program to run: its source, what it reads on stdin, its wall limit.
#[derive(Clone, Debug)]
pub struct Job {
    /// The Python source, run as `main.py`.
    pub program: String,
    /// The bytes fed to its stdin.
    pub stdin: Vec<u8>,
    /// Wall-clock limit; past it the run's process group is killed.
    pub wall: Duration,
}

/// A probed sandbox; `run` may be called from several threads at once.
pub struct Sandbox {
    protections: Protections,
    setup: Setup,
    scratch: PathBuf,
    /// The Landlock and seccomp state, when the floor is in force.
    floor: Option<Arc<Floor>>,
}

/// The next private-uid slot, shared by every `Sandbox` of the process so
/// that no two live runs share a uid (one run's cleanup kills by uid).
static NEXT_SLOT: AtomicU32 = AtomicU32::new(0);

/// Private uids: 256 slots per nsed process, so concurrent runs never share
/// a process limit and every leftover of a run can be found by its uid.
const UID_BASE: u32 = 100_000;
const UID_SLOTS: u32 = 256;

impl Sandbox {
    /// Find Python and probe which protections this machine allows, under
    /// the default isolation: the strongest layer, required.
    pub fn new(python: Option<PathBuf>, limits: Limits) -> Result<Sandbox, SandboxError> {
        Sandbox::with_isolation(python, limits, Isolation::default())
    }

    /// Find Python, probe up to `isolation.layer`, and refuse under
    /// [`Policy::Require`] when the result does not contain a program.
    pub fn with_isolation(
        python: Option<PathBuf>,
        limits: Limits,
        isolation: Isolation,
    ) -> Result<Sandbox, SandboxError> {
        let python = match python {
            Some(p) => p,
            None => find_python()?,
        };
        let mut sandbox = Sandbox {
            protections: Protections {
                python,
                baseline: true,
                private_uid: false,
                network_namespace: false,
                private_tmp: false,
                private_root: false,
                user_namespace: false,
                landlock_abi: None,
                seccomp: false,
                layer: None,
                guards: None,
                policy: Some(isolation.policy),
                limits,
                missing: Vec::new(),
            },
            setup: Setup::default(),
            scratch: std::env::temp_dir(),
            floor: None,
        };
        if !reap::become_subreaper() {
            sandbox
                .protections
                .missing
                .push("subreaper: killed leftovers are reaped by init, not nsed".into());
        }
        sandbox.probe(isolation.layer)?;
        let guards = sandbox.guards();
        sandbox.protections.guards = Some(guards);
        sandbox.protections.layer = Some(guards.writes_outside);
        if isolation.policy == Policy::Require && !guards.contained() {
            return Err(SandboxError::Refused(sandbox.refusal(isolation.layer)));
        }
        Ok(sandbox)
    }

    /// The protections in force, as probed.
    pub fn protections(&self) -> &Protections {
        &self.protections
    }

    /// Try each layer, strongest first, on top of what is already granted;
    /// keep what works.
    fn probe(&mut self, choice: LayerChoice) -> Result<(), SandboxError> {
        self.try_setup(self.setup)
            .map_err(|message| SandboxError::PythonUnusable {
                path: self.protections.python.clone(),
                message,
            })?;
        if choice == LayerChoice::None {
            self.note_missing("isolation", "--sandbox-layer none asks for rlimits only");
            return Ok(());
        }
        if is_root() {
            let uid = Some(next_uid());
            self.protections.private_uid = self.grant(Setup { uid, ..self.setup }, "private uid");
        } else {
            self.protections.missing.push(
                "private uid: nsed is not root, so the program runs as your user (inside its namespaces or Landlock domain)".into(),
            );
        }
        if choice == LayerChoice::Auto {
            if is_root() {
                self.probe_root_namespaces();
            } else {
                self.probe_user_namespaces();
            }
        }
        if !(self.protections.private_root && self.protections.network_namespace) {
            self.probe_floor();
        }
        Ok(())
    }

    /// As root: network namespace, private /tmp, private root, each alone.
    fn probe_root_namespaces(&mut self) {
        let net = Setup {
            net_namespace: true,
            ..self.setup
        };
        self.protections.network_namespace = self.grant(net, "network namespace");
        let tmp = Setup {
            private_tmp: true,
            ..self.setup
        };
        self.protections.private_tmp = self.grant(tmp, "private /tmp");
        let root = Setup {
            private_root: true,
            ..self.setup
        };
        self.protections.private_root = self.grant(
            root,
            "private root (PID namespace, read-only filesystem, private /proc, disk quota)",
        );
    }

    /// As an ordinary user: the private root and network namespace inside a
    /// user namespace, all or nothing.
    fn probe_user_namespaces(&mut self) {
        // SAFETY: geteuid and getegid cannot fail.
        let ids = unsafe {
            IdMap {
                uid: libc::geteuid(),
                gid: libc::getegid(),
            }
        };
        let candidate = Setup {
            user_namespace: Some(ids),
            net_namespace: true,
            private_root: true,
            ..self.setup
        };
        let why = "user namespaces (private root, PID and network namespaces)";
        if self.grant(candidate, why) {
            self.protections.user_namespace = true;
            self.protections.network_namespace = true;
            self.protections.private_root = true;
        }
    }

    /// Landlock + seccomp, where the namespaces did not hold.
    fn probe_floor(&mut self) {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let floor = match Floor::new(&self.protections.python, home.as_deref()) {
            Ok(floor) => Arc::new(floor),
            Err(e) => return self.note_missing("Landlock + seccomp", &e.to_string()),
        };
        self.floor = Some(floor.clone());
        let candidate = Setup {
            floor: true,
            ..self.setup
        };
        if self.grant(candidate, "Landlock + seccomp") {
            self.protections.landlock_abi = Some(floor.abi());
            self.protections.seccomp = true;
        } else {
            self.floor = None;
        }
    }

    /// Which layer provides each protection, from what the probe granted.
    fn guards(&self) -> Guards {
        let p = &self.protections;
        let ns = if p.user_namespace {
            Layer::UserNamespaces
        } else {
            Layer::RootNamespaces
        };
        let floor = if p.seccomp {
            Layer::LandlockSeccomp
        } else {
            Layer::None
        };
        let pick = |by_namespace: bool, fallback: Layer| if by_namespace { ns } else { fallback };
        let floor_or_uid = |uid_helps: bool| match floor {
            Layer::None if uid_helps && p.private_uid && p.private_tmp => Layer::RootNamespaces,
            other => other,
        };
        let signals = match self.floor.as_deref() {
            Some(f) if f.scopes_signals() => Layer::LandlockSeccomp,
            _ => Layer::None,
        };
        Guards {
            writes_outside: pick(p.private_root, floor_or_uid(true)),
            host_files: pick(p.private_root, floor),
            network: pick(p.network_namespace, floor),
            leftover_processes: if p.private_root || p.private_uid {
                pick(p.private_root, Layer::RootNamespaces)
            } else {
                floor
            },
            process_limit: if p.private_uid {
                Layer::RootNamespaces
            } else if p.user_namespace {
                Layer::UserNamespaces
            } else {
                Layer::Rlimits
            },
            disk_quota: pick(p.private_root, Layer::Rlimits),
            other_processes: pick(p.private_root, signals),
        }
    }

    /// One line: what is missing, why, and how to get it.
    fn refusal(&self, choice: LayerChoice) -> String {
        if choice == LayerChoice::None {
            return "refusing to run untrusted code under --sandbox-layer none (rlimits only): drop that flag, or pass --sandbox best-effort to run it unconfined".into();
        }
        let why: Vec<&str> = self
            .protections
            .missing
            .iter()
            .filter(|m| {
                m.starts_with("user namespaces")
                    || m.starts_with("Landlock")
                    || m.starts_with("network")
                    || m.starts_with("private root")
            })
            .map(String::as_str)
            .collect();
        format!(
            "refusing to run untrusted code: no sandbox layer here stops it writing outside its directory, reading your home or using the network ({}); enable unprivileged user namespaces (sysctl user.max_user_namespaces > 0, kernel.unprivileged_userns_clone=1; on Ubuntu 23.10+ kernel.apparmor_restrict_unprivileged_userns=0) or boot Linux >= 5.13 with landlock in lsm=, or pass --sandbox best-effort to run it anyway",
            why.join("; ")
        )
    }

    /// Keep `candidate` if a test program runs under it; else say why not.
    fn grant(&mut self, candidate: Setup, what: &str) -> bool {
        match self.try_setup(candidate) {
            Ok(()) => {
                self.setup = candidate;
                true
            }
            Err(why) => {
                self.note_missing(what, &why);
                false
            }
        }
    }

    fn note_missing(&mut self, what: &str, why: &str) {
        self.protections.missing.push(format!("{what}: {why}"));
    }

    fn try_setup(&self, setup: Setup) -> Result<(), String> {
        let job = Job {
            program: "print('sandbox ok')\n".into(),
            stdin: Vec::new(),
            wall: Duration::from_secs(10),
        };
        match self.run_with(setup, &job) {
            Ok(run) if run.succeeded() && run.stdout == b"sandbox ok\n" => Ok(()),
            Ok(run) => Err(format!(
                "test program ended with {:?}: {}",
                run.status,
                run.stderr_text().trim()
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Run one program under every protection the probe granted.
    pub fn run(&self, job: &Job) -> Result<Execution, SandboxError> {
        let setup = Setup {
            uid: self.setup.uid.map(|_| next_uid()),
            ..self.setup
        };
        self.run_with(setup, job)
    }

    /// Run `jobs` with up to `parallel` at a time; results in input order.
    pub fn run_all(
        &self,
        jobs: &[Job],
        parallel: usize,
        on_done: impl Fn(usize, &Result<Execution, SandboxError>) + Sync,
    ) -> Vec<Result<Execution, SandboxError>> {
        let next = AtomicUsize::new(0);
        let (tx, rx) = mpsc::channel();
        std::thread::scope(|scope| {
            for _ in 0..parallel.clamp(1, jobs.len().max(1)) {
                let tx = tx.clone();
                let (next, on_done) = (&next, &on_done);
                scope.spawn(move || loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    let result = self.run(job);
                    on_done(i, &result);
                    // The receiver lives until the scope ends.
                    let _ = tx.send((i, result));
                });
            }
        });
        drop(tx);
        let mut results: Vec<_> = rx.into_iter().collect();
        results.sort_by_key(|(i, _)| *i);
        results.into_iter().map(|(_, r)| r).collect()
    }

    fn run_with(&self, setup: Setup, job: &Job) -> Result<Execution, SandboxError> {
        let dir = self.prepare_dir(setup, &job.program)?;
        let limits = self.protections.limits;
        let raw = RawLimits {
            address_space: limits.address_space,
            cpu_seconds: job.wall.as_secs() + 1,
            file_size: limits.file_size,
            open_files: limits.open_files,
            processes: process_limit(setup, limits.processes),
            disk: limits.disk,
        };
        let floor = match (&self.floor, setup.floor) {
            (Some(floor), true) => {
                let ruleset = floor.ruleset(dir.path()).map_err(|e| SandboxError::Setup {
                    step: "Landlock ruleset",
                    source: io::Error::other(e.to_string()),
                })?;
                Some((ruleset, floor.clone()))
            }
            _ => None,
        };
        let (report_read, report_write) = report_pipe().map_err(SandboxError::Spawn)?;
        let report_fd = report_write.as_raw_fd();
        let mut command = Command::new(&self.protections.python);
        command
            .args(["-I", "-B", "main.py"])
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: `enter` makes only async-signal-safe syscalls; the ruleset
        // and filters were built before the fork and are only read.
        unsafe {
            command.pre_exec(move || {
                let floor = floor
                    .as_ref()
                    .map(|(ruleset, f)| (ruleset.as_raw_fd(), f.filters()));
                child::enter(setup, raw, report_fd, floor)
            });
        }
        let start = Instant::now();
        let spawned = command.spawn();
        // Only the child's copies of the write end may remain.
        drop(report_write);
        let child = spawned.map_err(SandboxError::Spawn)?;
        let execution = supervise(child, setup, job, limits.output_bytes, start, report_read);
        drop(dir);
        execution
    }

    /// A fresh directory holding `main.py`, owned by the run's uid.
    fn prepare_dir(&self, setup: Setup, program: &str) -> Result<tempfile::TempDir, SandboxError> {
        let dir = tempfile::Builder::new()
            .prefix("nsed-sandbox-")
            .tempdir_in(&self.scratch)
            .map_err(SandboxError::Scratch)?;
        std::fs::write(dir.path().join("main.py"), program).map_err(SandboxError::Scratch)?;
        if setup.private_root {
            // The mount point of the private root's tmpfs.
            std::fs::create_dir(dir.path().join("root")).map_err(SandboxError::Scratch)?;
        }
        if let Some(uid) = setup.uid {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(uid))
                .map_err(SandboxError::Scratch)?;
        }
        Ok(dir)
    }
}

/// RLIMIT_NPROC for one run: the limit itself under a private uid or in a
/// user namespace (where only the run's own tasks count); for an ordinary
/// user without either, the tasks the user already has plus the limit;
/// root without a private uid is not limited (the kernel exempts it).
fn process_limit(setup: Setup, processes: u64) -> u64 {
    if setup.uid.is_some() || setup.user_namespace.is_some() {
        processes
    } else if is_root() {
        u64::MAX
    } else {
        // SAFETY: getuid cannot fail.
        reap::count_tasks(unsafe { libc::getuid() }) + processes
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// How many programs to run at once: one per core.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// A private uid for one run: unique among the live runs of this process
/// (256 slots), and apart from other nsed processes' by the pid.
fn next_uid() -> u32 {
    let slot = NEXT_SLOT.fetch_add(1, Ordering::Relaxed) % UID_SLOTS;
    UID_BASE + (std::process::id() % 16_000) * UID_SLOTS + slot
}

/// Feed stdin, read capped output, enforce the wall clock, then kill every
/// leftover of the run.
fn supervise(
    mut child: Child,
    setup: Setup,
    job: &Job,
    cap: usize,
    start: Instant,
    report: OwnedFd,
) -> Result<Execution, SandboxError> {
    let overflow = Arc::new(AtomicBool::new(false));
    if let Some(mut stdin) = child.stdin.take() {
        let input = job.stdin.clone();
        // A program that never reads must not block us: write from a thread;
        // EPIPE (the program exited) is not an error.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
    }
    let stdout = child
        .stdout
        .take()
        .map(|p| capture(p, cap, overflow.clone()));
    let stderr = child
        .stderr
        .take()
        .map(|p| capture(p, cap, overflow.clone()));
    let mut status = wait_bounded(&mut child, start + job.wall, &overflow)?;
    if overflow.load(Ordering::Relaxed) {
        // The program may have died of the closed pipe before we saw the flag.
        status = Status::OutputLimit;
    }
    let wall = start.elapsed();
    let main = child.id();
    // Counted before the kill: what the program left running when it ended
    // (by uid as root; else in its group, which the floor keeps it in).
    let mut leftovers_killed = match setup.uid {
        Some(uid) => reap::count_live(uid, main),
        None if !setup.private_root => reap::count_group(main, main),
        None => 0,
    };
    reap::kill_group(main);
    if let Some(uid) = setup.uid {
        reap::kill_uid(uid, main);
    }
    let _ = child.wait();
    match read_report(report) {
        Some(child::Report::SetupFailed { step, errno }) => {
            return Err(SandboxError::Setup {
                step: step.describe(),
                source: io::Error::from_raw_os_error(errno),
            })
        }
        Some(child::Report::Ended {
            status: raw,
            leftovers,
        }) => {
            // With a private root, the keeper's status stands for the init's;
            // the program's own comes from the report.
            if matches!(status, Status::Exited { .. } | Status::Signaled { .. }) {
                status = status_of(raw);
            }
            leftovers_killed += leftovers as usize;
        }
        None => {}
    }
    // A leftover that escaped both group and uid (only possible without a
    // private uid) may hold a pipe open: do not wait for it forever.
    let collect = |rx: Option<mpsc::Receiver<Vec<u8>>>| {
        rx.and_then(|rx| rx.recv_timeout(Duration::from_secs(2)).ok())
            .unwrap_or_default()
    };
    Ok(Execution {
        status,
        stdout: collect(stdout),
        stderr: collect(stderr),
        wall,
        leftovers_killed,
    })
}

/// A pipe for the child's [`child::Report`]: both ends close-on-exec, the
/// read end non-blocking (it is read once, after the run has ended).
fn report_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The first report in the pipe (a setup failure wins over an end).
fn read_report(pipe: OwnedFd) -> Option<child::Report> {
    let mut file = std::fs::File::from(pipe);
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4 * child::REPORT_BYTES];
    while let Ok(n @ 1..) = file.read(&mut chunk) {
        bytes.extend_from_slice(&chunk[..n]);
    }
    let reports: Vec<child::Report> = bytes
        .chunks_exact(child::REPORT_BYTES)
        .filter_map(|c| child::Report::from_bytes(c.try_into().ok()?))
        .collect();
    reports
        .iter()
        .find(|r| matches!(r, child::Report::SetupFailed { .. }))
        .or(reports.first())
        .copied()
}

/// A raw `wait` status as a [`Status`].
fn status_of(raw: i32) -> Status {
    if libc::WIFEXITED(raw) {
        Status::Exited {
            code: libc::WEXITSTATUS(raw),
        }
    } else if libc::WIFSIGNALED(raw) {
        Status::Signaled {
            signal: libc::WTERMSIG(raw),
        }
    } else {
        Status::Signaled { signal: 0 }
    }
}

fn wait_bounded(
    child: &mut Child,
    deadline: Instant,
    overflow: &AtomicBool,
) -> Result<Status, SandboxError> {
    let mut poll = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait().map_err(SandboxError::Wait)? {
            return Ok(status_of(status.into_raw()));
        }
        if overflow.load(Ordering::Relaxed) {
            reap::kill_group(child.id());
            return Ok(Status::OutputLimit);
        }
        if Instant::now() >= deadline {
            reap::kill_group(child.id());
            return Ok(Status::Timeout);
        }
        std::thread::sleep(poll);
        poll = (poll * 2).min(Duration::from_millis(10));
    }
}

/// Read `pipe` on a thread, keeping at most `cap` bytes; past the cap, raise
/// `overflow` and stop reading (the writer then gets EPIPE).
fn capture(
    mut pipe: impl Read + Send + 'static,
    cap: usize,
    overflow: Arc<AtomicBool>,
) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut chunk = [0u8; 64 << 10];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) if kept.len() + n > cap => {
                    kept.extend_from_slice(&chunk[..cap - kept.len()]);
                    overflow.store(true, Ordering::Relaxed);
                    break;
                }
                Ok(n) => kept.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = tx.send(kept);
    });
    rx
}

/// The system Python first: a per-user install (pyenv under /root) is not
/// readable by the sandbox's private uid.
fn find_python() -> Result<PathBuf, SandboxError> {
    let mut candidates = vec![
        PathBuf::from("/usr/bin/python3"),
        PathBuf::from("/usr/local/bin/python3"),
    ];
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("python3")));
    }
    candidates
        .iter()
        .find(|p| is_executable(p))
        .cloned()
        .ok_or_else(|| {
            SandboxError::NoPython(
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests;
