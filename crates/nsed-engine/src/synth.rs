//! Seeded random-weight GGUF models of a chosen shape: tiny ones for tests,
//! and full-size ones shaped like the roster's models (`nsed models synth
//! --like qwen2.5-coder-1.5b`) for checking speed and correctness where the
//! real weights cannot go (a GPU machine without network). A synthetic file
//! is a real GGUF in the real format — same architecture, layer shapes,
//! vocabulary size and quantization — with weights drawn from a seeded
//! generator, so the same spec always writes the same bytes.

use std::path::Path;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use crate::gguf::{self, Value};
use crate::gguf::{RawTensor, RawType};
use crate::model::{Arch, ExpertConfig, Yarn};
use crate::qmm::{iq4, mxfp4};
use nsed_stats::SplitMix64;

/// Why a synthetic model could not be specified or written.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// `--like` names no model with a known shape.
    #[error("no synthetic shape for `{0}`: --like takes {known}", known = shape_ids())]
    UnknownShape(String),
    /// `--quant` names a type the synthesizer does not write.
    #[error(
        "unsupported --quant `{0}`: use Q4_0, Q4_1, Q5_0, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, \
         IQ4_NL, IQ4_XS, F16, BF16 or F32"
    )]
    UnknownQuant(String),
    /// The GGUF file could not be created or written.
    #[error("writing {path}: {source}")]
    Io {
        /// The file being written.
        path: String,
        /// The operating system's error.
        source: std::io::Error,
    },
}

/// The shape and contents of a synthetic model.
#[derive(Debug, Clone)]
pub struct SynthSpec {
    /// Transformer family; sets the tensor set and metadata keys written.
    pub arch: Arch,
    /// Transformer blocks (`block_count`).
    pub n_layer: usize,
    /// Width of the residual stream (`embedding_length`).
    pub n_embd: usize,
    /// Attention heads for queries.
    pub n_head: usize,
    /// Key/value heads; must divide `n_head`.
    pub n_kv_head: usize,
    /// Dimension of one attention head (`attention.key_length`).
    pub head_dim: usize,
    /// Inner width of the feed-forward block (`feed_forward_length`).
    pub n_ff: usize,
    /// Trained context length written to the metadata, in tokens.
    pub context_length: usize,
    /// Attention window of the sliding layers in tokens (written for Gemma 3 only).
    pub sliding_window: usize,
    /// RoPE frequency base (`rope.freq_base`).
    pub rope_base: f32,
    /// Linear RoPE scaling factor of the global layers (`rope.scaling.factor`); `None`: none.
    pub rope_scaling: Option<f32>,
    /// Seed of the SplitMix64 stream the weights are drawn from.
    pub seed: u64,
    /// Type of the layers' weight matrices, as llama.cpp's mixes use it:
    /// with Q4_K (the `Q4_K_M` mix) `attn_v` and `ffn_down` get Q6_K; rows
    /// whose length a type's block does not divide fall back as llama.cpp's
    /// quantizer does (Q4_K → Q5_0, Q6_K → Q8_0).
    pub weight_type: Quant,
    /// Type of the token table.
    pub embed_type: GgmlDType,
    /// A separate `output.weight` of this type; `None`: tied to the table.
    pub output_type: Option<GgmlDType>,
    /// Vocabulary size; the minimal byte-level vocabulary is padded with
    /// plain tokens up to it (`None`: the minimal one, ~270 tokens).
    pub vocab_size: Option<usize>,
    /// Half-width of the uniform weights; `None`: √(3/fan-in) for the
    /// layers, which keeps activations at unit scale through deep stacks,
    /// and for the token table and output √3·2/√width, which gives logits a
    /// standard deviation of about 2, as trained models have (unit-scale
    /// table rows would make every distribution one-hot).
    pub weight_scale: Option<f32>,
    /// `tokenizer.ggml.pre` of the GPT-2 style vocabulary.
    pub pre: String,
    /// `tokenizer.chat_template` (Jinja); `None`: none, as a base model.
    pub chat_template: Option<String>,
    /// Routed experts in place of the dense feed-forward (`qwen3moe`).
    pub experts: Option<ExpertConfig>,
    /// Llama 3.1's RoPE scaling, written as `rope_freqs.weight` as llama.cpp's converter does.
    pub llama3_rope: Option<Llama3Rope>,
    /// YaRN RoPE scaling (GPT-OSS).
    pub yarn: Option<Yarn>,
}

/// Llama 3.1's `rope_scaling` (`rope_type = "llama3"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Llama3Rope {
    /// Scale of the low frequencies (8).
    pub factor: f32,
    /// Wavelengths above `original_context / low_freq_factor` are scaled fully (1).
    pub low_freq_factor: f32,
    /// Wavelengths below `original_context / high_freq_factor` are kept (4).
    pub high_freq_factor: f32,
    /// The context the model was trained at before scaling (8192).
    pub original_context: usize,
}

impl Llama3Rope {
    /// The `head_dim / 2` divisors, as llama.cpp's converter computes them.
    pub fn factors(&self, base: f32, head_dim: usize) -> Vec<f32> {
        let old = self.original_context as f32;
        let (low_wavelen, high_wavelen) = (old / self.low_freq_factor, old / self.high_freq_factor);
        (0..head_dim / 2)
            .map(|i| {
                let freq = 1.0 / base.powf((2 * i) as f32 / head_dim as f32);
                let wavelen = 2.0 * std::f32::consts::PI / freq;
                if wavelen < high_wavelen {
                    1.0
                } else if wavelen > low_wavelen {
                    self.factor
                } else {
                    let smooth = (old / wavelen - self.low_freq_factor)
                        / (self.high_freq_factor - self.low_freq_factor);
                    1.0 / ((1.0 - smooth) / self.factor + smooth)
                }
            })
            .collect()
    }
}

/// A tiny model for tests (the name the tests have always used).
pub type TinySpec = SynthSpec;

