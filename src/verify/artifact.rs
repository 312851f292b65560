//! Inference artifacts: what an executor publishes so a validator can check
//! it. Owns the versioned nsed schema (`nsed.artifact/v1`, documented in
//! `docs/artifact.md`), reading OpenAI/vLLM `chat.completion` JSON with
//! `logprobs`, the input checks every artifact must pass, and mapping token
//! strings to ids through a model's vocabulary.
//!
//! Reading streams from the file (never the whole text in memory) and stops
//! at fixed limits, so a hostile artifact costs bounded memory.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::chat::Message;
use crate::engine::digest::hex;
use crate::engine::generate::{GenerateRequest, Generation};
use crate::engine::runtime::{Runtime, RuntimeError};
use crate::engine::sampling::SamplingParams;
use crate::engine::tokenizer::{TokenType, Tokenizer};

/// The schema tag of the artifacts nsed writes.
pub const SCHEMA: &str = "nsed.artifact/v1";
/// More output positions than any supported model's context.
pub const MAX_POSITIONS: usize = 65_536;
/// OpenAI's own cap on `top_logprobs`.
pub const MAX_TOP_LOGPROBS: usize = 20;
/// Prompt ids, like positions, cannot exceed a context.
const MAX_PROMPT_IDS: usize = 131_072;
/// A logprob above zero by more than rounding is not a log-probability.
const POSITIVE_TOLERANCE: f64 = 1e-6;

/// Why an artifact or request file cannot be read: I/O, bad JSON, or a broken invariant.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The artifact or request file cannot be opened or read.
    #[error("cannot read artifact {path}: {source}")]
    Io {
        /// The file's path.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The file is not JSON, or not JSON of an artifact's (or request's) shape.
    #[error("artifact {path} is not valid JSON for an artifact: {detail}")]
    Json {
        /// The file's path.
        path: PathBuf,
        /// The parser's message, with a hint when the cause is known.
        detail: String,
    },
    /// The JSON parses but is unusable: an unknown schema, a broken invariant, a bad request.
    #[error("artifact {path}: {detail}")]
    Invalid {
        /// The file's path.
        path: PathBuf,
        /// Which invariant is broken, and where.
        detail: String,
    },
}

/// Where an artifact came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// `nsed.artifact/v1`, written by `nsed generate --artifact`.
    Nsed,
    /// An OpenAI/vLLM `chat.completion` with `logprobs`.
    OpenAi,
}

/// The model an artifact claims.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelClaim {
    /// The registry id or file stem of the model (OpenAI JSON: its `model` name).
    pub id: String,
    /// sha256 of the GGUF file (hex); empty when unknown (OpenAI JSON).
    #[serde(default)]
    pub sha256: String,
    /// The GGUF's `general.architecture` (e.g. `llama`); empty when unknown.
    #[serde(default)]
    pub arch: String,
}

/// The request that produced the output: enough to re-tokenize the prompt
/// and to re-derive every sampled token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// The conversation rendered with the model's chat template (empty when `raw_prompt`).
    #[serde(default)]
    pub messages: Vec<Message>,
    /// A prompt fed as plain text, without a template.
    #[serde(default)]
    pub raw_prompt: Option<String>,
    /// Temperature, top-k/top-p/min-p and repeat-penalty settings.
    #[serde(default)]
    pub sampling: SamplingParams,
    /// The user's seed; with `inference_id` it fixes every sampled token.
    #[serde(default)]
    pub seed: u64,
    /// Keys the sampling RNG together with `seed`; empty when not given.
    #[serde(default)]
    pub inference_id: String,
    /// Most output tokens to generate (default 256).
    #[serde(default = "default_max_tokens")]
    pub max_tokens: usize,
    /// Stop strings: generation ends when the text contains one.
    #[serde(default)]
    pub stop: Vec<String>,
    /// How many alternatives per position the executor recorded (0: none).
    #[serde(default)]
    pub top_logprobs: usize,
    /// The chat template's own switches the prompt was rendered with
    /// (`enable_thinking` from `--reasoning`); absent: the template's defaults.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub template_kwargs: std::collections::BTreeMap<String, serde_json::Value>,
}

