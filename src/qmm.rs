//! Quantized matrix multiplication: nsed's own blocked GEMM for the GGUF
//! weight formats of the roster (Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q6_K).
//!
//! Weights are repacked once at load, replacing the GGUF blocks: 16 output
//! rows are interleaved so that one 64-byte vector holds 4 consecutive codes
//! of each of the 16 rows, and one VNNI instruction (`vpdpbusd`) advances 16
//! dot products by 4 elements against a broadcast activation word. Every lane
//! is one output column, so nothing is reduced across lanes.
//! Activations are quantized per 32-element block to int8 with an f32 scale.
//!
//! **Row invariance by construction.** An output element is
//! `Σ_b fma(isum_b, s_b·dx_b, acc)` over its blocks `b` in order, where the
//! integer block sums are exact; the same instructions compute it whether its
//! activation row comes alone (decode) or in a tile of four (prefill), and
//! whichever thread owns its column group. So prefill logits equal decode
//! logits bit for bit, at any thread count. The portable kernel performs
//! the same floating-point operations in the same order and is the
//! reference the AVX-512 kernel is tested against, bit for bit.

use candle_core::quantized::GgmlDType;
use half::f16;
use rayon::prelude::*;

/// Output rows interleaved per group (one 512-bit vector of f32 lanes).
const GROUP: usize = 16;
/// Elements per quantization block of the repacked layout.
const BLOCK: usize = 32;
/// Activation rows that share one unpacking of a weight block.
const ROW_TILE: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum QmmError {
    #[error("{0:?} weights have no repacked kernel")]
    Unsupported(GgmlDType),
    #[error(
        "a {format:?} matrix of {n}x{k} needs rows divisible by {block} elements and \
         {bytes} bytes of blocks, found {found}"
    )]
    Shape {
        format: Format,
        n: usize,
        k: usize,
        block: usize,
        bytes: usize,
        found: usize,
    },
    #[error("reading the weight blocks: {0}")]
    Read(std::io::Error),
    #[error("activations have {got} elements, not a multiple of the row length {k}")]
    Activations { got: usize, k: usize },
}

/// The GGUF block formats with a repacked kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Q4_0,
    Q4_1,
    Q5_0,
    Q8_0,
    Q4K,
    Q6K,
}

/// How a block's codes are stored after repacking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codes {
    /// Two 4-bit codes per byte.
    Nibble,
    /// Nibbles plus one 64-bit mask per 4-element step for the fifth bit.
    Nibble5,
    /// Nibbles plus two such mask planes, for the fifth and sixth bits.
    Nibble6,
    /// One code per byte.
    Byte,
}

impl Codes {
    /// Bit planes (u64 masks per step) above the nibbles: bits 4 and 5.
    #[inline(always)]
    fn planes(self) -> usize {
        match self {
            Self::Nibble5 => 1,
            Self::Nibble6 => 2,
            Self::Nibble | Self::Byte => 0,
        }
    }
}

impl Format {
    const ALL: [Self; 6] = [
        Self::Q4_0,
        Self::Q4_1,
        Self::Q5_0,
        Self::Q8_0,
        Self::Q4K,
        Self::Q6K,
    ];

    /// The format of index `id` in [`Format::ALL`] (const-generic kernels).
    #[inline(always)]
    const fn from_id(id: usize) -> Self {
        Self::ALL[id]
    }

    pub fn from_ggml(dtype: GgmlDType) -> Option<Self> {
        Some(match dtype {
            GgmlDType::Q4_0 => Self::Q4_0,
            GgmlDType::Q4_1 => Self::Q4_1,
            GgmlDType::Q5_0 => Self::Q5_0,
            GgmlDType::Q8_0 => Self::Q8_0,
            GgmlDType::Q4K => Self::Q4K,
            GgmlDType::Q6K => Self::Q6K,
            _ => return None,
        })
    }

    /// Elements per GGUF block.
    fn source_block(self) -> usize {
        match self {
            Self::Q4K | Self::Q6K => 256,
            _ => 32,
        }
    }

    /// Bytes per GGUF block.
    fn source_bytes(self) -> usize {
        match self {
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q5_0 => 22,
            Self::Q8_0 => 34,
            Self::Q4K => 144,
            Self::Q6K => 210,
        }
    }

