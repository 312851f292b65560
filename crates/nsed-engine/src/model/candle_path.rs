//! Attention on the candle path: queries, the KV cache and the softmax as
//! candle tensors on the model's device, so that a GPU runs them as its own
//! kernels (cuBLAS batched products, candle's softmax and RoPE). The host
//! path's attention works on plain vectors instead and is bit-exact; this
//! one is as exact as the device's reductions (see docs/gpu.md).

use candle_core::{Device, Tensor};

use super::{Arch, Config, Layer, Result, Rope, Segment, Step};

/// Attention over each segment's visible keys (causal, and within the
/// sliding `window` where there is one); the new keys and values are
/// appended to each sequence's device cache.
#[allow(clippy::too_many_arguments)]
pub(super) fn attention(
    layer: &Layer,
    index: usize,
    cfg: &Config,
    rope: &Rope,
    x: &Tensor,
    window: Option<usize>,
    steps: &mut [Step<'_>],
    segments: &[Segment],
) -> Result<Tensor> {
    let (h, kvh, d) = (cfg.n_head, cfg.n_kv_head, cfg.head_dim);
    let q_all = layer.wq.forward(x)?;
    let k_all = layer.wk.forward(x)?;
    let v_all = layer.wv.forward(x)?;
    let interleaved = cfg.arch == Arch::Llama;
    let scale = 1.0 / (cfg.query_scale_dim as f64).sqrt();
    let rep = h / kvh;
    let mut outs = Vec::with_capacity(segments.len());
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
        let q = rope.apply(&q, seg.pos, interleaved)?;
        let k = rope.apply(&k, seg.pos, interleaved)?;
        let cache = &mut step.seq.layers[index];
        let (k, v) = match cache.device.take() {
            Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
            None => (k, v),
        };
        let keys = seg.pos + n;
        // Grouped heads: head g·rep + r reads KV head g, so the queries of
        // one KV head are the rows r·n + i of a [kvh, rep·n, d] matrix.
        let qg = q.reshape((kvh, rep * n, d))?;
        let kg = k.reshape((kvh, keys, d))?;
        let vg = v.reshape((kvh, keys, d))?;
        let scores = (qg.matmul(&kg.t()?)? * scale)?;
        let mask = visibility_mask(n, seg.pos, window, rep, scores.device())?;
        let probs = candle_nn::ops::softmax_last_dim(&scores.broadcast_add(&mask)?)?;
        let o = probs
            .matmul(&vg)?
            .reshape((h, n, d))?
            .transpose(0, 1)?
            .contiguous()?
            .reshape((n, h * d))?;
        cache.device = Some((k, v));
        outs.push(o);
    }
    let out = if outs.len() == 1 {
        outs.remove(0)
    } else {
        Tensor::cat(&outs, 0)?
    };
    layer.wo.forward(&out)
}

