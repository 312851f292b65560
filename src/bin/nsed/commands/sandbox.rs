//! `nsed sandbox`: show which protections apply on this machine, and run
//! Python files under them (the same sandbox the code benchmarks use).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;

use nsed::sandbox::{
    Execution, Isolation, Job, LayerChoice, Limits, Policy, Sandbox, SandboxError,
};

#[derive(Subcommand)]
pub enum SandboxCommand {
    /// Print which isolation layer applies here (root namespaces, user
    /// namespaces, Landlock + seccomp, none), which layer provides each
    /// protection (`guards`), the limits, and why anything is missing, as
    /// JSON. Always exits 0; `contained` says whether `--sandbox require`
    /// would run code here.
    Probe(SandboxOpts),
    /// Run Python files in the sandbox, several at a time; one JSON line per
    /// file as it finishes (status, wall time, output sizes, stderr tail).
    /// Exit 0 when every program exited 0, 1 when any failed.
    Run(RunArgs),
}

#[derive(Args)]
pub struct SandboxOpts {
    /// The Python interpreter (default: the system python3, which the
    /// sandbox's private uid can read).
    #[arg(long)]
    python: Option<PathBuf>,
    /// Address-space limit per program, MiB.
    #[arg(long, default_value_t = 2048, value_parser = crate::bounds::count_u64(32, 1 << 20))]
    memory_mib: u64,
    /// Output kept per stream, KiB; more ends the program.
    #[arg(long, default_value_t = 4096, value_parser = crate::bounds::count(1, 1 << 20))]
    output_kib: usize,
    /// Bytes the program may write in all (its private tmpfs), MiB.
    #[arg(long, default_value_t = 64, value_parser = crate::bounds::count_u64(1, 1 << 16))]
    disk_mib: u64,
    #[command(flatten)]
    isolation: IsolationArgs,
}

/// `--sandbox` and `--sandbox-layer`, shared with the code benchmarks.
#[derive(Args, Clone, Copy)]
pub struct IsolationArgs {
    /// `require` refuses to run untrusted code unless it cannot write
    /// outside its directory, read your home or use the network (exit 2,
    /// naming what is missing); `best-effort` runs with warnings.
    #[arg(long = "sandbox", value_enum, default_value_t = Policy::Require)]
    pub policy: Policy,
    /// The strongest layer to try: `auto` (namespaces — as root, or in a
    /// user namespace as an ordinary user — else Landlock + seccomp),
    /// `landlock` (skip the namespaces), `none` (rlimits only).
    #[arg(long = "sandbox-layer", value_enum, default_value_t = LayerChoice::Auto)]
    pub layer: LayerChoice,
}

impl IsolationArgs {
    pub fn isolation(self) -> Isolation {
        Isolation {
            policy: self.policy,
            layer: self.layer,
        }
    }
}

#[derive(Args)]
pub struct RunArgs {
    /// Python files to run.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// File fed to every program on standard input.
    #[arg(long)]
    stdin: Option<PathBuf>,
    /// Wall-clock limit per program, seconds.
    #[arg(long, default_value_t = 6.0, value_parser = crate::bounds::seconds)]
    timeout: f64,
    /// Programs run at once (default: the number of cores).
    #[arg(long, value_parser = crate::bounds::count(1, 256))]
    jobs: Option<usize>,
    #[command(flatten)]
    opts: SandboxOpts,
}

impl SandboxOpts {
    fn limits(&self) -> Limits {
        Limits {
            address_space: self.memory_mib << 20,
            output_bytes: self.output_kib << 10,
            disk: self.disk_mib << 20,
            ..Limits::default()
        }
    }

    fn sandbox(&self) -> Result<Sandbox, SandboxError> {
        Sandbox::with_isolation(
            self.python.clone(),
            self.limits(),
            self.isolation.isolation(),
        )
    }
}

pub fn sandbox_cmd(command: SandboxCommand) -> Result<ExitCode> {
    match command {
        SandboxCommand::Probe(opts) => {
            // The probe reports; it never refuses.
            let isolation = Isolation {
                policy: Policy::BestEffort,
                ..opts.isolation.isolation()
            };
            let sandbox = Sandbox::with_isolation(opts.python.clone(), opts.limits(), isolation)?;
            let protections = sandbox.protections();
            let mut value = serde_json::to_value(protections)?;
            value["policy"] = json!(opts.isolation.policy);
            value["contained"] = json!(protections.guards.is_some_and(|g| g.contained()));
            outln!("{}", serde_json::to_string_pretty(&value)?);
            Ok(ExitCode::SUCCESS)
        }
        SandboxCommand::Run(args) => run_files(args),
    }
}

fn run_files(args: RunArgs) -> Result<ExitCode> {
    let stdin = match &args.stdin {
        Some(path) => std::fs::read(path)
            .with_context(|| format!("cannot read --stdin {}", path.display()))?,
        None => Vec::new(),
    };
    let jobs = args
        .files
        .iter()
        .map(|file| {
            let program = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read program {}", file.display()))?;
            Ok(Job {
                program,
                stdin: stdin.clone(),
                wall: Duration::from_secs_f64(args.timeout),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let sandbox = args.opts.sandbox()?;
    eprintln!("sandbox: {}", sandbox.protections().summary());
    for why in &sandbox.protections().missing {
        eprintln!("warning: sandbox protection missing: {why}");
    }
    let parallel = args.jobs.unwrap_or_else(nsed::sandbox::cores);
    let results = sandbox.run_all(&jobs, parallel, |i, result| {
        outln!("{}", result_line(&args.files[i], result));
    });
    let all_ok = results
        .iter()
        .all(|r| r.as_ref().is_ok_and(Execution::succeeded));
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn result_line(file: &std::path::Path, result: &Result<Execution, SandboxError>) -> String {
    let value = match result {
        Ok(run) => json!({
            "file": file,
            "succeeded": run.succeeded(),
            "status": run.status,
            "wall_ms": run.wall.as_millis() as u64,
            "stdout_bytes": run.stdout.len(),
            "stdout_head": head(&run.stdout_text(), 400),
            "stderr_tail": tail(&run.stderr_text(), 400),
            "leftovers_killed": run.leftovers_killed,
        }),
        Err(e) => json!({ "file": file, "error": e.to_string() }),
    };
    value.to_string()
}

fn head(text: &str, max: usize) -> &str {
    let end = text.char_indices().nth(max).map_or(text.len(), |(i, _)| i);
    &text[..end]
}

fn tail(text: &str, max: usize) -> &str {
    let count = text.chars().count();
    let start = text
        .char_indices()
        .nth(count.saturating_sub(max))
        .map_or(text.len(), |(i, _)| i);
    &text[start..]
}