    #[inline(always)]
    fn codes(self) -> Codes {
        match self {
            Self::Q4_0 | Self::Q4_1 | Self::Q4K => Codes::Nibble,
            Self::Q5_0 => Codes::Nibble5,
            Self::Q6K => Codes::Nibble6,
            Self::Q8_0 => Codes::Byte,
        }
    }

    /// The code of weight value zero: value = scale · (code − offset) [+ min].
    #[inline(always)]
    fn offset(self) -> i32 {
        match self {
            Self::Q4_0 => 8,
            Self::Q5_0 => 16,
            Self::Q8_0 => 128,
            Self::Q6K => 32,
            Self::Q4_1 | Self::Q4K => 0,
        }
    }

    /// Q4_1 and Q4_K add a per-block minimum.
    #[inline(always)]
    fn has_min(self) -> bool {
        matches!(self, Self::Q4_1 | Self::Q4K)
    }

    /// Q6_K scales each half (16 elements) of a block separately.
    #[inline(always)]
    fn halves(self) -> bool {
        self == Self::Q6K
    }

    /// Bytes of per-row metadata per 32-element block.
    #[inline(always)]
    fn block_meta(self) -> usize {
        match self {
            Self::Q4_1 => 4,
            _ => 2,
        }
    }

    /// Width in bytes of each block metadata field: f16 scales and mins of
    /// the 32-element formats, 6-bit / int8 sub-scales of the K-quants.
    #[inline(always)]
    fn block_width(self) -> usize {
        match self {
            Self::Q4K | Self::Q6K => 1,
            _ => 2,
        }
    }

    /// Bytes of per-row metadata per 256-element super-block (K-quants).
    #[inline(always)]
    fn super_meta(self) -> usize {
        match self {
            Self::Q4K => 4,
            Self::Q6K => 2,
            _ => 0,
        }
    }

