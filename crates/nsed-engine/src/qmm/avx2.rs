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

use super::{Codes, Format, PackedMatrix, QuantizedRows, BLOCK, GROUP};
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

/// Rows per panel of the batched kernel: 8 integer accumulators, one code
/// vector (two for nibbles), the nibble mask and a broadcast word fit the 16
/// 256-bit registers.
const PANEL: usize = 8;

/// The exact i32 sums, one vector per row, of `R` activation rows (`$xb`:
/// each row's block `b`) against steps `$steps` of one half-group record.
/// 4-bit codes sum 8 steps in an i16 pair accumulator per row (`$step`,
/// widened once by `$finish`); 5- and 6-bit codes sum runs of 4 and 2
/// steps so, each run widened into an i32 accumulator; Q8_0 adds each step's
/// products to it (`$byte`). Each step's codes are unpacked once for all
/// rows. A macro so that
/// it expands inside each family's target-feature function.
macro_rules! panel_sums {
    ($format:expr, $rec:expr, $half:expr, $xb:expr, $steps:expr, $r:expr,
     $step:ident, $finish:ident, $byte:ident) => {{
        let mut acc = [_mm256_setzero_si256(); $r];
        let load = |at: usize| {
            let bytes = &$rec[at + $half * 32..][..32];
            // SAFETY (inside the caller's unsafe block): `bytes` holds the
            // 32 bytes read.
            _mm256_loadu_si256(bytes.as_ptr().cast())
        };
        let low = _mm256_set1_epi8(15);
        match $format.codes() {
            Codes::Nibble if !$format.halves() => {
                for u in 0..4 {
                    let p = load(u * 64);
                    let lo = _mm256_and_si256(p, low);
                    let hi = _mm256_and_si256(_mm256_srli_epi16(p, 4), low);
                    for (a, x) in acc.iter_mut().zip(&$xb) {
                        *a = $step($step(*a, lo, word(x, u)), hi, word(x, u + 4));
                    }
                    // SAFETY: an empty instruction sequence, a compiler
                    // memory barrier: it keeps the next step's broadcasts
                    // from being hoisted above this one (which spilled).
                    std::arch::asm!("", options(nostack, preserves_flags));
                }
                for a in acc.iter_mut() {
                    *a = $finish(*a);
                }
            }
            Codes::Byte | Codes::Lut => {
                // SAFETY: same target features; the record is whole.
                let v = unpack::<F>($rec, $half);
                for t in $steps {
                    for (a, x) in acc.iter_mut().zip(&$xb) {
                        *a = $byte(*a, v[t], word(x, t));
                    }
                }
            }
            Codes::Nibble | Codes::Nibble5 | Codes::Nibble6 => {
                // SAFETY: as above.
                let v = unpack::<F>($rec, $half);
                // Steps' pairs sum in i16 as far as they cannot saturate,
                // then widen into the i32 sum: codes < 32 four steps
                // (4 · 2 · 31 · 127 = 31496), codes < 64 two (32004).
                // Nibbles scaled by halves (Q3_K, Q2_K) run 4 steps too.
                let run = match $format.codes() {
                    Codes::Nibble6 => 2,
                    _ => 4,
                };
                for t in $steps.step_by(run) {
                    for (a, x) in acc.iter_mut().zip(&$xb) {
                        let mut pairs = $step(_mm256_setzero_si256(), v[t], word(x, t));
                        for u in t + 1..t + run {
                            pairs = $step(pairs, v[u], word(x, u));
                        }
                        *a = _mm256_add_epi32(*a, $finish(pairs));
                    }
                }
            }
        }
        acc
    }};
}

