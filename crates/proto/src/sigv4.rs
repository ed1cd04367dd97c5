//! AWS Signature Version 4: parsing and verification.
//!
//! The flow on the server is:
//!
//! 1. [`parse_auth`] — what does the request claim (access key, scope, signature, time)?
//!    `Ok(None)` means anonymous.
//! 2. look up the secret for `access_key_id` (and check `session_token`), then
//! 3. [`payload_hash`] / [`payload_hash_for`] — the payload hash the canonical request uses
//!    (checks a declared hex `x-amz-content-sha256` against the body), then
//! 4. [`verify`] — clock / expiry checks and a constant-time signature comparison.
//!    It returns the signing key and seed signature that [`crate::chunked`] needs.
//!
//! Canonicalisation follows AWS exactly: for S3 the path is used as sent
//! (no normalisation, no second encoding); for every other service the path has
//! its dot segments removed and is percent-encoded again (so `%20` signs as
//! `%2520`). Query parameters are decoded, re-encoded per RFC 3986 and sorted;
//! header values are trimmed with runs of spaces collapsed, repeated headers
//! joined with `,`.

use std::borrow::Cow;
use std::fmt;

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

use crate::crypto::{EMPTY_SHA256, hmac_sha256, sha256, sha256_hex};
use crate::secret::{SecretKey, ct_eq};

/// The only algorithm accepted.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// `x-amz-content-sha256` / canonical payload value for an unsigned body.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// Signed `aws-chunked` body.
pub const STREAMING_PAYLOAD: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
/// Signed `aws-chunked` body with signed trailers.
pub const STREAMING_PAYLOAD_TRAILER: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER";
/// Unsigned `aws-chunked` body with (unsigned) trailers.
pub const STREAMING_UNSIGNED_PAYLOAD_TRAILER: &str = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";

/// Allowed difference between the request time and our clock for header auth.
pub const MAX_SKEW_SECS: i64 = 15 * 60;
/// Longest validity of a presigned URL (7 days).
pub const MAX_PRESIGN_EXPIRES_SECS: u64 = 604_800;

const SIGNATURE_MISMATCH_MSG: &str = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";

// ---------------------------------------------------------------------------
// Errors

/// AWS error codes produced while authenticating a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthErrorCode {
    /// The signature does not match (also: "Signature expired" for IAM/STS).
    SignatureDoesNotMatch,
    /// The Authorization header lacks a part, or no usable date.
    IncompleteSignature,
    /// No authentication where it is required (the server decides when).
    MissingAuthenticationToken,
    /// Unknown access key id (the server decides when).
    InvalidClientTokenId,
    /// S3: header-auth request time more than 15 minutes away from ours.
    RequestTimeTooSkewed,
    /// EC2: header-auth request time more than 15 minutes away from ours.
    RequestExpired,
    /// Presigned URL expired or not yet valid.
    AccessDenied,
    /// Declared `x-amz-content-sha256` does not match the body.
    XAmzContentSHA256Mismatch,
    /// SigV2, SigV4a, two auth mechanisms, missing streaming headers.
    InvalidRequest,
    /// A malformed value (e.g. `x-amz-content-sha256` that is no hash).
    InvalidArgument,
    /// The Authorization header does not parse.
    AuthorizationHeaderMalformed,
    /// Presigned query parameters missing or malformed.
    AuthorizationQueryParametersError,
    /// Decoded `aws-chunked` length differs from `x-amz-decoded-content-length`,
    /// or the body ended early.
    IncompleteBody,
}

impl AuthErrorCode {
    /// The code as AWS spells it on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SignatureDoesNotMatch => "SignatureDoesNotMatch",
            Self::IncompleteSignature => "IncompleteSignature",
            Self::MissingAuthenticationToken => "MissingAuthenticationToken",
            Self::InvalidClientTokenId => "InvalidClientTokenId",
            Self::RequestTimeTooSkewed => "RequestTimeTooSkewed",
            Self::RequestExpired => "RequestExpired",
            Self::AccessDenied => "AccessDenied",
            Self::XAmzContentSHA256Mismatch => "XAmzContentSHA256Mismatch",
            Self::InvalidRequest => "InvalidRequest",
            Self::InvalidArgument => "InvalidArgument",
            Self::AuthorizationHeaderMalformed => "AuthorizationHeaderMalformed",
            Self::AuthorizationQueryParametersError => "AuthorizationQueryParametersError",
            Self::IncompleteBody => "IncompleteBody",
        }
    }
}

// The status, fault and per-protocol name of each code live in the one
// error table, `keycard_services::ServiceError::wire`.

impl fmt::Display for AuthErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authentication failure: the AWS code and AWS's message for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AuthError {
    /// AWS error code.
    pub code: AuthErrorCode,
    /// Message in AWS's wording.
    pub message: String,
}

impl AuthError {
    /// Build an error.
    pub fn new(code: AuthErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// `SignatureDoesNotMatch` with AWS's message.
    pub fn signature_mismatch() -> Self {
        Self::new(AuthErrorCode::SignatureDoesNotMatch, SIGNATURE_MISMATCH_MSG)
    }

    /// `InvalidClientTokenId` with AWS's message (for the server's key lookup).
    pub fn invalid_client_token_id() -> Self {
        Self::new(
            AuthErrorCode::InvalidClientTokenId,
            "The security token included in the request is invalid.",
        )
    }

    /// `MissingAuthenticationToken` with AWS's message (IAM/STS on anonymous calls).
    pub fn missing_authentication_token() -> Self {
        Self::new(
            AuthErrorCode::MissingAuthenticationToken,
            "Request is missing Authentication Token",
        )
    }
}

// ---------------------------------------------------------------------------
// Parsed form

/// The credential scope: `date/region/service/aws4_request`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    /// `YYYYMMDD`.
    pub date: String,
    /// Region, e.g. `us-east-1`.
    pub region: String,
    /// Service, e.g. `s3`, `iam`, `sts`, `ec2`.
    pub service: String,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/aws4_request",
            self.date, self.region, self.service
        )
    }
}

impl Scope {
    /// Whether S3 canonicalisation rules apply (`s3`, `s3express`, `s3-object-lambda`).
    pub fn is_s3(&self) -> bool {
        is_s3_service(&self.service)
    }
}

fn is_s3_service(service: &str) -> bool {
    service == "s3" || service.starts_with("s3-") || service == "s3express"
}

/// Where the signature came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    /// `Authorization: AWS4-HMAC-SHA256 …` header.
    Header,
    /// Presigned URL (`X-Amz-Signature` etc. in the query string).
    Presigned {
        /// `X-Amz-Expires` (for non-S3 services without one: 900).
        expires_secs: u64,
    },
}

