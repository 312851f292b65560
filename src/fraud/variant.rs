//! In-process weight variants of one claimed model: the f32 reference, the
//! honest Q8_0 executor, and the cheaper re-quantizations a cheater would
//! run. No temporary files: each weight matrix is re-quantized as it loads.

use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType, QTensor};
use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::engine::device::ComputeDevice;
use crate::engine::model::ModelError;
use crate::engine::registry::Registry;
use crate::engine::runtime::{Runtime, RuntimeError};

/// Weight precision of an executor or validator built from the claimed file.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// The GGUF file as shipped (mixed K-quants).
    File,
    /// Every weight matrix dequantized to f32: the reference.
    F32,
    /// Q8_0, the analogue of FP8 serving: the honest executor.
    Q8,
    /// Q5_0.
    Q5,
    /// Q4_0: the int4 cheater.
    Int4,
    /// Q3_K where rows allow, else the llama.cpp-style fallback.
    Q3k,
    /// Q2_K where rows allow, else the llama.cpp-style fallback.
    Q2k,
}

impl Precision {
    /// The precision's name in records and tables (`f32`, `q8_0`, `q4_0`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::F32 => "f32",
            Self::Q8 => "q8_0",
            Self::Q5 => "q5_0",
            Self::Int4 => "q4_0",
            Self::Q3k => "q3_k",
            Self::Q2k => "q2_k",
        }
    }

    fn target(self) -> Option<GgmlDType> {
        match self {
            Self::File => None,
            Self::F32 => Some(GgmlDType::F32),
            Self::Q8 => Some(GgmlDType::Q8_0),
            Self::Q5 => Some(GgmlDType::Q5_0),
            Self::Int4 => Some(GgmlDType::Q4_0),
            Self::Q3k => Some(GgmlDType::Q3K),
            Self::Q2k => Some(GgmlDType::Q2K),
        }
    }
}

/// What loading a variant did to the weights.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VariantReport {
    /// The precision the weights were loaded at; `None` in a default (empty) report.
    pub precision: Option<Precision>,
    /// Weight tensors loaded (each converted to `precision`, or kept as is for `file`).
    pub tensors: usize,
    /// Tensors whose row length forbade the target type: (name, type used).
    pub fallbacks: Vec<(String, String)>,
    /// Tensors whose int4/int5 values run through the Q8_0 kernel.
    pub repacked_to_q8: usize,
    /// Bytes of the weight matrices at their precision (int4/int5 counted
    /// packed, as a cheater would store them): the cost model of decoding,
    /// which reads every weight once per token.
    #[serde(default)]
    pub weight_bytes: u64,
}

/// Load `spec` (registry id or path) with every weight matrix at
/// `precision`, on `device`.
pub fn load(
    spec: &str,
    precision: Precision,
    device: ComputeDevice,
) -> Result<(Runtime, VariantReport), RuntimeError> {
    let resolved = Registry::load()?.resolve(spec)?;
    let mut report = VariantReport {
        precision: Some(precision),
        ..Default::default()
    };
    let rt = Runtime::from_resolved_mapped_on(
        resolved,
        &mut |name, w| {
            report.tensors += 1;
            convert(name, w, precision, &mut report)
        },
        device,
    )?;
    Ok((rt, report))
}

/// Re-quantize one weight to `precision`'s type (via f32), falling back
/// where the type's block does not divide the rows.
fn convert(
    name: &str,
    w: QTensor,
    precision: Precision,
    report: &mut VariantReport,
) -> Result<QTensor, ModelError> {
    let Some(target) = precision.target() else {
        report.weight_bytes += w.storage_size_in_bytes() as u64;
        return Ok(w);
    };
    let cols = w.shape().dims().last().copied().unwrap_or(0);
    let dtype = if cols % target.block_size() == 0 {
        target
    } else {
        let fb = fallback(target);
        report.fallbacks.push((name.to_string(), format!("{fb:?}")));
        fb
    };
    if w.dtype() == dtype {
        report.weight_bytes += w.storage_size_in_bytes() as u64;
        return Ok(w);
    }
    let q = QTensor::quantize(&w.dequantize(&Device::Cpu)?, dtype)?;
    report.weight_bytes += q.storage_size_in_bytes() as u64;
    match dtype {
        GgmlDType::Q4_0 | GgmlDType::Q5_0 => {
            report.repacked_to_q8 += 1;
            repack_as_q8_0(&q)
        }
        _ => Ok(q),
    }
}

/// The type llama.cpp substitutes when a row is not a multiple of 256
/// (`llama-quant.cpp`): Q2_K/Q3_K → IQ4_NL, which candle lacks, so Q4_0, the
/// other 4-bit block-32 type; Q4_K → Q5_0; Q5_K → Q5_1; Q6_K → Q8_0.
fn fallback(target: GgmlDType) -> GgmlDType {
    match target {
        GgmlDType::Q2K | GgmlDType::Q3K => GgmlDType::Q4_0,
        GgmlDType::Q4K => GgmlDType::Q5_0,
        GgmlDType::Q5K => GgmlDType::Q5_1,
        GgmlDType::Q6K => GgmlDType::Q8_0,
        other => other,
    }
}

