//! The model registry (`configs/models.toml`, compiled in) and resolution of a
//! `--model` argument — a registry id, a path to any GGUF file, or
//! `hf://OWNER/REPO[@REVISION]/FILE.gguf` on the Hugging Face Hub — to a file
//! on disk (registry files with their sha256 checked).

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::chat::TemplateKind;
use super::digest::hex;
use super::model::Arch;

/// The registry shipped with this build; `NSED_REGISTRY` may point at another.
const BUILTIN_REGISTRY: &str = include_str!("../../../configs/models.toml");

/// Why the registry could not be read or a `--model` argument not resolved to a file.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry file `$NSED_REGISTRY` names cannot be read.
    #[error("cannot read registry {path}: {source}")]
    Read {
        /// The registry file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The registry TOML is malformed, or an entry lacks a field or has an unknown value.
    #[error("{origin}, line {line}: {message}; fix the entry (see configs/models.toml)")]
    Parse {
        /// Which registry: `the built-in registry` or `registry PATH`.
        origin: String,
        /// Line of the error, from 1.
        line: usize,
        /// The TOML parser's message.
        message: String,
    },
    /// The argument is not a registry id, not an existing file, and does not look like a path.
    #[error("unknown model `{spec}`: not a registry id ({known}) and not a path to a .gguf file")]
    Unknown {
        /// The `--model` argument.
        spec: String,
        /// The registry's ids, comma-separated.
        known: String,
    },
    /// A registry model's file is not in the models directory (not fetched yet).
    #[error(
        "model `{id}` is not downloaded ({path} is missing): run `scripts/fetch-models.sh {id}`"
    )]
    NotFetched {
        /// The registry id.
        id: String,
        /// Where the file was expected.
        path: PathBuf,
    },
    /// An argument that looks like a path (ends in `.gguf` or has a separator) names no file.
    #[error("model file {path} does not exist")]
    MissingFile {
        /// The path given.
        path: PathBuf,
    },
    /// A registry model's file has another sha256 than the registry records.
    #[error(
        "model `{id}`: {path} has sha256 {actual}, the registry says {expected}; the file is \
         corrupt or a different model: delete it and run `scripts/fetch-models.sh {id}`"
    )]
    Checksum {
        /// The registry id.
        id: String,
        /// The file checked.
        path: PathBuf,
        /// Hex sha256 the registry records.
        expected: String,
        /// Hex sha256 of the file on disk.
        actual: String,
    },
    /// A model file cannot be read while computing its sha256.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file being read.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// An `hf://` argument is not `OWNER/REPO[@REVISION]/FILE.gguf[#sha256=HEX]`
    /// (the text after `hf://`).
    #[error("`hf://{0}` is not OWNER/REPO[@REVISION]/FILE.gguf[#sha256=<64 hex digits>]")]
    HubSpec(String),
    /// An `hf://` file's sha256 is not the one its reference pins.
    #[error(
        "`hf://{}`: {} has sha256 {}, not the pinned {}; the repository changed (pin a \
         revision with @REV too) or the download is corrupt: delete the file from \
         $HF_HOME/hub to fetch it again",
        .0.spec, .0.path.display(), .0.actual, .0.expected
    )]
    PinMismatch(Box<PinMismatch>),
    /// The Hub file is not in the local cache and cannot be downloaded.
    #[error(
        "cannot get `hf://{spec}` from the Hugging Face Hub: {message} (no network? files \
         downloaded before are read from the cache in $HF_HOME)"
    )]
    Hub {
        /// The argument after `hf://`.
        spec: String,
        /// The hf-hub client's error.
        message: String,
    },
}

