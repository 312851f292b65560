//! Property tests over the parsers hostile input reaches first — artifacts,
//! GGUF headers and tokenizer input — run by `cargo test` in CI (a bounded
//! number of cases, seconds in all; `scripts/fuzz.sh` is the long,
//! coverage-guided run). Each property: any input gives a value or an error,
//! never a panic or a hang, and what parses behaves.

use crate::common;

use std::sync::OnceLock;

use nsed::engine::gguf::Gguf;
use nsed::engine::model::Arch;
use nsed::engine::tokenizer::Tokenizer;
use nsed::testing::{write_tiny_model, TinySpec};
use nsed::verify::artifact::Artifact;
use nsed::verify::{against, Options};
use proptest::prelude::*;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Gonka's honest executor response: a real artifact to mutate.
fn seed_artifact() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        std::fs::read(common::test_data().join("gonka/inference_response.json"))
            .expect("Gonka fixture")
    })
}

/// A tiny GGUF model (tokenizer and weights), as bytes.
fn seed_gguf() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tiny.gguf");
        write_tiny_model(&path, &TinySpec::new(Arch::Qwen2)).expect("tiny model");
        std::fs::read(&path).expect("read back")
    })
}

/// Overwrite, cut or splice `bytes` as `edits` say (offsets wrap).
fn mutate(bytes: &[u8], edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for &(at, byte, kind) in edits {
        if out.is_empty() {
            break;
        }
        let at = at % out.len();
        match kind % 4 {
            0 | 1 => out[at] = byte,
            2 => out.truncate(at),
            _ => out.insert(at, byte),
        }
    }
    out
}

fn check_artifact_bytes(bytes: &[u8]) {
    let Ok(artifact) = Artifact::from_reader(bytes) else {
        return;
    };
    assert!(
        !artifact.positions.is_empty(),
        "an empty artifact was accepted"
    );
    let _ = against(&artifact, &artifact, ("a", "a"), &Options::default());
    let mut shorter = artifact.clone();
    shorter.positions.pop();
    let _ = against(&artifact, &shorter, ("a", "b"), &Options::default());
    // What we write, we read back the same.
    let again = Artifact::from_reader(artifact.to_json().as_bytes());
    if artifact.format == nsed::verify::artifact::Format::Nsed {
        assert_eq!(again.ok().as_ref(), Some(&artifact));
    }
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn mutated_artifacts_parse_or_fail_cleanly(
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..8)
    ) {
        check_artifact_bytes(&mutate(seed_artifact(), &edits));
    }

    #[test]
    fn arbitrary_bytes_are_not_artifacts(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_artifact_bytes(&bytes);
    }
}

proptest! {
    #![proptest_config(config(150))]

    /// Edits inside the header (metadata and tensor table), where counts
    /// and lengths live: the parser must refuse what does not add up
    /// rather than allocate or read past the file.
    #[test]
    fn mutated_gguf_headers_parse_or_fail_cleanly(
        edits in prop::collection::vec((0usize..4096, any::<u8>(), 0u8..2), 1..6)
    ) {
        let bytes = mutate(seed_gguf(), &edits);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.gguf");
        std::fs::write(&path, &bytes).expect("write");
        if let Ok(gguf) = Gguf::open(&path) {
            if let Ok(tok) = Tokenizer::from_gguf(&gguf) {
                let ids = tok.encode("hello world", true, true);
                let _ = tok.decode(&ids);
            }
        }
    }
}

