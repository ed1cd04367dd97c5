//! Sealing secrets: access-key secrets at rest, and self-contained session
//! tokens, both under ChaCha20-Poly1305.
//!
//! The master key lives in a file in the data directory (mode 0600), apart
//! from the database, so a copy of the database alone reveals no secret.
//! Session tokens are sealed under a rotatable token key kept in the store
//! (itself sealed under the master key); a token names the key that sealed
//! it, so older keys keep verifying until they are retired.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use zeroize::Zeroizing;

use crate::error::{Result, ServiceError};

/// A 256-bit sealing key. Debug never shows the bytes.
#[derive(Clone)]
pub struct SealKey {
    id: u8,
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealKey(id={}, ***)", self.id)
    }
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::fill(&mut b[..]);
    b
}

impl SealKey {
    pub fn generate(id: u8) -> SealKey {
        SealKey {
            id,
            key: Zeroizing::new(random_bytes::<32>()),
        }
    }

    pub fn from_bytes(id: u8, bytes: &[u8]) -> Option<SealKey> {
        let arr: [u8; 32] = bytes.try_into().ok()?;
        Some(SealKey {
            id,
            key: Zeroizing::new(arr),
        })
    }

    pub fn id(&self) -> u8 {
        self.id
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.key
    }

    /// Seal `plain` with associated data `aad`: `id || nonce || ciphertext`.
    pub fn seal(&self, plain: &[u8], aad: &[u8]) -> Vec<u8> {
        let cipher = ChaCha20Poly1305::new(&Key::from(*self.key));
        let nonce = random_bytes::<12>();
        let ct = cipher
            .encrypt(&Nonce::from(nonce), Payload { msg: plain, aad })
            .unwrap_or_default();
        let mut out = Vec::with_capacity(1 + 12 + ct.len());
        out.push(self.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Open what `seal` made; `None` on any tampering or wrong key.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        let (&id, rest) = sealed.split_first()?;
        if rest.len() < 12 + 16 || id != self.id {
            return None;
        }
        let (nonce, msg) = rest.split_at_checked(12)?;
        let cipher = ChaCha20Poly1305::new(&Key::from(*self.key));
        let nonce: [u8; 12] = nonce.try_into().ok()?;
        cipher
            .decrypt(&Nonce::from(nonce), Payload { msg, aad })
            .ok()
    }
}

/// A key ring: the newest key seals, every key opens what it sealed.
/// The newest key is held apart so a ring can never be empty.
#[derive(Debug, Clone)]
pub struct KeyRing {
    current: SealKey,
    older: Vec<SealKey>,
}

impl KeyRing {
    pub fn new(current: SealKey) -> KeyRing {
        KeyRing {
            current,
            older: Vec::new(),
        }
    }
    pub fn current(&self) -> &SealKey {
        &self.current
    }
    /// Every key, oldest first (the current key last).
    pub fn keys(&self) -> impl Iterator<Item = &SealKey> {
        self.older.iter().chain(std::iter::once(&self.current))
    }
    pub fn seal(&self, plain: &[u8], aad: &[u8]) -> Vec<u8> {
        self.current.seal(plain, aad)
    }
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        let id = *sealed.first()?;
        self.keys()
            .find(|k| k.id == id)
            .and_then(|k| k.open(sealed, aad))
    }
    /// Add a fresh key that seals from now on.
    pub fn rotate(&mut self) -> u8 {
        let id = self.keys().map(|k| k.id).max().unwrap_or(0).wrapping_add(1);
        let previous = std::mem::replace(&mut self.current, SealKey::generate(id));
        self.older.push(previous);
        id
    }

    /// Serialize for storage (sealed by the caller under the master key).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for k in self.keys() {
            out.push(k.id);
            out.extend_from_slice(&k.key[..]);
        }
        out
    }

    /// Parse what `to_bytes` wrote; `None` if it is malformed or holds no key.
    pub fn from_bytes(b: &[u8]) -> Option<KeyRing> {
        if b.is_empty() || !b.len().is_multiple_of(33) {
            return None;
        }
        let mut older: Vec<SealKey> = b
            .chunks(33)
            .filter_map(|c| match c.split_first() {
                Some((&id, key)) => SealKey::from_bytes(id, key),
                None => None,
            })
            .collect();
        let current = older.pop()?;
        Some(KeyRing { current, older })
    }
}

/// Seal a secret string for storage: base64 text.
pub fn seal_secret(master: &SealKey, secret: &str, aad: &str) -> String {
    STANDARD.encode(master.seal(secret.as_bytes(), aad.as_bytes()))
}

pub fn open_secret(master: &SealKey, sealed: &str, aad: &str) -> Result<String> {
    let raw = STANDARD
        .decode(sealed)
        .map_err(|_| ServiceError::Internal("sealed secret is not base64".into()))?;
    let plain = master.open(&raw, aad.as_bytes()).ok_or_else(|| {
        ServiceError::Internal("sealed secret does not open with the master key".into())
    })?;
    String::from_utf8(plain)
        .map_err(|_| ServiceError::Internal("sealed secret is not UTF-8".into()))
}

/// Prefix that marks keycard session tokens.
pub const TOKEN_PREFIX: &str = "KCv1";

pub fn encode_token(ring: &KeyRing, claims_json: &[u8]) -> String {
    let sealed = ring.seal(claims_json, TOKEN_PREFIX.as_bytes());
    format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(sealed))
}

pub fn decode_token(ring: &KeyRing, token: &str) -> Option<Vec<u8>> {
    let body = token.strip_prefix(TOKEN_PREFIX)?;
    if body.len() > 16 * 1024 {
        return None;
    }
    let raw = URL_SAFE_NO_PAD.decode(body).ok()?;
    ring.open(&raw, TOKEN_PREFIX.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_roundtrip_and_tamper() {
        let k = SealKey::generate(1);
        let s = k.seal(b"hello", b"ad");
        assert_eq!(k.open(&s, b"ad").as_deref(), Some(&b"hello"[..]));
        assert!(k.open(&s, b"other").is_none());
        for i in 0..s.len() {
            let mut t = s.clone();
            t[i] ^= 1;
            assert!(k.open(&t, b"ad").is_none(), "byte {i}");
        }
    }

    #[test]
    fn ring_rotation_keeps_old_tokens() {
        let mut ring = KeyRing::new(SealKey::generate(1));
        let old = encode_token(&ring, b"{}");
        ring.rotate();
        let new = encode_token(&ring, b"{\"a\":1}");
        assert_eq!(decode_token(&ring, &old).as_deref(), Some(&b"{}"[..]));
        assert_eq!(
            decode_token(&ring, &new).as_deref(),
            Some(&b"{\"a\":1}"[..])
        );
        let restored = KeyRing::from_bytes(&ring.to_bytes()).unwrap();
        assert!(decode_token(&restored, &old).is_some());
        assert!(decode_token(&ring, "KCv1garbage").is_none());
        assert!(decode_token(&ring, "").is_none());
    }

    #[test]
    fn debug_redacts() {
        let k = SealKey::generate(7);
        let d = format!("{k:?}");
        assert!(!d.contains(&hex::encode(k.bytes())));
    }
}