/// What a SigV4 request claims, before verification.
#[derive(Clone, PartialEq, Eq)]
pub struct ParsedAuth {
    /// The access key id from the credential.
    pub access_key_id: String,
    /// The credential scope.
    pub scope: Scope,
    /// Signed header names, lower-cased, in the order the client listed them.
    pub signed_headers: Vec<String>,
    /// The hex signature the client sent.
    pub signature: String,
    /// `x-amz-date` header (or `Date`), or `X-Amz-Date` query parameter.
    pub timestamp: OffsetDateTime,
    /// `x-amz-security-token` header or `X-Amz-Security-Token` query parameter.
    pub session_token: Option<String>,
    /// Header or presigned.
    pub kind: AuthKind,
}

/// The session token is a credential: `Debug` shows only whether there is one.
impl fmt::Debug for ParsedAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedAuth")
            .field("access_key_id", &self.access_key_id)
            .field("scope", &self.scope)
            .field("signed_headers", &self.signed_headers)
            .field("signature", &self.signature)
            .field("timestamp", &self.timestamp)
            .field("session_token", &self.session_token.as_ref().map(|_| "***"))
            .field("kind", &self.kind)
            .finish()
    }
}

impl ParsedAuth {
    /// Whether this is a presigned URL.
    pub fn is_presigned(&self) -> bool {
        matches!(self.kind, AuthKind::Presigned { .. })
    }

    /// The timestamp as `YYYYMMDDTHHMMSSZ`.
    pub fn amz_date(&self) -> String {
        format_amz_date(self.timestamp)
    }
}

/// The result of a successful verification: what chunk verification needs.
#[derive(Clone)]
pub struct Verified {
    /// The derived signing key (secret-equivalent for its scope: don't log it).
    pub signing_key: [u8; 32],
    /// The request's signature, the seed of the chunk signature chain.
    pub seed_signature: String,
}

impl fmt::Debug for Verified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verified")
            .field("signing_key", &"***")
            .field("seed_signature", &self.seed_signature)
            .finish()
    }
}

// ---------------------------------------------------------------------------
// Parsing

fn header_str<'a>(parts: &'a http::request::Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name).and_then(|v| v.to_str().ok())
}

/// Iterate over the raw query pairs, form-decoded (`+` is a space).
fn query_pairs(query: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    query.split('&').filter(|s| !s.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode_lossy(k, true), decode_lossy(v, true))
    })
}

#[derive(Default)]
struct PresignParams<'a> {
    algorithm: Option<Cow<'a, str>>,
    credential: Option<Cow<'a, str>>,
    date: Option<Cow<'a, str>>,
    expires: Option<Cow<'a, str>>,
    signed_headers: Option<Cow<'a, str>>,
    signature: Option<Cow<'a, str>>,
    token: Option<Cow<'a, str>>,
    content_sha256: Option<Cow<'a, str>>,
    sigv2: bool,
}

fn presign_params(query: &str) -> PresignParams<'_> {
    let mut p = PresignParams::default();
    let mut v2_key = false;
    let mut v2_sig = false;
    for (k, v) in query_pairs(query) {
        match &*k {
            "X-Amz-Algorithm" => p.algorithm = Some(v),
            "X-Amz-Credential" => p.credential = Some(v),
            "X-Amz-Date" => p.date = Some(v),
            "X-Amz-Expires" => p.expires = Some(v),
            "X-Amz-SignedHeaders" => p.signed_headers = Some(v),
            "X-Amz-Signature" => p.signature = Some(v),
            "X-Amz-Security-Token" => p.token = Some(v),
            "X-Amz-Content-Sha256" => p.content_sha256 = Some(v),
            "AWSAccessKeyId" => v2_key = true,
            "Signature" => v2_sig = true,
            _ => {}
        }
    }
    p.sigv2 = v2_key && v2_sig;
    p
}

fn sigv2_error() -> AuthError {
    AuthError::new(
        AuthErrorCode::InvalidRequest,
        "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.",
    )
}

fn credential_malformed(presigned: bool, detail: &str) -> AuthError {
    if presigned {
        AuthError::new(
            AuthErrorCode::AuthorizationQueryParametersError,
            format!("Error parsing the X-Amz-Credential parameter; {detail}"),
        )
    } else {
        AuthError::new(
            AuthErrorCode::AuthorizationHeaderMalformed,
            format!("The authorization header is malformed; {detail}"),
        )
    }
}

fn parse_credential(cred: &str, presigned: bool) -> Result<(String, Scope), AuthError> {
    let malformed = || {
        credential_malformed(
            presigned,
            "the Credential is mal-formed; expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".",
        )
    };
    let mut it = cred.rsplitn(5, '/');
    let (Some(term), Some(service), Some(region), Some(date), Some(akid)) =
        (it.next(), it.next(), it.next(), it.next(), it.next())
    else {
        return Err(malformed());
    };
    if akid.is_empty() || region.is_empty() || service.is_empty() {
        return Err(malformed());
    }
    if term != "aws4_request" {
        return Err(credential_malformed(
            presigned,
            &format!("incorrect terminal \"{term}\". This endpoint uses \"aws4_request\"."),
        ));
    }
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(credential_malformed(
            presigned,
            &format!(
                "incorrect date format \"{date}\". This date in the credential must be in the format \"yyyyMMdd\"."
            ),
        ));
    }
    Ok((
        akid.to_owned(),
        Scope {
            date: date.to_owned(),
            region: region.to_owned(),
            service: service.to_owned(),
        },
    ))
}

fn parse_signed_headers(s: &str) -> Vec<String> {
    s.split(';')
        .filter(|h| !h.is_empty())
        .map(|h| h.trim().to_ascii_lowercase())
        .collect()
}

/// Parse the authentication a request carries.
///
/// `Ok(None)` when the request carries no authentication at all (anonymous).
/// Errors for SigV2 (`AWS AKID:sig` header, `AWSAccessKeyId`+`Signature` query),
/// SigV4a, other schemes, a malformed `Authorization` header or presigned query,
/// and missing parts.
pub fn parse_auth(parts: &http::request::Parts) -> Result<Option<ParsedAuth>, AuthError> {
    let query = parts.uri.query().unwrap_or("");
    let presign = if query.is_empty() {
        PresignParams::default()
    } else {
        presign_params(query)
    };
    if let Some(authz) = parts.headers.get(http::header::AUTHORIZATION) {
        if presign.signature.is_some() || presign.algorithm.is_some() {
            return Err(AuthError::new(
                AuthErrorCode::InvalidRequest,
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified",
            ));
        }
        let authz = authz.to_str().map_err(|_| {
            AuthError::new(
                AuthErrorCode::AuthorizationHeaderMalformed,
                "The authorization header is malformed; the header contains invalid characters.",
            )
        })?;
        return parse_header_auth(parts, authz).map(Some);
    }
    if presign.algorithm.is_some() || presign.signature.is_some() || presign.credential.is_some() {
        return parse_presigned(presign).map(Some);
    }
    if presign.sigv2 {
        return Err(sigv2_error());
    }
    Ok(None)
}