impl SynthSpec {
    /// A tiny model of `arch`: two layers of width 64, runs in milliseconds.
    pub fn new(arch: Arch) -> Self {
        Self {
            arch,
            n_layer: 2,
            n_embd: 64,
            n_head: 4,
            n_kv_head: 2,
            head_dim: 16,
            n_ff: 128,
            context_length: 64,
            sliding_window: 4,
            rope_base: 10_000.0,
            rope_scaling: None,
            seed: 7,
            weight_type: Quant::Ggml(GgmlDType::Q8_0),
            embed_type: GgmlDType::Q8_0,
            output_type: matches!(arch, Arch::Qwen2 | Arch::Qwen3).then_some(GgmlDType::Q8_0),
            vocab_size: None,
            weight_scale: Some(0.2),
            pre: "qwen2".into(),
            chat_template: None,
            experts: matches!(arch, Arch::Qwen3Moe | Arch::GptOss).then_some(ExpertConfig {
                count: 4,
                used: 2,
                n_ff: 64,
            }),
            llama3_rope: None,
            yarn: (arch == Arch::GptOss).then_some(Yarn {
                factor: 32.0,
                original_context: 16,
            }),
        }
    }

    /// The shape of a roster model (from its GGUF metadata) or of one of the
    /// NSED paper's models ([`PAPER_SHAPES`]), with its own tensor types.
    /// `nsed models synth --like ID`.
    pub fn like(id: &str) -> Result<Self, SynthError> {
        let shape = ROSTER_SHAPES
            .iter()
            .chain(&PAPER_SHAPES)
            .chain([&QWEN3_30B_A3B, &LLAMA31_8B, &GPT_OSS_20B, &MISTRAL_NEMO_12B])
            .find(|s| s.id == id)
            .ok_or_else(|| SynthError::UnknownShape(id.to_string()))?;
        Ok(Self {
            arch: shape.arch,
            n_layer: shape.n_layer,
            n_embd: shape.n_embd,
            n_head: shape.n_head,
            n_kv_head: shape.n_kv_head,
            head_dim: shape.head_dim,
            n_ff: shape.n_ff,
            context_length: shape.context_length,
            sliding_window: shape.sliding_window,
            rope_base: shape.rope_base,
            rope_scaling: (shape.rope_scaling != 0.0).then_some(shape.rope_scaling),
            seed: 7,
            weight_type: Quant::Ggml(shape.quant),
            embed_type: shape.embed,
            output_type: shape.output,
            vocab_size: Some(shape.vocab_size),
            weight_scale: None,
            pre: shape.pre.into(),
            chat_template: None,
            experts: shape.experts,
            llama3_rope: shape.llama3_rope,
            yarn: shape.yarn,
        })
    }

    /// The same family at a size a test runs in milliseconds: every
    /// architectural feature kept (head dimension, the ratio of query to
    /// key/value heads, norms, RoPE base and scaling, sliding window and its
    /// layer pattern, tensor types), widths cut to 256 (feed-forward 512),
    /// four query heads, a 1024-token vocabulary, and enough layers to hold a
    /// global one (six for sliding-window families, else two).
    pub fn scaled_down(&self) -> Self {
        let group = (self.n_head / self.n_kv_head.max(1)).clamp(1, 4);
        Self {
            n_layer: if self.arch == Arch::Gemma3 { 6 } else { 2 },
            n_embd: 256,
            n_head: 4,
            n_kv_head: 4 / group,
            n_ff: 512,
            vocab_size: Some(1024),
            sliding_window: self.sliding_window.min(8),
            // Eight experts, two per token, 256 wide (a K-quant block).
            experts: self.experts.map(|_| ExpertConfig {
                count: 8,
                used: 2,
                n_ff: 256,
            }),
            // The original context scaled down like the widths, so that most
            // frequencies of 16 test positions are scaled.
            llama3_rope: self.llama3_rope.map(|r| Llama3Rope {
                original_context: 16,
                ..r
            }),
            yarn: self.yarn.map(|y| Yarn {
                original_context: 16,
                ..y
            }),
            ..self.clone()
        }
    }

    /// Weights in the model, embedding included.
    pub fn parameters(&self) -> usize {
        let vocab = self.vocab_size.unwrap_or(0);
        let (e, d) = (self.n_embd, self.head_dim);
        let attn = e * d * (2 * self.n_head + 2 * self.n_kv_head);
        let ffn = match self.experts {
            Some(x) => x.count * (3 * e * x.n_ff + e),
            None => 3 * e * self.n_ff,
        };
        let out = if self.output_type.is_some() {
            vocab * e
        } else {
            0
        };
        vocab * e + self.n_layer * (attn + ffn) + out
    }
}

/// A roster model's shape, as its GGUF file states it.
pub struct RosterShape {
    /// Registry id of the model (`smollm2-135m`, ...).
    pub id: &'static str,
    /// Transformer family.
    pub arch: Arch,
    /// Transformer blocks.
    pub n_layer: usize,
    /// Width of the residual stream.
    pub n_embd: usize,
    /// Attention heads for queries.
    pub n_head: usize,
    /// Key/value heads.
    pub n_kv_head: usize,
    /// Dimension of one attention head.
    pub head_dim: usize,
    /// Inner width of the feed-forward block.
    pub n_ff: usize,
    /// Tokens in the vocabulary.
    pub vocab_size: usize,
    /// Trained context length, in tokens.
    pub context_length: usize,
    /// Attention window of the sliding layers in tokens; 0 for models without them.
    pub sliding_window: usize,
    /// RoPE frequency base.
    pub rope_base: f32,
    /// Linear RoPE scaling factor of the global layers; 0 for none.
    pub rope_scaling: f32,
    /// The layers' type (the mix's base type).
    pub quant: GgmlDType,
    /// The token table's type.
    pub embed: GgmlDType,
    /// The output matrix's type; `None`: tied to the token table.
    pub output: Option<GgmlDType>,
    /// `tokenizer.ggml.pre` as the model's GGUF states it.
    pub pre: &'static str,
    /// Routed experts (mixture-of-experts models).
    pub experts: Option<ExpertConfig>,
    /// Llama 3.1's RoPE scaling.
    pub llama3_rope: Option<Llama3Rope>,
    /// YaRN RoPE scaling (GPT-OSS).
    pub yarn: Option<Yarn>,
}

