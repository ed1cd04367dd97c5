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
    let window = rest.get(..MAX_LINE + 2).unwrap_or(rest);
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(i) => {
            let line = window.get(..i).ok_or_else(incomplete)?;
            *pos += i + 2;
            Ok(line)
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

struct Chain {
    key: [u8; 32],
    prefix_tail: String,
    prev: String,
}

impl Chain {
    fn chunk_signature(&self, data: &[u8]) -> String {
        self.chunk_signature_hashed(&hex::encode(sha256(data)))
    }

    /// A chunk's signature from the hex SHA-256 of its data.
    fn chunk_signature_hashed(&self, data_hash: &str) -> String {
        let mut sts = String::with_capacity(300);
        sts.push_str("AWS4-HMAC-SHA256-PAYLOAD\n");
        sts.push_str(&self.prefix_tail);
        sts.push_str(&self.prev);
        sts.push('\n');
        sts.push_str(EMPTY_SHA256);
        sts.push('\n');
        sts.push_str(data_hash);
        hex::encode(hmac_sha256(&self.key, sts.as_bytes()))
    }

    fn trailer_signature(&self, canonical_trailers: &[u8]) -> String {
        let mut sts = String::with_capacity(250);
        sts.push_str("AWS4-HMAC-SHA256-TRAILER\n");
        sts.push_str(&self.prefix_tail);
        sts.push_str(&self.prev);
        sts.push('\n');
        sts.push_str(&hex::encode(sha256(canonical_trailers)));
        hex::encode(hmac_sha256(&self.key, sts.as_bytes()))
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
        key: *signing_key,
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
        key: *signing_key,
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
            key: *signing_key,
            prefix_tail: format!("{}\n{}\n", format_amz_date(*timestamp), scope),
            prev: seed_signature.clone(),
        }),
        ChunkMode::Unsigned => None,
    };

    let mut out = Vec::with_capacity(body.len());
    let mut pos = 0usize;
    loop {
        let line = read_line(body, &mut pos)?;
        let split = line.iter().position(|&b| b == b';');
        let (size_part, ext) = match split.and_then(|i| line.split_at_checked(i)) {
            Some((size, semi_ext)) => (size, semi_ext.get(1..)),
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
        let colon = line.iter().position(|&b| b == b':');
        let Some((raw_name, [_, raw_value @ ..])) = colon.and_then(|i| line.split_at_checked(i))
        else {
            return Err(malformed("trailer without ':'"));
        };
        let name = std::str::from_utf8(trim(raw_name))
            .map_err(|_| malformed("trailer name is not UTF-8"))?
            .to_ascii_lowercase();
        let value = std::str::from_utf8(trim(raw_value))
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
    if body
        .get(pos..)
        .unwrap_or_default()
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

/// Where the incremental decoder is in the wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Reading a chunk header line.
    Header,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// After a chunk's data: the CRLF (bytes of it seen so far).
    DataEnd(u8),
    /// Reading trailer lines.
    Trailers,
    /// After the blank line: only CR/LF may follow.
    Done,
}

/// An `aws-chunked` decoder fed the body as it arrives, in pieces of any
/// size: memory stays bounded by one header line (no chunk is buffered),
/// and each chunk's signature is checked as soon as its last byte is in.
/// A caller must discard what it was given once [`ChunkDecoder::feed`]
/// fails: the data of a chunk is handed over before its signature is
/// checked.
pub struct ChunkDecoder {
    chain: Option<Chain>,
    stage: Stage,
    line: Vec<u8>,
    /// SHA-256 of the current chunk's data (signed mode).
    hasher: sha2::Sha256,
    /// The current chunk's `chunk-signature` (signed mode).
    signature: Vec<u8>,
    trailers: Vec<(String, String)>,
    canonical: Vec<u8>,
    trailer_sig: Option<Vec<u8>>,
    decoded: u64,
}

impl std::fmt::Debug for ChunkDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkDecoder")
            .field("stage", &self.stage)
            .field("decoded", &self.decoded)
            .finish_non_exhaustive()
    }
}

