//! The hostile-code suite of the code benchmarks, through the binary: every
//! program is contained, ends as a failure or harmlessly, and afterwards no
//! process of it is alive, no file exists outside its sandbox directory, and
//! nsed itself finished normally.

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
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_nsed"))
        .args(["sandbox", "run", "--timeout", "3", "--jobs", "2"])
        .args(&files)
        .current_dir(&workdir)
        .env("TMPDIR", &sandbox_tmp)
        .env("NSED_HOSTILE_SECRET", secret)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nsed starts");
    // Bound the whole suite: 12 programs, 2 at a time, 3 s each at most.
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
        // A grandchild that outlived its parent is found by uid and killed,
        // and the run fails for leaving it.
        assert!(results["grandchild"]["leftovers_killed"].as_u64() >= Some(1));
        assert_ne!(results["grandchild"]["succeeded"], true);
    }

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
