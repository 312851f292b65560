//! Digest formatting shared by the engine and everything above it.

/// Lower-case hexadecimal of a byte string (sha256 digests in results files).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
