//! Perplexity with llama.cpp's convention (tools/perplexity): tokenize the
//! whole text once, cut consecutive `ctx`-token chunks (a partial tail is
//! dropped), put BOS first in each chunk when the model adds BOS, run each
//! chunk from an empty cache, and score the second half of every chunk.

use candle_core::{DType, Tensor};
use serde::Serialize;

use crate::model::{Logits, ModelError};
use crate::runtime::Runtime;
use crate::sampling::log_softmax_shift;

/// Why a perplexity run could not be done.
#[derive(Debug, thiserror::Error)]
pub enum PerplexityError {
    /// The chunk size `ctx` is under 4 tokens.
    #[error("context {0} is too small: it must be at least 4 tokens")]
    ContextTooSmall(usize),
    /// The text does not fill one chunk of `ctx` tokens.
    #[error("the text has {tokens} tokens, fewer than one chunk of {ctx}: give a longer text")]
    TooShort {
        /// Tokens in the whole text (BOS included when the model adds it).
        tokens: usize,
        /// Chunk size in tokens.
        ctx: usize,
    },
    /// The model's forward pass failed.
    #[error(transparent)]
    Model(#[from] Box<ModelError>),
    /// Reading the logits failed.
    #[error("tensor computation failed: {0}")]
    Candle(Box<candle_core::Error>),
}

impl From<ModelError> for PerplexityError {
    fn from(e: ModelError) -> Self {
        Self::Model(Box::new(e))
    }
}

impl From<candle_core::Error> for PerplexityError {
    fn from(e: candle_core::Error) -> Self {
        Self::Candle(Box::new(e))
    }
}

/// The result of scoring a text: overall and per-chunk perplexity.
#[derive(Debug, Clone, Serialize)]
pub struct PerplexityReport {
    /// The model's registry id (or file stem).
    pub model: String,
    /// Chunk size in tokens.
    pub ctx: usize,
    /// Tokens in the whole text (BOS included when the model adds it).
    pub tokens: usize,
    /// Chunks scored: the full chunks of the text, at most `max_chunks`.
    pub chunks: usize,
    /// Token predictions scored over all chunks (`ctx - 1 - ctx / 2` per chunk).
    pub scored: usize,
    /// Perplexity: exp of the mean negative log-likelihood over all scored predictions.
    pub ppl: f64,
    /// llama.cpp's "+/-": PPL times the standard error of the mean NLL.
    pub ppl_err: f64,
    /// Perplexity of each chunk alone, in order.
    pub chunk_ppl: Vec<f64>,
}

/// Score `text` in chunks of `ctx`. `max_chunks` limits the work (None: all);
/// `on_chunk` is called after each chunk with its running PPL.
pub fn perplexity(
    rt: &mut Runtime,
    text: &str,
    ctx: usize,
    max_chunks: Option<usize>,
    mut on_chunk: impl FnMut(usize, usize, f64),
) -> Result<PerplexityReport, PerplexityError> {
    if ctx < 4 {
        return Err(PerplexityError::ContextTooSmall(ctx));
    }
    let tokens = rt.tokenizer.encode(text, true, false);
    let available = tokens.len() / ctx;
    if available == 0 {
        return Err(PerplexityError::TooShort {
            tokens: tokens.len(),
            ctx,
        });
    }
    let chunks = max_chunks.map_or(available, |m| m.min(available));
    let first = ctx / 2;
    let (mut sum, mut sum_sq, mut count) = (0f64, 0f64, 0usize);
    let mut chunk_ppl = Vec::with_capacity(chunks);
    for c in 0..chunks {
        let mut chunk = tokens[c * ctx..(c + 1) * ctx].to_vec();
        if let (true, Some(bos)) = (rt.tokenizer.add_bos, rt.tokenizer.bos) {
            chunk[0] = bos;
        }
        rt.model.reset();
        let logits = rt.model.forward(&chunk, Logits::From(first))?;
        let nll = chunk_nll(&logits, &chunk, first)?;
        let chunk_sum: f64 = nll.iter().sum();
        chunk_ppl.push((chunk_sum / nll.len() as f64).exp());
        sum += chunk_sum;
        sum_sq += nll.iter().map(|v| v * v).sum::<f64>();
        count += nll.len();
        on_chunk(c + 1, chunks, (sum / count as f64).exp());
    }
    rt.model.reset();
    let mean = sum / count as f64;
    let var = (sum_sq / count as f64 - mean * mean).max(0.0);
    let stderr = if count > 1 {
        (var / (count - 1) as f64).sqrt()
    } else {
        0.0
    };
    let ppl = mean.exp();
    Ok(PerplexityReport {
        model: rt.id(),
        ctx,
        tokens: tokens.len(),
        chunks,
        scored: count,
        ppl,
        ppl_err: ppl * stderr,
        chunk_ppl,
    })
}

/// Negative log-likelihoods of `tokens[j + 1]` given the logits at `j`, for
/// `j` in `first .. n - 1`; `logits` holds the rows from `first` on.
fn chunk_nll(logits: &Tensor, tokens: &[u32], first: usize) -> Result<Vec<f64>, PerplexityError> {
    let rows = logits.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    Ok((first..tokens.len() - 1)
        .map(|j| {
            let row = &rows[j - first];
            let (max, log_sum) = log_softmax_shift(row);
            -(row[tokens[j + 1] as usize] as f64 - max - log_sum)
        })
        .collect())
}
