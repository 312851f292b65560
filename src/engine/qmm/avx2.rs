//! The 256-bit x86-64 kernels over the same packed layout as the AVX-512 one:
//! one vector holds 8 of a group's 16 output rows, so a group is two halves.
//!
//! - **AVX2** (AMD Zen 1-3, Intel Haswell and later): `vpmaddubsw` multiplies
//!   unsigned codes by signed activations into i16 pairs, `vpmaddwd` widens
//!   to i32. Pairs are summed in i16 only as far as they provably cannot
//!   saturate (codes < 16: 8 steps; < 32: 4; < 64: 2); Q8_0's codes use the
//!   sign trick (|w| × sign(w)·x, every pair below 2^15). The i32 block sums
//!   are therefore exact, equal to the other paths' sums.
//! - **AVX-VNNI** (Intel Alder Lake and later client cores): `vpdpbusd` with
//!   a VEX encoding does the four products and the i32 sum in one.
//!
//! Both then do the float work of the reference kernel, lane by lane: one FMA
//! of the converted block sum by `scale · dx`, and one for the minimum.

use super::{Codes, Format, PackedMatrix, QuantizedRows, BLOCK, GROUP, ROW_TILE};
use std::arch::x86_64::*;

/// Output rows per vector.
const LANES: usize = 8;
/// How far ahead (in blocks) a one-row product prefetches its weights.
const PREFETCH_BLOCKS: usize = 8;

/// AVX2 entry point.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C.
pub(super) unsafe fn group_kernel(
    w: &PackedMatrix,
    acts: &QuantizedRows,
    g: usize,
    dst: &mut [f32],
) {
    // SAFETY: the caller guarantees the features of `rows_avx2`.
    unsafe { by_format!(w.format, rows_avx2(w, acts, g, dst)) }
}

/// AVX-VNNI entry point.
///
/// # Safety
/// The CPU must have AVX2, FMA, F16C and AVX-VNNI.
pub(super) unsafe fn group_kernel_vnni(
    w: &PackedMatrix,
    acts: &QuantizedRows,
    g: usize,
    dst: &mut [f32],
) {
    // SAFETY: the caller guarantees the features of `rows_vnni`.
    unsafe { by_format!(w.format, rows_vnni(w, acts, g, dst)) }
}

/// The exact i32 sums of block `b` of a 4-bit format for `R` activation
/// rows, `[half][row]`: each step's two half-group code vectors share the
/// row's broadcast activation word. A macro so that it expands inside each
/// family's target-feature function (closures and helpers would not inline).
macro_rules! nibble_sums {
    ($records:expr, $b:expr, $cb:expr, $xs:expr, $step:ident, $finish:ident, $r:expr) => {{
        let rec = &$records[$b * $cb..][..$cb];
        let low = _mm256_set1_epi8(15);
        let mut h = [[_mm256_setzero_si256(); $r]; 2];
        for u in 0..4 {
            let p0 = _mm256_loadu_si256(rec[u * 64..][..32].as_ptr().cast());
            let p1 = _mm256_loadu_si256(rec[u * 64 + 32..][..32].as_ptr().cast());
            let v0 = (
                _mm256_and_si256(p0, low),
                _mm256_and_si256(_mm256_srli_epi16(p0, 4), low),
            );
            let v1 = (
                _mm256_and_si256(p1, low),
                _mm256_and_si256(_mm256_srli_epi16(p1, 4), low),
            );
            for r in 0..$r {
                let x = &$xs[r][$b * BLOCK..][..BLOCK];
                let (lo, hi) = (word(x, u), word(x, u + 4));
                h[0][r] = $step($step(h[0][r], v0.0, lo), v0.1, hi);
                h[1][r] = $step($step(h[1][r], v1.0, lo), v1.1, hi);
            }
            // SAFETY: an empty instruction sequence; as a compiler memory
            // barrier it keeps the next step's loads from being hoisted
            // above this one, which made the compiler spill to the stack.
            std::arch::asm!("", options(nostack, preserves_flags));
        }
        h.map(|half| half.map(|acc| $finish(acc)))
    }};
}

