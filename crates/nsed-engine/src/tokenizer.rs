//! Tokenizers built from GGUF metadata alone (no tokenizer.json), matching
//! llama.cpp token for token: byte-level BPE (`tokenizer.ggml.model = gpt2`)
//! with the pre-tokenizer regexes of `pre = smollm` / `qwen2`, and
//! SentencePiece-style BPE with byte fallback (`llama`, as Gemma 3 uses).
//!
//! The flow is llama.cpp's: special-token strings are cut out of the text
//! first (longest first), then each remaining piece of raw text is merged.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use fancy_regex::{Regex, RegexBuilder};

use crate::gguf::{Gguf, GgufError, Value};

/// Why a tokenizer could not be built from GGUF metadata, or a token looked up.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A tokenizer key is missing from the GGUF or has the wrong type.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// `tokenizer.ggml.model` names an algorithm nsed does not implement.
    #[error("unsupported tokenizer model `{0}` (nsed supports `gpt2` and `llama`)")]
    UnsupportedModel(String),
    /// `tokenizer.ggml.pre` names a pre-tokenizer nsed does not implement (or none, for `gpt2`).
    #[error(
        "unsupported pre-tokenizer `{0}` (nsed supports `smollm`, `starcoder`, `qwen2`, `qwen35`, `llama-bpe`, \
         `gpt-4o`, `tekken`); \
         refusing to guess"
    )]
    UnsupportedPre(String),
    /// The tokenizer metadata is malformed or contradicts itself (token and type counts
    /// differ, a malformed merge, missing scores or byte-fallback tokens).
    #[error("tokenizer metadata is inconsistent: {0}")]
    Metadata(String),
    /// A token id outside the vocabulary.
    #[error("token id {id} is out of the vocabulary (size {vocab})")]
    OutOfVocab {
        /// The token id asked for.
        id: u32,
        /// Tokens in the vocabulary.
        vocab: usize,
    },
}

type Result<T> = std::result::Result<T, TokenizerError>;

/// llama.cpp token types (`tokenizer.ggml.token_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    /// An ordinary vocabulary piece (type 1, and any type code nsed does not know).
    Normal,
    /// The unknown token, such as `<unk>` (type 2).
    Unknown,
    /// A control token such as BOS, EOS or `<|im_start|>` (type 3); matched in text only when
    /// special tokens are parsed.
    Control,
    /// A token added by the model's authors (type 4), always matched as a unit.
    UserDefined,
    /// A reserved slot the model never uses (type 5).
    Unused,
    /// A byte-fallback token `<0xNN>` (type 6).
    Byte,
}

impl TokenType {
    fn from_i64(v: i64) -> Self {
        match v {
            2 => Self::Unknown,
            3 => Self::Control,
            4 => Self::UserDefined,
            5 => Self::Unused,
            6 => Self::Byte,
            _ => Self::Normal,
        }
    }
}

const GPT2_SMOLLM: &[&str] = &[
    r"\p{N}",
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)",
];
const QWEN2: &[&str] = &[
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
];
/// Qwen3.5 (`qwen35`): Qwen2's pattern with combining marks (`\p{M}`) kept
/// inside words.
const QWEN35: &[&str] = &[
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
];
/// GPT-4o / GPT-OSS (`gpt-4o`): llama.cpp's adaptation of o200k's pattern
/// (letter-case classes by lookahead), which defines the ids llama.cpp gives.
/// llama.cpp ships no test vectors for it: `tests/it/tokenizer_golden.rs`
/// checks the pre-tokenization against Python's `regex` on the original.
const GPT4O: &[&str] = &[
    r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
];
/// Mistral's Tekken (`tekken`: Mistral Nemo, Small 3, Ministral): llama.cpp's
/// adaptation of its pattern (letter case by lookahead, single digits), with
/// whole pre-tokens that are vocabulary entries taken as such. No llama.cpp
/// test vectors either: checked like `gpt-4o`.
const TEKKEN: &[&str] = &[
    r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
];
/// Llama 3 (`llama-bpe`): Qwen2's pattern with digits in runs of up to three.
const LLAMA3: &[&str] = &[
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
];