fn parse_header_auth(parts: &http::request::Parts, authz: &str) -> Result<ParsedAuth, AuthError> {
    let authz = authz.trim();
    let (scheme, rest) = authz.split_once(' ').unwrap_or((authz, ""));
    if scheme != ALGORITHM {
        if scheme == "AWS" || scheme.starts_with("AWS4-ECDSA") {
            return Err(sigv2_error());
        }
        return Err(AuthError::new(
            AuthErrorCode::InvalidArgument,
            "Unsupported Authorization Type",
        ));
    }
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for comp in rest.split(',') {
        let comp = comp.trim();
        if comp.is_empty() {
            continue;
        }
        let Some((k, v)) = comp.split_once('=') else {
            return Err(AuthError::new(
                AuthErrorCode::IncompleteSignature,
                format!(
                    "'{comp}' not a valid key=value pair (missing equal-sign) in Authorization header: '{authz}'."
                ),
            ));
        };
        match k.trim() {
            "Credential" => credential = Some(v.trim()),
            "SignedHeaders" => signed_headers = Some(v.trim()),
            "Signature" => signature = Some(v.trim()),
            _ => {}
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        let mut msg = String::new();
        for (present, name) in [
            (credential.is_some(), "Credential"),
            (signature.is_some(), "Signature"),
            (signed_headers.is_some(), "SignedHeaders"),
        ] {
            if !present {
                msg.push_str(&format!(
                    "Authorization header requires '{name}' parameter. "
                ));
            }
        }
        msg.push_str(&format!("Authorization={authz}"));
        return Err(AuthError::new(AuthErrorCode::IncompleteSignature, msg));
    };
    let (access_key_id, scope) = parse_credential(credential, false)?;
    let timestamp = match header_str(parts, "x-amz-date") {
        Some(d) => parse_amz_date(d.trim()),
        None => header_str(parts, "date").and_then(|d| parse_http_date(d.trim())),
    }
    .ok_or_else(|| {
        AuthError::new(
            AuthErrorCode::IncompleteSignature,
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
        )
    })?;
    Ok(ParsedAuth {
        access_key_id,
        scope,
        signed_headers: parse_signed_headers(signed_headers),
        signature: signature.to_owned(),
        timestamp,
        session_token: header_str(parts, "x-amz-security-token").map(str::to_owned),
        kind: AuthKind::Header,
    })
}

fn parse_presigned(p: PresignParams<'_>) -> Result<ParsedAuth, AuthError> {
    let missing = || {
        AuthError::new(
            AuthErrorCode::AuthorizationQueryParametersError,
            "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.",
        )
    };
    let (Some(alg), Some(cred), Some(date), Some(sh), Some(sig)) = (
        p.algorithm,
        p.credential,
        p.date,
        p.signed_headers,
        p.signature,
    ) else {
        return Err(missing());
    };
    if alg != ALGORITHM {
        return Err(AuthError::new(
            AuthErrorCode::AuthorizationQueryParametersError,
            "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"",
        ));
    }
    let (access_key_id, scope) = parse_credential(&cred, true)?;
    let expires_secs = match p.expires {
        Some(e) => e.parse::<u64>().map_err(|_| {
            AuthError::new(
                AuthErrorCode::AuthorizationQueryParametersError,
                "X-Amz-Expires should be a number",
            )
        })?,
        None if scope.is_s3() => return Err(missing()),
        None => MAX_SKEW_SECS as u64,
    };
    let timestamp = parse_amz_date(&date).ok_or_else(|| {
        AuthError::new(
            AuthErrorCode::AuthorizationQueryParametersError,
            "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"",
        )
    })?;
    Ok(ParsedAuth {
        access_key_id,
        scope,
        signed_headers: parse_signed_headers(&sh),
        signature: sig.into_owned(),
        timestamp,
        session_token: p.token.map(Cow::into_owned),
        kind: AuthKind::Presigned { expires_secs },
    })
}

// ---------------------------------------------------------------------------
// Dates

/// Parse `YYYYMMDDTHHMMSSZ`.
pub fn parse_amz_date(s: &str) -> Option<OffsetDateTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b.get(8) != Some(&b'T') || b.get(15) != Some(&b'Z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let mut n = 0u32;
        for &c in b.get(r)? {
            if !c.is_ascii_digit() {
                return None;
            }
            n = n * 10 + u32::from(c - b'0');
        }
        Some(n)
    };
    let year = i32::try_from(num(0..4)?).ok()?;
    let month = Month::try_from(u8::try_from(num(4..6)?).ok()?).ok()?;
    let day = u8::try_from(num(6..8)?).ok()?;
    let hour = u8::try_from(num(9..11)?).ok()?;
    let min = u8::try_from(num(11..13)?).ok()?;
    let sec = u8::try_from(num(13..15)?).ok()?;
    let date = Date::from_calendar_date(year, month, day).ok()?;
    let time = Time::from_hms(hour, min, sec).ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_utc())
}

/// Parse an IMF-fixdate `Date` header (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub fn parse_http_date(s: &str) -> Option<OffsetDateTime> {
    let b = s.as_bytes();
    if b.len() != 29 || b.get(3..5) != Some(b", ".as_slice()) || !b.ends_with(b" GMT") {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let mut n = 0u32;
        for &c in b.get(r)? {
            if !c.is_ascii_digit() {
                return None;
            }
            n = n * 10 + u32::from(c - b'0');
        }
        Some(n)
    };
    let month = match b.get(8..11)? {
        b"Jan" => Month::January,
        b"Feb" => Month::February,
        b"Mar" => Month::March,
        b"Apr" => Month::April,
        b"May" => Month::May,
        b"Jun" => Month::June,
        b"Jul" => Month::July,
        b"Aug" => Month::August,
        b"Sep" => Month::September,
        b"Oct" => Month::October,
        b"Nov" => Month::November,
        b"Dec" => Month::December,
        _ => return None,
    };
    let day = u8::try_from(num(5..7)?).ok()?;
    let year = i32::try_from(num(12..16)?).ok()?;
    let hour = u8::try_from(num(17..19)?).ok()?;
    let min = u8::try_from(num(20..22)?).ok()?;
    let sec = u8::try_from(num(23..25)?).ok()?;
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    if !(at(7, b' ') && at(11, b' ') && at(16, b' ') && at(19, b':') && at(22, b':')) {
        return None;
    }
    let date = Date::from_calendar_date(year, month, day).ok()?;
    let time = Time::from_hms(hour, min, sec).ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_utc())
}

