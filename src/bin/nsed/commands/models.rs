//! `nsed models`: the registry's models (list, sha256 check), a GGUF
//! file's metadata, tensor types and kernel path, and synthetic models of
//! the roster's shapes.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};

use nsed::engine::gguf::Gguf;
use nsed::engine::registry::{models_dir, sha256_file, Registry};

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// The registry: id, size, whether it is downloaded, and where.
    List {
        /// Also check each present file's sha256 (reads every file).
        #[arg(long)]
        verify: bool,
        #[arg(long)]
        json: bool,
    },
    /// GGUF metadata, tensor types and parameter count of a model (id or path).
    Inspect {
        model: String,
        /// List every tensor.
        #[arg(long)]
        tensors: bool,
    },
    /// Write a seeded random-weight GGUF shaped like a known model: same
    /// architecture, layers, widths, vocabulary size and quantization, no
    /// real weights (for speed and correctness checks where the weights
    /// cannot go, e.g. a GPU machine without network). The same options
    /// always write the same bytes.
    ///
    /// Example: nsed models synth --like qwen2.5-coder-0.5b -o /tmp/q05.gguf
    Synth(SynthArgs),
}

#[derive(Args)]
pub struct SynthArgs {
    /// The model whose shape to copy: a roster model (smollm2-135m,
    /// gemma3-270m, qwen2.5-coder-0.5b, qwen2.5-coder-1.5b) or one of the
    /// NSED paper's families (qwen3-0.6b, qwen3-8b, gemma3-1b, gemma3-4b,
    /// gemma3-12b, gemma3-27b).
    #[arg(long, value_name = "ID")]
    like: String,
    /// Type of the weight matrices (Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q6_K, F16,
    /// BF16, F32); default: the model's. Rows the type's block does not
    /// divide fall back as llama.cpp's quantizer does (Q4_K → Q5_0).
    #[arg(long, value_name = "TYPE")]
    quant: Option<String>,
    /// Seed of the weights.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Fewer layers than the original (a quicker, shallower model).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    layers: Option<u32>,
    /// A smaller vocabulary than the original (a quicker model: the output
    /// layer is most of a small model's time). The tokenizer is the
    /// synthetic one either way: byte tokens, a few merges, the chat
    /// template's control tokens, padded to this size.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(512..=1_048_576))]
    vocab: Option<u32>,
    /// The same family at test size: head dimension, head grouping, norms,
    /// RoPE and sliding-window pattern and tensor types kept; width 256,
    /// feed-forward 512, four query heads, 1024 tokens, two layers (six
    /// where layers slide, so that one is global). Applied before --layers
    /// and --vocab. What nsed's logits are compared with llama.cpp's on.
    #[arg(long)]
    scaled_down: bool,
    /// The GGUF file to write (replaced if it exists).
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
}