/// The quantization of a GGUF file as llama.cpp names its file types (the
/// registry's `quant`); an unknown name is refused when the registry is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Quant {
    /// Unquantized 32-bit floats.
    F32,
    /// 16-bit IEEE half-precision floats.
    F16,
    /// 16-bit bfloat16.
    BF16,
    /// 8-bit, blocks of 32 weights with one scale.
    Q8_0,
    /// 6-bit k-quant (`Q6_K`).
    #[serde(rename = "Q6_K")]
    Q6K,
    /// 5-bit k-quant mix, medium (`Q5_K_M`).
    #[serde(rename = "Q5_K_M")]
    Q5KM,
    /// 5-bit k-quant mix, small (`Q5_K_S`).
    #[serde(rename = "Q5_K_S")]
    Q5KS,
    /// 5-bit, blocks of 32 weights with one scale.
    Q5_0,
    /// 5-bit, blocks of 32 weights with a scale and a minimum.
    Q5_1,
    /// 4-bit k-quant mix, medium (`Q4_K_M`).
    #[serde(rename = "Q4_K_M")]
    Q4KM,
    /// 4-bit k-quant mix, small (`Q4_K_S`).
    #[serde(rename = "Q4_K_S")]
    Q4KS,
    /// 4-bit, blocks of 32 weights with one scale.
    Q4_0,
    /// 4-bit, blocks of 32 weights with a scale and a minimum.
    Q4_1,
    /// 3-bit k-quant mix, large (`Q3_K_L`).
    #[serde(rename = "Q3_K_L")]
    Q3KL,
    /// 3-bit k-quant mix, medium (`Q3_K_M`).
    #[serde(rename = "Q3_K_M")]
    Q3KM,
    /// 3-bit k-quant mix, small (`Q3_K_S`).
    #[serde(rename = "Q3_K_S")]
    Q3KS,
    /// 2-bit k-quant (`Q2_K`).
    #[serde(rename = "Q2_K")]
    Q2K,
}

impl Quant {
    /// llama.cpp's name, as written in the registry.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::BF16 => "BF16",
            Self::Q8_0 => "Q8_0",
            Self::Q6K => "Q6_K",
            Self::Q5KM => "Q5_K_M",
            Self::Q5KS => "Q5_K_S",
            Self::Q5_0 => "Q5_0",
            Self::Q5_1 => "Q5_1",
            Self::Q4KM => "Q4_K_M",
            Self::Q4KS => "Q4_K_S",
            Self::Q4_0 => "Q4_0",
            Self::Q4_1 => "Q4_1",
            Self::Q3KL => "Q3_K_L",
            Self::Q3KM => "Q3_K_M",
            Self::Q3KS => "Q3_K_S",
            Self::Q2K => "Q2_K",
        }
    }
}

impl std::fmt::Display for Quant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

/// One wheel member holding (part of) a model's bytes.
#[derive(Debug, Clone, Deserialize)]
pub struct Part {
    /// The wheel's pip requirement (`name==version`).
    pub package: String,
    /// Path of the part inside the wheel.
    pub member: String,
}

/// One model of the registry.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelEntry {
    /// Registry id, as `--model` takes it (`smollm2-135m`).
    pub id: String,
    /// Human-readable model name.
    pub name: String,
    /// Who trained the model.
    pub maker: String,
    /// Transformer architecture (`llama`, `qwen2`, `gemma3`).
    pub arch: Arch,
    /// Quantization, as llama.cpp names the file type.
    pub quant: Quant,
    /// File name of the GGUF in the models directory.
    pub file: String,
    /// Hex sha256 of the whole GGUF file, checked when the model is resolved.
    pub sha256: String,
    /// Size of the GGUF file in bytes.
    pub bytes: u64,
    /// The Hugging Face repository the model comes from (`owner/name`).
    pub hf_repo: String,
    /// `gguf` (the file's own template), `chatml`, `gemma` or `plain`.
    pub chat_template: TemplateKind,
    /// The system message the model's own template inserts when none is given.
    #[serde(default)]
    pub default_system: Option<String>,
    /// The wheel members whose concatenation, in order, is the GGUF file.
    pub parts: Vec<Part>,
}

/// The model roster: every model known by registry id.
#[derive(Debug, Clone, Deserialize)]
pub struct Registry {
    /// The entries, in file order (the `[[model]]` tables).
    #[serde(rename = "model")]
    pub models: Vec<ModelEntry>,
}