/// The four roster models' shapes (checked against the real files by a
/// test whenever they are downloaded).
pub const ROSTER_SHAPES: [RosterShape; 4] = [
    RosterShape {
        id: "smollm2-135m",
        arch: Arch::Llama,
        n_layer: 30,
        n_embd: 576,
        n_head: 9,
        n_kv_head: 3,
        head_dim: 64,
        n_ff: 1536,
        vocab_size: 49152,
        context_length: 8192,
        sliding_window: 0,
        rope_base: 100_000.0,
        rope_scaling: 0.0,
        quant: GgmlDType::Q4_1,
        embed: GgmlDType::Q8_0,
        output: None,
        pre: "smollm",
        experts: None,
        llama3_rope: None,
        yarn: None,
    },
    RosterShape {
        id: "gemma3-270m",
        arch: Arch::Gemma3,
        n_layer: 18,
        n_embd: 640,
        n_head: 4,
        n_kv_head: 1,
        head_dim: 256,
        n_ff: 2048,
        vocab_size: 262_144,
        context_length: 32_768,
        sliding_window: 512,
        rope_base: 1_000_000.0,
        rope_scaling: 0.0,
        quant: GgmlDType::Q4K,
        embed: GgmlDType::Q8_0,
        output: None,
        pre: "default",
        experts: None,
        llama3_rope: None,
        yarn: None,
    },
    RosterShape {
        id: "qwen2.5-coder-0.5b",
        arch: Arch::Qwen2,
        n_layer: 24,
        n_embd: 896,
        n_head: 14,
        n_kv_head: 2,
        head_dim: 64,
        n_ff: 4864,
        vocab_size: 151_936,
        context_length: 32_768,
        sliding_window: 0,
        rope_base: 1_000_000.0,
        rope_scaling: 0.0,
        quant: GgmlDType::Q4K,
        embed: GgmlDType::Q5_0,
        output: Some(GgmlDType::Q8_0),
        pre: "qwen2",
        experts: None,
        llama3_rope: None,
        yarn: None,
    },
    RosterShape {
        id: "qwen2.5-coder-1.5b",
        arch: Arch::Qwen2,
        n_layer: 28,
        n_embd: 1536,
        n_head: 12,
        n_kv_head: 2,
        head_dim: 128,
        n_ff: 8960,
        vocab_size: 151_936,
        context_length: 32_768,
        sliding_window: 0,
        rope_base: 1_000_000.0,
        rope_scaling: 0.0,
        quant: GgmlDType::Q4K,
        embed: GgmlDType::Q4K,
        output: Some(GgmlDType::Q6K),
        pre: "qwen2",
        experts: None,
        llama3_rope: None,
        yarn: None,
    },
];

/// Shapes of the NSED paper's model families that the registry does not
/// carry (none is smaller than 1.5B), from the models' published
/// configurations, with the types of llama.cpp's `Q4_K_M` mix (a tied table
/// gets the output's Q6_K). Synthetic files of these shapes, scaled down,
/// are what nsed's logits are compared with llama.cpp's on.
pub const PAPER_SHAPES: [RosterShape; 6] = [
    RosterShape {
        id: "qwen3-0.6b",
        arch: Arch::Qwen3,
        n_layer: 28,
        n_embd: 1024,
        n_head: 16,
        n_kv_head: 8,
        head_dim: 128,
        n_ff: 3072,
        vocab_size: 151_936,
        context_length: 40_960,
        sliding_window: 0,
        rope_base: 1_000_000.0,
        rope_scaling: 0.0,
        quant: GgmlDType::Q4K,
        embed: GgmlDType::Q6K,
        output: None,
        pre: "qwen2",
        experts: None,
        llama3_rope: None,
        yarn: None,
    },
    RosterShape {
        id: "qwen3-8b",
        arch: Arch::Qwen3,
        n_layer: 36,
        n_embd: 4096,
        n_head: 32,
        n_kv_head: 8,
        head_dim: 128,
        n_ff: 12_288,
        vocab_size: 151_936,
        context_length: 40_960,
        sliding_window: 0,
        rope_base: 1_000_000.0,
        rope_scaling: 0.0,
        quant: GgmlDType::Q4K,
        embed: GgmlDType::Q4K,
        output: Some(GgmlDType::Q6K),
        pre: "qwen2",
        experts: None,
        llama3_rope: None,
        yarn: None,
    },
    RosterShape {
        id: "gemma3-1b",
        arch: Arch::Gemma3,
        n_layer: 26,
        n_embd: 1152,
        n_head: 4,
        n_kv_head: 1,
        head_dim: 256,
        n_ff: 6912,
        vocab_size: 262_144,
        context_length: 32_768,
        sliding_window: 512,
        rope_base: 1_000_000.0,
        rope_scaling: 0.0,
        quant: GgmlDType::Q4K,
        embed: GgmlDType::Q6K,
        output: None,
        pre: "default",
        experts: None,
        llama3_rope: None,
        yarn: None,
    },
    RosterShape {
        id: "gemma3-4b",
        arch: Arch::Gemma3,
        n_layer: 34,
        n_embd: 2560,
        n_head: 8,
        n_kv_head: 4,
        head_dim: 256,
        n_ff: 10_240,
        vocab_size: 262_208,
        context_length: 131_072,
        sliding_window: 1024,
        rope_base: 1_000_000.0,
        rope_scaling: 8.0,
        quant: GgmlDType::Q4K,
        embed: GgmlDType::Q6K,
        output: None,
        pre: "default",
        experts: None,
        llama3_rope: None,
        yarn: None,
    },
    RosterShape {
        id: "gemma3-12b",
        arch: Arch::Gemma3,
        n_layer: 48,
        n_embd: 3840,
        n_head: 16,
        n_kv_head: 8,
        head_dim: 256,
        n_ff: 15_360,
        vocab_size: 262_208,
        context_length: 131_072,
        sliding_window: 1024,
        rope_base: 1_000_000.0,
        rope_scaling: 8.0,
        quant: GgmlDType::Q4K,
        embed: GgmlDType::Q6K,
        output: None,
        pre: "default",
        experts: None,
        llama3_rope: None,
        yarn: None,
    },
    RosterShape {
        id: "gemma3-27b",
        arch: Arch::Gemma3,
        n_layer: 62,
        n_embd: 5376,
        n_head: 32,
        n_kv_head: 16,
        head_dim: 128,
        n_ff: 21_504,
        vocab_size: 262_208,
        context_length: 131_072,
        sliding_window: 1024,
        rope_base: 1_000_000.0,
        rope_scaling: 8.0,
        quant: GgmlDType::Q4K,
        embed: GgmlDType::Q6K,
        output: None,
        pre: "default",
        experts: None,
        llama3_rope: None,
        yarn: None,
    },
];

