//! GGUF files: a bounds-checked reader for the header, metadata and tensor
//! directory, and loading of individual tensors as candle `QTensor`s.
//!
//! nsed parses the header itself rather than through candle's reader so that a
//! truncated or corrupt file is an error naming the problem, never a panic or
//! an allocation of a length read from garbage: every length is checked
//! against the bytes that remain in the file before anything is allocated.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType, QTensor};
use candle_core::Device;

const GGUF_MAGIC: u32 = 0x4655_4747; // "GGUF" little-endian
const DEFAULT_ALIGNMENT: u64 = 32;

/// Why a GGUF file could not be read, or a key or tensor taken from it.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file cannot be opened or its size read.
    #[error("cannot open model file {path}: {source}")]
    Open {
        /// The GGUF file's path.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file does not start with the `GGUF` magic number.
    #[error("{path} is not a GGUF file (bad magic {magic:#010x})")]
    BadMagic {
        /// The GGUF file's path.
        path: PathBuf,
        /// The first four bytes, as a little-endian u32.
        magic: u32,
    },
    /// The GGUF version is not 2 or 3.
    #[error("{path}: unsupported GGUF version {version} (nsed reads versions 2 and 3)")]
    Version {
        /// The GGUF file's path.
        path: PathBuf,
        /// The version the file declares.
        version: u32,
    },
    /// The file is truncated or malformed: it ends early, a length, shape, type or value is
    /// impossible, or a tensor's data lies past the end or cannot be read.
    #[error(
        "{path} is truncated or corrupt: {what} (re-download it with scripts/fetch-models.sh)"
    )]
    Corrupt {
        /// The GGUF file's path.
        path: PathBuf,
        /// What is wrong, and where.
        what: String,
    },
    /// A metadata key the caller needs is absent.
    #[error("{path}: metadata key `{key}` is missing")]
    MissingKey {
        /// The GGUF file's path.
        path: PathBuf,
        /// The metadata key.
        key: String,
    },
    /// A metadata key holds a value of the wrong type.
    #[error("{path}: metadata key `{key}` has type {found}, expected {expected}")]
    KeyType {
        /// The GGUF file's path.
        path: PathBuf,
        /// The metadata key.
        key: String,
        /// Type name of the value found (`u32`, `string`, ...).
        found: &'static str,
        /// What the caller wanted (`integer`, `number`, `string`, `bool`, `array`).
        expected: &'static str,
    },
    /// A tensor the caller needs is not in the tensor directory.
    #[error("{path}: tensor `{name}` is missing")]
    MissingTensor {
        /// The GGUF file's path.
        path: PathBuf,
        /// The tensor's GGUF name (`blk.0.attn_q.weight`, ...).
        name: String,
    },
    /// A tensor is in a type only nsed's own CPU kernels read, and the caller
    /// asked for it through candle (the GPU path, or re-quantization).
    #[error(
        "{path}: tensor `{name}` is {ty}, which only nsed's CPU host path reads \
         (not the candle/GPU path, not under a fraud map); use --device cpu"
    )]
    HostOnly {
        /// The GGUF file's path.
        path: PathBuf,
        /// The tensor's GGUF name.
        name: String,
        /// llama.cpp's name of its type.
        ty: &'static str,
    },
    /// A tensor uses a ggml type id nsed cannot load.
    #[error(
        "{path}: tensor `{name}` has ggml type {ty}, which nsed cannot load (supported: \
         F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K-Q6_K, Q8_K, IQ4_NL, IQ4_XS, \
         MXFP4)"
    )]
    TensorType {
        /// The GGUF file's path.
        path: PathBuf,
        /// The tensor's GGUF name.
        name: String,
        /// The ggml type id found.
        ty: u32,
    },
    /// Candle refused a tensor's bytes when building the quantized tensor.
    #[error("{path}: tensor `{name}`: {source}")]
    Candle {
        /// The GGUF file's path.
        path: PathBuf,
        /// The tensor's GGUF name.
        name: String,
        /// Candle's error.
        source: Box<candle_core::Error>,
    },
}