impl ChunkDecoder {
    /// A decoder at the start of a body.
    pub fn new(mode: ChunkMode) -> Self {
        use sha2::Digest;
        let chain = match mode {
            ChunkMode::Signed {
                signing_key,
                seed_signature,
                timestamp,
                scope,
            } => Some(Chain {
                key: signing_key,
                prefix_tail: format!("{}\n{}\n", format_amz_date(timestamp), scope),
                prev: seed_signature,
            }),
            ChunkMode::Unsigned => None,
        };
        Self {
            chain,
            stage: Stage::Header,
            line: Vec::new(),
            hasher: sha2::Sha256::new(),
            signature: Vec::new(),
            trailers: Vec::new(),
            canonical: Vec::new(),
            trailer_sig: None,
            decoded: 0,
        }
    }

    /// Payload bytes decoded so far.
    pub fn decoded_len(&self) -> u64 {
        self.decoded
    }

    /// Decode the next piece of the body, appending payload bytes to `out`.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), AuthError> {
        while !input.is_empty() {
            input = match self.stage {
                Stage::Header | Stage::Trailers => match self.take_line(input)? {
                    Some(rest) => {
                        let line = std::mem::take(&mut self.line);
                        if self.stage == Stage::Header {
                            self.header(&line)?;
                        } else {
                            self.trailer(&line)?;
                        }
                        rest
                    }
                    None => &[],
                },
                Stage::Data(left) => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(input.len());
                    let (data, rest) = input.split_at(n);
                    if self.chain.is_some() {
                        sha2::Digest::update(&mut self.hasher, data);
                    }
                    out.extend_from_slice(data);
                    self.decoded += n as u64;
                    let left = left - n as u64;
                    self.stage = if left == 0 {
                        Stage::DataEnd(0)
                    } else {
                        Stage::Data(left)
                    };
                    rest
                }
                Stage::DataEnd(seen) => {
                    let (&b, rest) = input.split_first().ok_or_else(incomplete)?;
                    if seen == 1 {
                        if self.line.first() != Some(&b'\r') || b != b'\n' {
                            return Err(malformed("chunk data not followed by CRLF"));
                        }
                        self.line.clear();
                        self.end_chunk()?;
                        self.stage = Stage::Header;
                    } else {
                        self.line.push(b);
                        self.stage = Stage::DataEnd(1);
                    }
                    rest
                }
                Stage::Done => {
                    if input.iter().any(|&b| b != b'\r' && b != b'\n') {
                        return Err(malformed("data after the final chunk"));
                    }
                    &[]
                }
            };
        }
        Ok(())
    }

    /// The end of the body: the trailers, if the body was complete.
    pub fn finish(self) -> Result<Vec<(String, String)>, AuthError> {
        match self.stage {
            Stage::Trailers if !self.line.is_empty() => {
                return Err(if self.line.len() > MAX_LINE {
                    malformed("line too long")
                } else {
                    incomplete()
                });
            }
            Stage::Trailers | Stage::Done => {}
            Stage::Header if self.line.len() > MAX_LINE => {
                return Err(malformed("line too long"));
            }
            _ => return Err(incomplete()),
        }
        if let Some(chain) = &self.chain {
            match (&self.trailer_sig, self.trailers.is_empty()) {
                (None, true) => {}
                (None, false) => {
                    return Err(AuthError::new(
                        AuthErrorCode::IncompleteSignature,
                        "The trailing headers are missing x-amz-trailer-signature",
                    ));
                }
                (Some(sig), _) => {
                    let expected = chain.trailer_signature(&self.canonical);
                    if !ct_eq(expected.as_bytes(), sig) {
                        return Err(AuthError::signature_mismatch());
                    }
                }
            }
        }
        Ok(self.trailers)
    }

    /// Accumulate a line; `Some(rest)` once its CRLF is in (the line, without
    /// CRLF, is left in `self.line`).
    fn take_line<'a>(&mut self, input: &'a [u8]) -> Result<Option<&'a [u8]>, AuthError> {
        // A CR at the end of the previous piece may pair with an LF here.
        if self.line.last() == Some(&b'\r') && input.first() == Some(&b'\n') {
            self.line.pop();
            return Ok(input.get(1..));
        }
        match input.windows(2).position(|w| w == b"\r\n") {
            Some(i) if self.line.len() + i <= MAX_LINE => {
                let (line, rest) = input.split_at(i);
                self.line.extend_from_slice(line);
                Ok(rest.get(2..))
            }
            Some(_) => Err(malformed("line too long")),
            None => {
                self.line.extend_from_slice(input);
                if self.line.len() > MAX_LINE + 1 {
                    return Err(malformed("line too long"));
                }
                Ok(None)
            }
        }
    }

    /// A chunk header: its size and signature.
    fn header(&mut self, line: &[u8]) -> Result<(), AuthError> {
        let (size_part, ext) = match line.iter().position(|&b| b == b';') {
            Some(i) => {
                let (s, e) = line.split_at(i);
                (s, e.get(1..))
            }
            None => (line, None),
        };
        let size = parse_hex_size(trim(size_part)).ok_or_else(|| malformed("bad chunk size"))?;
        if self.chain.is_some() {
            self.signature = chunk_signature_ext(ext)?.to_vec();
        }
        if size == 0 {
            self.end_chunk()?;
            self.stage = Stage::Trailers;
        } else {
            self.stage = Stage::Data(size as u64);
        }
        Ok(())
    }

    /// Check the finished chunk's signature and chain it.
    fn end_chunk(&mut self) -> Result<(), AuthError> {
        use sha2::Digest;
        let Some(chain) = self.chain.as_mut() else {
            return Ok(());
        };
        let hash = std::mem::replace(&mut self.hasher, sha2::Sha256::new()).finalize();
        let expected = chain.chunk_signature_hashed(&hex::encode(hash));
        if !ct_eq(expected.as_bytes(), &self.signature) {
            return Err(AuthError::signature_mismatch());
        }
        chain.prev = expected;
        Ok(())
    }

    /// One trailer line (an empty line ends the body).
    fn trailer(&mut self, line: &[u8]) -> Result<(), AuthError> {
        if line.is_empty() {
            self.stage = Stage::Done;
            return Ok(());
        }
        if self.trailer_sig.is_some() {
            return Err(malformed("trailer after x-amz-trailer-signature"));
        }
        let (name, value) = parse_trailer(line)?;
        if name == "x-amz-trailer-signature" {
            self.trailer_sig = Some(value.into_bytes());
            return Ok(());
        }
        if self.trailers.len() >= MAX_TRAILERS {
            return Err(malformed("too many trailers"));
        }
        self.canonical.extend_from_slice(name.as_bytes());
        self.canonical.push(b':');
        self.canonical.extend_from_slice(value.as_bytes());
        self.canonical.push(b'\n');
        self.trailers.push((name, value));
        Ok(())
    }
}

