//! Real Python, real limits: each test runs a program in the sandbox.

use super::*;

fn sandbox(limits: Limits) -> Sandbox {
    Sandbox::new(None, limits).expect("python3 and a sandbox")
}

fn job(program: &str, stdin: &str, wall_ms: u64) -> Job {
    Job {
        program: program.into(),
        stdin: stdin.as_bytes().to_vec(),
        wall: Duration::from_millis(wall_ms),
    }
}

#[test]
fn runs_a_program_on_stdin_and_keeps_its_exit_code() {
    let sb = sandbox(Limits::default());
    let run = sb
        .run(&job(
            "import sys\nprint(sys.stdin.read().upper(), end='')\n",
            "abc\n",
            5000,
        ))
        .expect("run");
    assert_eq!(run.status, Status::Exited { code: 0 });
    assert_eq!(run.stdout_text(), "ABC\n");
    let run = sb
        .run(&job("import sys\nsys.exit(3)\n", "", 5000))
        .expect("run");
    assert_eq!(run.status, Status::Exited { code: 3 });
    assert!(!run.succeeded());
}

#[test]
fn environment_is_cleared_and_directory_is_fresh() {
    let sb = sandbox(Limits::default());
    let program = "import os\nprint(sorted(os.environ))\nprint(sorted(os.listdir('.')))\n";
    let run = sb.run(&job(program, "", 5000)).expect("run");
    assert_eq!(run.stdout_text(), "['LANG', 'PATH']\n['main.py']\n");
}

#[test]
fn wall_clock_limit_kills_a_busy_loop() {
    let sb = sandbox(Limits::default());
    let run = sb
        .run(&job("while True:\n    pass\n", "", 700))
        .expect("run");
    assert_eq!(run.status, Status::Timeout);
    assert!(run.wall < Duration::from_secs(3), "{:?}", run.wall);
}

#[test]
fn output_past_the_cap_ends_the_run() {
    let limits = Limits {
        output_bytes: 1000,
        ..Limits::default()
    };
    let sb = sandbox(limits);
    let run = sb
        .run(&job("while True:\n    print('x' * 99)\n", "", 5000))
        .expect("run");
    assert_eq!(run.status, Status::OutputLimit);
    assert_eq!(run.stdout.len(), 1000);
}

#[test]
fn memory_limit_turns_a_huge_allocation_into_an_error() {
    let sb = sandbox(Limits::default());
    let run = sb
        .run(&job("x = bytearray(50 * 10**9)\n", "", 5000))
        .expect("run");
    assert_eq!(run.status, Status::Exited { code: 1 });
    assert!(
        run.stderr_text().contains("MemoryError"),
        "{}",
        run.stderr_text()
    );
}

#[test]
fn root_gets_a_private_uid_and_missing_protections_are_explained() {
    let sb = sandbox(Limits::default());
    let p = sb.protections();
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        assert!(p.private_uid, "{:?}", p.missing);
        let run = sb
            .run(&job("import os\nprint(os.getuid())\n", "", 5000))
            .expect("run");
        let uid: u32 = run.stdout_text().trim().parse().expect("a uid");
        assert!(uid >= UID_BASE, "{uid}");
    }
    let missing = [p.private_uid, p.network_namespace, p.private_tmp]
        .iter()
        .filter(|on| !**on)
        .count();
    let explained = p
        .missing
        .iter()
        .filter(|m| !m.starts_with("subreaper"))
        .count();
    assert_eq!(explained, missing, "{:?}", p.missing);
}

#[test]
fn run_all_keeps_input_order() {
    let sb = sandbox(Limits::default());
    let jobs: Vec<Job> = (0..5)
        .map(|i| job(&format!("print({i} * {i})\n"), "", 5000))
        .collect();
    let outputs: Vec<String> = sb
        .run_all(&jobs, 2, |_, _| {})
        .into_iter()
        .map(|r| r.expect("run").stdout_text())
        .collect();
    assert_eq!(outputs, ["0\n", "1\n", "4\n", "9\n", "16\n"]);
}

fn isolated(policy: Policy, layer: LayerChoice) -> Result<Sandbox, SandboxError> {
    Sandbox::with_isolation(None, Limits::default(), Isolation { policy, layer })
}

#[test]
fn the_floor_confines_files_network_and_sessions() {
    let sb = isolated(Policy::Require, LayerChoice::Landlock).expect("Landlock + seccomp here");
    assert_eq!(sb.protections().layer, Some(Layer::LandlockSeccomp));
    let program = r#"import os, socket
open('mine.txt', 'w').write('ok')
print(open('mine.txt').read())
for attempt in [lambda: open('/etc/hostname').read(), lambda: os.listdir('/tmp'),
                lambda: socket.socket(socket.AF_INET), lambda: os.setsid()]:
    try:
        attempt()
        print('allowed')
    except OSError:
        print('refused')
"#;
    let run = sb.run(&job(program, "", 5000)).expect("run");
    assert_eq!(
        run.status,
        Status::Exited { code: 0 },
        "{}",
        run.stderr_text()
    );
    assert_eq!(
        run.stdout_text(),
        "ok\nrefused\nrefused\nrefused\nrefused\n"
    );
}

#[test]
fn require_refuses_rlimits_only_and_best_effort_records_it() {
    let refused = isolated(Policy::Require, LayerChoice::None);
    let Err(SandboxError::Refused(why)) = refused else {
        panic!("--sandbox-layer none under require must be refused");
    };
    assert!(why.contains("--sandbox best-effort"), "{why}");
    let sb = isolated(Policy::BestEffort, LayerChoice::None).expect("best effort runs");
    let p = sb.protections();
    assert_eq!(p.layer, Some(Layer::None));
    let guards = p.guards.expect("guards");
    assert!(!guards.contained());
    assert_eq!(guards.process_limit, Layer::Rlimits);
    assert_eq!(p.policy, Some(Policy::BestEffort));
    // Negative control: without a layer the program reaches host files.
    let run = sb
        .run(&job(
            "print(len(open('/etc/hostname').read()) > 0)\n",
            "",
            5000,
        ))
        .expect("run");
    assert_eq!(run.stdout_text(), "True\n");
}

#[test]
fn the_default_layer_contains() {
    let sb = sandbox(Limits::default());
    let p = sb.protections();
    let layer = p.layer.expect("layer");
    assert!(
        matches!(layer, Layer::RootNamespaces | Layer::UserNamespaces),
        "{layer:?}"
    );
    assert!(p.guards.expect("guards").contained());
}