    /// Bytes of repacked codes per (group, block).
    #[inline(always)]
    fn code_bytes(self) -> usize {
        match self.codes() {
            Codes::Nibble => GROUP * BLOCK / 2,
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
            Format::Q4_0 | Format::Q4_1 => {
                let at = if format == Format::Q4_0 { 2 } else { 4 };
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
            Format::Q8_0 => {
                for (c, &q) in codes.iter_mut().zip(&blk[2..34]) {
                    *c = q ^ 0x80;
                }
                row.block_meta.extend_from_slice(&blk[..2]);
            }
            Format::Q4K => decode_q4k(blk, codes, &mut row.block_meta, &mut row.super_meta),
            Format::Q6K => decode_q6k(blk, codes, &mut row.block_meta, &mut row.super_meta),
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
    let scales = &blk[4..16];
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
    for c in 0..4 {
        let q = &blk[16 + 32 * c..16 + 32 * (c + 1)];
        for (l, &byte) in q.iter().enumerate() {
            codes[64 * c + l] = byte & 15;
            codes[64 * c + 32 + l] = byte >> 4;
        }
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
    pub fn pack(dtype: GgmlDType, n: usize, k: usize, data: &[u8]) -> Result<Self, QmmError> {
        let format = Format::from_ggml(dtype).ok_or(QmmError::Unsupported(dtype))?;
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
        Self::from_reader(dtype, n, k, &mut &data[..])
    }

    /// Repack an `[n, k]` matrix read row by row from `src` (e.g. a GGUF file
    /// positioned at the tensor): only one row of GGUF blocks is held at a
    /// time, so loading never needs two copies of a matrix.
    pub fn from_reader(
        dtype: GgmlDType,
        n: usize,
        k: usize,
        src: &mut impl std::io::Read,
    ) -> Result<Self, QmmError> {
        let format = Format::from_ggml(dtype).ok_or(QmmError::Unsupported(dtype))?;
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
        let mut raw = vec![0u8; row_bytes];
        for r in 0..n {
            src.read_exact(&mut raw).map_err(QmmError::Read)?;
            packed.place_row(r, &decode_row(format, &raw, k));
        }
        Ok(packed)
    }

    fn place_row(&mut self, r: usize, row: &DecodedRow) {
        let (g, lane) = (r / GROUP, r % GROUP);
        let (nb, ns) = (self.k / BLOCK, self.k / 256);
        let (bm, sm) = (self.format.block_meta(), self.format.super_meta());
        for b in 0..nb {
            let codes = &row.codes[b * BLOCK..(b + 1) * BLOCK];
            let at = (g * nb + b) * self.format.code_bytes();
            let dst = &mut self.codes[at..at + self.format.code_bytes()];
            for (e, &c) in codes.iter().enumerate() {
                put_code(self.format.codes(), dst, lane, e, c);
            }
            let meta = &mut self.meta[(g * nb + b) * GROUP * bm..][..GROUP * bm];
            spread(
                meta,
                &row.block_meta[b * bm..][..bm],
                self.format.block_width(),
                lane,
            );
        }
        for s in 0..ns.min(row.super_meta.len() / sm.max(1)) {
            let supers = &mut self.supers[(g * ns + s) * GROUP * sm..][..GROUP * sm];
            spread(supers, &row.super_meta[s * sm..][..sm], 2, lane);
        }
    }

    pub fn rows(&self) -> usize {
        self.n
    }

    pub fn cols(&self) -> usize {
        self.k
    }

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
            self.format.codes(),
            &self.codes[at..at + self.format.code_bytes()],
            lane,
            e % BLOCK,
        )
    }

    /// The scales of row `r`, block `b`: (first half, second half, min).
    fn block_scales(&self, r: usize, b: usize) -> (f32, f32, f32) {
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
            Format::Q4_0 | Format::Q5_0 | Format::Q8_0 => {
                let d = half(meta, 0);
                (d, d, 0.0)
            }
            Format::Q4_1 => (half(meta, 0), 0.0, half(meta, 1)),
            Format::Q4K => {
                let (d, dmin) = (half(supers(), 0), half(supers(), 1));
                (d * byte(0) as f32, 0.0, 0.0 - dmin * byte(1) as f32)
            }
            Format::Q6K => {
                let d = half(supers(), 0);
                (d * byte(0) as i8 as f32, d * byte(1) as i8 as f32, 0.0)
            }
        }
    }

    /// Row `r` dequantized to f32 (embedding gathers, tests).
    pub fn row_f32(&self, r: usize, out: &mut [f32]) {
        let off = self.format.offset();
        for b in 0..self.k / BLOCK {
            let (s0, s1, min) = self.block_scales(r, b);
            for e in 0..BLOCK {
                let s = if self.format.halves() && e >= 16 {
                    s1
                } else {
                    s0
                };
                let q = (self.code(r, b * BLOCK + e) as i32 - off) as f32;
                out[b * BLOCK + e] = if self.format.has_min() {
                    q * s + min
                } else {
                    q * s
                };
            }
        }
    }
}

/// Write one row's record of `width`-byte fields into a group record, where
/// each field holds the 16 lanes contiguously (so a vector load reads it).
fn spread(dst: &mut [u8], record: &[u8], width: usize, lane: usize) {
    for (f, field) in record.chunks_exact(width).enumerate() {
        dst[f * width * GROUP + lane * width..][..width].copy_from_slice(field);
    }
}

/// Codes of (group, block) are laid out by 4-element step `t` (0..8): the
/// 64 bytes of step t hold, at byte 4·lane + i, element 4t + i of row `lane`.
/// Nibbles pack step t (low) with step t + 4 (high) in 256 bytes; the fifth
/// bit of Q5_0 follows as one u64 mask per step.
fn put_code(codes: Codes, dst: &mut [u8], lane: usize, e: usize, c: u8) {
    let (t, i) = (e / 4, e % 4);
    let byte = 4 * lane + i;
    match codes {
        Codes::Byte => dst[t * 64 + byte] = c,
        Codes::Nibble | Codes::Nibble5 | Codes::Nibble6 => {
            let at = (t % 4) * 64 + byte;
            dst[at] |= if t < 4 { c & 15 } else { (c & 15) << 4 };
            for (plane, bit) in [(0, 16), (1, 32)] {
                if plane < codes.planes() && c & bit != 0 {
                    dst[256 + plane * 64 + t * 8 + byte / 8] |= 1 << (byte % 8);
                }
            }
        }
    }
}

fn get_code(codes: Codes, src: &[u8], lane: usize, e: usize) -> u8 {
    let (t, i) = (e / 4, e % 4);
    let byte = 4 * lane + i;
    match codes {
        Codes::Byte => src[t * 64 + byte],
        Codes::Nibble | Codes::Nibble5 | Codes::Nibble6 => {
            let packed = src[(t % 4) * 64 + byte];
            let mut code = if t < 4 { packed & 15 } else { packed >> 4 };
            for (plane, bit) in [(0, 16), (1, 32)].into_iter().take(codes.planes()) {
                if src[256 + plane * 64 + t * 8 + byte / 8] & (1 << (byte % 8)) != 0 {
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
}

impl QuantizedRows {
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
        Ok(rows)
    }
}

/// Matching slices of activations, codes, scales and half sums.
type BlockSlices<'a> = (((&'a [f32], &'a mut [i8]), &'a mut [f32]), &'a mut [i32]);

/// One block to int8 codes (round half to even: one instruction, vectorizes),
/// the sums of its two halves; returns the scale.
#[inline]
fn quantize_block(xb: &[f32], qb: &mut [i8], half_sums: &mut [i32]) -> f32 {
    let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d > 0.0 { 1.0 / d } else { 0.0 };
    for (q, &v) in qb.iter_mut().zip(xb) {
        *q = (v * id).round_ties_even().clamp(-127.0, 127.0) as i8;
    }
    for (sum, half) in half_sums.iter_mut().zip(qb.chunks_exact(16)) {
        *sum = half.iter().map(|&q| q as i32).sum();
    }
    d
}

/// `x · wᵀ`: `[m, k] × [n, k]ᵀ → [m, n]`, row-major f32, parallel over
/// column groups. Bit-identical for any thread count and any `m`.
pub fn matmul(w: &PackedMatrix, x: &[f32]) -> Result<Vec<f32>, QmmError> {
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
            group_kernel(w, &acts, c * chunk + i, dst);
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

/// Below this many multiply-adds, a product runs on the calling thread.
const PARALLEL_MIN_MACS: usize = 1 << 16;

/// All activation rows against one column group; `dst` is `[m][16]`.
fn group_kernel(w: &PackedMatrix, acts: &QuantizedRows, g: usize, dst: &mut [f32]) {
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx512vnni",
        target_feature = "avx512bw"
    ))]
    {
        simd::group_kernel(w, acts, g, dst);
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        target_feature = "avx512vnni",
        target_feature = "avx512bw"
    )))]
    {
        portable_group_kernel(w, acts, g, dst);
    }
}

