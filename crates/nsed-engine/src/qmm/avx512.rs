//! The AVX-512 VNNI kernel: one 512-bit vector holds a group's 16 output
//! rows, and `vpdpbusd` advances all 16 dot products by 4 elements against a
//! broadcast activation word. Every load stays inside the packed buffers
//! (checked by the slice indexing that computes each pointer).

use super::{Codes, Format, PackedMatrix, QuantizedRows, BLOCK, GROUP, ROW_TILE};
use std::arch::x86_64::*;

/// The 8 steps of unpacked codes of (group g, block b), one vector each.
///
/// # Safety
/// Call only on a CPU with avx512f, avx512bw.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn unpack<const F: usize>(codes: &[u8]) -> [__m512i; 8] {
    let format = Format::from_id(F);
    let mut v = [_mm512_setzero_si512(); 8];
    // SAFETY: `codes` holds `format.code_bytes()` bytes (sliced by the
    // caller); every read below is inside it.
    unsafe {
        match format.codes() {
            Codes::Byte => {
                for (t, vt) in v.iter_mut().enumerate() {
                    *vt = _mm512_loadu_si512(codes[t * 64..].as_ptr().cast());
                }
            }
            Codes::Lut => {
                // Each 128-bit lane of the table holds all 16 codes, so the
                // in-lane byte shuffle is a full lookup.
                let table = _mm512_broadcast_i32x4(_mm_loadu_si128(format.lut().as_ptr().cast()));
                let low = _mm512_set1_epi8(15);
                for u in 0..4 {
                    let p = _mm512_loadu_si512(codes[u * 64..].as_ptr().cast());
                    let lo = _mm512_and_si512(p, low);
                    let hi = _mm512_and_si512(_mm512_srli_epi16(p, 4), low);
                    v[u] = _mm512_shuffle_epi8(table, lo);
                    v[u + 4] = _mm512_shuffle_epi8(table, hi);
                }
            }
            Codes::Nibble | Codes::Nibble5 | Codes::Nibble6 => {
                let low = _mm512_set1_epi8(15);
                for u in 0..4 {
                    let p = _mm512_loadu_si512(codes[u * 64..].as_ptr().cast());
                    v[u] = _mm512_and_si512(p, low);
                    v[u + 4] = _mm512_and_si512(_mm512_srli_epi16(p, 4), low);
                }
                // Plane byte j holds, at bit t, the extra bit of step t.
                for plane in 0..format.codes().planes() {
                    let bits = _mm512_loadu_si512(codes[256 + plane * 64..].as_ptr().cast());
                    let value = _mm512_set1_epi8(16 << plane);
                    for (t, vt) in v.iter_mut().enumerate() {
                        let set = _mm512_test_epi8_mask(bits, _mm512_set1_epi8(1 << t));
                        *vt = _mm512_mask_add_epi8(*vt, set, *vt, value);
                    }
                }
            }
        }
    }
    v
}