/// What a failed `#sha256=` pin found.
#[derive(Debug)]
pub struct PinMismatch {
    /// The reference after `hf://`.
    pub spec: String,
    /// The cached file.
    pub path: PathBuf,
    /// The pinned sha256.
    pub expected: String,
    /// The file's sha256.
    pub actual: String,
}

/// A model file ready to load: its path, and its registry entry when it has one.
#[derive(Debug, Clone)]
pub struct ResolvedModel {
    /// The GGUF file on disk.
    pub path: PathBuf,
    /// Its registry entry; `None` for a model given by path or `hf://`.
    pub entry: Option<ModelEntry>,
    /// The sha256 an `hf://…#sha256=` pin required, checked at resolution.
    pub pinned_sha256: Option<String>,
}

impl ResolvedModel {
    /// The registry id, or the file stem for a model given by path.
    pub fn id(&self) -> String {
        match &self.entry {
            Some(e) => e.id.clone(),
            None => self
                .path
                .file_stem()
                .map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned()),
        }
    }

    /// sha256 of the GGUF file: the registry's (verified at load) or computed.
    pub fn sha256(&self) -> Result<String, RegistryError> {
        match (&self.entry, &self.pinned_sha256) {
            (Some(e), _) => Ok(e.sha256.clone()),
            (None, Some(pinned)) => Ok(pinned.clone()),
            (None, None) => sha256_file(&self.path),
        }
    }
}

impl Registry {
    /// The registry in force: `$NSED_REGISTRY` if set, else the built-in one.
    pub fn load() -> Result<Self, RegistryError> {
        match std::env::var_os("NSED_REGISTRY") {
            Some(path) => {
                let path = PathBuf::from(path);
                let text =
                    std::fs::read_to_string(&path).map_err(|source| RegistryError::Read {
                        path: path.clone(),
                        source,
                    })?;
                Self::parse_from(&text, &format!("registry {}", path.display()))
            }
            None => Self::parse(BUILTIN_REGISTRY),
        }
    }

    /// Parse registry TOML; an unknown `arch`, `quant` or `chat_template`
    /// is an error that names the allowed values.
    pub fn parse(text: &str) -> Result<Self, RegistryError> {
        Self::parse_from(text, "the built-in registry")
    }

    fn parse_from(text: &str, origin: &str) -> Result<Self, RegistryError> {
        toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |span| span.start);
            let line = 1 + text.as_bytes()[..offset.min(text.len())]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            RegistryError::Parse {
                origin: origin.to_string(),
                line,
                message: e.message().trim().to_string(),
            }
        })
    }

    /// The entry with registry id `id`.
    pub fn get(&self, id: &str) -> Option<&ModelEntry> {
        self.models.iter().find(|m| m.id == id)
    }

    /// Where a registry model lives once fetched.
    pub fn path_of(&self, entry: &ModelEntry) -> PathBuf {
        models_dir().join(&entry.file)
    }

    /// Resolve `spec` (an id or a GGUF path). Registry models must be present
    /// and carry the registry's sha256; a GGUF given by path is taken as is.
    pub fn resolve(&self, spec: &str) -> Result<ResolvedModel, RegistryError> {
        if let Some(hub) = spec.strip_prefix("hf://") {
            let (file, pin) = split_pin(hub)?;
            let path = hub_file(file)?;
            if let Some(expected) = pin {
                let actual = sha256_file(&path)?;
                if actual != expected {
                    return Err(RegistryError::PinMismatch(Box::new(PinMismatch {
                        spec: hub.to_string(),
                        path,
                        expected: expected.to_string(),
                        actual,
                    })));
                }
            }
            return Ok(ResolvedModel {
                path,
                entry: None,
                pinned_sha256: pin.map(str::to_string),
            });
        }
        if let Some(entry) = self.get(spec) {
            let path = self.path_of(entry);
            if !path.exists() {
                return Err(RegistryError::NotFetched {
                    id: entry.id.clone(),
                    path,
                });
            }
            verify_sha256(&path, entry)?;
            return Ok(ResolvedModel {
                path,
                entry: Some(entry.clone()),
                pinned_sha256: None,
            });
        }
        let path = PathBuf::from(spec);
        let looks_like_path = spec.ends_with(".gguf") || spec.contains(std::path::MAIN_SEPARATOR);
        if path.is_file() {
            Ok(ResolvedModel {
                path,
                entry: None,
                pinned_sha256: None,
            })
        } else if looks_like_path {
            Err(RegistryError::MissingFile { path })
        } else {
            let known: Vec<&str> = self.models.iter().map(|m| m.id.as_str()).collect();
            Err(RegistryError::Unknown {
                spec: spec.to_string(),
                known: known.join(", "),
            })
        }
    }
}