/// The reference kernel: the same floating-point operations, lane by lane.
#[cfg_attr(
    all(
        target_arch = "x86_64",
        target_feature = "avx512vnni",
        target_feature = "avx512bw"
    ),
    allow(dead_code)
)]
pub(crate) fn portable_group_kernel(
    w: &PackedMatrix,
    acts: &QuantizedRows,
    g: usize,
    dst: &mut [f32],
) {
    let (nb, off) = (w.k / BLOCK, w.format.offset());
    for (i, out) in dst.chunks_exact_mut(GROUP).enumerate() {
        for (lane, acc_out) in out.iter_mut().enumerate() {
            let r = g * GROUP + lane;
            let mut acc = 0f32;
            for b in 0..nb {
                let (s0, s1, min) = if r < w.n {
                    w.block_scales(r, b)
                } else {
                    (0.0, 0.0, 0.0)
                };
                let dx = acts.d[i * nb + b];
                let xq = &acts.q[(i * nb + b) * BLOCK..][..BLOCK];
                let hs = &acts.half_sums[(i * nb + b) * 2..][..2];
                let dot = |range: std::ops::Range<usize>| -> i32 {
                    range
                        .map(|e| {
                            let c = if r < w.n { w.code(r, b * BLOCK + e) } else { 0 };
                            c as i32 * xq[e] as i32
                        })
                        .sum()
                };
                if w.format.halves() {
                    let i0 = dot(0..16) - off * hs[0];
                    let i1 = dot(16..32) - off * hs[1];
                    acc = (i0 as f32).mul_add(s0 * dx, acc);
                    acc = (i1 as f32).mul_add(s1 * dx, acc);
                } else {
                    let bsum = hs[0] + hs[1];
                    let isum = dot(0..32) - off * bsum;
                    acc = (isum as f32).mul_add(s0 * dx, acc);
                    if w.format.has_min() {
                        acc = min.mul_add(dx * bsum as f32, acc);
                    }
                }
            }
            *acc_out = acc;
        }
    }
}

