//! The hostile-code suite of the code benchmarks, through the binary: every
//! program is contained, ends as a failure or harmlessly, and afterwards no
//! process of it is alive, no file exists outside its sandbox directory, and
//! nsed itself finished normally.

mod common;

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A string that only the suite's programs carry on their command lines.
const MARKER: &str = "nsed-hostile-marker-7f3a";

fn programs(port: u16, canary: &Path, nonce: &str, repo: &Path) -> Vec<(&'static str, String)> {
    let canary = canary.display();
    let repo = repo.display();
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
            "read_host",
            format!(
                "import os\npids = [d for d in os.listdir('/proc') if d.isdigit()]\nprint('pids', len(pids))\nfor d in pids:\n    try:\n        print('cmdline', open('/proc/%s/cmdline' % d, 'rb').read()[:40])\n    except OSError:\n        pass\nfor p in ['{repo}/Cargo.toml', '/etc/passwd', '/etc/hostname', '{canary}', '/root']:\n    try:\n        os.listdir(p) if p == '/root' else open(p).read(10)\n        print('read', p)\n    except OSError:\n        pass\nfor p in ['/x', '/usr/x', '/etc/x']:\n    try:\n        open(p, 'w').write('x')\n        print('wrote', p)\n    except OSError:\n        pass\n"
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
fn hostile_programs_are_contained_and_nsed_survives() {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let sandbox_tmp = scratch.path().join("tmp");
    let workdir = scratch.path().join("work");
    let programs_dir = scratch.path().join("programs");
    for d in [&sandbox_tmp, &workdir, &programs_dir] {
        std::fs::create_dir(d).expect("dir");
    }
    let canary = workdir.join("canary.txt");
    std::fs::write(&canary, "keep me").expect("canary");
    let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let nonce = format!("nsed-hostile-{}", std::process::id());
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let programs = programs(port, &canary, &nonce, repo);
    let mut files = Vec::new();
    for (name, source) in &programs {
        let file = programs_dir.join(format!("{name}.py"));
        std::fs::write(&file, source).expect("program");
        files.push(file);
    }

    let secret = "nsed-secret-value-91c2";
    // A descriptor nsed inherits from its caller (fd 9, a file the programs
    // must not reach), as `(exec 9>>secret.log; nsed sandbox run …)` gives.
    let inherited = scratch.path().join("secret.log");
    std::fs::write(&inherited, "").expect("secret log");
    let start = Instant::now();
    let mut child = Command::new("bash")
        .arg("-c")
        .arg("exec 9>>\"$1\"; shift; exec \"$@\"")
        .arg("bash")
        .arg(&inherited)
        .arg(env!("CARGO_BIN_EXE_nsed"))
        .args(["sandbox", "run", "--timeout", "3", "--jobs", "2"])
        .args(&files)
        .current_dir(&workdir)
        .env("TMPDIR", &sandbox_tmp)
        .env("NSED_HOSTILE_SECRET", secret)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nsed starts");
    // Bound the whole suite: 16 programs, 2 at a time, 3 s each at most.
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("nsed sandbox run did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // nsed alive to the end: a normal exit with the "some program failed" code.
    assert_eq!(out.status.code(), Some(1), "{stderr}\n{stdout}");
    assert!(stderr.contains("private uid yes") || !is_root(), "{stderr}");

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
    if is_root() {
        assert!(
            stdout_of("kill_parent").contains("refused"),
            "{}",
            results["kill_parent"]
        );
        assert!(
            stdout_of("delete_nsed_files").contains("refused"),
            "{}",
            results["delete_nsed_files"]
        );
        // A grandchild that outlived its parent is killed, and the run
        // fails for leaving it; so is one that hops from fork to fork after
        // setsid (the PID namespace's init ends it, whatever its group).
        for name in ["grandchild", "fork_hopping"] {
            assert!(
                results[name]["leftovers_killed"].as_u64() >= Some(1),
                "{}",
                results[name]
            );
            assert_ne!(results[name]["succeeded"], true, "{}", results[name]);
        }
        // As root the private root is in force: host files, other
        // processes and the rest of the disk are out of reach.
        assert!(stderr.contains(") yes; private /tmp"), "{stderr}");
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