enum Algorithm {
    /// Byte-level BPE: merges keyed by (left id, right id) -> (rank, merged id).
    Bpe {
        pre: Vec<Regex>,
        merges: HashMap<(u32, u32), (u32, u32)>,
        byte_to_char: [char; 256],
        char_to_byte: HashMap<char, u8>,
        /// A pre-token that is itself a vocabulary entry is that token,
        /// whatever the merges would make of it (llama.cpp's
        /// `ignore_merges`, Llama 3's tokenizer).
        ignore_merges: bool,
    },
    /// SentencePiece BPE: merge the adjacent pair whose concatenation is the
    /// vocabulary entry with the highest score.
    Spm {
        scores: Vec<f32>,
        add_space_prefix: bool,
        byte_tokens: [u32; 256],
    },
}

/// A tokenizer read from a GGUF file.
pub struct Tokenizer {
    tokens: Vec<String>,
    types: Vec<TokenType>,
    token_to_id: HashMap<String, u32>,
    /// Control, user-defined and unknown tokens, longest text first.
    special: Vec<u32>,
    algorithm: Algorithm,
    /// Beginning-of-sequence token id (`tokenizer.ggml.bos_token_id`), if the GGUF names one.
    pub bos: Option<u32>,
    /// End-of-sequence token id (`tokenizer.ggml.eos_token_id`), if the GGUF names one.
    pub eos: Option<u32>,
    /// Whether encoding with special tokens puts BOS first (`tokenizer.ggml.add_bos_token`,
    /// else the algorithm's default: yes for `llama`, no for `gpt2`).
    pub add_bos: bool,
    /// `tokenizer.ggml.model` and `pre`, for reports.
    pub model_name: String,
    /// `tokenizer.ggml.pre`, the pre-tokenizer's name; `None` when the GGUF has none.
    pub pre_name: Option<String>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("model", &self.model_name)
            .field("pre", &self.pre_name)
            .field("vocab", &self.tokens.len())
            .finish()
    }
}

