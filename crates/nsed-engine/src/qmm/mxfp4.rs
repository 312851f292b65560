//! MXFP4 (OCP microscaling FP4, GGML type 39), GPT-OSS's expert weights:
//! blocks of 32 E2M1 values sharing one E8M0 power-of-two scale, 17 bytes
//! (the scale, then 16 bytes whose low nibbles are elements 0..16 and high
//! nibbles 16..32). Products are llama.cpp's: the activations quantized to
//! 8 bits in blocks of 32 (Q8_0, an f16 scale), each block's dot product
//! summed exactly in integers, then scaled and accumulated block by block
//! in a fixed order. Integer sums are exact, so any vectorization gives the
//! same bits, and each output depends only on its own input row: results
//! are identical on every machine and in every batch shape.
//!
//! Quantization follows ggml's reference (`quantize_row_mxfp4_ref`), for
//! synthetic models llama.cpp must read as nsed does.

/// Elements per block.
pub const BLOCK: usize = 32;
/// Bytes per block.
pub const BLOCK_BYTES: usize = 17;

/// Outputs one parallel task computes.
const OUTPUTS_PER_TASK: usize = 16;

/// The E2M1 values, doubled (ggml's `kvalues_mxfp4`); the scale is halved to match.
const VALUES: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// Why an MXFP4 matrix could not be built or applied.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Mxfp4Error {
    /// The data is not `n` rows of `k / 32` blocks, or `k` is not a multiple of 32.
    #[error("an MXFP4 matrix of {n}x{k} needs rows of whole 32-element blocks, {bytes} bytes; found {found}")]
    Shape {
        /// Rows.
        n: usize,
        /// Row length in elements.
        k: usize,
        /// Bytes the shape needs.
        bytes: usize,
        /// Bytes given.
        found: usize,
    },
    /// The activations are not whole rows of length `k`.
    #[error("activations have {got} elements, not a multiple of the row length {k}")]
    Activations {
        /// Elements given.
        got: usize,
        /// Row length.
        k: usize,
    },
}

/// `2^(e - 128)`: half the E8M0 scale, as ggml's `ggml_e8m0_to_fp32_half`
/// (subnormal for `e < 2`).
pub fn half_scale(e: u8) -> f32 {
    let bits = if e < 2 {
        0x0020_0000u32 << e
    } else {
        (u32::from(e) - 1) << 23
    };
    f32::from_bits(bits)
}

/// An `[n, k]` matrix of MXFP4 blocks, row-major.
#[derive(Debug, Clone)]
pub struct Mxfp4Matrix {
    n: usize,
    k: usize,
    blocks: Vec<u8>,
}

impl Mxfp4Matrix {
    /// The matrix of `n` rows of `k` elements from its blocks.
    pub fn new(n: usize, k: usize, blocks: Vec<u8>) -> Result<Self, Mxfp4Error> {
        let bytes = n * (k / BLOCK) * BLOCK_BYTES;
        if n == 0 || k == 0 || !k.is_multiple_of(BLOCK) || blocks.len() != bytes {
            return Err(Mxfp4Error::Shape {
                n,
                k,
                bytes,
                found: blocks.len(),
            });
        }
        Ok(Self { n, k, blocks })
    }

    /// Rows (output features).
    pub fn rows(&self) -> usize {
        self.n
    }

    /// Row length (input features).
    pub fn cols(&self) -> usize {
        self.k
    }

    /// `x · Wᵀ` for `m` rows of `x` (row-major): `m × n` outputs.
    pub fn matmul(&self, x: &[f32]) -> Result<Vec<f32>, Mxfp4Error> {
        if !x.len().is_multiple_of(self.k) {
            return Err(Mxfp4Error::Activations {
                got: x.len(),
                k: self.k,
            });
        }
        let (n, k) = (self.n, self.k);
        let row_bytes = k / BLOCK * BLOCK_BYTES;
        let acts: Vec<(Vec<i8>, Vec<f32>)> = x.chunks(k).map(quantize_activations).collect();
        let mut out = vec![0f32; x.len() / k * n];
        super::each_output(&mut out, n, OUTPUTS_PER_TASK, |r, j| {
            let (qs, ds) = &acts[r];
            dot_row(&self.blocks[j * row_bytes..(j + 1) * row_bytes], qs, ds)
        });
        Ok(out)
    }
}

/// An activation row as Q8_0 blocks (ggml's `quantize_row_q8_0`): per 32
/// values the scale `amax / 127` rounded to f16, and the values divided by
/// it, rounded. Returns the codes and the (f16-exact) scales.
fn quantize_activations(x: &[f32]) -> (Vec<i8>, Vec<f32>) {
    let mut codes = Vec::with_capacity(x.len());
    let mut scales = Vec::with_capacity(x.len() / BLOCK);
    for xs in x.chunks_exact(BLOCK) {
        let amax = xs.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let inv = if d != 0.0 { 1.0 / d } else { 0.0 };
        codes.extend(xs.iter().map(|v| (v * inv).round() as i8));
        scales.push(half::f16::from_f32(d).to_f32());
    }
    (codes, scales)
}

