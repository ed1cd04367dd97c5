//! `Content-Encoding: aws-chunked` bodies.
//!
//! Wire format (signed, `STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`):
//!
//! ```text
//! 10000;chunk-signature=<64 hex>\r\n<65536 bytes>\r\n
//! 400;chunk-signature=<64 hex>\r\n<1024 bytes>\r\n
//! 0;chunk-signature=<64 hex>\r\n
//! x-amz-checksum-crc32:AAAAAA==\r\n            (trailers, optional)
//! x-amz-trailer-signature:<64 hex>\r\n         (when there are trailers)
//! \r\n
//! ```
//!
//! Unsigned (`STREAMING-UNSIGNED-PAYLOAD-TRAILER`) is the same without the
//! `;chunk-signature=` extensions and without the trailer signature.
//!
//! Chunk *n*'s signature is HMAC(signing key, "AWS4-HMAC-SHA256-PAYLOAD\n{amz date}\n{scope}\n
//! {signature of chunk n-1, or the seed}\n{sha256('')}\n{sha256(chunk)}"); the trailer signature
//! is HMAC(signing key, "AWS4-HMAC-SHA256-TRAILER\n{amz date}\n{scope}\n{last chunk signature}\n
//! {sha256(trailers as 'name:value\n'…)}").

use bytes::Bytes;
use time::OffsetDateTime;

use crate::crypto::{EMPTY_SHA256, hmac_sha256, sha256};
use crate::secret::ct_eq;
use crate::sigv4::{
    AuthError, AuthErrorCode, ParsedAuth, STREAMING_PAYLOAD, STREAMING_PAYLOAD_TRAILER,
    STREAMING_UNSIGNED_PAYLOAD_TRAILER, Scope, Verified, declared_payload_hash, format_amz_date,
};

/// Longest chunk header or trailer line accepted.
pub const MAX_LINE: usize = 4096;
/// Most trailers accepted.
pub const MAX_TRAILERS: usize = 64;

/// How to treat chunk signatures.
#[derive(Clone)]
pub enum ChunkMode {
    /// Verify every `chunk-signature` and the trailer signature.
    Signed {
        /// From [`Verified::signing_key`].
        signing_key: [u8; 32],
        /// From [`Verified::seed_signature`].
        seed_signature: String,
        /// The request timestamp ([`ParsedAuth::timestamp`]).
        timestamp: OffsetDateTime,
        /// The credential scope ([`ParsedAuth::scope`]).
        scope: Scope,
    },
    /// `STREAMING-UNSIGNED-PAYLOAD-TRAILER`: only the framing is checked.
    Unsigned,
}

impl ChunkMode {
    /// Signed mode for a verified request.
    pub fn signed(verified: &Verified, auth: &ParsedAuth) -> Self {
        Self::Signed {
            signing_key: verified.signing_key,
            seed_signature: verified.seed_signature.clone(),
            timestamp: auth.timestamp,
            scope: auth.scope.clone(),
        }
    }
}

impl std::fmt::Debug for ChunkMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Signed { scope, .. } => f
                .debug_struct("Signed")
                .field("signing_key", &"***")
                .field("scope", scope)
                .finish_non_exhaustive(),
            Self::Unsigned => f.write_str("Unsigned"),
        }
    }
}

/// A decoded body and its trailers (e.g. `x-amz-checksum-crc32`), names lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DecodedBody {
    /// The payload.
    pub data: Bytes,
    /// Trailing headers in the order sent, without `x-amz-trailer-signature`.
    pub trailers: Vec<(String, String)>,
}

impl DecodedBody {
    /// A trailer by (case-insensitive) name.
    pub fn trailer(&self, name: &str) -> Option<&str> {
        self.trailers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn malformed(msg: &str) -> AuthError {
    AuthError::new(
        AuthErrorCode::InvalidRequest,
        format!("Invalid aws-chunked body: {msg}"),
    )
}

fn incomplete() -> AuthError {
    AuthError::new(
        AuthErrorCode::IncompleteBody,
        "The request body terminated unexpectedly",
    )
}

/// Read up to CRLF; return the line (without CRLF) and advance `pos`.
fn read_line<'a>(body: &'a [u8], pos: &mut usize) -> Result<&'a [u8], AuthError> {
    let rest = body.get(*pos..).unwrap_or(&[]);
    let window = &rest[..rest.len().min(MAX_LINE + 2)];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(i) => {
            *pos += i + 2;
            Ok(&window[..i])
        }
        None if rest.len() > MAX_LINE => Err(malformed("line too long")),
        None => Err(incomplete()),
    }
}

fn parse_hex_size(s: &[u8]) -> Option<usize> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    let mut n: u64 = 0;
    for &c in s {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return None,
        };
        n = n.checked_mul(16)?.checked_add(u64::from(d))?;
    }
    usize::try_from(n).ok()
}