impl Tokenizer {
    /// Build the tokenizer from the GGUF's `tokenizer.ggml.*` metadata.
    pub fn from_gguf(gguf: &Gguf) -> Result<Self> {
        let model_name = gguf.get_str("tokenizer.ggml.model")?.to_string();
        let tokens = string_array(gguf, "tokenizer.ggml.tokens")?;
        let types = match gguf.metadata.get("tokenizer.ggml.token_type") {
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::I32(t) => TokenType::from_i64((*t).into()),
                    other => TokenType::from_i64(other.as_u64().map_or(1, |t| t as i64)),
                })
                .collect(),
            _ => vec![TokenType::Normal; tokens.len()],
        };
        if types.len() != tokens.len() {
            return Err(TokenizerError::Metadata(format!(
                "{} tokens but {} token types",
                tokens.len(),
                types.len()
            )));
        }
        let mut token_to_id = HashMap::with_capacity(tokens.len());
        for (id, t) in tokens.iter().enumerate() {
            token_to_id.insert(t.clone(), id as u32);
        }
        let opt_id = |key: &str| gguf.get_u64(key).ok().map(|v| v as u32);
        let pre_name = gguf.get_str("tokenizer.ggml.pre").ok().map(str::to_string);
        let (algorithm, default_add_bos) = match model_name.as_str() {
            "gpt2" => (bpe(gguf, &token_to_id, pre_name.as_deref())?, false),
            "llama" => (spm(gguf, &tokens, &token_to_id)?, true),
            other => return Err(TokenizerError::UnsupportedModel(other.to_string())),
        };
        let add_bos = gguf
            .get_bool("tokenizer.ggml.add_bos_token")
            .unwrap_or(default_add_bos);
        let mut special: Vec<u32> = (0..tokens.len() as u32)
            .filter(|&id| {
                matches!(
                    types[id as usize],
                    TokenType::Control | TokenType::UserDefined | TokenType::Unknown
                ) && !tokens[id as usize].is_empty()
            })
            .collect();
        special.sort_by_key(|&id| std::cmp::Reverse(tokens[id as usize].len()));
        Ok(Self {
            bos: opt_id("tokenizer.ggml.bos_token_id"),
            eos: opt_id("tokenizer.ggml.eos_token_id"),
            add_bos,
            tokens,
            types,
            token_to_id,
            special,
            algorithm,
            model_name,
            pre_name,
        })
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The id of the vocabulary entry whose raw text is exactly `text`, if any.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.token_to_id.get(text).copied()
    }

    /// The type of token `id`; `None` outside the vocabulary.
    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.types.get(id as usize).copied()
    }

    /// The raw vocabulary entry of `id` (byte-level or `▁` escaped).
    pub fn token_text(&self, id: u32) -> Result<&str> {
        self.tokens
            .get(id as usize)
            .map(String::as_str)
            .ok_or(TokenizerError::OutOfVocab {
                id,
                vocab: self.tokens.len(),
            })
    }

    /// Encode `text`. `add_special` adds BOS where the model asks for it;
    /// `parse_special` turns control-token strings such as `<|im_start|>` into
    /// their single ids (user-defined tokens are always matched, as in llama.cpp).
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let mut out = Vec::new();
        if add_special && self.add_bos {
            if let Some(bos) = self.bos {
                out.push(bos);
            }
        }
        for fragment in self.partition(text, parse_special) {
            match fragment {
                Fragment::Token(id) => out.push(id),
                Fragment::Text(t) => self.encode_raw(t, &mut out),
            }
        }
        out
    }

    /// The pieces a byte-level BPE tokenizer's pre-tokenizer cuts `text`
    /// into before merging (`None` for SentencePiece, which has none).
    pub fn pre_tokens<'t>(&self, text: &'t str) -> Option<Vec<&'t str>> {
        match &self.algorithm {
            Algorithm::Bpe { pre, .. } => Some(pre_tokenize(pre, text)),
            Algorithm::Spm { .. } => None,
        }
    }

    /// The bytes a token stands for (control tokens give their text).
    pub fn token_bytes(&self, id: u32) -> Result<Vec<u8>> {
        let text = self.token_text(id)?;
        let ty = self.types[id as usize];
        Ok(match (&self.algorithm, ty) {
            (_, TokenType::Control | TokenType::UserDefined | TokenType::Unknown) => {
                text.as_bytes().to_vec()
            }
            (Algorithm::Bpe { char_to_byte, .. }, _) => text
                .chars()
                .map(|c| char_to_byte.get(&c).copied())
                .collect::<Option<Vec<u8>>>()
                .unwrap_or_else(|| text.as_bytes().to_vec()),
            (Algorithm::Spm { .. }, TokenType::Byte) => parse_byte_token(text)
                .map(|b| vec![b])
                .unwrap_or_else(|| text.as_bytes().to_vec()),
            (Algorithm::Spm { .. }, _) => text.replace('\u{2581}', " ").into_bytes(),
        })
    }

    /// Decode ids to text; invalid UTF-8 (a split multi-byte character) is
    /// replaced by U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let mut bytes = Vec::new();
        for &id in ids {
            bytes.extend(self.token_bytes(id)?);
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// A printable form of one token for tables and JSON.
    pub fn token_string(&self, id: u32) -> Result<String> {
        Ok(String::from_utf8_lossy(&self.token_bytes(id)?).into_owned())
    }

    fn partition<'t>(&self, text: &'t str, parse_special: bool) -> Vec<Fragment<'t>> {
        let mut fragments = vec![Fragment::Text(text)];
        for &id in &self.special {
            let ty = self.types[id as usize];
            if !parse_special && matches!(ty, TokenType::Control | TokenType::Unknown) {
                continue;
            }
            let needle = self.tokens[id as usize].as_str();
            fragments = fragments
                .into_iter()
                .flat_map(|f| split_on_token(f, needle, id))
                .collect();
        }
        fragments
    }

    fn encode_raw(&self, text: &str, out: &mut Vec<u32>) {
        match &self.algorithm {
            Algorithm::Bpe {
                pre,
                merges,
                byte_to_char,
                ignore_merges,
                ..
            } => {
                for word in pre_tokenize(pre, text) {
                    let encoded: String = word.bytes().map(|b| byte_to_char[b as usize]).collect();
                    match self.token_to_id.get(&encoded) {
                        Some(&id) if *ignore_merges => out.push(id),
                        _ => self.bpe_word(&encoded, merges, out),
                    }
                }
            }
            Algorithm::Spm {
                scores,
                add_space_prefix,
                byte_tokens,
            } => {
                // Nothing to encode: no space prefix either (llama.cpp
                // tokenizes no fragment for an empty text).
                if text.is_empty() {
                    return;
                }
                let mut escaped = String::with_capacity(text.len() + 3);
                if *add_space_prefix {
                    escaped.push('\u{2581}');
                }
                escaped.push_str(&text.replace(' ', "\u{2581}"));
                self.spm_piece(&escaped, scores, byte_tokens, out);
            }
        }
    }

    fn bpe_word(&self, word: &str, merges: &HashMap<(u32, u32), (u32, u32)>, out: &mut Vec<u32>) {
        let mut symbols = Symbols::new(word);
        let mut ids: Vec<Option<u32>> = symbols
            .items
            .iter()
            .map(|s| self.token_id(&word[s.start..s.start + s.len]))
            .collect();
        let rank_of = |ids: &[Option<u32>], l: usize, r: usize| {
            let (a, b) = (ids[l]?, ids[r]?);
            merges.get(&(a, b)).copied()
        };
        let mut heap = BinaryHeap::new();
        for i in 1..symbols.items.len() {
            if let Some((rank, _)) = rank_of(&ids, i - 1, i) {
                heap.push(Bigram::bpe(rank, i - 1, i, &symbols));
            }
        }
        while let Some(b) = heap.pop() {
            if !symbols.is_current(&b) {
                continue;
            }
            let Some((_, merged)) = rank_of(&ids, b.left, b.right) else {
                continue;
            };
            symbols.merge(b.left, b.right);
            ids[b.left] = Some(merged);
            let (prev, next) = (symbols.items[b.left].prev, symbols.items[b.left].next);
            for (l, r) in [(prev, Some(b.left)), (Some(b.left), next)] {
                if let (Some(l), Some(r)) = (l, r) {
                    if let Some((rank, _)) = rank_of(&ids, l, r) {
                        heap.push(Bigram::bpe(rank, l, r, &symbols));
                    }
                }
            }
        }
        for i in symbols.order() {
            match ids[i] {
                Some(id) => out.push(id),
                None => {
                    let s = &symbols.items[i];
                    // llama.cpp: an unknown symbol falls back to its single
                    // bytes, each looked up as a one-byte string. Only an
                    // ASCII byte can be such a string (vocabulary entries
                    // are UTF-8), so the others are dropped, as there: a
                    // byte whose character the vocabulary lacks (SmolLM2
                    // has none for 0xF1) cannot be encoded.
                    for byte in word[s.start..s.start + s.len].bytes() {
                        if !byte.is_ascii() {
                            continue;
                        }
                        if let Some(id) = self.token_id(&(byte as char).to_string()) {
                            out.push(id);
                        }
                    }
                }
            }
        }
    }

    fn spm_piece(&self, text: &str, scores: &[f32], byte_tokens: &[u32; 256], out: &mut Vec<u32>) {
        let mut symbols = Symbols::new(text);
        let score_of = |symbols: &Symbols, l: usize, r: usize| {
            let (a, b) = (&symbols.items[l], &symbols.items[r]);
            let id = self.token_id(&text[a.start..b.start + b.len])?;
            Some(scores.get(id as usize).copied().unwrap_or(0.0))
        };
        let mut heap = BinaryHeap::new();
        for i in 1..symbols.items.len() {
            if let Some(score) = score_of(&symbols, i - 1, i) {
                heap.push(Bigram::spm(score, i - 1, i, &symbols));
            }
        }
        while let Some(b) = heap.pop() {
            if !symbols.is_current(&b) {
                continue;
            }
            symbols.merge(b.left, b.right);
            let (prev, next) = (symbols.items[b.left].prev, symbols.items[b.left].next);
            for (l, r) in [(prev, Some(b.left)), (Some(b.left), next)] {
                if let (Some(l), Some(r)) = (l, r) {
                    if let Some(score) = score_of(&symbols, l, r) {
                        heap.push(Bigram::spm(score, l, r, &symbols));
                    }
                }
            }
        }
        for i in symbols.order() {
            let s = &symbols.items[i];
            let piece = &text[s.start..s.start + s.len];
            match self.token_id(piece) {
                Some(id) => out.push(id),
                None => out.extend(piece.bytes().map(|b| byte_tokens[b as usize])),
            }
        }
    }
}

