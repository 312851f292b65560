//! The decoder-only transformers of the roster — `llama` (SmolLM2), `qwen2` and
//! `gemma3` — over candle's quantized CPU kernels, with a KV cache and a
//! forward pass that can return the logits of EVERY position (teacher forcing
//! in one prefill, for perplexity and verification) or of the last only.
//!
//! Written for nsed after reading candle-transformers' `quantized_llama`,
//! `quantized_qwen2` and `quantized_gemma3` (MIT/Apache-2.0) and llama.cpp's
//! graphs; it differs from candle's files where they are wrong for these GGUFs
//! (Gemma uses GELU, not SiLU; sliding-window masks also apply when decoding)
//! and keeps the token embedding quantized (rows are dequantized on gather).

use std::sync::Arc;

use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};

use crate::device::{ComputeDevice, DeviceError, OpenDevice, Weights};
use crate::gguf::{Gguf, GgufError};
use crate::qmm::float::FloatMatrix;
use crate::qmm::{self, Format, PackedMatrix, QmmError};

mod candle_path;

/// Why a model could not be loaded or a forward pass run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The GGUF file cannot be read, or lacks a key or tensor the model needs.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// `general.architecture` is not one nsed implements ([`Arch::SUPPORTED`]).
    #[error("unsupported architecture `{0}` (nsed runs {supported})", supported = Arch::SUPPORTED)]
    UnsupportedArch(String),
    /// The metadata or a call is inconsistent: impossible head counts or dimensions, a forward
    /// step with no tokens, a tensor that cannot be read.
    #[error("model metadata is inconsistent: {0}")]
    Config(String),
    /// A forward step would run the sequence past the context (`max_positions`).
    #[error(
        "the sequence needs {needed} positions but the context holds {max}; \
         shorten the prompt or lower --max-tokens"
    )]
    ContextOverflow {
        /// Positions the sequence would hold after the step.
        needed: usize,
        /// Positions the context holds.
        max: usize,
    },
    /// A token id beyond the rows of the embedding table.
    #[error("token id {id} is outside the embedding table ({vocab} rows)")]
    TokenOutOfRange {
        /// The token id.
        id: u32,
        /// Rows in the embedding table.
        vocab: usize,
    },
    /// A candle tensor operation failed.
    #[error("tensor computation failed: {0}")]
    Candle(Box<candle_core::Error>),
    /// Packing a weight matrix for nsed's kernels, or running one, failed.
    #[error(transparent)]
    Kernel(#[from] QmmError),
    /// The device could not be opened (no CUDA, no such GPU, not enough memory).
    #[error(transparent)]
    Device(#[from] DeviceError),
}

impl From<candle_core::Error> for ModelError {
    fn from(e: candle_core::Error) -> Self {
        Self::Candle(Box::new(e))
    }
}

type Result<T> = std::result::Result<T, ModelError>;

/// The transformer families the runtime implements; the GGUF
/// `general.architecture` and the registry's `arch` use the lower-case names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// Llama-style decoder (SmolLM2).
    Llama,
    /// Qwen2: llama with biases on the query, key and value projections.
    Qwen2,
    /// Gemma 3: GELU feed-forward, query/key and post-block norms, sliding-window layers.
    Gemma3,
    /// Qwen3 (dense): llama with an RMS norm on each query and key head before RoPE, no biases.
    Qwen3,
    /// Qwen3 mixture of experts (Qwen3-30B-A3B, 235B-A22B): Qwen3 attention, and a
    /// feed-forward of routed SwiGLU experts (softmax router, top-k, weights renormalized,
    /// no shared expert). CPU host path only.
    Qwen3Moe,
    /// GPT-OSS (20B, 120B): biased attention with per-head sinks, alternating sliding-window
    /// (even layers) and full attention, YaRN RoPE, routed experts with biases and the clamped
    /// SwiGLU, MXFP4 expert weights. CPU host path only.
    #[serde(rename = "gpt-oss")]
    GptOss,
}

impl Arch {
    /// The names [`Arch::parse`] accepts, for error messages.
    pub const SUPPORTED: &'static str =
        "`llama`, `qwen2`, `qwen3`, `qwen3moe`, `gemma3` and `gpt-oss`";

    /// The architecture of a GGUF `general.architecture` or registry `arch` name;
    /// [`ModelError::UnsupportedArch`] for any other.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "llama" => Ok(Self::Llama),
            "qwen2" => Ok(Self::Qwen2),
            "gemma3" => Ok(Self::Gemma3),
            "qwen3" => Ok(Self::Qwen3),
            "qwen3moe" => Ok(Self::Qwen3Moe),
            "gpt-oss" => Ok(Self::GptOss),
            other => Err(ModelError::UnsupportedArch(other.to_string())),
        }
    }

    /// The lower-case name, as in GGUF metadata and the registry.
    pub fn name(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
            Self::Gemma3 => "gemma3",
            Self::Qwen3 => "qwen3",
            Self::Qwen3Moe => "qwen3moe",
            Self::GptOss => "gpt-oss",
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

/// Hyper-parameters read from GGUF metadata.
#[derive(Debug, Clone)]
pub struct Config {
    /// Transformer family (`general.architecture`).
    pub arch: Arch,
    /// Transformer blocks (`block_count`).
    pub n_layer: usize,
    /// Width of the residual stream (`embedding_length`).
    pub n_embd: usize,
    /// Attention heads for queries (`attention.head_count`).
    pub n_head: usize,
    /// Key/value heads (`attention.head_count_kv`, else `n_head`); divides `n_head`.
    pub n_kv_head: usize,
    /// Dimension of one attention head (`attention.key_length`, else `n_embd / n_head`); even.
    pub head_dim: usize,
    /// Tokens in the vocabulary: the rows of `token_embd.weight`.
    pub vocab_size: usize,
    /// Epsilon of the RMS norms (`attention.layer_norm_rms_epsilon`).
    pub rms_eps: f64,
    /// RoPE frequency base (`rope.freq_base`, else 1e4, or 1e6 for Gemma 3); Gemma 3's
    /// global layers use it.
    pub rope_base: f32,
    /// Gemma 3's sliding-window layers use their own RoPE base
    /// (`rope.freq_base_swa`, else 1e4).
    pub rope_base_local: f32,
    /// Position scale of the global layers' RoPE: `1 / rope.scaling.factor` for linear
    /// scaling (Gemma 3 4B and larger: 1/8), else 1. The sliding layers are never scaled.
    pub rope_scale: f32,
    /// Query·key products are scaled by `1/√query_scale_dim`: the head dimension, except
    /// for Gemma 3 27B, `n_embd / n_head` (llama.cpp recognizes it by its 62 layers).
    pub query_scale_dim: usize,
    /// Attention window of the sliding layers, in tokens (Gemma 3); `None` for architectures
    /// without sliding-window layers.
    pub sliding_window: Option<usize>,
    /// Every `swa_pattern`-th layer is global; the others slide (Gemma 3: 6).
    pub swa_pattern: usize,
    /// Trained context length (`<arch>.context_length`).
    pub context_length: usize,
    /// The routed experts of a mixture-of-experts model; `None` for dense ones.
    pub experts: Option<ExpertConfig>,
    /// YaRN RoPE scaling (`rope.scaling.type = yarn`, GPT-OSS); `None` otherwise.
    pub yarn: Option<Yarn>,
}

/// YaRN context extension as llama.cpp applies it (ext_factor 1, β_fast 32,
/// β_slow 1): low-frequency pairs interpolated by `1/factor`, high ones kept,
/// a linear ramp between, and cos/sin scaled by `1 + 0.1·ln(factor)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Yarn {
    /// The context extension factor (`rope.scaling.factor`).
    pub factor: f32,
    /// The context the model was trained at before extension
    /// (`rope.scaling.original_context_length`).
    pub original_context: usize,
}

/// A mixture-of-experts feed-forward's shape (`<arch>.expert_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpertConfig {
    /// Experts per layer (`expert_count`).
    pub count: usize,
    /// Experts each token is routed to (`expert_used_count`).
    pub used: usize,
    /// Inner width of one expert (`expert_feed_forward_length`).
    pub n_ff: usize,
}

impl Config {
    /// Read and check the hyper-parameters from GGUF metadata (`<arch>.*` keys).
    pub fn from_gguf(gguf: &Gguf) -> Result<Self> {
        let arch = Arch::parse(gguf.architecture()?)?;
        let p = arch.name();
        let key = |k: &str| format!("{p}.{k}");
        let n_embd = gguf.get_usize(&key("embedding_length"))?;
        let n_head = gguf.get_usize(&key("attention.head_count"))?;
        let n_kv_head = gguf
            .get_usize(&key("attention.head_count_kv"))
            .unwrap_or(n_head);
        let head_dim = match gguf.get_usize(&key("attention.key_length")) {
            Ok(d) => d,
            Err(_) if n_head > 0 => n_embd / n_head,
            Err(e) => return Err(e.into()),
        };
        let vocab_size = gguf.tensor_info("token_embd.weight")?.dims[0];
        let gemma = arch == Arch::Gemma3;
        let oss = arch == Arch::GptOss;
        let n_layer = gguf.get_usize(&key("block_count"))?;
        let (rope_scale, yarn) = rope_scaling(gguf, p)?;
        let rope_base =
            gguf.get_f64(&key("rope.freq_base"))
                .unwrap_or(if gemma { 1e6 } else { 1e4 }) as f32;
        // Gemma 3 27B scales queries by its model width per head, not by
        // its head dimension; the file does not say so, llama.cpp knows it
        // by the depth.
        let query_scale_dim = if gemma && n_layer == 62 && n_head > 0 {
            n_embd / n_head
        } else {
            head_dim
        };
        let cfg = Self {
            arch,
            n_layer,
            n_embd,
            n_head,
            n_kv_head,
            head_dim,
            vocab_size,
            rms_eps: gguf.get_f64(&key("attention.layer_norm_rms_epsilon"))?,
            rope_base,
            // GPT-OSS's sliding layers use the global base unless the file says otherwise.
            rope_base_local: gguf
                .get_f64(&key("rope.freq_base_swa"))
                .map_or(if oss { rope_base } else { 10_000.0 }, |b| b as f32),
            rope_scale,
            query_scale_dim,
            sliding_window: if gemma || oss {
                Some(gguf.get_usize(&key("attention.sliding_window"))?)
            } else {
                None
            },
            swa_pattern: if oss { 2 } else { 6 },
            context_length: gguf.get_usize(&key("context_length")).unwrap_or(4096),
            yarn,
            experts: match arch {
                Arch::Qwen3Moe | Arch::GptOss => Some(ExpertConfig {
                    count: gguf.get_usize(&key("expert_count"))?,
                    used: gguf.get_usize(&key("expert_used_count"))?,
                    n_ff: gguf.get_usize(&key("expert_feed_forward_length"))?,
                }),
                _ => None,
            },
        };
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ModelError::Config(m));
        if self.n_head == 0 || self.n_kv_head == 0 || !self.n_head.is_multiple_of(self.n_kv_head) {
            return bad(format!(
                "{} heads / {} KV heads",
                self.n_head, self.n_kv_head
            ));
        }
        if self.query_scale_dim == 0 {
            return bad(format!("width {} over {} heads", self.n_embd, self.n_head));
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return bad(format!("head dimension {}", self.head_dim));
        }
        if let Some(x) = self.experts {
            if x.count == 0 || x.used == 0 || x.used > x.count || x.n_ff == 0 {
                return bad(format!(
                    "{} experts, {} used per token, {} wide (need 1 ≤ used ≤ experts)",
                    x.count, x.used, x.n_ff
                ));
            }
        }
        if self.n_layer == 0 || self.n_embd == 0 {
            return bad(format!("{} layers of width {}", self.n_layer, self.n_embd));
        }
        Ok(())
    }

    /// Whether the query and key heads are RMS-normalized before RoPE.
    fn has_qk_norm(&self) -> bool {
        matches!(self.arch, Arch::Gemma3 | Arch::Qwen3 | Arch::Qwen3Moe)
    }

    fn is_sliding(&self, layer: usize) -> bool {
        self.sliding_window.is_some() && !(layer + 1).is_multiple_of(self.swa_pattern)
    }
}