/// Rewrite Q4_0 / Q5_0 blocks as Q8_0 blocks with the same f16 scale and the
/// same small integers: the dequantized weights are bit-identical, and
/// candle's Q8_0 kernel is 6-7x faster on x86 than its Q4_0 one (docs/reference.md §2).
pub fn repack_as_q8_0(q: &QTensor) -> Result<QTensor, ModelError> {
    type Ints = fn(&[u8]) -> [i8; 32];
    let (src_block, ints): (usize, Ints) = match q.dtype() {
        GgmlDType::Q4_0 => (18, q4_0_ints),
        GgmlDType::Q5_0 => (22, q5_0_ints),
        other => {
            return Err(ModelError::Config(format!(
                "cannot repack {other:?} as Q8_0"
            )))
        }
    };
    let data = q.data()?;
    if data.len() % src_block != 0 {
        return Err(ModelError::Config(
            "a quantized tensor has a partial block".into(),
        ));
    }
    let mut out = Vec::with_capacity(data.len() / src_block * 34);
    for block in data.chunks_exact(src_block) {
        out.extend_from_slice(&block[..2]);
        out.extend(ints(block).iter().map(|&v| v as u8));
    }
    let dims = q.shape().dims().to_vec();
    Ok(qtensor_from_ggml(
        GgmlDType::Q8_0,
        &out,
        dims,
        &Device::Cpu,
    )?)
}

/// Q4_0: `d: f16, qs: [u8; 16]`; value j is the low nibble of qs[j], value
/// j + 16 the high nibble, both offset by 8.
fn q4_0_ints(block: &[u8]) -> [i8; 32] {
    let qs = &block[2..18];
    let mut x = [0i8; 32];
    for j in 0..16 {
        x[j] = (qs[j] & 0x0f) as i8 - 8;
        x[j + 16] = (qs[j] >> 4) as i8 - 8;
    }
    x
}

/// Q5_0: `d: f16, qh: u32 (LE), qs: [u8; 16]`; the fifth bit of value j is
/// bit j of qh, of value j + 16 bit j + 16; offset 16.
fn q5_0_ints(block: &[u8]) -> [i8; 32] {
    let qh = u32::from_le_bytes([block[2], block[3], block[4], block[5]]);
    let qs = &block[6..22];
    let mut x = [0i8; 32];
    for j in 0..16 {
        let h0 = (((qh >> j) & 1) << 4) as u8;
        let h1 = (((qh >> (j + 16)) & 1) << 4) as u8;
        x[j] = ((qs[j] & 0x0f) | h0) as i8 - 16;
        x[j + 16] = ((qs[j] >> 4) | h1) as i8 - 16;
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Tensor;

    fn weights(rows: usize, cols: usize) -> Tensor {
        let v: Vec<f32> = (0..rows * cols)
            .map(|i| ((i as f32 * 0.7311).sin() * 3.0) + ((i % 7) as f32 - 3.0) * 0.01)
            .collect();
        Tensor::from_vec(v, (rows, cols), &Device::Cpu).expect("tensor")
    }

    fn bits(t: &QTensor) -> Vec<u32> {
        t.dequantize(&Device::Cpu)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .expect("dequantize")
            .into_iter()
            .map(f32::to_bits)
            .collect()
    }

    #[test]
    fn repacked_int4_and_int5_dequantize_bit_identically() {
        for dtype in [GgmlDType::Q4_0, GgmlDType::Q5_0] {
            let q = QTensor::quantize(&weights(8, 96), dtype).expect("quantize");
            let r = repack_as_q8_0(&q).expect("repack");
            assert_eq!(r.dtype(), GgmlDType::Q8_0);
            assert_eq!(bits(&q), bits(&r), "{dtype:?}");
        }
    }

    #[test]
    fn int4_values_span_sixteen_levels_per_block() {
        let q = QTensor::quantize(&weights(1, 32), GgmlDType::Q4_0).expect("quantize");
        let data = q.data().expect("data");
        let ints = q4_0_ints(&data[..18]);
        assert!(ints.iter().all(|v| (-8..=7).contains(v)));
        assert!(
            ints.contains(&-8),
            "the largest magnitude maps to -8: {ints:?}"
        );
    }

    #[test]
    fn k_quants_fall_back_on_rows_not_divisible_by_256() {
        let mut report = VariantReport::default();
        let w = QTensor::quantize(&weights(4, 576), GgmlDType::F32).expect("f32");
        let q = convert("blk.0.ffn_up.weight", w, Precision::Q3k, &mut report).expect("convert");
        assert_eq!(q.dtype(), GgmlDType::Q8_0, "Q4_0 fallback, repacked");
        assert_eq!(
            report.fallbacks,
            vec![("blk.0.ffn_up.weight".into(), "Q4_0".into())]
        );
        let w = QTensor::quantize(&weights(4, 512), GgmlDType::F32).expect("f32");
        let q = convert("blk.0.ffn_down.weight", w, Precision::Q3k, &mut report).expect("convert");
        assert_eq!(q.dtype(), GgmlDType::Q3K);
        assert_eq!(report.fallbacks.len(), 1);
    }

    #[test]
    fn int4_is_lossier_than_q8() {
        let w = weights(4, 256);
        let orig: Vec<f32> = w.flatten_all().and_then(|t| t.to_vec1()).expect("vec");
        let err = |p: Precision| {
            let mut r = VariantReport::default();
            let q = convert(
                "w",
                QTensor::quantize(&w, GgmlDType::F32).expect("f32"),
                p,
                &mut r,
            )
            .expect("convert");
            let d: Vec<f32> = q
                .dequantize(&Device::Cpu)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1())
                .expect("vec");
            orig.iter()
                .zip(&d)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max)
        };
        let (q8, q4) = (err(Precision::Q8), err(Precision::Int4));
        assert!(q8 < 0.02 && q4 > 4.0 * q8, "q8 {q8}, int4 {q4}");
    }
}
