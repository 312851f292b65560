//! Where a model's tensors live and run: the CPU (nsed's own bit-exact
//! kernels, the default) or an NVIDIA GPU through candle's CUDA backend
//! (built with `--features cuda`, see `scripts/build-cuda.sh`).
//!
//! A device is parsed from the user's words (`cpu`, `cuda`, `cuda:N`) into a
//! [`ComputeDevice`] before anything loads; opening it checks, in this order,
//! that this build has CUDA, that the driver answers, that GPU `N` exists and
//! that the model fits its free memory, each failure naming its fix.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use candle_core::Device;

/// Why a device could not be parsed or opened; each message names its fix.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The name is not `cpu`, `cuda`, `cuda:N` or `cpu-candle` (the last three optionally
    /// with `/f32`).
    #[error(
        "unknown device `{0}`: use `cpu`, `cuda` (GPU 0), `cuda:N` (GPU N, counted from 0) \
         or `cpu-candle` (the GPU's code on the CPU), the last three with `/f32` for \
         f32 weights"
    )]
    Parse(String),
    /// A CUDA device was asked for, but this build lacks the `cuda` feature.
    #[error(
        "this nsed was built without CUDA, so `--device {0}` cannot run; build the GPU \
         version with scripts/build-cuda.sh (cargo build --release --features cuda), or use \
         --device cpu"
    )]
    NotBuilt(ComputeDevice),
    /// The CUDA driver does not answer (not installed, or it cannot count the GPUs).
    #[error(
        "no usable NVIDIA driver for `--device {device}` ({detail}); install the driver \
         (nvidia-smi must list the GPU) or use --device cpu"
    )]
    NoDriver {
        /// The device asked for.
        device: ComputeDevice,
        /// The driver's error.
        detail: String,
    },
    /// GPU `index` does not exist on this machine.
    #[error(
        "there is no GPU {index}: this machine has {count} (cuda:0 to cuda:{last}); pick one \
         of those or use --device cpu",
        last = count.saturating_sub(1)
    )]
    NoSuchGpu {
        /// The GPU index asked for (from 0).
        index: usize,
        /// GPUs the driver reports.
        count: usize,
    },
    /// The model's weights do not fit the GPU's free memory.
    #[error(
        "the model needs {} of GPU memory but {device} ({name}) has {} free of {}; use a \
         smaller model, free the GPU, or use --device cpu",
        gib(*needed),
        gib(*free),
        gib(*total)
    )]
    TooBig {
        /// The device asked for.
        device: ComputeDevice,
        /// The GPU's name, as the driver reports it.
        name: String,
        /// Bytes of GPU memory the model's weights need.
        needed: u64,
        /// Bytes of GPU memory free.
        free: u64,
        /// Bytes of GPU memory in all.
        total: u64,
    },
    /// Another CUDA failure while opening the device (context, name, memory query).
    #[error("{device}: {detail}")]
    Cuda {
        /// The device asked for.
        device: ComputeDevice,
        /// The CUDA or candle error.
        detail: String,
    },
}

fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// A device named by the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ComputeDevice {
    /// nsed's own kernels: bit-exact across runs, threads, batches, CPUs.
    #[default]
    Cpu,
    /// The GPU's code path (candle's quantized matmul, tensor attention) run
    /// on the CPU: checks that path, and the GPU scripts, without a GPU; with
    /// f32 weights, the validator of f32-weight GPU artifacts.
    CandleCpu(Weights),
    /// CUDA GPU `N`.
    Cuda(usize, Weights),
}

/// How the candle path holds the weight matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Weights {
    /// In their GGUF format: candle's quantized kernels, which round the
    /// activations to 8 bits their own way (fast, least memory).
    #[default]
    Quantized,
    /// Dequantized once to f32 at load (8x the memory of 4-bit weights):
    /// plain f32 matrix products, so a GPU and a CPU differ only in the order
    /// of their float sums, which is what lets a CPU replay a GPU's sampled
    /// tokens (docs/gpu.md).
    F32,
}

