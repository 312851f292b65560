//! Unquantized weight matrices (F32, F16, BF16), such as GPT-OSS's BF16
//! attention in the released files, kept in their own width and widened
//! to f32 as they are read. Each output is one dot product of a weight row
//! with an activation row, in 16 lanes summed in a fixed order: the same
//! bits on every machine, thread count and batch shape (a row's result does
//! not depend on the rows beside it), as the quantized kernels guarantee,
//! which a BLAS-style product (blocking that depends on the shape) does not.

use candle_core::quantized::GgmlDType;
use half::{bf16, f16};

/// Outputs one parallel task computes.
const OUTPUTS_PER_TASK: usize = 64;

/// A weight matrix `[n, k]` in a float format.
#[derive(Debug, Clone)]
pub struct FloatMatrix {
    n: usize,
    k: usize,
    data: FloatData,
}

#[derive(Debug, Clone)]
enum FloatData {
    F32(Vec<f32>),
    F16(Vec<f16>),
    Bf16(Vec<bf16>),
}

/// Why a float matrix could not be built or applied.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FloatError {
    /// The type is not F32, F16 or BF16.
    #[error("{0:?} is not a float format")]
    NotFloat(GgmlDType),
    /// The bytes are not `n × k` values of the type.
    #[error("a {n}x{k} float matrix needs {bytes} bytes, found {found}")]
    Shape {
        /// Rows.
        n: usize,
        /// Row length.
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

impl FloatMatrix {
    /// Whether `dtype` is one this matrix holds.
    pub fn handles(dtype: GgmlDType) -> bool {
        matches!(dtype, GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16)
    }

    /// The matrix from its little-endian GGUF bytes.
    pub fn from_bytes(
        dtype: GgmlDType,
        n: usize,
        k: usize,
        bytes: &[u8],
    ) -> Result<Self, FloatError> {
        let width = match dtype {
            GgmlDType::F32 => 4,
            GgmlDType::F16 | GgmlDType::BF16 => 2,
            other => return Err(FloatError::NotFloat(other)),
        };
        let need = n * k * width;
        if n == 0 || k == 0 || bytes.len() != need {
            return Err(FloatError::Shape {
                n,
                k,
                bytes: need,
                found: bytes.len(),
            });
        }
        let halves = || {
            bytes
                .chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
        };
        let data = match dtype {
            GgmlDType::F32 => FloatData::F32(
                bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
            ),
            GgmlDType::F16 => FloatData::F16(halves().map(f16::from_bits).collect()),
            _ => FloatData::Bf16(halves().map(bf16::from_bits).collect()),
        };
        Ok(Self { n, k, data })
    }

    /// The matrix read from `src` (e.g. a GGUF file positioned at the
    /// tensor) a megabyte at a time, so that loading never holds the bytes
    /// and the values of a large matrix (a token table) at once.
    pub fn from_reader(
        dtype: GgmlDType,
        n: usize,
        k: usize,
        src: &mut impl std::io::Read,
    ) -> Result<Self, FloatError> {
        let width = match dtype {
            GgmlDType::F32 => 4,
            GgmlDType::F16 | GgmlDType::BF16 => 2,
            other => return Err(FloatError::NotFloat(other)),
        };
        let total = n * k;
        let short = |found: usize| FloatError::Shape {
            n,
            k,
            bytes: total * width,
            found,
        };
        if total == 0 {
            return Err(short(0));
        }
        let mut data = match dtype {
            GgmlDType::F32 => FloatData::F32(Vec::with_capacity(total)),
            GgmlDType::F16 => FloatData::F16(Vec::with_capacity(total)),
            _ => FloatData::Bf16(Vec::with_capacity(total)),
        };
        let mut buf = vec![0u8; (1 << 20) / width * width];
        let mut done = 0;
        while done < total {
            let count = (total - done).min(buf.len() / width);
            let chunk = &mut buf[..count * width];
            src.read_exact(chunk).map_err(|_| short(done * width))?;
            match &mut data {
                FloatData::F32(v) => v.extend(
                    chunk
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                ),
                FloatData::F16(v) => v.extend(
                    chunk
                        .chunks_exact(2)
                        .map(|b| f16::from_bits(u16::from_le_bytes([b[0], b[1]]))),
                ),
                FloatData::Bf16(v) => v.extend(
                    chunk
                        .chunks_exact(2)
                        .map(|b| bf16::from_bits(u16::from_le_bytes([b[0], b[1]]))),
                ),
            }
            done += count;
        }
        Ok(Self { n, k, data })
    }

    /// Rows (output features).
    pub fn rows(&self) -> usize {
        self.n
    }

    /// Row length (input features).
    pub fn cols(&self) -> usize {
        self.k
    }

    /// Row `i` widened to f32 into `out` (a token-table lookup).
    pub fn row_f32(&self, i: usize, out: &mut [f32]) {
        let range = i * self.k..(i + 1) * self.k;
        match &self.data {
            FloatData::F32(w) => out.copy_from_slice(&w[range]),
            FloatData::F16(w) => out
                .iter_mut()
                .zip(&w[range])
                .for_each(|(o, v)| *o = v.to_f32()),
            FloatData::Bf16(w) => out
                .iter_mut()
                .zip(&w[range])
                .for_each(|(o, v)| *o = v.to_f32()),
        }
    }

    /// `x · Wᵀ` for `m` rows of `x`: `m × n` outputs, row-major.
    pub fn matmul(&self, x: &[f32]) -> Result<Vec<f32>, FloatError> {
        if !x.len().is_multiple_of(self.k) {
            return Err(FloatError::Activations {
                got: x.len(),
                k: self.k,
            });
        }
        let (n, k) = (self.n, self.k);
        let mut out = vec![0f32; x.len() / k * n];
        super::each_output(&mut out, n, OUTPUTS_PER_TASK, |r, j| {
            let xs = &x[r * k..(r + 1) * k];
            let range = j * k..(j + 1) * k;
            match &self.data {
                FloatData::F32(w) => dot(&w[range], xs, |v| *v),
                // Exact conversions written out, so that they vectorize
                // (half's own may test the CPU per value).
                FloatData::F16(w) => {
                    dot(&w[range], xs, |v| super::portable::f16_to_f32(v.to_bits()))
                }
                FloatData::Bf16(w) => dot(&w[range], xs, |v| bf16_to_f32(*v)),
            }
        });
        Ok(out)
    }
}

/// `w · x` in 16 independent lanes summed in a fixed order: vectorizes, and
/// the result depends only on the two vectors (the model's attention uses
/// it too, with `widen` the identity). Runs [`dot_lanes`] compiled for the
/// process's kernel path ([`super::path::active`]): 16 lanes are one
/// AVX-512 vector, two AVX2 ones, four SSE ones, with the same multiplies
/// and adds in the same order on each — the same bits.
pub(crate) fn dot<T>(w: &[T], x: &[f32], widen: impl Fn(&T) -> f32) -> f32 {
    use super::path::KernelPath;
    match super::path::active() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the active path was checked to run on this CPU, and its
        // features include AVX-512 F.
        KernelPath::Avx512Vnni => unsafe { dot_avx512(w, x, widen) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above; these paths include AVX2 and FMA.
        KernelPath::Avx2 | KernelPath::AvxVnni => unsafe { dot_avx2(w, x, widen) },
        _ => dot_lanes(w, x, widen),
    }
}

/// [`dot_lanes`] compiled with AVX-512 F.
///
/// # Safety
/// Call only on a CPU with avx512f.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dot_avx512<T>(w: &[T], x: &[f32], widen: impl Fn(&T) -> f32) -> f32 {
    dot_lanes(w, x, widen)
}