/// The global layers' RoPE position scale from `<arch>.rope.scaling.*`:
/// linear scaling (or none) is supported; YaRN and Llama 3's scaling are
/// not yet, and are refused rather than silently ignored.
fn rope_scaling(gguf: &Gguf, arch: &str) -> Result<(f32, Option<Yarn>)> {
    let kind = gguf
        .get_str(&format!("{arch}.rope.scaling.type"))
        .unwrap_or("linear");
    let factor = gguf
        .get_f64(&format!("{arch}.rope.scaling.factor"))
        .unwrap_or(0.0);
    let positive = factor.is_finite() && factor > 0.0;
    match kind {
        "none" => Ok((1.0, None)),
        "linear" if factor == 0.0 || factor == 1.0 => Ok((1.0, None)),
        "linear" | "yarn" if !positive => Err(ModelError::Config(format!(
            "rope.scaling.factor {factor} must be positive"
        ))),
        "linear" => Ok(((1.0 / factor) as f32, None)),
        "yarn" => {
            let original = gguf
                .get_usize(&format!("{arch}.rope.scaling.original_context_length"))
                .map_err(|_| {
                    ModelError::Config("YaRN without rope.scaling.original_context_length".into())
                })?;
            let yarn = Yarn {
                factor: factor as f32,
                original_context: original,
            };
            Ok(((1.0 / factor) as f32, Some(yarn)))
        }
        other => Err(ModelError::Config(format!(
            "RoPE scaling `{other}` is not supported (nsed implements linear, yarn, and Llama 3's \
             per-frequency factors)"
        ))),
    }
}

/// Llama 3's RoPE frequency factors (`rope_freqs.weight`: `head_dim / 2`
/// divisors, written by llama.cpp's converter from the model's
/// `rope_scaling`), if the file has them.
fn rope_factors(gguf: &Gguf, file: &mut std::fs::File, cfg: &Config) -> Result<Option<Arc<[f32]>>> {
    if !gguf.tensors.contains_key("rope_freqs.weight") {
        return Ok(None);
    }
    let factors = gguf
        .tensor(file, "rope_freqs.weight", &Device::Cpu)?
        .dequantize(&Device::Cpu)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    if factors.len() != cfg.head_dim / 2 || factors.iter().any(|f| !(f.is_finite() && *f > 0.0)) {
        return Err(ModelError::Config(format!(
            "rope_freqs.weight has {} factors (need {} positive ones)",
            factors.len(),
            cfg.head_dim / 2
        )));
    }
    Ok(Some(factors.into()))
}

/// Which logits a forward pass returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// One row per input token: `[n_tokens, vocab]`.
    All,
    /// The last position only: `[1, vocab]`.
    Last,
    /// Positions `start..n` of the input: `[n - start, vocab]`. The output
    /// projection is the costliest matmul of a prefill, so skipping the rows
    /// nobody reads (perplexity scores only the second half) saves real time.
    From(usize),
}

struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    fn load(
        gguf: &Gguf,
        file: &mut std::fs::File,
        name: &str,
        eps: f64,
        dev: &Device,
    ) -> Result<Self> {
        let weight = gguf
            .tensor(file, name, &Device::Cpu)?
            .dequantize(&Device::Cpu)?
            .to_device(dev)?;
        Ok(Self {
            weight,
            eps: eps as f32,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::rms_norm(
            &x.contiguous()?,
            &self.weight,
            self.eps,
        )?)
    }
}

/// A weight matrix: repacked for nsed's row-invariant kernels ([`qmm`]) when
/// its format has one, else candle's quantized matmul (F32/F16 weights and
/// exotic re-quantizations of fraud experiments).
#[derive(Clone)]
enum Weight {
    Packed(Arc<PackedMatrix>),
    /// An unquantized (F32, F16, BF16) matrix with nsed's row-invariant product.
    Float(Arc<FloatMatrix>),
    Candle(Arc<QTensor>),
}

impl Weight {
    /// Repack `w` if a kernel exists for its format; the GGUF blocks are
    /// dropped when the last reference to them goes.
    fn new(w: Arc<QTensor>) -> Result<Self> {
        let Some(format) = Format::from_ggml(w.dtype()) else {
            return Ok(Self::Candle(w));
        };
        let (n, k) = w.shape().dims2()?;
        let packed = PackedMatrix::pack(format, n, k, &w.data()?)?;
        Ok(Self::Packed(Arc::new(packed)))
    }
}

struct Linear {
    kernel: Kernel,
    bias: Option<Tensor>,
}

enum Kernel {
    Packed(Arc<PackedMatrix>),
    Float(Arc<FloatMatrix>),
    Candle(QMatMul),
}

impl Linear {
    fn new(weight: Weight, bias: Option<Tensor>) -> Result<Self> {
        let kernel = match weight {
            Weight::Packed(w) => Kernel::Packed(w),
            Weight::Float(w) => Kernel::Float(w),
            Weight::Candle(w) => Kernel::Candle(QMatMul::from_arc(w)?),
        };
        Ok(Self { kernel, bias })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = match &self.kernel {
            Kernel::Packed(w) => packed_matmul(w, x)?,
            Kernel::Float(w) => float_matmul(w, x)?,
            Kernel::Candle(q) => q.forward(x)?,
        };
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }
}

/// `x · wᵀ` for an unquantized matrix, row-invariant as the packed kernels.
fn float_matmul(w: &FloatMatrix, x: &Tensor) -> Result<Tensor> {
    let lhs = x.flatten_all()?.to_vec1::<f32>()?;
    let m = lhs.len() / w.cols();
    let y = w
        .matmul(&lhs)
        .map_err(|e| ModelError::Config(e.to_string()))?;
    Ok(Tensor::from_vec(y, (m, w.rows()), &Device::Cpu)?)
}

/// `x · wᵀ` through the row-invariant kernel: a row's result is the same
/// bits whether it comes alone (decode) or in a prefill batch, at any thread
/// count, so a validator's one-pass replay of a generation is bit-exact.
fn packed_matmul(w: &PackedMatrix, x: &Tensor) -> Result<Tensor> {
    let k = w.cols();
    let lhs = x.flatten_all()?.to_vec1::<f32>()?;
    let m = lhs.len() / k;
    let y = qmm::matmul(w, &lhs)?;
    Ok(Tensor::from_vec(y, (m, w.rows()), &Device::Cpu)?)
}

struct Layer {
    attn_norm: RmsNorm,
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    post_attn_norm: Option<RmsNorm>,
    ffn_norm: RmsNorm,
    ffn: Ffn,
    post_ffn_norm: Option<RmsNorm>,
    /// GPT-OSS's per-head attention sink logits.
    sinks: Option<Vec<f32>>,
    sliding: bool,
}

/// A layer's feed-forward block.
enum Ffn {
    /// One SwiGLU (GELU for Gemma) block for every token.
    Dense {
        gate: Linear,
        up: Linear,
        down: Linear,
    },
    /// Routed experts.
    Moe(Moe),
}

/// A mixture of experts behind a router.
struct Moe {
    /// `[experts, n_embd]`: one logit per expert (with GPT-OSS's bias).
    router: Linear,
    experts: Experts,
    /// Experts per token.
    used: usize,
}

/// The experts' weights and which gated activation they use.
enum Experts {
    /// Qwen3-MoE: SwiGLU, no biases, packed for nsed's kernels; router
    /// softmax over all experts, the top ones renormalized.
    Swiglu(Vec<[PackedMatrix; 3]>),
    /// GPT-OSS: MXFP4 gate/up/down with biases and the clamped SwiGLU;
    /// router softmax over the chosen experts' logits only.
    Oai {
        weights: Vec<[PackedMatrix; 3]>,
        /// Per expert: gate, up and down biases.
        biases: Vec<[Vec<f32>; 3]>,
    },
}

impl Experts {
    fn count(&self) -> usize {
        match self {
            Self::Swiglu(w) => w.len(),
            Self::Oai { weights, .. } => weights.len(),
        }
    }

    /// Expert `e` on `rows` (row-major, a whole number of rows): one
    /// output row per input row, each independent of the others.
    fn run(&self, e: usize, rows: &[f32]) -> Result<Vec<f32>> {
        match self {
            Self::Swiglu(w) => expert_swiglu(&w[e], rows),
            Self::Oai { weights, biases } => {
                let [gate, up, down] = &weights[e];
                let [bg, bu, bd] = &biases[e];
                let mut a = qmm::matmul(gate, rows)?;
                let mut b = qmm::matmul(up, rows)?;
                add_rows(&mut a, bg);
                add_rows(&mut b, bu);
                a.iter_mut()
                    .zip(&b)
                    .for_each(|(g, u)| *g = swiglu_oai(*g, *u));
                let mut y = qmm::matmul(down, &a)?;
                add_rows(&mut y, bd);
                Ok(y)
            }
        }
    }

    /// The experts each row goes to, best first, with their weights.
    fn route(&self, logits: &[f32], used: usize) -> Vec<(usize, f32)> {
        match self {
            Self::Swiglu(_) => route(logits, used),
            Self::Oai { .. } => route_softmax_selected(logits, used),
        }
    }
}

/// `bias` added to every row of `y`.
fn add_rows(y: &mut [f32], bias: &[f32]) {
    for row in y.chunks_mut(bias.len()) {
        row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
    }
}

/// GPT-OSS's gated activation (ggml's `swiglu_oai`, α 1.702, limit 7): the
/// gate clamped from above, the linear part to ±7 and shifted by one.
fn swiglu_oai(gate: f32, up: f32) -> f32 {
    const ALPHA: f32 = 1.702;
    const LIMIT: f32 = 7.0;
    let x = gate.min(LIMIT);
    let y = up.clamp(-LIMIT, LIMIT);
    x / (1.0 + (ALPHA * -x).exp()) * (y + 1.0)
}