fn push_digits(out: &mut String, n: u32, width: usize) {
    let s = n.to_string();
    for _ in s.len()..width {
        out.push('0');
    }
    out.push_str(&s);
}

/// Format as `YYYYMMDDTHHMMSSZ` (UTC).
pub fn format_amz_date(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let mut s = String::with_capacity(16);
    push_digits(&mut s, t.year().unsigned_abs(), 4);
    push_digits(&mut s, u32::from(u8::from(t.month())), 2);
    push_digits(&mut s, u32::from(t.day()), 2);
    s.push('T');
    push_digits(&mut s, u32::from(t.hour()), 2);
    push_digits(&mut s, u32::from(t.minute()), 2);
    push_digits(&mut s, u32::from(t.second()), 2);
    s.push('Z');
    s
}

/// Format the date part as `YYYYMMDD` (UTC).
pub fn format_scope_date(t: OffsetDateTime) -> String {
    let mut s = format_amz_date(t);
    s.truncate(8);
    s
}

// ---------------------------------------------------------------------------
// Percent encoding

#[inline]
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

#[inline]
fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The uppercase hex digit for the low four bits of `n` (the mask keeps the lookup in range).
fn hex_digit(n: u8) -> u8 {
    HEX_UPPER.get(usize::from(n & 15)).copied().unwrap_or(b'0')
}

/// Percent-encode `input` per RFC 3986 (everything but unreserved, and `/` if `keep_slash`).
fn encode_into(out: &mut Vec<u8>, input: &[u8], keep_slash: bool) {
    for &b in input {
        if is_unreserved(b) || (keep_slash && b == b'/') {
            out.push(b);
        } else {
            out.push(b'%');
            out.push(hex_digit(b >> 4));
            out.push(hex_digit(b & 15));
        }
    }
}

/// Percent-decode; an invalid `%` escape is kept literally. `+` becomes a space
/// only if `plus_as_space`.
fn decode_bytes(input: &[u8], plus_as_space: bool) -> Cow<'_, [u8]> {
    if !input
        .iter()
        .any(|&b| b == b'%' || (plus_as_space && b == b'+'))
    {
        return Cow::Borrowed(input);
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        if b == b'%'
            && let (Some(h), Some(l)) = (
                input.get(i + 1).copied().and_then(hex_val),
                input.get(i + 2).copied().and_then(hex_val),
            )
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(if plus_as_space && b == b'+' { b' ' } else { b });
        i += 1;
    }
    Cow::Owned(out)
}

fn decode_lossy(input: &str, plus_as_space: bool) -> Cow<'_, str> {
    match decode_bytes(input.as_bytes(), plus_as_space) {
        Cow::Borrowed(_) => Cow::Borrowed(input),
        Cow::Owned(v) => match String::from_utf8(v) {
            Ok(s) => Cow::Owned(s),
            Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
        },
    }
}

/// Canonical (decoded, then RFC 3986 encoded) form of one query component.
/// `+` means a space, as in form decoding (what aws-sigv4 signs, and what
/// [`crate::query::Params`] decodes): a signature over `%2B` therefore does not
/// cover a rewritten `+`, and vice versa.
fn canonical_component(raw: &str) -> Cow<'_, str> {
    if raw.bytes().all(is_unreserved) {
        return Cow::Borrowed(raw);
    }
    let decoded = decode_bytes(raw.as_bytes(), true);
    let mut out = Vec::with_capacity(decoded.len() * 3);
    encode_into(&mut out, &decoded, false);
    // Only ASCII was pushed.
    Cow::Owned(String::from_utf8(out).unwrap_or_default())
}

// ---------------------------------------------------------------------------
// Canonical request

/// How the path is canonicalised. [`CanonicalRules::for_service`] picks AWS's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CanonicalRules {
    /// Remove `.`/`..` segments and empty segments (all services but S3).
    pub normalize_path: bool,
    /// Percent-encode the (already encoded) path again (all services but S3).
    pub double_encode_path: bool,
}

impl CanonicalRules {
    /// S3: path as sent. Everything else: normalised and encoded again.
    pub fn for_service(service: &str) -> Self {
        let s3 = is_s3_service(service);
        Self {
            normalize_path: !s3,
            double_encode_path: !s3,
        }
    }
}

/// RFC 3986 5.2.4 dot-segment removal plus collapsing of empty segments, as the
/// AWS SDKs do before signing for non-S3 services.
fn normalize_path(path: &str) -> Cow<'_, str> {
    if path.is_empty() {
        return Cow::Borrowed("/");
    }
    if path.starts_with('/')
        && !path.contains("/.")
        && !path.contains("//")
        && !path.starts_with('.')
    {
        return Cow::Borrowed(path);
    }
    let mut segs: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segs.pop();
            }
            s => segs.push(s),
        }
    }
    let mut out = String::with_capacity(path.len() + 1);
    for s in &segs {
        out.push('/');
        out.push_str(s);
    }
    let trailing = ["/", "/.", "/..", "/./", "/../"]
        .iter()
        .any(|t| path.ends_with(t))
        || path == "."
        || path == "..";
    if out.is_empty() || (trailing && !out.ends_with('/')) {
        out.push('/');
    }
    Cow::Owned(out)
}

#[derive(Clone, Copy)]
enum PathVariant {
    /// Per the rules (S3: raw path as sent).
    AsRules,
    /// S3 only: decode and re-encode (clients that send unencoded reserved characters).
    Reencoded,
}

fn push_canonical_path(out: &mut Vec<u8>, raw: &str, rules: CanonicalRules, variant: PathVariant) {
    let path: Cow<'_, str> = if rules.normalize_path {
        normalize_path(raw)
    } else if raw.is_empty() {
        Cow::Borrowed("/")
    } else {
        Cow::Borrowed(raw)
    };
    match variant {
        PathVariant::Reencoded => {
            let decoded = decode_bytes(path.as_bytes(), false);
            encode_into(out, &decoded, true);
        }
        PathVariant::AsRules if rules.double_encode_path => {
            encode_into(out, path.as_bytes(), true);
        }
        PathVariant::AsRules => out.extend_from_slice(path.as_bytes()),
    }
}

