//! Quantized matrix multiplication: nsed's own blocked GEMM for the GGUF
//! weight formats of the roster and of the larger models' GGUFs (Q4_0, Q4_1,
//! Q5_0, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS, MXFP4).
//!
//! Weights are repacked once at load, replacing the GGUF blocks: 16 output
//! rows are interleaved so that 64 bytes hold 4 consecutive codes of each of
//! the 16 rows. One AVX-512 VNNI instruction (`vpdpbusd`) then advances all
//! 16 dot products by 4 elements against a broadcast activation word; the
//! 256-bit kernels do the same for 8 rows at a time. Every lane is one output
//! column, so nothing is reduced across lanes. Activations are quantized per
//! 32-element block to int8 with an f32 scale.
//!
//! **One result on every path and machine.** An output element is
//! `Σ_b fma(isum_b, s_b·dx_b, acc)` over its blocks `b` in order, where the
//! integer block sums are exact. Every kernel path ([`path::KernelPath`]:
//! portable, AVX2, AVX-VNNI, AVX-512 VNNI) computes the same integers and
//! then the same float operations in the same order, whether a row comes
//! alone (decode) or in a panel of several (prefill, batched decode), and
//! whichever thread owns its column group. So logits are bit-identical across paths, thread counts,
//! batch shapes and machines. The element-wise reference kernel in
//! `portable` is the oracle every path is tested against, bit for bit.
//!
//! The path is chosen at run time from the CPU's features ([`path::active`]),
//! so one binary built for baseline x86-64 is fast everywhere.

use candle_core::quantized::GgmlDType;
use half::f16;
use rayon::prelude::*;

/// `$rows::<F>(args…)` for the format's index `F` in [`Format::ALL`]: each
/// kernel is monomorphized per format, with no format dispatch in its loops.
macro_rules! by_format {
    ($format:expr, $rows:ident($($arg:expr),*)) => {
        match $format {
            Format::Q4_0 => $rows::<0>($($arg),*),
            Format::Q4_1 => $rows::<1>($($arg),*),
            Format::Q5_0 => $rows::<2>($($arg),*),
            Format::Q8_0 => $rows::<3>($($arg),*),
            Format::Q4K => $rows::<4>($($arg),*),
            Format::Q6K => $rows::<5>($($arg),*),
            Format::Q5K => $rows::<6>($($arg),*),
            Format::Q3K => $rows::<7>($($arg),*),
            Format::Q2K => $rows::<8>($($arg),*),
            Format::Iq4Nl => $rows::<9>($($arg),*),
            Format::Iq4Xs => $rows::<10>($($arg),*),
            Format::Mxfp4 => $rows::<11>($($arg),*),
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
pub mod float;
pub mod iq4;
pub mod mxfp4;
pub mod path;
mod portable;

pub use path::KernelPath;

/// Output rows interleaved per group (one 512-bit vector of f32 lanes).
const GROUP: usize = 16;
/// Elements per quantization block of the repacked layout.
const BLOCK: usize = 32;
/// Activation rows that share one unpacking of a weight block.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const ROW_TILE: usize = 4;
/// Column groups packed per batch of GGUF rows read at load.
const PACK_BATCH: usize = 32;

/// Why a matrix could not be packed or multiplied.
#[derive(Debug, thiserror::Error)]
pub enum QmmError {
    /// The row length is not a whole number of the format's blocks, or the data is not the
    /// size the shape needs.
    #[error(
        "a {format:?} matrix of {n}x{k} needs rows divisible by {block} elements and \
         {bytes} bytes of blocks, found {found}"
    )]
    Shape {
        /// The weights' block format.
        format: Format,
        /// Rows of the matrix (output features).
        n: usize,
        /// Row length in elements (input features).
        k: usize,
        /// Elements per GGUF block of the format (32, or 256 for k-quants).
        block: usize,
        /// Bytes of GGUF blocks the shape needs.
        bytes: usize,
        /// Bytes given (0 when the row length alone is wrong).
        found: usize,
    },
    /// Reading the GGUF blocks failed (an I/O error, or the file ends early).
    #[error("reading the weight blocks: {0}")]
    Read(std::io::Error),
    /// The activations are not whole rows of the matrix's row length (or that length is not
    /// a multiple of 32).
    #[error("activations have {got} elements, not a multiple of the row length {k}")]
    Activations {
        /// Activation elements given.
        got: usize,
        /// The row length in elements.
        k: usize,
    },
    /// The kernel path asked for needs instructions this CPU lacks.
    #[error("the {0} kernel path needs instructions this CPU lacks")]
    PathUnavailable(KernelPath),
}

/// The GGUF block formats with a repacked kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// 4-bit codes, one f16 scale per 32 weights.
    Q4_0,
    /// 4-bit codes, an f16 scale and minimum per 32 weights.
    Q4_1,
    /// 5-bit codes, one f16 scale per 32 weights.
    Q5_0,
    /// 8-bit codes, one f16 scale per 32 weights.
    Q8_0,
    /// 4-bit k-quant: 256-weight super-blocks of eight 32-weight blocks with 6-bit scales
    /// and minimums.
    Q4K,
    /// 6-bit k-quant: 256-weight super-blocks of sixteen 16-weight blocks with 8-bit scales.
    Q6K,
    /// 5-bit k-quant: Q4_K's super-block with a fifth bit per weight.
    Q5K,
    /// 3-bit k-quant: sixteen 16-weight blocks with 6-bit signed scales, one f16 scale.
    Q3K,
    /// 2-bit k-quant: sixteen 16-weight blocks, each with a 4-bit scale and a 4-bit
    /// minimum, and f16 scales for both.
    Q2K,
    /// 4-bit indices into a fixed non-linear table of 16 int8 values, one f16 scale per
    /// 32 weights (llama.cpp's `IQ4_NL`, GGML type 20, which candle lacks).
    Iq4Nl,
    /// IQ4_NL's table in 256-weight super-blocks of eight 32-weight blocks with 6-bit
    /// scales (`IQ4_XS`, GGML type 23).
    Iq4Xs,
    /// OCP microscaling FP4 (GGML type 39, GPT-OSS's experts): 32 E2M1 values
    /// (a 16-entry table, doubled to integers) and one E8M0 power-of-two scale.
    Mxfp4,
}

/// The sixteen values an IQ4_NL / IQ4_XS index selects (the format's definition).
pub const IQ4_VALUES: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// The E2M1 values of MXFP4 doubled to integers (ggml's `kvalues_mxfp4`);
/// the block scale is halved to match ([`e8m0_half`]).
pub const MXFP4_VALUES: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// A table of values as the kernels' unsigned codes (value + 128), which the
/// offset 128 turns back into the values.
const fn lut_codes(values: [i8; 16]) -> [u8; 16] {
    let mut codes = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        codes[i] = (values[i] as i16 + 128) as u8;
        i += 1;
    }
    codes
}