type Result<T> = std::result::Result<T, GgufError>;

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// GGUF type 0: unsigned 8-bit integer.
    U8(u8),
    /// GGUF type 1: signed 8-bit integer.
    I8(i8),
    /// GGUF type 2: unsigned 16-bit integer.
    U16(u16),
    /// GGUF type 3: signed 16-bit integer.
    I16(i16),
    /// GGUF type 4: unsigned 32-bit integer.
    U32(u32),
    /// GGUF type 5: signed 32-bit integer.
    I32(i32),
    /// GGUF type 10: unsigned 64-bit integer.
    U64(u64),
    /// GGUF type 11: signed 64-bit integer.
    I64(i64),
    /// GGUF type 6: 32-bit float.
    F32(f32),
    /// GGUF type 12: 64-bit float.
    F64(f64),
    /// GGUF type 7: boolean (any non-zero byte is true).
    Bool(bool),
    /// GGUF type 8: UTF-8 string (invalid bytes replaced with U+FFFD).
    String(String),
    /// GGUF type 9: array of values of one type (not nested).
    Array(Vec<Value>),
}

impl Value {
    /// The value's type name (`u8`, ..., `string`, `array`), for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::U8(_) => "u8",
            Value::I8(_) => "i8",
            Value::U16(_) => "u16",
            Value::I16(_) => "i16",
            Value::U32(_) => "u32",
            Value::I32(_) => "i32",
            Value::U64(_) => "u64",
            Value::I64(_) => "i64",
            Value::F32(_) => "f32",
            Value::F64(_) => "f64",
            Value::Bool(_) => "bool",
            Value::String(_) => "string",
            Value::Array(_) => "array",
        }
    }

    /// Any integer value that fits in a u64.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a float: floats directly, integers that fit a u64 converted.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    /// A short rendering for `nsed models inspect`: long arrays are summarized.
    pub fn summary(&self) -> String {
        match self {
            Value::String(s) if s.chars().count() > 80 => {
                let head: String = s.chars().take(77).collect();
                format!("{head:?}...")
            }
            Value::String(s) => format!("{s:?}"),
            Value::Array(items) if items.len() > 6 => {
                let head: Vec<String> = items.iter().take(3).map(Value::summary).collect();
                let kind = items.first().map_or("?", Value::type_name);
                format!("[{}, ...] ({} x {kind})", head.join(", "), items.len())
            }
            Value::Array(items) => {
                let all: Vec<String> = items.iter().map(Value::summary).collect();
                format!("[{}]", all.join(", "))
            }
            Value::F32(v) => format!("{v}"),
            Value::F64(v) => format!("{v}"),
            Value::Bool(v) => format!("{v}"),
            other => other
                .as_u64()
                .map_or_else(|| format!("{other:?}"), |v| v.to_string()),
        }
    }
}

/// Where one tensor lives in the file.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    /// The tensor's GGUF name (`blk.0.attn_q.weight`, ...).
    pub name: String,
    /// Dimensions in candle order (outermost first): `[rows, cols]` for a matrix.
    pub dims: Vec<usize>,
    /// The ggml storage type (F32, F16, Q4_0, Q4_K, ...).
    pub dtype: GgmlDType,
    /// Absolute byte offset of the data in the file.
    pub offset: u64,
    /// Size of the data in bytes.
    pub n_bytes: u64,
}

impl TensorInfo {
    /// Number of elements (the product of the dimensions).
    pub fn n_elements(&self) -> usize {
        self.dims.iter().product()
    }
}

/// A parsed GGUF header: metadata and tensor directory. Tensor data is read on
/// demand with [`Gguf::tensor`].
#[derive(Debug)]
pub struct Gguf {
    /// Path of the file, for error messages and for reading tensor data later.
    pub path: PathBuf,
    /// GGUF format version (2 or 3).
    pub version: u32,
    /// Size of the file in bytes.
    pub file_size: u64,
    /// The metadata key/value pairs, by key.
    pub metadata: BTreeMap<String, Value>,
    /// The tensor directory, by tensor name.
    pub tensors: BTreeMap<String, TensorInfo>,
    /// Tensors in storage types candle has no dtype for ([`RawType`]), read
    /// as bytes by nsed's own kernels; not in `tensors`.
    pub raw_tensors: BTreeMap<String, RawTensorInfo>,
}