/// The two kernels share every line but the integer block sums; this macro
/// writes one `rows`/`tile`/`half_block` family per instruction set, each
/// compiled with its own target features.
macro_rules! kernel_family {
    (
        $features:literal,
        $rows:ident,
        $tile:ident,
        $nibble_tile:ident,
        $half_block:ident,
        $sums:ident,
        $step:ident,
        $finish:ident
    ) => {
        #[target_feature(enable = $features)]
        unsafe fn $rows<const F: usize>(
            w: &PackedMatrix,
            acts: &QuantizedRows,
            g: usize,
            dst: &mut [f32],
        ) {
            let m = acts.m;
            let nibbles = matches!(Format::from_id(F).codes(), Codes::Nibble);
            let mut i = 0;
            // SAFETY (all calls): same target features as this function.
            while i < m {
                unsafe {
                    match m - i {
                        1 => $tile::<F, 1>(w, acts, g, i, dst),
                        2 if nibbles => $nibble_tile::<F, 2>(w, acts, g, i, dst),
                        3 if nibbles => $nibble_tile::<F, 3>(w, acts, g, i, dst),
                        _ if nibbles => $nibble_tile::<F, ROW_TILE>(w, acts, g, i, dst),
                        2 => $tile::<F, 2>(w, acts, g, i, dst),
                        3 => $tile::<F, 3>(w, acts, g, i, dst),
                        _ => $tile::<F, ROW_TILE>(w, acts, g, i, dst),
                    }
                }
                i += ROW_TILE.min(m - i);
            }
        }

        /// Rows `i0..i0 + R` against group `g`. A single row (decode) walks
        /// the blocks once, both halves per block, prefetching ahead; a tile
        /// walks them once per half, which keeps its 4 accumulators, 8 code
        /// vectors and temporaries within the 16 registers.
        #[target_feature(enable = $features)]
        unsafe fn $tile<const F: usize, const R: usize>(
            w: &PackedMatrix,
            acts: &QuantizedRows,
            g: usize,
            i0: usize,
            dst: &mut [f32],
        ) {
            let format = Format::from_id(F);
            let (nb, code_bytes) = (w.k / BLOCK, format.code_bytes());
            if R == 1 {
                let mut acc = [_mm256_setzero_ps(); 2];
                for b in 0..nb {
                    let ahead = (g * nb + b + PREFETCH_BLOCKS) * code_bytes;
                    for line in (0..code_bytes).step_by(64) {
                        if let Some(p) = w.codes.get(ahead + line) {
                            // SAFETY: a prefetch of a valid address.
                            _mm_prefetch::<_MM_HINT_T0>((p as *const u8).cast());
                        }
                    }
                    for (half, acc_h) in acc.iter_mut().enumerate() {
                        // SAFETY: same target features.
                        unsafe {
                            $half_block::<F, 1>(
                                w,
                                acts,
                                g,
                                b,
                                half,
                                i0,
                                std::slice::from_mut(acc_h),
                            )
                        };
                    }
                }
                for (half, acc_h) in acc.iter().enumerate() {
                    let out = &mut dst[i0 * GROUP + half * LANES..][..LANES];
                    // SAFETY: `out` holds 8 floats.
                    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), *acc_h) };
                }
            } else {
                for half in 0..2 {
                    let mut acc = [_mm256_setzero_ps(); R];
                    for b in 0..nb {
                        // SAFETY: same target features.
                        unsafe { $half_block::<F, R>(w, acts, g, b, half, i0, &mut acc) };
                    }
                    for (r, acc_r) in acc.iter().enumerate() {
                        let out = &mut dst[(i0 + r) * GROUP + half * LANES..][..LANES];
                        // SAFETY: `out` holds 8 floats.
                        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), *acc_r) };
                    }
                }
            }
        }

        /// Rows `i0..i0 + R` of a 4-bit format (codes < 16) against group
        /// `g`, both halves per block: each activation word broadcast serves
        /// two products, and all 8 steps sum in one integer accumulator per
        /// row and half (`$step`, at most 8 · 3810 in i16 on AVX2). The float
        /// work per block is the reference kernel's, in its order, on
        /// accumulators kept in `dst` (in L1): holding 2R of them in
        /// registers next to the integer work made the compiler spill.
        #[target_feature(enable = $features)]
        unsafe fn $nibble_tile<const F: usize, const R: usize>(
            w: &PackedMatrix,
            acts: &QuantizedRows,
            g: usize,
            i0: usize,
            dst: &mut [f32],
        ) {
            let format = Format::from_id(F);
            let (nb, cb) = (w.k / BLOCK, format.code_bytes());
            let records = &w.codes[g * nb * cb..][..nb * cb];
            let xs: [&[i8]; R] =
                std::array::from_fn(|r| &acts.q[(i0 + r) * nb * BLOCK..][..nb * BLOCK]);
            let out = &mut dst[i0 * GROUP..][..R * GROUP];
            out.fill(0.0);
            for b in 0..nb {
                // SAFETY: same target features; the record is whole.
                let sums = unsafe { nibble_sums!(records, b, cb, xs, $step, $finish, R) };
                for (half, sums_h) in sums.iter().enumerate() {
                    // SAFETY: same target features.
                    let (s0, _, min) = unsafe { scales::<F>(w, g, b, half) };
                    for (r, sum) in sums_h.iter().enumerate() {
                        let at = (i0 + r) * nb + b;
                        let hs = &acts.half_sums[at * 2..][..2];
                        let whole = hs[0] + hs[1];
                        let sum =
                            _mm256_sub_epi32(*sum, _mm256_set1_epi32(format.offset() * whole));
                        let dx = acts.d[at];
                        let lanes = &mut out[r * GROUP + half * LANES..][..LANES];
                        // SAFETY: `lanes` holds 8 floats.
                        let mut acc = unsafe { _mm256_loadu_ps(lanes.as_ptr()) };
                        acc = _mm256_fmadd_ps(
                            _mm256_cvtepi32_ps(sum),
                            _mm256_mul_ps(s0, _mm256_set1_ps(dx)),
                            acc,
                        );
                        if format.has_min() {
                            acc = _mm256_fmadd_ps(min, _mm256_set1_ps(dx * whole as f32), acc);
                        }
                        // SAFETY: as above.
                        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
                    }
                }
            }
        }

        /// One block of one half-group for rows `i0..i0 + R`: the exact
        /// integer sums, then the reference kernel's FMAs.
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn $half_block<const F: usize, const R: usize>(
            w: &PackedMatrix,
            acts: &QuantizedRows,
            g: usize,
            b: usize,
            half: usize,
            i0: usize,
            acc: &mut [__m256],
        ) {
            let format = Format::from_id(F);
            let (nb, code_bytes) = (w.k / BLOCK, format.code_bytes());
            let rec = &w.codes[(g * nb + b) * code_bytes..][..code_bytes];
            // SAFETY: same target features; `rec` is a whole record.
            let v = unsafe { unpack::<F>(rec, half) };
            let (s0, s1, min) = unsafe { scales::<F>(w, g, b, half) };
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let at = (i0 + r) * nb + b;
                let xq = &acts.q[at * BLOCK..][..BLOCK];
                let hs = &acts.half_sums[at * 2..][..2];
                let dxv = _mm256_set1_ps(acts.d[at]);
                // SAFETY: same target features; `xq` is a whole block.
                let (i0v, i1v) = unsafe { $sums(format, &v, xq, hs) };
                *acc_r = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i0v), _mm256_mul_ps(s0, dxv), *acc_r);
                if format.halves() {
                    *acc_r =
                        _mm256_fmadd_ps(_mm256_cvtepi32_ps(i1v), _mm256_mul_ps(s1, dxv), *acc_r);
                } else if format.has_min() {
                    let dxb = _mm256_set1_ps(acts.d[at] * (hs[0] + hs[1]) as f32);
                    *acc_r = _mm256_fmadd_ps(min, dxb, *acc_r);
                }
            }
        }
    };
}