/// GPT-OSS's routing (llama.cpp's softmax-weight gating): the `used`
/// largest logits, weighted by the softmax over those alone.
fn route_softmax_selected(logits: &[f32], used: usize) -> Vec<(usize, f32)> {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    let chosen = &order[..used];
    let max = chosen
        .iter()
        .map(|&e| logits[e])
        .fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = chosen.iter().map(|&e| (logits[e] - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    chosen
        .iter()
        .zip(exps)
        .map(|(&e, x)| (e, x / sum))
        .collect()
}

/// What a RoPE table is made of.
#[derive(Debug, Clone)]
struct RopeSpec {
    base: f32,
    /// Positions are multiplied by it (linear or YaRN scaling; 1 for none).
    scale: f32,
    /// Llama 3's per-frequency divisors (`rope_freqs.weight`, one per pair of dimensions).
    factors: Option<Arc<[f32]>>,
    /// YaRN's ramp between interpolated and kept frequencies, and its magnitude scale.
    yarn: Option<Yarn>,
    head_dim: usize,
}

impl RopeSpec {
    /// The angle of pair `i` (frequency `theta`) at `pos`, and the factor
    /// on its cos and sin, as ggml's `rope_yarn` computes them.
    fn angle(&self, pos: usize, i: usize, theta: f32, ramp: &Option<(f32, f32, f32)>) -> f32 {
        let extrap = pos as f32 * theta;
        match (ramp, &self.factors) {
            // As ggml: the unscaled angle, divided by its frequency's factor
            // (Llama 3), times the scale (exact when it is 1).
            (None, Some(f)) => pos as f32 * theta / f[i] * self.scale,
            (None, None) => extrap * self.scale,
            (Some((low, high, _)), _) => {
                let y = (i as f32 - low) / (high - low).max(0.001);
                let mix = 1.0 - y.clamp(0.0, 1.0);
                let interp = self.scale * extrap;
                interp * (1.0 - mix) + extrap * mix
            }
        }
    }

    /// YaRN's correction range of pair indices and its cos/sin factor.
    fn yarn_ramp(&self) -> Option<(f32, f32, f32)> {
        let y = self.yarn?;
        let d = self.head_dim as f32;
        let corr = |rotations: f32| {
            d * (y.original_context as f32 / (rotations * 2.0 * std::f32::consts::PI)).ln()
                / (2.0 * self.base.ln())
        };
        let low = corr(32.0).floor().max(0.0);
        let high = corr(1.0).ceil().min(d - 1.0);
        // llama.cpp's attention factor (1 + 0.1 ln s) / (1 + 0.1 ln s),
        // times ggml's own 1 + 0.1 ln(1/scale), in its float order.
        let attn = (0.1 * y.factor.ln() + 1.0) * (1.0 / (1.0 + 0.1 * y.factor.ln()));
        let mscale = attn * (1.0 + 0.1 * (1.0 / self.scale).ln());
        Some((low, high, mscale))
    }
}

/// cos/sin tables for rotary embeddings, grown on demand.
struct Rope {
    spec: RopeSpec,
    cos: Tensor,
    sin: Tensor,
    dev: Device,
}

impl Rope {
    fn new(spec: RopeSpec, len: usize, dev: &Device) -> Result<Self> {
        let (cos, sin) = Self::tables(&spec, len, dev)?;
        Ok(Self {
            spec,
            cos,
            sin,
            dev: dev.clone(),
        })
    }

    /// Computed on the CPU (the same bits on every device), then moved.
    fn tables(spec: &RopeSpec, len: usize, dev: &Device) -> Result<(Tensor, Tensor)> {
        let (base, head_dim) = (spec.base, spec.head_dim);
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(len * half);
        let mut sin = Vec::with_capacity(len * half);
        let thetas: Vec<f32> = (0..half)
            .map(|i| 1f32 / base.powf((2 * i) as f32 / head_dim as f32))
            .collect();
        let ramp = spec.yarn_ramp();
        let mscale = ramp.map(|(_, _, m)| m);
        for pos in 0..len {
            for (i, &theta) in thetas.iter().enumerate() {
                let angle = spec.angle(pos, i, theta, &ramp);
                match mscale {
                    Some(m) => {
                        cos.push(angle.cos() * m);
                        sin.push(angle.sin() * m);
                    }
                    None => {
                        cos.push(angle.cos());
                        sin.push(angle.sin());
                    }
                }
            }
        }
        Ok((
            Tensor::from_vec(cos, (len, half), &Device::Cpu)?.to_device(dev)?,
            Tensor::from_vec(sin, (len, half), &Device::Cpu)?.to_device(dev)?,
        ))
    }

    fn ensure(&mut self, len: usize) -> Result<()> {
        if self.cos.dim(0)? < len {
            let grown = len.next_power_of_two().max(256);
            (self.cos, self.sin) = Self::tables(&self.spec, grown, &self.dev)?;
        }
        Ok(())
    }

    /// Rotate `x` of shape `[1, heads, seq, head_dim]` starting at `pos`.
    fn apply(&self, x: &Tensor, pos: usize, interleaved: bool) -> Result<Tensor> {
        let seq = x.dim(2)?;
        let cos = self.cos.narrow(0, pos, seq)?;
        let sin = self.sin.narrow(0, pos, seq)?;
        let x = x.contiguous()?;
        Ok(if interleaved {
            candle_nn::rotary_emb::rope_i(&x, &cos, &sin)?
        } else {
            candle_nn::rotary_emb::rope(&x, &cos, &sin)?
        })
    }
}

/// How a model computes: the host path (nsed's packed row-invariant
/// kernels, attention on plain vectors, bit-exact everywhere) or the candle
/// path (every matrix a candle `QMatMul`, attention and the KV cache as
/// candle tensors) on a candle device: a CUDA GPU, or the CPU in tests.
#[derive(Debug, Clone)]
enum Backend {
    Host,
    /// The device, and how the weight matrices are held on it.
    Candle(Device, Weights),
}

impl Backend {
    /// Where the layers' tensors live.
    fn device(&self) -> Device {
        match self {
            Self::Host => Device::Cpu,
            Self::Candle(dev, _) => dev.clone(),
        }
    }
}

/// A loaded model: its weights and one built-in sequence (the KV cache that
/// [`Model::forward`] extends). Other sequences live in [`Sequence`]s that
/// [`Model::forward_batch`] runs together with the weights read once.
pub struct Model {
    /// The hyper-parameters the weights were loaded with.
    pub config: Config,
    backend: Backend,
    /// Where the logits come from, for provenance (`x86_64-avx2`,
    /// `cuda:0 NVIDIA H200 sm_90`).
    origin: String,
    /// The token table stays on the host, quantized (rows dequantized on
    /// gather) whatever the backend.
    embedding: Weight,
    layers: Vec<Layer>,
    norm: RmsNorm,
    output: Linear,
    rope_global: Rope,
    rope_local: Rope,
    /// The sequence of [`Model::forward`].
    seq: Sequence,
    /// Upper bound on positions (defaults to the trained context length).
    max_positions: usize,
}

/// Rewrites each weight matrix as it is loaded: `(tensor name, weight) →
/// weight`. Fraud experiments build re-quantized executors through it; 1-D
/// tensors (norms, biases) are never passed.
pub type WeightMap<'a> = dyn FnMut(&str, QTensor) -> Result<QTensor> + 'a;

impl Model {
    /// Load on the CPU's host path (nsed's kernels).
    pub fn from_gguf(gguf: &Gguf) -> Result<Self> {
        Self::from_gguf_on(gguf, None, ComputeDevice::Cpu)
    }

    /// Load on the host path with every weight matrix passed through `map`.
    pub fn from_gguf_mapped(gguf: &Gguf, map: &mut WeightMap) -> Result<Self> {
        Self::from_gguf_on(gguf, Some(map), ComputeDevice::Cpu)
    }

    /// Load on `device`: the CPU runs the host path, a GPU (or `cpu-candle`)
    /// the candle path (after checking that the weights fit its free memory).
    pub fn from_gguf_on(
        gguf: &Gguf,
        map: Option<&mut WeightMap>,
        device: ComputeDevice,
    ) -> Result<Self> {
        match device {
            ComputeDevice::Cpu => {
                let origin = crate::qmm::path::isa_level();
                Self::load(gguf, map, Backend::Host, origin)
            }
            ComputeDevice::CandleCpu(weights) | ComputeDevice::Cuda(_, weights) => {
                let OpenDevice { device, label } = device.open(device_bytes(gguf, weights))?;
                Self::load(gguf, map, Backend::Candle(device, weights), label)
            }
        }
    }

    /// The candle path on the CPU: the GPU's code, checkable without a GPU.
    pub fn from_gguf_candle_cpu(gguf: &Gguf) -> Result<Self> {
        Self::from_gguf_on(gguf, None, ComputeDevice::CandleCpu(Weights::Quantized))
    }

    /// Where the logits come from (`x86_64-avx2`, `cuda:0 NVIDIA H200 sm_90`).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Whether every row's logits are the same whatever else is in its
    /// forward call (how many rows, from which positions): true of the host
    /// path, whose kernels compute each row alone; not of candle's, which
    /// pick kernels (and activation blocks) by the row count. A validator
    /// replays a model that is not row-invariant call by call as it decoded.
    pub fn row_invariant(&self) -> bool {
        matches!(self.backend, Backend::Host)
    }

    /// Whether the layers run on a GPU (candle's CUDA backend).
    pub fn on_gpu(&self) -> bool {
        matches!(&self.backend, Backend::Candle(dev, _) if dev.is_cuda())
    }

    fn load(
        gguf: &Gguf,
        mut map: Option<&mut WeightMap>,
        backend: Backend,
        origin: String,
    ) -> Result<Self> {
        let config = Config::from_gguf(gguf)?;
        let mut file = gguf.open_data()?;
        let dev = backend.device();
        let candle = matches!(backend, Backend::Candle(..));
        let weights = match backend {
            Backend::Candle(_, w) => w,
            Backend::Host => Weights::Quantized,
        };
        let mapped = map.is_some();
        if config.experts.is_some() && (candle || mapped) {
            return Err(ModelError::Config(format!(
                "{} (mixture of experts) runs on the CPU's host path only, without \
                 re-quantized weights; use --device cpu",
                config.arch
            )));
        }
        // A weight read from the file (through `map`, if any) as a CPU QTensor.
        let mut read = |file: &mut std::fs::File, name: &str| -> Result<QTensor> {
            let w = gguf.tensor(file, name, &Device::Cpu)?;
            match map.as_mut() {
                Some(map) => map(name, w),
                None => Ok(w),
            }
        };
        let has_output = gguf.has_tensor("output.weight");
        let (embedding, output) = if candle {
            // The table is gathered on the host; the projection runs on
            // the device (a tied one from the same tensor, read once).
            let table = Arc::new(read(&mut file, "token_embd.weight")?);
            let output = if has_output {
                read(&mut file, "output.weight")?
            } else {
                upload(&table, &Device::Cpu, Weights::Quantized)?
            };
            (
                Weight::new(table)?,
                Weight::Candle(Arc::new(upload(&output, &dev, weights)?)),
            )
        } else {
            let mut host = |file: &mut std::fs::File, name: &str| -> Result<Weight> {
                host_matrix(gguf, file, name, &mut read, mapped)
            };
            let embedding = host(&mut file, "token_embd.weight")?;
            let output = if has_output {
                host(&mut file, "output.weight")?
            } else {
                // A tied output shares the embedding's packed matrix (one copy).
                embedding.clone()
            };
            (embedding, output)
        };
        let output = Linear::new(output, None)?;
        let mut matrix = |file: &mut std::fs::File, name: &str| -> Result<Weight> {
            if candle {
                Ok(Weight::Candle(Arc::new(upload(
                    &read(file, name)?,
                    &dev,
                    weights,
                )?)))
            } else {
                host_matrix(gguf, file, name, &mut read, mapped)
            }
        };
        let layers = (0..config.n_layer)
            .map(|i| load_layer(gguf, &mut file, &config, i, &mut matrix, &dev))
            .collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::load(gguf, &mut file, "output_norm.weight", config.rms_eps, &dev)?;
        let rope_factors = rope_factors(gguf, &mut file, &config)?;
        let initial = 256;
        Ok(Self {
            rope_global: Rope::new(
                RopeSpec {
                    base: config.rope_base,
                    scale: config.rope_scale,
                    factors: rope_factors,
                    yarn: config.yarn,
                    head_dim: config.head_dim,
                },
                initial,
                &dev,
            )?,
            // Gemma 3's sliding layers are never scaled; GPT-OSS's are, as its global ones.
            rope_local: Rope::new(
                RopeSpec {
                    base: config.rope_base_local,
                    scale: if config.yarn.is_some() {
                        config.rope_scale
                    } else {
                        1.0
                    },
                    factors: None,
                    yarn: config.yarn,
                    head_dim: config.head_dim,
                },
                initial,
                &dev,
            )?,
            max_positions: config.context_length,
            config,
            backend,
            origin,
            embedding,
            layers,
            norm,
            output,
            seq: Sequence::default(),
        })
    }

    /// Tokens in the KV cache.
    pub fn position(&self) -> usize {
        self.seq.pos
    }

    /// Positions a sequence may hold: the trained context length unless capped with
    /// [`Model::set_max_positions`].
    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    /// Cap the context (e.g. to bound memory); never above the trained length.
    pub fn set_max_positions(&mut self, n: usize) {
        self.max_positions = n.min(self.config.context_length);
    }

    /// Empty the KV cache.
    pub fn reset(&mut self) {
        self.seq = Sequence::default();
    }

    /// Run `tokens` after what the cache holds and return their logits
    /// (`[n, vocab]` for [`Logits::All`], `[1, vocab]` for [`Logits::Last`],
    /// the rows from `start` for [`Logits::From`]).
    pub fn forward(&mut self, tokens: &[u32], want: Logits) -> Result<Tensor> {
        Ok(self.forward_hidden(tokens, want)?.0)
    }

    /// Like [`Model::forward`], also returning the final hidden states (after
    /// the output norm, the rows the logits come from) as `[rows, n_embd]` f32:
    /// the activations a TOPLOC-style proof commits to.
    pub fn forward_hidden(&mut self, tokens: &[u32], want: Logits) -> Result<(Tensor, Tensor)> {
        let mut seq = std::mem::take(&mut self.seq);
        let out = self.forward_batch(&mut [Step {
            seq: &mut seq,
            tokens,
            want,
        }]);
        self.seq = seq;
        let mut out = out?;
        out.pop()
            .ok_or_else(|| ModelError::Config("a one-sequence step returned nothing".into()))
    }

    /// One forward step over several sequences: each [`Step`] runs its tokens
    /// after what its sequence holds (a prompt's prefill, one decode token,
    /// or anything between), and gets its own (logits, hidden states) as
    /// [`Model::forward_hidden`] would return them.
    ///
    /// The weight matrices are read once for all rows; norms, kernels and
    /// attention compute each row by the same code whatever the other rows
    /// are, so every sequence's results are bit-identical to running it
    /// alone, at any batch size. The steps are checked (empty, too long,
    /// unknown token) before any sequence changes.
    pub fn forward_batch(&mut self, steps: &mut [Step<'_>]) -> Result<Vec<(Tensor, Tensor)>> {
        let mut segments = Vec::with_capacity(steps.len());
        let mut start = 0;
        for step in steps.iter() {
            let n = step.tokens.len();
            if n == 0 {
                return Err(ModelError::Config("forward on zero tokens".into()));
            }
            let end = step.seq.pos + n;
            if end > self.max_positions {
                return Err(ModelError::ContextOverflow {
                    needed: end,
                    max: self.max_positions,
                });
            }
            segments.push(Segment {
                start,
                len: n,
                pos: step.seq.pos,
            });
            start += n;
        }
        if segments.is_empty() {
            return Ok(Vec::new());
        }
        let longest = segments.iter().map(|s| s.pos + s.len).max().unwrap_or(0);
        self.rope_global.ensure(longest)?;
        self.rope_local.ensure(longest)?;
        let tokens: Vec<u32> = steps
            .iter()
            .flat_map(|s| s.tokens.iter().copied())
            .collect();
        let mut x = self.embed(&tokens)?;
        if let Backend::Candle(dev, _) = &self.backend {
            x = x.to_device(dev)?;
        }
        for step in steps.iter_mut() {
            step.seq
                .layers
                .resize_with(self.layers.len(), KvCache::default);
        }
        for i in 0..self.layers.len() {
            x = self.layer_forward(i, &x, steps, &segments)?;
        }
        // The rows each step wants, gathered for one output projection.
        let mut picked = Vec::with_capacity(steps.len());
        for (step, seg) in steps.iter().zip(&segments) {
            let n = seg.len;
            let (first, count) = match step.want {
                Logits::All => (0, n),
                Logits::Last => (n - 1, 1),
                Logits::From(start) => (start.min(n - 1), n - start.min(n - 1)),
            };
            picked.push(x.narrow(0, seg.start + first, count)?);
        }
        let rows = if picked.len() == 1 {
            picked[0].clone()
        } else {
            Tensor::cat(&picked, 0)?
        };
        let rows = self.norm.forward(&rows)?;
        // Back on the host (a no-op there): callers read them as vectors.
        let logits = self
            .output
            .forward(&rows)?
            .to_dtype(DType::F32)?
            .to_device(&Device::Cpu)?;
        let hidden = rows.to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
        let mut out = Vec::with_capacity(steps.len());
        let mut offset = 0;
        for (step, part) in steps.iter_mut().zip(&picked) {
            let count = part.dim(0)?;
            out.push((
                logits.narrow(0, offset, count)?,
                hidden.narrow(0, offset, count)?,
            ));
            offset += count;
            step.seq.pos += step.tokens.len();
        }
        Ok(out)
    }

    /// Dequantize the embedding rows of `tokens` (the table stays quantized).
    fn embed(&self, tokens: &[u32]) -> Result<Tensor> {
        let (vocab, width) = (self.config.vocab_size, self.config.n_embd);
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(ModelError::TokenOutOfRange { id, vocab });
        }
        let x = match &self.embedding {
            Weight::Packed(table) => {
                let mut rows = vec![0f32; tokens.len() * width];
                for (&t, row) in tokens.iter().zip(rows.chunks_exact_mut(width)) {
                    table.row_f32(t as usize, row);
                }
                Tensor::from_vec(rows, (tokens.len(), width), &Device::Cpu)?
            }
            Weight::Float(table) => {
                let mut rows = vec![0f32; tokens.len() * width];
                for (&t, row) in tokens.iter().zip(rows.chunks_exact_mut(width)) {
                    table.row_f32(t as usize, row);
                }
                Tensor::from_vec(rows, (tokens.len(), width), &Device::Cpu)?
            }
            Weight::Candle(table) => gather_rows(table, tokens, width)?,
        };
        Ok(match self.config.arch {
            Arch::Gemma3 => (x * (width as f64).sqrt())?,
            _ => x,
        })
    }

    fn layer_forward(
        &self,
        i: usize,
        x: &Tensor,
        steps: &mut [Step<'_>],
        segments: &[Segment],
    ) -> Result<Tensor> {
        let layer = &self.layers[i];
        let h = layer.attn_norm.forward(x)?;
        let rope = if layer.sliding {
            &self.rope_local
        } else {
            &self.rope_global
        };
        let window = if layer.sliding {
            self.config.sliding_window
        } else {
            None
        };
        let h = match self.backend {
            Backend::Host => attention(layer, i, &self.config, rope, &h, window, steps, segments)?,
            Backend::Candle(..) => {
                candle_path::attention(layer, i, &self.config, rope, &h, window, steps, segments)?
            }
        };
        let h = match &layer.post_attn_norm {
            Some(norm) => norm.forward(&h)?,
            None => h,
        };
        let x = (x + h)?;
        let h = layer.ffn_norm.forward(&x)?;
        let h = mlp(layer, self.config.arch, &h)?;
        let h = match &layer.post_ffn_norm {
            Some(norm) => norm.forward(&h)?,
            None => h,
        };
        Ok((x + h)?)
    }
}

/// Where a tensor in a format of nsed's packed kernels lies in the file:
/// candle's types and nsed's own (IQ4) alike.
struct PackedSource<'a> {
    name: &'a str,
    format: Format,
    dims: &'a [usize],
    offset: u64,
    n_bytes: u64,
}

/// Tensor `name` if the packed kernels read its format.
fn packed_source<'a>(gguf: &'a Gguf, name: &str) -> Option<PackedSource<'a>> {
    if let Some(info) = gguf.tensors.get(name) {
        return Format::from_ggml(info.dtype).map(|format| PackedSource {
            name: &info.name,
            format,
            dims: &info.dims,
            offset: info.offset,
            n_bytes: info.n_bytes,
        });
    }
    let raw = gguf.raw_tensors.get(name)?;
    Format::from_ggml_id(raw.ty.id()).map(|format| PackedSource {
        name: &raw.name,
        format,
        dims: &raw.dims,
        offset: raw.offset,
        n_bytes: raw.n_bytes,
    })
}