fn push_canonical_query(out: &mut Vec<u8>, query: &str, skip_signature: bool) {
    let mut pairs: Vec<(Cow<'_, str>, Cow<'_, str>)> = Vec::new();
    for pair in query.split('&') {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if skip_signature && decode_lossy(k, true) == "X-Amz-Signature" {
            continue;
        }
        pairs.push((canonical_component(k), canonical_component(v)));
    }
    pairs.sort_unstable();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        out.extend_from_slice(k.as_bytes());
        out.push(b'=');
        out.extend_from_slice(v.as_bytes());
    }
}

/// Append a header value trimmed of spaces with runs of spaces collapsed.
fn push_trimmed(out: &mut Vec<u8>, value: &[u8]) {
    let start = value.iter().position(|&b| b != b' ').unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|&b| b != b' ')
        .map_or(start, |e| e + 1);
    let mut prev_space = false;
    for &b in value.get(start..end).unwrap_or(&[]) {
        if b == b' ' {
            if prev_space {
                continue;
            }
            prev_space = true;
        } else {
            prev_space = false;
        }
        out.push(b);
    }
}

fn push_canonical_headers(out: &mut Vec<u8>, parts: &http::request::Parts, signed: &[String]) {
    for name in signed {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        let mut any = false;
        for v in parts.headers.get_all(name.as_str()) {
            if any {
                out.push(b',');
            }
            any = true;
            push_trimmed(out, v.as_bytes());
        }
        if !any && name == "host" {
            // HTTP/2 carries the host in :authority, which lands in the URI.
            if let Some(a) = parts.uri.authority() {
                out.extend_from_slice(a.as_str().as_bytes());
            }
        }
        out.push(b'\n');
    }
}

fn build_canonical_request(
    parts: &http::request::Parts,
    auth: &ParsedAuth,
    payload_hash: &str,
    rules: CanonicalRules,
    variant: PathVariant,
) -> Vec<u8> {
    let query = parts.uri.query().unwrap_or("");
    let mut out = Vec::with_capacity(256 + query.len() * 2 + parts.uri.path().len() * 2);
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b'\n');
    push_canonical_path(&mut out, parts.uri.path(), rules, variant);
    out.push(b'\n');
    push_canonical_query(&mut out, query, auth.is_presigned());
    out.push(b'\n');
    push_canonical_headers(&mut out, parts, &auth.signed_headers);
    out.push(b'\n');
    for (i, h) in auth.signed_headers.iter().enumerate() {
        if i > 0 {
            out.push(b';');
        }
        out.extend_from_slice(h.as_bytes());
    }
    out.push(b'\n');
    out.extend_from_slice(payload_hash.as_bytes());
    out
}

/// The canonical request (as AWS defines it) for `parts` under `rules`.
///
/// Bytes, because header values may legally carry non-UTF-8 octets.
pub fn canonical_request(
    parts: &http::request::Parts,
    auth: &ParsedAuth,
    payload_hash: &str,
    rules: CanonicalRules,
) -> Vec<u8> {
    build_canonical_request(parts, auth, payload_hash, rules, PathVariant::AsRules)
}

/// The string to sign for a canonical request.
pub fn string_to_sign(
    timestamp: OffsetDateTime,
    scope: &Scope,
    canonical_request: &[u8],
) -> String {
    let mut s = String::with_capacity(160);
    s.push_str(ALGORITHM);
    s.push('\n');
    s.push_str(&format_amz_date(timestamp));
    s.push('\n');
    s.push_str(&scope.to_string());
    s.push('\n');
    s.push_str(&hex::encode(sha256(canonical_request)));
    s
}

/// The SigV4 signing key for a secret and scope (cacheable per key and day).
pub fn signing_key(secret: &SecretKey, scope: &Scope) -> [u8; 32] {
    let mut k = Vec::with_capacity(4 + secret.expose().len());
    k.extend_from_slice(b"AWS4");
    k.extend_from_slice(secret.expose().as_bytes());
    let k_date = hmac_sha256(&k, scope.date.as_bytes());
    zeroize::Zeroize::zeroize(&mut k);
    let k_region = hmac_sha256(&k_date, scope.region.as_bytes());
    let k_service = hmac_sha256(&k_region, scope.service.as_bytes());
    hmac_sha256(&k_service, b"aws4_request")
}

/// Derived signing keys of recent credentials, by access key id and scope,
/// so a request does not recompute the four-HMAC chain its key already went
/// through today (AWS's SDKs cache it the same way). An entry answers only
/// for the very secret it was derived from, compared in constant time.
type KeyCache = std::collections::HashMap<String, (SecretKey, [u8; 32])>;

/// More live credential scopes than this and the cache starts over.
const KEY_CACHE_MAX: usize = 4_096;

static KEY_CACHE: std::sync::LazyLock<std::sync::Mutex<KeyCache>> =
    std::sync::LazyLock::new(Default::default);

/// Longer cache ids (access key id and scope) are never cached: real
/// scopes are short, and this bounds the cache at a few MB.
const KEY_CACHE_ID_MAX: usize = 256;

/// [`signing_key`] through the cache of derived keys. On a miss it also
/// returns the cache id to [`remember_signing_key`] under once a signature
/// has verified: only proven keys are cached, so requests that merely name
/// a key id (its secret unknown) cannot fill or churn the cache.
fn cached_signing_key(
    access_key_id: &str,
    secret: &SecretKey,
    scope: &Scope,
) -> ([u8; 32], Option<String>) {
    let mut id = String::with_capacity(
        access_key_id.len() + scope.date.len() + scope.region.len() + scope.service.len() + 4,
    );
    for part in [access_key_id, &scope.date, &scope.region, &scope.service] {
        id.push_str(part);
        id.push('/');
    }
    let cache = KEY_CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((known, key)) = cache.get(&id)
        && ct_eq(known.expose().as_bytes(), secret.expose().as_bytes())
    {
        return (*key, None);
    }
    drop(cache);
    let fill = (id.len() <= KEY_CACHE_ID_MAX).then_some(id);
    (signing_key(secret, scope), fill)
}

/// Cache a signing key a signature has just verified under.
fn remember_signing_key(id: String, secret: &SecretKey, key: [u8; 32]) {
    let mut cache = KEY_CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if cache.len() >= KEY_CACHE_MAX {
        cache.clear();
    }
    cache.insert(id, (secret.clone(), key));
}

/// Hex HMAC of `string_to_sign` under `signing_key`.
pub fn sign(signing_key: &[u8; 32], string_to_sign: &str) -> String {
    hex::encode(hmac_sha256(signing_key, string_to_sign.as_bytes()))
}

// ---------------------------------------------------------------------------
// Payload hash