impl FromStr for ComputeDevice {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, DeviceError> {
        let bad = || DeviceError::Parse(s.to_string());
        let trimmed = s.trim();
        let (name, weights) = match trimmed.strip_suffix("/f32") {
            Some(name) => (name, Weights::F32),
            None => (trimmed, Weights::Quantized),
        };
        match name {
            "cpu" if weights == Weights::Quantized => Ok(Self::Cpu),
            "cpu-candle" => Ok(Self::CandleCpu(weights)),
            "cuda" | "gpu" => Ok(Self::Cuda(0, weights)),
            other => {
                let index = other.strip_prefix("cuda:").ok_or_else(bad)?;
                // Digits only: `cuda:+1` and `cuda: 1` are typos, not GPU 1.
                if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                let index = index.parse().map_err(|_| bad())?;
                Ok(Self::Cuda(index, weights))
            }
        }
    }
}

impl fmt::Display for ComputeDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let suffix = match self.weights() {
            Weights::F32 => "/f32",
            Weights::Quantized => "",
        };
        match self {
            Self::Cpu => f.pad("cpu"),
            Self::CandleCpu(_) => f.pad(&format!("cpu-candle{suffix}")),
            Self::Cuda(i, _) => f.pad(&format!("cuda:{i}{suffix}")),
        }
    }
}

impl serde::Serialize for ComputeDevice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ComputeDevice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl ComputeDevice {
    /// Whether this is a CUDA GPU (not the CPU, nor the candle path on the CPU).
    pub fn is_cuda(self) -> bool {
        matches!(self, Self::Cuda(..))
    }

    /// How the candle path holds weights (the host path keeps its own).
    pub fn weights(self) -> Weights {
        match self {
            Self::Cpu => Weights::Quantized,
            Self::CandleCpu(w) | Self::Cuda(_, w) => w,
        }
    }

    /// The device a CPU validator replays an artifact on, from the artifact's
    /// `isa` (its executor's [`OpenDevice::label`]):
    /// - an artifact of the candle path on a CPU of this machine's class
    ///   ([`candle_cpu_class`]): that same path, which replays it bit for bit;
    /// - other f32-weight candle artifacts (GPU, or another CPU class): the
    ///   candle path with f32 weights, whose numerics are theirs up to the
    ///   order of float sums;
    /// - everything else: the host path, whose 8-bit activations are closest
    ///   to candle's quantized kernels.
    pub fn validator_for(isa: &str) -> Self {
        match Self::from_label(isa) {
            (Some(Self::CandleCpu(w)), class) if class == candle_cpu_class() => Self::CandleCpu(w),
            (Some(d), _) if d != Self::Cpu && d.weights() == Weights::F32 => {
                Self::CandleCpu(Weights::F32)
            }
            _ => Self::Cpu,
        }
    }

    /// Split an [`OpenDevice::label`] (an artifact's `isa`) into the device
    /// its first word names, if it names one, and the rest: the hardware
    /// class (`cpu-candle x86_64-avx2` → cpu-candle, `x86_64-avx2`).
    pub fn from_label(label: &str) -> (Option<Self>, String) {
        let mut words = label.split_whitespace();
        let device = words.next().and_then(|w| w.parse::<Self>().ok());
        (device, words.collect::<Vec<_>>().join(" "))
    }

    /// Open the device, checking that the model's `needed` bytes of weights
    /// fit its free memory. The CPU is always there and never checked (the
    /// operating system reports a model too big for RAM itself).
    pub fn open(self, needed: u64) -> Result<OpenDevice, DeviceError> {
        match self {
            Self::Cpu => Ok(OpenDevice {
                device: Device::Cpu,
                label: self.to_string(),
            }),
            Self::CandleCpu(_) => Ok(OpenDevice {
                device: Device::Cpu,
                label: format!("{self} {}", candle_cpu_class()),
            }),
            Self::Cuda(index, _) => open_cuda(self, index, needed),
        }
    }
}