enum Fragment<'t> {
    Text(&'t str),
    Token(u32),
}

fn split_on_token<'t>(fragment: Fragment<'t>, needle: &str, id: u32) -> Vec<Fragment<'t>> {
    let Fragment::Text(text) = fragment else {
        return vec![fragment];
    };
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(needle) {
        if at > 0 {
            out.push(Fragment::Text(&rest[..at]));
        }
        out.push(Fragment::Token(id));
        rest = &rest[at + needle.len()..];
    }
    if !rest.is_empty() {
        out.push(Fragment::Text(rest));
    }
    out
}

/// Apply each regex in turn to every piece, keeping matches and the gaps
/// between them (the "Isolated" split behaviour).
fn pre_tokenize<'t>(regexes: &[Regex], text: &'t str) -> Vec<&'t str> {
    let mut pieces = vec![text];
    for re in regexes {
        let mut next = Vec::with_capacity(pieces.len() * 2);
        for piece in pieces {
            let mut last = 0;
            for m in re.find_iter(piece) {
                // A matcher error (none is expected without a step limit)
                // leaves the rest of the piece whole rather than looping.
                let Ok(m) = m else { break };
                if m.start() > last {
                    next.push(&piece[last..m.start()]);
                }
                if m.end() > m.start() {
                    next.push(m.as_str());
                }
                last = m.end();
            }
            if last < piece.len() {
                next.push(&piece[last..]);
            }
        }
        pieces = next;
    }
    pieces
}

