//! Which kernel path runs the packed products: chosen once per process from
//! the CPU's features at run time (one binary for every x86-64 and aarch64
//! machine), or forced with `NSED_KERNEL=auto|portable|avx2|avxvnni|avx512vnni`.
//!
//! Every path computes the same bits (see the module doc of [`super`]), so the
//! choice changes speed only; it is still recorded in every results stamp.

use std::sync::OnceLock;

/// The environment variable that forces a kernel path.
pub const KERNEL_ENV: &str = "NSED_KERNEL";

/// One implementation of the packed products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KernelPath {
    /// Plain Rust that LLVM vectorizes for whatever target it builds for
    /// (aarch64 runs it until a NEON kernel is measured).
    Portable,
    /// x86-64 AVX2 + FMA + F16C (AMD Zen 1-3, Intel Haswell and later).
    Avx2,
    /// 256-bit VNNI (`vpdpbusd` with a VEX encoding: Intel Alder Lake and later client cores).
    AvxVnni,
    /// 512-bit VNNI (Intel Ice Lake / Sapphire Rapids servers, AMD Zen 4 and later).
    Avx512Vnni,
}

impl KernelPath {
    /// Every path, slowest first.
    pub const ALL: [Self; 4] = [Self::Portable, Self::Avx2, Self::AvxVnni, Self::Avx512Vnni];

    /// The name used by `NSED_KERNEL`, `nsed perf` and the results stamps.
    pub fn name(self) -> &'static str {
        match self {
            Self::Portable => "portable",
            Self::Avx2 => "avx2",
            Self::AvxVnni => "avxvnni",
            Self::Avx512Vnni => "avx512vnni",
        }
    }

    /// The path of an `NSED_KERNEL` name (`portable`, `avx2`, `avxvnni`, `avx512vnni`);
    /// `None` for any other.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Whether this CPU can run the path.
    pub fn is_available(self) -> bool {
        match self {
            Self::Portable => true,
            Self::Avx2 => has_avx2(),
            Self::AvxVnni => has_avxvnni(),
            Self::Avx512Vnni => has_avx512vnni(),
        }
    }

    /// The fastest path this CPU has.
    pub fn best() -> Self {
        Self::ALL
            .into_iter()
            .rev()
            .find(|p| p.is_available())
            .unwrap_or(Self::Portable)
    }
}

impl std::fmt::Display for KernelPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

#[cfg(target_arch = "x86_64")]
fn has_avxvnni() -> bool {
    has_avx2() && is_x86_feature_detected!("avxvnni")
}

#[cfg(target_arch = "x86_64")]
fn has_avx512vnni() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vnni")
}

#[cfg(not(target_arch = "x86_64"))]
fn has_avx2() -> bool {
    false
}

#[cfg(not(target_arch = "x86_64"))]
fn has_avxvnni() -> bool {
    false
}

#[cfg(not(target_arch = "x86_64"))]
fn has_avx512vnni() -> bool {
    false
}

/// Every path this CPU can run, slowest first.
pub fn available() -> Vec<KernelPath> {
    KernelPath::ALL
        .into_iter()
        .filter(|p| p.is_available())
        .collect()
}

/// A kernel path that cannot be used here.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    /// `NSED_KERNEL` names no kernel path.
    #[error(
        "{KERNEL_ENV}={given} is not a kernel path; use auto or one this CPU has: {}",
        names(&available())
    )]
    Unknown {
        /// The value of `NSED_KERNEL`.
        given: String,
    },
    /// `NSED_KERNEL` names a path whose instructions this CPU lacks.
    #[error(
        "{KERNEL_ENV}={given}: this CPU lacks the instructions for that path; it has: {}",
        names(&available())
    )]
    Unavailable {
        /// The value of `NSED_KERNEL`.
        given: String,
    },
}

fn names(paths: &[KernelPath]) -> String {
    paths
        .iter()
        .map(|p| p.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The path a setting of `NSED_KERNEL` asks for: `None`, empty or `auto`
/// mean the best this CPU has.
pub fn parse_setting(value: Option<&str>) -> Result<KernelPath, PathError> {
    let given = match value.map(str::trim) {
        None | Some("") | Some("auto") => return Ok(KernelPath::best()),
        Some(v) => v,
    };
    let path = KernelPath::from_name(given).ok_or_else(|| PathError::Unknown {
        given: given.to_string(),
    })?;
    if !path.is_available() {
        return Err(PathError::Unavailable {
            given: given.to_string(),
        });
    }
    Ok(path)
}

static ACTIVE: OnceLock<KernelPath> = OnceLock::new();

/// Choose the process's kernel path from `NSED_KERNEL` (call once at start-up
/// so that a bad setting is an error before anything runs).
pub fn init_from_env() -> Result<KernelPath, PathError> {
    let wanted = parse_setting(std::env::var(KERNEL_ENV).ok().as_deref())?;
    Ok(*ACTIVE.get_or_init(|| wanted))
}

/// The process's kernel path. Without [`init_from_env`], a bad `NSED_KERNEL`
/// falls back to the best path (the binary checks it first).
pub fn active() -> KernelPath {
    *ACTIVE.get_or_init(|| {
        parse_setting(std::env::var(KERNEL_ENV).ok().as_deref())
            .unwrap_or_else(|_| KernelPath::best())
    })
}

/// The architecture and kernel path that produces the logits, e.g.
/// `x86_64-avx512vnni`. Every path gives the same bits (see
/// [`crate::qmm`]), so artifacts record it as provenance; it is not
/// a condition of replay.
pub fn isa_level() -> String {
    format!("{}-{}", std::env::consts::ARCH, active().name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_to_paths_or_clear_errors() {
        assert_eq!(parse_setting(None).unwrap(), KernelPath::best());
        assert_eq!(parse_setting(Some("auto")).unwrap(), KernelPath::best());
        assert_eq!(
            parse_setting(Some("portable")).unwrap(),
            KernelPath::Portable
        );
        let err = parse_setting(Some("sse9")).unwrap_err().to_string();
        assert!(err.contains("sse9") && err.contains("portable"), "{err}");
        for path in KernelPath::ALL {
            let got = parse_setting(Some(path.name()));
            assert_eq!(got.is_ok(), path.is_available(), "{path}");
            if let Err(e) = got {
                assert!(e.to_string().contains("lacks"), "{e}");
            }
        }
    }

    #[test]
    fn names_round_trip_and_best_is_available() {
        for path in KernelPath::ALL {
            assert_eq!(KernelPath::from_name(path.name()), Some(path));
        }
        assert!(KernelPath::best().is_available());
        assert!(available().contains(&KernelPath::Portable));
    }
}