impl Request {
    /// The generation settings this request stands for.
    pub fn to_generate(&self, top_logprobs: usize, capture_hidden: bool) -> GenerateRequest {
        GenerateRequest {
            sampling: self.sampling.clone(),
            max_tokens: self.max_tokens.max(1),
            stop: self.stop.clone(),
            seed: self.seed,
            inference_id: self.inference_id.clone(),
            top_logprobs,
            capture_hidden,
            ..Default::default()
        }
    }

    /// Read a request file: nsed's own request JSON, or an OpenAI chat
    /// request (`messages`, `temperature`, `top_p`, `seed`, `max_tokens`, ...).
    pub fn read(path: &Path) -> Result<Self, ArtifactError> {
        let invalid = |detail: String| ArtifactError::Invalid {
            path: path.to_path_buf(),
            detail,
        };
        let text = std::fs::read_to_string(path).map_err(|source| ArtifactError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| ArtifactError::Json {
                path: path.to_path_buf(),
                detail: json_detail(&e),
            })?;
        if v.get("sampling").is_some() {
            return serde_json::from_value(v).map_err(|e| invalid(e.to_string()));
        }
        let o: OpenAiRequest = serde_json::from_value(v).map_err(|e| invalid(e.to_string()))?;
        Ok(Self {
            messages: o.messages,
            raw_prompt: None,
            sampling: SamplingParams {
                temperature: o.temperature.unwrap_or(1.0),
                top_k: o.top_k.unwrap_or(0),
                top_p: o.top_p.unwrap_or(1.0),
                min_p: o.min_p.unwrap_or(0.0),
                repeat_penalty: o.repetition_penalty.unwrap_or(1.0),
                ..Default::default()
            },
            seed: o.seed.unwrap_or(0),
            inference_id: o.inference_id.unwrap_or_default(),
            max_tokens: o.max_tokens.unwrap_or(256),
            stop: o.stop.unwrap_or_default(),
            top_logprobs: o.top_logprobs.unwrap_or(0),
            template_kwargs: o.chat_template_kwargs.unwrap_or_default(),
        })
    }
}

#[derive(Deserialize)]
struct OpenAiRequest {
    messages: Vec<Message>,
    temperature: Option<f64>,
    top_k: Option<usize>,
    top_p: Option<f64>,
    min_p: Option<f64>,
    repetition_penalty: Option<f32>,
    seed: Option<u64>,
    inference_id: Option<String>,
    #[serde(alias = "max_completion_tokens")]
    max_tokens: Option<usize>,
    stop: Option<Vec<String>>,
    top_logprobs: Option<usize>,
    /// vLLM's and SGLang's extension: the chat template's own switches.
    chat_template_kwargs: Option<std::collections::BTreeMap<String, serde_json::Value>>,
}

fn default_max_tokens() -> usize {
    256
}

/// One alternative of a position's top-k.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alt {
    /// Token id; absent in OpenAI JSON until mapped through a vocabulary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
    /// Text of the alternative token.
    pub token: String,
    /// Raw bytes of the token (OpenAI's `bytes`), when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<Vec<u8>>,
    /// Natural-log probability of this alternative (<= 0).
    pub logprob: f64,
}

/// One output position: the chosen token and the top-k alternatives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// Id of the chosen token; absent in OpenAI JSON until mapped through a vocabulary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
    /// Text of the chosen token.
    pub token: String,
    /// Raw bytes of the chosen token (OpenAI's `bytes`), when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<Vec<u8>>,
    /// Natural-log probability of the chosen token (<= 0).
    pub logprob: f64,
    /// The top-k alternatives at this position (at most [`MAX_TOP_LOGPROBS`]).
    #[serde(default, deserialize_with = "bounded::<_, MAX_TOP_LOGPROBS, _>")]
    pub top_logprobs: Vec<Alt>,
}

/// Digests of the output, so two artifacts compare without re-reading text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputDigest {
    /// The output text.
    pub text: String,
    /// sha256 of the UTF-8 output text.
    pub text_sha256: String,
    /// sha256 of the output ids as little-endian u32s.
    pub ids_sha256: String,
    /// Why generation ended (`eos`, `stop`, `length`, `context`); empty when unknown.
    #[serde(default)]
    pub finish_reason: String,
}

