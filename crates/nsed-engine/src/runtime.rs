//! A model ready to use: resolved (checksum-verified), parsed, tokenizer and
//! weights loaded, chat template chosen. The one entry point the commands and
//! the later modules (deliberation, verification) load models through.

use crate::chat::{ChatTemplate, Message, TemplateError, TemplateKind};
use crate::device::{default_device, ComputeDevice};
use crate::gguf::{Gguf, GgufError};
use crate::model::{Arch, Model, ModelError, WeightMap};
use crate::registry::{Registry, RegistryError, ResolvedModel};
use crate::tokenizer::{Tokenizer, TokenizerError};

/// Why a model could not be loaded or served.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The model argument did not resolve to a verified file (unknown id, not fetched, bad
    /// checksum, Hub failure).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The GGUF file cannot be opened or parsed, or lacks `general.architecture`.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// The tokenizer cannot be built from the GGUF metadata.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// The architecture is unsupported, or the weights cannot be loaded on the device.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The weights would not fit the memory the machine has free.
    #[error(
        "{path} needs about {needed_mib} MiB of memory for its weights but {available_mib} MiB \
         are available; close other programs or use a smaller quantization"
    )]
    TooLarge {
        /// The model file.
        path: String,
        /// Memory the weights take once loaded ([`loaded_bytes`]).
        needed_mib: u64,
        /// `MemAvailable` from /proc/meminfo.
        available_mib: u64,
    },
    /// The model's own chat template does not compile, or refused a conversation.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// The operating system refused to start the model's engine thread.
    #[error("could not start the model's engine thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// A loaded model: its file, weights, tokenizer, chat template and stop tokens.
pub struct Runtime {
    /// The GGUF file and its registry entry, if any.
    pub resolved: ResolvedModel,
    /// The parsed header (vocabulary arrays dropped after the tokenizer is built).
    pub gguf: Gguf,
    /// Shared with the handles of an [`crate::batch::Engine`].
    pub tokenizer: std::sync::Arc<Tokenizer>,
    /// The transformer weights and the built-in sequence's KV cache.
    pub model: Model,
    /// The chat template: the registry entry's, else the GGUF's own.
    pub template: ChatTemplate,
    /// Token ids that end a generation (EOS and the end-of-turn markers).
    pub stop_ids: Vec<u32>,
}

/// Return freed heap pages to the OS (glibc keeps them otherwise).
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; no pointer is touched.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl Runtime {
    /// Load a registry id or a GGUF path on the default device (`--device`).
    pub fn load(spec: &str) -> Result<Self, RuntimeError> {
        Self::load_on(spec, default_device())
    }

    /// Load a registry id or a GGUF path on `device`.
    pub fn load_on(spec: &str, device: ComputeDevice) -> Result<Self, RuntimeError> {
        let registry = Registry::load()?;
        let resolved = registry.resolve(spec)?;
        Self::load_resolved(resolved, None, device)
    }

    /// Load an already resolved model on the default device (`--device`).
    pub fn from_resolved(resolved: ResolvedModel) -> Result<Self, RuntimeError> {
        Self::load_resolved(resolved, None, default_device())
    }

    /// Load with every weight matrix passed through `map` (re-quantized
    /// variants for fraud experiments).
    pub fn from_resolved_mapped(
        resolved: ResolvedModel,
        map: &mut WeightMap,
    ) -> Result<Self, RuntimeError> {
        Self::load_resolved(resolved, Some(map), default_device())
    }

    /// [`Runtime::from_resolved_mapped`] on a chosen device (the fraud
    /// experiments' executors and validator on different paths).
    pub fn from_resolved_mapped_on(
        resolved: ResolvedModel,
        map: &mut WeightMap,
        device: ComputeDevice,
    ) -> Result<Self, RuntimeError> {
        Self::load_resolved(resolved, Some(map), device)
    }

    fn load_resolved(
        resolved: ResolvedModel,
        map: Option<&mut WeightMap>,
        device: ComputeDevice,
    ) -> Result<Self, RuntimeError> {
        let mut gguf = Gguf::open(&resolved.path)?;
        // An unsupported architecture is the first thing to report.
        Arch::parse(gguf.architecture()?)?;
        let tokenizer = Tokenizer::from_gguf(&gguf)?;
        // The vocabulary arrays have served; free them before the weights
        // arrive, so the peak RSS does not hold both.
        gguf.drop_arrays();
        trim_heap();
        if device == ComputeDevice::Cpu {
            check_memory(&gguf)?;
        }
        let model = Model::from_gguf_on(&gguf, map, device)?;
        let template = match resolved.entry.as_ref() {
            Some(e) if e.chat_template != TemplateKind::Gguf => {
                ChatTemplate::new(e.chat_template, e.default_system.clone())
            }
            _ => file_template(&gguf, &tokenizer)?,
        };
        let mut stop_ids: Vec<u32> = ["<|im_end|>", "<|endoftext|>", "<end_of_turn>", "<eos>"]
            .iter()
            .filter_map(|t| tokenizer.token_id(t))
            .chain(tokenizer.eos)
            .collect();
        stop_ids.sort_unstable();
        stop_ids.dedup();
        Ok(Self {
            resolved,
            gguf,
            tokenizer: std::sync::Arc::new(tokenizer),
            model,
            template,
            stop_ids,
        })
    }

    /// The registry id, or the file stem for a model given by path.
    pub fn id(&self) -> String {
        self.resolved.id()
    }

    /// sha256 of the GGUF file: the registry's (verified at load) or computed.
    pub fn sha256(&self) -> Result<String, RuntimeError> {
        Ok(self.resolved.sha256()?)
    }

    /// Render a conversation with the chat template and tokenize it, special
    /// tokens parsed (the template's markers are control tokens).
    pub fn chat_tokens(&self, messages: &[Message]) -> Result<Vec<u32>, TemplateError> {
        chat_tokens(&self.template, &self.tokenizer, messages)
    }

    /// [`Runtime::chat_tokens`] with the template's own switches (`enable_thinking`).
    pub fn chat_tokens_with(
        &self,
        messages: &[Message],
        extra: &std::collections::BTreeMap<String, serde_json::Value>,
    ) -> Result<Vec<u32>, TemplateError> {
        chat_tokens_with(&self.template, &self.tokenizer, messages, extra)
    }
}