/// Qwen3-30B-A3B's shape: the mixture-of-experts family of the paper's
/// larger rosters.
pub const QWEN3_30B_A3B: RosterShape = RosterShape {
    id: "qwen3-30b-a3b",
    arch: Arch::Qwen3Moe,
    n_layer: 48,
    n_embd: 2048,
    n_head: 32,
    n_kv_head: 4,
    head_dim: 128,
    n_ff: 6144,
    vocab_size: 151_936,
    context_length: 40_960,
    sliding_window: 0,
    rope_base: 1_000_000.0,
    rope_scaling: 0.0,
    quant: GgmlDType::Q4K,
    embed: GgmlDType::Q4K,
    output: Some(GgmlDType::Q6K),
    pre: "qwen2",
    experts: Some(ExpertConfig {
        count: 128,
        used: 8,
        n_ff: 768,
    }),
    llama3_rope: None,
    yarn: None,
};

/// Llama 3.1 8B's shape (Llama 3.x RoPE scaling, the `llama-bpe` vocabulary).
pub const LLAMA31_8B: RosterShape = RosterShape {
    id: "llama3.1-8b",
    arch: Arch::Llama,
    n_layer: 32,
    n_embd: 4096,
    n_head: 32,
    n_kv_head: 8,
    head_dim: 128,
    n_ff: 14_336,
    vocab_size: 128_256,
    context_length: 131_072,
    sliding_window: 0,
    rope_base: 500_000.0,
    rope_scaling: 0.0,
    quant: GgmlDType::Q4K,
    embed: GgmlDType::Q4K,
    output: Some(GgmlDType::Q6K),
    pre: "llama-bpe",
    experts: None,
    llama3_rope: Some(Llama3Rope {
        factor: 8.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_context: 8192,
    }),
    yarn: None,
};

/// Mistral Nemo 12B's shape (Mistral-style `llama`): its heads are 128 wide
/// although 5120 / 32 = 160, so the query width (4096) is not the model's;
/// the Tekken vocabulary.
pub const MISTRAL_NEMO_12B: RosterShape = RosterShape {
    id: "mistral-nemo-12b",
    arch: Arch::Llama,
    n_layer: 40,
    n_embd: 5120,
    n_head: 32,
    n_kv_head: 8,
    head_dim: 128,
    n_ff: 14_336,
    vocab_size: 131_072,
    context_length: 1_024_000,
    sliding_window: 0,
    rope_base: 1_000_000.0,
    rope_scaling: 0.0,
    quant: GgmlDType::Q4K,
    embed: GgmlDType::Q4K,
    output: Some(GgmlDType::Q6K),
    pre: "tekken",
    experts: None,
    llama3_rope: None,
    yarn: None,
};

/// GPT-OSS-20B's shape: the consumer roster's reasoning model, with the
/// released GGUF's types: MXFP4 experts, BF16 attention, table and output
/// (routers, biases and sinks F32).
pub const GPT_OSS_20B: RosterShape = RosterShape {
    id: "gpt-oss-20b",
    arch: Arch::GptOss,
    n_layer: 24,
    n_embd: 2880,
    n_head: 64,
    n_kv_head: 8,
    head_dim: 64,
    n_ff: 2880,
    vocab_size: 201_088,
    context_length: 131_072,
    sliding_window: 128,
    rope_base: 150_000.0,
    rope_scaling: 0.0,
    quant: GgmlDType::BF16,
    embed: GgmlDType::BF16,
    output: Some(GgmlDType::BF16),
    pre: "gpt-4o",
    experts: Some(ExpertConfig {
        count: 32,
        used: 4,
        n_ff: 2880,
    }),
    llama3_rope: None,
    yarn: Some(Yarn {
        factor: 32.0,
        original_context: 4096,
    }),
};

/// The ids `--like` accepts, for messages.
pub fn shape_ids() -> String {
    let ids: Vec<&str> = ROSTER_SHAPES
        .iter()
        .chain(&PAPER_SHAPES)
        .chain([&QWEN3_30B_A3B, &LLAMA31_8B, &GPT_OSS_20B, &MISTRAL_NEMO_12B])
        .map(|s| s.id)
        .collect();
    ids.join(", ")
}

/// A weight type the synthesizer writes: one of candle's GGML types, or an
/// IQ4 type (which candle lacks) quantized by [`iq4`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quant {
    /// A type candle quantizes.
    Ggml(GgmlDType),
    /// IQ4_NL (GGML type 20).
    Iq4Nl,
    /// IQ4_XS (GGML type 23).
    Iq4Xs,
}

impl std::fmt::Display for Quant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ggml(t) => write!(f, "{t:?}"),
            Self::Iq4Nl => f.write_str("IQ4_NL"),
            Self::Iq4Xs => f.write_str("IQ4_XS"),
        }
    }
}