/// The `chunk-signature=` value among a chunk header's extensions.
fn chunk_signature_ext(ext: Option<&[u8]>) -> Result<&[u8], AuthError> {
    ext.and_then(|e| {
        e.split(|&b| b == b';')
            .find_map(|kv| trim(kv).strip_prefix(b"chunk-signature="))
    })
    .map(trim)
    .ok_or_else(|| {
        AuthError::new(
            AuthErrorCode::IncompleteSignature,
            "The chunk is missing its chunk-signature",
        )
    })
}

/// `name:value` (name lower-cased, both trimmed).
fn parse_trailer(line: &[u8]) -> Result<(String, String), AuthError> {
    let i = line
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(|| malformed("trailer without ':'"))?;
    let (name, value) = line.split_at(i);
    let name = std::str::from_utf8(trim(name))
        .map_err(|_| malformed("trailer name is not UTF-8"))?
        .to_ascii_lowercase();
    let value = std::str::from_utf8(trim(value.get(1..).unwrap_or(&[])))
        .map_err(|_| malformed("trailer value is not UTF-8"))?;
    if name.is_empty() {
        return Err(malformed("empty trailer name"));
    }
    Ok((name, value.to_owned()))
}

/// How a request's body is framed, from its `x-amz-content-sha256`:
/// `None` for a plain body, else the aws-chunked mode and the declared
/// decoded length (`x-amz-decoded-content-length`, required).
pub fn body_framing(
    parts: &http::request::Parts,
    auth: Option<&ParsedAuth>,
    verified: Option<&Verified>,
) -> Result<Option<(ChunkMode, u64)>, AuthError> {
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
        _ => return Ok(None),
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
    Ok(Some((mode, declared)))
}