/// One row's blocks against quantized activations: per block the exact
/// integer sum of value·code, times both scales, accumulated in order.
fn dot_row(blocks: &[u8], codes: &[i8], scales: &[f32]) -> f32 {
    let mut acc = 0f32;
    for ((block, qs), d) in blocks
        .chunks_exact(BLOCK_BYTES)
        .zip(codes.chunks_exact(BLOCK))
        .zip(scales)
    {
        let mut sum = 0i32;
        for (j, &q) in block[1..].iter().enumerate() {
            sum += i32::from(VALUES[usize::from(q & 0x0F)]) * i32::from(qs[j]);
            sum += i32::from(VALUES[usize::from(q >> 4)]) * i32::from(qs[j + BLOCK / 2]);
        }
        acc += sum as f32 * (half_scale(block[0]) * d);
    }
    acc
}

/// The values of one row of blocks.
pub fn dequantize_row(blocks: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(blocks.len() / BLOCK_BYTES * BLOCK);
    for block in blocks.chunks_exact(BLOCK_BYTES) {
        let d = half_scale(block[0]);
        let mut values = [0f32; BLOCK];
        for (j, &q) in block[1..].iter().enumerate() {
            values[j] = f32::from(VALUES[usize::from(q & 0x0F)]) * d;
            values[j + BLOCK / 2] = f32::from(VALUES[usize::from(q >> 4)]) * d;
        }
        out.extend_from_slice(&values);
    }
    out
}

/// `x` (a whole number of blocks) quantized as ggml's reference does: the
/// scale from the block's largest magnitude, each value the nearest code.
pub fn quantize_row(x: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(x.len() / BLOCK * BLOCK_BYTES);
    for xs in x.chunks_exact(BLOCK) {
        let amax = xs.iter().fold(0f32, |a, v| a.max(v.abs()));
        let e = if amax > 0.0 {
            (amax.log2().floor() - 2.0 + 127.0) as u8
        } else {
            0
        };
        let d = half_scale(e);
        out.push(e);
        for j in 0..BLOCK / 2 {
            let lo = nearest(xs[j], d);
            let hi = nearest(xs[j + BLOCK / 2], d);
            out.push(lo | (hi << 4));
        }
    }
    out
}

/// The code whose value is nearest `x` at scale `d` (the first on a tie).
fn nearest(x: f32, d: f32) -> u8 {
    let mut best = 0;
    let mut best_err = (f32::from(VALUES[0]) * d - x).abs();
    for (i, &v) in VALUES.iter().enumerate().skip(1) {
        let err = (f32::from(v) * d - x).abs();
        if err < best_err {
            best = i;
            best_err = err;
        }
    }
    best as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_and_codes_are_ggmls() {
        assert_eq!(half_scale(127), 0.5);
        assert_eq!(half_scale(128), 1.0);
        assert_eq!(half_scale(130), 4.0);
        assert_eq!(half_scale(1), f32::from_bits(0x0040_0000));
        // A block holding exactly representable values round-trips.
        let x: Vec<f32> = (0..32)
            .map(|i| [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, -6.0][i % 8])
            .collect();
        let q = quantize_row(&x);
        assert_eq!(q.len(), 17);
        assert_eq!(
            q[0], 127,
            "amax 6: floor(log2 6) - 2 + 127, a half-scale of 0.5"
        );
        assert_eq!(dequantize_row(&q), x);
    }

    #[test]
    fn products_equal_the_dequantized_reference_and_ignore_the_batch() {
        let k = 64;
        let w: Vec<f32> = crate::testing::pseudo_random(3 * k, 5)
            .iter()
            .map(|v| v * 3.0)
            .collect();
        let blocks: Vec<u8> = w.chunks(k).flat_map(quantize_row).collect();
        let m = Mxfp4Matrix::new(3, k, blocks.clone()).expect("shape");
        let x = crate::testing::pseudo_random(2 * k, 9);
        let y = m.matmul(&x).expect("product");
        for (r, xs) in x.chunks(k).enumerate() {
            for j in 0..3 {
                let row = dequantize_row(&blocks[j * 34..(j + 1) * 34]);
                let want: f32 = row.iter().zip(xs).map(|(a, b)| a * b).sum();
                // 8-bit activations: within a few percent of the exact product.
                assert!(
                    (y[r * 3 + j] - want).abs() < 0.05 * want.abs().max(1.0),
                    "{} vs {want}",
                    y[r * 3 + j]
                );
            }
        }
        // Row-invariant: the second row alone gives the same bits.
        assert_eq!(m.matmul(&x[k..]).expect("alone"), y[3..].to_vec());
        assert!(Mxfp4Matrix::new(3, 60, vec![0; 3]).is_err());
        assert!(m.matmul(&x[..10]).is_err());
    }
}