/// GGML storage types nsed reads itself (candle has no dtype for them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawType {
    /// OCP microscaling FP4 (GGML type 39): blocks of 32 E2M1 values sharing
    /// one E8M0 power-of-two scale, 17 bytes (GPT-OSS's expert weights).
    Mxfp4,
    /// IQ4_NL (GGML type 20): 32 indices into a fixed non-linear table and an
    /// f16 scale, 18 bytes.
    Iq4Nl,
    /// IQ4_XS (GGML type 23): 256 such indices with eight 6-bit block scales
    /// and an f16 scale, 136 bytes.
    Iq4Xs,
}

impl RawType {
    const ALL: [Self; 3] = [Self::Mxfp4, Self::Iq4Nl, Self::Iq4Xs];

    /// The type of GGML type id `id`, if nsed reads it itself.
    pub fn from_id(id: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.id() == id)
    }

    /// The GGML type id.
    pub fn id(self) -> u32 {
        match self {
            Self::Mxfp4 => 39,
            Self::Iq4Nl => 20,
            Self::Iq4Xs => 23,
        }
    }

    /// llama.cpp's name of the type.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mxfp4 => "MXFP4",
            Self::Iq4Nl => "IQ4_NL",
            Self::Iq4Xs => "IQ4_XS",
        }
    }

    /// Elements per block.
    pub fn block_size(self) -> usize {
        match self {
            Self::Iq4Xs => 256,
            Self::Mxfp4 | Self::Iq4Nl => 32,
        }
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        match self {
            Self::Mxfp4 => 17,
            Self::Iq4Nl => 18,
            Self::Iq4Xs => 136,
        }
    }
}

/// Where a [`RawType`] tensor lives in the file.
#[derive(Debug, Clone)]
pub struct RawTensorInfo {
    /// The tensor's GGUF name.
    pub name: String,
    /// Dimensions in candle order (outermost first).
    pub dims: Vec<usize>,
    /// The storage type.
    pub ty: RawType,
    /// Absolute byte offset of the data in the file.
    pub offset: u64,
    /// Size of the data in bytes.
    pub n_bytes: u64,
}

/// A [`RawType`] tensor to write: dimensions in candle order and its blocks.
pub struct RawTensor {
    /// Dimensions, outermost first.
    pub dims: Vec<usize>,
    /// The storage type.
    pub ty: RawType,
    /// The blocks, row-major.
    pub data: Vec<u8>,
}

