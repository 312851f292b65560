//! The portable kernel: plain Rust that LLVM vectorizes for whatever target it
//! is built for. It is what aarch64 runs until a NEON kernel is measured, and
//! what x86-64 runs without AVX2. Each (group, block) record is unpacked once
//! into 16 rows of 32 `i16` codes, then every activation row takes plain
//! integer dot products against them (`pmaddwd` / `smlal` after LLVM).
//!
//! Also here: the element-wise reference kernel that every path is tested
//! against, bit for bit.

use super::{e8m0_half, Codes, Format, PackedMatrix, QuantizedRows, Scales, BLOCK, GROUP};

/// All activation rows against group `g`; `dst` is `[m][16]`.
pub(super) fn group_kernel(w: &PackedMatrix, acts: &QuantizedRows, g: usize, dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has FMA (checked on the line above).
        unsafe { group_kernel_fma(w, acts, g, dst) };
        return;
    }
    rows_by_format(w, acts, g, dst);
}

/// The same code compiled with FMA, so that `mul_add` is one instruction
/// rather than a call into libm (as it always is on aarch64). The results
/// are the same bits either way: `mul_add` is a fused multiply-add by
/// definition, however it is computed.
///
/// # Safety
/// Call only on a CPU with fma.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
unsafe fn group_kernel_fma(w: &PackedMatrix, acts: &QuantizedRows, g: usize, dst: &mut [f32]) {
    rows_by_format(w, acts, g, dst);
}

/// One monomorphized loop per format: no format dispatch inside.
#[inline(always)]
fn rows_by_format(w: &PackedMatrix, acts: &QuantizedRows, g: usize, dst: &mut [f32]) {
    by_format!(w.format, rows(w, acts, g, dst))
}

#[inline(always)]
fn rows<const F: usize>(w: &PackedMatrix, acts: &QuantizedRows, g: usize, dst: &mut [f32]) {
    let format = Format::from_id(F);
    let (nb, off, code_bytes) = (w.k / BLOCK, format.offset(), format.code_bytes());
    dst.fill(0.0);
    let mut codes = [[0i16; BLOCK]; GROUP];
    let mut scales = [(0f32, 0f32, 0f32, 0f32); GROUP];
    for b in 0..nb {
        unpack(
            format,
            &w.codes[(g * nb + b) * code_bytes..][..code_bytes],
            &mut codes,
        );
        lane_scales(format, w, g, b, &mut scales);
        for (i, out) in dst.chunks_exact_mut(GROUP).enumerate() {
            let at = i * nb + b;
            let xq = &acts.q[at * BLOCK..][..BLOCK];
            let x: [i16; BLOCK] = std::array::from_fn(|e| xq[e] as i16);
            let (hs, dx) = (&acts.half_sums[at * 2..][..2], acts.d[at]);
            for ((acc, c), &(s0, s1, min, min1)) in out.iter_mut().zip(&codes).zip(&scales) {
                if format.halves() {
                    let i0 = dot(&c[..16], &x[..16]) - off * hs[0];
                    let i1 = dot(&c[16..], &x[16..]) - off * hs[1];
                    *acc = (i0 as f32).mul_add(s0 * dx, *acc);
                    if format.half_mins() {
                        *acc = min.mul_add(dx * hs[0] as f32, *acc);
                    }
                    *acc = (i1 as f32).mul_add(s1 * dx, *acc);
                    if format.half_mins() {
                        *acc = min1.mul_add(dx * hs[1] as f32, *acc);
                    }
                } else {
                    let bsum = hs[0] + hs[1];
                    let isum = dot(c, &x) - off * bsum;
                    *acc = (isum as f32).mul_add(s0 * dx, *acc);
                    if format.has_min() {
                        *acc = min.mul_add(dx * bsum as f32, *acc);
                    }
                }
            }
        }
    }
}

/// The 16 lanes' scales of (group g, block b): (first half, second half,
/// min, second half's min), the float operations of `PackedMatrix::block_scales`, over fields
/// stored lane-contiguous so that the loops vectorize.
#[inline(always)]
fn lane_scales(format: Format, w: &PackedMatrix, g: usize, b: usize, out: &mut [Scales; GROUP]) {
    let nb = w.k / BLOCK;
    let bm = format.block_meta();
    let meta = &w.meta[(g * nb + b) * GROUP * bm..][..GROUP * bm];
    let half = |buf: &[u8], field: usize, lane: usize| {
        let at = field * 2 * GROUP + 2 * lane;
        f16_to_f32(u16::from_le_bytes([buf[at], buf[at + 1]]))
    };
    let byte = |field: usize, lane: usize| meta[field * GROUP + lane];
    let sm = format.super_meta();
    let supers = if sm > 0 {
        &w.supers[(g * (w.k / 256) + b / 8) * GROUP * sm..][..GROUP * sm]
    } else {
        &[][..]
    };
    for (lane, s) in out.iter_mut().enumerate() {
        *s = match format {
            Format::Q4_0 | Format::Q5_0 | Format::Q8_0 | Format::Iq4Nl => {
                let d = half(meta, 0, lane);
                (d, d, 0.0, 0.0)
            }
            Format::Q4_1 => (half(meta, 0, lane), 0.0, half(meta, 1, lane), 0.0),
            Format::Q4K | Format::Q5K => {
                let (d, dmin) = (half(supers, 0, lane), half(supers, 1, lane));
                (
                    d * byte(0, lane) as f32,
                    0.0,
                    0.0 - dmin * byte(1, lane) as f32,
                    0.0,
                )
            }
            Format::Q6K | Format::Q3K => {
                let d = half(supers, 0, lane);
                (
                    d * byte(0, lane) as i8 as f32,
                    d * byte(1, lane) as i8 as f32,
                    0.0,
                    0.0,
                )
            }
            Format::Q2K => {
                let (d, dmin) = (half(supers, 0, lane), half(supers, 1, lane));
                let (a, b) = (byte(0, lane), byte(1, lane));
                (
                    d * (a & 15) as f32,
                    d * (b & 15) as f32,
                    0.0 - dmin * (a >> 4) as f32,
                    0.0 - dmin * (b >> 4) as f32,
                )
            }
            Format::Iq4Xs => {
                let s = half(supers, 0, lane) * byte(0, lane) as i8 as f32;
                (s, s, 0.0, 0.0)
            }
            Format::Mxfp4 => {
                let s = e8m0_half(byte(0, lane));
                (s, s, 0.0, 0.0)
            }
        };
    }
}

