//! Batched forward passes on the real models: sequences of ragged lengths
//! that join (with their prompt's prefill) beside others' decode steps and
//! leave when done get logits bit-identical to each sequence run alone, on
//! the formats of three roster models (Q4_1; Q4_K_M files: Q4_K, Q6_K and
//! what else they mix), at batch sizes 1, 2, 5 and 16, on this CPU's kernel
//! path (`NSED_KERNEL` picks another; the tiny-model unit tests cover Q8_0).

mod common;

use nsed::engine::model::{Logits, Model, Sequence, Step};

const DECODE_STEPS: usize = 4;

/// Real-looking prompts: distinct token ids, lengths 3 to 40.
fn prompts(b: usize, vocab: u32) -> Vec<Vec<u32>> {
    (0..b)
        .map(|j| {
            let len = 3 + (j * 13) % 38;
            (0..len)
                .map(|t| ((t as u32 * 7919 + j as u32 * 104_729) % (vocab - 1000)) + 500)
                .collect()
        })
        .collect()
}

/// The token decoded at step `k` of sequence `j` (fixed, so the batched run
/// sees exactly the inputs of the run alone).
fn decode_token(j: usize, k: usize) -> u32 {
    (1000 + j * 37 + k * 11) as u32
}

fn rows(t: &candle_core::Tensor) -> Vec<Vec<f32>> {
    t.to_vec2::<f32>().expect("2-D logits")
}

fn alone(m: &mut Model, j: usize, prompt: &[u32]) -> Vec<Vec<f32>> {
    let mut seq = Sequence::new();
    let mut out = Vec::new();
    let mut run = |tokens: &[u32], want| {
        let got = m
            .forward_batch(&mut [Step {
                seq: &mut seq,
                tokens,
                want,
            }])
            .expect("alone");
        out.extend(rows(&got[0].0));
    };
    run(prompt, Logits::Last);
    for k in 0..DECODE_STEPS {
        run(&[decode_token(j, k)], Logits::Last);
    }
    out
}

/// Sequence j joins at step j % 4; each step is one forward over every
/// active sequence (prefills and decodes mixed).
fn batched(m: &mut Model, prompts: &[Vec<u32>]) -> Vec<Vec<Vec<f32>>> {
    let b = prompts.len();
    let mut seqs: Vec<Sequence> = (0..b).map(|_| Sequence::new()).collect();
    let mut outs = vec![Vec::new(); b];
    let mut done = vec![0usize; b];
    let decode: Vec<Vec<u32>> = (0..b)
        .map(|j| (0..DECODE_STEPS).map(|k| decode_token(j, k)).collect())
        .collect();
    let mut t = 0;
    while done.iter().any(|&k| k <= DECODE_STEPS) {
        let mut active = Vec::new();
        let mut steps = Vec::new();
        for (j, seq) in seqs.iter_mut().enumerate() {
            if j % 4 > t || done[j] > DECODE_STEPS {
                continue;
            }
            let tokens = match done[j] {
                0 => &prompts[j][..],
                k => &decode[j][k - 1..k],
            };
            active.push(j);
            steps.push(Step {
                seq,
                tokens,
                want: Logits::Last,
            });
        }
        if !steps.is_empty() {
            let out = m.forward_batch(&mut steps).expect("batched");
            for (&j, (logits, _)) in active.iter().zip(&out) {
                outs[j].extend(rows(logits));
                done[j] += 1;
            }
        }
        t += 1;
    }
    outs
}

#[test]
fn batched_logits_are_bit_identical_to_each_sequence_alone() {
    for id in ["smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b"] {
        let gguf = common::open_registry_gguf(id);
        let mut m = Model::from_gguf(&gguf).expect("load");
        let vocab = m.config.vocab_size as u32;
        let all = prompts(16, vocab);
        let single: Vec<_> = all
            .iter()
            .enumerate()
            .map(|(j, p)| alone(&mut m, j, p))
            .collect();
        for b in [1, 2, 5, 16] {
            let got = batched(&mut m, &all[..b]);
            for j in 0..b {
                assert_eq!(got[j].len(), 1 + DECODE_STEPS);
                assert!(
                    got[j] == single[j],
                    "{id}: B={b}, sequence {j} differs from its run alone"
                );
            }
        }
        // Negative control: different sequences do give different logits.
        assert_ne!(single[0][1], single[1][1], "{id}");
    }
}