/// A TOPLOC-style activation proof (see `verify::toploc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivationProof {
    /// The proof scheme ([`toploc::SCHEME`](crate::verify::toploc::SCHEME)).
    pub scheme: String,
    /// Decode positions per chunk.
    pub chunk: usize,
    /// Entries kept per chunk.
    pub topk: usize,
    /// One hex-encoded proof per chunk.
    pub chunks: Vec<String>,
}

/// An artifact in memory, whatever format it was read from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    /// The schema tag; always [`SCHEMA`] once read.
    pub schema: String,
    /// The format the artifact was read from.
    pub format: Format,
    /// Version of the nsed that wrote the artifact; empty for OpenAI JSON.
    pub nsed_version: String,
    /// Where the logits came from: the CPU's architecture and kernel path
    /// (`x86_64-avx2`; every CPU path computes the same bits) or the GPU
    /// (`cuda:0 NVIDIA H200 sm_90`). Provenance, not a condition of replay.
    pub isa: String,
    /// The model the executor claims to have run.
    pub model: ModelClaim,
    /// The request that produced the output, when the document carries it.
    pub request: Option<Request>,
    /// The prompt's token ids as the executor fed them, when the document carries them.
    pub prompt_ids: Option<Vec<u32>>,
    /// Digests of the output; `None` when the document carries no output text.
    pub output: Option<OutputDigest>,
    /// The output positions in order (at least one, each with the same top-k width).
    pub positions: Vec<Position>,
    /// TOPLOC-style activation proofs; `None` when not requested and always for OpenAI JSON.
    pub proof: Option<ActivationProof>,
}

impl Artifact {
    /// Read, detect the format, and check the invariants every artifact must hold.
    pub fn read(path: &Path) -> Result<Self, ArtifactError> {
        let file = std::fs::File::open(path).map_err(|source| ArtifactError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let artifact = Self::from_reader(std::io::BufReader::new(file)).map_err(|e| match e {
            ReadError::Json(detail) => ArtifactError::Json {
                path: path.to_path_buf(),
                detail,
            },
            ReadError::Invalid(detail) => ArtifactError::Invalid {
                path: path.to_path_buf(),
                detail,
            },
        })?;
        Ok(artifact)
    }

    /// Parse from any reader (streamed; bounded by the limits above).
    pub fn from_reader(reader: impl Read) -> Result<Self, ReadError> {
        let raw: RawDoc =
            serde_json::from_reader(reader).map_err(|e| ReadError::Json(json_detail(&e)))?;
        let artifact = raw.into_artifact()?;
        artifact.check().map_err(ReadError::Invalid)?;
        Ok(artifact)
    }

    /// The artifact of a finished generation. `proof` adds TOPLOC-style
    /// activation proofs (the generation must have captured hidden states).
    pub fn from_generation(
        rt: &Runtime,
        request: Request,
        gen: &Generation,
        proof: bool,
    ) -> Result<Self, RuntimeError> {
        let ids = gen.output_ids();
        let positions = gen
            .tokens
            .iter()
            .map(|t| Position {
                id: Some(t.id),
                token: t.token.clone(),
                bytes: None,
                logprob: t.logprob as f64,
                top_logprobs: t
                    .top_logprobs
                    .iter()
                    .map(|a| Alt {
                        id: Some(a.id),
                        token: a.token.clone(),
                        bytes: None,
                        logprob: a.logprob as f64,
                    })
                    .collect(),
            })
            .collect();
        let proof = match (&gen.hidden, proof) {
            (Some(hidden), true) => Some(ActivationProof {
                scheme: crate::verify::toploc::SCHEME.into(),
                chunk: crate::verify::toploc::CHUNK,
                topk: crate::verify::toploc::TOPK,
                chunks: crate::verify::toploc::prove(hidden)
                    .iter()
                    .map(|p| hex(&p.to_bytes()))
                    .collect(),
            }),
            _ => None,
        };
        Ok(Self {
            schema: SCHEMA.into(),
            format: Format::Nsed,
            nsed_version: env!("CARGO_PKG_VERSION").into(),
            isa: rt.model.origin().to_string(),
            model: ModelClaim {
                id: rt.id(),
                sha256: rt.sha256()?,
                arch: rt.gguf.architecture().unwrap_or_default().to_string(),
            },
            request: Some(request),
            prompt_ids: Some(gen.prompt_ids.clone()),
            output: Some(OutputDigest {
                text: gen.text.clone(),
                text_sha256: text_sha256(&gen.text),
                ids_sha256: ids_sha256(&ids),
                finish_reason: serde_json::to_value(gen.finish_reason)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
            }),
            positions,
            proof,
        })
    }

    /// The per-position token ids, if every position has one.
    pub fn output_ids(&self) -> Option<Vec<u32>> {
        self.positions.iter().map(|p| p.id).collect()
    }

    /// k: the top-k width (the same at every position, by `Artifact::check`).
    pub fn k(&self) -> usize {
        self.positions.first().map_or(0, |p| p.top_logprobs.len())
    }

    /// The artifact as pretty-printed `nsed.artifact/v1` JSON, whatever format it was read from.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&NsedDoc::from(self)).unwrap_or_default()
    }