#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx512vnni",
    target_feature = "avx512bw"
))]
mod simd {
    //! The AVX-512 VNNI kernel. Safe to call: the cfg guarantees the target
    //! features at compile time, and every load stays inside the packed
    //! buffers (checked by the slice indexing that computes each pointer).

    use super::*;
    use std::arch::x86_64::*;

    /// The 8 steps of unpacked codes of (group g, block b), one vector each.
    #[inline(always)]
    fn unpack(format: Format, codes: &[u8]) -> [__m512i; 8] {
        let mut v = [unsafe { _mm512_setzero_si512() }; 8];
        // SAFETY: `codes` holds `format.code_bytes()` bytes (sliced by the
        // caller); every read below is inside it.
        unsafe {
            match format.codes() {
                Codes::Byte => {
                    for (t, vt) in v.iter_mut().enumerate() {
                        *vt = _mm512_loadu_si512(codes[t * 64..].as_ptr().cast());
                    }
                }
                Codes::Nibble | Codes::Nibble5 | Codes::Nibble6 => {
                    let low = _mm512_set1_epi8(15);
                    for u in 0..4 {
                        let p = _mm512_loadu_si512(codes[u * 64..].as_ptr().cast());
                        v[u] = _mm512_and_si512(p, low);
                        v[u + 4] = _mm512_and_si512(_mm512_srli_epi16(p, 4), low);
                    }
                    for plane in 0..format.codes().planes() {
                        let bit = _mm512_set1_epi8(16 << plane);
                        for (t, vt) in v.iter_mut().enumerate() {
                            let at = 256 + plane * 64 + t * 8;
                            let mask =
                                u64::from_le_bytes(codes[at..at + 8].try_into().unwrap_or([0; 8]));
                            *vt = _mm512_mask_add_epi8(*vt, mask, *vt, bit);
                        }
                    }
                }
            }
        }
        v
    }