/// Tiny mixture-of-experts models (Qwen3-MoE, GPT-OSS with MXFP4 experts), as files.
fn moe_models() -> &'static [(tempfile::TempDir, std::path::PathBuf)] {
    static MODELS: OnceLock<Vec<(tempfile::TempDir, std::path::PathBuf)>> = OnceLock::new();
    MODELS.get_or_init(|| {
        [Arch::Qwen3Moe, Arch::GptOss]
            .into_iter()
            .map(|arch| {
                let dir = tempfile::tempdir().expect("tempdir");
                let path = dir.path().join("moe.gguf");
                write_tiny_model(&path, &TinySpec::new(arch)).expect("tiny model");
                (dir, path)
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(config(60))]

    /// A corrupt expert header (no experts, more used than there are,
    /// counts that disagree with the tensors) is an error, never a panic;
    /// a consistent one loads and runs.
    #[test]
    fn corrupt_expert_headers_load_or_fail_cleanly(
        which in 0usize..2,
        count in 0u32..10,
        used in 0u32..12,
        n_ff in 0u32..200,
    ) {
        use nsed::engine::gguf::Value;
        use nsed::engine::model::{Logits, Model};
        let (_, path) = &moe_models()[which];
        let mut gguf = Gguf::open(path).expect("parse");
        let arch = gguf.architecture().expect("arch").to_string();
        for (key, v) in [("expert_count", count), ("expert_used_count", used), ("expert_feed_forward_length", n_ff)] {
            gguf.metadata.insert(format!("{arch}.{key}"), Value::U32(v));
        }
        let consistent = count == 4 && (1..=4).contains(&used) && n_ff > 0;
        match Model::from_gguf(&gguf) {
            Ok(mut m) => {
                prop_assert!(consistent, "{count} experts, {used} used loaded");
                let logits = m.forward(&[1, 2, 3], Logits::Last).expect("forward");
                prop_assert!(logits.flatten_all().expect("flat").to_vec1::<f32>().expect("vec").iter().all(|x| x.is_finite()));
            }
            Err(e) => prop_assert!(!consistent, "a consistent header failed: {e}"),
        }
    }
}

/// The roster's tokenizers (byte-level BPE with both pre-tokenizers, and
/// SentencePiece with byte fallback), loaded once.
fn tokenizers() -> &'static [(&'static str, Tokenizer)] {
    static TOKENIZERS: OnceLock<Vec<(&'static str, Tokenizer)>> = OnceLock::new();
    TOKENIZERS.get_or_init(|| {
        ["smollm2-135m", "qwen2.5-coder-0.5b", "gemma3-270m"]
            .into_iter()
            .map(|id| {
                let gguf = common::open_registry_gguf(id);
                (id, Tokenizer::from_gguf(&gguf).expect("tokenizer"))
            })
            .collect()
    })
}

/// Text that stresses the pre-tokenizers: any Unicode, special-token
/// strings, long runs of one class, mixed whitespace.
fn hostile_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "\\PC{0,12}",
        Just("<|im_start|>".to_string()),
        Just("<|endoftext|>".to_string()),
        Just("<start_of_turn>".to_string()),
        "[ \t\r\n]{1,40}",
        "[a-zA-Z]{100,400}",
        "[0-9]{1,60}",
        "[\\u{80}-\\u{10FFFF}]{1,8}",
        "'[sStTdD]{1,3}",
    ];
    prop::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
}

/// Whether byte-level BPE can spell `text`: every byte's character is in
/// the vocabulary (SmolLM2 lacks some, e.g. the one for 0xF1, which only
/// code points from U+40000 on use; llama.cpp drops such bytes too).
fn spellable(tok: &Tokenizer, text: &str) -> bool {
    let chars = nsed::engine::tokenizer::gpt2_byte_chars();
    text.bytes()
        .all(|b| tok.token_id(&chars[b as usize].to_string()).is_some())
}

proptest! {
    #![proptest_config(config(200))]

    #[test]
    fn any_text_round_trips_through_every_tokenizer(text in hostile_text()) {
        for (id, tok) in tokenizers() {
            // Gemma's SentencePiece falls back to byte tokens: it spells all.
            let must_round_trip = *id == "gemma3-270m" || spellable(tok, &text);
            for parse_special in [false, true] {
                let ids = tok.encode(&text, false, parse_special);
                let back = tok.decode(&ids).expect("own ids decode");
                if must_round_trip {
                    prop_assert_eq!(&back, &text, "{} (special {})", id, parse_special);
                }
            }
        }
    }
}
