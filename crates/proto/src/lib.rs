//! keycard-proto: the AWS wire protocols keycard speaks, as pure functions.
//!
//! Nothing here does I/O or runs a server: every function takes
//! [`http::request::Parts`] and/or bytes and returns values or typed errors
//! carrying the AWS error code and message. No function panics on any input.
//!
//! - [`sigv4`]: parse and verify AWS Signature Version 4 (header and presigned).
//! - [`chunked`]: decode `aws-chunked` bodies, verifying chunk and trailer signatures.
//! - [`query`]: AWS query protocol input (`Action=…&X.member.N=…`, EC2 `X.N`).
//! - [`xml`]: response writer, AWS response/error renderers, a small safe XML reader.
//! - [`ids`]: access key ids (with the account encoded), unique ids, secret keys.
//! - [`secret`]: a secret access key type that can't leak through `Debug` or `==`.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

pub mod chunked;
pub mod ids;
pub mod query;
pub mod secret;
pub mod sigv4;
pub mod xml;

mod crypto;

pub use crypto::{hmac_sha256, sha256_hex};
pub use secret::{SecretKey, ct_eq};