/// [`IQ4_VALUES`] as codes.
const IQ4_CODES: [u8; 16] = lut_codes(IQ4_VALUES);
/// [`MXFP4_VALUES`] as codes.
const MXFP4_CODES: [u8; 16] = lut_codes(MXFP4_VALUES);

/// `2^(e − 128)`: half an E8M0 scale, exactly (subnormal for `e < 2`), as
/// ggml's `ggml_e8m0_to_fp32_half`.
#[inline(always)]
pub fn e8m0_half(e: u8) -> f32 {
    let bits = if e < 2 {
        0x0020_0000u32 << e
    } else {
        (u32::from(e) - 1) << 23
    };
    f32::from_bits(bits)
}

/// How a block's codes are stored after repacking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codes {
    /// Two 4-bit codes per byte.
    Nibble,
    /// Nibbles plus a 64-byte plane of fifth bits (see `put_block`).
    Nibble5,
    /// Nibbles plus two such planes, for the fifth and sixth bits.
    Nibble6,
    /// Nibbles that index [`IQ4_CODES`]: after the lookup, one code per byte.
    Lut,
    /// One code per byte.
    Byte,
}

impl Codes {
    /// Bit planes (64 bytes each) above the nibbles: bits 4 and 5.
    #[inline(always)]
    fn planes(self) -> usize {
        match self {
            Self::Nibble5 => 1,
            Self::Nibble6 => 2,
            Self::Nibble | Self::Byte | Self::Lut => 0,
        }
    }
}

impl Format {
    const ALL: [Self; 12] = [
        Self::Q4_0,
        Self::Q4_1,
        Self::Q5_0,
        Self::Q8_0,
        Self::Q4K,
        Self::Q6K,
        Self::Q5K,
        Self::Q3K,
        Self::Q2K,
        Self::Iq4Nl,
        Self::Iq4Xs,
        Self::Mxfp4,
    ];

    /// The format of index `id` in [`Format::ALL`] (const-generic kernels).
    #[inline(always)]
    const fn from_id(id: usize) -> Self {
        Self::ALL[id]
    }

    /// The format of a ggml type; `None` when no repacked kernel exists for it.
    pub fn from_ggml(dtype: GgmlDType) -> Option<Self> {
        Some(match dtype {
            GgmlDType::Q4_0 => Self::Q4_0,
            GgmlDType::Q4_1 => Self::Q4_1,
            GgmlDType::Q5_0 => Self::Q5_0,
            GgmlDType::Q8_0 => Self::Q8_0,
            GgmlDType::Q4K => Self::Q4K,
            GgmlDType::Q6K => Self::Q6K,
            GgmlDType::Q5K => Self::Q5K,
            GgmlDType::Q3K => Self::Q3K,
            GgmlDType::Q2K => Self::Q2K,
            _ => return None,
        })
    }

    /// The GGML type id.
    pub fn ggml_id(self) -> u32 {
        match self {
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q5_0 => 6,
            Self::Q8_0 => 8,
            Self::Q2K => 10,
            Self::Q3K => 11,
            Self::Q4K => 12,
            Self::Q5K => 13,
            Self::Q6K => 14,
            Self::Iq4Nl => 20,
            Self::Iq4Xs => 23,
            Self::Mxfp4 => 39,
        }
    }

    /// The format of GGML type id `id`; `None` when no repacked kernel exists for it.
    pub fn from_ggml_id(id: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.ggml_id() == id)
    }

    /// Elements per GGUF block.
    pub fn source_block(self) -> usize {
        match self {
            Self::Q4K | Self::Q6K | Self::Q5K | Self::Q3K | Self::Q2K | Self::Iq4Xs => 256,
            _ => 32,
        }
    }

    /// Bytes per GGUF block.
    pub fn source_bytes(self) -> usize {
        match self {
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q5_0 => 22,
            Self::Q8_0 => 34,
            Self::Q4K => 144,
            Self::Q6K => 210,
            Self::Q5K => 176,
            Self::Q3K => 110,
            Self::Q2K => 84,
            Self::Iq4Nl => 18,
            Self::Iq4Xs => 136,
            Self::Mxfp4 => 17,
        }
    }

    #[inline(always)]
    fn codes(self) -> Codes {
        match self {
            Self::Q4_0 | Self::Q4_1 | Self::Q4K | Self::Q3K | Self::Q2K => Codes::Nibble,
            Self::Q5_0 | Self::Q5K => Codes::Nibble5,
            Self::Q6K => Codes::Nibble6,
            Self::Q8_0 => Codes::Byte,
            Self::Iq4Nl | Self::Iq4Xs | Self::Mxfp4 => Codes::Lut,
        }
    }

    /// The code of weight value zero: value = scale · (code − offset) [+ min].
    #[inline(always)]
    fn offset(self) -> i32 {
        match self {
            Self::Q4_0 => 8,
            Self::Q5_0 => 16,
            Self::Q8_0 | Self::Iq4Nl | Self::Iq4Xs | Self::Mxfp4 => 128,
            Self::Q6K => 32,
            Self::Q3K => 4,
            Self::Q4_1 | Self::Q4K | Self::Q5K | Self::Q2K => 0,
        }
    }

    /// Q4_1, Q4_K and Q5_K add a per-block minimum.
    #[inline(always)]
    fn has_min(self) -> bool {
        matches!(self, Self::Q4_1 | Self::Q4K | Self::Q5K)
    }

    /// Q6_K, Q3_K and Q2_K scale each half (16 elements) of a block separately.
    #[inline(always)]
    fn halves(self) -> bool {
        matches!(self, Self::Q6K | Self::Q3K | Self::Q2K)
    }

    /// Q2_K also gives each half its own minimum.
    #[inline(always)]
    fn half_mins(self) -> bool {
        self == Self::Q2K
    }

    /// Bytes of per-row metadata per 32-element block.
    #[inline(always)]
    fn block_meta(self) -> usize {
        match self {
            Self::Q4_1 => 4,
            Self::Iq4Xs | Self::Mxfp4 => 1,
            _ => 2,
        }
    }

    /// Width in bytes of each block metadata field: f16 scales and mins of
    /// the 32-element formats, 6-bit / int8 sub-scales of the K-quants.
    #[inline(always)]
    fn block_width(self) -> usize {
        match self {
            Self::Q4K
            | Self::Q6K
            | Self::Q5K
            | Self::Q3K
            | Self::Q2K
            | Self::Iq4Xs
            | Self::Mxfp4 => 1,
            _ => 2,
        }
    }

    /// Bytes of per-row metadata per 256-element super-block (K-quants).
    #[inline(always)]
    fn super_meta(self) -> usize {
        match self {
            Self::Q4K | Self::Q5K | Self::Q2K => 4,
            Self::Q6K | Self::Q3K | Self::Iq4Xs => 2,
            _ => 0,
        }
    }

    /// The table a [`Codes::Lut`] format's indices select, as codes.
    #[inline(always)]
    fn lut(self) -> &'static [u8; 16] {
        match self {
            Self::Mxfp4 => &MXFP4_CODES,
            _ => &IQ4_CODES,
        }
    }

    /// Bytes of repacked codes per (group, block).
    #[inline(always)]
    fn code_bytes(self) -> usize {
        match self.codes() {
            Codes::Nibble | Codes::Lut => GROUP * BLOCK / 2,
            Codes::Nibble5 => GROUP * BLOCK / 2 + 8 * 8,
            Codes::Nibble6 => GROUP * BLOCK / 2 + 2 * 8 * 8,
            Codes::Byte => GROUP * BLOCK,
        }
    }
}