fn is_hex_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `v` is one of the special `x-amz-content-sha256` values.
pub fn is_special_payload_hash(v: &str) -> bool {
    matches!(
        v,
        UNSIGNED_PAYLOAD
            | STREAMING_PAYLOAD
            | STREAMING_PAYLOAD_TRAILER
            | STREAMING_UNSIGNED_PAYLOAD_TRAILER
    )
}

/// The `x-amz-content-sha256` header, if present and valid UTF-8.
pub fn declared_payload_hash(parts: &http::request::Parts) -> Option<&str> {
    header_str(parts, "x-amz-content-sha256").map(str::trim)
}

fn check_declared(declared: &str, body: &[u8]) -> Result<String, AuthError> {
    if is_special_payload_hash(declared) {
        return Ok(declared.to_owned());
    }
    if is_hex_sha256(declared) {
        let computed = sha256_hex(body);
        if !ct_eq(
            computed.as_bytes(),
            declared.to_ascii_lowercase().as_bytes(),
        ) {
            return Err(AuthError::new(
                AuthErrorCode::XAmzContentSHA256Mismatch,
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
            ));
        }
        return Ok(declared.to_owned());
    }
    Err(AuthError::new(
        AuthErrorCode::InvalidArgument,
        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER or a valid sha256 value.",
    ))
}

/// The payload hash to verify `auth` with, given the (whole) body.
///
/// - header auth with `x-amz-content-sha256`: that value — a special value as is,
///   a hex hash only if it matches the body (else `XAmzContentSHA256Mismatch`).
///   For non-S3 services only a matching hex hash is honoured; anything else
///   falls back to hashing the body (as IAM/STS do), so a client can't opt out of
///   body signing there.
/// - presigned: `X-Amz-Content-Sha256` query parameter if any, else
///   `UNSIGNED-PAYLOAD` for S3 and SHA-256(body) for other services (what
///   botocore and aws-sigv4 sign, e.g. presigned STS `GetCallerIdentity`).
/// - otherwise: hex SHA-256(body).
pub fn payload_hash(
    parts: &http::request::Parts,
    auth: &ParsedAuth,
    body: &[u8],
) -> Result<String, AuthError> {
    let s3 = auth.scope.is_s3();
    match auth.kind {
        AuthKind::Header => match declared_payload_hash(parts) {
            Some(d) if s3 => check_declared(d, body),
            Some(d) if is_hex_sha256(d) => check_declared(d, body),
            _ => Ok(body_hash(body)),
        },
        AuthKind::Presigned { .. } => {
            let q = parts.uri.query().unwrap_or("");
            if let Some(d) = presign_params(q).content_sha256
                && (s3 || is_hex_sha256(&d))
            {
                return check_declared(&d, body);
            }
            if s3 {
                Ok(UNSIGNED_PAYLOAD.to_owned())
            } else {
                Ok(body_hash(body))
            }
        }
    }
}

/// The payload hash an S3 request was signed with, known from its headers
/// (or presign query) alone, so the signature can be verified before a byte
/// of the body is read. `None` when the body itself must be hashed (non-S3
/// services without a declared hash). A declared hex hash is checked against
/// the body later with [`check_body_hash`].
pub fn header_payload_hash(
    parts: &http::request::Parts,
    auth: &ParsedAuth,
) -> Result<Option<String>, AuthError> {
    let declared = match auth.kind {
        AuthKind::Header => declared_payload_hash(parts).map(str::to_owned),
        AuthKind::Presigned { .. } => presign_params(parts.uri.query().unwrap_or(""))
            .content_sha256
            .map(|c| c.into_owned())
            .or_else(|| auth.scope.is_s3().then(|| UNSIGNED_PAYLOAD.to_owned())),
    };
    match declared {
        Some(d) if auth.scope.is_s3() => {
            if is_special_payload_hash(&d) || is_hex_sha256(&d) {
                Ok(Some(d))
            } else {
                // Let the body-time check produce AWS's error for it.
                check_declared(&d, &[]).map(Some)
            }
        }
        _ => Ok(None),
    }
}

/// After the body is read: a declared hex hash must match it.
pub fn check_body_hash(declared: &str, body: &[u8]) -> Result<(), AuthError> {
    check_declared(declared, body).map(|_| ())
}

fn body_hash(body: &[u8]) -> String {
    if body.is_empty() {
        EMPTY_SHA256.to_owned()
    } else {
        sha256_hex(body)
    }
}

/// [`payload_hash`] for a request whose authentication is not parsed yet
/// (parses it; an anonymous or unparsable request gets the header rule).
pub fn payload_hash_for(parts: &http::request::Parts, body: &[u8]) -> Result<String, AuthError> {
    match parse_auth(parts) {
        Ok(Some(auth)) => payload_hash(parts, &auth, body),
        _ => match declared_payload_hash(parts) {
            Some(d) => check_declared(d, body),
            None => Ok(body_hash(body)),
        },
    }
}