impl Gguf {
    /// Parse the header, metadata and tensor directory of the GGUF file at `path`, checking
    /// every length and tensor extent against the file size.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|source| GgufError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let file_size = file
            .metadata()
            .map_err(|source| GgufError::Open {
                path: path.to_path_buf(),
                source,
            })?
            .len();
        let mut reader = Reader {
            inner: BufReader::with_capacity(1 << 16, file),
            pos: 0,
            file_size,
            path,
        };
        reader.read_all(file_size)
    }

    /// The metadata value under `key`; [`GgufError::MissingKey`] if absent.
    pub fn get(&self, key: &str) -> Result<&Value> {
        self.metadata.get(key).ok_or_else(|| GgufError::MissingKey {
            path: self.path.clone(),
            key: key.to_string(),
        })
    }

    /// An integer value that fits a u64 (any integer type).
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        let value = self.get(key)?;
        value
            .as_u64()
            .ok_or_else(|| self.type_error(key, value, "integer"))
    }

    /// An integer value that fits a usize.
    pub fn get_usize(&self, key: &str) -> Result<usize> {
        let v = self.get_u64(key)?;
        usize::try_from(v).map_err(|_| self.corrupt(format!("`{key}` = {v} is out of range")))
    }

    /// A numeric value as f64 (float or integer).
    pub fn get_f64(&self, key: &str) -> Result<f64> {
        let value = self.get(key)?;
        value
            .as_f64()
            .ok_or_else(|| self.type_error(key, value, "number"))
    }

    /// A string value.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        match self.get(key)? {
            Value::String(s) => Ok(s),
            other => Err(self.type_error(key, other, "string")),
        }
    }

    /// A boolean value.
    pub fn get_bool(&self, key: &str) -> Result<bool> {
        match self.get(key)? {
            Value::Bool(b) => Ok(*b),
            other => Err(self.type_error(key, other, "bool")),
        }
    }

    /// An array value.
    pub fn get_array(&self, key: &str) -> Result<&[Value]> {
        match self.get(key)? {
            Value::Array(items) => Ok(items),
            other => Err(self.type_error(key, other, "array")),
        }
    }

    /// The architecture name (`general.architecture`).
    pub fn architecture(&self) -> Result<&str> {
        self.get_str("general.architecture")
    }

    /// Total number of elements over all tensors.
    pub fn parameter_count(&self) -> usize {
        let raw: usize = self
            .raw_tensors
            .values()
            .map(|t| t.dims.iter().product::<usize>())
            .sum();
        self.tensors
            .values()
            .map(TensorInfo::n_elements)
            .sum::<usize>()
            + raw
    }

    /// The directory entry of tensor `name`; [`GgufError::MissingTensor`] if absent.
    pub fn tensor_info(&self, name: &str) -> Result<&TensorInfo> {
        self.tensors
            .get(name)
            .ok_or_else(|| match self.raw_tensors.get(name) {
                Some(raw) => GgufError::HostOnly {
                    path: self.path.clone(),
                    name: name.to_string(),
                    ty: raw.ty.name(),
                },
                None => GgufError::MissingTensor {
                    path: self.path.clone(),
                    name: name.to_string(),
                },
            })
    }

    /// Whether the file has tensor `name`, in any type.
    pub fn has_tensor(&self, name: &str) -> bool {
        self.tensors.contains_key(name) || self.raw_tensors.contains_key(name)
    }

    /// Read one tensor's bytes from disk into a quantized tensor.
    pub fn tensor(&self, file: &mut File, name: &str, device: &Device) -> Result<QTensor> {
        let info = self.tensor_info(name)?;
        let mut bytes = vec![0u8; info.n_bytes as usize];
        file.seek(SeekFrom::Start(info.offset))
            .and_then(|_| file.read_exact(&mut bytes))
            .map_err(|e| self.corrupt(format!("reading tensor `{name}`: {e}")))?;
        qtensor_from_ggml(info.dtype, &bytes, info.dims.clone(), device).map_err(|source| {
            GgufError::Candle {
                path: self.path.clone(),
                name: name.to_string(),
                source: Box::new(source),
            }
        })
    }

    /// Drop the array values of the metadata (the vocabulary, its scores,
    /// types and merges: about 30 MB for Gemma's 262k tokens), once the
    /// tokenizer has been built from them. Scalars and strings stay.
    pub fn drop_arrays(&mut self) {
        self.metadata.retain(|_, v| !matches!(v, Value::Array(_)));
    }

    /// Open the file again for reading tensor data with [`Gguf::tensor`].
    pub fn open_data(&self) -> Result<File> {
        File::open(&self.path).map_err(|source| GgufError::Open {
            path: self.path.clone(),
            source,
        })
    }

    fn corrupt(&self, what: String) -> GgufError {
        GgufError::Corrupt {
            path: self.path.clone(),
            what,
        }
    }

    fn type_error(&self, key: &str, found: &Value, expected: &'static str) -> GgufError {
        GgufError::KeyType {
            path: self.path.clone(),
            key: key.to_string(),
            found: found.type_name(),
            expected,
        }
    }
}