    /// The invariants of any artifact: finite non-positive logprobs, one k
    /// for all positions, no duplicate alternatives, at least one position.
    fn check(&self) -> Result<(), String> {
        if self.positions.is_empty() {
            return Err("the output is empty: there is nothing to verify".into());
        }
        let k = self.k();
        for (i, p) in self.positions.iter().enumerate() {
            check_logprob(p.logprob, &format!("position {i}"))?;
            check_bytes(&p.token, p.bytes.as_deref(), i)?;
            for alt in &p.top_logprobs {
                check_bytes(&alt.token, alt.bytes.as_deref(), i)?;
            }
            if p.top_logprobs.len() != k {
                return Err(format!(
                    "position {i} has {} top logprobs but position 0 has {k}: k must be the same everywhere",
                    p.top_logprobs.len()
                ));
            }
            let mut seen = std::collections::HashSet::new();
            for (j, alt) in p.top_logprobs.iter().enumerate() {
                check_logprob(alt.logprob, &format!("position {i}, alternative {j}"))?;
                let key = (alt.id, alt.token.as_str(), alt.bytes.as_deref());
                if !seen.insert(key) {
                    return Err(format!(
                        "position {i} lists token {:?} twice in its top logprobs",
                        alt.token
                    ));
                }
            }
        }
        if let Some(proof) = &self.proof {
            check_proof_shape(proof, self.positions.len())?;
        }
        if let (Some(out), Some(ids)) = (&self.output, self.output_ids()) {
            if out.ids_sha256 != ids_sha256(&ids) {
                return Err("output.ids_sha256 does not match the positions' ids".into());
            }
            if out.text_sha256 != text_sha256(&out.text) {
                return Err("output.text_sha256 does not match output.text".into());
            }
        }
        Ok(())
    }

    /// Give every position and alternative its id in `tok`'s vocabulary,
    /// checking ids that are present and mapping token strings that are not.
    pub fn resolve_ids(&mut self, tok: &Tokenizer) -> Result<(), String> {
        let vocab = VocabIndex::new(tok);
        for (i, p) in self.positions.iter_mut().enumerate() {
            p.id = Some(vocab.resolve(tok, p.id, &p.token, p.bytes.as_deref(), i)?);
            for alt in &mut p.top_logprobs {
                alt.id = Some(vocab.resolve(tok, alt.id, &alt.token, alt.bytes.as_deref(), i)?);
            }
        }
        if let Some(ids) = &self.prompt_ids {
            if let Some(&bad) = ids.iter().find(|&&t| t as usize >= tok.vocab_size()) {
                return Err(format!(
                    "prompt id {bad} is outside the vocabulary ({} tokens)",
                    tok.vocab_size()
                ));
            }
        }
        Ok(())
    }
}

