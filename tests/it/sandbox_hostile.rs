//! The hostile-code suite of the code benchmarks, through the binary, in
//! each isolation layer: as root (root namespaces and a private uid), as an
//! ordinary user (user namespaces), and as an ordinary user with the
//! namespaces skipped (the Landlock + seccomp floor). Every program is
//! contained, ends as a failure or harmlessly, and afterwards no process of
//! it is alive, no file exists outside its sandbox directory, the user's
//! home is unread and unchanged, and nsed itself finished normally. A
//! negative control shows the same home-writing program does write when
//! every layer is off, and a kernel without user namespaces or Landlock
//! (simulated with a seccomp filter on nsed) makes `--sandbox require`
//! refuse.
//!
//! CI runs as root: the unprivileged modes drop to uid/gid 65534 with
//! `setpriv`; run as an ordinary user, they run as that user.

use crate::common;

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A string that only the suite's programs carry on their command lines.
const MARKER: &str = "nsed-hostile-marker-7f3a";
/// The unprivileged account the suite drops to when it runs as root.
const NOBODY: u32 = 65534;
/// What the planted secret in the user's home holds.
const HOME_SECRET: &str = "nsed-home-secret-5be1";

/// How nsed runs and which layer must hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// nsed as root: root namespaces and a private uid.
    Root,
    /// nsed as an ordinary user: user namespaces.
    UserNamespaces,
    /// nsed as an ordinary user with `--sandbox-layer landlock`.
    Floor,
}

impl Mode {
    fn layer_line(self) -> &'static str {
        match self {
            Mode::Root => "layer root namespaces",
            Mode::UserNamespaces => "layer user namespaces",
            Mode::Floor => "layer Landlock + seccomp",
        }
    }

    fn private_root(self) -> bool {
        self != Mode::Floor
    }
}