/// One row of GGUF blocks, decoded: a code per element and the metadata.
struct DecodedRow {
    codes: Vec<u8>,
    block_meta: Vec<u8>,
    super_meta: Vec<u8>,
}

fn decode_row(format: Format, src: &[u8], k: usize) -> DecodedRow {
    let mut row = DecodedRow {
        codes: vec![0; k],
        block_meta: Vec::with_capacity(k / BLOCK * format.block_meta()),
        super_meta: Vec::with_capacity(k / 256 * format.super_meta()),
    };
    let (sb, bytes) = (format.source_block(), format.source_bytes());
    for (i, blk) in src.chunks_exact(bytes).enumerate() {
        let codes = &mut row.codes[i * sb..(i + 1) * sb];
        match format {
            Format::Q4_0 | Format::Q4_1 | Format::Iq4Nl => {
                let at = if format == Format::Q4_1 { 4 } else { 2 };
                nibbles_32(&blk[at..at + 16], codes);
                row.block_meta.extend_from_slice(&blk[..at]);
            }
            Format::Q5_0 => {
                let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
                nibbles_32(&blk[6..22], codes);
                for (j, c) in codes.iter_mut().enumerate() {
                    *c |= (((qh >> j) & 1) as u8) << 4;
                }
                row.block_meta.extend_from_slice(&blk[..2]);
            }
            Format::Mxfp4 => {
                nibbles_32(&blk[1..17], codes);
                row.block_meta.push(blk[0]);
            }
            Format::Q8_0 => {
                for (c, &q) in codes.iter_mut().zip(&blk[2..34]) {
                    *c = q ^ 0x80;
                }
                row.block_meta.extend_from_slice(&blk[..2]);
            }
            Format::Q4K => decode_q4k(blk, codes, &mut row.block_meta, &mut row.super_meta),
            Format::Q6K => decode_q6k(blk, codes, &mut row.block_meta, &mut row.super_meta),
            Format::Q5K => decode_q5k(blk, codes, &mut row.block_meta, &mut row.super_meta),
            Format::Q3K => decode_q3k(blk, codes, &mut row.block_meta, &mut row.super_meta),
            Format::Q2K => decode_q2k(blk, codes, &mut row.block_meta, &mut row.super_meta),
            Format::Iq4Xs => decode_iq4xs(blk, codes, &mut row.block_meta, &mut row.super_meta),
        }
    }
    row
}

/// GGUF's 32-element nibble layout: element j is the low nibble of byte j,
/// element j + 16 its high nibble.
fn nibbles_32(qs: &[u8], codes: &mut [u8]) {
    for (j, &q) in qs.iter().enumerate() {
        codes[j] = q & 15;
        codes[j + 16] = q >> 4;
    }
}

/// Q4_K: d, dmin (f16), 12 bytes of 6-bit scales and mins for 8 sub-blocks,
/// 128 bytes of nibbles (64-element chunks: low nibbles, then high).
fn decode_q4k(blk: &[u8], codes: &mut [u8], block_meta: &mut Vec<u8>, super_meta: &mut Vec<u8>) {
    super_meta.extend_from_slice(&blk[..4]);
    k4_scales_mins(&blk[4..16], block_meta);
    for c in 0..4 {
        let q = &blk[16 + 32 * c..16 + 32 * (c + 1)];
        for (l, &byte) in q.iter().enumerate() {
            codes[64 * c + l] = byte & 15;
            codes[64 * c + 32 + l] = byte >> 4;
        }
    }
}

/// Q5_K: Q4_K's d, dmin and scales, 32 bytes of fifth bits (bit 2c of byte l
/// for element 64c + l, bit 2c + 1 for element 64c + 32 + l), then Q4_K's
/// nibbles.
fn decode_q5k(blk: &[u8], codes: &mut [u8], block_meta: &mut Vec<u8>, super_meta: &mut Vec<u8>) {
    super_meta.extend_from_slice(&blk[..4]);
    k4_scales_mins(&blk[4..16], block_meta);
    let (qh, qs) = (&blk[16..48], &blk[48..176]);
    for c in 0..4 {
        let q = &qs[32 * c..32 * (c + 1)];
        for (l, (&byte, &high)) in q.iter().zip(qh).enumerate() {
            codes[64 * c + l] = (byte & 15) | (((high >> (2 * c)) & 1) << 4);
            codes[64 * c + 32 + l] = (byte >> 4) | (((high >> (2 * c + 1)) & 1) << 4);
        }
    }
}

/// Q3_K: 32 bytes of high bits, 64 of 2-bit low parts, 12 bytes of sixteen
/// 6-bit scales (stored + 32), d (f16). Element 128n + 32j + l has low bits
/// `(qs[32n + l] >> 2j) & 3` and high bit `hmask[l]` bit 4n + j; its value is
/// `code − 4` with code = low | high << 2.
fn decode_q3k(blk: &[u8], codes: &mut [u8], block_meta: &mut Vec<u8>, super_meta: &mut Vec<u8>) {
    let (hmask, qs, scales) = (&blk[..32], &blk[32..96], &blk[96..108]);
    for n in 0..2 {
        for j in 0..4 {
            for l in 0..32 {
                let low = (qs[32 * n + l] >> (2 * j)) & 3;
                let high = (hmask[l] >> (4 * n + j)) & 1;
                codes[128 * n + 32 * j + l] = low | (high << 2);
            }
        }
    }
    for i in 0..16 {
        let low = if i < 8 {
            scales[i] & 15
        } else {
            scales[i - 8] >> 4
        };
        let high = (scales[8 + i % 4] >> (2 * (i / 4))) & 3;
        block_meta.push(((low | (high << 4)) as i8).wrapping_sub(32) as u8);
    }
    super_meta.extend_from_slice(&blk[108..110]);
}

/// Q2_K: sixteen bytes of 4-bit scale (low) and minimum (high) per 16
/// elements, 64 bytes of 2-bit codes (element 128n + 32j + l is
/// `(qs[32n + l] >> 2j) & 3`), then d and dmin (f16).
fn decode_q2k(blk: &[u8], codes: &mut [u8], block_meta: &mut Vec<u8>, super_meta: &mut Vec<u8>) {
    let (scales, qs) = (&blk[..16], &blk[16..80]);
    for n in 0..2 {
        for j in 0..4 {
            for l in 0..32 {
                codes[128 * n + 32 * j + l] = (qs[32 * n + l] >> (2 * j)) & 3;
            }
        }
    }
    block_meta.extend_from_slice(scales);
    super_meta.extend_from_slice(&blk[80..84]);
}