fn check_logprob(v: f64, at: &str) -> Result<(), String> {
    if !v.is_finite() {
        return Err(format!("{at}: logprob {v} is not finite"));
    }
    if v > POSITIVE_TOLERANCE {
        return Err(format!(
            "{at}: logprob {v} is positive (a log-probability is <= 0)"
        ));
    }
    Ok(())
}

/// sha256 (hex) of ids as little-endian u32s.
pub fn ids_sha256(ids: &[u32]) -> String {
    let mut h = Sha256::new();
    for id in ids {
        h.update(id.to_le_bytes());
    }
    hex(&h.finalize())
}

/// sha256 (hex) of the UTF-8 bytes of `text`.
pub fn text_sha256(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

/// A parse failure: JSON syntax, or an invariant broken.
#[derive(Debug)]
pub enum ReadError {
    /// The text is not JSON, or not JSON of an artifact's shape (the parser's message).
    Json(String),
    /// The document parsed, but breaks an artifact invariant (the text says which).
    Invalid(String),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Json(d) | Self::Invalid(d) => f.write_str(d),
        }
    }
}

fn json_detail(e: &serde_json::Error) -> String {
    let hint = match e.classify() {
        serde_json::error::Category::Eof => " (the file is truncated)",
        serde_json::error::Category::Syntax => {
            " (JSON has no NaN or Infinity: logprobs must be finite numbers)"
        }
        _ => "",
    };
    format!("{e}{hint}")
}

// ---------------------------------------------------------------------------
// Reading: one permissive document type covering both formats.

#[derive(Deserialize)]
struct RawDoc {
    schema: Option<String>,
    object: Option<String>,
    nsed_version: Option<String>,
    isa: Option<String>,
    model: Option<RawModel>,
    request: Option<Request>,
    #[serde(default, deserialize_with = "bounded_opt::<_, MAX_PROMPT_IDS, _>")]
    prompt_ids: Option<Vec<u32>>,
    output: Option<OutputDigest>,
    #[serde(default, deserialize_with = "bounded_opt::<_, MAX_POSITIONS, _>")]
    positions: Option<Vec<Position>>,
    proof: Option<ActivationProof>,
    #[serde(default, deserialize_with = "bounded_opt::<_, 16, _>")]
    choices: Option<Vec<RawChoice>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawModel {
    Claim(ModelClaim),
    Name(String),
}

#[derive(Deserialize)]
struct RawChoice {
    message: Option<RawMessage>,
    logprobs: Option<RawLogprobs>,
}

#[derive(Deserialize)]
struct RawMessage {
    content: Option<String>,
}

#[derive(Deserialize)]
struct RawLogprobs {
    #[serde(default, deserialize_with = "bounded_opt::<_, MAX_POSITIONS, _>")]
    content: Option<Vec<Position>>,
}

impl RawDoc {
    fn into_artifact(self) -> Result<Artifact, ReadError> {
        let invalid = |s: &str| ReadError::Invalid(s.to_string());
        if let Some(schema) = &self.schema {
            if schema != SCHEMA {
                return Err(ReadError::Invalid(format!(
                    "unknown schema {schema:?} (this nsed reads {SCHEMA:?})"
                )));
            }
            let model = match self.model {
                Some(RawModel::Claim(c)) => c,
                _ => {
                    return Err(invalid(
                        "an nsed artifact needs a model object {id, sha256, arch}",
                    ))
                }
            };
            return Ok(Artifact {
                schema: SCHEMA.into(),
                format: Format::Nsed,
                nsed_version: self.nsed_version.unwrap_or_default(),
                isa: self.isa.unwrap_or_default(),
                model,
                request: self.request,
                prompt_ids: self.prompt_ids,
                output: self.output,
                positions: self.positions.unwrap_or_default(),
                proof: self.proof,
            });
        }
        if self.object.as_deref() != Some("chat.completion") {
            return Err(invalid(
                "neither an nsed artifact (\"schema\": \"nsed.artifact/v1\") nor an OpenAI chat.completion (\"object\": \"chat.completion\")",
            ));
        }
        let choice = self
            .choices
            .and_then(|c| c.into_iter().next())
            .ok_or_else(|| invalid("the chat.completion has no choices"))?;
        let positions = choice
            .logprobs
            .and_then(|l| l.content)
            .ok_or_else(|| invalid("choices[0].logprobs.content is missing: request logprobs"))?;
        let text = choice.message.and_then(|m| m.content);
        let model_name = match self.model {
            Some(RawModel::Name(n)) => n,
            Some(RawModel::Claim(c)) => c.id,
            None => String::new(),
        };
        Ok(Artifact {
            schema: SCHEMA.into(),
            format: Format::OpenAi,
            nsed_version: String::new(),
            isa: String::new(),
            model: ModelClaim {
                id: model_name,
                sha256: String::new(),
                arch: String::new(),
            },
            request: self.request,
            prompt_ids: self.prompt_ids,
            output: text.map(|text| OutputDigest {
                text_sha256: text_sha256(&text),
                ids_sha256: String::new(),
                text,
                finish_reason: String::new(),
            }),
            positions,
            proof: None,
        })
    }
}

/// The document nsed writes (field order is the schema's).
#[derive(Serialize)]
struct NsedDoc<'a> {
    schema: &'a str,
    nsed_version: &'a str,
    isa: &'a str,
    model: &'a ModelClaim,
    request: &'a Option<Request>,
    prompt_ids: &'a Option<Vec<u32>>,
    output: &'a Option<OutputDigest>,
    positions: &'a [Position],
    #[serde(skip_serializing_if = "Option::is_none")]
    proof: &'a Option<ActivationProof>,
}

