//! Batched forward passes on the real models: sequences of ragged lengths
//! that join (with their prompt's prefill) beside others' decode steps and
//! leave when done get logits bit-identical to each sequence run alone, on
//! the formats of three roster models (Q4_1; Q4_K_M files: Q4_K, Q6_K and
//! what else they mix), at batch sizes 1, 2, 5 and 16, on this CPU's kernel
//! path (`NSED_KERNEL` picks another; the tiny-model unit tests cover Q8_0).

use crate::common;

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

mod engine {
    //! The scheduler on a real model: generations submitted together (from
    //! one thread with `run_all`, or from many threads through an engine)
    //! produce exactly what each produces alone, a bad request fails alone,
    //! and a request that can never fit the KV budget is refused with a
    //! message while the others go on.

    use nsed::engine::batch::{run_all, BatchError, Engine, Limits, Work};
    use nsed::engine::generate::{generate, GenerateRequest, Generation};
    use nsed::engine::runtime::Runtime;
    use nsed::engine::sampling::SamplingParams;

    /// A prompt's token ids and what to generate from it.
    type Request = (Vec<u32>, GenerateRequest);

    fn requests(rt: &Runtime) -> Vec<Request> {
        let questions = [
            "What is 17 times 3?",
            "Name a prime number larger than 50.",
            "Write one sentence about the sea.",
            "How many legs does a spider have?",
            "Continue: 1, 1, 2, 3, 5,",
            "What is the capital of France?",
        ];
        questions
            .iter()
            .enumerate()
            .map(|(i, q)| {
                let ids = rt.tokenizer.encode(q, true, false);
                let sampling = if i % 2 == 0 {
                    SamplingParams::default()
                } else {
                    SamplingParams {
                        temperature: 0.8,
                        top_p: 0.95,
                        ..SamplingParams::default()
                    }
                };
                let req = GenerateRequest {
                    sampling,
                    max_tokens: 6 + 5 * i,
                    seed: 7,
                    inference_id: format!("req-{i}"),
                    top_logprobs: 3,
                    hash_logits: true,
                    ignore_eos: i == 1,
                    ..GenerateRequest::default()
                };
                (ids, req)
            })
            .collect()
    }

    /// What a result is, without its timings.
    fn essence(g: &Generation) -> (Vec<u32>, String, String, Option<String>, Vec<u32>) {
        let logprobs: Vec<u32> = g
            .tokens
            .iter()
            .flat_map(|t| {
                std::iter::once(t.logprob.to_bits())
                    .chain(t.top_logprobs.iter().map(|a| a.logprob.to_bits()))
            })
            .collect();
        (
            g.output_ids(),
            g.text.clone(),
            format!("{:?}", g.finish_reason),
            g.logits_sha256.clone(),
            logprobs,
        )
    }

    /// smollm2, the requests, and what each generates alone.
    fn load() -> (Runtime, Vec<Request>, Vec<Generation>) {
        super::common::registry_model_path("smollm2-135m");
        let mut rt = Runtime::load("smollm2-135m").expect("model loads");
        let reqs = requests(&rt);
        let alone = reqs
            .iter()
            .map(|(ids, req)| generate(&mut rt, ids, req, |_, _| {}).expect("alone"))
            .collect();
        (rt, reqs, alone)
    }

    #[test]
    fn batched_generations_equal_each_generation_alone() {
        let (mut rt, reqs, alone) = load();
        // Negative control: another seed changes a sampled request.
        let (ids, req) = &reqs[1];
        let reseeded = GenerateRequest {
            seed: 8,
            ..req.clone()
        };
        let other = generate(&mut rt, ids, &reseeded, |_, _| {}).expect("reseeded");
        assert_ne!(essence(&other), essence(&alone[1]), "the seed is not used");

        // At most 4 per pass, so later requests join as earlier ones leave.
        let limits = Limits {
            max_batch: 4,
            ..Limits::default()
        };
        let works = reqs
            .iter()
            .map(|(ids, req)| Work::generate(&rt, ids, req))
            .collect();
        let batched = run_all(&mut rt, works, limits);
        for (i, (a, b)) in alone.iter().zip(batched).enumerate() {
            let b = b.and_then(|d| d.generation()).expect("batched");
            assert_eq!(essence(a), essence(&b), "request {i}");
        }
    }

    #[test]
    fn an_engine_serves_many_threads_and_bad_requests_fail_alone() {
        let (rt, reqs, alone) = load();
        let vocab = rt.model.config.vocab_size as u32;
        let ctx = rt.model.max_positions();
        // 64 positions of KV cache for smollm2 (30 layers, 3 KV heads of 64).
        let position_bytes = 30 * 2 * 3 * 64 * 4;
        let limits = Limits {
            max_batch: 3,
            kv_budget_bytes: 200 * position_bytes,
            ..Limits::default()
        };
        let engine = Engine::spawn(rt, limits).expect("engine");
        std::thread::scope(|s| {
            let handles: Vec<_> = reqs
                .iter()
                .map(|(ids, req)| {
                    let engine = engine.clone();
                    s.spawn(move || engine.generate(ids.clone(), req.clone()))
                })
                .collect();
            // Bad requests in flight with the good ones.
            let unknown_token = engine.submit_generate(vec![1, vocab + 5, 2], reqs[0].1.clone());
            let too_long = engine.submit_generate(vec![1; ctx + 1], reqs[0].1.clone());
            let over_budget = engine.submit_generate(
                reqs[0].0.clone(),
                GenerateRequest {
                    max_tokens: 500,
                    ..reqs[0].1.clone()
                },
            );
            let err = unknown_token
                .wait()
                .expect_err("a token outside the vocabulary");
            assert!(
                err.to_string().contains("outside the embedding table"),
                "{err}"
            );
            let err = too_long.wait().expect_err("a prompt past the context");
            assert!(err.to_string().contains("shorten the prompt"), "{err}");
            match over_budget.wait() {
                Err(BatchError::OverBudget { positions, .. }) => {
                    assert_eq!(positions, reqs[0].0.len() + 500)
                }
                other => panic!("expected over budget, got {other:?}"),
            }
            for (i, h) in handles.into_iter().enumerate() {
                let g = h.join().expect("thread").expect("generation");
                assert_eq!(essence(&alone[i]), essence(&g), "request {i}");
            }
        });
        let t = engine.tally();
        assert!(t.rows > t.steps, "requests shared passes: {t:?}");
        assert!(t.rows <= 3 * t.steps, "max_batch 3 held: {t:?}");
    }
}