/// IQ4_XS: d (f16), the high 2 bits of eight 6-bit scales (u16), their low
/// nibbles (4 bytes), then eight Q4_0-style 16-byte runs of table indices.
fn decode_iq4xs(blk: &[u8], codes: &mut [u8], block_meta: &mut Vec<u8>, super_meta: &mut Vec<u8>) {
    super_meta.extend_from_slice(&blk[..2]);
    let high = u16::from_le_bytes([blk[2], blk[3]]);
    let (low, qs) = (&blk[4..8], &blk[8..136]);
    for b in 0..8 {
        let ls = ((low[b / 2] >> (4 * (b % 2))) & 15) | ((((high >> (2 * b)) & 3) as u8) << 4);
        block_meta.push((ls as i8).wrapping_sub(32) as u8);
        nibbles_32(&qs[16 * b..16 * (b + 1)], &mut codes[32 * b..32 * (b + 1)]);
    }
}

/// The 6-bit scales and minimums of Q4_K and Q5_K's eight sub-blocks, as
/// (scale, min) byte pairs.
fn k4_scales_mins(scales: &[u8], block_meta: &mut Vec<u8>) {
    for j in 0..8 {
        let (sc, m) = if j < 4 {
            (scales[j] & 63, scales[j + 4] & 63)
        } else {
            (
                (scales[j + 4] & 15) | ((scales[j - 4] >> 6) << 4),
                (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4),
            )
        };
        block_meta.extend_from_slice(&[sc, m]);
    }
}