impl<'a> From<&'a Artifact> for NsedDoc<'a> {
    fn from(a: &'a Artifact) -> Self {
        Self {
            schema: SCHEMA,
            nsed_version: &a.nsed_version,
            isa: &a.isa,
            model: &a.model,
            request: &a.request,
            prompt_ids: &a.prompt_ids,
            output: &a.output,
            positions: &a.positions,
            proof: &a.proof,
        }
    }
}

/// A sequence that refuses more than `MAX` elements while it is being read.
fn bounded<'de, T: Deserialize<'de>, const MAX: usize, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<T>, D::Error> {
    struct V<T, const MAX: usize>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>, const MAX: usize> Visitor<'de> for V<T, MAX> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "a list of at most {MAX} entries")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX).min(1024));
            while let Some(x) = seq.next_element()? {
                if out.len() == MAX {
                    return Err(de::Error::custom(format!(
                        "a list has more than {MAX} entries (the limit for this field)"
                    )));
                }
                out.push(x);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(V::<T, MAX>(PhantomData))
}

fn bounded_opt<'de, T: Deserialize<'de>, const MAX: usize, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<T>>, D::Error> {
    // Like Option<Vec<T>>: null is None.
    struct V<T, const MAX: usize>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>, const MAX: usize> Visitor<'de> for V<T, MAX> {
        type Value = Option<Vec<T>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "null or a list of at most {MAX} entries")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            bounded::<T, MAX, D2>(d).map(Some)
        }
    }
    d.deserialize_option(V::<T, MAX>(PhantomData))
}

// ---------------------------------------------------------------------------
// Token strings to ids.

/// Bytes → id over a vocabulary, preferring ordinary tokens over control
/// tokens with the same text.
struct VocabIndex {
    by_bytes: HashMap<Vec<u8>, u32>,
}

impl VocabIndex {
    fn new(tok: &Tokenizer) -> Self {
        let mut by_bytes: HashMap<Vec<u8>, u32> = HashMap::with_capacity(tok.vocab_size());
        for id in 0..tok.vocab_size() as u32 {
            let Ok(bytes) = tok.token_bytes(id) else {
                continue;
            };
            let ordinary = matches!(
                tok.token_type(id),
                Some(TokenType::Normal | TokenType::Byte)
            );
            match by_bytes.get(&bytes) {
                Some(&prev) if !ordinary || is_ordinary(tok, prev) => {}
                _ => {
                    by_bytes.insert(bytes, id);
                }
            }
        }
        Self { by_bytes }
    }