#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A doubly linked list of symbols over a string, one per UTF-8 character at first.
struct Symbols {
    items: Vec<Symbol>,
}

impl Symbols {
    fn new(text: &str) -> Self {
        let starts: Vec<(usize, usize)> = text
            .char_indices()
            .map(|(i, c)| (i, c.len_utf8()))
            .collect();
        let n = starts.len();
        let items = starts
            .into_iter()
            .enumerate()
            .map(|(i, (start, len))| Symbol {
                start,
                len,
                prev: i.checked_sub(1),
                next: (i + 1 < n).then_some(i + 1),
            })
            .collect();
        Self { items }
    }

    fn is_current(&self, b: &Bigram) -> bool {
        let (l, r) = (&self.items[b.left], &self.items[b.right]);
        l.len != 0 && r.len != 0 && l.len + r.len == b.size
    }

    fn merge(&mut self, left: usize, right: usize) {
        let r = self.items[right];
        self.items[left].len += r.len;
        self.items[left].next = r.next;
        self.items[right].len = 0;
        if let Some(n) = r.next {
            self.items[n].prev = Some(left);
        }
    }

    fn order(&self) -> Vec<usize> {
        let mut out = Vec::new();
        let mut cur = (!self.items.is_empty()).then_some(0);
        while let Some(i) = cur {
            out.push(i);
            cur = self.items[i].next;
        }
        out
    }
}

/// A candidate merge. Heap order: best priority first, then leftmost.
struct Bigram {
    /// Higher is merged first (BPE: negated rank; SPM: score).
    priority: f64,
    left: usize,
    right: usize,
    size: usize,
}

impl Bigram {
    fn bpe(rank: u32, left: usize, right: usize, s: &Symbols) -> Self {
        Self::new(-f64::from(rank), left, right, s)
    }

    fn spm(score: f32, left: usize, right: usize, s: &Symbols) -> Self {
        Self::new(f64::from(score), left, right, s)
    }

    fn new(priority: f64, left: usize, right: usize, s: &Symbols) -> Self {
        let size = s.items[left].len + s.items[right].len;
        Self {
            priority,
            left,
            right,
            size,
        }
    }
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .total_cmp(&other.priority)
            .then_with(|| other.left.cmp(&self.left))
    }
}

fn string_array(gguf: &Gguf, key: &str) -> Result<Vec<String>> {
    gguf.get_array(key)?
        .iter()
        .map(|v| match v {
            Value::String(s) => Ok(s.clone()),
            other => Err(TokenizerError::Metadata(format!(
                "`{key}` holds a {} where a string belongs",
                other.type_name()
            ))),
        })
        .collect()
}