/// Q6_K: 128 bytes of low nibbles, 64 of 2-bit high parts, 16 int8 scales
/// (one per 16 elements), d (f16).
fn decode_q6k(blk: &[u8], codes: &mut [u8], block_meta: &mut Vec<u8>, super_meta: &mut Vec<u8>) {
    let (ql, qh, scales) = (&blk[..128], &blk[128..192], &blk[192..208]);
    for half in 0..2 {
        let (ql, qh) = (&ql[64 * half..], &qh[32 * half..]);
        let out = &mut codes[128 * half..128 * (half + 1)];
        for l in 0..32 {
            out[l] = (ql[l] & 15) | ((qh[l] & 3) << 4);
            out[l + 32] = (ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4);
            out[l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
            out[l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
        }
    }
    block_meta.extend_from_slice(scales);
    super_meta.extend_from_slice(&blk[208..210]);
}

/// A weight matrix `[n, k]` repacked for the kernels; it replaces the GGUF
/// blocks in memory (about the same size: 4.6 bits per Q4_K weight, 6.6 per
/// Q6_K, 5.0 per Q4_0, 5.5 per Q4_1 and Q5_0, 8.5 per Q8_0).
pub struct PackedMatrix {
    format: Format,
    n: usize,
    k: usize,
    /// Per (group, block): the codes of 16 rows × 32 elements.
    codes: Vec<u8>,
    /// Per (group, block): each metadata byte field-major over the 16 rows.
    meta: Vec<u8>,
    /// Per (group, super-block): likewise, for K-quants.
    supers: Vec<u8>,
}

impl PackedMatrix {
    /// Repack the raw GGUF blocks of an `[n, k]` matrix.
    pub fn pack(format: Format, n: usize, k: usize, data: &[u8]) -> Result<Self, QmmError> {
        let expected = n * (k / format.source_block()) * format.source_bytes();
        if data.len() != expected {
            return Err(QmmError::Shape {
                format,
                n,
                k,
                block: format.source_block(),
                bytes: expected,
                found: data.len(),
            });
        }
        Self::from_reader(format, n, k, &mut &data[..])
    }

    /// Repack an `[n, k]` matrix read row by row from `src` (e.g. a GGUF file
    /// positioned at the tensor): only one row of GGUF blocks is held at a
    /// time, so loading never needs two copies of a matrix.
    pub fn from_reader(
        format: Format,
        n: usize,
        k: usize,
        src: &mut impl std::io::Read,
    ) -> Result<Self, QmmError> {
        let sb = format.source_block();
        if n == 0 || k == 0 || !k.is_multiple_of(sb) {
            return Err(QmmError::Shape {
                format,
                n,
                k,
                block: sb,
                bytes: n * (k / sb.max(1)) * format.source_bytes(),
                found: 0,
            });
        }
        let row_bytes = k / sb * format.source_bytes();
        let (groups, nb, ns) = (n.div_ceil(GROUP), k / BLOCK, k / 256);
        let (bm, sm) = (format.block_meta(), format.super_meta());
        let mut packed = Self {
            format,
            n,
            k,
            codes: vec![0; groups * nb * format.code_bytes()],
            meta: vec![0; groups * nb * GROUP * bm],
            supers: vec![0; groups * ns * GROUP * sm],
        };
        let per_group = (nb * format.code_bytes(), nb * GROUP * bm, ns * GROUP * sm);
        // A batch of groups' GGUF rows is read, then its groups are packed in
        // parallel (each writes only its own records).
        let mut raw = vec![0u8; PACK_BATCH * GROUP * row_bytes];
        for first in (0..groups).step_by(PACK_BATCH) {
            let count = PACK_BATCH.min(groups - first);
            let raw = &mut raw[..(n - first * GROUP).min(count * GROUP) * row_bytes];
            src.read_exact(raw).map_err(QmmError::Read)?;
            let span = |len: usize| first * len..(first + count) * len;
            let codes = per_group_slices(&mut packed.codes[span(per_group.0)], per_group.0, count);
            let meta = per_group_slices(&mut packed.meta[span(per_group.1)], per_group.1, count);
            let supers =
                per_group_slices(&mut packed.supers[span(per_group.2)], per_group.2, count);
            codes
                .into_par_iter()
                .zip(meta)
                .zip(supers)
                .zip(raw.par_chunks(GROUP * row_bytes))
                .for_each(|(((codes, meta), supers), rows)| {
                    pack_group(format, k, rows, codes, meta, supers)
                });
        }
        Ok(packed)
    }

    /// Bytes an `[n, k]` matrix of `format` takes packed (what
    /// [`PackedMatrix::size_bytes`] will report), for sizing before loading.
    pub fn packed_bytes(format: Format, n: usize, k: usize) -> usize {
        let (groups, nb, ns) = (n.div_ceil(GROUP), k / BLOCK, k / 256);
        groups
            * (nb * format.code_bytes()
                + nb * GROUP * format.block_meta()
                + ns * GROUP * format.super_meta())
    }

    /// Rows `n` of the matrix (output features).
    pub fn rows(&self) -> usize {
        self.n
    }

    /// Row length `k` in elements (input features).
    pub fn cols(&self) -> usize {
        self.k
    }

    /// The GGUF block format the weights came in.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Bytes held.
    pub fn size_bytes(&self) -> usize {
        self.codes.len() + self.meta.len() + self.supers.len()
    }

    /// Field `f` (of `width` bytes) of one lane in a (group, block) record.
    fn field(buf: &[u8], f: usize, width: usize, lane: usize) -> &[u8] {
        &buf[f * width * GROUP + lane * width..][..width]
    }

    fn code(&self, r: usize, e: usize) -> u8 {
        let (g, lane, b) = (r / GROUP, r % GROUP, e / BLOCK);
        let at = (g * (self.k / BLOCK) + b) * self.format.code_bytes();
        get_code(
            self.format,
            &self.codes[at..at + self.format.code_bytes()],
            lane,
            e % BLOCK,
        )
    }

    /// The scales of row `r`, block `b`: (first half, second half, min, second
    /// half's min); the first min is the whole block's where halves share it.
    fn block_scales(&self, r: usize, b: usize) -> Scales {
        let (g, lane, nb) = (r / GROUP, r % GROUP, self.k / BLOCK);
        let bm = self.format.block_meta();
        let meta = &self.meta[(g * nb + b) * GROUP * bm..][..GROUP * bm];
        let half = |buf: &[u8], f: usize| {
            let v = Self::field(buf, f, 2, lane);
            f16::from_le_bytes([v[0], v[1]]).to_f32()
        };
        let byte = |f: usize| Self::field(meta, f, 1, lane)[0];
        let supers = || {
            let sm = self.format.super_meta();
            &self.supers[(g * (self.k / 256) + b / 8) * GROUP * sm..][..GROUP * sm]
        };
        match self.format {
            Format::Q4_0 | Format::Q5_0 | Format::Q8_0 | Format::Iq4Nl => {
                let d = half(meta, 0);
                (d, d, 0.0, 0.0)
            }
            Format::Q4_1 => (half(meta, 0), 0.0, half(meta, 1), 0.0),
            Format::Q4K | Format::Q5K => {
                let (d, dmin) = (half(supers(), 0), half(supers(), 1));
                (d * byte(0) as f32, 0.0, 0.0 - dmin * byte(1) as f32, 0.0)
            }
            Format::Q6K | Format::Q3K => {
                let d = half(supers(), 0);
                (d * byte(0) as i8 as f32, d * byte(1) as i8 as f32, 0.0, 0.0)
            }
            Format::Q2K => {
                let (d, dmin) = (half(supers(), 0), half(supers(), 1));
                let (a, b) = (byte(0), byte(1));
                (
                    d * (a & 15) as f32,
                    d * (b & 15) as f32,
                    0.0 - dmin * (a >> 4) as f32,
                    0.0 - dmin * (b >> 4) as f32,
                )
            }
            Format::Iq4Xs => {
                let d = half(supers(), 0);
                let s = d * byte(0) as i8 as f32;
                (s, s, 0.0, 0.0)
            }
            Format::Mxfp4 => {
                let s = e8m0_half(byte(0));
                (s, s, 0.0, 0.0)
            }
        }
    }

    /// Row `r` dequantized to f32 (embedding gathers, tests).
    pub fn row_f32(&self, r: usize, out: &mut [f32]) {
        let off = self.format.offset();
        for b in 0..self.k / BLOCK {
            let (s0, s1, m0, m1) = self.block_scales(r, b);
            for e in 0..BLOCK {
                let second = self.format.halves() && e >= 16;
                let s = if second { s1 } else { s0 };
                let min = if second && self.format.half_mins() {
                    m1
                } else {
                    m0
                };
                let q = (self.code(r, b * BLOCK + e) as i32 - off) as f32;
                out[b * BLOCK + e] = if self.format.has_min() || self.format.half_mins() {
                    q * s + min
                } else {
                    q * s
                };
            }
        }
    }
}

/// Per-lane block scales: (first half, second half, min, second half's min).
type Scales = (f32, f32, f32, f32);

/// Write one row's record of `width`-byte fields into a group record, where
/// each field holds the 16 lanes contiguously (so a vector load reads it).
fn spread(dst: &mut [u8], record: &[u8], width: usize, lane: usize) {
    for (f, field) in record.chunks_exact(width).enumerate() {
        dst[f * width * GROUP + lane * width..][..width].copy_from_slice(field);
    }
}

/// Codes of (group, block) are laid out by 4-element step `t` (0..8): the
/// 64 bytes of step t hold, at byte 4·lane + i, element 4t + i of row `lane`.
/// Nibbles pack step t (low) with step t + 4 (high) in 256 bytes. The fifth
/// (and Q6_K's sixth) bit follow as 64-byte planes: plane byte 4·lane + i
/// holds, at bit t, the extra bit of element 4t + i. One vector load of a
/// plane then serves all 8 steps (a shift and a mask per step).
/// `put_block` writes row `lane`'s 32 codes of one block (`block`).
fn put_block(codes: Codes, dst: &mut [u8], lane: usize, block: &[u8]) {
    let step = |t: usize| {
        u32::from_le_bytes([
            block[4 * t],
            block[4 * t + 1],
            block[4 * t + 2],
            block[4 * t + 3],
        ])
    };
    let mut put = |at: usize, word: u32| {
        dst[at + 4 * lane..][..4].copy_from_slice(&word.to_le_bytes());
    };
    match codes {
        Codes::Byte => (0..8).for_each(|t| put(t * 64, step(t))),
        Codes::Nibble | Codes::Nibble5 | Codes::Nibble6 | Codes::Lut => {
            const LOW: u32 = 0x0F0F_0F0F;
            for t in 0..4 {
                put(t * 64, (step(t) & LOW) | ((step(t + 4) & LOW) << 4));
            }
            for plane in 0..codes.planes() {
                // Byte i of the plane word gets, at bit t, bit 4 + plane of
                // element 4t + i.
                let bits = (0..8).fold(0u32, |acc, t| {
                    acc | (((step(t) >> (4 + plane)) & 0x0101_0101) << t)
                });
                put(256 + plane * 64, bits);
            }
        }
    }
}

/// `buf` cut into `count` slices of `len` bytes (empty ones when `len` is 0).
fn per_group_slices(buf: &mut [u8], len: usize, count: usize) -> Vec<&mut [u8]> {
    match len {
        0 => (0..count).map(|_| Default::default()).collect(),
        _ => buf.chunks_mut(len).collect(),
    }
}

/// Pack one group's GGUF rows (up to 16 of `rows`, in order) into the
/// group's code, block-metadata and super-block records.
fn pack_group(
    format: Format,
    k: usize,
    rows: &[u8],
    codes: &mut [u8],
    meta: &mut [u8],
    supers: &mut [u8],
) {
    let row_bytes = k / format.source_block() * format.source_bytes();
    let (nb, ns) = (k / BLOCK, k / 256);
    let (cb, bm, sm) = (
        format.code_bytes(),
        format.block_meta(),
        format.super_meta(),
    );
    for (lane, src) in rows.chunks_exact(row_bytes).enumerate() {
        let row = decode_row(format, src, k);
        for b in 0..nb {
            let block = &row.codes[b * BLOCK..][..BLOCK];
            put_block(format.codes(), &mut codes[b * cb..][..cb], lane, block);
            spread(
                &mut meta[b * GROUP * bm..][..GROUP * bm],
                &row.block_meta[b * bm..][..bm],
                format.block_width(),
                lane,
            );
        }
        for s in 0..ns.min(row.super_meta.len() / sm.max(1)) {
            let dst = &mut supers[s * GROUP * sm..][..GROUP * sm];
            spread(dst, &row.super_meta[s * sm..][..sm], 2, lane);
        }
    }
}

fn get_code(format: Format, src: &[u8], lane: usize, e: usize) -> u8 {
    let (t, i) = (e / 4, e % 4);
    let byte = 4 * lane + i;
    let codes = format.codes();
    match codes {
        Codes::Byte => src[t * 64 + byte],
        Codes::Lut => {
            let packed = src[(t % 4) * 64 + byte];
            format.lut()[usize::from(if t < 4 { packed & 15 } else { packed >> 4 })]
        }
        Codes::Nibble | Codes::Nibble5 | Codes::Nibble6 => {
            let packed = src[(t % 4) * 64 + byte];
            let mut code = if t < 4 { packed & 15 } else { packed >> 4 };
            for (plane, bit) in [(0, 16), (1, 32)].into_iter().take(codes.planes()) {
                if src[256 + plane * 64 + byte] & (1 << t) != 0 {
                    code |= bit;
                }
            }
            code
        }
    }
}

/// Activations quantized per 32-element block: int8 codes, the block's f32
/// scale, and the integer sums of each 16-element half.
pub struct QuantizedRows {
    m: usize,
    q: Vec<i8>,
    d: Vec<f32>,
    half_sums: Vec<i32>,
    /// Per block `d · Σq`, the multiplier of a block minimum (Q4_1, Q4_K):
    /// the same float product every kernel would form, made once.
    d_sum: Vec<f32>,
}

impl QuantizedRows {
    /// Quantize `x`, rows of `k` elements, to int8 per 32-element block; `k` must be a
    /// multiple of 32 and divide `x.len()`.
    pub fn quantize(x: &[f32], k: usize) -> Result<Self, QmmError> {
        if k == 0 || !k.is_multiple_of(BLOCK) || !x.len().is_multiple_of(k) {
            return Err(QmmError::Activations { got: x.len(), k });
        }
        let m = x.len() / k;
        let blocks = x.len() / BLOCK;
        let mut rows = Self {
            m,
            q: vec![0; x.len()],
            d: vec![0.0; blocks],
            half_sums: vec![0; 2 * blocks],
            d_sum: Vec::new(),
        };
        // Blocks are independent, so splitting them among threads cannot
        // change a bit; chunks of 64 blocks keep the tasks coarse.
        const CHUNK: usize = 64;
        let work = |(((xs, qs), ds), hs): BlockSlices| {
            for (((xb, qb), d), h) in xs
                .chunks_exact(BLOCK)
                .zip(qs.chunks_exact_mut(BLOCK))
                .zip(ds.iter_mut())
                .zip(hs.chunks_exact_mut(2))
            {
                *d = quantize_block(xb, qb, h);
            }
        };
        if x.len() < 1 << 15 {
            work((
                ((x, &mut rows.q[..]), &mut rows.d[..]),
                &mut rows.half_sums[..],
            ));
        } else {
            x.par_chunks(CHUNK * BLOCK)
                .zip(rows.q.par_chunks_mut(CHUNK * BLOCK))
                .zip(rows.d.par_chunks_mut(CHUNK))
                .zip(rows.half_sums.par_chunks_mut(2 * CHUNK))
                .for_each(work);
        }
        rows.d_sum = (rows.d.iter().zip(rows.half_sums.chunks_exact(2)))
            .map(|(&d, hs)| d * (hs[0] + hs[1]) as f32)
            .collect();
        Ok(rows)
    }
}

/// Matching slices of activations, codes, scales and half sums.
type BlockSlices<'a> = (((&'a [f32], &'a mut [i8]), &'a mut [f32]), &'a mut [i32]);

/// One block to int8 codes (round half to even),
/// the sums of its two halves; returns the scale.
#[inline]
fn quantize_block(xb: &[f32], qb: &mut [i8], half_sums: &mut [i32]) -> f32 {
    let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d > 0.0 { 1.0 / d } else { 0.0 };
    // Round half to even by adding and subtracting 1.5·2^23: exact for
    // |y| ≤ 2^22, so after the clamp it equals `round_ties_even` bit for
    // bit, and it vectorizes on every target (`roundeven` needs SSE4.1 on
    // x86-64 and is a libm call without it).
    const ROUNDER: f32 = 12_582_912.0;
    for (q, &v) in qb.iter_mut().zip(xb) {
        let y = (v * id).clamp(-127.0, 127.0);
        *q = ((y + ROUNDER) - ROUNDER) as i8;
    }
    for (sum, half) in half_sums.iter_mut().zip(qb.chunks_exact(16)) {
        *sum = half.iter().map(|&q| q as i32).sum();
    }
    d
}

/// `x · wᵀ`: `[m, k] × [n, k]ᵀ → [m, n]`, row-major f32, parallel over
/// column groups, on the process's kernel path ([`path::active`]).
/// Bit-identical for any path, thread count and `m`.
pub fn matmul(w: &PackedMatrix, x: &[f32]) -> Result<Vec<f32>, QmmError> {
    matmul_with(path::active(), w, x)
}

/// [`matmul`] on a given kernel path (tests and benchmarks compare paths).
pub fn matmul_with(path: KernelPath, w: &PackedMatrix, x: &[f32]) -> Result<Vec<f32>, QmmError> {
    if !path.is_available() {
        return Err(QmmError::PathUnavailable(path));
    }
    let acts = QuantizedRows::quantize(x, w.k)?;
    let (m, n) = (acts.m, w.n);
    let groups = n.div_ceil(GROUP);
    let mut out = vec![0f32; m * groups * GROUP];
    // Each task owns whole column groups: out is laid out [group][m][16] so
    // tasks write disjoint contiguous slices; transposed to [m][n] below.
    let chunk = groups.div_ceil(4 * rayon::current_num_threads()).max(1);
    let per_group = m * GROUP;
    let work = |(c, slice): (usize, &mut [f32])| {
        for (i, dst) in slice.chunks_exact_mut(per_group).enumerate() {
            group_kernel(path, w, &acts, c * chunk + i, dst);
        }
    };
    if m * n * w.k < PARALLEL_MIN_MACS {
        out.chunks_mut(chunk * per_group).enumerate().for_each(work);
    } else {
        out.par_chunks_mut(chunk * per_group)
            .enumerate()
            .for_each(work);
    }
    let mut y = vec![0f32; m * n];
    for g in 0..groups {
        let cols = GROUP.min(n - g * GROUP);
        for i in 0..m {
            let src = &out[(g * m + i) * GROUP..][..cols];
            y[i * n + g * GROUP..][..cols].copy_from_slice(src);
        }
    }
    Ok(y)
}

/// Fill `out`, `m` rows of `n` outputs, with `f(row, column)` in parallel
/// tasks of `per_task` outputs: a decode step's single row still uses every
/// thread, and each output is computed alone, so the split cannot change a
/// bit (the float products, which nsed runs without packing).
pub(crate) fn each_output(
    out: &mut [f32],
    n: usize,
    per_task: usize,
    f: impl Fn(usize, usize) -> f32 + Sync,
) {
    out.par_chunks_mut(per_task)
        .enumerate()
        .for_each(|(t, dst)| {
            let first = t * per_task;
            for (i, o) in dst.iter_mut().enumerate() {
                *o = f((first + i) / n, (first + i) % n);
            }
        });
}

/// Below this many multiply-adds, a product runs on the calling thread.
const PARALLEL_MIN_MACS: usize = 1 << 16;

/// All activation rows against one column group on `path`; `dst` is `[m][16]`.
/// The caller has checked that the CPU can run `path`.
fn group_kernel(
    path: KernelPath,
    w: &PackedMatrix,
    acts: &QuantizedRows,
    g: usize,
    dst: &mut [f32],
) {
    match path {
        // `matmul_with` checked `path.is_available()`, which detects exactly
        // the features each entry point requires.
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX-512 F, BW and VNNI were detected (above).
        KernelPath::Avx512Vnni => unsafe { avx512::group_kernel(w, acts, g, dst) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2, FMA, F16C and AVX-VNNI were detected (above).
        KernelPath::AvxVnni => unsafe { avx2::group_kernel_vnni(w, acts, g, dst) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2, FMA and F16C were detected (above).
        KernelPath::Avx2 => unsafe { avx2::group_kernel(w, acts, g, dst) },
        _ => portable::group_kernel(w, acts, g, dst),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::QTensor;
    use candle_core::{Device, Tensor};

    use crate::testing::pseudo_random as values;

    const FORMATS: [Format; 12] = Format::ALL;

    /// The candle dtype of a format candle can quantize (not the IQ4 and
    /// MXFP4 formats, which candle lacks).
    fn candle_dtype(format: Format) -> Option<GgmlDType> {
        crate::gguf::ggml_dtype(format.ggml_id())
    }

    /// A GGUF-quantized `[n, k]` matrix, its packed form and its dequantized
    /// values: candle's quantizer and dequantizer where candle has the format,
    /// else nsed's IQ4 quantizer and the packed rows (whose dequantization
    /// the committed ggml vectors check).
    fn matrix(format: Format, n: usize, k: usize) -> (PackedMatrix, Vec<f32>) {
        let x = values(n * k, format.ggml_id() as u64 + 7);
        let Some(dtype) = candle_dtype(format) else {
            let blocks = match format {
                Format::Iq4Nl => iq4::quantize_iq4_nl(&x),
                Format::Mxfp4 => mxfp4::quantize_row(&x),
                _ => iq4::quantize_iq4_xs(&x),
            };
            let packed = PackedMatrix::pack(format, n, k, &blocks).unwrap();
            let mut deq = vec![0f32; n * k];
            for (r, row) in deq.chunks_exact_mut(k).enumerate() {
                packed.row_f32(r, row);
            }
            return (packed, deq);
        };
        let w = Tensor::from_vec(x, (n, k), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, dtype).unwrap();
        let deq = q
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let packed = PackedMatrix::pack(format, n, k, &q.data().unwrap()).unwrap();
        (packed, deq)
    }

    #[test]
    fn packed_rows_dequantize_like_candle() {
        for dtype in FORMATS.into_iter().filter(|&f| candle_dtype(f).is_some()) {
            let (n, k) = (40, 512);
            let (p, deq) = matrix(dtype, n, k);
            assert_eq!(PackedMatrix::packed_bytes(dtype, n, k), p.size_bytes());
            let mut row = vec![0f32; k];
            for r in 0..n {
                p.row_f32(r, &mut row);
                for (e, (a, b)) in row.iter().zip(&deq[r * k..(r + 1) * k]).enumerate() {
                    assert!(
                        (a - b).abs() <= 1e-6 * b.abs().max(1e-3),
                        "{dtype:?} row {r} elem {e}: {a} vs {b}"
                    );
                }
            }
        }
    }

    /// ggml's `to_float` of random blocks of every format
    /// (`scripts/ggml-dequant-vectors.py`): nsed's packed values equal them
    /// bit for bit, but for the sign of a zero (ggml's `d·q − m` gives −0
    /// where nsed's `q·d + (0 − m)` gives +0); a changed block byte changes a
    /// value (negative control).
    #[test]
    fn dequant_vectors_equal_ggmls() {
        let text = include_str!("../../../../tests/data/golden/dequant/ggml.json");
        let doc: serde_json::Value = serde_json::from_str(text).unwrap();
        let hex = |s: &str| -> Vec<u8> {
            (0..s.len() / 2)
                .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
                .collect()
        };
        let formats = doc["formats"].as_object().unwrap();
        assert_eq!(formats.len(), Format::ALL.len());
        for (name, v) in formats {
            let format = Format::from_ggml_id(v["ggml_type"].as_u64().unwrap() as u32).unwrap();
            let blocks = hex(v["blocks"].as_str().unwrap());
            let want: Vec<u32> = hex(v["values_f32le"].as_str().unwrap())
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let row_of = |blocks: &[u8]| {
                let p = PackedMatrix::pack(format, 1, want.len(), blocks).unwrap();
                let mut row = vec![0f32; want.len()];
                p.row_f32(0, &mut row);
                // ±0 as one value.
                row.iter()
                    .map(|v| (v + 0.0).to_bits())
                    .collect::<Vec<u32>>()
            };
            let want: Vec<u32> = want
                .iter()
                .map(|&b| (f32::from_bits(b) + 0.0).to_bits())
                .collect();
            let got = row_of(&blocks);
            for (e, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(
                    g,
                    w,
                    "{name} element {e}: {} vs ggml {}",
                    f32::from_bits(*g),
                    f32::from_bits(*w)
                );
            }
            let mut changed = blocks.clone();
            let last = changed.len() - 1;
            changed[last] ^= 0x11;
            assert_ne!(row_of(&changed), want, "{name}: a changed byte went unseen");
        }
    }

    #[test]
    fn kernel_is_close_to_the_f32_product() {
        for dtype in FORMATS {
            let (n, k, m) = (40, 512, 5);
            let (p, deq) = matrix(dtype, n, k);
            let x = values(m * k, 99);
            let y = matmul(&p, &x).unwrap();
            for i in 0..m {
                for j in 0..n {
                    let exact: f32 = (0..k).map(|e| x[i * k + e] * deq[j * k + e]).sum();
                    let norm: f32 = (0..k).map(|e| (x[i * k + e] * deq[j * k + e]).abs()).sum();
                    let err = (y[i * n + j] - exact).abs();
                    assert!(
                        err <= 0.01 * norm,
                        "{dtype:?} ({i},{j}): {} vs {exact} (|terms| {norm})",
                        y[i * n + j]
                    );
                }
            }
        }
    }

    #[test]
    fn every_path_equals_the_reference_bit_for_bit() {
        let paths = path::available();
        assert!(paths.contains(&KernelPath::Portable));
        for dtype in FORMATS {
            let k_quant = dtype.source_block() == 256;
            // A padded last group (40 = 2·16 + 8 rows), and for the 32-element
            // formats a row length that is not a multiple of 256.
            let shapes: &[(usize, usize)] = if k_quant {
                &[(40, 512)]
            } else {
                &[(40, 512), (24, 96)]
            };
            for &(n, k) in shapes {
                let (p, _) = matrix(dtype, n, k);
                for m in [1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 16, 17, 128] {
                    let acts = QuantizedRows::quantize(&values(m * k, m as u64), k).unwrap();
                    for g in 0..n.div_ceil(GROUP) {
                        let mut want = vec![0f32; m * GROUP];
                        portable::reference_group_kernel(&p, &acts, g, &mut want);
                        let want: Vec<u32> = want.iter().map(|v| v.to_bits()).collect();
                        for &path in &paths {
                            let mut got = vec![f32::NAN; m * GROUP];
                            group_kernel(path, &p, &acts, g, &mut got);
                            let got: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
                            assert_eq!(got, want, "{path} {dtype:?} {n}x{k} m={m} group {g}");
                        }
                        // The AVX-VNNI code through the EVEX `vpdpbusd`,
                        // where the CPU has AVX-512 VNNI but not AVX-VNNI.
                        #[cfg(target_arch = "x86_64")]
                        {
                            let mut got = vec![f32::NAN; m * GROUP];
                            let ran = avx2::group_kernel_vnni_evex(&p, &acts, g, &mut got);
                            // Every CPU with the 512-bit path has the EVEX form.
                            assert!(ran || !KernelPath::Avx512Vnni.is_available());
                            if ran {
                                let got: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
                                assert_eq!(got, want, "avxvnni (EVEX) {dtype:?} {n}x{k} m={m}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn paths_agree_through_matmul_and_differ_from_a_perturbed_weight() {
        let (n, k, m) = (70, 768, 6);
        for dtype in FORMATS {
            let (p, _) = matrix(dtype, n, k);
            let x = values(m * k, 17);
            let want = matmul_with(KernelPath::Portable, &p, &x).unwrap();
            for path in path::available() {
                assert_eq!(matmul_with(path, &p, &x).unwrap(), want, "{path} {dtype:?}");
            }
            // Negative control: one flipped code bit changes the product.
            let mut q = PackedMatrix {
                codes: p.codes.clone(),
                meta: p.meta.clone(),
                supers: p.supers.clone(),
                ..p
            };
            q.codes[3] ^= 1;
            assert_ne!(
                matmul_with(KernelPath::Portable, &q, &x).unwrap(),
                want,
                "{dtype:?}"
            );
        }
    }

    #[test]
    fn an_unavailable_path_is_an_error() {
        let (p, _) = matrix(Format::Q8_0, 16, 64);
        for path in KernelPath::ALL.into_iter().filter(|p| !p.is_available()) {
            assert!(matches!(
                matmul_with(path, &p, &[0.5; 64]),
                Err(QmmError::PathUnavailable(_))
            ));
        }
    }

    #[test]
    fn activation_rounding_is_half_to_even() {
        let mut x: Vec<f32> = (0..4096).map(|i| (i as f32 - 2048.0) / 16.0).collect();
        x.extend([
            0.5, 1.5, 2.5, -0.5, -2.5, 126.5, -126.5, 127.0, -127.0, 1e-30,
        ]);
        x.resize(x.len().div_ceil(BLOCK) * BLOCK, 0.0);
        for block in x.chunks_exact(BLOCK) {
            let (mut q, mut hs) = ([0i8; BLOCK], [0i32; 2]);
            let d = quantize_block(block, &mut q, &mut hs);
            let id = if d > 0.0 { 1.0 / d } else { 0.0 };
            for (&v, &got) in block.iter().zip(&q) {
                let want = (v * id).round_ties_even().clamp(-127.0, 127.0) as i8;
                assert_eq!(got, want, "{v} (scale {d})");
            }
            assert_eq!(hs[0], q[..16].iter().map(|&v| v as i32).sum::<i32>());
        }
        let (mut q, mut hs) = ([0i8; BLOCK], [0i32; 2]);
        let mut ties = [0f32; BLOCK];
        ties[0] = 127.0;
        ties[1] = 0.5;
        ties[2] = 1.5;
        ties[3] = -2.5;
        quantize_block(&ties, &mut q, &mut hs);
        assert_eq!(&q[..4], &[127, 0, 2, -2]);
    }

    #[test]
    fn rows_are_invariant_to_batch_and_threads() {
        for dtype in FORMATS {
            let (n, k, m) = (96, 768, 7);
            let (p, _) = matrix(dtype, n, k);
            let x = values(m * k, 5);
            let batch = matmul(&p, &x).unwrap();
            for i in 0..m {
                let one = matmul(&p, &x[i * k..(i + 1) * k]).unwrap();
                assert_eq!(
                    one,
                    batch[i * n..(i + 1) * n],
                    "{dtype:?} row {i}: decode vs batch"
                );
            }
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let again = pool.install(|| matmul(&p, &x).unwrap());
                assert_eq!(again, batch, "{dtype:?} with {threads} threads");
            }
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        let (p, _) = matrix(Format::Q8_0, 16, 64);
        assert!(matches!(
            matmul(&p, &[0.0; 65]),
            Err(QmmError::Activations { .. })
        ));
        assert!(matches!(
            PackedMatrix::pack(Format::Q8_0, 16, 64, &[0; 10]),
            Err(QmmError::Shape { .. })
        ));
        assert!(matches!(
            PackedMatrix::pack(Format::Iq4Xs, 16, 96, &[0; 2048]),
            Err(QmmError::Shape { .. })
        ));
        assert_eq!(Format::from_ggml(GgmlDType::F16), None);
        assert_eq!(Format::from_ggml_id(30), None, "BF16 has the float product");
        for f in Format::ALL {
            assert_eq!(Format::from_ggml_id(f.ggml_id()), Some(f));
        }
    }
}
