//! Criterion benches of the hot kernels, so regressions show: the packed
//! quantized matmul at m = 1 (decode), 2-16 (batched decode) and 128 (prefill) for every format
//! the roster uses, on the shapes of qwen2.5-coder-0.5b's MLP (896 → 4864);
//! one attention row over 128 and 1024 cached positions; and sampling from a
//! 151,936-entry vocabulary (greedy, and seed-bound top-p).
//!
//! `cargo bench --bench kernels` (RAYON_NUM_THREADS=2 for the machine's setup).

#![allow(
    missing_docs,
    reason = "a bench binary exports nothing; criterion's macros write an undocumented pub fn"
)]

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use nsed::engine::qmm::{matmul, Format, PackedMatrix};
use nsed::engine::sampling::{argmax, sample, SamplingParams, Sha256CounterRng};
use nsed::testing::pseudo_random as values;

fn packed(dtype: GgmlDType, n: usize, k: usize) -> PackedMatrix {
    let w = Tensor::from_vec(values(n * k, 3), (n, k), &Device::Cpu).expect("tensor");
    let q = QTensor::quantize(&w, dtype).expect("quantize");
    let format = Format::from_ggml(dtype).expect("a packed format");
    PackedMatrix::pack(format, n, k, &q.data().expect("data")).expect("pack")
}

fn qmatmul(c: &mut Criterion) {
    let (n, k) = (4864, 896);
    for dtype in [
        GgmlDType::Q4_0,
        GgmlDType::Q4_1,
        GgmlDType::Q5_0,
        GgmlDType::Q8_0,
        GgmlDType::Q2K,
        GgmlDType::Q3K,
        GgmlDType::Q4K,
        GgmlDType::Q5K,
        GgmlDType::Q6K,
    ] {
        // K-quants need rows of 256: use the 1.5B model's 1536 columns.
        let k = if dtype.block_size() == 256 { 1536 } else { k };
        let w = packed(dtype, n, k);
        let mut group = c.benchmark_group(format!("qmm/{dtype:?}/{n}x{k}"));
        group.sample_size(20);
        for m in [1, 2, 4, 8, 16, 128] {
            let x = values(m * k, 7);
            group.throughput(Throughput::Elements((m * n * k) as u64));
            group.bench_with_input(BenchmarkId::from_parameter(format!("m={m}")), &x, |b, x| {
                b.iter(|| matmul(&w, x).expect("matmul"))
            });
        }
        group.finish();
    }
}

fn attention(c: &mut Criterion) {
    let d = 64;
    let mut group = c.benchmark_group("attention_row/head_dim=64");
    for len in [128usize, 1024] {
        let (q, k, v) = (values(d, 1), values(len * d, 2), values(len * d, 3));
        let mut out = vec![0f32; d];
        group.bench_function(BenchmarkId::from_parameter(format!("keys={len}")), |b| {
            b.iter(|| nsed::engine::model::attend_row(&q, &k, &v, 0..len, 0.125, d, &mut out))
        });
    }
    group.finish();
}

fn sampling(c: &mut Criterion) {
    // Peaked like a model's logits: a few thousand tokens within reach of the top.
    let logits: Vec<f32> = values(151_936, 11).iter().map(|v| v * 40.0).collect();
    let mut group = c.benchmark_group("sampling/vocab=151936");
    group.bench_function("greedy", |b| b.iter(|| argmax(&logits)));
    let params = SamplingParams {
        temperature: 0.8,
        top_p: 0.95,
        ..Default::default()
    };
    let mut rng = Sha256CounterRng::new("bench");
    group.bench_function("seed-bound top-p 0.95", |b| {
        b.iter(|| sample(&logits, &params, &mut rng))
    });
    group.finish();
}

criterion_group!(benches, qmatmul, attention, sampling);
criterion_main!(benches);