/// Parse a `--quant` name (`Q4_K`, `q8_0`, `iq4_xs`, `f16`, ...).
pub fn parse_quant(name: &str) -> Result<Quant, SynthError> {
    Ok(Quant::Ggml(match name.to_ascii_uppercase().as_str() {
        "Q4_0" => GgmlDType::Q4_0,
        "Q4_1" => GgmlDType::Q4_1,
        "Q5_0" => GgmlDType::Q5_0,
        "Q8_0" => GgmlDType::Q8_0,
        "Q2_K" | "Q2K" => GgmlDType::Q2K,
        "Q3_K" | "Q3K" => GgmlDType::Q3K,
        "Q4_K" | "Q4K" => GgmlDType::Q4K,
        "Q5_K" | "Q5K" => GgmlDType::Q5K,
        "Q6_K" | "Q6K" => GgmlDType::Q6K,
        "IQ4_NL" => return Ok(Quant::Iq4Nl),
        "IQ4_XS" => return Ok(Quant::Iq4Xs),
        "F16" => GgmlDType::F16,
        "BF16" => GgmlDType::BF16,
        "F32" => GgmlDType::F32,
        _ => return Err(SynthError::UnknownQuant(name.to_string())),
    }))
}

/// The type of layer matrix `name` in a `want` mix: llama.cpp's Q4_K_M
/// gives `attn_v` and `ffn_down` Q6_K.
fn mixed(want: Quant, name: &str) -> Quant {
    let more_bits = name.ends_with("attn_v.weight") || name.ends_with("ffn_down.weight");
    if want == Quant::Ggml(GgmlDType::Q4K) && more_bits {
        Quant::Ggml(GgmlDType::Q6K)
    } else {
        want
    }
}

/// The type a row of `cols` values gets: `want` if its block divides the
/// row, else the fallback llama.cpp's quantizer uses for that type.
fn fitted(want: GgmlDType, cols: usize) -> GgmlDType {
    if cols.is_multiple_of(want.block_size()) {
        return want;
    }
    match want {
        GgmlDType::Q4K | GgmlDType::Q5K => GgmlDType::Q5_0,
        GgmlDType::Q6K => GgmlDType::Q8_0,
        GgmlDType::Q2K | GgmlDType::Q3K => GgmlDType::Q4_0,
        _ => GgmlDType::F32,
    }
}

/// Write the synthetic model `spec` to `path`.
pub fn write(path: &Path, spec: &SynthSpec) -> Result<(), SynthError> {
    let io = |source| SynthError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
    write_model(&mut file, spec).map_err(io)?;
    std::io::Write::flush(&mut file).map_err(io)
}

/// The synthetic model `spec` as the bytes of a GGUF file.
pub fn to_bytes(spec: &SynthSpec) -> Vec<u8> {
    let mut bytes = Vec::new();
    // Writing to memory cannot fail.
    write_model(&mut bytes, spec).expect("in-memory write");
    bytes
}

/// GPT-2 style vocabulary: the 256 byte symbols, a few merges, control tokens.
fn gpt2_vocab() -> (Vec<String>, Vec<i32>, Vec<String>) {
    let chars = crate::tokenizer::gpt2_byte_chars();
    let mut tokens: Vec<String> = chars.iter().map(|c| c.to_string()).collect();
    let merges = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a"];
    for m in merges {
        tokens.push(m.replace(' ', ""));
    }
    let mut types = vec![1; tokens.len()];
    for special in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] {
        tokens.push(special.to_string());
        types.push(3);
    }
    (
        tokens,
        types,
        merges.iter().map(|s| s.to_string()).collect(),
    )
}

/// SentencePiece vocabulary (Gemma style): control tokens, 256 byte tokens, pieces.
fn spm_vocab() -> (Vec<String>, Vec<i32>, Vec<f32>) {
    let mut tokens = vec![
        "<pad>".to_string(),
        "<eos>".into(),
        "<bos>".into(),
        "<unk>".into(),
    ];
    let mut types = vec![3, 3, 3, 2];
    let mut scores = vec![0.0; 4];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
        scores.push(0.0);
    }
    for (i, piece) in [
        "▁",
        "a",
        "b",
        "c",
        "ab",
        "▁a",
        "▁ab",
        "<start_of_turn>",
        "<end_of_turn>",
    ]
    .iter()
    .enumerate()
    {
        tokens.push(piece.to_string());
        types.push(if piece.starts_with('<') { 3 } else { 1 });
        scores.push(-(i as f32));
    }
    (tokens, types, scores)
}

/// Plain tokens `synth<i>` that pad a vocabulary to its size; no merge makes
/// them, so they only appear when sampled.
fn padding(from: usize, to: usize) -> impl Iterator<Item = String> {
    (from..to).map(|i| format!("synth{i}"))
}

/// The tensors of a model being written: candle's types and nsed's raw ones.
#[derive(Default)]
struct Tensors {
    candle: Vec<(String, QTensor)>,
    raw: Vec<(String, RawTensor)>,
}

impl Tensors {
    /// A matrix of uniform values in ±`scale`, of type `quant` (an IQ4 type
    /// falls back as llama.cpp's quantizer does where its block does not
    /// divide the rows: IQ4_XS to IQ4_NL, IQ4_NL to Q5_0 then F32).
    fn matrix(
        &mut self,
        rng: &mut SplitMix64,
        name: String,
        dims: &[usize],
        scale: f32,
        quant: Quant,
    ) {
        let cols = dims.last().copied().unwrap_or(0);
        let raw = match quant {
            Quant::Iq4Xs if cols.is_multiple_of(256) => RawType::Iq4Xs,
            Quant::Iq4Xs | Quant::Iq4Nl if cols.is_multiple_of(32) => RawType::Iq4Nl,
            Quant::Ggml(t) => return self.candle.push((name, tensor(rng, dims, scale, t))),
            _ => {
                let t = tensor(rng, dims, scale, GgmlDType::Q5_0);
                return self.candle.push((name, t));
            }
        };
        let n: usize = dims.iter().product();
        let values: Vec<f32> = (0..n).map(|_| rng.uniform(scale)).collect();
        let data = match raw {
            RawType::Iq4Xs => iq4::quantize_iq4_xs(&values),
            _ => iq4::quantize_iq4_nl(&values),
        };
        self.raw.push((
            name,
            RawTensor {
                dims: dims.to_vec(),
                ty: raw,
                data,
            },
        ));
    }
}