/// Refuse, before reading any weight, a model whose weights (at their size
/// once loaded: [`loaded_bytes`]) exceed the memory the machine has
/// available. Nothing is checked where /proc/meminfo is absent.
fn check_memory(gguf: &Gguf) -> Result<(), RuntimeError> {
    let Some(available) = mem_available() else {
        return Ok(());
    };
    let needed = loaded_bytes(gguf);
    if needed > available {
        return Err(RuntimeError::TooLarge {
            path: gguf.path.display().to_string(),
            needed_mib: needed >> 20,
            available_mib: available >> 20,
        });
    }
    Ok(())
}

/// The weights' size once loaded: the packed kernels' size for the matrices
/// they read (about the file's, but Q2_K and Q3_K codes take 4 bits per
/// weight there, 1.7x and 1.3x their files' bits), the file's for the rest.
pub fn loaded_bytes(gguf: &Gguf) -> u64 {
    let packed = |format: Option<crate::qmm::Format>, dims: &[usize], n_bytes: u64| match format {
        Some(f) if dims.len() >= 2 => {
            let (n, k) = (dims[dims.len() - 2], dims[dims.len() - 1]);
            let matrices: usize = dims[..dims.len() - 2].iter().product();
            (matrices * crate::qmm::PackedMatrix::packed_bytes(f, n, k)) as u64
        }
        _ => n_bytes,
    };
    let candle: u64 = gguf
        .tensors
        .values()
        .map(|t| packed(crate::qmm::Format::from_ggml(t.dtype), &t.dims, t.n_bytes))
        .sum();
    let raw: u64 = gguf
        .raw_tensors
        .values()
        .map(|t| {
            packed(
                crate::qmm::Format::from_ggml_id(t.ty.id()),
                &t.dims,
                t.n_bytes,
            )
        })
        .sum();
    candle + raw
}

/// `MemAvailable` in bytes (Linux).
fn mem_available() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The GGUF's own chat template (`tokenizer.chat_template`), with the
/// texts of the tokenizer's BOS and EOS tokens; plain text for a file
/// without one.
pub fn file_template(gguf: &Gguf, tokenizer: &Tokenizer) -> Result<ChatTemplate, TemplateError> {
    let text = |id: Option<u32>| {
        id.and_then(|id| tokenizer.token_text(id).ok())
            .unwrap_or_default()
            .to_string()
    };
    ChatTemplate::from_file(
        gguf.get_str("tokenizer.chat_template").ok(),
        &text(tokenizer.bos),
        &text(tokenizer.eos),
        tokenizer.add_bos,
    )
}

/// A conversation rendered with `template` and tokenized, special tokens
/// parsed (the template's markers are control tokens).
pub fn chat_tokens(
    template: &ChatTemplate,
    tokenizer: &Tokenizer,
    messages: &[Message],
) -> Result<Vec<u32>, TemplateError> {
    chat_tokens_with(template, tokenizer, messages, &Default::default())
}

/// [`chat_tokens`] with `extra` template switches (an agent's `enable_thinking`).
pub fn chat_tokens_with(
    template: &ChatTemplate,
    tokenizer: &Tokenizer,
    messages: &[Message],
    extra: &std::collections::BTreeMap<String, serde_json::Value>,
) -> Result<Vec<u32>, TemplateError> {
    let text = template.render_with(messages, true, extra)?;
    Ok(tokenizer.encode(&text, true, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{self, SynthSpec};

    /// The size check counts the weights as loaded: a Q4_K model about its
    /// file, a Q2_K one more (its 2-bit codes take 4 bits once packed).
    #[test]
    fn loaded_bytes_are_the_packed_sizes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ratio = |quant: &str| {
            let path = dir.path().join(format!("{quant}.gguf"));
            let mut spec = SynthSpec::like("qwen3-8b").expect("shape").scaled_down();
            spec.weight_type = synth::parse_quant(quant).expect("type");
            synth::write(&path, &spec).expect("write");
            let gguf = Gguf::open(&path).expect("gguf");
            loaded_bytes(&gguf) as f64 / gguf.file_size as f64
        };
        let (q4k, q2k) = (ratio("Q4_K"), ratio("Q2_K"));
        assert!((0.9..1.1).contains(&q4k), "Q4_K: {q4k}");
        assert!(q2k > q4k * 1.2, "Q2_K: {q2k} against Q4_K's {q4k}");
    }
}