/// `x-amz-*` request headers that the signature does not cover (S3 answers
/// `AccessDenied` "There were headers present in the request which were not
/// signed" for these). The caller decides whether to enforce it.
pub fn unsigned_amz_headers<'a>(
    parts: &'a http::request::Parts,
    auth: &ParsedAuth,
) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for name in parts.headers.keys() {
        let n = name.as_str();
        if n.starts_with("x-amz-")
            && !auth.signed_headers.iter().any(|h| h == n)
            && !out.contains(&n)
        {
            out.push(n);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Verification

fn skew_error(service: &str, ts: OffsetDateTime, now: OffsetDateTime) -> AuthError {
    if is_s3_service(service) {
        return AuthError::new(
            AuthErrorCode::RequestTimeTooSkewed,
            "The difference between the request time and the current time is too large.",
        );
    }
    if service == "ec2" {
        return AuthError::new(AuthErrorCode::RequestExpired, "Request has expired.");
    }
    let skew = time::Duration::seconds(MAX_SKEW_SECS);
    let msg = if ts < now {
        format!(
            "Signature expired: {} is now earlier than {} ({} - 15 min.)",
            format_amz_date(ts),
            format_amz_date(now.checked_sub(skew).unwrap_or(now)),
            format_amz_date(now)
        )
    } else {
        format!(
            "Signature not yet current: {} is still later than {} ({} + 15 min.)",
            format_amz_date(ts),
            format_amz_date(now.checked_add(skew).unwrap_or(now)),
            format_amz_date(now)
        )
    };
    AuthError::new(AuthErrorCode::SignatureDoesNotMatch, msg)
}

fn check_time(auth: &ParsedAuth, now: OffsetDateTime) -> Result<(), AuthError> {
    let ts = auth.timestamp;
    let diff = (now - ts).whole_seconds();
    match auth.kind {
        AuthKind::Header => {
            if diff.abs() > MAX_SKEW_SECS {
                return Err(skew_error(&auth.scope.service, ts, now));
            }
        }
        AuthKind::Presigned { expires_secs } => {
            if expires_secs > MAX_PRESIGN_EXPIRES_SECS {
                return Err(AuthError::new(
                    AuthErrorCode::AuthorizationQueryParametersError,
                    "X-Amz-Expires must be less than a week (in seconds) that is 604800",
                ));
            }
            if diff < -MAX_SKEW_SECS {
                return Err(AuthError::new(
                    AuthErrorCode::AccessDenied,
                    "Request is not valid yet",
                ));
            }
            // expires_secs <= 604800, so the cast is exact.
            if diff > expires_secs as i64 {
                return Err(AuthError::new(
                    AuthErrorCode::AccessDenied,
                    "Request has expired",
                ));
            }
        }
    }
    if format_scope_date(ts) != auth.scope.date {
        let detail = "Invalid credential date. Date is not the same as X-Amz-Date.";
        return Err(if auth.is_presigned() {
            AuthError::new(AuthErrorCode::AuthorizationQueryParametersError, detail)
        } else {
            AuthError::new(
                AuthErrorCode::AuthorizationHeaderMalformed,
                format!("The authorization header is malformed; {detail}"),
            )
        });
    }
    Ok(())
}

/// Verify the signature of `parts` (with AWS's rules for `auth.scope.service`).
///
/// `payload_hash` comes from [`payload_hash`] / [`payload_hash_for`]. Checks the
/// clock skew (header auth: 15 minutes), presigned validity (`X-Amz-Expires`,
/// at most 604800), that the scope date is the timestamp's date, then compares
/// signatures in constant time. Does not check region/service against the
/// endpoint, nor the session token: that is the caller's job.
pub fn verify(
    parts: &http::request::Parts,
    auth: &ParsedAuth,
    secret: &SecretKey,
    payload_hash: &str,
    now: OffsetDateTime,
) -> Result<Verified, AuthError> {
    verify_with_rules(
        parts,
        auth,
        secret,
        payload_hash,
        now,
        CanonicalRules::for_service(&auth.scope.service),
    )
}

/// [`verify`] with explicit canonicalisation rules.
pub fn verify_with_rules(
    parts: &http::request::Parts,
    auth: &ParsedAuth,
    secret: &SecretKey,
    payload_hash: &str,
    now: OffsetDateTime,
    rules: CanonicalRules,
) -> Result<Verified, AuthError> {
    check_time(auth, now)?;
    let (key, fill) = cached_signing_key(&auth.access_key_id, secret, &auth.scope);
    let provided = auth.signature.as_bytes();

    // The exact form first; for S3 also, only if the exact form fails, the path
    // decoded and re-encoded (clients that send reserved characters raw but
    // sign them encoded). Both decode to the same key, so this is not malleable.
    let alt_path = !rules.double_encode_path
        && parts
            .uri
            .path()
            .bytes()
            .any(|b| !(is_unreserved(b) || b == b'/'));
    let variants = [
        Some(PathVariant::AsRules),
        alt_path.then_some(PathVariant::Reencoded),
    ];
    for variant in variants.into_iter().flatten() {
        let creq = build_canonical_request(parts, auth, payload_hash, rules, variant);
        let sts = string_to_sign(auth.timestamp, &auth.scope, &creq);
        let expected = sign(&key, &sts);
        if ct_eq(expected.as_bytes(), provided) {
            if let Some(id) = fill {
                remember_signing_key(id, secret, key);
            }
            return Ok(Verified {
                signing_key: key,
                seed_signature: expected,
            });
        }
    }
    Err(AuthError::signature_mismatch())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).map(|r| r.into_parts().0).expect("request")
    }

    #[test]
    fn cached_signing_keys_answer_only_for_their_secret() {
        let scope = Scope {
            date: "20150830".into(),
            region: "us-east-1".into(),
            service: "iam".into(),
        };
        let (a, b) = (
            SecretKey::new("secret-a".into()),
            SecretKey::new("secret-b".into()),
        );
        let akid = "AKIDCACHETEST0000001";
        let (first, fill) = cached_signing_key(akid, &a, &scope);
        assert_eq!(first, signing_key(&a, &scope));
        let id = fill.expect("a miss names its cache slot");
        assert!(
            cached_signing_key(akid, &a, &scope).1.is_some(),
            "nothing is cached before a signature verifies"
        );
        remember_signing_key(id, &a, first);
        assert_eq!(cached_signing_key(akid, &a, &scope), (first, None), "a hit");
        // The same key id with another secret derives afresh.
        let (with_b, fill) = cached_signing_key(akid, &b, &scope);
        assert_eq!(with_b, signing_key(&b, &scope));
        assert!(fill.is_some());
        assert_ne!(with_b, first);
        let long = Scope {
            region: "r".repeat(300),
            ..scope.clone()
        };
        assert_eq!(
            cached_signing_key(akid, &a, &long).1,
            None,
            "too long to cache"
        );
    }

    #[test]
    fn amz_date_round_trip() {
        let t = parse_amz_date("20150830T123600Z").expect("date");
        assert_eq!(format_amz_date(t), "20150830T123600Z");
        assert_eq!(format_scope_date(t), "20150830");
        for bad in [
            "",
            "20150830T123600",
            "2015083OT123600Z",
            "20151330T123600Z",
            "20150830T246000Z",
            "２0150830T12360Z",
        ] {
            assert!(parse_amz_date(bad).is_none(), "{bad}");
        }
        let h = parse_http_date("Sun, 30 Aug 2015 12:36:00 GMT").expect("http date");
        assert_eq!(h, t);
        assert!(parse_http_date("Sun, 30 Foo 2015 12:36:00 GMT").is_none());
    }

    #[test]
    fn normalize() {
        for (i, o) in [
            ("", "/"),
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/a/./b", "/a/b"),
            ("/a/../b", "/b"),
            ("/../..", "/"),
            ("//a//b//", "/a/b/"),
            ("/a/b/.", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("/.hidden", "/.hidden"),
            ("a/b", "/a/b"),
        ] {
            assert_eq!(normalize_path(i), o, "{i}");
        }
    }

    #[test]
    fn trims() {
        let mut v = Vec::new();
        push_trimmed(&mut v, b"  a   b  c ");
        assert_eq!(v, b"a b c");
        v.clear();
        push_trimmed(&mut v, b"    ");
        assert_eq!(v, b"");
    }

    #[test]
    fn anonymous_and_sigv2() {
        assert_eq!(parse_auth(&parts("GET", "/b/k", &[])), Ok(None));
        assert_eq!(parse_auth(&parts("GET", "/b/k?x=1&&y", &[])), Ok(None));
        let e = parse_auth(&parts(
            "GET",
            "/",
            &[("authorization", "AWS AKID:c2lnbmF0dXJl")],
        ))
        .expect_err("v2");
        assert_eq!(e.code, AuthErrorCode::InvalidRequest);
        let e = parse_auth(&parts(
            "GET",
            "/b/k?AWSAccessKeyId=AKID&Expires=1&Signature=abc",
            &[],
        ))
        .expect_err("v2 query");
        assert_eq!(e.code, AuthErrorCode::InvalidRequest);
    }

    #[test]
    fn parse_header() {
        let p = parts(
            "GET",
            "/",
            &[
                ("x-amz-date", "20150830T123600Z"),
                ("x-amz-security-token", "tok"),
                (
                    "authorization",
                    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=host;x-amz-date, Signature=abcd",
                ),
            ],
        );
        let a = parse_auth(&p).expect("ok").expect("some");
        assert_eq!(a.access_key_id, "AKIDEXAMPLE");
        assert_eq!(a.scope.to_string(), "20150830/us-east-1/iam/aws4_request");
        assert_eq!(a.signed_headers, vec!["host", "x-amz-date"]);
        assert_eq!(a.signature, "abcd");
        assert_eq!(a.session_token.as_deref(), Some("tok"));
        assert_eq!(a.kind, AuthKind::Header);
    }

    #[test]
    fn parse_header_errors() {
        let cases = [
            (
                "AWS4-HMAC-SHA256 Credential=A/20150830/r/s/aws4_request, SignedHeaders=host",
                AuthErrorCode::IncompleteSignature,
            ),
            (
                "AWS4-HMAC-SHA256 Credential=A/20150830/r/s/aws4_request, garbage",
                AuthErrorCode::IncompleteSignature,
            ),
            (
                "AWS4-HMAC-SHA256 Credential=A/20150830/r/s, SignedHeaders=host, Signature=x",
                AuthErrorCode::AuthorizationHeaderMalformed,
            ),
            (
                "AWS4-HMAC-SHA256 Credential=A/2015083/r/s/aws4_request, SignedHeaders=host, Signature=x",
                AuthErrorCode::AuthorizationHeaderMalformed,
            ),
            (
                "AWS4-HMAC-SHA256 Credential=A/20150830/r/s/aws5_request, SignedHeaders=host, Signature=x",
                AuthErrorCode::AuthorizationHeaderMalformed,
            ),
            (
                "AWS4-ECDSA-P256-SHA256 Credential=A/20150830/s/aws4_request, SignedHeaders=host, Signature=x",
                AuthErrorCode::InvalidRequest,
            ),
            ("Bearer xyz", AuthErrorCode::InvalidArgument),
            ("", AuthErrorCode::InvalidArgument),
        ];
        for (h, code) in cases {
            let p = parts(
                "GET",
                "/",
                &[("x-amz-date", "20150830T123600Z"), ("authorization", h)],
            );
            assert_eq!(parse_auth(&p).expect_err(h).code, code, "{h}");
        }
        // No date at all.
        let p = parts(
            "GET",
            "/",
            &[(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=A/20150830/r/s/aws4_request, SignedHeaders=host, Signature=x",
            )],
        );
        assert_eq!(
            parse_auth(&p).expect_err("date").code,
            AuthErrorCode::IncompleteSignature
        );
        // Both mechanisms.
        let p = parts(
            "GET",
            "/?X-Amz-Signature=abc",
            &[
                ("x-amz-date", "20150830T123600Z"),
                (
                    "authorization",
                    "AWS4-HMAC-SHA256 Credential=A/20150830/r/s/aws4_request, SignedHeaders=host, Signature=x",
                ),
            ],
        );
        assert_eq!(
            parse_auth(&p).expect_err("both").code,
            AuthErrorCode::InvalidRequest
        );
    }

    #[test]
    fn parse_presigned_errors() {
        let base = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=A%2F20150830%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20150830T123600Z&X-Amz-SignedHeaders=host&X-Amz-Signature=ab";
        let p = parts("GET", &format!("/b/k?{base}&X-Amz-Expires=60"), &[]);
        let a = parse_auth(&p).expect("ok").expect("some");
        assert_eq!(a.kind, AuthKind::Presigned { expires_secs: 60 });
        assert_eq!(a.scope.service, "s3");
        // Missing expires for s3.
        let p = parts("GET", &format!("/b/k?{base}"), &[]);
        assert_eq!(
            parse_auth(&p).expect_err("exp").code,
            AuthErrorCode::AuthorizationQueryParametersError
        );
        let p = parts("GET", &format!("/b/k?{base}&X-Amz-Expires=-1"), &[]);
        assert_eq!(
            parse_auth(&p).expect_err("neg").code,
            AuthErrorCode::AuthorizationQueryParametersError
        );
        let p = parts("GET", "/b/k?X-Amz-Signature=ab", &[]);
        assert_eq!(
            parse_auth(&p).expect_err("partial").code,
            AuthErrorCode::AuthorizationQueryParametersError
        );
        let p = parts(
            "GET",
            &format!(
                "/b/k?{}&X-Amz-Expires=60",
                base.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA1")
            ),
            &[],
        );
        assert_eq!(
            parse_auth(&p).expect_err("alg").code,
            AuthErrorCode::AuthorizationQueryParametersError
        );
    }

    #[test]
    fn declared_hash_rules() {
        let p = parts("PUT", "/", &[("x-amz-content-sha256", EMPTY_SHA256)]);
        assert_eq!(payload_hash_for(&p, b"").as_deref(), Ok(EMPTY_SHA256));
        assert_eq!(
            payload_hash_for(&p, b"x").expect_err("mismatch").code,
            AuthErrorCode::XAmzContentSHA256Mismatch
        );
        let p = parts("PUT", "/", &[("x-amz-content-sha256", "UNSIGNED-PAYLOAD")]);
        assert_eq!(
            payload_hash_for(&p, b"x").as_deref(),
            Ok("UNSIGNED-PAYLOAD")
        );
        let p = parts("PUT", "/", &[("x-amz-content-sha256", "nope")]);
        assert_eq!(
            payload_hash_for(&p, b"x").expect_err("bad").code,
            AuthErrorCode::InvalidArgument
        );
        let p = parts("PUT", "/", &[]);
        assert_eq!(payload_hash_for(&p, b"").as_deref(), Ok(EMPTY_SHA256));
    }
}