fn programs(
    port: u16,
    canary: &Path,
    nonce: &str,
    repo: &Path,
    home: &Path,
) -> Vec<(&'static str, String)> {
    let canary = canary.display();
    let repo = repo.display();
    let home = home.display();
    vec![
        ("infinite_loop", "while True:\n    pass\n".into()),
        ("sleep", "import time\ntime.sleep(3600)\n".into()),
        (
            "fork_bomb",
            "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
                .into(),
        ),
        ("allocate_50gb", "x = bytearray(50 * 10**9)\nprint(len(x))\n".into()),
        (
            "print_1gb",
            "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(chunk)\n"
                .into(),
        ),
        (
            "fill_disk",
            "with open('big', 'wb') as f:\n    for _ in range(1024):\n        f.write(b'x' * (1 << 20))\n"
                .into(),
        ),
        (
            "write_outside",
            format!(
                "import os\nfor p in ['{repo}/{nonce}', '/tmp/{nonce}', '/var/tmp/{nonce}', '/dev/shm/{nonce}', '{canary}.new']:\n    try:\n        open(p, 'w').write('pwned')\n        print('wrote', p)\n    except OSError as e:\n        print('refused', p, e)\n"
            ),
        ),
        (
            "sockets",
            format!(
                "import socket\nfor addr in [('127.0.0.1', {port}), ('1.1.1.1', 80)]:\n    try:\n        socket.create_connection(addr, timeout=2).send(b'pwned')\n        print('connected', addr)\n    except OSError as e:\n        print('refused', addr, e)\n"
            ),
        ),
        (
            "read_environment",
            "import os\nprint(dict(os.environ))\nfor p in ['/proc/%d/environ' % os.getppid(), '/proc/1/environ']:\n    try:\n        print(open(p, 'rb').read())\n    except OSError as e:\n        print('refused', p, e)\n"
                .into(),
        ),
        (
            "kill_parent",
            "import os\nfor kill in [lambda: os.kill(os.getppid(), 9), lambda: os.killpg(os.getpgid(os.getppid()), 9)]:\n    try:\n        kill()\n    except OSError as e:\n        print('refused', e)\n"
                .into(),
        ),
        (
            "grandchild",
            format!(
                "import os, sys\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(600)  # {MARKER}'])\n    os._exit(0)\nos.wait()\nprint('parent done')\n"
            ),
        ),
        (
            "fork_hopping",
            format!(
                "import os, sys\nif os.fork() == 0:\n    os.setsid()\n    for _ in range(50):\n        if os.fork():\n            os._exit(0)\n    os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(600)  # {MARKER}'])\nprint('parent done')\n"
            ),
        ),
        (
            "inherited_fd",
            "import os\nfor fd in range(3, 64):\n    try:\n        os.write(fd, b'pwned')\n        print('wrote', fd)\n    except OSError:\n        pass\nprint('done')\n".into(),
        ),
        (
            "fill_tmpfs",
            "total = 0\ntry:\n    for i in range(16):\n        with open('f%d' % i, 'wb') as f:\n            for _ in range(8):\n                f.write(b'x' * (1 << 20))\n                total += 1 << 20\nexcept OSError as e:\n    print('stopped', e)\nprint('total', total)\n".into(),
        ),
        (
            "home",
            format!(
                "import os\nfor p in ['{home}/.ssh/id_secret', '{home}']:\n    try:\n        print('read', open(p).read() if p.endswith('secret') else os.listdir(p))\n    except OSError as e:\n        print('refused', p, e)\nfor p in ['{home}/pwned.txt', '{home}/.ssh/id_secret', '{home}/.bashrc']:\n    try:\n        open(p, 'a').write('pwned')\n        print('wrote', p)\n    except OSError as e:\n        print('refused', p, e)\n"
            ),
        ),
        (
            "read_host",
            format!(
                "import os\ntry:\n    pids = [d for d in os.listdir('/proc') if d.isdigit()]\nexcept OSError:\n    pids = []\nprint('pids', len(pids))\nfor d in pids:\n    try:\n        print('cmdline', open('/proc/%s/cmdline' % d, 'rb').read()[:40])\n    except OSError:\n        pass\nfor p in ['{repo}/Cargo.toml', '/etc/passwd', '/etc/hostname', '{canary}', '/root']:\n    try:\n        os.listdir(p) if p == '/root' else open(p).read(10)\n        print('read', p)\n    except OSError:\n        pass\nfor p in ['/x', '/usr/x', '/etc/x']:\n    try:\n        open(p, 'w').write('x')\n        print('wrote', p)\n    except OSError:\n        pass\n"
            ),
        ),
        (
            "delete_nsed_files",
            format!(
                "import os, shutil\ntry:\n    os.remove('{canary}')\nexcept OSError as e:\n    print('refused', e)\nshutil.rmtree(os.path.dirname('{canary}'), ignore_errors=True)\n"
            ),
        ),
    ]
}

#[test]
fn hostile_programs_are_contained_as_root() {
    if !is_root() {
        eprintln!("skipped: the root layer needs nsed started as root");
        return;
    }
    run_suite(Mode::Root);
}

#[test]
fn hostile_programs_are_contained_in_user_namespaces() {
    run_suite(Mode::UserNamespaces);
}

#[test]
fn hostile_programs_are_contained_by_landlock_and_seccomp() {
    run_suite(Mode::Floor);
}

/// A scratch tree the suite's user owns: `tmp` (nsed's TMPDIR), `work`
/// (its working directory, with the canary), `home` (its HOME, with a
/// planted secret), `programs`, and a copy of the nsed binary that the
/// unprivileged user can execute wherever the checkout lives.
struct Scratch {
    _dir: tempfile::TempDir,
    root: PathBuf,
    nsed: PathBuf,
    uid: u32,
}