/// Trim spaces and tabs (nothing else: a stray CR or LF is an error elsewhere).
fn trim(s: &[u8]) -> &[u8] {
    let ws = |b: &u8| *b == b' ' || *b == b'\t';
    let start = s.iter().position(|b| !ws(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !ws(b)).map_or(start, |e| e + 1);
    s.get(start..end).unwrap_or(&[])
}

struct Chain<'a> {
    key: &'a [u8; 32],
    prefix_tail: String,
    prev: String,
}

impl Chain<'_> {
    fn chunk_signature(&self, data: &[u8]) -> String {
        let mut sts = String::with_capacity(300);
        sts.push_str("AWS4-HMAC-SHA256-PAYLOAD\n");
        sts.push_str(&self.prefix_tail);
        sts.push_str(&self.prev);
        sts.push('\n');
        sts.push_str(EMPTY_SHA256);
        sts.push('\n');
        sts.push_str(&hex::encode(sha256(data)));
        hex::encode(hmac_sha256(self.key, sts.as_bytes()))
    }

    fn trailer_signature(&self, canonical_trailers: &[u8]) -> String {
        let mut sts = String::with_capacity(250);
        sts.push_str("AWS4-HMAC-SHA256-TRAILER\n");
        sts.push_str(&self.prefix_tail);
        sts.push_str(&self.prev);
        sts.push('\n');
        sts.push_str(&hex::encode(sha256(canonical_trailers)));
        hex::encode(hmac_sha256(self.key, sts.as_bytes()))
    }
}

/// Sign one chunk (for tests and clients): the signature of `data` chained after `prev`.
pub fn chunk_signature(
    signing_key: &[u8; 32],
    timestamp: OffsetDateTime,
    scope: &Scope,
    prev: &str,
    data: &[u8],
) -> String {
    Chain {
        key: signing_key,
        prefix_tail: format!("{}\n{}\n", format_amz_date(timestamp), scope),
        prev: prev.to_owned(),
    }
    .chunk_signature(data)
}

/// Sign trailers (for tests and clients): `trailers` as `name:value` pairs, chained after `prev`.
pub fn trailer_signature(
    signing_key: &[u8; 32],
    timestamp: OffsetDateTime,
    scope: &Scope,
    prev: &str,
    trailers: &[(&str, &str)],
) -> String {
    let mut canon = Vec::new();
    for (k, v) in trailers {
        canon.extend_from_slice(k.as_bytes());
        canon.push(b':');
        canon.extend_from_slice(v.as_bytes());
        canon.push(b'\n');
    }
    Chain {
        key: signing_key,
        prefix_tail: format!("{}\n{}\n", format_amz_date(timestamp), scope),
        prev: prev.to_owned(),
    }
    .trailer_signature(&canon)
}

/// Decode an `aws-chunked` body, verifying signatures in [`ChunkMode::Signed`].
pub fn decode_aws_chunked(body: &[u8], mode: ChunkMode) -> Result<DecodedBody, AuthError> {
    let mut chain = match &mode {
        ChunkMode::Signed {
            signing_key,
            seed_signature,
            timestamp,
            scope,
        } => Some(Chain {
            key: signing_key,
            prefix_tail: format!("{}\n{}\n", format_amz_date(*timestamp), scope),
            prev: seed_signature.clone(),
        }),
        ChunkMode::Unsigned => None,
    };

    let mut out = Vec::with_capacity(body.len());
    let mut pos = 0usize;
    loop {
        let line = read_line(body, &mut pos)?;
        let (size_part, ext) = match line.iter().position(|&b| b == b';') {
            Some(i) => (&line[..i], Some(&line[i + 1..])),
            None => (line, None),
        };
        let size = parse_hex_size(trim(size_part)).ok_or_else(|| malformed("bad chunk size"))?;
        let end = pos.checked_add(size).ok_or_else(incomplete)?;
        let data = body.get(pos..end).ok_or_else(incomplete)?;
        pos = end;
        if size > 0 {
            match body.get(pos..pos + 2) {
                Some(b"\r\n") => pos += 2,
                Some(_) => return Err(malformed("chunk data not followed by CRLF")),
                None => return Err(incomplete()),
            }
        }
        if let Some(chain) = chain.as_mut() {
            let sig = ext
                .and_then(|e| {
                    e.split(|&b| b == b';').find_map(|kv| {
                        let kv = trim(kv);
                        kv.strip_prefix(b"chunk-signature=")
                    })
                })
                .ok_or_else(|| {
                    AuthError::new(
                        AuthErrorCode::IncompleteSignature,
                        "The chunk is missing its chunk-signature",
                    )
                })?;
            let expected = chain.chunk_signature(data);
            if !ct_eq(expected.as_bytes(), trim(sig)) {
                return Err(AuthError::signature_mismatch());
            }
            chain.prev = expected;
        }
        if size == 0 {
            break;
        }
        out.extend_from_slice(data);
    }

    // Trailers.
    let mut trailers: Vec<(String, String)> = Vec::new();
    let mut canonical = Vec::new();
    let mut trailer_sig: Option<Vec<u8>> = None;
    while pos < body.len() {
        let line = read_line(body, &mut pos)?;
        if line.is_empty() {
            break;
        }
        if trailer_sig.is_some() {
            return Err(malformed("trailer after x-amz-trailer-signature"));
        }
        let i = line
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(|| malformed("trailer without ':'"))?;
        let name = std::str::from_utf8(trim(&line[..i]))
            .map_err(|_| malformed("trailer name is not UTF-8"))?
            .to_ascii_lowercase();
        let value = std::str::from_utf8(trim(&line[i + 1..]))
            .map_err(|_| malformed("trailer value is not UTF-8"))?;
        if name.is_empty() {
            return Err(malformed("empty trailer name"));
        }
        if name == "x-amz-trailer-signature" {
            trailer_sig = Some(value.as_bytes().to_vec());
            continue;
        }
        if trailers.len() >= MAX_TRAILERS {
            return Err(malformed("too many trailers"));
        }
        canonical.extend_from_slice(name.as_bytes());
        canonical.push(b':');
        canonical.extend_from_slice(value.as_bytes());
        canonical.push(b'\n');
        trailers.push((name, value.to_owned()));
    }
    if body[pos.min(body.len())..]
        .iter()
        .any(|&b| b != b'\r' && b != b'\n')
    {
        return Err(malformed("data after the final chunk"));
    }
    if let Some(chain) = chain.as_ref() {
        match (&trailer_sig, trailers.is_empty()) {
            (None, true) => {}
            (None, false) => {
                return Err(AuthError::new(
                    AuthErrorCode::IncompleteSignature,
                    "The trailing headers are missing x-amz-trailer-signature",
                ));
            }
            (Some(sig), _) => {
                let expected = chain.trailer_signature(&canonical);
                if !ct_eq(expected.as_bytes(), sig) {
                    return Err(AuthError::signature_mismatch());
                }
            }
        }
    }
    Ok(DecodedBody {
        data: Bytes::from(out),
        trailers,
    })
}