/// Rows `n` of `k` from byte `offset` of the file, packed while read.
fn read_packed(
    src: &PackedSource,
    offset: u64,
    (n, k): (usize, usize),
    file: &mut std::fs::File,
) -> Result<PackedMatrix> {
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| ModelError::Config(format!("reading tensor `{}`: {e}", src.name)))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    Ok(PackedMatrix::from_reader(src.format, n, k, &mut reader)?)
}

/// A weight matrix for the host path: streamed from the file into nsed's
/// packed layout when a kernel exists for its format and nothing rewrites
/// it, else read (through `read`, which applies the map) and packed or left
/// to candle.
fn host_matrix(
    gguf: &Gguf,
    file: &mut std::fs::File,
    name: &str,
    read: &mut dyn FnMut(&mut std::fs::File, &str) -> Result<QTensor>,
    mapped: bool,
) -> Result<Weight> {
    if let Some(src) = packed_source(gguf, name).filter(|s| !mapped && s.dims.len() == 2) {
        let shape = (src.dims[0], src.dims[1]);
        return Ok(Weight::Packed(Arc::new(read_packed(
            &src, src.offset, shape, file,
        )?)));
    }
    let info = gguf.tensor_info(name)?;
    if !mapped && info.dims.len() == 2 && FloatMatrix::handles(info.dtype) {
        use std::io::{Seek, SeekFrom};
        file.seek(SeekFrom::Start(info.offset))
            .map_err(|e| ModelError::Config(format!("reading tensor `{name}`: {e}")))?;
        let mut reader = std::io::BufReader::with_capacity(1 << 20, &mut *file);
        let w = FloatMatrix::from_reader(info.dtype, info.dims[0], info.dims[1], &mut reader)
            .map_err(|e| ModelError::Config(format!("`{name}`: {e}")))?;
        return Ok(Weight::Float(Arc::new(w)));
    }
    Weight::new(Arc::new(read(file, name)?))
}

