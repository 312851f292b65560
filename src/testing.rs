//! Tiny GGUF models with seeded random weights, for tests: a real file in the
//! real format, small enough to run every architecture in milliseconds.

use std::path::Path;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use crate::engine::gguf::{self, Value};
use crate::engine::model::Arch;

pub use crate::engine::sampling::SplitMix64;

pub struct TinySpec {
    pub arch: Arch,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub n_ff: usize,
    pub context_length: usize,
    pub sliding_window: usize,
    pub seed: u64,
    pub weight_type: GgmlDType,
    /// `tokenizer.ggml.pre` of the GPT-2 style vocabulary.
    pub pre: String,
}

impl TinySpec {
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
            seed: 7,
            weight_type: GgmlDType::Q8_0,
            pre: "qwen2".into(),
        }
    }
}

/// GPT-2 style vocabulary: the 256 byte symbols, a few merges, control tokens.
fn gpt2_vocab() -> (Vec<String>, Vec<i32>, Vec<String>) {
    let chars = crate::engine::tokenizer::gpt2_byte_chars();
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

fn tensor(rng: &mut SplitMix64, dims: &[usize], scale: f32, dtype: GgmlDType) -> QTensor {
    let n: usize = dims.iter().product();
    let data: Vec<f32> = (0..n).map(|_| rng.uniform(scale)).collect();
    let t = Tensor::from_vec(data, dims, &Device::Cpu).expect("shape matches data");
    QTensor::quantize(&t, dtype).expect("quantizable shape")
}

fn norm(rng: &mut SplitMix64, n: usize) -> QTensor {
    let data: Vec<f32> = (0..n).map(|_| 1.0 + rng.uniform(0.1)).collect();
    let t = Tensor::from_vec(data, n, &Device::Cpu).expect("shape matches data");
    QTensor::quantize(&t, GgmlDType::F32).expect("f32")
}

/// Write a tiny random model of `spec.arch` to `path`.
pub fn write_tiny_model(path: &Path, spec: &TinySpec) -> std::io::Result<()> {
    let mut rng = SplitMix64::new(spec.seed);
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
        (key("attention.layer_norm_rms_epsilon"), Value::F32(1e-6)),
        (key("rope.freq_base"), Value::F32(10000.0)),
        (
            key("context_length"),
            Value::U32(spec.context_length as u32),
        ),
    ];
    let vocab = match spec.arch {
        Arch::Gemma3 => {
            let (tokens, types, scores) = spm_vocab();
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
            let (tokens, types, merges) = gpt2_vocab();
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
            let n = tokens.len();
            meta.push((
                "tokenizer.ggml.eos_token_id".into(),
                Value::U32(n as u32 - 1),
            ));
            meta.push((
                "tokenizer.ggml.tokens".into(),
                Value::Array(tokens.into_iter().map(Value::String).collect()),
            ));
            n
        }
    };
    let (e, d, wt) = (spec.n_embd, spec.head_dim, spec.weight_type);
    let mut tensors: Vec<(String, QTensor)> = vec![
        (
            "token_embd.weight".into(),
            tensor(&mut rng, &[vocab, e], 1.0, GgmlDType::Q8_0),
        ),
        ("output_norm.weight".into(), norm(&mut rng, e)),
    ];
    let s = 0.2;
    for i in 0..spec.n_layer {
        let name = |t: &str| format!("blk.{i}.{t}");
        tensors.push((name("attn_norm.weight"), norm(&mut rng, e)));
        tensors.push((
            name("attn_q.weight"),
            tensor(&mut rng, &[spec.n_head * d, e], s, wt),
        ));
        tensors.push((
            name("attn_k.weight"),
            tensor(&mut rng, &[spec.n_kv_head * d, e], s, wt),
        ));
        tensors.push((
            name("attn_v.weight"),
            tensor(&mut rng, &[spec.n_kv_head * d, e], s, wt),
        ));
        tensors.push((
            name("attn_output.weight"),
            tensor(&mut rng, &[e, spec.n_head * d], s, wt),
        ));
        tensors.push((name("ffn_norm.weight"), norm(&mut rng, e)));
        tensors.push((
            name("ffn_gate.weight"),
            tensor(&mut rng, &[spec.n_ff, e], s, wt),
        ));
        tensors.push((
            name("ffn_up.weight"),
            tensor(&mut rng, &[spec.n_ff, e], s, wt),
        ));
        tensors.push((
            name("ffn_down.weight"),
            tensor(&mut rng, &[e, spec.n_ff], s, wt),
        ));
        if spec.arch == Arch::Qwen2 {
            for (t, n) in [
                ("attn_q.bias", spec.n_head * d),
                ("attn_k.bias", spec.n_kv_head * d),
                ("attn_v.bias", spec.n_kv_head * d),
            ] {
                tensors.push((name(t), tensor(&mut rng, &[n], 0.1, GgmlDType::F32)));
            }
        }
        if spec.arch == Arch::Gemma3 {
            tensors.push((name("attn_q_norm.weight"), norm(&mut rng, d)));
            tensors.push((name("attn_k_norm.weight"), norm(&mut rng, d)));
            tensors.push((name("post_attention_norm.weight"), norm(&mut rng, e)));
            tensors.push((name("post_ffw_norm.weight"), norm(&mut rng, e)));
        }
    }
    if spec.arch == Arch::Qwen2 {
        tensors.push((
            "output.weight".into(),
            tensor(&mut rng, &[vocab, e], s, GgmlDType::Q8_0),
        ));
    }
    let meta_refs: Vec<(&str, Value)> = meta.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    gguf::write(&mut file, &meta_refs, &tensor_refs)?;
    std::io::Write::flush(&mut file)
}

/// `n` deterministic pseudo-random values in [-1, 1) (xorshift64), for
/// kernel tests and benches.
pub fn pseudo_random(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}