/// The two kernels share every line but the integer block sums; this macro
/// writes one `rows`/`decode`/`panel`/`half_block` family per instruction
/// set, each compiled with its own target features. `$byte_signed`: the
/// family's Q8_0 step yields Σ (code − 128)·x, the offset already removed.
macro_rules! kernel_family {
    (
        $features:literal,
        $rows:ident,
        $decode:ident,
        $panel:ident,
        $half_block:ident,
        $sums:ident,
        $step:ident,
        $finish:ident,
        $byte:ident,
        $byte_signed:literal
    ) => {
        /// # Safety
        #[doc = concat!("Call only on a CPU with ", $features, ".")]
        #[target_feature(enable = $features)]
        unsafe fn $rows<const F: usize>(
            w: &PackedMatrix,
            acts: &QuantizedRows,
            g: usize,
            dst: &mut [f32],
        ) {
            let m = acts.m;
            let mut i = 0;
            while i < m {
                let take = match m - i {
                    // SAFETY: same target features as this function.
                    1 => unsafe {
                        $decode::<F>(w, acts, g, i, dst);
                        1
                    },
                    // SAFETY: same target features as this function.
                    2 => unsafe {
                        $panel::<F, 2>(w, acts, g, i, dst);
                        2
                    },
                    // SAFETY: same target features as this function.
                    3 => unsafe {
                        $panel::<F, 3>(w, acts, g, i, dst);
                        3
                    },
                    // SAFETY: same target features as this function.
                    4..PANEL => unsafe {
                        $panel::<F, 4>(w, acts, g, i, dst);
                        4
                    },
                    // SAFETY: same target features as this function.
                    _ => unsafe {
                        $panel::<F, PANEL>(w, acts, g, i, dst);
                        PANEL
                    },
                };
                i += take;
            }
        }

        /// Row `i0` alone (decode) against group `g`: the blocks once, both
        /// halves per block, prefetching ahead (a single row is bound by
        /// reading the weights).
        ///
        /// # Safety
        #[doc = concat!("Call only on a CPU with ", $features, ".")]
        #[target_feature(enable = $features)]
        unsafe fn $decode<const F: usize>(
            w: &PackedMatrix,
            acts: &QuantizedRows,
            g: usize,
            i0: usize,
            dst: &mut [f32],
        ) {
            let format = Format::from_id(F);
            let (nb, code_bytes) = (w.k / BLOCK, format.code_bytes());
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
                    unsafe { $half_block::<F>(w, acts, g, b, half, i0, acc_h) };
                }
            }
            for (half, acc_h) in acc.iter().enumerate() {
                let out = &mut dst[i0 * GROUP + half * LANES..][..LANES];
                // SAFETY: `out` holds 8 floats.
                unsafe { _mm256_storeu_ps(out.as_mut_ptr(), *acc_h) };
            }
        }

        /// Rows `i0..i0 + R` (several sequences' decode steps, or a prompt)
        /// against group `g`, one half-group (8 output rows) at a time: each
        /// step's codes are unpacked once for all R rows, whose integer
        /// sums stay in registers. The float work is the reference
        /// kernel's, per row and block in its order, on accumulators kept
        /// in `dst` (in L1).
        ///
        /// # Safety
        #[doc = concat!("Call only on a CPU with ", $features, ".")]
        #[target_feature(enable = $features)]
        unsafe fn $panel<const F: usize, const R: usize>(
            w: &PackedMatrix,
            acts: &QuantizedRows,
            g: usize,
            i0: usize,
            dst: &mut [f32],
        ) {
            let format = Format::from_id(F);
            let (nb, cb) = (w.k / BLOCK, format.code_bytes());
            let records = &w.codes[g * nb * cb..][..nb * cb];
            let rows: [&[i8]; R] =
                std::array::from_fn(|r| &acts.q[(i0 + r) * nb * BLOCK..][..nb * BLOCK]);
            let out = &mut dst[i0 * GROUP..][..R * GROUP];
            out.fill(0.0);
            // Q6_K scales its two 16-element runs (steps 0-3, 4-7) apart.
            let runs: &[std::ops::Range<usize>] = if format.halves() {
                &[0..4, 4..8]
            } else {
                &[0..8]
            };
            let signed = $byte_signed && matches!(format.codes(), Codes::Byte | Codes::Lut);
            // Each row's per-block scalars, sliced once.
            let span = |r: usize| (i0 + r) * nb..(i0 + r + 1) * nb;
            let d: [&[f32]; R] = std::array::from_fn(|r| &acts.d[span(r)]);
            let d_sum: [&[f32]; R] = std::array::from_fn(|r| &acts.d_sum[span(r)]);
            let hs: [&[i32]; R] =
                std::array::from_fn(|r| &acts.half_sums[2 * (i0 + r) * nb..][..2 * nb]);
            // The panel's activation block, copied side by side: every
            // broadcast word is then at a fixed offset from one pointer (8
            // row pointers would not fit the general registers).
            let mut block = [[0i8; BLOCK]; R];
            for b in 0..nb {
                let rec = &records[b * cb..][..cb];
                for (dst, x) in block.iter_mut().zip(&rows) {
                    dst.copy_from_slice(&x[b * BLOCK..][..BLOCK]);
                }
                let xb: [&[i8]; R] = std::array::from_fn(|r| &block[r][..]);
                for half in 0..2 {
                    // SAFETY: same target features.
                    let (s0, s1, min, min1) = unsafe { scales::<F>(w, g, b, half) };
                    for (run, steps) in runs.iter().enumerate() {
                        // SAFETY: same target features; the record is whole.
                        let sums = unsafe {
                            panel_sums!(
                                format,
                                rec,
                                half,
                                xb,
                                steps.clone(),
                                R,
                                $step,
                                $finish,
                                $byte
                            )
                        };
                        let (scale, run_min) = if run == 0 { (s0, min) } else { (s1, min1) };
                        let lanes = out
                            .chunks_exact_mut(GROUP)
                            .map(|o| &mut o[half * LANES..][..LANES]);
                        for (r, (sum, lanes)) in sums.iter().zip(lanes).enumerate() {
                            let sum = if signed || format.offset() == 0 {
                                *sum
                            } else {
                                let count = match format.halves() {
                                    true => hs[r][2 * b + run],
                                    false => hs[r][2 * b] + hs[r][2 * b + 1],
                                };
                                _mm256_sub_epi32(*sum, _mm256_set1_epi32(format.offset() * count))
                            };
                            // SAFETY: `lanes` holds 8 floats.
                            let mut acc = unsafe { _mm256_loadu_ps(lanes.as_ptr()) };
                            acc = _mm256_fmadd_ps(
                                _mm256_cvtepi32_ps(sum),
                                _mm256_mul_ps(scale, _mm256_set1_ps(d[r][b])),
                                acc,
                            );
                            if format.has_min() {
                                acc = _mm256_fmadd_ps(min, _mm256_set1_ps(d_sum[r][b]), acc);
                            } else if format.half_mins() {
                                let dh = d[r][b] * hs[r][2 * b + run] as f32;
                                acc = _mm256_fmadd_ps(run_min, _mm256_set1_ps(dh), acc);
                            }
                            // SAFETY: as above.
                            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
                        }
                    }
                }
            }
        }

        /// One block of one half-group for row `i0`: the exact integer
        /// sums, then the reference kernel's FMAs.
        ///
        /// # Safety
        #[doc = concat!("Call only on a CPU with ", $features, ".")]
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn $half_block<const F: usize>(
            w: &PackedMatrix,
            acts: &QuantizedRows,
            g: usize,
            b: usize,
            half: usize,
            i0: usize,
            acc: &mut __m256,
        ) {
            let format = Format::from_id(F);
            let (nb, code_bytes) = (w.k / BLOCK, format.code_bytes());
            let rec = &w.codes[(g * nb + b) * code_bytes..][..code_bytes];
            // SAFETY: same target features; `rec` is a whole record.
            let v = unsafe { unpack::<F>(rec, half) };
            // SAFETY: same target features; `g`, `b` index within `w`.
            let (s0, s1, min, min1) = unsafe { scales::<F>(w, g, b, half) };
            let at = i0 * nb + b;
            let xq = &acts.q[at * BLOCK..][..BLOCK];
            let hs = &acts.half_sums[at * 2..][..2];
            let dxv = _mm256_set1_ps(acts.d[at]);
            // SAFETY: same target features; `xq` is a whole block.
            let (i0v, i1v) = unsafe { $sums(format, &v, xq, hs) };
            let dx = acts.d[at];
            *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i0v), _mm256_mul_ps(s0, dxv), *acc);
            if format.half_mins() {
                *acc = _mm256_fmadd_ps(min, _mm256_set1_ps(dx * hs[0] as f32), *acc);
            }
            if format.halves() {
                *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i1v), _mm256_mul_ps(s1, dxv), *acc);
                if format.half_mins() {
                    *acc = _mm256_fmadd_ps(min1, _mm256_set1_ps(dx * hs[1] as f32), *acc);
                }
            } else if format.has_min() {
                let dxb = _mm256_set1_ps(acts.d[at] * (hs[0] + hs[1]) as f32);
                *acc = _mm256_fmadd_ps(min, dxb, *acc);
            }
        }
    };
}