/// Decode a request body according to its `x-amz-content-sha256`:
///
/// - `STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`: signed `aws-chunked`; needs
///   `auth` and `verified` (else `IncompleteSignature`).
/// - `STREAMING-UNSIGNED-PAYLOAD-TRAILER`: unsigned `aws-chunked`.
/// - anything else: the body as is, no trailers.
///
/// For chunked bodies the decoded length must equal `x-amz-decoded-content-length`
/// (missing: `InvalidRequest`; different: `IncompleteBody`).
pub fn decode_body(
    parts: &http::request::Parts,
    body: Bytes,
    auth: Option<&ParsedAuth>,
    verified: Option<&Verified>,
) -> Result<DecodedBody, AuthError> {
    let mode = match declared_payload_hash(parts) {
        Some(STREAMING_PAYLOAD | STREAMING_PAYLOAD_TRAILER) => match (auth, verified) {
            (Some(a), Some(v)) => ChunkMode::signed(v, a),
            _ => {
                return Err(AuthError::new(
                    AuthErrorCode::IncompleteSignature,
                    "A signed aws-chunked body needs a verified request",
                ));
            }
        },
        Some(STREAMING_UNSIGNED_PAYLOAD_TRAILER) => ChunkMode::Unsigned,
        _ => {
            return Ok(DecodedBody {
                data: body,
                trailers: Vec::new(),
            });
        }
    };
    let declared = parts
        .headers
        .get("x-amz-decoded-content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .ok_or_else(|| {
            AuthError::new(
                AuthErrorCode::InvalidRequest,
                "Missing required header for this request: x-amz-decoded-content-length",
            )
        })?;
    let decoded = decode_aws_chunked(&body, mode)?;
    if decoded.data.len() as u64 != declared {
        return Err(AuthError::new(
            AuthErrorCode::IncompleteBody,
            "You did not provide the number of bytes specified by the Content-Length HTTP header",
        ));
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsigned_with_trailer() {
        let body = b"5\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n";
        let d = decode_aws_chunked(body, ChunkMode::Unsigned).expect("ok");
        assert_eq!(&d.data[..], b"hello world");
        assert_eq!(d.trailer("X-Amz-Checksum-Crc32"), Some("DUoRhQ=="));
    }

    #[test]
    fn unsigned_framing_errors() {
        for bad in [
            &b""[..],
            b"5\r\nhel",
            b"5\r\nhelloXX0\r\n\r\n",
            b"zz\r\n",
            b"5\r\nhello\r\n0\r\nnocolon\r\n\r\n",
            b"0\r\n\r\ngarbage",
            b"ffffffffffffffffff\r\n",
            b"ffffffffffffffff\r\n",
        ] {
            assert!(
                decode_aws_chunked(bad, ChunkMode::Unsigned).is_err(),
                "{bad:?}"
            );
        }
        // Lenient: no final CRLF.
        let d = decode_aws_chunked(b"1\r\na\r\n0\r\n", ChunkMode::Unsigned).expect("ok");
        assert_eq!(&d.data[..], b"a");
    }
}
