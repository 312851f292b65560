//! Quantizers for the two IQ4 formats (candle has neither), so that nsed can
//! write synthetic IQ4_NL / IQ4_XS models and test its kernels on them.
//!
//! They are deliberately simple, not ggml's search: each 32-element block's
//! scale maps its largest magnitude to the table's −127 end and is then refit
//! by least squares to the chosen indices; every element takes the nearest
//! table value. Any scale and index choice is a valid block of the format,
//! which is what the kernels and llama.cpp read; the weights nsed runs in
//! practice come from llama.cpp's quantizer.

use super::IQ4_VALUES;
use half::f16;

/// Elements per IQ4_NL block and per IQ4_XS sub-block.
const BLOCK: usize = 32;

/// IQ4_NL blocks (18 bytes per 32 values) of `x`, whose length must be a
/// multiple of 32.
pub fn quantize_iq4_nl(x: &[f32]) -> Vec<u8> {
    assert!(x.len().is_multiple_of(BLOCK), "IQ4_NL needs whole blocks");
    let mut out = Vec::with_capacity(x.len() / BLOCK * 18);
    for block in x.chunks_exact(BLOCK) {
        let d = f16::from_f32(block_scale(block));
        out.extend_from_slice(&d.to_le_bytes());
        out.extend_from_slice(&indices(block, d.to_f32()));
    }
    out
}

/// IQ4_XS super-blocks (136 bytes per 256 values) of `x`, whose length must
/// be a multiple of 256.
pub fn quantize_iq4_xs(x: &[f32]) -> Vec<u8> {
    assert!(
        x.len().is_multiple_of(256),
        "IQ4_XS needs whole super-blocks"
    );
    let mut out = Vec::with_capacity(x.len() / 256 * 136);
    for sup in x.chunks_exact(256) {
        let scales: Vec<f32> = sup.chunks_exact(BLOCK).map(block_scale).collect();
        // The super-block scale maps the largest block scale to −32, the
        // 6-bit range's end.
        let widest = scales
            .iter()
            .copied()
            .fold(0f32, |a, s| if s.abs() > a.abs() { s } else { a });
        let d = f16::from_f32(widest / -32.0);
        let id = if d.to_f32() != 0.0 {
            1.0 / d.to_f32()
        } else {
            0.0
        };
        let ls: Vec<i32> = scales
            .iter()
            .map(|s| ((s * id).round() as i32).clamp(-32, 31))
            .collect();
        let (mut high, mut low) = (0u16, [0u8; 4]);
        for (b, &l) in ls.iter().enumerate() {
            let stored = (l + 32) as u16;
            low[b / 2] |= ((stored & 15) as u8) << (4 * (b % 2));
            high |= (stored >> 4) << (2 * b);
        }
        out.extend_from_slice(&d.to_le_bytes());
        out.extend_from_slice(&high.to_le_bytes());
        out.extend_from_slice(&low);
        for (block, &l) in sup.chunks_exact(BLOCK).zip(&ls) {
            out.extend_from_slice(&indices(block, d.to_f32() * l as f32));
        }
    }
    out
}

/// The block's scale: its largest magnitude to −127, refit by least squares.
fn block_scale(block: &[f32]) -> f32 {
    let widest = block
        .iter()
        .copied()
        .fold(0f32, |a, v| if v.abs() > a.abs() { v } else { a });
    if widest == 0.0 {
        return 0.0;
    }
    let d = widest / IQ4_VALUES[0] as f32;
    let (mut xv, mut vv) = (0f32, 0f32);
    for &v in block {
        let q = IQ4_VALUES[nearest(v / d)] as f32;
        xv += v * q;
        vv += q * q;
    }
    if vv > 0.0 {
        xv / vv
    } else {
        d
    }
}

/// The 16 bytes of one block's indices under scale `d`: element j in the
/// low nibble of byte j, element j + 16 in its high nibble.
fn indices(block: &[f32], d: f32) -> [u8; 16] {
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let idx: Vec<u8> = block.iter().map(|&v| nearest(v * id) as u8).collect();
    std::array::from_fn(|j| idx[j] | (idx[j + 16] << 4))
}

/// The index of the table value nearest `v`.
fn nearest(v: f32) -> usize {
    (0..16)
        .min_by(|&a, &b| {
            let da = (IQ4_VALUES[a] as f32 - v).abs();
            let db = (IQ4_VALUES[b] as f32 - v).abs();
            da.total_cmp(&db)
        })
        .unwrap_or(8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qmm::{Format, PackedMatrix};
    use crate::testing::pseudo_random as values;

    /// Quantize, dequantize through the packed matrix: close to the input
    /// (relative RMS error of a 4-bit non-linear code), and a different
    /// input gives different blocks (negative control).
    #[test]
    fn round_trip_is_close() {
        for (format, quantize) in [
            (Format::Iq4Nl, quantize_iq4_nl as fn(&[f32]) -> Vec<u8>),
            (Format::Iq4Xs, quantize_iq4_xs),
        ] {
            let (n, k) = (8, 512);
            let x = values(n * k, 3);
            let blocks = quantize(&x);
            assert_eq!(
                blocks.len(),
                n * k / format.source_block() * format.source_bytes()
            );
            let p = PackedMatrix::pack(format, n, k, &blocks).expect("pack");
            let mut row = vec![0f32; k];
            let (mut err, mut norm) = (0f32, 0f32);
            for r in 0..n {
                p.row_f32(r, &mut row);
                for (a, b) in row.iter().zip(&x[r * k..]) {
                    err += (a - b) * (a - b);
                    norm += b * b;
                }
            }
            let rel = (err / norm).sqrt();
            assert!(rel < 0.12, "{format:?}: relative RMS error {rel}");
            assert_ne!(quantize(&values(n * k, 4)), blocks, "{format:?}");
        }
    }
}