/// IEEE half to single precision, exactly, without branches: the half's
/// exponent and mantissa bits placed in a single, scaled by 2^112 (exact for
/// normal and subnormal halves); infinities and NaNs get the top exponent.
#[inline(always)]
pub(super) fn f16_to_f32(h: u16) -> f32 {
    const SCALE: f32 = f32::from_bits((127 + 112) << 23); // 2^112
    let magnitude = ((h & 0x7fff) as u32) << 13;
    let finite = f32::from_bits(magnitude) * SCALE;
    let bits = if h & 0x7c00 == 0x7c00 {
        magnitude | 0x7f80_0000
    } else {
        finite.to_bits()
    };
    f32::from_bits(bits | ((h & 0x8000) as u32) << 16)
}

/// Exact integer dot product (|terms| < 2^15, at most 32 of them).
#[inline(always)]
fn dot(a: &[i16], b: &[i16]) -> i32 {
    a.iter().zip(b).map(|(&a, &b)| a as i32 * b as i32).sum()
}

/// The codes of one (group, block) record as 16 rows of 32 elements (see
/// `put_block` in the parent module for the layout).
#[inline(always)]
fn unpack(format: Format, rec: &[u8], codes: &mut [[i16; BLOCK]; GROUP]) {
    match format.codes() {
        Codes::Byte => {
            for t in 0..8 {
                let step = &rec[t * 64..][..64];
                for (lane, row) in codes.iter_mut().enumerate() {
                    for i in 0..4 {
                        row[4 * t + i] = step[4 * lane + i] as i16;
                    }
                }
            }
        }
        Codes::Lut => {
            let table = format.lut();
            for u in 0..4 {
                let step = &rec[u * 64..][..64];
                for (lane, row) in codes.iter_mut().enumerate() {
                    for i in 0..4 {
                        let byte = step[4 * lane + i];
                        row[4 * u + i] = table[usize::from(byte & 15)] as i16;
                        row[4 * u + 16 + i] = table[usize::from(byte >> 4)] as i16;
                    }
                }
            }
        }
        Codes::Nibble | Codes::Nibble5 | Codes::Nibble6 => {
            for u in 0..4 {
                let step = &rec[u * 64..][..64];
                for (lane, row) in codes.iter_mut().enumerate() {
                    for i in 0..4 {
                        let byte = step[4 * lane + i];
                        row[4 * u + i] = (byte & 15) as i16;
                        row[4 * u + 16 + i] = (byte >> 4) as i16;
                    }
                }
            }
            for plane in 0..format.codes().planes() {
                let bits = &rec[256 + plane * 64..][..64];
                let shift = 4 + plane;
                for (lane, row) in codes.iter_mut().enumerate() {
                    for i in 0..4 {
                        let b = bits[4 * lane + i] as i16;
                        for t in 0..8 {
                            row[4 * t + i] |= ((b >> t) & 1) << shift;
                        }
                    }
                }
            }
        }
    }
}

/// The reference kernel: every code read one at a time through the packing's
/// own accessors, the same floating-point operations lane by lane. It is the
/// oracle the other paths are tested against; nothing runs it in production.
#[cfg(test)]
pub(super) fn reference_group_kernel(
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
                let (s0, s1, min, min1) = if r < w.n {
                    w.block_scales(r, b)
                } else {
                    (0.0, 0.0, 0.0, 0.0)
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
                    if w.format.half_mins() {
                        acc = min.mul_add(dx * hs[0] as f32, acc);
                    }
                    acc = (i1 as f32).mul_add(s1 * dx, acc);
                    if w.format.half_mins() {
                        acc = min1.mul_add(dx * hs[1] as f32, acc);
                    }
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

#[cfg(test)]
mod tests {
    #[test]
    fn half_conversion_is_exact_for_every_half() {
        for h in 0..=u16::MAX {
            let want = half::f16::from_bits(h).to_f32();
            let got = super::f16_to_f32(h);
            if want.is_nan() {
                assert!(got.is_nan(), "{h:#06x}");
            } else {
                assert_eq!(got.to_bits(), want.to_bits(), "{h:#06x}");
            }
        }
    }
}