kernel_family!(
    "avx2,fma,f16c",
    rows_avx2,
    tile_avx2,
    nibble_tile_avx2,
    half_block_avx2,
    sums_avx2,
    step_avx2,
    finish_avx2
);
kernel_family!(
    "avx2,fma,f16c,avxvnni",
    rows_vnni,
    tile_vnni,
    nibble_tile_vnni,
    half_block_vnni,
    sums_vnni,
    step_vnni,
    finish_vnni
);
#[cfg(test)]
kernel_family!(
    "avx2,fma,f16c,avx512vnni,avx512vl",
    rows_evex,
    tile_evex,
    nibble_tile_evex,
    half_block_evex,
    sums_evex,
    step_evex,
    finish_evex
);

/// One step of 4-bit codes into an i16 pair accumulator (AVX2). Exact while
/// at most 8 steps are summed: a pair is at most 2 · 15 · 127 = 3810.
#[inline]
#[target_feature(enable = "avx2")]
fn step_avx2(acc: __m256i, codes: __m256i, x: __m256i) -> __m256i {
    _mm256_add_epi16(acc, _mm256_maddubs_epi16(codes, x))
}

/// The i16 pair accumulator of [`step_avx2`] widened to i32 sums.
#[inline]
#[target_feature(enable = "avx2")]
fn finish_avx2(acc: __m256i) -> __m256i {
    _mm256_madd_epi16(acc, _mm256_set1_epi16(1))
}