fn tensor(rng: &mut SplitMix64, dims: &[usize], scale: f32, dtype: GgmlDType) -> QTensor {
    let n: usize = dims.iter().product();
    let data: Vec<f32> = (0..n).map(|_| rng.uniform(scale)).collect();
    let t = Tensor::from_vec(data, dims, &Device::Cpu).expect("shape matches data");
    let dtype = fitted(dtype, dims.last().copied().unwrap_or(0));
    QTensor::quantize(&t, dtype).expect("quantizable shape")
}

fn norm(rng: &mut SplitMix64, n: usize) -> QTensor {
    let data: Vec<f32> = (0..n).map(|_| 1.0 + rng.uniform(0.1)).collect();
    let t = Tensor::from_vec(data, n, &Device::Cpu).expect("shape matches data");
    QTensor::quantize(&t, GgmlDType::F32).expect("f32")
}

/// Metadata and vocabulary size of `spec`.
fn metadata(spec: &SynthSpec) -> (Vec<(String, Value)>, usize) {
    let arch = spec.arch.name();
    let key = |k: &str| format!("{arch}.{k}");
    let mut meta: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        (key("block_count"), Value::U32(spec.n_layer as u32)),
        (key("embedding_length"), Value::U32(spec.n_embd as u32)),
        (key("feed_forward_length"), Value::U32(spec.n_ff as u32)),
        (key("attention.head_count"), Value::U32(spec.n_head as u32)),
        (
            key("attention.head_count_kv"),
            Value::U32(spec.n_kv_head as u32),
        ),
        (
            key("attention.key_length"),
            Value::U32(spec.head_dim as u32),
        ),
        // llama.cpp takes n_embd / n_head without it (the real files have it).
        (
            key("attention.value_length"),
            Value::U32(spec.head_dim as u32),
        ),
        (key("attention.layer_norm_rms_epsilon"), Value::F32(1e-6)),
        (key("rope.freq_base"), Value::F32(spec.rope_base)),
        (
            key("context_length"),
            Value::U32(spec.context_length as u32),
        ),
    ];
    if let Some(y) = spec.yarn {
        meta.push((key("rope.scaling.type"), Value::String("yarn".into())));
        meta.push((key("rope.scaling.factor"), Value::F32(y.factor)));
        meta.push((
            key("rope.scaling.original_context_length"),
            Value::U32(y.original_context as u32),
        ));
    }
    if spec.arch == Arch::GptOss {
        meta.push((
            key("attention.sliding_window"),
            Value::U32(spec.sliding_window as u32),
        ));
    }
    if let Some(x) = spec.experts {
        meta.push((key("expert_count"), Value::U32(x.count as u32)));
        meta.push((key("expert_used_count"), Value::U32(x.used as u32)));
        meta.push((key("expert_feed_forward_length"), Value::U32(x.n_ff as u32)));
    }
    if let Some(template) = &spec.chat_template {
        meta.push((
            "tokenizer.chat_template".into(),
            Value::String(template.clone()),
        ));
    }
    if let Some(factor) = spec.rope_scaling {
        meta.push((key("rope.scaling.type"), Value::String("linear".into())));
        meta.push((key("rope.scaling.factor"), Value::F32(factor)));
    }
    let vocab = match spec.arch {
        Arch::Gemma3 => {
            let (mut tokens, mut types, mut scores) = spm_vocab();
            let extra: Vec<String> = padding(tokens.len(), spec.vocab_size.unwrap_or(0)).collect();
            types.extend(std::iter::repeat_n(1, extra.len()));
            scores.extend(std::iter::repeat_n(-1e4, extra.len()));
            tokens.extend(extra);
            meta.push((
                key("attention.sliding_window"),
                Value::U32(spec.sliding_window as u32),
            ));
            meta.push(("tokenizer.ggml.model".into(), Value::String("llama".into())));
            meta.push((
                "tokenizer.ggml.scores".into(),
                Value::Array(scores.into_iter().map(Value::F32).collect()),
            ));
            meta.push((
                "tokenizer.ggml.token_type".into(),
                Value::Array(types.into_iter().map(Value::I32).collect()),
            ));
            meta.push(("tokenizer.ggml.add_bos_token".into(), Value::Bool(true)));
            meta.push(("tokenizer.ggml.add_space_prefix".into(), Value::Bool(false)));
            meta.push(("tokenizer.ggml.bos_token_id".into(), Value::U32(2)));
            meta.push(("tokenizer.ggml.eos_token_id".into(), Value::U32(1)));
            let n = tokens.len();
            meta.push((
                "tokenizer.ggml.tokens".into(),
                Value::Array(tokens.into_iter().map(Value::String).collect()),
            ));
            n
        }
        _ => {
            let (mut tokens, mut types, merges) = gpt2_vocab();
            // The end-of-text token stays the last of the minimal vocabulary.
            let eos = tokens.len() as u32 - 1;
            let extra: Vec<String> = padding(tokens.len(), spec.vocab_size.unwrap_or(0)).collect();
            types.extend(std::iter::repeat_n(1, extra.len()));
            tokens.extend(extra);
            meta.push(("tokenizer.ggml.model".into(), Value::String("gpt2".into())));
            meta.push(("tokenizer.ggml.pre".into(), Value::String(spec.pre.clone())));
            meta.push((
                "tokenizer.ggml.merges".into(),
                Value::Array(merges.into_iter().map(Value::String).collect()),
            ));
            meta.push((
                "tokenizer.ggml.token_type".into(),
                Value::Array(types.into_iter().map(Value::I32).collect()),
            ));
            meta.push(("tokenizer.ggml.add_bos_token".into(), Value::Bool(false)));
            meta.push(("tokenizer.ggml.eos_token_id".into(), Value::U32(eos)));
            let n = tokens.len();
            meta.push((
                "tokenizer.ggml.tokens".into(),
                Value::Array(tokens.into_iter().map(Value::String).collect()),
            ));
            n
        }
    };
    (meta, vocab)
}