/// [`dot_lanes`] compiled with AVX2.
///
/// # Safety
/// Call only on a CPU with avx2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_avx2<T>(w: &[T], x: &[f32], widen: impl Fn(&T) -> f32) -> f32 {
    dot_lanes(w, x, widen)
}

/// The dot product's one definition: 16 lanes of multiply-then-add (never
/// fused), reduced pairwise, then the tail.
#[inline(always)]
pub(crate) fn dot_lanes<T>(w: &[T], x: &[f32], widen: impl Fn(&T) -> f32) -> f32 {
    let mut lanes = [0f32; 16];
    let split = w.len() / 16 * 16;
    for (cw, cx) in w[..split].chunks_exact(16).zip(x[..split].chunks_exact(16)) {
        for l in 0..16 {
            lanes[l] += widen(&cw[l]) * cx[l];
        }
    }
    let mut tail = 0f32;
    for (a, b) in w[split..].iter().zip(&x[split..]) {
        tail += widen(a) * b;
    }
    let mut width = 16;
    while width > 1 {
        width /= 2;
        for l in 0..width {
            lanes[l] += lanes[l + width];
        }
    }
    lanes[0] + tail
}

/// A bfloat16 widened: its bits are the top half of the f32's.
#[inline(always)]
fn bf16_to_f32(v: bf16) -> f32 {
    f32::from_bits(u32::from(v.to_bits()) << 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_match_the_widened_values_in_every_format_and_batch() {
        let (n, k) = (3, 40);
        let w = crate::testing::pseudo_random(n * k, 3);
        let x = crate::testing::pseudo_random(2 * k, 4);
        for dtype in [GgmlDType::F32, GgmlDType::F16, GgmlDType::BF16] {
            let (bytes, widened): (Vec<u8>, Vec<f32>) = match dtype {
                GgmlDType::F32 => (w.iter().flat_map(|v| v.to_le_bytes()).collect(), w.clone()),
                GgmlDType::F16 => (
                    w.iter()
                        .flat_map(|v| f16::from_f32(*v).to_bits().to_le_bytes())
                        .collect(),
                    w.iter().map(|v| f16::from_f32(*v).to_f32()).collect(),
                ),
                _ => (
                    w.iter()
                        .flat_map(|v| bf16::from_f32(*v).to_bits().to_le_bytes())
                        .collect(),
                    w.iter().map(|v| bf16::from_f32(*v).to_f32()).collect(),
                ),
            };
            let m = FloatMatrix::from_bytes(dtype, n, k, &bytes).expect("shape");
            let y = m.matmul(&x).expect("product");
            for (r, xs) in x.chunks(k).enumerate() {
                for j in 0..n {
                    let want: f32 = widened[j * k..(j + 1) * k]
                        .iter()
                        .zip(xs)
                        .map(|(a, b)| a * b)
                        .sum();
                    assert!((y[r * n + j] - want).abs() < 1e-4, "{dtype:?}");
                }
            }
            assert_eq!(
                m.matmul(&x[k..]).expect("alone"),
                y[n..].to_vec(),
                "{dtype:?}: row-invariant"
            );
        }
        assert!(FloatMatrix::from_bytes(GgmlDType::Q8_0, 1, 32, &[0; 34]).is_err());
        assert!(FloatMatrix::from_bytes(GgmlDType::F16, 2, 2, &[0; 6]).is_err());
    }
}