/// A copy of `w` on `dev`, in the same GGML format (weights stay quantized
/// on a GPU).
fn upload(w: &QTensor, dev: &Device, weights: Weights) -> Result<QTensor> {
    if weights == Weights::F32 && w.shape().dims().len() == 2 {
        let dense = w.dequantize(&Device::Cpu)?;
        return Ok(QTensor::quantize_onto(&dense, GgmlDType::F32, dev)?);
    }
    Ok(qtensor_from_ggml(
        w.dtype(),
        &w.data()?,
        w.shape().dims().to_vec(),
        dev,
    )?)
}

/// Bytes of the weights the candle path puts on its device: every tensor
/// but the token table (gathered on the host) unless the output is tied to it.
fn device_bytes(gguf: &Gguf, weights: Weights) -> u64 {
    let tied = !gguf.has_tensor("output.weight");
    gguf.tensors
        .values()
        .filter(|t| tied || t.name != "token_embd.weight")
        .map(|t| match weights {
            Weights::F32 if t.dims.len() == 2 => 4 * t.dims.iter().product::<usize>() as u64,
            _ => t.n_bytes,
        })
        .sum()
}

/// Rows `tokens` of a GGUF-quantized table, dequantized.
fn gather_rows(table: &QTensor, tokens: &[u32], width: usize) -> Result<Tensor> {
    let dtype = table.dtype();
    let row_bytes = width / dtype.block_size() * dtype.type_size();
    let data = table.data()?;
    let mut rows = Vec::with_capacity(tokens.len() * row_bytes);
    for &t in tokens {
        let start = t as usize * row_bytes;
        rows.extend_from_slice(&data[start..start + row_bytes]);
    }
    let q = qtensor_from_ggml(dtype, &rows, vec![tokens.len(), width], &Device::Cpu)?;
    Ok(q.dequantize(&Device::Cpu)?)
}

/// `down(act(gate(h)) · up(h))`. With packed weights it runs on plain
/// vectors: one conversion in and out, and the activation fused with the
/// product on the kernel pool (candle's element-wise ops would run on a
/// second, spinning thread pool).
fn mlp(layer: &Layer, arch: Arch, h: &Tensor) -> Result<Tensor> {
    match &layer.ffn {
        Ffn::Dense { gate, up, down } => dense_mlp([gate, up, down], arch, h),
        Ffn::Moe(moe) => moe_mlp(moe, h),
    }
}

fn dense_mlp([gate, up, down]: [&Linear; 3], arch: Arch, h: &Tensor) -> Result<Tensor> {
    let (Kernel::Packed(gate_w), Kernel::Packed(up_w), Kernel::Packed(down_w)) =
        (&gate.kernel, &up.kernel, &down.kernel)
    else {
        let g = gate.forward(h)?;
        let g = match arch {
            Arch::Gemma3 => g.gelu()?,
            _ => candle_nn::ops::silu(&g)?,
        };
        return down.forward(&(g * up.forward(h)?)?);
    };
    let (gate, up, down) = (gate_w, up_w, down_w);
    let x = h.flatten_all()?.to_vec1::<f32>()?;
    let m = x.len() / gate.cols();
    let mut a = qmm::matmul(gate, &x)?;
    let b = qmm::matmul(up, &x)?;
    let act: fn(f32) -> f32 = match arch {
        // Gemma: GELU (tanh approximation), as llama.cpp; the others SiLU.
        Arch::Gemma3 => gelu_tanh,
        _ => silu,
    };
    use rayon::prelude::*;
    a.par_chunks_mut(4096)
        .zip(b.par_chunks(4096))
        .for_each(|(a, b)| a.iter_mut().zip(b).for_each(|(g, u)| *g = act(*g) * u));
    let y = qmm::matmul(down, &a)?;
    Ok(Tensor::from_vec(y, (m, down.rows()), &Device::Cpu)?)
}

/// GELU, tanh approximation, as `x · sigmoid(2z)` = `½x(1 + tanh z)`,
/// `z = √(2/π)(x + 0.044715x³)`: one exponential per element.
/// The experts' SwiGLU on `rows` (row-major, `cols` wide): row-invariant
/// kernels, so a row's result does not depend on which rows share the call.
fn expert_swiglu([gate, up, down]: &[PackedMatrix; 3], rows: &[f32]) -> Result<Vec<f32>> {
    let mut a = qmm::matmul(gate, rows)?;
    let b = qmm::matmul(up, rows)?;
    a.iter_mut().zip(&b).for_each(|(g, u)| *g = silu(*g) * u);
    Ok(qmm::matmul(down, &a)?)
}

/// The experts each row is routed to, best first, with their weights: the
/// softmax of the router's logits over all experts, the `used` largest kept
/// and renormalized to sum to one (as llama.cpp's `build_moe_ffn` with
/// softmax gating and `norm_w`).
fn route(logits: &[f32], used: usize) -> Vec<(usize, f32)> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let exps: Vec<f32> = logits.iter().map(|&l| (l - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    // Descending by probability; equal ones by index, so the choice is total.
    order.sort_by(|&a, &b| exps[b].total_cmp(&exps[a]).then(a.cmp(&b)));
    let chosen: Vec<(usize, f32)> = order[..used].iter().map(|&e| (e, exps[e] / sum)).collect();
    let total = chosen
        .iter()
        .map(|&(_, p)| p)
        .sum::<f32>()
        .max(6.103_515_6e-5);
    chosen.into_iter().map(|(e, p)| (e, p / total)).collect()
}

/// The mixture-of-experts block: each row's experts run on the rows routed
/// to them (one kernel call per expert), and a row's output is the
/// weighted sum of its experts' outputs in routing order.
fn moe_mlp(moe: &Moe, h: &Tensor) -> Result<Tensor> {
    let logits = moe.router.forward(h)?.to_vec2::<f32>()?;
    let x = h.flatten_all()?.to_vec1::<f32>()?;
    let m = logits.len();
    let width = x.len() / m.max(1);
    let routes: Vec<Vec<(usize, f32)>> = logits
        .iter()
        .map(|l| moe.experts.route(l, moe.used))
        .collect();
    // Per expert, the (row, slot) pairs it serves.
    let mut served: Vec<Vec<(usize, usize)>> = vec![Vec::new(); moe.experts.count()];
    for (row, r) in routes.iter().enumerate() {
        for (slot, &(e, _)) in r.iter().enumerate() {
            served[e].push((row, slot));
        }
    }
    let mut outputs = vec![vec![0f32; width]; m * moe.used];
    for (e, pairs) in served.iter().enumerate().filter(|(_, p)| !p.is_empty()) {
        let rows: Vec<f32> = pairs
            .iter()
            .flat_map(|&(row, _)| x[row * width..(row + 1) * width].iter().copied())
            .collect();
        let y = moe.experts.run(e, &rows)?;
        for (i, &(row, slot)) in pairs.iter().enumerate() {
            outputs[row * moe.used + slot].copy_from_slice(&y[i * width..(i + 1) * width]);
        }
    }
    let mut out = vec![0f32; m * width];
    for (row, r) in routes.iter().enumerate() {
        let acc = &mut out[row * width..(row + 1) * width];
        for (slot, &(_, w)) in r.iter().enumerate() {
            let y = &outputs[row * moe.used + slot];
            acc.iter_mut().zip(y).for_each(|(a, v)| *a += v * w);
        }
    }
    Ok(Tensor::from_vec(out, (m, width), &Device::Cpu)?)
}

fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let z = SQRT_2_OVER_PI * x * (1.0 + 0.044_715 * x * x);
    x / (1.0 + (-2.0 * z).exp())
}

fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// Keys and values of past positions: on the host path per KV head,
/// row-major `[pos][head_dim]`; on the candle path as device tensors
/// `[1, kv_heads, pos, head_dim]`.
#[derive(Default)]
struct KvCache {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    device: Option<(Tensor, Tensor)>,
}

impl KvCache {
    fn bytes(&self) -> usize {
        let host: usize = self.k.iter().chain(&self.v).map(Vec::len).sum();
        let device = self
            .device
            .as_ref()
            .map_or(0, |(k, v)| k.elem_count() + v.elem_count());
        (host + device) * std::mem::size_of::<f32>()
    }
}

/// One sequence's state: its position and the keys and values of every
/// layer. Any number of sequences share one [`Model`]'s weights.
#[derive(Default)]
pub struct Sequence {
    pos: usize,
    layers: Vec<KvCache>,
}

impl Sequence {
    /// An empty sequence: position 0, no KV cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Tokens in this sequence's KV cache.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes its KV cache holds.
    pub fn kv_bytes(&self) -> usize {
        self.layers.iter().map(KvCache::bytes).sum()
    }
}

/// One sequence's part of a [`Model::forward_batch`] step.
pub struct Step<'a> {
    /// The sequence the tokens extend; its KV cache grows and its position advances.
    pub seq: &'a mut Sequence,
    /// Tokens to run after what the sequence holds.
    pub tokens: &'a [u32],
    /// Which rows' logits to return.
    pub want: Logits,
}

/// Where a step's rows lie in the batch: rows `start..start + len`, at
/// positions `pos..pos + len` of its sequence.
struct Segment {
    start: usize,
    len: usize,
    pos: usize,
}

/// One segment's queries (rotated, `[head][row][head_dim]`) and where they
/// sit.
struct Queries {
    q: Vec<f32>,
    start: usize,
    len: usize,
    pos: usize,
}

