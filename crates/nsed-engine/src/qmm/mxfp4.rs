//! MXFP4 (OCP microscaling FP4, GGML type 39), GPT-OSS's expert weights:
//! blocks of 32 E2M1 values sharing one E8M0 power-of-two scale, 17 bytes
//! (the scale, then 16 bytes whose low nibbles are elements 0..16 and high
//! nibbles 16..32). Products run in the packed row-invariant kernels
//! ([`super::Format::Mxfp4`]: the E2M1 values doubled to int8 and looked up
//! in-register, the halved scale computed from the exponent byte); here are
//! the quantizer and the reference dequantization.
//!
//! Quantization follows ggml's reference (`quantize_row_mxfp4_ref`), for
//! synthetic models llama.cpp must read as nsed does.

use super::{e8m0_half as half_scale, MXFP4_VALUES as VALUES};

/// Elements per block.
pub const BLOCK: usize = 32;
/// Bytes per block.
pub const BLOCK_BYTES: usize = 17;

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
}