/// An opened device: candle's handle and a label for provenance
/// (`cuda:0 NVIDIA H200 sm_90`).
#[derive(Debug, Clone)]
pub struct OpenDevice {
    /// Candle's device handle the tensors are placed on.
    pub device: Device,
    /// Provenance label: the device name, plus the GPU's name and compute capability
    /// (`cuda:0 NVIDIA H200 sm_90`).
    pub label: String,
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(
    device: ComputeDevice,
    _index: usize,
    _needed: u64,
) -> Result<OpenDevice, DeviceError> {
    Err(DeviceError::NotBuilt(device))
}

#[cfg(feature = "cuda")]
fn open_cuda(device: ComputeDevice, index: usize, needed: u64) -> Result<OpenDevice, DeviceError> {
    use candle_core::cuda_backend::cudarc::driver::CudaContext;
    let count = CudaContext::device_count().map_err(|e| DeviceError::NoDriver {
        device,
        detail: e.to_string(),
    })?;
    let count = usize::try_from(count).unwrap_or(0);
    if index >= count {
        return Err(DeviceError::NoSuchGpu { index, count });
    }
    let cuda_err = |e: &dyn fmt::Display| DeviceError::Cuda {
        device,
        detail: e.to_string(),
    };
    let candle = Device::new_cuda(index).map_err(|e| cuda_err(&e))?;
    let Device::Cuda(cuda) = &candle else {
        return Err(cuda_err(&"candle returned a non-CUDA device"));
    };
    let stream = cuda.cuda_stream();
    let context = stream.context();
    let name = context.name().map_err(|e| cuda_err(&e))?;
    let (major, minor) = context.compute_capability().map_err(|e| cuda_err(&e))?;
    let (free, total) = context.mem_get_info().map_err(|e| cuda_err(&e))?;
    if needed > free as u64 {
        return Err(DeviceError::TooBig {
            device,
            name,
            needed,
            free: free as u64,
            total: total as u64,
        });
    }
    Ok(OpenDevice {
        device: candle,
        label: format!("{device} {name} sm_{major}{minor}"),
    })
}

/// The class of CPU the candle path runs on, as its artifacts record it
/// (`cpu-candle x86_64-avx512f`): candle's CPU kernels pick their code by
/// the widest vector unit they find, so two CPUs of one class compute the
/// same numbers and two of different classes need not.
pub fn candle_cpu_class() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        let widest = if std::arch::is_x86_feature_detected!("avx512f") {
            "avx512f"
        } else if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            "avx2"
        } else if std::arch::is_x86_feature_detected!("avx") {
            "avx"
        } else {
            "sse2"
        };
        format!("x86_64-{widest}")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        std::env::consts::ARCH.to_string()
    }
}

/// Whether this build can run CUDA at all.
pub const CUDA_BUILT: bool = cfg!(feature = "cuda");

static DEFAULT: OnceLock<ComputeDevice> = OnceLock::new();

/// Set the device that models load on unless told otherwise (the command
/// line's `--device`); the first call wins.
pub fn set_default(device: ComputeDevice) {
    let _ = DEFAULT.set(device);
}

/// The device models load on unless told otherwise: `--device`, else the CPU.
pub fn default_device() -> ComputeDevice {
    DEFAULT.get().copied().unwrap_or_default()
}