/// One step into an i32 accumulator with the VEX `vpdpbusd`.
#[inline]
#[target_feature(enable = "avx2,avxvnni")]
fn step_vnni(acc: __m256i, codes: __m256i, x: __m256i) -> __m256i {
    _mm256_dpbusd_avx_epi32(acc, codes, x)
}

/// `vpdpbusd` accumulates in i32 already.
#[inline]
#[target_feature(enable = "avx2")]
fn finish_vnni(acc: __m256i) -> __m256i {
    acc
}

/// [`step_vnni`] with the EVEX `vpdpbusd` (tests only).
#[cfg(test)]
#[inline]
#[target_feature(enable = "avx2,avx512vnni,avx512vl")]
fn step_evex(acc: __m256i, codes: __m256i, x: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(acc, codes, x)
}

#[cfg(test)]
use finish_vnni as finish_evex;

/// The AVX-VNNI kernel's code with the EVEX `vpdpbusd` (tests only), or
/// `false` when this CPU lacks AVX-512 VNNI + VL.
#[cfg(test)]
pub(super) fn group_kernel_vnni_evex(
    w: &PackedMatrix,
    acts: &QuantizedRows,
    g: usize,
    dst: &mut [f32],
) -> bool {
    let has = is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
        && is_x86_feature_detected!("avx512vnni")
        && is_x86_feature_detected!("avx512vl");
    if has {
        // SAFETY: every feature `rows_evex` enables was detected above.
        unsafe { by_format!(w.format, rows_evex(w, acts, g, dst)) }
    }
    has
}

/// The 4 activation bytes of step `t`, in every i32 lane.
#[inline]
#[target_feature(enable = "avx2")]
fn word(xq: &[i8], t: usize) -> __m256i {
    let b = &xq[4 * t..4 * t + 4];
    _mm256_set1_epi32(i32::from_le_bytes([
        b[0] as u8, b[1] as u8, b[2] as u8, b[3] as u8,
    ]))
}