/// Additive mask `[rep·n, pos + n]` for `n` queries at positions
/// `pos..pos + n`: 0 where the key is visible (causal, inside the window),
/// −∞ elsewhere; the `n` rows repeat once per query head of a KV group.
fn visibility_mask(
    n: usize,
    pos: usize,
    window: Option<usize>,
    rep: usize,
    dev: &Device,
) -> Result<Tensor> {
    let keys = pos + n;
    let mut mask = Vec::with_capacity(rep * n * keys);
    for _ in 0..rep {
        for i in 0..n {
            let qpos = pos + i;
            let lo = window.map_or(0, |w| (qpos + 1).saturating_sub(w));
            mask.extend((0..keys).map(|j| {
                if (lo..=qpos).contains(&j) {
                    0f32
                } else {
                    f32::NEG_INFINITY
                }
            }));
        }
    }
    Ok(Tensor::from_vec(mask, (rep * n, keys), &Device::Cpu)?.to_device(dev)?)
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use crate::testing::{write_tiny_model, TinySpec};

    fn pair(arch: Arch, tweak: impl FnOnce(&mut TinySpec)) -> (tempfile::TempDir, Model, Model) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tiny.gguf");
        let mut spec = TinySpec::new(arch);
        tweak(&mut spec);
        write_tiny_model(&path, &spec).expect("write tiny model");
        let gguf = Gguf::open(&path).expect("parse");
        let host = Model::from_gguf(&gguf).expect("host");
        let candle = Model::from_gguf_candle_cpu(&gguf).expect("candle");
        (dir, host, candle)
    }

    fn rows(t: &Tensor) -> Vec<Vec<f32>> {
        t.to_vec2::<f32>().expect("2-D logits")
    }

    fn max_rel_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
        let scale = a.iter().flatten().fold(0f32, |m, x| m.max(x.abs()));
        let diff = a
            .iter()
            .flatten()
            .zip(b.iter().flatten())
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        diff / scale
    }

    const TOKENS: [u32; 12] = [5, 17, 200, 3, 99, 42, 7, 150, 8, 61, 33, 120];

    #[test]
    fn the_candle_path_computes_the_host_paths_model() {
        // Same weights, two implementations: candle's quantized matmul
        // (activations rounded to 8 bits its own way) and tensor attention
        // against nsed's kernels and vector attention. Close, not equal.
        for arch in [Arch::Llama, Arch::Qwen2, Arch::Gemma3, Arch::Qwen3] {
            let (_dir, mut host, mut candle) = pair(arch, |s| s.sliding_window = 4);
            assert_eq!(
                candle.origin(),
                format!("cpu-candle {}", crate::device::candle_cpu_class())
            );
            assert!(
                !candle.row_invariant(),
                "candle's kernels depend on the row count"
            );
            assert!(host.row_invariant());
            assert!(!candle.on_gpu());
            let a = rows(&host.forward(&TOKENS, Logits::All).expect("host"));
            let b = rows(&candle.forward(&TOKENS, Logits::All).expect("candle"));
            assert_eq!(b.len(), TOKENS.len());
            let rel = max_rel_diff(&a, &b);
            assert!(rel < 0.03, "{arch:?}: max relative difference {rel}");
            // Negative control: another context is not within tolerance.
            candle.reset();
            let mut other = TOKENS;
            other[0] = 250;
            other[5] = 1;
            let c = rows(&candle.forward(&other, Logits::All).expect("other"));
            let rel_other = max_rel_diff(&a[6..], &c[6..]);
            assert!(rel_other > 10.0 * rel, "{arch:?}: {rel_other} vs {rel}");
        }
    }

    #[test]
    fn candle_decode_follows_candle_prefill_and_honours_the_window() {
        for arch in [Arch::Llama, Arch::Qwen2, Arch::Gemma3, Arch::Qwen3] {
            let (_dir, _host, mut m) = pair(arch, |s| s.sliding_window = 4);
            let all = rows(&m.forward(&TOKENS, Logits::All).expect("prefill"));
            m.reset();
            let mut steps = Vec::new();
            for &t in &TOKENS {
                steps.extend(rows(&m.forward(&[t], Logits::Last).expect("decode")));
            }
            assert_eq!(m.position(), TOKENS.len());
            let rel = max_rel_diff(&all, &steps);
            assert!(rel < 1e-3, "{arch:?}: prefill vs decode {rel}");
        }
        // Gemma's sliding layers: token 0 is outside position 11's window,
        // but the global layer still sees it, so only a model whose every
        // layer slides shows no change. Two layers < the pattern of 6: all slide.
        let (_dir, _host, mut m) = pair(Arch::Gemma3, |s| s.sliding_window = 4);
        let base = rows(&m.forward(&TOKENS, Logits::All).expect("base"));
        m.reset();
        let mut changed = TOKENS;
        changed[0] = 250;
        let moved = rows(&m.forward(&changed, Logits::All).expect("changed"));
        assert_eq!(base[11], moved[11], "token 0 is outside the window");
        assert_ne!(base[1], moved[1], "token 0 is inside position 1's window");
    }

    #[test]
    fn candle_batches_keep_sequences_apart() {
        let (_dir, _host, mut m) = pair(Arch::Qwen2, |_| {});
        let alone = |m: &mut Model, p: &[u32]| {
            let mut seq = Sequence::new();
            let out = m
                .forward_batch(&mut [Step {
                    seq: &mut seq,
                    tokens: p,
                    want: Logits::All,
                }])
                .expect("alone");
            rows(&out[0].0)
        };
        let a = alone(&mut m, &TOKENS[..5]);
        let b = alone(&mut m, &TOKENS[5..]);
        let (mut sa, mut sb) = (Sequence::new(), Sequence::new());
        let out = m
            .forward_batch(&mut [
                Step {
                    seq: &mut sa,
                    tokens: &TOKENS[..5],
                    want: Logits::All,
                },
                Step {
                    seq: &mut sb,
                    tokens: &TOKENS[5..],
                    want: Logits::All,
                },
            ])
            .expect("batched");
        assert!(max_rel_diff(&a, &rows(&out[0].0)) < 1e-3);
        assert!(max_rel_diff(&b, &rows(&out[1].0)) < 1e-3);
        assert!(sa.kv_bytes() > 0 && sb.kv_bytes() > sa.kv_bytes());
        assert_eq!((sa.position(), sb.position()), (5, 7));
    }

    #[test]
    fn f32_weights_decode_as_they_prefill_and_cost_their_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tiny.gguf");
        write_tiny_model(&path, &TinySpec::new(Arch::Qwen2)).expect("write tiny model");
        let gguf = Gguf::open(&path).expect("parse");
        let device = ComputeDevice::CandleCpu(Weights::F32);
        let mut m = Model::from_gguf_on(&gguf, None, device).expect("f32 weights");
        assert_eq!(
            m.origin(),
            format!("cpu-candle/f32 {}", crate::device::candle_cpu_class())
        );
        let all = rows(&m.forward(&TOKENS, Logits::All).expect("prefill"));
        m.reset();
        let mut steps = Vec::new();
        for &t in &TOKENS {
            steps.extend(rows(&m.forward(&[t], Logits::Last).expect("decode")));
        }
        // Nothing is rounded to 8 bits: prefill and decode differ only in
        // the order of float sums.
        let rel = max_rel_diff(&all, &steps);
        assert!(rel < 1e-5, "prefill vs decode {rel}");
        // The memory check counts the dequantized matrices.
        let quantized = device_bytes(&gguf, Weights::Quantized);
        assert!(device_bytes(&gguf, Weights::F32) > quantized, "{quantized}");
    }
}