/// The device the command line named, if it named one (a validator that was
/// told nothing picks the artifact's match, [`ComputeDevice::validator_for`]).
pub fn chosen_device() -> Option<ComputeDevice> {
    DEFAULT.get().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_names_and_nothing_else() {
        assert_eq!("cpu".parse::<ComputeDevice>().unwrap(), ComputeDevice::Cpu);
        assert_eq!(
            "cuda".parse::<ComputeDevice>().unwrap(),
            ComputeDevice::Cuda(0, Weights::Quantized)
        );
        assert_eq!(
            "cuda:3".parse::<ComputeDevice>().unwrap(),
            ComputeDevice::Cuda(3, Weights::Quantized)
        );
        assert_eq!(
            "cuda:3/f32".parse::<ComputeDevice>().unwrap(),
            ComputeDevice::Cuda(3, Weights::F32)
        );
        let bads = [
            "", "cuda:", "cuda:x", "cuda:-1", "cuda:+1", "tpu", "cuda:1:2", "CPU0", "cpu/f32",
            "cuda/f16", "cuda:0/",
        ];
        for bad in bads {
            let err = bad.parse::<ComputeDevice>().expect_err(bad);
            assert!(err.to_string().contains("cuda:N"), "{bad}: {err}");
        }
        assert_eq!(
            ComputeDevice::Cuda(2, Weights::Quantized).to_string(),
            "cuda:2"
        );
        for name in ["cpu-candle", "cpu-candle/f32", "cuda:1", "cuda:0/f32"] {
            let device: ComputeDevice = name.parse().unwrap();
            assert_eq!(device.to_string(), name);
            let json = serde_json::to_string(&device).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(
                serde_json::from_str::<ComputeDevice>(&json).unwrap(),
                device
            );
        }
        assert!(serde_json::from_str::<ComputeDevice>("\"cuda:a\"").is_err());
    }

    #[test]
    fn a_validator_replays_its_own_candle_class_there_f32_artifacts_on_f32_weights_and_the_rest_on_the_host(
    ) {
        let pick = ComputeDevice::validator_for;
        assert_eq!(
            pick("cuda:0/f32 NVIDIA H200 sm_90"),
            ComputeDevice::CandleCpu(Weights::F32)
        );
        assert_eq!(
            pick("cpu-candle/f32"),
            ComputeDevice::CandleCpu(Weights::F32)
        );
        assert_eq!(pick("cuda:0 NVIDIA H200 sm_90"), ComputeDevice::Cpu);
        // The candle path of this machine's class replays its own artifacts;
        // another class's quantized artifact goes to the host path.
        let here = format!("cpu-candle {}", candle_cpu_class());
        assert_eq!(pick(&here), ComputeDevice::CandleCpu(Weights::Quantized));
        assert_eq!(
            pick(&format!("{here}/f32").replace("cpu-candle ", "cpu-candle/f32 ")),
            ComputeDevice::CandleCpu(Weights::F32)
        );
        assert_eq!(pick("cpu-candle other-class"), ComputeDevice::Cpu);
        assert_eq!(pick("cpu-candle"), ComputeDevice::Cpu);
        assert_eq!(pick("x86_64-avx512vnni"), ComputeDevice::Cpu);
        assert_eq!(pick(""), ComputeDevice::Cpu);
    }

    #[test]
    fn the_cpu_always_opens() {
        let open = ComputeDevice::Cpu.open(u64::MAX).expect("cpu");
        assert!(open.device.is_cpu());
        assert_eq!(open.label, "cpu");
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_in_a_cpu_build_says_how_to_get_it() {
        let err = ComputeDevice::Cuda(0, Weights::F32)
            .open(0)
            .expect_err("no cuda");
        assert!(matches!(err, DeviceError::NotBuilt(_)));
        assert!(err.to_string().contains("scripts/build-cuda.sh"), "{err}");
    }

    #[test]
    fn messages_name_sizes_and_indices() {
        let err = DeviceError::TooBig {
            device: ComputeDevice::Cuda(0, Weights::Quantized),
            name: "GPU".into(),
            needed: 3 << 30,
            free: 1 << 30,
            total: 2 << 30,
        };
        let text = err.to_string();
        assert!(
            text.contains("3.00 GiB") && text.contains("1.00 GiB free of 2.00 GiB"),
            "{text}"
        );
        let err = DeviceError::NoSuchGpu { index: 4, count: 2 };
        assert!(err.to_string().contains("cuda:0 to cuda:1"), "{err}");
    }
}