/// Attention, batch-invariant by construction: every query row is computed
/// by the same code over exactly its visible keys, with a fixed reduction
/// order, whether it arrives in a prefill batch, as a single decode step or
/// beside other sequences' rows. (A GEMM's reduction order depends on the
/// matrix shapes, and activations quantized to 8 bits turn those last-bit
/// differences into visible logit differences; this is what makes a
/// validator's one-pass replay of a generation bit-exact.)
#[allow(clippy::too_many_arguments)]
fn attention(
    layer: &Layer,
    index: usize,
    cfg: &Config,
    rope: &Rope,
    x: &Tensor,
    window: Option<usize>,
    steps: &mut [Step<'_>],
    segments: &[Segment],
) -> Result<Tensor> {
    let total = x.dim(0)?;
    let (h, kvh, d) = (cfg.n_head, cfg.n_kv_head, cfg.head_dim);
    let q_all = layer.wq.forward(x)?;
    let k_all = layer.wk.forward(x)?;
    let v_all = layer.wv.forward(x)?;
    let interleaved = cfg.arch == Arch::Llama;
    let mut queries = Vec::with_capacity(segments.len());
    for (step, seg) in steps.iter_mut().zip(segments) {
        let n = seg.len;
        let heads = |t: &Tensor, count: usize| -> Result<Tensor> {
            Ok(t.narrow(0, seg.start, n)?
                .reshape((1, n, count, d))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let mut q = heads(&q_all, h)?;
        let mut k = heads(&k_all, kvh)?;
        let v = heads(&v_all, kvh)?;
        if let (Some(qn), Some(kn)) = (&layer.q_norm, &layer.k_norm) {
            q = qn.forward(&q)?;
            k = kn.forward(&k)?;
        }
        let q = rope
            .apply(&q, seg.pos, interleaved)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let k = rope
            .apply(&k, seg.pos, interleaved)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let v = v.flatten_all()?.to_vec1::<f32>()?;
        let cache = &mut step.seq.layers[index];
        cache.k.resize_with(kvh, Vec::new);
        cache.v.resize_with(kvh, Vec::new);
        for g in 0..kvh {
            cache.k[g].extend_from_slice(&k[g * n * d..(g + 1) * n * d]);
            cache.v[g].extend_from_slice(&v[g * n * d..(g + 1) * n * d]);
        }
        queries.push(Queries {
            q,
            start: seg.start,
            len: n,
            pos: seg.pos,
        });
    }
    let caches: Vec<&KvCache> = steps.iter().map(|s| &s.seq.layers[index]).collect();
    // The segment of each batch row, for the row-parallel loop below.
    let mut owner = Vec::with_capacity(total);
    for (s, seg) in segments.iter().enumerate() {
        owner.extend(std::iter::repeat_n(s, seg.len));
    }
    let scale = 1.0 / (cfg.query_scale_dim as f32).sqrt();
    let rep = h / kvh;
    let mut out = vec![0f32; total * h * d];
    let row = |(c, dst): (usize, &mut [f32])| {
        let (r, head) = (c / h, c % h);
        let s = owner[r];
        let (qs, cache) = (&queries[s], caches[s]);
        let i = r - qs.start;
        let g = head / rep;
        let q_row = &qs.q[(head * qs.len + i) * d..(head * qs.len + i + 1) * d];
        let qpos = qs.pos + i;
        let lo = window.map_or(0, |w| (qpos + 1).saturating_sub(w));
        let sink = layer.sinks.as_ref().map(|s| s[head]);
        attend_row_with_sink(
            q_row,
            &cache.k[g],
            &cache.v[g],
            lo..qpos + 1,
            scale,
            d,
            sink,
            dst,
        );
    };
    // A decode step's attention is smaller than the cost of waking threads
    // (and of competing with candle's pool); each row is computed the same
    // way either way, so the choice cannot change a result.
    let macs: usize = queries
        .iter()
        .map(|q| q.len * h * (q.pos + q.len) * d)
        .sum();
    if macs < PARALLEL_MIN_MACS {
        out.chunks_mut(d).enumerate().for_each(row);
    } else {
        use rayon::prelude::*;
        out.par_chunks_mut(d).enumerate().for_each(row);
    }
    let out = Tensor::from_vec(out, (total, h * d), &Device::Cpu)?;
    layer.wo.forward(&out)
}

/// Below this many multiply-adds, attention runs on the calling thread.
const PARALLEL_MIN_MACS: usize = 1 << 20;

/// One query row against keys `keys` (softmax over exactly those), into `dst`.
/// Public for the criterion benches.
pub fn attend_row(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    keys: std::ops::Range<usize>,
    scale: f32,
    d: usize,
    dst: &mut [f32],
) {
    attend_row_with_sink(q, k, v, keys, scale, d, None, dst)
}

/// [`attend_row`] with an attention sink (GPT-OSS): a logit that joins the
/// softmax's normalization (and its maximum) but has no value, so a head can
/// attend to nothing.
///
/// Runs [`attend_row_impl`] compiled for the process's kernel path (as
/// `qmm::float::dot`): wider vectors, the same operations in the same order.
#[allow(clippy::too_many_arguments)]
fn attend_row_with_sink(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    keys: std::ops::Range<usize>,
    scale: f32,
    d: usize,
    sink: Option<f32>,
    dst: &mut [f32],
) {
    use qmm::path::KernelPath;
    match qmm::path::active() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the active path runs on this CPU; it includes AVX-512 F.
        KernelPath::Avx512Vnni => unsafe { attend_avx512(q, k, v, keys, scale, d, sink, dst) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above; these paths include AVX2.
        KernelPath::Avx2 | KernelPath::AvxVnni => unsafe {
            attend_avx2(q, k, v, keys, scale, d, sink, dst)
        },
        _ => attend_row_impl(q, k, v, keys, scale, d, sink, dst),
    }
}

/// [`attend_row_impl`] compiled with AVX-512 F.
///
/// # Safety
/// Call only on a CPU with avx512f.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn attend_avx512(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    keys: std::ops::Range<usize>,
    scale: f32,
    d: usize,
    sink: Option<f32>,
    dst: &mut [f32],
) {
    attend_row_impl(q, k, v, keys, scale, d, sink, dst)
}

/// [`attend_row_impl`] compiled with AVX2.
///
/// # Safety
/// Call only on a CPU with avx2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn attend_avx2(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    keys: std::ops::Range<usize>,
    scale: f32,
    d: usize,
    sink: Option<f32>,
    dst: &mut [f32],
) {
    attend_row_impl(q, k, v, keys, scale, d, sink, dst)
}

/// The attention of one query row: scores, softmax (with the sink) and the
/// weighted sum of values.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn attend_row_impl(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    keys: std::ops::Range<usize>,
    scale: f32,
    d: usize,
    sink: Option<f32>,
    dst: &mut [f32],
) {
    let scores: Vec<f32> = keys
        .clone()
        .map(|j| qmm::float::dot_lanes(q, &k[j * d..(j + 1) * d], |v| *v) * scale)
        .collect();
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let max = sink.map_or(max, |s| max.max(s));
    let weights: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
    let sum: f32 = weights.iter().sum::<f32>() + sink.map_or(0.0, |s| (s - max).exp());
    dst.fill(0.0);
    for (j, w) in keys.zip(&weights) {
        let p = w / sum;
        for (o, x) in dst.iter_mut().zip(&v[j * d..(j + 1) * d]) {
            *o += p * x;
        }
    }
}

fn load_layer(
    gguf: &Gguf,
    file: &mut std::fs::File,
    cfg: &Config,
    i: usize,
    matrix: &mut dyn FnMut(&mut std::fs::File, &str) -> Result<Weight>,
    dev: &Device,
) -> Result<Layer> {
    let name = |t: &str| format!("blk.{i}.{t}");
    let cpu = Device::Cpu;
    let mut linear = |t: &str, with_bias: bool| -> Result<Linear> {
        let weight = matrix(file, &name(&format!("{t}.weight")))?;
        let bias_name = name(&format!("{t}.bias"));
        let bias = if with_bias && gguf.tensors.contains_key(&bias_name) {
            let bias = gguf.tensor(file, &bias_name, &cpu)?.dequantize(&cpu)?;
            Some(bias.to_device(dev)?)
        } else {
            None
        };
        Linear::new(weight, bias)
    };
    // Qwen2 has biases on the query, key and value projections; GPT-OSS on
    // those, the output projection and the router.
    let oss = cfg.arch == Arch::GptOss;
    let qkv_bias = cfg.arch == Arch::Qwen2 || oss;
    let (wq, wk, wv) = (
        linear("attn_q", qkv_bias)?,
        linear("attn_k", qkv_bias)?,
        linear("attn_v", qkv_bias)?,
    );
    let wo = linear("attn_output", oss)?;
    let ffn = match cfg.experts {
        None => Ffn::Dense {
            gate: linear("ffn_gate", false)?,
            up: linear("ffn_up", false)?,
            down: linear("ffn_down", false)?,
        },
        Some(x) => Ffn::Moe(Moe {
            router: {
                let rows = gguf.tensor_info(&name("ffn_gate_inp.weight"))?.dims[0];
                if rows != x.count {
                    return Err(ModelError::Config(format!(
                        "the router has {rows} rows for {} experts",
                        x.count
                    )));
                }
                linear("ffn_gate_inp", oss)?
            },
            experts: if oss {
                load_oai_experts(gguf, file, i, x.count)?
            } else {
                Experts::Swiglu(load_experts(gguf, file, i, x.count)?)
            },
            used: x.used,
        }),
    };
    let sinks = if oss {
        let t = gguf.tensor(file, &name("attn_sinks.weight"), &cpu)?;
        let sinks = t.dequantize(&cpu)?.flatten_all()?.to_vec1::<f32>()?;
        if sinks.len() != cfg.n_head {
            return Err(ModelError::Config(format!(
                "attn_sinks has {} values for {} heads",
                sinks.len(),
                cfg.n_head
            )));
        }
        Some(sinks)
    } else {
        None
    };
    let mut norm = |t: &str| RmsNorm::load(gguf, file, &name(t), cfg.rms_eps, dev);
    let gemma = cfg.arch == Arch::Gemma3;
    let qk_norm = cfg.has_qk_norm();
    let optional = |norm: &mut dyn FnMut(&str) -> Result<RmsNorm>,
                    t: &str,
                    present: bool|
     -> Result<Option<RmsNorm>> {
        if present {
            norm(t).map(Some)
        } else {
            Ok(None)
        }
    };
    // GPT-OSS names its pre-feed-forward norm `post_attention_norm`.
    let ffn_norm = if oss {
        "post_attention_norm.weight"
    } else {
        "ffn_norm.weight"
    };
    Ok(Layer {
        attn_norm: norm("attn_norm.weight")?,
        ffn_norm: norm(ffn_norm)?,
        q_norm: optional(&mut norm, "attn_q_norm.weight", qk_norm)?,
        k_norm: optional(&mut norm, "attn_k_norm.weight", qk_norm)?,
        post_attn_norm: optional(&mut norm, "post_attention_norm.weight", gemma)?,
        post_ffn_norm: optional(&mut norm, "post_ffw_norm.weight", gemma)?,
        wq,
        wk,
        wv,
        wo,
        ffn,
        sinks,
        sliding: cfg.is_sliding(i),
    })
}