/// Bytes per block and elements per block for a ggml type id, and the candle dtype.
pub fn ggml_dtype(id: u32) -> Option<GgmlDType> {
    Some(match id {
        0 => GgmlDType::F32,
        1 => GgmlDType::F16,
        2 => GgmlDType::Q4_0,
        3 => GgmlDType::Q4_1,
        6 => GgmlDType::Q5_0,
        7 => GgmlDType::Q5_1,
        8 => GgmlDType::Q8_0,
        9 => GgmlDType::Q8_1,
        10 => GgmlDType::Q2K,
        11 => GgmlDType::Q3K,
        12 => GgmlDType::Q4K,
        13 => GgmlDType::Q5K,
        14 => GgmlDType::Q6K,
        15 => GgmlDType::Q8K,
        30 => GgmlDType::BF16,
        _ => return None,
    })
}

/// The ggml type id of a candle dtype (inverse of [`ggml_dtype`]).
pub fn ggml_type_id(dtype: GgmlDType) -> u32 {
    (0..=30)
        .find(|&id| ggml_dtype(id) == Some(dtype))
        .unwrap_or(u32::MAX)
}

struct Reader<'a> {
    inner: BufReader<File>,
    pos: u64,
    file_size: u64,
    path: &'a Path,
}

impl Reader<'_> {
    fn corrupt(&self, what: impl Into<String>) -> GgufError {
        GgufError::Corrupt {
            path: self.path.to_path_buf(),
            what: what.into(),
        }
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut buf = [0u8; N];
        self.inner.read_exact(&mut buf).map_err(|_| {
            self.corrupt(format!(
                "file ends at byte {} inside the header",
                self.file_size
            ))
        })?;
        self.pos += N as u64;
        Ok(buf)
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }

    /// A length that must fit in the rest of the file, at `min_item_bytes` per item.
    fn length(&mut self, what: &str, min_item_bytes: u64) -> Result<usize> {
        let len = self.u64()?;
        let remaining = self.file_size.saturating_sub(self.pos);
        if len.saturating_mul(min_item_bytes) > remaining {
            return Err(self.corrupt(format!(
                "{what} length {len} exceeds the {remaining} bytes left in the file"
            )));
        }
        Ok(len as usize)
    }

    fn string(&mut self) -> Result<String> {
        let len = self.length("string", 1)?;
        let mut buf = vec![0u8; len];
        self.inner
            .read_exact(&mut buf)
            .map_err(|_| self.corrupt("file ends inside a string"))?;
        self.pos += len as u64;
        // Token strings may hold invalid UTF-8 in broken converters; keep them lossy.
        Ok(String::from_utf8(buf).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into()))
    }

    fn value(&mut self, ty: u32, depth: u32) -> Result<Value> {
        Ok(match ty {
            0 => Value::U8(u8::from_le_bytes(self.bytes()?)),
            1 => Value::I8(i8::from_le_bytes(self.bytes()?)),
            2 => Value::U16(u16::from_le_bytes(self.bytes()?)),
            3 => Value::I16(i16::from_le_bytes(self.bytes()?)),
            4 => Value::U32(self.u32()?),
            5 => Value::I32(i32::from_le_bytes(self.bytes()?)),
            6 => Value::F32(f32::from_le_bytes(self.bytes()?)),
            7 => Value::Bool(u8::from_le_bytes(self.bytes()?) != 0),
            8 => Value::String(self.string()?),
            9 if depth == 0 => {
                let elem_ty = self.u32()?;
                let len = self.length("array", 1)?;
                let mut items = Vec::with_capacity(len.min(1 << 20));
                for _ in 0..len {
                    items.push(self.value(elem_ty, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(i64::from_le_bytes(self.bytes()?)),
            12 => Value::F64(f64::from_le_bytes(self.bytes()?)),
            other => return Err(self.corrupt(format!("unknown metadata value type {other}"))),
        })
    }

    fn read_all(&mut self, file_size: u64) -> Result<Gguf> {
        let path = self.path.to_path_buf();
        let magic = self.u32()?;
        if magic != GGUF_MAGIC {
            return Err(GgufError::BadMagic { path, magic });
        }
        let version = self.u32()?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::Version { path, version });
        }
        // A tensor entry takes at least 24 bytes, a key/value pair at least 12.
        let n_tensors = self.length("tensor count", 24)?;
        let n_kv = self.length("metadata count", 12)?;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = self.string()?;
            let ty = self.u32()?;
            let value = self.value(ty, 0)?;
            metadata.insert(key, value);
        }
        let alignment = metadata
            .get("general.alignment")
            .and_then(Value::as_u64)
            .filter(|a| *a > 0)
            .unwrap_or(DEFAULT_ALIGNMENT);
        let mut raw = Vec::with_capacity(n_tensors);
        for _ in 0..n_tensors {
            raw.push(self.tensor_entry()?);
        }
        let data_start = self.pos.div_ceil(alignment) * alignment;
        let mut tensors = BTreeMap::new();
        let mut raw_tensors = BTreeMap::new();
        for (name, dims, ty, rel_offset) in raw {
            let offset = data_start + rel_offset;
            match RawType::from_id(ty) {
                Some(raw_type) => {
                    let info = self.place_raw(name, dims, raw_type, offset, file_size)?;
                    raw_tensors.insert(info.name.clone(), info);
                }
                None => {
                    let info = self.place_tensor(name, dims, ty, offset, file_size)?;
                    tensors.insert(info.name.clone(), info);
                }
            }
        }
        Ok(Gguf {
            path,
            version,
            file_size,
            metadata,
            tensors,
            raw_tensors,
        })
    }

    fn tensor_entry(&mut self) -> Result<(String, Vec<u64>, u32, u64)> {
        let name = self.string()?;
        let n_dims = self.u32()?;
        if n_dims == 0 || n_dims > 4 {
            return Err(self.corrupt(format!("tensor `{name}` has {n_dims} dimensions")));
        }
        let dims = (0..n_dims)
            .map(|_| self.u64())
            .collect::<Result<Vec<_>>>()?;
        let ty = self.u32()?;
        let offset = self.u64()?;
        Ok((name, dims, ty, offset))
    }

    fn place_raw(
        &self,
        name: String,
        ggml_dims: Vec<u64>,
        ty: RawType,
        offset: u64,
        file_size: u64,
    ) -> Result<RawTensorInfo> {
        let (ty_block, ty_size) = (ty.block_size(), ty.type_size());
        let n_bytes = self.extent(&name, &ggml_dims, ty_block, ty_size, offset, file_size)?;
        Ok(RawTensorInfo {
            name,
            dims: candle_dims(&ggml_dims),
            ty,
            offset,
            n_bytes,
        })
    }

    fn place_tensor(
        &self,
        name: String,
        ggml_dims: Vec<u64>,
        ty: u32,
        offset: u64,
        file_size: u64,
    ) -> Result<TensorInfo> {
        let dtype = ggml_dtype(ty).ok_or_else(|| GgufError::TensorType {
            path: self.path.to_path_buf(),
            name: name.clone(),
            ty,
        })?;
        let (block, size) = (dtype.block_size(), dtype.type_size());
        let n_bytes = self.extent(&name, &ggml_dims, block, size, offset, file_size)?;
        Ok(TensorInfo {
            name,
            dims: candle_dims(&ggml_dims),
            dtype,
            offset,
            n_bytes,
        })
    }

    /// Bytes of a tensor of `ggml_dims` in blocks of `block` elements and
    /// `size` bytes, checked to be whole blocks lying inside the file.
    fn extent(
        &self,
        name: &str,
        ggml_dims: &[u64],
        block: usize,
        size: usize,
        offset: u64,
        file_size: u64,
    ) -> Result<u64> {
        let n_elements = ggml_dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n > 0 && n % block as u64 == 0)
            .ok_or_else(|| self.corrupt(format!("tensor `{name}` has bad shape {ggml_dims:?}")))?;
        let n_bytes = n_elements / block as u64 * size as u64;
        if offset
            .checked_add(n_bytes)
            .is_none_or(|end| end > file_size)
        {
            return Err(self.corrupt(format!(
                "tensor `{name}` needs bytes {offset}..{} but the file has {file_size}",
                offset.saturating_add(n_bytes)
            )));
        }
        Ok(n_bytes)
    }
}