    /// The id of a reported token: a given id must be in the vocabulary and
    /// agree with the token string; otherwise the bytes (or the string,
    /// including vLLM's `bytes:\xNN` form) are looked up.
    fn resolve(
        &self,
        tok: &Tokenizer,
        id: Option<u32>,
        token: &str,
        bytes: Option<&[u8]>,
        pos: usize,
    ) -> Result<u32, String> {
        if let Some(id) = id {
            let text = tok.token_string(id).map_err(|_| {
                format!(
                    "position {pos}: token id {id} is outside the vocabulary ({} tokens)",
                    tok.vocab_size()
                )
            })?;
            if text != token {
                return Err(format!(
                    "position {pos}: token id {id} is {text:?} in this vocabulary, not {token:?}"
                ));
            }
            return Ok(id);
        }
        check_bytes(token, bytes, pos)?;
        let from_string = token_string_bytes(token);
        let key = bytes
            .map(<[u8]>::to_vec)
            .or(from_string)
            .unwrap_or_default();
        self.by_bytes.get(&key).copied().ok_or_else(|| {
            format!("position {pos}: token {token:?} is not in the model's vocabulary")
        })
    }
}

fn is_ordinary(tok: &Tokenizer, id: u32) -> bool {
    matches!(
        tok.token_type(id),
        Some(TokenType::Normal | TokenType::Byte)
    )
}

/// An activation proof must be one nsed can check and be well formed: the
/// scheme and its parameters, one chunk per 32 positions, each chunk hex of
/// a modulus and 1 to `TOPK` coefficients inside the field. A malformed
/// proof is an input error in every mode (exit 2), never a failed check.
fn check_proof_shape(proof: &ActivationProof, positions: usize) -> Result<(), String> {
    use crate::verify::toploc;
    if proof.scheme != toploc::SCHEME || proof.chunk != toploc::CHUNK || proof.topk != toploc::TOPK
    {
        return Err(format!(
            "unsupported proof scheme {:?} (chunk {}, topk {}); nsed checks {} (chunk {}, topk {})",
            proof.scheme,
            proof.chunk,
            proof.topk,
            toploc::SCHEME,
            toploc::CHUNK,
            toploc::TOPK
        ));
    }
    let expected = positions.div_ceil(toploc::CHUNK);
    if proof.chunks.len() != expected {
        return Err(format!(
            "the proof has {} chunks, but {positions} positions need {expected}",
            proof.chunks.len()
        ));
    }
    for (i, chunk) in proof.chunks.iter().enumerate() {
        let bytes = unhex(chunk).ok_or_else(|| format!("proof chunk {i} is not hex"))?;
        if bytes.len() > 2 + 2 * toploc::TOPK || toploc::ChunkProof::from_bytes(&bytes).is_none() {
            return Err(format!(
                "proof chunk {i} is malformed ({} bytes; a modulus and 1 to {} coefficients below {} expected)",
                bytes.len(),
                toploc::TOPK,
                toploc::PRIME
            ));
        }
    }
    Ok(())
}

/// Bytes of a hex string (`None` when it is not hex).
pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A token's `bytes`, when given, must be what its string says (as lossy
/// UTF-8, or in vLLM's `bytes:\xNN` form): checked on every read, so no
/// mode of `verify` compares a position whose two spellings disagree.
fn check_bytes(token: &str, bytes: Option<&[u8]>, pos: usize) -> Result<(), String> {
    let Some(b) = bytes else { return Ok(()) };
    if String::from_utf8_lossy(b) == token || token_string_bytes(token).as_deref() == Some(b) {
        return Ok(());
    }
    Err(format!(
        "position {pos}: token {token:?} does not round-trip: its bytes {b:?} say otherwise"
    ))
}

