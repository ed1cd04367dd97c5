//! keycard-policy: the IAM policy language of keycard.
//!
//! Parsing + validation ([`Policy::parse`]) compiles a JSON policy document once
//! (wildcards pre-compiled, statements indexed by service prefix); evaluation
//! ([`evaluate`]) implements AWS's cross-policy decision logic (explicit deny,
//! SCP levels, resource-based policies, identity policies, permissions
//! boundaries, session policies, role trust policies) and reports the
//! statements that decided the outcome.
//!
//! The crate is pure: no I/O, no async, no unsafe, and nothing panics on any input.

pub mod catalogue;
mod condition;
mod context;
mod date;
mod eval;
mod glob;
pub mod lint;
mod parse;
mod principal;
mod span;
mod template;

pub mod cli;

use serde::{Deserialize, Serialize};

pub use context::Context;
pub use eval::{
    Decision, Evaluation, MatchedStatement, PolicyRef, PolicySet, Request, evaluate,
    missing_context_keys,
};
pub use parse::{Effect, Policy};
pub use principal::{Principal, PrincipalKind};
pub use span::{Position, Span, TextPos};

/// The role a policy document plays; decides validation rules and quotas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyKind {
    /// Identity-based policy (managed or inline) attached to a user, group or role.
    Identity,
    /// Resource-based policy (bucket policy, key policy, ...).
    Resource,
    /// Role trust policy (`AssumeRolePolicyDocument`).
    Trust,
    /// Permissions boundary.
    Boundary,
    /// Session policy passed to `AssumeRole*` / `GetFederationToken`.
    Session,
    /// Service control policy.
    Scp,
}

impl PolicyKind {
    /// All kinds, in evaluation-report order.
    pub const ALL: [PolicyKind; 6] = [
        PolicyKind::Scp,
        PolicyKind::Resource,
        PolicyKind::Trust,
        PolicyKind::Identity,
        PolicyKind::Boundary,
        PolicyKind::Session,
    ];

    /// Lower-case name, as serialized.
    pub fn as_str(&self) -> &'static str {
        match self {
            PolicyKind::Identity => "identity",
            PolicyKind::Resource => "resource",
            PolicyKind::Trust => "trust",
            PolicyKind::Boundary => "boundary",
            PolicyKind::Session => "session",
            PolicyKind::Scp => "scp",
        }
    }

    /// The single-document size quota (non-whitespace characters).
    pub fn size_quota(&self) -> usize {
        match self {
            PolicyKind::Identity => 6144,
            PolicyKind::Trust => 2048,
            PolicyKind::Session => 2048,
            PolicyKind::Boundary => 6144,
            PolicyKind::Scp => 5120,
            PolicyKind::Resource => 20480,
        }
    }

    /// AWS's wording for the kind in denial messages.
    pub fn description(&self) -> &'static str {
        match self {
            PolicyKind::Identity => "identity-based policy",
            PolicyKind::Resource | PolicyKind::Trust => "resource-based policy",
            PolicyKind::Boundary => "permissions boundary",
            PolicyKind::Session => "session policy",
            PolicyKind::Scp => "service control policy",
        }
    }
}

impl std::fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for PolicyKind {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "identity" => Ok(PolicyKind::Identity),
            "resource" => Ok(PolicyKind::Resource),
            "trust" => Ok(PolicyKind::Trust),
            "boundary" => Ok(PolicyKind::Boundary),
            "session" => Ok(PolicyKind::Session),
            "scp" => Ok(PolicyKind::Scp),
            _ => Err(PolicyError::invalid_input(format!(
                "unknown policy kind: {s}"
            ))),
        }
    }
}

/// AWS error code of a [`PolicyError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The document is not a valid policy (HTTP 400).
    MalformedPolicyDocument,
    /// A quota was exceeded (HTTP 409).
    LimitExceeded,
    /// A request parameter is invalid (HTTP 400).
    InvalidInput,
}

impl ErrorCode {
    /// The AWS error code string.
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorCode::MalformedPolicyDocument => "MalformedPolicyDocument",
            ErrorCode::LimitExceeded => "LimitExceeded",
            ErrorCode::InvalidInput => "InvalidInput",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A policy validation or input error, with an IAM-like message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PolicyError {
    /// AWS error code.
    pub code: ErrorCode,
    /// Human readable message, worded like IAM's.
    pub message: String,
}

impl PolicyError {
    pub(crate) fn malformed(message: impl Into<String>) -> Self {
        PolicyError {
            code: ErrorCode::MalformedPolicyDocument,
            message: message.into(),
        }
    }

    pub(crate) fn invalid_input(message: impl Into<String>) -> Self {
        PolicyError {
            code: ErrorCode::InvalidInput,
            message: message.into(),
        }
    }

    pub(crate) fn limit(quota: usize) -> Self {
        PolicyError {
            code: ErrorCode::LimitExceeded,
            message: format!("Cannot exceed quota for PolicySize: {quota}"),
        }
    }
}

/// Count of characters that count toward IAM quotas (whitespace excluded).
pub fn policy_size(json: &str) -> usize {
    json.chars().filter(|c| !c.is_whitespace()).count()
}

/// Parse and validate `doc` as a policy of `kind`, discarding the compiled form.
pub fn validate_json(doc: &str, kind: PolicyKind) -> Result<(), PolicyError> {
    Policy::parse(doc, kind).map(|_| ())
}

#[cfg(test)]
mod tests;