    /// Per-lane scales of (group g, block b): (first half, second half, min).
    #[inline(always)]
    fn scales(format: Format, w: &PackedMatrix, g: usize, b: usize) -> (__m512, __m512, __m512) {
        let nb = w.k / BLOCK;
        let bm = format.block_meta();
        let meta = &w.meta[(g * nb + b) * GROUP * bm..][..GROUP * bm];
        // SAFETY: each load reads 16 or 32 bytes of a field that `pack`
        // allocated for this (group, block) or (group, super-block).
        unsafe {
            let halves = |at: &[u8]| _mm512_cvtph_ps(_mm256_loadu_si256(at.as_ptr().cast()));
            let bytes_u = |at: &[u8]| {
                _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(at.as_ptr().cast())))
            };
            let bytes_i = |at: &[u8]| {
                _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(at.as_ptr().cast())))
            };
            let zero = _mm512_setzero_ps();
            let supers = || {
                let sm = format.super_meta();
                &w.supers[(g * (w.k / 256) + b / 8) * GROUP * sm..][..GROUP * sm]
            };
            match format {
                Format::Q4_0 | Format::Q5_0 | Format::Q8_0 => {
                    let d = halves(meta);
                    (d, d, zero)
                }
                Format::Q4_1 => (halves(meta), zero, halves(&meta[2 * GROUP..])),
                Format::Q4K => {
                    let (d, dmin) = (halves(supers()), halves(&supers()[2 * GROUP..]));
                    let s = _mm512_mul_ps(d, bytes_u(meta));
                    let m = _mm512_mul_ps(dmin, bytes_u(&meta[GROUP..]));
                    (s, zero, _mm512_sub_ps(zero, m))
                }
                Format::Q6K => {
                    let d = halves(supers());
                    (
                        _mm512_mul_ps(d, bytes_i(meta)),
                        _mm512_mul_ps(d, bytes_i(&meta[GROUP..])),
                        zero,
                    )
                }
            }
        }
    }

    pub(super) fn group_kernel(w: &PackedMatrix, acts: &QuantizedRows, g: usize, dst: &mut [f32]) {
        // One monomorphized kernel per format: no format dispatch in the loops.
        match w.format {
            Format::Q4_0 => rows::<0>(w, acts, g, dst),
            Format::Q4_1 => rows::<1>(w, acts, g, dst),
            Format::Q5_0 => rows::<2>(w, acts, g, dst),
            Format::Q8_0 => rows::<3>(w, acts, g, dst),
            Format::Q4K => rows::<4>(w, acts, g, dst),
            Format::Q6K => rows::<5>(w, acts, g, dst),
        }
    }

    fn rows<const F: usize>(w: &PackedMatrix, acts: &QuantizedRows, g: usize, dst: &mut [f32]) {
        let m = acts.m;
        let mut i = 0;
        while i < m {
            match m - i {
                1 => tile::<F, 1>(w, acts, g, i, dst),
                2 => tile::<F, 2>(w, acts, g, i, dst),
                3 => tile::<F, 3>(w, acts, g, i, dst),
                _ => tile::<F, ROW_TILE>(w, acts, g, i, dst),
            }
            i += ROW_TILE.min(m - i);
        }
    }

    /// How far ahead (in blocks) a one-row product prefetches its weights.
    const PREFETCH_BLOCKS: usize = 8;

    /// Rows `i0..i0 + R` against group `g`. Each row's lanes see exactly the
    /// operations of the portable kernel, whatever R.
    #[inline(always)]
    fn tile<const F: usize, const R: usize>(
        w: &PackedMatrix,
        acts: &QuantizedRows,
        g: usize,
        i0: usize,
        dst: &mut [f32],
    ) {
        let format = Format::from_id(F);
        let (nb, off) = (w.k / BLOCK, format.offset());
        let code_bytes = format.code_bytes();
        // SAFETY: AVX-512 F/BW/VNNI are enabled at compile time (cfg); loads
        // of activation words read 4 bytes inside row i's block b.
        unsafe {
            let mut acc = [_mm512_setzero_ps(); R];
            for b in 0..nb {
                let codes = &w.codes[(g * nb + b) * code_bytes..][..code_bytes];
                // Decode streams weights from memory: ask for them early.
                if R == 1 {
                    let ahead = (g * nb + b + PREFETCH_BLOCKS) * code_bytes;
                    for line in (0..code_bytes).step_by(64) {
                        if let Some(p) = w.codes.get(ahead + line) {
                            _mm_prefetch::<_MM_HINT_T0>((p as *const u8).cast());
                        }
                    }
                }
                let v = unpack(format, codes);
                let (s0, s1, min) = scales(format, w, g, b);
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    let i = i0 + r;
                    let xq = &acts.q[(i * nb + b) * BLOCK..][..BLOCK];
                    let hs = &acts.half_sums[(i * nb + b) * 2..][..2];
                    let dx = acts.d[i * nb + b];
                    let word = |t: usize| {
                        _mm512_set1_epi32(i32::from_le_bytes([
                            xq[4 * t] as u8,
                            xq[4 * t + 1] as u8,
                            xq[4 * t + 2] as u8,
                            xq[4 * t + 3] as u8,
                        ]))
                    };
                    let dxv = _mm512_set1_ps(dx);
                    if format.halves() {
                        let mut h = [_mm512_setzero_si512(); 2];
                        for t in 0..8 {
                            h[t / 4] = _mm512_dpbusd_epi32(h[t / 4], v[t], word(t));
                        }
                        let i0v = _mm512_sub_epi32(h[0], _mm512_set1_epi32(off * hs[0]));
                        let i1v = _mm512_sub_epi32(h[1], _mm512_set1_epi32(off * hs[1]));
                        *acc_r = _mm512_fmadd_ps(
                            _mm512_cvtepi32_ps(i0v),
                            _mm512_mul_ps(s0, dxv),
                            *acc_r,
                        );
                        *acc_r = _mm512_fmadd_ps(
                            _mm512_cvtepi32_ps(i1v),
                            _mm512_mul_ps(s1, dxv),
                            *acc_r,
                        );
                    } else {
                        // Two chains for latency; integer sums are exact, so
                        // the split cannot change a bit.
                        let mut h = [_mm512_setzero_si512(); 2];
                        for t in 0..8 {
                            h[t % 2] = _mm512_dpbusd_epi32(h[t % 2], v[t], word(t));
                        }
                        let bsum = hs[0] + hs[1];
                        let isum = _mm512_sub_epi32(
                            _mm512_add_epi32(h[0], h[1]),
                            _mm512_set1_epi32(off * bsum),
                        );
                        *acc_r = _mm512_fmadd_ps(
                            _mm512_cvtepi32_ps(isum),
                            _mm512_mul_ps(s0, dxv),
                            *acc_r,
                        );
                        if format.has_min() {
                            *acc_r = _mm512_fmadd_ps(min, _mm512_set1_ps(dx * bsum as f32), *acc_r);
                        }
                    }
                }
            }
            for (r, acc_r) in acc.iter().enumerate() {
                let out = &mut dst[(i0 + r) * GROUP..][..GROUP];
                _mm512_storeu_ps(out.as_mut_ptr(), *acc_r);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::QTensor;
    use candle_core::{Device, Tensor};

    use crate::testing::pseudo_random as values;

    const FORMATS: [GgmlDType; 6] = [
        GgmlDType::Q4_0,
        GgmlDType::Q4_1,
        GgmlDType::Q5_0,
        GgmlDType::Q8_0,
        GgmlDType::Q4K,
        GgmlDType::Q6K,
    ];

    /// A GGUF-quantized `[n, k]` matrix, its packed form and its dequantized values.
    fn matrix(dtype: GgmlDType, n: usize, k: usize) -> (PackedMatrix, Vec<f32>) {
        let w = Tensor::from_vec(values(n * k, dtype as u64 + 7), (n, k), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, dtype).unwrap();
        let deq = q
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let packed = PackedMatrix::pack(dtype, n, k, &q.data().unwrap()).unwrap();
        (packed, deq)
    }

    #[test]
    fn packed_rows_dequantize_like_candle() {
        for dtype in FORMATS {
            let (n, k) = (40, 512);
            let (p, deq) = matrix(dtype, n, k);
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
    fn fast_kernel_equals_the_portable_reference_bit_for_bit() {
        for dtype in FORMATS {
            let (n, k) = (40, 512);
            let (p, _) = matrix(dtype, n, k);
            for m in [1, 2, 3, 4, 5, 9] {
                let acts = QuantizedRows::quantize(&values(m * k, m as u64), k).unwrap();
                for g in 0..n.div_ceil(GROUP) {
                    let mut fast = vec![0f32; m * GROUP];
                    let mut slow = vec![0f32; m * GROUP];
                    group_kernel(&p, &acts, g, &mut fast);
                    portable_group_kernel(&p, &acts, g, &mut slow);
                    let (fb, sb): (Vec<u32>, Vec<u32>) = (
                        fast.iter().map(|v| v.to_bits()).collect(),
                        slow.iter().map(|v| v.to_bits()).collect(),
                    );
                    assert_eq!(fb, sb, "{dtype:?} m={m} group {g}");
                }
            }
        }
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
        let (p, _) = matrix(GgmlDType::Q8_0, 16, 64);
        assert!(matches!(
            matmul(&p, &[0.0; 65]),
            Err(QmmError::Activations { .. })
        ));
        assert!(matches!(
            PackedMatrix::pack(GgmlDType::Q8_0, 16, 64, &[0; 10]),
            Err(QmmError::Shape { .. })
        ));
        assert!(matches!(
            PackedMatrix::pack(GgmlDType::F16, 16, 64, &[0; 2048]),
            Err(QmmError::Unsupported(_))
        ));
    }
}