/// GPT-OSS's experts: gate/up/down slices of the 3-D expert tensors (MXFP4
/// in the released files; any packed format), packed for the row-invariant
/// kernels, and their `[experts, rows]` biases.
fn load_oai_experts(
    gguf: &Gguf,
    file: &mut std::fs::File,
    layer: usize,
    count: usize,
) -> Result<Experts> {
    let weights = load_experts(gguf, file, layer, count)?;
    let mut biases: Vec<Vec<Vec<f32>>> = (0..count).map(|_| Vec::new()).collect();
    for (t, part) in ["gate", "up", "down"].into_iter().enumerate() {
        let name = format!("blk.{layer}.ffn_{part}_exps.bias");
        let n = weights
            .first()
            .map_or(0, |w: &[PackedMatrix; 3]| w[t].rows());
        let bias = gguf
            .tensor(file, &name, &Device::Cpu)?
            .dequantize(&Device::Cpu)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        if bias.len() != count * n {
            return Err(ModelError::Config(format!(
                "`{name}` has {} values, not {count} × {n}",
                bias.len()
            )));
        }
        for (e, b) in biases.iter_mut().enumerate() {
            b.push(bias[e * n..(e + 1) * n].to_vec());
        }
    }
    Ok(Experts::Oai {
        weights,
        biases: biases.into_iter().map(three).collect::<Result<_>>()?,
    })
}

/// The gate, up and down parts of one expert, gathered in that order.
fn three<T>(parts: Vec<T>) -> Result<[T; 3]> {
    parts
        .try_into()
        .map_err(|_| ModelError::Config("an expert lacks a matrix".into()))
}

/// Layer `layer`'s experts: each expert's slice of the 3-D `ffn_{gate,up,down}_exps`
/// tensors, packed for nsed's kernels (the formats those have).
fn load_experts(
    gguf: &Gguf,
    file: &mut std::fs::File,
    layer: usize,
    count: usize,
) -> Result<Vec<[PackedMatrix; 3]>> {
    let source = |t: &str| -> Result<PackedSource> {
        let name = format!("blk.{layer}.ffn_{t}_exps.weight");
        let src = packed_source(gguf, &name).ok_or_else(|| match gguf.tensor_info(&name) {
            Ok(info) => ModelError::Config(format!(
                "`{name}` is {:?}, which nsed's expert kernels do not read",
                info.dtype
            )),
            Err(e) => e.into(),
        })?;
        if src.dims.len() != 3 || src.dims[0] != count {
            return Err(ModelError::Config(format!(
                "`{name}` has shape {:?}, not [{count} experts, rows, cols]",
                src.dims
            )));
        }
        Ok(src)
    };
    let (gate, up, down) = (source("gate")?, source("up")?, source("down")?);
    (0..count)
        .map(|e| {
            Ok([
                read_expert(&gate, e, file)?,
                read_expert(&up, e, file)?,
                read_expert(&down, e, file)?,
            ])
        })
        .collect()
}