impl Scratch {
    fn new(mode: Mode) -> Scratch {
        let dir = tempfile::tempdir().expect("scratch dir");
        let root = dir.path().to_path_buf();
        let uid = if mode == Mode::Root || !is_root() {
            current_uid()
        } else {
            NOBODY
        };
        for d in ["tmp", "work", "programs", "home", "home/.ssh"] {
            std::fs::create_dir(root.join(d)).expect("dir");
        }
        std::fs::write(root.join("home/.ssh/id_secret"), HOME_SECRET).expect("secret");
        std::fs::write(root.join("home/.bashrc"), "# keep\n").expect("bashrc");
        std::fs::write(root.join("work/canary.txt"), "keep me").expect("canary");
        let nsed = root.join("nsed");
        std::fs::copy(env!("CARGO_BIN_EXE_nsed"), &nsed).expect("copy nsed");
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        for d in [
            "tmp",
            "work",
            "home",
            "home/.ssh",
            "home/.ssh/id_secret",
            "home/.bashrc",
            "work/canary.txt",
        ] {
            std::os::unix::fs::chown(root.join(d), Some(uid), Some(uid)).expect("chown");
        }
        Scratch {
            _dir: dir,
            root,
            nsed,
            uid,
        }
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.root.join(sub)
    }

    /// `nsed ARGS` as the suite's user, with fd 9 open on `inherited` (a
    /// descriptor nsed inherits from its caller, as `(exec 9>>secret.log;
    /// nsed sandbox run …)` gives), HOME and TMPDIR in the scratch tree.
    fn nsed(&self, inherited: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg("exec 9>>\"$1\"; shift; exec \"$@\"")
            .arg("bash")
            .arg(inherited);
        if self.uid != current_uid() {
            let id = self.uid.to_string();
            cmd.arg("setpriv")
                .arg(format!("--reuid={id}"))
                .arg(format!("--regid={id}"))
                .arg("--clear-groups");
        }
        cmd.arg(&self.nsed)
            .args(args)
            .current_dir(self.path("work"))
            .env("TMPDIR", self.path("tmp"))
            .env("HOME", self.path("home"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Every file under home with its bytes.
    fn home_snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut out = BTreeMap::new();
        let mut stack = vec![self.path("home")];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("home dir").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    out.insert(path.clone(), std::fs::read(&path).expect("home file"));
                }
            }
        }
        out
    }
}