/// Per-lane scales of (group g, block b): (first half, second half, min,
/// second half's min).
///
/// # Safety
/// Call only on a CPU with avx512f.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn scales(
    format: Format,
    w: &PackedMatrix,
    g: usize,
    b: usize,
) -> (__m512, __m512, __m512, __m512) {
    let nb = w.k / BLOCK;
    let bm = format.block_meta();
    let meta = &w.meta[(g * nb + b) * GROUP * bm..][..GROUP * bm];
    // SAFETY: each load reads 16 or 32 bytes of a field that `pack`
    // allocated for this (group, block) or (group, super-block).
    unsafe {
        let halves = |at: &[u8]| _mm512_cvtph_ps(_mm256_loadu_si256(at.as_ptr().cast()));
        let ints_u = |at: &[u8]| _mm512_cvtepu8_epi32(_mm_loadu_si128(at.as_ptr().cast()));
        let bytes_u = |at: &[u8]| _mm512_cvtepi32_ps(ints_u(at));
        let bytes_i = |at: &[u8]| {
            _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(at.as_ptr().cast())))
        };
        let zero = _mm512_setzero_ps();
        let supers = || {
            let sm = format.super_meta();
            &w.supers[(g * (w.k / 256) + b / 8) * GROUP * sm..][..GROUP * sm]
        };
        match format {
            Format::Q4_0 | Format::Q5_0 | Format::Q8_0 | Format::Iq4Nl => {
                let d = halves(meta);
                (d, d, zero, zero)
            }
            Format::Q4_1 => (halves(meta), zero, halves(&meta[2 * GROUP..]), zero),
            Format::Q4K | Format::Q5K => {
                let (d, dmin) = (halves(supers()), halves(&supers()[2 * GROUP..]));
                let s = _mm512_mul_ps(d, bytes_u(meta));
                let m = _mm512_mul_ps(dmin, bytes_u(&meta[GROUP..]));
                (s, zero, _mm512_sub_ps(zero, m), zero)
            }
            Format::Q6K | Format::Q3K => {
                let d = halves(supers());
                (
                    _mm512_mul_ps(d, bytes_i(meta)),
                    _mm512_mul_ps(d, bytes_i(&meta[GROUP..])),
                    zero,
                    zero,
                )
            }
            Format::Q2K => {
                let (d, dmin) = (halves(supers()), halves(&supers()[2 * GROUP..]));
                let (a, b) = (ints_u(meta), ints_u(&meta[GROUP..]));
                let low = |v| _mm512_cvtepi32_ps(_mm512_and_si512(v, _mm512_set1_epi32(15)));
                let high = |v| _mm512_cvtepi32_ps(_mm512_srli_epi32(v, 4));
                (
                    _mm512_mul_ps(d, low(a)),
                    _mm512_mul_ps(d, low(b)),
                    _mm512_sub_ps(zero, _mm512_mul_ps(dmin, high(a))),
                    _mm512_sub_ps(zero, _mm512_mul_ps(dmin, high(b))),
                )
            }
            Format::Iq4Xs => {
                let s = _mm512_mul_ps(halves(supers()), bytes_i(meta));
                (s, s, zero, zero)
            }
            Format::Mxfp4 => {
                // 2^(e − 128): the exponent field e − 1 for e ≥ 2, else the
                // subnormal 2^21 << e (as `e8m0_half`).
                let e = ints_u(meta);
                let normal = _mm512_slli_epi32(_mm512_sub_epi32(e, _mm512_set1_epi32(1)), 23);
                let subnormal = _mm512_sllv_epi32(_mm512_set1_epi32(0x0020_0000), e);
                let small = _mm512_cmplt_epu32_mask(e, _mm512_set1_epi32(2));
                let s = _mm512_castsi512_ps(_mm512_mask_blend_epi32(small, normal, subnormal));
                (s, s, zero, zero)
            }
        }
    }
}

/// All activation rows against group `g`; `dst` is `[m][16]`.
///
/// # Safety
/// The CPU must have AVX-512 F, BW and VNNI.
pub(super) unsafe fn group_kernel(
    w: &PackedMatrix,
    acts: &QuantizedRows,
    g: usize,
    dst: &mut [f32],
) {
    // One monomorphized kernel per format: no format dispatch in the loops.
    // SAFETY: the caller guarantees the features of `rows`.
    unsafe { by_format!(w.format, rows(w, acts, g, dst)) }
}

/// # Safety
/// Call only on a CPU with avx512f, avx512bw, avx512vnni.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn rows<const F: usize>(w: &PackedMatrix, acts: &QuantizedRows, g: usize, dst: &mut [f32]) {
    let m = acts.m;
    let mut i = 0;
    while i < m {
        // SAFETY: `tile` needs the target features this function has.
        unsafe {
            match m - i {
                1 => tile::<F, 1>(w, acts, g, i, dst),
                2 => tile::<F, 2>(w, acts, g, i, dst),
                3 => tile::<F, 3>(w, acts, g, i, dst),
                _ => tile::<F, ROW_TILE>(w, acts, g, i, dst),
            }
        }
        i += ROW_TILE.min(m - i);
    }
}

/// How far ahead (in blocks) a one-row product prefetches its weights.
const PREFETCH_BLOCKS: usize = 8;

/// Rows `i0..i0 + R` against group `g`. Each row's lanes see exactly the
/// operations of the portable kernel, whatever R.
///
/// # Safety
/// Call only on a CPU with avx512f, avx512bw, avx512vnni.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn tile<const F: usize, const R: usize>(
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
                // The block scales are a second stream: one line ahead too.
                let meta_ahead = (g * nb + b + PREFETCH_BLOCKS) * GROUP * format.block_meta();
                if let Some(p) = w.meta.get(meta_ahead) {
                    _mm_prefetch::<_MM_HINT_T0>((p as *const u8).cast());
                }
            }
            let v = unpack::<F>(codes);
            let (s0, s1, min, min1) = scales(format, w, g, b);
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
                    *acc_r =
                        _mm512_fmadd_ps(_mm512_cvtepi32_ps(i0v), _mm512_mul_ps(s0, dxv), *acc_r);
                    if format.half_mins() {
                        *acc_r = _mm512_fmadd_ps(min, _mm512_set1_ps(dx * hs[0] as f32), *acc_r);
                    }
                    *acc_r =
                        _mm512_fmadd_ps(_mm512_cvtepi32_ps(i1v), _mm512_mul_ps(s1, dxv), *acc_r);
                    if format.half_mins() {
                        *acc_r = _mm512_fmadd_ps(min1, _mm512_set1_ps(dx * hs[1] as f32), *acc_r);
                    }
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
                    *acc_r =
                        _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(s0, dxv), *acc_r);
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