/// Expert `e`'s `[rows, cols]` slice of a 3-D expert tensor, packed.
fn read_expert(src: &PackedSource, e: usize, file: &mut std::fs::File) -> Result<PackedMatrix> {
    let (count, n, k) = (src.dims[0], src.dims[1], src.dims[2]);
    let per_expert = src.n_bytes / count as u64;
    read_packed(src, src.offset + e as u64 * per_expert, (n, k), file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{write_tiny_model, TinySpec};

    fn tiny(arch: Arch, tweak: impl FnOnce(&mut TinySpec)) -> (tempfile::TempDir, Model) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tiny.gguf");
        let mut spec = TinySpec::new(arch);
        tweak(&mut spec);
        write_tiny_model(&path, &spec).expect("write tiny model");
        let model = Model::from_gguf(&Gguf::open(&path).expect("parse")).expect("load");
        (dir, model)
    }

    fn rows(t: &Tensor) -> Vec<Vec<f32>> {
        t.to_vec2::<f32>().expect("2-D logits")
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    const TOKENS: [u32; 10] = [5, 17, 200, 3, 99, 42, 7, 150, 8, 61];

    #[test]
    fn every_position_matches_incremental_decode() {
        for arch in [
            Arch::Llama,
            Arch::Qwen2,
            Arch::Gemma3,
            Arch::Qwen3,
            Arch::Qwen3Moe,
        ] {
            let (_dir, mut m) = tiny(arch, |_| {});
            let all = rows(&m.forward(&TOKENS, Logits::All).expect("prefill"));
            assert_eq!(all.len(), TOKENS.len());
            assert_eq!(m.position(), TOKENS.len());
            m.reset();
            for (i, &t) in TOKENS.iter().enumerate() {
                let step = rows(&m.forward(&[t], Logits::Last).expect("decode"));
                // Batch-invariant attention: bit-identical, not merely close.
                assert_eq!(step[0], all[i], "{arch:?} position {i}: prefill vs decode");
            }
        }
    }

    #[test]
    fn chunked_prefill_matches_one_pass() {
        for arch in [
            Arch::Llama,
            Arch::Qwen2,
            Arch::Gemma3,
            Arch::Qwen3,
            Arch::Qwen3Moe,
        ] {
            let (_dir, mut m) = tiny(arch, |_| {});
            let all = rows(&m.forward(&TOKENS, Logits::All).expect("prefill"));
            m.reset();
            let _ = m.forward(&TOKENS[..6], Logits::All).expect("first chunk");
            let tail = rows(&m.forward(&TOKENS[6..], Logits::All).expect("second chunk"));
            for (j, row) in tail.iter().enumerate() {
                assert_eq!(row, &all[6 + j], "{arch:?} position {}", 6 + j);
            }
            let last = rows(&m.forward(&[1], Logits::Last).expect("decode"));
            assert_eq!(last.len(), 1);
            m.reset();
            let from = rows(&m.forward(&TOKENS, Logits::From(7)).expect("from 7"));
            assert_eq!(from.len(), 3);
            assert_eq!(from[0], all[7], "{arch:?}: the same rows as Logits::All");
        }
    }

    #[test]
    fn sliding_window_hides_old_tokens_in_prefill_and_decode() {
        // Two sliding layers of window 4: position 9 sees tokens 3..=9 at most.
        let (_dir, mut m) = tiny(Arch::Gemma3, |s| s.sliding_window = 4);
        let base = rows(&m.forward(&TOKENS, Logits::All).expect("prefill"));
        let mut changed_old = TOKENS;
        changed_old[0] = 250;
        m.reset();
        let same = rows(&m.forward(&changed_old, Logits::All).expect("prefill"));
        assert_eq!(
            same[9], base[9],
            "token 0 must be outside the window of position 9"
        );
        assert_ne!(
            same[1], base[1],
            "token 0 is inside the window of position 1"
        );
        // The same holds one token at a time (the decode path masks too).
        m.reset();
        let mut last = Vec::new();
        for &t in &changed_old {
            last = rows(&m.forward(&[t], Logits::Last).expect("decode")).remove(0);
        }
        assert!(max_diff(&last, &base[9]) < 1e-4);
        let mut changed_recent = TOKENS;
        changed_recent[7] = 250;
        m.reset();
        let moved = rows(&m.forward(&changed_recent, Logits::All).expect("prefill"));
        assert_ne!(moved[9], base[9]);
    }

    /// Prompts of ragged lengths (1 to 11 tokens), distinct per sequence.
    fn prompts(b: usize) -> Vec<Vec<u32>> {
        (0..b)
            .map(|j| {
                (0..1 + (j * 7) % 11)
                    .map(|t| ((t * 31 + j * 17) % 250 + 1) as u32)
                    .collect()
            })
            .collect()
    }

    const DECODE: [u32; 3] = [9, 77, 130];

    /// A sequence alone: its prompt's every row, then three decode steps.
    fn run_alone(m: &mut Model, prompt: &[u32]) -> Vec<Vec<f32>> {
        let mut seq = Sequence::new();
        let mut step = |tokens: &[u32], want| {
            let out = m
                .forward_batch(&mut [Step {
                    seq: &mut seq,
                    tokens,
                    want,
                }])
                .expect("alone");
            rows(&out[0].0)
        };
        let mut out = step(prompt, Logits::All);
        for t in DECODE {
            out.extend(step(&[t], Logits::Last));
        }
        out
    }

    /// The same sequences in shared steps: sequence j joins at step j % 3
    /// with its whole prompt (prefill beside the others' decode steps), then
    /// decodes one token per step and leaves after the third.
    fn run_batched(m: &mut Model, prompts: &[Vec<u32>]) -> Vec<Vec<Vec<f32>>> {
        let mut seqs: Vec<Sequence> = prompts.iter().map(|_| Sequence::new()).collect();
        let mut outs: Vec<Vec<Vec<f32>>> = prompts.iter().map(|_| Vec::new()).collect();
        let mut done = vec![0usize; prompts.len()]; // 0: not started, 1..=3 decode steps
        for t in 0.. {
            let active: Vec<usize> = (0..prompts.len())
                .filter(|&j| j % 3 <= t && done[j] <= DECODE.len())
                .collect();
            if done.iter().all(|&k| k > DECODE.len()) {
                break;
            }
            let mut steps: Vec<Step> = Vec::new();
            for (j, seq) in seqs.iter_mut().enumerate() {
                if !active.contains(&j) {
                    continue;
                }
                let (tokens, want) = match done[j] {
                    0 => (&prompts[j][..], Logits::All),
                    k => (&DECODE[k - 1..k], Logits::Last),
                };
                steps.push(Step { seq, tokens, want });
            }
            if steps.is_empty() {
                continue;
            }
            let out = m.forward_batch(&mut steps).expect("batched");
            for (&j, (logits, _)) in active.iter().zip(&out) {
                outs[j].extend(rows(logits));
                done[j] += 1;
            }
        }
        outs
    }

    #[test]
    fn batched_sequences_are_bit_identical_to_each_alone() {
        for arch in [
            Arch::Llama,
            Arch::Qwen2,
            Arch::Gemma3,
            Arch::Qwen3,
            Arch::Qwen3Moe,
        ] {
            let (_dir, mut m) = tiny(arch, |s| s.sliding_window = 4);
            for b in [1, 2, 5, 16] {
                let prompts = prompts(b);
                let alone: Vec<_> = prompts.iter().map(|p| run_alone(&mut m, p)).collect();
                let batched = run_batched(&mut m, &prompts);
                for (j, (a, b_)) in alone.iter().zip(&batched).enumerate() {
                    assert_eq!(a.len(), prompts[j].len() + DECODE.len());
                    assert_eq!(a, b_, "{arch:?} B={b} sequence {j}");
                }
            }
            // The built-in sequence of `forward` is the same computation.
            let p = &prompts(3)[2];
            m.reset();
            let all = rows(&m.forward(p, Logits::All).expect("forward"));
            assert_eq!(all, run_alone(&mut m, p)[..p.len()]);
        }
    }

    #[test]
    fn a_batch_is_not_the_same_as_another_sequences_context() {
        // Negative control: the batch must not leak between sequences. The
        // same decode token after different prompts gives different logits.
        let (_dir, mut m) = tiny(Arch::Qwen2, |_| {});
        let (mut a, mut b) = (Sequence::new(), Sequence::new());
        m.forward_batch(&mut [
            Step {
                seq: &mut a,
                tokens: &TOKENS[..4],
                want: Logits::Last,
            },
            Step {
                seq: &mut b,
                tokens: &TOKENS[4..],
                want: Logits::Last,
            },
        ])
        .expect("prefill");
        let out = m
            .forward_batch(&mut [
                Step {
                    seq: &mut a,
                    tokens: &[1],
                    want: Logits::Last,
                },
                Step {
                    seq: &mut b,
                    tokens: &[1],
                    want: Logits::Last,
                },
            ])
            .expect("decode");
        assert_ne!(rows(&out[0].0), rows(&out[1].0));
        assert_eq!((a.position(), b.position()), (5, 7));
        assert!(a.kv_bytes() > 0 && b.kv_bytes() > a.kv_bytes());
    }

    #[test]
    fn a_bad_step_changes_no_sequence() {
        let (_dir, mut m) = tiny(Arch::Llama, |s| s.context_length = 8);
        let (mut a, mut b) = (Sequence::new(), Sequence::new());
        let err = m
            .forward_batch(&mut [
                Step {
                    seq: &mut a,
                    tokens: &TOKENS[..3],
                    want: Logits::Last,
                },
                Step {
                    seq: &mut b,
                    tokens: &TOKENS,
                    want: Logits::Last,
                },
            ])
            .expect_err("10 > 8");
        assert!(matches!(
            err,
            ModelError::ContextOverflow { needed: 10, max: 8 }
        ));
        let err = m
            .forward_batch(&mut [
                Step {
                    seq: &mut a,
                    tokens: &TOKENS[..3],
                    want: Logits::Last,
                },
                Step {
                    seq: &mut b,
                    tokens: &[100_000],
                    want: Logits::Last,
                },
            ])
            .expect_err("out of range");
        assert!(matches!(err, ModelError::TokenOutOfRange { .. }));
        assert_eq!((a.position(), a.kv_bytes()), (0, 0));
        assert_eq!((b.position(), b.kv_bytes()), (0, 0));
        assert!(m.forward_batch(&mut []).expect("empty batch").is_empty());
    }

    #[test]
    fn forward_is_deterministic() {
        let (_dir, mut m) = tiny(Arch::Qwen2, |_| {});
        let a = rows(&m.forward(&TOKENS, Logits::All).expect("run 1"));
        m.reset();
        let b = rows(&m.forward(&TOKENS, Logits::All).expect("run 2"));
        assert_eq!(a, b);
    }

    #[test]
    fn context_overflow_and_bad_ids_are_errors() {
        let (_dir, mut m) = tiny(Arch::Llama, |s| s.context_length = 8);
        let err = m.forward(&TOKENS, Logits::Last).expect_err("10 > 8");
        assert!(
            matches!(err, ModelError::ContextOverflow { needed: 10, max: 8 }),
            "{err}"
        );
        let err = m
            .forward(&[100_000], Logits::Last)
            .expect_err("out of range");
        assert!(
            matches!(err, ModelError::TokenOutOfRange { id: 100_000, .. }),
            "{err}"
        );
    }

    #[test]
    fn unsupported_architecture_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.gguf");
        let mut f = std::fs::File::create(&path).expect("create");
        crate::gguf::write(
            &mut f,
            &[(
                "general.architecture",
                crate::gguf::Value::String("mamba".into()),
            )],
            &[],
        )
        .expect("write");
        let err = Model::from_gguf(&Gguf::open(&path).expect("parse"))
            .err()
            .expect("refused");
        assert!(err.to_string().contains("mamba"), "{err}");
        assert!(
            err.to_string().contains("`qwen3`"),
            "names the supported: {err}"
        );
    }

    #[test]
    fn qwen3_normalizes_query_and_key_heads_and_has_no_biases() {
        let (_dir, m) = tiny(Arch::Qwen3, |_| {});
        let layer = &m.layers[0];
        assert!(layer.q_norm.is_some() && layer.k_norm.is_some());
        assert!(layer.wq.bias.is_none() && layer.wk.bias.is_none());
        assert!(layer.post_attn_norm.is_none() && !layer.sliding);
        // The control: Qwen2 has the biases and no head norms.
        let (_dir2, q2) = tiny(Arch::Qwen2, |_| {});
        assert!(q2.layers[0].q_norm.is_none() && q2.layers[0].wq.bias.is_some());
    }

    #[test]
    fn linear_rope_scaling_moves_only_the_global_layers() {
        let logits = |layers: usize, scaling: Option<f32>| {
            let (_dir, mut m) = tiny(Arch::Gemma3, |s| {
                s.n_layer = layers;
                s.sliding_window = 64;
                s.rope_scaling = scaling;
            });
            assert_eq!(m.config.rope_scale, scaling.map_or(1.0, |f| 1.0 / f));
            rows(&m.forward(&TOKENS, Logits::All).expect("forward"))
        };
        // Six layers: the sixth is global, and its positions are scaled.
        assert_ne!(logits(6, None), logits(6, Some(8.0)));
        // Five layers all slide: the scale has nothing to act on.
        assert_eq!(logits(5, None), logits(5, Some(8.0)));
    }

    #[test]
    fn unknown_rope_scaling_and_impossible_widths_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.gguf");
        write_tiny_model(&path, &TinySpec::new(Arch::Qwen3)).expect("write");
        let mut gguf = Gguf::open(&path).expect("parse");
        let set = |g: &mut Gguf, k: &str, v: crate::gguf::Value| {
            g.metadata.insert(k.to_string(), v);
        };
        use crate::gguf::Value;
        set(
            &mut gguf,
            "qwen3.rope.scaling.type",
            Value::String("longrope".into()),
        );
        let err = Config::from_gguf(&gguf).expect_err("longrope");
        assert!(err.to_string().contains("`longrope`"), "{err}");
        set(
            &mut gguf,
            "qwen3.rope.scaling.type",
            Value::String("linear".into()),
        );
        set(&mut gguf, "qwen3.rope.scaling.factor", Value::F32(-2.0));
        let err = Config::from_gguf(&gguf).expect_err("negative");
        assert!(err.to_string().contains("-2"), "{err}");
        set(&mut gguf, "qwen3.rope.scaling.factor", Value::F32(4.0));
        assert_eq!(Config::from_gguf(&gguf).expect("linear").rope_scale, 0.25);
    }

    #[test]
    fn routing_keeps_the_largest_experts_and_renormalizes() {
        let r = route(&[0.0, 2.0, 1.0, 2.0], 2);
        // Experts 1 and 3 tie: the lower index first; weights sum to one.
        assert_eq!(r.iter().map(|&(e, _)| e).collect::<Vec<_>>(), [1, 3]);
        assert!((r[0].1 - 0.5).abs() < 1e-6 && (r[1].1 - 0.5).abs() < 1e-6);
        let r = route(&[3.0, 0.0, 1.0], 2);
        let (p0, p2) = (3f32.exp(), 1f32.exp());
        assert_eq!((r[0].0, r[1].0), (0, 2));
        assert!((r[0].1 - p0 / (p0 + p2)).abs() < 1e-6, "{r:?}");
    }

    #[test]
    fn gpt_oss_pieces_are_llama_cpps() {
        // Softmax over the chosen logits only, best first.
        let r = route_softmax_selected(&[0.0, 3.0, 1.0, 2.0], 2);
        assert_eq!((r[0].0, r[1].0), (1, 3));
        let e = (-1f32).exp();
        assert!((r[0].1 - 1.0 / (1.0 + e)).abs() < 1e-6, "{r:?}");
        // The clamped SwiGLU: the gate capped at 7, the linear part at ±7, plus one.
        assert_eq!(swiglu_oai(0.0, 5.0), 0.0);
        let big = swiglu_oai(100.0, 100.0);
        assert!(
            (big - 7.0 / (1.0 + (-1.702f32 * 7.0).exp()) * 8.0).abs() < 1e-4,
            "{big}"
        );
        // A sink takes probability mass and gives no value.
        let (q, k, v) = (
            [1.0f32; 4],
            [1.0f32; 8],
            [1.0f32, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0, 4.0],
        );
        let (mut plain, mut sunk) = ([0f32; 4], [0f32; 4]);
        attend_row_with_sink(&q, &k, &v, 0..2, 0.5, 4, None, &mut plain);
        attend_row_with_sink(&q, &k, &v, 0..2, 0.5, 4, Some(2.0), &mut sunk);
        assert_eq!(plain, [1.0, 2.0, 3.0, 4.0]);
        assert!((sunk[3] - 4.0 * 2.0 / 3.0).abs() < 1e-5, "{sunk:?}");
    }

    #[test]
    fn a_mixture_of_experts_is_refused_where_it_cannot_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("moe.gguf");
        write_tiny_model(&path, &TinySpec::new(Arch::Qwen3Moe)).expect("write");
        let gguf = Gguf::open(&path).expect("parse");
        let err = Model::from_gguf_candle_cpu(&gguf)
            .err()
            .expect("host path only");
        assert!(err.to_string().contains("host path only"), "{err}");
        let mut gguf = Gguf::open(&path).expect("parse");
        gguf.metadata.insert(
            "qwen3moe.expert_used_count".into(),
            crate::gguf::Value::U32(9),
        );
        let err = Config::from_gguf(&gguf).expect_err("9 of 4 experts");
        assert!(err.to_string().contains("used ≤ experts"), "{err}");
        assert!(
            Model::from_gguf(&Gguf::open(&path).expect("parse")).is_ok(),
            "the control loads"
        );
    }

    #[test]
    fn gemma3_27b_scales_queries_by_width_per_head() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.gguf");
        let spec = TinySpec {
            n_layer: 62,
            n_embd: 96,
            n_head: 4,
            ..TinySpec::new(Arch::Gemma3)
        };
        write_tiny_model(&path, &spec).expect("write");
        let cfg = Config::from_gguf(&Gguf::open(&path).expect("parse")).expect("config");
        assert_eq!((cfg.head_dim, cfg.query_scale_dim), (16, 24));
        let spec = TinySpec {
            n_layer: 61,
            ..spec
        };
        write_tiny_model(&path, &spec).expect("write");
        let cfg = Config::from_gguf(&Gguf::open(&path).expect("parse")).expect("config");
        assert_eq!(
            cfg.query_scale_dim, 16,
            "every other depth: the head dimension"
        );
    }
}