/// An `hf://` reference (after the scheme) split from its optional pin
/// `#sha256=HEX` (64 lower-case hex digits).
fn split_pin(spec: &str) -> Result<(&str, Option<&str>), RegistryError> {
    let Some((file, fragment)) = spec.split_once('#') else {
        return Ok((spec, None));
    };
    let hex = fragment
        .strip_prefix("sha256=")
        .filter(|h| {
            h.len() == 64
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
        .ok_or_else(|| RegistryError::HubSpec(spec.to_string()))?;
    Ok((file, Some(hex)))
}

/// `OWNER/REPO[@REVISION]/FILE.gguf` split into (repo id, revision, file).
fn parse_hub_spec(spec: &str) -> Result<(String, String, String), RegistryError> {
    let bad = || RegistryError::HubSpec(spec.to_string());
    let mut parts = spec.splitn(3, '/');
    let (Some(owner), Some(repo), Some(file)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let (repo, revision) = repo.split_once('@').unwrap_or((repo, "main"));
    let empty = [owner, repo, revision, file].iter().any(|p| p.is_empty());
    if empty || !file.ends_with(".gguf") || file.split('/').any(|p| p == "..") {
        return Err(bad());
    }
    Ok((
        format!("{owner}/{repo}"),
        revision.to_string(),
        file.to_string(),
    ))
}

/// A GGUF file of a Hub model repository: from the hf-hub cache
/// (`$HF_HOME/hub`), else downloaded into it with a progress bar.
fn hub_file(spec: &str) -> Result<PathBuf, RegistryError> {
    use hf_hub::api::sync::ApiBuilder;
    use hf_hub::{Repo, RepoType};
    let (repo, revision, file) = parse_hub_spec(spec)?;
    let hub_error = |message: String| RegistryError::Hub {
        spec: spec.to_string(),
        message,
    };
    let repo = Repo::with_revision(repo, RepoType::Model, revision);
    let api = ApiBuilder::from_env()
        .with_progress(true)
        .build()
        .map_err(|e| hub_error(e.to_string()))?;
    // The cache is read first, so a file downloaded once works offline.
    api.repo(repo)
        .get(&file)
        .map_err(|e| hub_error(e.to_string()))
}

/// `$NSED_MODELS`, else `~/.cache/nsed/models`.
pub fn models_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("NSED_MODELS") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache").join("nsed").join("models")
}

/// Hex sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String, RegistryError> {
    let io_err = |source| RegistryError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io_err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io_err)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn verify_sha256(path: &Path, entry: &ModelEntry) -> Result<(), RegistryError> {
    let actual = sha256_file(path)?;
    if actual != entry.sha256 {
        return Err(RegistryError::Checksum {
            id: entry.id.clone(),
            path: path.to_path_buf(),
            expected: entry.sha256.clone(),
            actual,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_registry_parses_into_typed_fields() {
        let registry = Registry::parse(BUILTIN_REGISTRY).unwrap();
        let smollm = registry.get("smollm2-135m").unwrap();
        assert_eq!(smollm.arch, Arch::Llama);
        assert_eq!(smollm.quant, Quant::Q4_1);
        assert_eq!(smollm.chat_template, TemplateKind::ChatMl);
        let gemma = registry.get("gemma3-270m").unwrap();
        assert_eq!(
            (gemma.quant.name(), gemma.chat_template),
            ("Q4_K_M", TemplateKind::Plain)
        );
    }

    #[test]
    fn unknown_enum_values_are_refused_naming_the_allowed_ones() {
        let good = BUILTIN_REGISTRY;
        for (field, from, to, allowed) in [
            (
                "chat_template",
                "chat_template = \"chatml\"",
                "chat_template = \"chatm1\"",
                "`plain`",
            ),
            ("arch", "arch = \"llama\"", "arch = \"lama\"", "`gemma3`"),
            ("quant", "quant = \"Q4_1\"", "quant = \"Q4_2\"", "`Q4_K_M`"),
        ] {
            assert!(good.contains(from), "{field}");
            let bad = good.replacen(from, to, 1);
            let message = Registry::parse(&bad).unwrap_err().to_string();
            assert!(message.contains("unknown variant"), "{field}: {message}");
            assert!(message.contains(allowed), "{field}: {message}");
        }
    }

    #[test]
    fn hub_specs_name_a_gguf_file_of_a_repo() {
        assert_eq!(
            parse_hub_spec("Qwen/Qwen2.5-0.5B-Instruct-GGUF/q4_k_m.gguf").unwrap(),
            (
                "Qwen/Qwen2.5-0.5B-Instruct-GGUF".to_string(),
                "main".to_string(),
                "q4_k_m.gguf".to_string()
            )
        );
        assert_eq!(
            parse_hub_spec("o/r@v1.0/sub/dir/m.gguf").unwrap(),
            (
                "o/r".to_string(),
                "v1.0".to_string(),
                "sub/dir/m.gguf".to_string()
            )
        );
        for bad in [
            "o/m.gguf",
            "o/r/",
            "o/r/m.bin",
            "/r/m.gguf",
            "o/r@/m.gguf",
            "o/r/../m.gguf",
        ] {
            assert!(
                matches!(parse_hub_spec(bad), Err(RegistryError::HubSpec(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_hub_reference_may_pin_its_sha256() {
        let hex = "0123456789abcdef".repeat(4);
        let spec = format!("o/r/m.gguf#sha256={hex}");
        assert_eq!(
            split_pin(&spec).unwrap(),
            ("o/r/m.gguf", Some(hex.as_str()))
        );
        assert_eq!(split_pin("o/r/m.gguf").unwrap(), ("o/r/m.gguf", None));
        for bad in [
            "o/r/m.gguf#",
            "o/r/m.gguf#sha256=abc",
            "o/r/m.gguf#md5=0123",
            &format!("o/r/m.gguf#sha256={}", hex.to_uppercase()),
        ] {
            assert!(
                matches!(split_pin(bad), Err(RegistryError::HubSpec(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn builtin_registry_lists_the_four_models() {
        let reg = Registry::parse(BUILTIN_REGISTRY).expect("registry parses");
        let ids: Vec<&str> = reg.models.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "smollm2-135m",
                "gemma3-270m",
                "qwen2.5-coder-0.5b",
                "qwen2.5-coder-1.5b"
            ]
        );
        let qwen15 = reg.get("qwen2.5-coder-1.5b").expect("present");
        assert_eq!(qwen15.parts.len(), 22);
        assert_eq!(qwen15.bytes, 1_117_320_768);
        assert!(reg.models.iter().all(|m| m.sha256.len() == 64));
    }

    #[test]
    fn unknown_id_is_an_error_naming_the_known_ones() {
        let reg = Registry::parse(BUILTIN_REGISTRY).expect("registry parses");
        let err = reg.resolve("llama-70b").expect_err("unknown");
        let msg = err.to_string();
        assert!(
            msg.contains("llama-70b") && msg.contains("smollm2-135m"),
            "{msg}"
        );
    }
}