pub fn models_list(verify: bool, json: bool) -> Result<()> {
    let registry = Registry::load()?;
    let mut rows = Vec::new();
    for m in &registry.models {
        let path = registry.path_of(m);
        let size = std::fs::metadata(&path).map(|md| md.len()).ok();
        let status = match size {
            None => "missing".to_string(),
            Some(s) if s != m.bytes => format!("wrong size ({s} bytes)"),
            Some(_) if verify => match sha256_file(&path)? == m.sha256 {
                true => "present, sha256 ok".into(),
                false => "present, SHA256 MISMATCH".into(),
            },
            Some(_) => "present".into(),
        };
        rows.push(serde_json::json!({
            "id": m.id, "name": m.name, "maker": m.maker, "arch": m.arch, "quant": m.quant,
            "bytes": m.bytes, "status": status, "path": path, "hf_repo": m.hf_repo,
        }));
    }
    if json {
        outln!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    outln!("models directory: {}", models_dir().display());
    outln!(
        "{:<20} {:<14} {:<8} {:<8} {:>9}  {:<18} path",
        "id",
        "maker",
        "arch",
        "quant",
        "MB",
        "status"
    );
    for (m, r) in registry.models.iter().zip(&rows) {
        outln!(
            "{:<20} {:<14} {:<8} {:<8} {:>9.1}  {:<18} {}",
            m.id,
            m.maker,
            m.arch,
            m.quant,
            m.bytes as f64 / 1e6,
            r["status"].as_str().unwrap_or(""),
            registry.path_of(m).display()
        );
    }
    Ok(())
}

pub fn models_inspect(spec: &str, list_tensors: bool) -> Result<()> {
    let resolved = Registry::load()?.resolve(spec)?;
    let gguf = Gguf::open(&resolved.path)?;
    outln!(
        "file: {} ({} bytes, GGUF v{})",
        gguf.path.display(),
        gguf.file_size,
        gguf.version
    );
    if let Some(e) = &resolved.entry {
        outln!(
            "registry: {} ({} by {}), sha256 {} verified",
            e.id,
            e.name,
            e.maker,
            e.sha256
        );
    }
    outln!(
        "parameters: {} ({:.1} M)",
        gguf.parameter_count(),
        gguf.parameter_count() as f64 / 1e6
    );
    let kernel = nsed::engine::qmm::path::active();
    let paths: Vec<&str> = nsed::engine::qmm::path::available()
        .iter()
        .map(|p| p.name())
        .collect();
    outln!(
        "kernel: {kernel} (this CPU has: {}; {}=NAME forces one)",
        paths.join(", "),
        nsed::engine::qmm::path::KERNEL_ENV
    );
    print_tensor_types(&gguf, kernel);
    outln!("metadata:");
    for (k, v) in &gguf.metadata {
        outln!("  {k} = {}", v.summary());
    }
    if list_tensors {
        outln!("tensors:");
        for t in gguf.tensors.values() {
            outln!(
                "  {:<40} {:<6} {:?}",
                t.name,
                format!("{:?}", t.dtype),
                t.dims
            );
        }
        for t in gguf.raw_tensors.values() {
            outln!("  {:<40} {:<6} {:?}", t.name, t.ty.name(), t.dims);
        }
    }
    Ok(())
}

/// Tensors per type, and which kernel runs each type's matrices.
fn print_tensor_types(gguf: &Gguf, kernel: nsed::engine::qmm::path::KernelPath) {
    let mut by_type: std::collections::BTreeMap<String, (usize, usize, &str)> = Default::default();
    for t in gguf.tensors.values() {
        let runs_on = if t.dims.len() < 2 {
            "vector (norms, biases)"
        } else if nsed::engine::qmm::Format::from_ggml(t.dtype).is_some() {
            "qmm"
        } else if nsed::engine::qmm::float::FloatMatrix::handles(t.dtype) {
            "qmm::float (row-invariant f32 dot)"
        } else {
            "fallback: candle's kernel"
        };
        let e = by_type
            .entry(format!("{:?}", t.dtype))
            .or_insert((0, 0, runs_on));
        e.0 += 1;
        e.1 += t.n_elements();
        if runs_on != "vector (norms, biases)" {
            e.2 = runs_on;
        }
    }
    for t in gguf.raw_tensors.values() {
        let runs_on = match t.ty {
            nsed::engine::gguf::RawType::Mxfp4 => "qmm::mxfp4 (nsed's own, one path)",
            _ => "qmm",
        };
        let e = by_type
            .entry(t.ty.name().to_string())
            .or_insert((0, 0, runs_on));
        e.0 += 1;
        e.1 += t.dims.iter().product::<usize>();
    }
    outln!("tensor types:");
    for (ty, (count, elems, runs_on)) in &by_type {
        let runs_on = if *runs_on == "qmm" {
            format!("qmm ({kernel})")
        } else {
            runs_on.to_string()
        };
        outln!("  {ty:<6} {count:>4} tensors {elems:>12} parameters  {runs_on}");
    }
}

pub fn run(command: ModelsCommand) -> Result<()> {
    match command {
        ModelsCommand::List { verify, json } => models_list(verify, json),
        ModelsCommand::Inspect { model, tensors } => models_inspect(&model, tensors),
        ModelsCommand::Synth(args) => models_synth(args),
    }
}

pub fn models_synth(args: SynthArgs) -> Result<()> {
    use nsed::engine::synth::{self, SynthSpec};
    let mut spec = SynthSpec::like(&args.like)?;
    if args.scaled_down {
        spec = spec.scaled_down();
    }
    if let Some(q) = &args.quant {
        spec.weight_type = synth::parse_quant(q)?;
    }
    if let Some(n) = args.layers {
        spec.n_layer = n as usize;
    }
    if let Some(n) = args.vocab {
        spec.vocab_size = Some(n as usize);
    }
    spec.seed = args.seed;
    let started = std::time::Instant::now();
    // Atomic: an interrupted run leaves no half-written model under the name.
    nsed::results::output::write_atomic(&args.output, &synth::to_bytes(&spec))?;
    let bytes = std::fs::metadata(&args.output)
        .map(|m| m.len())
        .unwrap_or(0);
    outln!(
        "wrote {} ({}, {} layers, {} tokens, {:.1} M parameters, {} weights, seed {}, {:.1} MB, {:.1} s)",
        args.output.display(),
        spec.arch,
        spec.n_layer,
        spec.vocab_size.unwrap_or(0),
        spec.parameters() as f64 / 1e6,
        spec.weight_type,
        spec.seed,
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