/// The error for a decoded length other than the declared one.
pub fn length_mismatch() -> AuthError {
    AuthError::new(
        AuthErrorCode::IncompleteBody,
        "You did not provide the number of bytes specified by the Content-Length HTTP header",
    )
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
    let Some((mode, declared)) = body_framing(parts, auth, verified)? else {
        return Ok(DecodedBody {
            data: body,
            trailers: Vec::new(),
        });
    };
    let decoded = decode_aws_chunked(&body, mode)?;
    if decoded.data.len() as u64 != declared {
        return Err(length_mismatch());
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

    fn scope() -> Scope {
        Scope {
            date: "20250101".into(),
            region: "us-east-1".into(),
            service: "s3".into(),
        }
    }

    fn ts() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_735_689_600).expect("time")
    }

    const KEY: [u8; 32] = [7; 32];
    const SEED: &str = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";

    fn signed_mode() -> ChunkMode {
        ChunkMode::Signed {
            signing_key: KEY,
            seed_signature: SEED.into(),
            timestamp: ts(),
            scope: scope(),
        }
    }

    /// Frame `data` in chunks of `sizes` (cycled), signed or not, with trailers.
    fn encode(data: &[u8], sizes: &[usize], signed: bool, trailers: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut prev = SEED.to_string();
        let mut pieces: Vec<&[u8]> = Vec::new();
        let mut rest = data;
        let mut i = 0;
        while !rest.is_empty() {
            let n = sizes[i % sizes.len()].clamp(1, rest.len());
            let (a, b) = rest.split_at(n);
            pieces.push(a);
            rest = b;
            i += 1;
        }
        pieces.push(&[]);
        for p in pieces {
            out.extend_from_slice(format!("{:x}", p.len()).as_bytes());
            if signed {
                prev = chunk_signature(&KEY, ts(), &scope(), &prev, p);
                out.extend_from_slice(format!(";chunk-signature={prev}").as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(p);
            if !p.is_empty() {
                out.extend_from_slice(b"\r\n");
            }
        }
        for (k, v) in trailers {
            out.extend_from_slice(format!("{k}:{v}\r\n").as_bytes());
        }
        if signed && !trailers.is_empty() {
            let sig = trailer_signature(&KEY, ts(), &scope(), &prev, trailers);
            out.extend_from_slice(format!("x-amz-trailer-signature:{sig}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    /// Feed `body` cut at `cuts` (positions, any order) to the streaming decoder.
    fn stream(body: &[u8], cuts: &[usize], mode: ChunkMode) -> Result<DecodedBody, AuthError> {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
        points.push(0);
        points.push(body.len());
        points.sort_unstable();
        let mut d = ChunkDecoder::new(mode);
        let mut out = Vec::new();
        for w in points.windows(2) {
            d.feed(&body[w[0]..w[1]], &mut out)?;
        }
        assert_eq!(d.decoded_len(), out.len() as u64);
        let trailers = d.finish()?;
        Ok(DecodedBody {
            data: Bytes::from(out),
            trailers,
        })
    }

    #[test]
    fn streaming_signed_with_trailer() {
        let data: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        let body = encode(
            &data,
            &[65_536],
            true,
            &[("x-amz-checksum-crc32", "AAAAAA==")],
        );
        let d = stream(&body, &[1, 7, 65_600, 65_601], signed_mode()).expect("ok");
        assert_eq!(&d.data[..], &data[..]);
        assert_eq!(d.trailer("x-amz-checksum-crc32"), Some("AAAAAA=="));
    }

    #[test]
    fn streaming_refuses_tampered_chunks() {
        let data = vec![b'a'; 5000];
        let body = encode(&data, &[1024], true, &[]);
        // A flipped payload byte, then a flipped signature digit.
        let mut bad = body.clone();
        let at = bad.iter().position(|&b| b == b'a').expect("data");
        bad[at + 1500] = b'b';
        let e = stream(&bad, &[3000], signed_mode()).expect_err("tampered data");
        assert_eq!(e.code, AuthErrorCode::SignatureDoesNotMatch);
        let mut bad = body.clone();
        let sig = bad
            .windows(16)
            .position(|w| w == b"chunk-signature=")
            .expect("sig")
            + 16;
        bad[sig] = if bad[sig] == b'0' { b'1' } else { b'0' };
        let e = stream(&bad, &[], signed_mode()).expect_err("tampered signature");
        assert_eq!(e.code, AuthErrorCode::SignatureDoesNotMatch);
        // The first chunk is refused before the rest arrives.
        let mut d = ChunkDecoder::new(signed_mode());
        let first_end = bad
            .windows(2)
            .skip(sig)
            .position(|w| w == b"\r\n")
            .expect("crlf")
            + sig;
        let mut out = Vec::new();
        assert!(d.feed(&bad[..first_end + 2 + 1024 + 2], &mut out).is_err());
        // Unsigned: a wrong trailer signature is not checked, but a signed
        // body with a trailer and no trailer signature is refused.
        let mut no_sig = encode(b"abc", &[3], true, &[]);
        no_sig.truncate(no_sig.len() - 2);
        no_sig.extend_from_slice(b"x-amz-checksum-crc32:AAAAAA==\r\n\r\n");
        let e = stream(&no_sig, &[], signed_mode()).expect_err("missing trailer signature");
        assert_eq!(e.code, AuthErrorCode::IncompleteSignature);
    }

    #[test]
    fn long_lines_are_refused_at_any_split() {
        let mut body = vec![b'1'; MAX_LINE + 10];
        body.extend_from_slice(b"\r\n");
        for cut in [0, 1, MAX_LINE, MAX_LINE + 1, MAX_LINE + 2] {
            assert!(stream(&body, &[cut], ChunkMode::Unsigned).is_err());
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn same(a: &Result<DecodedBody, AuthError>, b: &Result<DecodedBody, AuthError>) -> bool {
            match (a, b) {
                (Ok(x), Ok(y)) => x == y,
                (Err(_), Err(_)) => true,
                _ => false,
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]

            /// Split points anywhere give the buffered decoder's result.
            #[test]
            fn split_anywhere_matches_buffered(
                data in proptest::collection::vec(any::<u8>(), 0..3000),
                sizes in proptest::collection::vec(1usize..700, 1..5),
                cuts in proptest::collection::vec(any::<usize>(), 0..12),
                signed in any::<bool>(),
                trailer in any::<bool>(),
            ) {
                let trailers: &[(&str, &str)] =
                    if trailer { &[("x-amz-checksum-crc32c", "sOO8/Q==")] } else { &[] };
                let body = encode(&data, &sizes, signed, trailers);
                let mode = if signed { signed_mode() } else { ChunkMode::Unsigned };
                let buffered = decode_aws_chunked(&body, mode.clone());
                let streamed = stream(&body, &cuts, mode);
                prop_assert!(buffered.is_ok());
                prop_assert!(same(&buffered, &streamed), "{buffered:?} vs {streamed:?}");
                prop_assert_eq!(&streamed.expect("ok").data[..], &data[..]);
            }

            /// Any damage to a signed body is refused, however it is split.
            #[test]
            fn damage_is_refused(
                data in proptest::collection::vec(any::<u8>(), 1..2000),
                sizes in proptest::collection::vec(1usize..500, 1..4),
                at in any::<usize>(),
                flip in 1u8..=255,
                cuts in proptest::collection::vec(any::<usize>(), 0..8),
            ) {
                let mut body = encode(&data, &sizes, true, &[("x-amz-checksum-crc32", "AAAAAA==")]);
                let i = at % body.len();
                body[i] ^= flip;
                let buffered = decode_aws_chunked(&body, signed_mode());
                let streamed = stream(&body, &cuts, signed_mode());
                prop_assert!(same(&buffered, &streamed), "{buffered:?} vs {streamed:?}");
                // Only damage to the framing's slack (a trailing CR/LF) may pass.
                if let Ok(d) = streamed {
                    prop_assert_eq!(&d.data[..], &data[..]);
                }
            }

            /// Arbitrary bytes: both decoders agree on success and output.
            #[test]
            fn garbage_agrees(
                body in proptest::collection::vec(
                    prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'0'), Just(b'5'), Just(b'a'), Just(b':'), Just(b';'), any::<u8>()],
                    0..200),
                cuts in proptest::collection::vec(any::<usize>(), 0..8),
            ) {
                let buffered = decode_aws_chunked(&body, ChunkMode::Unsigned);
                let streamed = stream(&body, &cuts, ChunkMode::Unsigned);
                prop_assert!(same(&buffered, &streamed), "{buffered:?} vs {streamed:?}");
            }
        }
    }
}