/// The exact integer block sums Σ(code − offset)·x of one half-group against
/// one activation row: (elements 0-15, 16-31) for Q6_K's two scales, else
/// (whole block, unused). AVX2: `vpmaddubsw` pairs summed in i16 only as far
/// as they cannot saturate, then `vpmaddwd` to i32.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn sums_avx2(format: Format, v: &[__m256i; 8], xq: &[i8], hs: &[i32]) -> (__m256i, __m256i) {
    let ones = _mm256_set1_epi16(1);
    let pairs = |t: usize| _mm256_maddubs_epi16(v[t], word(xq, t));
    // Sum `steps` consecutive steps' i16 pairs, then widen to i32.
    let run = |from: usize, steps: usize| {
        let mut h = pairs(from);
        for t in from + 1..from + steps {
            h = _mm256_add_epi16(h, pairs(t));
        }
        _mm256_madd_epi16(h, ones)
    };
    let minus = |sum: __m256i, count: i32| {
        _mm256_sub_epi32(sum, _mm256_set1_epi32(format.offset() * count))
    };
    let whole = hs[0] + hs[1];
    let unused = _mm256_setzero_si256();
    match format.codes() {
        // Codes < 16: a pair is at most 2·15·127 = 3810, eight steps 30480.
        Codes::Nibble => (minus(run(0, 8), whole), unused),
        // Codes < 32: a pair is at most 7874, four steps 31496.
        Codes::Nibble5 => (minus(_mm256_add_epi32(run(0, 4), run(4, 4)), whole), unused),
        // Codes < 64: a pair is at most 16002, two steps 32004.
        Codes::Nibble6 => (
            minus(_mm256_add_epi32(run(0, 2), run(2, 2)), hs[0]),
            minus(_mm256_add_epi32(run(4, 2), run(6, 2)), hs[1]),
        ),
        // Codes 0..=255 would saturate: multiply |w| (w = code − 128, the
        // GGUF value) by sign(w)·x, every pair at most 2·128·127 = 32512.
        Codes::Byte => {
            let flip = _mm256_set1_epi8(-128);
            let mut h = [_mm256_setzero_si256(); 2];
            for (t, vt) in v.iter().enumerate() {
                let wt = _mm256_xor_si256(*vt, flip);
                let x = _mm256_sign_epi8(word(xq, t), wt);
                let p = _mm256_maddubs_epi16(_mm256_abs_epi8(wt), x);
                h[t % 2] = _mm256_add_epi32(h[t % 2], _mm256_madd_epi16(p, ones));
            }
            (_mm256_add_epi32(h[0], h[1]), unused)
        }
    }
}

/// As [`sums_avx2`], with a 256-bit `vpdpbusd`: four products and their i32
/// sum in one instruction, no i16 stage, no sign trick. `$dpbusd` is the
/// VEX (AVX-VNNI) form in production; the tests also build the EVEX form
/// (AVX-512 VNNI + VL), the same operation, to check this code on CPUs that
/// have AVX-512 but not AVX-VNNI.
macro_rules! vnni_sums {
    ($name:ident, $features:literal, $dpbusd:ident) => {
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn $name(
            format: Format,
            v: &[__m256i; 8],
            xq: &[i8],
            hs: &[i32],
        ) -> (__m256i, __m256i) {
            let mut h = [_mm256_setzero_si256(); 2];
            for (t, vt) in v.iter().enumerate() {
                let slot = if format.halves() { t / 4 } else { t % 2 };
                h[slot] = $dpbusd(h[slot], *vt, word(xq, t));
            }
            let minus = |sum: __m256i, count: i32| {
                _mm256_sub_epi32(sum, _mm256_set1_epi32(format.offset() * count))
            };
            if format.halves() {
                (minus(h[0], hs[0]), minus(h[1], hs[1]))
            } else {
                (minus(_mm256_add_epi32(h[0], h[1]), hs[0] + hs[1]), h[1])
            }
        }
    };
}

vnni_sums!(sums_vnni, "avx2,avxvnni", _mm256_dpbusd_avx_epi32);
#[cfg(test)]
vnni_sums!(sums_evex, "avx2,avx512vnni,avx512vl", _mm256_dpbusd_epi32);