fn bpe(gguf: &Gguf, token_to_id: &HashMap<String, u32>, pre: Option<&str>) -> Result<Algorithm> {
    let (patterns, ignore_merges) = match pre {
        Some("smollm") | Some("starcoder") => (GPT2_SMOLLM, false),
        Some("qwen2") => (QWEN2, false),
        Some("qwen35") => (QWEN35, false),
        Some("gpt-4o") => (GPT4O, false),
        Some("tekken") => (TEKKEN, true),
        Some("llama-bpe") | Some("llama3") | Some("llama-v3") => (LLAMA3, true),
        Some(other) => return Err(TokenizerError::UnsupportedPre(other.to_string())),
        None => return Err(TokenizerError::UnsupportedPre("(missing)".into())),
    };
    let pre = patterns
        .iter()
        .map(|p| {
            // The patterns have no nested repetition, so a match costs time
            // linear in its length; the default step limit (10^6) only made
            // a pre-token of a million letters fail — and the failure
            // repeat forever at the same position.
            RegexBuilder::new(p)
                .backtrack_limit(usize::MAX)
                .build()
                .map_err(|e| TokenizerError::Metadata(e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut merges = HashMap::new();
    for (rank, m) in string_array(gguf, "tokenizer.ggml.merges")?
        .iter()
        .enumerate()
    {
        let Some((a, b)) = m.split_once(' ') else {
            return Err(TokenizerError::Metadata(format!(
                "merge `{m}` has no space"
            )));
        };
        let ids = (
            token_to_id.get(a),
            token_to_id.get(b),
            token_to_id.get(&format!("{a}{b}")),
        );
        if let (Some(&a), Some(&b), Some(&merged)) = ids {
            merges.entry((a, b)).or_insert((rank as u32, merged));
        }
    }
    let byte_to_char = gpt2_byte_chars();
    let char_to_byte = (0..=255u8).map(|b| (byte_to_char[b as usize], b)).collect();
    Ok(Algorithm::Bpe {
        pre,
        merges,
        byte_to_char,
        char_to_byte,
        ignore_merges,
    })
}

fn spm(gguf: &Gguf, tokens: &[String], token_to_id: &HashMap<String, u32>) -> Result<Algorithm> {
    let scores: Vec<f32> = match gguf.metadata.get("tokenizer.ggml.scores") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_f64().unwrap_or(0.0) as f32)
            .collect(),
        _ => {
            return Err(TokenizerError::Metadata(
                "`tokenizer.ggml.scores` is missing".into(),
            ))
        }
    };
    if scores.len() != tokens.len() {
        return Err(TokenizerError::Metadata(format!(
            "{} tokens but {} scores",
            tokens.len(),
            scores.len()
        )));
    }
    let mut byte_tokens = [0u32; 256];
    for (b, slot) in byte_tokens.iter_mut().enumerate() {
        *slot = *token_to_id.get(&format!("<0x{b:02X}>")).ok_or_else(|| {
            TokenizerError::Metadata(format!("byte-fallback token <0x{b:02X}> is missing"))
        })?;
    }
    let add_space_prefix = gguf
        .get_bool("tokenizer.ggml.add_space_prefix")
        .unwrap_or(true);
    Ok(Algorithm::Spm {
        scores,
        add_space_prefix,
        byte_tokens,
    })
}

fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    u8::from_str_radix(hex, 16).ok()
}

/// GPT-2's byte-to-unicode table: printable bytes map to themselves, the rest
/// to code points from U+0100 on.
pub fn gpt2_byte_chars() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut extra = 0u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        table[b as usize] = if printable {
            char::from(b)
        } else {
            let c = char::from_u32(256 + extra).unwrap_or('?');
            extra += 1;
            c
        };
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_byte_table_is_a_bijection() {
        let t = gpt2_byte_chars();
        let set: std::collections::HashSet<char> = t.iter().copied().collect();
        assert_eq!(set.len(), 256);
        assert_eq!(t[b' ' as usize], '\u{120}'); // 'Ġ'
        assert_eq!(t[b'\n' as usize], '\u{10A}'); // 'Ċ'
        assert_eq!(t[b'A' as usize], 'A');
    }

    #[test]
    fn smollm_pre_tokenizer_splits_digits_and_keeps_trailing_spaces() {
        let re: Vec<Regex> = GPT2_SMOLLM
            .iter()
            .map(|p| Regex::new(p).expect("regex"))
            .collect();
        assert_eq!(pre_tokenize(&re, "Hi 123"), ["Hi", " ", "1", "2", "3"]);
        assert_eq!(pre_tokenize(&re, "a   b"), ["a", "  ", " b"]);
    }

    #[test]
    fn special_tokens_are_cut_out_in_order() {
        let frags = split_on_token(Fragment::Text("x<a>y<a>"), "<a>", 7);
        let kinds: Vec<String> = frags
            .iter()
            .map(|f| match f {
                Fragment::Text(t) => t.to_string(),
                Fragment::Token(id) => format!("#{id}"),
            })
            .collect();
        assert_eq!(kinds, ["x", "#7", "y", "#7"]);
    }

    #[test]
    fn byte_tokens_parse() {
        assert_eq!(parse_byte_token("<0x0A>"), Some(10));
        assert_eq!(parse_byte_token("<0xFF>"), Some(255));
        assert_eq!(parse_byte_token("<0xZZ>"), None);
    }
}