fn write_model(out: &mut impl std::io::Write, spec: &SynthSpec) -> std::io::Result<()> {
    let mut rng = SplitMix64::new(spec.seed);
    let (meta, vocab) = metadata(spec);
    let (e, d, wt) = (spec.n_embd, spec.head_dim, spec.weight_type);
    let scale = |fan_in: usize| {
        spec.weight_scale
            .unwrap_or_else(|| (3.0 / fan_in as f32).sqrt())
    };
    let logit_scale = match spec.weight_scale {
        Some(_) => 1.0,
        None => 2.0 * (3.0 / e as f32).sqrt(),
    };
    let mut made = Tensors::default();
    made.candle.push((
        "token_embd.weight".into(),
        tensor(&mut rng, &[vocab, e], logit_scale, spec.embed_type),
    ));
    made.candle
        .push(("output_norm.weight".into(), norm(&mut rng, e)));
    for i in 0..spec.n_layer {
        let name = |t: &str| format!("blk.{i}.{t}");
        let (q, kv) = (spec.n_head * d, spec.n_kv_head * d);
        made.candle
            .push((name("attn_norm.weight"), norm(&mut rng, e)));
        made.matrix(&mut rng, name("attn_q.weight"), &[q, e], scale(e), wt);
        made.matrix(&mut rng, name("attn_k.weight"), &[kv, e], scale(e), wt);
        let v_type = mixed(wt, "attn_v.weight");
        made.matrix(&mut rng, name("attn_v.weight"), &[kv, e], scale(e), v_type);
        made.matrix(&mut rng, name("attn_output.weight"), &[e, q], scale(q), wt);
        let oss = spec.arch == Arch::GptOss;
        let ffn_norm = if oss {
            "post_attention_norm.weight"
        } else {
            "ffn_norm.weight"
        };
        made.candle.push((name(ffn_norm), norm(&mut rng, e)));
        match spec.experts {
            Some(x) if oss => {
                let bias =
                    |rng: &mut SplitMix64, dims: &[usize]| tensor(rng, dims, 0.1, GgmlDType::F32);
                let (n, ff) = (x.count, x.n_ff);
                made.candle.push((
                    name("ffn_gate_inp.weight"),
                    tensor(&mut rng, &[n, e], scale(e), GgmlDType::F32),
                ));
                made.candle
                    .push((name("ffn_gate_inp.bias"), bias(&mut rng, &[n])));
                for (t, rows, cols) in [("gate", ff, e), ("up", ff, e), ("down", e, ff)] {
                    made.raw.push((
                        name(&format!("ffn_{t}_exps.weight")),
                        mxfp4_tensor(&mut rng, &[n, rows, cols], scale(cols)),
                    ));
                    made.candle.push((
                        name(&format!("ffn_{t}_exps.bias")),
                        bias(&mut rng, &[n, rows]),
                    ));
                }
                for (t, len) in [
                    ("attn_q.bias", q),
                    ("attn_k.bias", kv),
                    ("attn_v.bias", kv),
                    ("attn_output.bias", e),
                ] {
                    made.candle.push((name(t), bias(&mut rng, &[len])));
                }
                // Sinks of the order of the scores, so that they matter.
                made.candle.push((
                    name("attn_sinks.weight"),
                    tensor(&mut rng, &[spec.n_head], 2.0, GgmlDType::F32),
                ));
            }
            None => {
                let ff = spec.n_ff;
                made.matrix(&mut rng, name("ffn_gate.weight"), &[ff, e], scale(e), wt);
                made.matrix(&mut rng, name("ffn_up.weight"), &[ff, e], scale(e), wt);
                let down = mixed(wt, "ffn_down.weight");
                made.matrix(&mut rng, name("ffn_down.weight"), &[e, ff], scale(ff), down);
            }
            Some(x) => {
                let (n, ff) = (x.count, x.n_ff);
                // The router stays F32, as llama.cpp's quantizer leaves it.
                made.candle.push((
                    name("ffn_gate_inp.weight"),
                    tensor(&mut rng, &[n, e], scale(e), GgmlDType::F32),
                ));
                made.matrix(
                    &mut rng,
                    name("ffn_gate_exps.weight"),
                    &[n, ff, e],
                    scale(e),
                    wt,
                );
                made.matrix(
                    &mut rng,
                    name("ffn_up_exps.weight"),
                    &[n, ff, e],
                    scale(e),
                    wt,
                );
                let down = mixed(wt, "ffn_down.weight");
                made.matrix(
                    &mut rng,
                    name("ffn_down_exps.weight"),
                    &[n, e, ff],
                    scale(ff),
                    down,
                );
            }
        }
        if spec.arch == Arch::Qwen2 {
            for (t, n) in [("attn_q.bias", q), ("attn_k.bias", kv), ("attn_v.bias", kv)] {
                made.candle
                    .push((name(t), tensor(&mut rng, &[n], 0.1, GgmlDType::F32)));
            }
        }
        if matches!(spec.arch, Arch::Gemma3 | Arch::Qwen3 | Arch::Qwen3Moe) {
            made.candle
                .push((name("attn_q_norm.weight"), norm(&mut rng, d)));
            made.candle
                .push((name("attn_k_norm.weight"), norm(&mut rng, d)));
        }
        if spec.arch == Arch::Gemma3 {
            made.candle
                .push((name("post_attention_norm.weight"), norm(&mut rng, e)));
            made.candle
                .push((name("post_ffw_norm.weight"), norm(&mut rng, e)));
        }
    }
    if let Some(rope) = spec.llama3_rope {
        let factors = rope.factors(spec.rope_base, spec.head_dim);
        let n = factors.len();
        let t = Tensor::from_vec(factors, n, &Device::Cpu).expect("shape matches data");
        let t = QTensor::quantize(&t, GgmlDType::F32).expect("f32");
        made.candle.push(("rope_freqs.weight".into(), t));
    }
    if let Some(output_type) = spec.output_type {
        made.candle.push((
            "output.weight".into(),
            tensor(
                &mut rng,
                &[vocab, e],
                spec.weight_scale.unwrap_or(logit_scale),
                output_type,
            ),
        ));
    }
    let meta_refs: Vec<(&str, Value)> = meta.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let tensor_refs: Vec<(&str, &QTensor)> =
        made.candle.iter().map(|(k, t)| (k.as_str(), t)).collect();
    let raw_refs: Vec<(&str, &RawTensor)> = made.raw.iter().map(|(k, t)| (k.as_str(), t)).collect();
    gguf::write_with_raw(out, &meta_refs, &tensor_refs, &raw_refs)
}