/// The 8 steps of unpacked codes of one record's half-group (lanes
/// `8·half..8·half + 8`), one vector each: byte 4·lane + i of step t is
/// element 4t + i of that lane's row.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn unpack<const F: usize>(rec: &[u8], half: usize) -> [__m256i; 8] {
    let format = Format::from_id(F);
    let load = |at: usize| {
        let bytes = &rec[at..at + 32];
        // SAFETY: `bytes` holds the 32 bytes read.
        unsafe { _mm256_loadu_si256(bytes.as_ptr().cast()) }
    };
    let mut v = [_mm256_setzero_si256(); 8];
    match format.codes() {
        Codes::Byte => {
            for (t, vt) in v.iter_mut().enumerate() {
                *vt = load(t * 64 + half * 32);
            }
        }
        Codes::Nibble | Codes::Nibble5 | Codes::Nibble6 => {
            let low = _mm256_set1_epi8(15);
            for u in 0..4 {
                let p = load(u * 64 + half * 32);
                v[u] = _mm256_and_si256(p, low);
                v[u + 4] = _mm256_and_si256(_mm256_srli_epi16(p, 4), low);
            }
            // A plane byte holds, at bit t, the extra bit of step t's code in
            // the same byte: shift bit t to the plane's bit (4 or 5) and
            // keep it. Shifts are of 16-bit lanes; the counts (at most 5)
            // never move a bit across the byte boundary into the kept one.
            for plane in 0..format.codes().planes() {
                let bits = load(256 + plane * 64 + half * 32);
                let keep = _mm256_set1_epi8(16 << plane);
                for (t, vt) in v.iter_mut().enumerate() {
                    let target = 4 + plane;
                    let moved = if t <= target {
                        _mm256_sll_epi16(bits, _mm_cvtsi32_si128((target - t) as i32))
                    } else {
                        _mm256_srl_epi16(bits, _mm_cvtsi32_si128((t - target) as i32))
                    };
                    *vt = _mm256_or_si256(*vt, _mm256_and_si256(moved, keep));
                }
            }
        }
    }
    v
}

/// Per-lane scales of one record's half-group: (first half, second half,
/// min), computed with the reference kernel's float operations.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn scales<const F: usize>(
    w: &PackedMatrix,
    g: usize,
    b: usize,
    half: usize,
) -> (__m256, __m256, __m256) {
    let format = Format::from_id(F);
    let nb = w.k / BLOCK;
    let bm = format.block_meta();
    let meta = &w.meta[(g * nb + b) * GROUP * bm..][..GROUP * bm];
    // f16 fields: 16 lanes × 2 bytes; this half's 8 lanes are 16 bytes.
    let halves = |buf: &[u8], field: usize| {
        let at = &buf[field * 2 * GROUP + half * 16..][..16];
        // SAFETY: `at` holds the 16 bytes read.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(at.as_ptr().cast())) }
    };
    // u8 / i8 fields: 16 lanes × 1 byte; this half's 8 lanes are 8 bytes.
    let byte_field = |field: usize| {
        let at = &meta[field * GROUP + half * LANES..][..LANES];
        // SAFETY: `at` holds the 8 bytes read.
        unsafe { _mm_loadl_epi64(at.as_ptr().cast()) }
    };
    let unsigned = |field: usize| _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(byte_field(field)));
    let signed = |field: usize| _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(byte_field(field)));
    let supers = || {
        let sm = format.super_meta();
        &w.supers[(g * (w.k / 256) + b / 8) * GROUP * sm..][..GROUP * sm]
    };
    let zero = _mm256_setzero_ps();
    match format {
        Format::Q4_0 | Format::Q5_0 | Format::Q8_0 => {
            let d = halves(meta, 0);
            (d, d, zero)
        }
        Format::Q4_1 => (halves(meta, 0), zero, halves(meta, 1)),
        Format::Q4K => {
            let (d, dmin) = (halves(supers(), 0), halves(supers(), 1));
            let s = _mm256_mul_ps(d, unsigned(0));
            let m = _mm256_mul_ps(dmin, unsigned(1));
            (s, zero, _mm256_sub_ps(zero, m))
        }
        Format::Q6K => {
            let d = halves(supers(), 0);
            (
                _mm256_mul_ps(d, signed(0)),
                _mm256_mul_ps(d, signed(1)),
                zero,
            )
        }
    }
}
