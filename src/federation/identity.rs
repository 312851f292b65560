//! Agent identity: Ed25519 keys (`nsed agent keygen`), sealing a message
//! into a signed [`Envelope`] and opening one.

use std::path::Path;

use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::wire::{digest, Body, Envelope, SCHEMA};
use super::{FederationError, Rejection};
use crate::deliberation::Attestation;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The key file: JSON, readable by its owner only.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: String,
    secret_key: String,
    public_key: String,
}

const KEY_TYPE: &str = "nsed-ed25519";

/// An agent's Ed25519 signing key: it signs every message the agent sends.
pub struct Identity {
    key: SigningKey,
}

impl Identity {
    /// A fresh key from the kernel's random source.
    pub fn generate() -> Result<Self, FederationError> {
        let mut seed = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut seed))
            .map_err(|e| FederationError::Key(format!("reading /dev/urandom: {e}")))?;
        Ok(Self {
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// Read a key file written by [`Identity::save`]; the file's public key must match its
    /// secret key.
    pub fn load(path: &Path) -> Result<Self, FederationError> {
        let bad = |m: String| FederationError::Key(format!("{}: {m}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let file: KeyFile = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if file.kind != KEY_TYPE {
            return Err(bad(format!("type `{}`, expected `{KEY_TYPE}`", file.kind)));
        }
        let seed: [u8; 32] = B64
            .decode(file.secret_key.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("secret_key is not 32 base64 bytes".into()))?;
        let id = Self {
            key: SigningKey::from_bytes(&seed),
        };
        if id.public_key() != file.public_key.trim() {
            return Err(bad("public_key does not match secret_key".into()));
        }
        Ok(id)
    }

    /// Write the key to a new file (mode 0600), atomically: a killed keygen
    /// leaves no file (never an empty one); an existing file is kept.
    pub fn save(&self, path: &Path) -> Result<(), FederationError> {
        let file = KeyFile {
            kind: KEY_TYPE.into(),
            secret_key: B64.encode(self.key.to_bytes()),
            public_key: self.public_key(),
        };
        let text =
            serde_json::to_string_pretty(&file).map_err(|e| FederationError::Key(e.to_string()))?;
        crate::results::output::write_private_new(path, format!("{text}\n").as_bytes())
            .map_err(|e| FederationError::Key(e.to_string()))
    }

    /// The public key, base64.
    pub fn public_key(&self) -> String {
        B64.encode(self.key.verifying_key().to_bytes())
    }

    /// Sign a message.
    pub fn seal(&self, body: &Body) -> Envelope {
        let signed = serde_json::to_string(body).unwrap_or_default();
        let signature = self.key.sign(signed.as_bytes());
        Envelope {
            schema: SCHEMA,
            signed,
            public_key: self.public_key(),
            signature: B64.encode(signature.to_bytes()),
        }
    }
}

/// Check an envelope's signature and read its body. Whether the key is the
/// one expected of the sender is the caller's check.
pub fn open(env: &Envelope) -> Result<(Body, Attestation), Rejection> {
    let bad = |what: &str| Rejection::BadEnvelope(what.to_string());
    if env.schema != SCHEMA {
        return Err(Rejection::BadEnvelope(format!(
            "schema {} (this nsed speaks {SCHEMA})",
            env.schema
        )));
    }
    let key: [u8; 32] = B64
        .decode(&env.public_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad("public_key is not 32 base64 bytes"))?;
    let key =
        VerifyingKey::from_bytes(&key).map_err(|_| bad("public_key is not an Ed25519 point"))?;
    let sig: [u8; 64] = B64
        .decode(&env.signature)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad("signature is not 64 base64 bytes"))?;
    key.verify(env.signed.as_bytes(), &Signature::from_bytes(&sig))
        .map_err(|_| Rejection::BadSignature)?;
    let body: Body = serde_json::from_str(&env.signed)
        .map_err(|e| Rejection::BadEnvelope(format!("signed body: {e}")))?;
    Ok((
        body,
        Attestation {
            public_key: env.public_key.clone(),
            signature: env.signature.clone(),
            signed_sha256: digest(env.signed.as_bytes()),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::super::wire::{AckMsg, Action};
    use super::*;

    fn ack() -> Body {
        Body::Ack(AckMsg {
            schema: SCHEMA,
            job: "j".into(),
            round: 1,
            agent: "a".into(),
            action: Action::Propose,
            call: "c".into(),
            instance: "i".into(),
        })
    }

    #[test]
    fn sealed_messages_open_and_tampering_is_caught() {
        let id = Identity::generate().unwrap();
        let env = id.seal(&ack());
        let (body, att) = open(&env).unwrap();
        assert_eq!(body, ack());
        assert_eq!(att.public_key, id.public_key());
        assert_eq!(att.signed_sha256, digest(env.signed.as_bytes()));
        // A changed byte, another key's signature, garbage.
        let mut t = env.clone();
        t.signed = t.signed.replace("\"round\":1", "\"round\":2");
        assert_eq!(open(&t).unwrap_err(), Rejection::BadSignature);
        let other = Identity::generate().unwrap();
        let mut t = env.clone();
        t.public_key = other.public_key();
        assert_eq!(open(&t).unwrap_err(), Rejection::BadSignature);
        let mut t = env;
        t.signature = "AAAA".into();
        assert_eq!(
            open(&t).unwrap_err(),
            Rejection::BadEnvelope("signature is not 64 base64 bytes".into())
        );
    }

    #[test]
    fn key_files_round_trip_and_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.key");
        let id = Identity::generate().unwrap();
        id.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(Identity::load(&path).unwrap().public_key(), id.public_key());
        // Never overwritten; a corrupt file is a clear error.
        assert!(id.save(&path).is_err());
        std::fs::write(
            &path,
            "{\"type\":\"nsed-ed25519\",\"secret_key\":\"x\",\"public_key\":\"y\"}",
        )
        .unwrap();
        let err = Identity::load(&path).err().unwrap().to_string();
        assert!(err.contains("32 base64 bytes"), "{err}");
    }
}