/// GGUF lists the innermost dimension first; candle wants it last.
fn candle_dims(ggml_dims: &[u64]) -> Vec<usize> {
    ggml_dims.iter().rev().map(|&d| d as usize).collect()
}

/// Write a GGUF (version 3) file: used by tests to build tiny models with
/// seeded random weights, and by tools that save re-quantized models.
pub fn write<W: std::io::Write>(
    out: &mut W,
    metadata: &[(&str, Value)],
    tensors: &[(&str, &QTensor)],
) -> std::io::Result<()> {
    write_with_raw(out, metadata, tensors, &[])
}

/// [`write()`], with tensors of nsed's own [`RawType`]s after the others.
pub fn write_with_raw<W: std::io::Write>(
    out: &mut W,
    metadata: &[(&str, Value)],
    tensors: &[(&str, &QTensor)],
    raw: &[(&str, &RawTensor)],
) -> std::io::Result<()> {
    let mut header = Vec::new();
    header.extend_from_slice(&GGUF_MAGIC.to_le_bytes());
    header.extend_from_slice(&3u32.to_le_bytes());
    header.extend_from_slice(&((tensors.len() + raw.len()) as u64).to_le_bytes());
    header.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        write_string(&mut header, key);
        header.extend_from_slice(&value_type_id(value).to_le_bytes());
        write_value(&mut header, value);
    }
    let mut datas = Vec::with_capacity(tensors.len());
    let mut offset = 0u64;
    for (name, tensor) in tensors {
        let data = tensor
            .data()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        write_string(&mut header, name);
        let dims = tensor.shape().dims();
        header.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for d in dims.iter().rev() {
            header.extend_from_slice(&(*d as u64).to_le_bytes());
        }
        header.extend_from_slice(&ggml_type_id(tensor.dtype()).to_le_bytes());
        header.extend_from_slice(&offset.to_le_bytes());
        offset = (offset + data.len() as u64).div_ceil(DEFAULT_ALIGNMENT) * DEFAULT_ALIGNMENT;
        datas.push(std::borrow::Cow::Owned(data.into_owned()));
    }
    for (name, tensor) in raw {
        write_string(&mut header, name);
        header.extend_from_slice(&(tensor.dims.len() as u32).to_le_bytes());
        for d in tensor.dims.iter().rev() {
            header.extend_from_slice(&(*d as u64).to_le_bytes());
        }
        header.extend_from_slice(&tensor.ty.id().to_le_bytes());
        header.extend_from_slice(&offset.to_le_bytes());
        offset =
            (offset + tensor.data.len() as u64).div_ceil(DEFAULT_ALIGNMENT) * DEFAULT_ALIGNMENT;
        datas.push(std::borrow::Cow::Borrowed(tensor.data.as_slice()));
    }
    let padded = header.len().div_ceil(DEFAULT_ALIGNMENT as usize) * DEFAULT_ALIGNMENT as usize;
    header.resize(padded, 0);
    out.write_all(&header)?;
    for data in datas {
        out.write_all(&data)?;
        let pad = data.len().div_ceil(DEFAULT_ALIGNMENT as usize) * DEFAULT_ALIGNMENT as usize;
        out.write_all(&vec![0u8; pad - data.len()])?;
    }
    Ok(())
}

fn write_string(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

fn value_type_id(value: &Value) -> u32 {
    match value {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::String(_) => 8,
        Value::Array(_) => 9,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    }
}

fn write_value(buf: &mut Vec<u8>, value: &Value) {
    match value {
        Value::U8(v) => buf.push(*v),
        Value::I8(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::U16(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::I16(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::U32(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::I32(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::U64(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::I64(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::F32(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::F64(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::Bool(v) => buf.push(u8::from(*v)),
        Value::String(s) => write_string(buf, s),
        Value::Array(items) => {
            let elem = items.first().map_or(4, value_type_id);
            buf.extend_from_slice(&elem.to_le_bytes());
            buf.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                write_value(buf, item);
            }
        }
    }
}