kernel_family!(
    "avx2,fma,f16c",
    rows_avx2,
    decode_avx2,
    panel_avx2,
    half_block_avx2,
    sums_avx2,
    step_avx2,
    finish_avx2,
    byte_avx2,
    true
);
kernel_family!(
    "avx2,fma,f16c,avxvnni",
    rows_vnni,
    decode_vnni,
    panel_vnni,
    half_block_vnni,
    sums_vnni,
    step_vnni,
    finish_vnni,
    step_vnni,
    false
);
#[cfg(test)]
kernel_family!(
    "avx2,fma,f16c,avx512vnni,avx512vl",
    rows_evex,
    decode_evex,
    panel_evex,
    half_block_evex,
    sums_evex,
    step_evex,
    finish_evex,
    step_evex,
    false
);

/// One step of Q8_0 codes (w = code − 128) into an i32 accumulator (AVX2):
/// |w| × sign(w)·x, every pair at most 2 · 128 · 127 = 32512, so the sum is
/// Σ w·x with the offset already removed.
#[inline]
#[target_feature(enable = "avx2")]
fn byte_avx2(acc: __m256i, codes: __m256i, x: __m256i) -> __m256i {
    let w = _mm256_xor_si256(codes, _mm256_set1_epi8(-128));
    let pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w));
    _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
}

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
///
/// # Safety
/// Call only on a CPU with avx2.
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
        // Codes < 16 scaled by halves: four steps each.
        Codes::Nibble if format.halves() => (minus(run(0, 4), hs[0]), minus(run(4, 4), hs[1])),
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
        // IQ4's looked-up codes are such bytes too.
        Codes::Byte | Codes::Lut => {
            let mut h = [_mm256_setzero_si256(); 2];
            for (t, vt) in v.iter().enumerate() {
                h[t % 2] = byte_avx2(h[t % 2], *vt, word(xq, t));
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
        /// # Safety
        #[doc = concat!("Call only on a CPU with ", $features, ".")]
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
///
/// # Safety
/// Call only on a CPU with avx2.
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
        Codes::Lut => {
            // The table in both 128-bit lanes: the in-lane shuffle is a full lookup.
            // SAFETY: the table holds the 16 bytes read.
            let table = unsafe { _mm_loadu_si128(format.lut().as_ptr().cast()) };
            let table = _mm256_broadcastsi128_si256(table);
            let low = _mm256_set1_epi8(15);
            for u in 0..4 {
                let p = load(u * 64 + half * 32);
                let lo = _mm256_and_si256(p, low);
                let hi = _mm256_and_si256(_mm256_srli_epi16(p, 4), low);
                v[u] = _mm256_shuffle_epi8(table, lo);
                v[u + 4] = _mm256_shuffle_epi8(table, hi);
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
/// min, second half's min), computed with the reference kernel's float operations.
///
/// # Safety
/// Call only on a CPU with avx2, f16c.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn scales<const F: usize>(
    w: &PackedMatrix,
    g: usize,
    b: usize,
    half: usize,
) -> (__m256, __m256, __m256, __m256) {
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
    let ints = |field: usize| _mm256_cvtepu8_epi32(byte_field(field));
    let unsigned = |field: usize| _mm256_cvtepi32_ps(ints(field));
    let signed = |field: usize| _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(byte_field(field)));
    let supers = || {
        let sm = format.super_meta();
        &w.supers[(g * (w.k / 256) + b / 8) * GROUP * sm..][..GROUP * sm]
    };
    let zero = _mm256_setzero_ps();
    match format {
        Format::Q4_0 | Format::Q5_0 | Format::Q8_0 | Format::Iq4Nl => {
            let d = halves(meta, 0);
            (d, d, zero, zero)
        }
        Format::Q4_1 => (halves(meta, 0), zero, halves(meta, 1), zero),
        Format::Q4K | Format::Q5K => {
            let (d, dmin) = (halves(supers(), 0), halves(supers(), 1));
            let s = _mm256_mul_ps(d, unsigned(0));
            let m = _mm256_mul_ps(dmin, unsigned(1));
            (s, zero, _mm256_sub_ps(zero, m), zero)
        }
        Format::Q6K | Format::Q3K => {
            let d = halves(supers(), 0);
            (
                _mm256_mul_ps(d, signed(0)),
                _mm256_mul_ps(d, signed(1)),
                zero,
                zero,
            )
        }
        Format::Q2K => {
            let (d, dmin) = (halves(supers(), 0), halves(supers(), 1));
            let low = |v| _mm256_cvtepi32_ps(_mm256_and_si256(v, _mm256_set1_epi32(15)));
            let high = |v| _mm256_cvtepi32_ps(_mm256_srli_epi32(v, 4));
            let (a, b) = (ints(0), ints(1));
            (
                _mm256_mul_ps(d, low(a)),
                _mm256_mul_ps(d, low(b)),
                _mm256_sub_ps(zero, _mm256_mul_ps(dmin, high(a))),
                _mm256_sub_ps(zero, _mm256_mul_ps(dmin, high(b))),
            )
        }
        Format::Iq4Xs => {
            let s = _mm256_mul_ps(halves(supers(), 0), signed(0));
            (s, s, zero, zero)
        }
        Format::Mxfp4 => {
            // 2^(e − 128), as the AVX-512 path computes it.
            let e = ints(0);
            let normal = _mm256_slli_epi32(_mm256_sub_epi32(e, _mm256_set1_epi32(1)), 23);
            let subnormal = _mm256_sllv_epi32(_mm256_set1_epi32(0x0020_0000), e);
            let small = _mm256_cmpgt_epi32(_mm256_set1_epi32(2), e);
            let s = _mm256_castsi256_ps(_mm256_blendv_epi8(normal, subnormal, small));
            (s, s, zero, zero)
        }
    }
}