/// The bytes a token string stands for; vLLM writes tokens that are not
/// valid UTF-8 as `bytes:\xe2\x80`.
fn token_string_bytes(token: &str) -> Option<Vec<u8>> {
    let Some(rest) = token.strip_prefix("bytes:") else {
        return Some(token.as_bytes().to_vec());
    };
    let mut out = Vec::new();
    let mut parts = rest.split("\\x");
    if !parts.next()?.is_empty() {
        return None;
    }
    for part in parts {
        if part.len() != 2 {
            return None;
        }
        out.push(u8::from_str_radix(part, 16).ok()?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn openai(content: &str) -> String {
        format!(
            r#"{{"object":"chat.completion","model":"m","choices":[{{"message":{{"content":"ab"}},"logprobs":{{"content":[{content}]}}}}]}}"#
        )
    }

    fn pos(tok: &str, lp: f64, top: &[(&str, f64)]) -> String {
        let top: Vec<String> = top
            .iter()
            .map(|(t, l)| format!(r#"{{"token":"{t}","logprob":{l}}}"#))
            .collect();
        format!(
            r#"{{"token":"{tok}","logprob":{lp},"top_logprobs":[{}]}}"#,
            top.join(",")
        )
    }

    fn parse(s: &str) -> Result<Artifact, ReadError> {
        Artifact::from_reader(s.as_bytes())
    }

    #[test]
    fn reads_openai_chat_completion() {
        let a = parse(&openai(&pos("a", -0.1, &[("a", -0.1), ("b", -2.5)]))).expect("valid");
        assert_eq!(a.format, Format::OpenAi);
        assert_eq!(a.model.id, "m");
        assert_eq!(a.k(), 2);
        assert_eq!(a.positions[0].top_logprobs[1].logprob, -2.5);
        assert_eq!(a.output.as_ref().map(|o| o.text.as_str()), Some("ab"));
    }

    #[test]
    fn rejects_bad_logprobs_and_shapes() {
        let cases = [
            (openai(&pos("a", 0.5, &[("a", 0.5)])), "positive"),
            (
                openai(&format!(
                    "{},{}",
                    pos("a", -0.1, &[("a", -0.1), ("b", -1.0)]),
                    pos("b", -0.1, &[("b", -0.1)])
                )),
                "k must be the same",
            ),
            (
                openai(&pos("a", -0.1, &[("a", -0.1), ("a", -0.1)])),
                "twice",
            ),
            (openai(""), "empty"),
            (
                openai(&pos("a", -0.25, &[("a", -0.1)])).replace("-0.25", "-1e999"),
                "number",
            ),
            (openai(&pos("a", f64::NAN, &[("a", -0.1)])), "NaN"),
        ];
        for (doc, want) in cases {
            let err = parse(&doc).expect_err(&doc).to_string();
            assert!(err.contains(want), "{doc} -> {err}");
        }
        let truncated = openai(&pos("a", -0.1, &[("a", -0.1)]));
        let err = parse(&truncated[..truncated.len() / 2]).expect_err("truncated");
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn limits_hold_while_reading() {
        let many: Vec<String> = (0..MAX_TOP_LOGPROBS + 1)
            .map(|i| format!(r#"{{"token":"t{i}","logprob":-1.0}}"#))
            .collect();
        let doc = openai(&format!(
            r#"{{"token":"a","logprob":-1.0,"top_logprobs":[{}]}}"#,
            many.join(",")
        ));
        let err = parse(&doc).expect_err("too many alternatives").to_string();
        assert!(err.contains("more than 20"), "{err}");
    }

    #[test]
    fn vllm_byte_tokens_decode() {
        assert_eq!(
            token_string_bytes("bytes:\\xe2\\x80"),
            Some(vec![0xe2, 0x80])
        );
        assert_eq!(token_string_bytes("abc"), Some(b"abc".to_vec()));
        assert_eq!(token_string_bytes("bytes:\\xZZ"), None);
    }

    #[test]
    fn digests_are_checked() {
        let ids = [1u32, 2, 3];
        let doc = serde_json::json!({
            "schema": SCHEMA,
            "model": {"id": "m", "sha256": "", "arch": "llama"},
            "output": {"text": "x", "text_sha256": text_sha256("x"), "ids_sha256": ids_sha256(&[9])},
            "positions": ids.iter().map(|&i| serde_json::json!({"id": i, "token": "t", "logprob": -1.0, "top_logprobs": []})).collect::<Vec<_>>(),
        });
        let err = parse(&doc.to_string()).expect_err("ids digest").to_string();
        assert!(err.contains("ids_sha256"), "{err}");
    }
}
