//! keycard-scan: finds AWS credentials written into text (source files, git
//! history, EC2 user data) with the patterns, entropy thresholds and
//! allow-lists of the well-known secret scanners (gitleaks, trufflehog,
//! detect-secrets), and decodes the account an access key id belongs to.
//!
//! Rules (docs/governance.md, "Scanner", says the same for users):
//! - access key id: `(A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}` between
//!   word boundaries (gitleaks), Shannon entropy >= 3, not ending in `EXAMPLE`;
//! - secret access key: 40 characters of `[A-Za-z0-9+/]` bounded by
//!   non-base64 characters (trufflehog), entropy >= 4.25, and only when an
//!   access key id is within [`PAIR_WINDOW`] bytes or the same line has an
//!   `aws … key/secret/token/pass` context before it (detect-secrets);
//! - session token: >= 100 base64 / base64url characters with an
//!   `aws … token` / `security-token` context on its line or an `ASIA` id nearby;
//! - private key: a `-----BEGIN … PRIVATE KEY-----` block with its `END` line.
//!
//! [`scan_bytes`] also looks inside base64 and gzip (bounded, recursive).
//!
//! The crate is pure: no I/O, no unsafe, and nothing panics on any input.
//! A [`Match`] never holds a secret: only a 4-character preview.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

mod decode;
mod text;

use serde::Serialize;

pub use decode::{MAX_DEPTH, MAX_INFLATED};
pub use text::{PAIR_WINDOW, SECRET_MIN_ENTROPY};

/// What a match is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// `AKIA…` / `ASIA…` / `ABIA…` / `ACCA…` / `A3T…`.
    AccessKeyId,
    /// A 40-character secret access key.
    SecretAccessKey,
    /// An STS session token.
    SessionToken,
    /// A PEM private key block.
    PrivateKey,
}

impl Kind {
    /// The stable name used in reports (`access-key-id`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::AccessKeyId => "access-key-id",
            Kind::SecretAccessKey => "secret-access-key",
            Kind::SessionToken => "session-token",
            Kind::PrivateKey => "private-key",
        }
    }
}

/// How a match was reached inside encoded content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    Base64,
    Gzip,
}

/// One credential found in the scanned input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Match {
    pub kind: Kind,
    /// 1-based line of the match start in the scanned input.
    pub line: usize,
    /// 1-based column (in characters) of the match start on its line.
    pub column: usize,
    /// Byte range in the scanned input. For a match inside decoded content
    /// (see `via`) this is the range of the outermost encoded region.
    pub start: usize,
    pub end: usize,
    /// First 4 characters and `…`: never the secret itself.
    pub preview: String,
    /// The access key id: the match itself for an id, the nearest id for a
    /// secret or session token next to one.
    pub key_id: Option<String>,
    /// The account decoded offline from `key_id` ([`account_from_key_id`]).
    pub account: Option<String>,
    /// For an id: a secret access key was found next to it. For a secret or
    /// token: an id was found next to it.
    pub paired: bool,
    /// The decodings applied to reach the match, outermost first (empty when
    /// found in the input as is).
    pub via: Vec<Layer>,
}

/// Every credential in `text` (see the crate docs for the rules), in order
/// of position.
pub fn scan_text(text: &str) -> Vec<Match> {
    text::scan(text)
}

/// Like [`scan_text`], and also inside what the bytes decode to: the whole
/// input or base64 runs in it as base64, gzip streams (inflated up to
/// [`MAX_INFLATED`] bytes), recursively up to [`MAX_DEPTH`] layers. Invalid
/// UTF-8 bytes count as one non-text character each, so offsets stay
/// byte offsets of `data`.
pub fn scan_bytes(data: &[u8]) -> Vec<Match> {
    decode::scan(data)
}

/// The AWS account an access key id belongs to, decoded offline as
/// trufflehog does: base32 of the characters after the 4-character prefix,
/// first 6 bytes as a big-endian number `z`, account `(z & 0x7fffffffff80) >> 7`,
/// as 12 zero-padded digits. `None` unless the id is a 4-letter prefix and 16
/// base32 (`A-Z2-7`) characters. Ids AWS issued before 2019 do not carry
/// the account, so the answer is only meaningful for newer ids.
pub fn account_from_key_id(id: &str) -> Option<String> {
    let bytes = id.as_bytes();
    if bytes.len() != 20 || !bytes.iter().take(4).all(u8::is_ascii_uppercase) {
        return None;
    }
    let mut z: u64 = 0;
    let mut bits = 0u32;
    let mut taken = 0u32;
    for &c in bytes.iter().skip(4) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        if taken < 48 {
            z = (z << 5) | u64::from(v);
            bits += 5;
            taken += 5;
        }
    }
    // 50 bits read for the first 10 characters: keep the first 48.
    let z = z >> (bits - 48);
    let account = (z & 0x7fff_ffff_ff80) >> 7;
    Some(format!("{account:012}"))
}

/// Shannon entropy of `s` in bits per byte.
pub fn entropy(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    for b in s.bytes() {
        if let Some(c) = counts.get_mut(usize::from(b)) {
            *c += 1;
        }
    }
    let n = s.len() as f64;
    if n == 0.0 {
        return 0.0;
    }
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// The redacted preview: the first 4 characters and `…`.
pub fn preview(s: &str) -> String {
    let head: String = s.chars().take(4).collect();
    format!("{head}…")
}