/// Uniform random values in ±`scale` of shape `dims`, as MXFP4 blocks.
fn mxfp4_tensor(rng: &mut SplitMix64, dims: &[usize], scale: f32) -> RawTensor {
    let n: usize = dims.iter().product();
    let values: Vec<f32> = (0..n).map(|_| rng.uniform(scale)).collect();
    RawTensor {
        dims: dims.to_vec(),
        ty: RawType::Mxfp4,
        data: mxfp4::quantize_row(&values),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::Gguf;
    use crate::model::{Config, Logits, Model};

    #[test]
    fn a_synthetic_file_has_the_shape_it_was_asked_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.gguf");
        let mut spec = SynthSpec::like("qwen2.5-coder-0.5b").expect("known");
        // Shrink depth and vocabulary to keep the test fast; widths stay.
        spec.n_layer = 2;
        spec.vocab_size = Some(1000);
        write(&path, &spec).expect("write");
        let gguf = Gguf::open(&path).expect("parse");
        let cfg = Config::from_gguf(&gguf).expect("config");
        assert_eq!((cfg.n_embd, cfg.n_head, cfg.n_kv_head), (896, 14, 2));
        assert_eq!((cfg.head_dim, cfg.vocab_size, cfg.n_layer), (64, 1000, 2));
        // 896 is not a multiple of Q4_K's 256: those rows fall back to Q5_0.
        let q = gguf.tensor_info("blk.0.attn_q.weight").expect("q");
        assert_eq!(q.dtype, GgmlDType::Q5_0);
        let down = gguf.tensor_info("blk.0.ffn_down.weight").expect("down");
        assert_eq!(
            down.dtype,
            GgmlDType::Q6K,
            "Q4_K_M's Q6_K: rows of 4864 = 19 × 256"
        );
        assert_eq!(
            gguf.tensor_info("output.weight").expect("untied").dtype,
            GgmlDType::Q8_0
        );
        let v = gguf.tensor_info("blk.0.attn_v.weight").expect("v");
        assert_eq!(v.dtype, GgmlDType::Q8_0, "Q4_K_M's Q6_K, 896 wide: Q8_0");
        // It runs, and its logits are finite and not constant.
        let mut m = Model::from_gguf(&gguf).expect("load");
        let logits = m.forward(&[1, 2, 3], Logits::Last).expect("forward");
        let row = logits.to_vec2::<f32>().expect("2-D").remove(0);
        assert!(row.iter().all(|x| x.is_finite()));
        let (lo, hi) = row
            .iter()
            .fold((f32::MAX, f32::MIN), |(a, b), &x| (a.min(x), b.max(x)));
        assert!(hi - lo > 0.1, "spread {lo}..{hi}");
    }

    #[test]
    fn the_same_spec_writes_the_same_bytes_and_the_seed_matters() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = SynthSpec::new(Arch::Gemma3);
        let (a, b, c) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("c"),
        );
        write(&a, &spec).expect("a");
        write(&b, &spec).expect("b");
        write(&c, &SynthSpec { seed: 8, ..spec }).expect("c");
        let read = |p: &Path| std::fs::read(p).expect("read");
        assert_eq!(read(&a), read(&b));
        assert_ne!(read(&a), read(&c));
    }

    #[test]
    fn llama3_rope_factors_follow_the_converter() {
        let rope = LLAMA31_8B.llama3_rope.expect("llama 3.1 scales");
        let f = rope.factors(500_000.0, 128);
        assert_eq!(f.len(), 64);
        // High frequencies kept, low ones divided by 8, a smooth band between.
        assert_eq!((f[0], f[63]), (1.0, 8.0));
        let band: Vec<&f32> = f.iter().filter(|&&x| x > 1.0 && x < 8.0).collect();
        assert!(
            !band.is_empty() && f.windows(2).all(|w| w[0] <= w[1]),
            "{f:?}"
        );
    }

    #[test]
    fn names_are_checked() {
        assert!(matches!(
            SynthSpec::like("llama-70b"),
            Err(SynthError::UnknownShape(_))
        ));
        assert_eq!(
            parse_quant("q4_k").expect("q4k"),
            Quant::Ggml(GgmlDType::Q4K)
        );
        assert_eq!(parse_quant("iq4_xs").expect("iq4_xs"), Quant::Iq4Xs);
        let err = parse_quant("Q3_XS").expect_err("unknown");
        assert!(err.to_string().contains("Q4_K"), "{err}");
        assert_eq!(fitted(GgmlDType::Q4K, 640), GgmlDType::Q5_0);
        assert_eq!(fitted(GgmlDType::Q4K, 1536), GgmlDType::Q4K);
        assert_eq!(fitted(GgmlDType::Q6K, 896), GgmlDType::Q8_0);
    }
}