/// Wait for `child` at most `bound`, then its output.
fn wait_bounded(mut child: std::process::Child, bound: Duration) -> Output {
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > bound {
            let _ = child.kill();
            panic!("nsed did not finish in {bound:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

fn run_suite(mode: Mode) {
    let scratch = Scratch::new(mode);
    let (workdir, sandbox_tmp, home) = (
        scratch.path("work"),
        scratch.path("tmp"),
        scratch.path("home"),
    );
    let canary = workdir.join("canary.txt");
    let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let nonce = format!("nsed-hostile-{}-{mode:?}", std::process::id());
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let programs = programs(port, &canary, &nonce, repo, &home);
    let mut files = Vec::new();
    for (name, source) in &programs {
        let file = scratch.path("programs").join(format!("{name}.py"));
        std::fs::write(&file, source).expect("program");
        files.push(file.display().to_string());
    }
    let home_before = scratch.home_snapshot();

    let secret = "nsed-secret-value-91c2";
    let inherited = scratch.path("secret.log");
    std::fs::write(&inherited, "").expect("secret log");
    let mut args = vec!["sandbox", "run", "--timeout", "3", "--jobs", "2"];
    if mode == Mode::Floor {
        args.extend(["--sandbox-layer", "landlock"]);
    }
    args.extend(files.iter().map(String::as_str));
    let child = scratch
        .nsed(&inherited, &args)
        .env("NSED_HOSTILE_SECRET", secret)
        .spawn()
        .expect("nsed starts");
    // Bound the whole suite: 17 programs, 2 at a time, 3 s each at most.
    let out = wait_bounded(child, Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // nsed alive to the end: a normal exit with the "some program failed" code.
    assert_eq!(out.status.code(), Some(1), "{stderr}\n{stdout}");
    assert!(stderr.contains(mode.layer_line()), "{mode:?}: {stderr}");
    if mode == Mode::Root {
        assert!(stderr.contains("private uid yes"), "{stderr}");
    }

    let results: BTreeMap<String, Value> = stdout
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("a JSON line per program");
            let name = Path::new(v["file"].as_str().expect("file"))
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("stem")
                .to_string();
            (name, v)
        })
        .collect();
    assert_eq!(results.len(), programs.len(), "{stdout}");
    let kind = |name: &str| {
        results[name]["status"]["kind"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let code = |name: &str| results[name]["status"]["code"].as_i64();
    let stdout_of = |name: &str| {
        results[name]["stdout_head"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };

    // Runaway programs are stopped and count as failures.
    assert_eq!(
        kind("infinite_loop"),
        "timeout",
        "{}",
        results["infinite_loop"]
    );
    assert_eq!(kind("sleep"), "timeout", "{}", results["sleep"]);
    assert_ne!(code("fork_bomb"), Some(0), "{}", results["fork_bomb"]);
    assert_eq!(
        code("allocate_50gb"),
        Some(1),
        "{}",
        results["allocate_50gb"]
    );
    assert!(results["allocate_50gb"]["stderr_tail"]
        .as_str()
        .is_some_and(|s| s.contains("MemoryError")));
    assert_eq!(
        kind("print_1gb"),
        "output_limit",
        "{}",
        results["print_1gb"]
    );
    assert_eq!(results["print_1gb"]["stdout_bytes"], 4 << 20);
    // RLIMIT_FSIZE (Python ignores SIGXFSZ, so the write fails with EFBIG).
    assert_eq!(code("fill_disk"), Some(1), "{}", results["fill_disk"]);
    assert!(results["fill_disk"]["stderr_tail"]
        .as_str()
        .is_some_and(|s| s.contains("File too large")));

    // Nothing reached the network, the environment or nsed.
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("a sandboxed program reached 127.0.0.1:{port}: {other:?}"),
    }
    assert!(
        !stdout_of("sockets").contains("connected"),
        "{}",
        results["sockets"]
    );
    assert!(!stdout.contains(secret), "the secret leaked: {stdout}");
    // The user's home: neither read nor changed.
    assert!(
        !stdout.contains(HOME_SECRET),
        "the home secret leaked: {stdout}"
    );
    assert!(!stdout_of("home").contains("wrote"), "{}", results["home"]);
    assert!(!stdout_of("home").contains("read "), "{}", results["home"]);
    assert_eq!(scratch.home_snapshot(), home_before, "the home changed");
    // Signals at nsed: refused by the private uid (root) or by seccomp and
    // Landlock's signal scope (floor); in user namespaces nsed is not even
    // visible (the parent is the namespace's init, immune to the program).
    if mode != Mode::UserNamespaces {
        assert!(
            stdout_of("kill_parent").contains("refused"),
            "{}",
            results["kill_parent"]
        );
    }
    if mode == Mode::Root {
        assert!(
            stdout_of("delete_nsed_files").contains("refused"),
            "{}",
            results["delete_nsed_files"]
        );
    }
    for name in ["grandchild", "fork_hopping"] {
        if mode.private_root() {
            // A grandchild that outlived its parent is killed, and the run
            // fails for leaving it; so is one that hops from fork to fork
            // after setsid (the PID namespace's init ends it, whatever its
            // group).
            assert!(
                results[name]["leftovers_killed"].as_u64() >= Some(1),
                "{}",
                results[name]
            );
            assert_ne!(results[name]["succeeded"], true, "{}", results[name]);
        } else {
            // The floor refuses setsid, so nothing leaves the run's group.
            assert!(
                results[name]["stderr_tail"]
                    .as_str()
                    .is_some_and(|s| s.contains("PermissionError")),
                "{}",
                results[name]
            );
        }
    }
    // Host files and other processes are out of reach in every layer.
    let read_host = stdout_of("read_host");
    assert!(!read_host.contains("read "), "{read_host}");
    assert!(!read_host.contains("wrote"), "{read_host}");
    let pids: usize = read_host
        .lines()
        .find_map(|l| l.strip_prefix("pids "))
        .and_then(|n| n.parse().ok())
        .expect("pids line");
    assert!(pids <= 2, "sees {pids} processes: {read_host}");
    assert!(!read_host.contains("nsed"), "{read_host}");
    if mode.private_root() {
        // Disk use is bounded by the 64 MiB tmpfs, not only per file.
        let fill = stdout_of("fill_tmpfs");
        let total: u64 = fill
            .lines()
            .find_map(|l| l.strip_prefix("total "))
            .and_then(|n| n.parse().ok())
            .expect("total line");
        assert!(total <= 64 << 20, "{fill}");
        assert!(fill.contains("No space left"), "{fill}");
    }
    // No descriptor nsed inherited reaches a program.
    assert!(
        !stdout_of("inherited_fd").contains("wrote"),
        "{}",
        results["inherited_fd"]
    );
    assert_eq!(std::fs::read(&inherited).expect("secret log"), b"");

    // No file outside the sandbox directories; those are gone too.
    assert_eq!(
        std::fs::read_to_string(&canary).expect("canary kept"),
        "keep me"
    );
    assert_eq!(std::fs::read_dir(&workdir).expect("workdir").count(), 1);
    assert!(!Path::new(&format!("{}.new", canary.display())).exists());
    for leaked in [
        repo.join(&nonce),
        Path::new("/tmp").join(&nonce),
        Path::new("/var/tmp").join(&nonce),
        Path::new("/dev/shm").join(&nonce),
    ] {
        assert!(!leaked.exists(), "{} was written", leaked.display());
    }
    let left: Vec<_> = std::fs::read_dir(&sandbox_tmp).expect("tmp").collect();
    assert!(left.is_empty(), "sandbox directories left behind: {left:?}");

    // No stray process: none carries the marker, none runs as a sandbox uid.
    let stray = stray_processes();
    assert!(stray.is_empty(), "stray processes: {stray:?}");
}

/// The programs that write to the home and read it, run as the suite's
/// user under `args`; the home afterwards.
fn run_home_program(scratch: &Scratch, args: &[&str], seccomp: bool) -> Output {
    let home = scratch.path("home");
    let program = scratch.path("programs/home.py");
    let source = format!(
        "print(open('{h}/.ssh/id_secret').read())\nopen('{h}/pwned.txt', 'w').write('pwned')\n",
        h = home.display()
    );
    std::fs::write(&program, source).expect("program");
    let inherited = scratch.path("secret.log");
    std::fs::write(&inherited, "").expect("log");
    let mut all: Vec<&str> = vec!["sandbox", "run"];
    all.extend(args);
    let program = program.display().to_string();
    all.push(&program);
    let mut cmd = scratch.nsed(&inherited, &all);
    if seccomp {
        deny_namespaces_and_landlock(&mut cmd);
    }
    wait_bounded(cmd.spawn().expect("nsed starts"), Duration::from_secs(60))
}

/// The negative control: with every layer off the same program does read
/// the home and write to it — so the suite's home checks can fail.
#[test]
fn without_layers_the_home_program_does_write() {
    let scratch = Scratch::new(Mode::UserNamespaces);
    let out = run_home_program(
        &scratch,
        &["--sandbox", "best-effort", "--sandbox-layer", "none"],
        false,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}\n{stdout}");
    assert!(stderr.contains("layer none"), "{stderr}");
    assert!(stdout.contains(HOME_SECRET), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(scratch.path("home/pwned.txt")).expect("written"),
        "pwned"
    );
    // The same program in the default layer is contained.
    std::fs::remove_file(scratch.path("home/pwned.txt")).expect("rm");
    let out = run_home_program(&scratch, &[], false);
    assert_eq!(out.status.code(), Some(1));
    assert!(!String::from_utf8_lossy(&out.stdout).contains(HOME_SECRET));
    assert!(!scratch.path("home/pwned.txt").exists());
}

/// A kernel without user namespaces or Landlock (simulated: nsed runs under
/// a seccomp filter that fails `unshare` and `landlock_create_ruleset` as
/// such a kernel does): `--sandbox require` exits 2 with one line naming
/// both layers and how to get them, and runs nothing; `best-effort` runs
/// with warnings; the probe says layer none.
#[test]
fn require_refuses_where_no_layer_exists() {
    let scratch = Scratch::new(Mode::UserNamespaces);
    let out = run_home_program(&scratch, &["--sandbox", "require"], true);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    for needle in [
        "refusing to run untrusted code",
        "user namespaces",
        "Landlock is not available",
        "user.max_user_namespaces",
        "Linux >= 5.13",
        "--sandbox best-effort",
    ] {
        assert!(stderr.contains(needle), "{needle}: {stderr}");
    }
    assert!(out.stdout.is_empty());
    assert!(!scratch.path("home/pwned.txt").exists(), "a program ran");

    let out = run_home_program(&scratch, &["--sandbox", "best-effort"], true);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("layer none"), "{stderr}");
    assert!(
        stderr.contains("warning: sandbox protection missing"),
        "{stderr}"
    );

    let mut probe = scratch.nsed(&scratch.path("secret.log"), &["sandbox", "probe"]);
    deny_namespaces_and_landlock(&mut probe);
    let out = wait_bounded(probe.spawn().expect("probe"), Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0));
    let probe: Value = serde_json::from_slice(&out.stdout).expect("probe JSON");
    assert_eq!(probe["layer"], "none", "{probe}");
    assert_eq!(probe["contained"], false, "{probe}");
    assert_eq!(probe["guards"]["network"], "none", "{probe}");
}

/// Make `unshare` fail with EPERM and Landlock's syscalls with ENOSYS in
/// the command's process and everything it starts.
fn deny_namespaces_and_landlock(cmd: &mut Command) {
    use seccompiler::{SeccompAction, SeccompFilter, TargetArch};
    use std::os::unix::process::CommandExt;
    let arch = if cfg!(target_arch = "aarch64") {
        TargetArch::aarch64
    } else {
        TargetArch::x86_64
    };
    let filter = |nrs: &[i64], errno: i32| -> seccompiler::BpfProgram {
        let rules = nrs.iter().map(|&nr| (nr, Vec::new())).collect();
        SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(errno as u32),
            arch,
        )
        .and_then(TryInto::try_into)
        .expect("filter")
    };
    let no_userns = filter(&[libc::SYS_unshare], libc::EPERM);
    let no_landlock = filter(
        &[
            libc::SYS_landlock_create_ruleset,
            libc::SYS_landlock_add_rule,
            libc::SYS_landlock_restrict_self,
        ],
        libc::ENOSYS,
    );
    // SAFETY: between fork and exec, only prctl and seccomp syscalls on
    // programs built before the fork (no allocation).
    unsafe {
        cmd.pre_exec(move || {
            for program in [&no_userns, &no_landlock] {
                seccompiler::apply_filter(program).map_err(std::io::Error::other)?;
            }
            Ok(())
        });
    }
}

fn current_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1))
                .and_then(|id| id.parse().ok())
        })
        .expect("uid")
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// Live processes carrying the marker or running as a sandbox uid (≥ 100000).
fn stray_processes() -> Vec<String> {
    let mut stray = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::trim)
        };
        if field("State:").is_some_and(|s| s.starts_with('Z')) {
            continue;
        }
        let uid: u32 = field("Uid:")
            .and_then(|ids| ids.split_whitespace().next())
            .and_then(|id| id.parse().ok())
            .unwrap_or(0);
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if (100_000..10_000_000).contains(&uid) || cmdline.contains(MARKER) {
            stray.push(format!("{pid} uid {uid}: {cmdline}"));
        }
    }
    stray
}

/// `nsed sandbox run fail.py | true`: the reader is gone before the result
/// line is printed; "a program failed" (exit 1) must survive the closed pipe.
#[test]
fn a_closed_stdout_keeps_the_failure_exit_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = dir.path().join("fail.py");
    std::fs::write(&program, "print('x')\nraise SystemExit(3)\n").expect("program");
    let out = common::output_with_stdout_closed(
        Command::new(env!("CARGO_BIN_EXE_nsed"))
            .args(["sandbox", "run"])
            .arg(&program),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
