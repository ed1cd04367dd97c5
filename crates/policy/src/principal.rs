//! The authenticated caller of a request.

use crate::PolicyError;

/// What kind of principal made the request.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PrincipalKind {
    /// The account root user (`arn:aws:iam::ACCT:root`).
    Root,
    /// An IAM user.
    User,
    /// A role session (`arn:aws:sts::ACCT:assumed-role/ROLE/SESSION`); `role_arn` is the role's IAM ARN.
    AssumedRole {
        /// `arn:aws:iam::ACCT:role/PATH/ROLE`
        role_arn: String,
    },
    /// A federated user (`arn:aws:sts::ACCT:federated-user/NAME`).
    FederatedUser,
    /// An AWS service principal (`ec2.amazonaws.com`).
    Service,
    /// An unauthenticated caller.
    Anonymous,
}

/// The caller: its ARN (or service name), account and kind.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Principal {
    /// User / session / root / federated-user ARN, or the service name for services.
    pub arn: String,
    /// Account id; empty for services and anonymous callers.
    pub account: String,
    /// The kind of principal.
    pub kind: PrincipalKind,
}

impl Principal {
    /// Parse a user, role-session, root or federated-user ARN, or a service principal name
    /// (`ec2.amazonaws.com`). `"*"` or `"anonymous"` gives the anonymous principal.
    pub fn from_arn(arn_or_service: &str) -> Result<Principal, PolicyError> {
        let s = arn_or_service.trim();
        let bad = || PolicyError::invalid_input(format!("Invalid principal: {arn_or_service}"));
        if s == "*" || s.eq_ignore_ascii_case("anonymous") {
            return Ok(Principal::anonymous());
        }
        if !s.starts_with("arn:") {
            if !s.is_empty()
                && s.contains('.')
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
            {
                return Ok(Principal {
                    arn: s.to_string(),
                    account: String::new(),
                    kind: PrincipalKind::Service,
                });
            }
            return Err(bad());
        }
        let parts = crate::glob::arn_parts(s).ok_or_else(bad)?;
        let [_, partition, service, region, account, resource] = parts;
        if partition.is_empty()
            || !region.is_empty()
            || account.is_empty()
            || !account.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let kind = match (service, resource) {
            ("iam", "root") => PrincipalKind::Root,
            ("iam", r) if r.starts_with("user/") && name_ok(&r[5..]) => PrincipalKind::User,
            ("sts", r) if r.starts_with("assumed-role/") => {
                let rest = &r["assumed-role/".len()..];
                let (role, session) = rest.split_once('/').ok_or_else(bad)?;
                if role.is_empty() || session.is_empty() || session.contains('/') {
                    return Err(bad());
                }
                PrincipalKind::AssumedRole {
                    role_arn: format!("arn:{partition}:iam::{account}:role/{role}"),
                }
            }
            ("sts", r) if r.starts_with("federated-user/") && name_ok(&r[15..]) => {
                PrincipalKind::FederatedUser
            }
            _ => return Err(bad()),
        };
        Ok(Principal {
            arn: s.to_string(),
            account: account.to_string(),
            kind,
        })
    }

    /// The anonymous principal.
    pub fn anonymous() -> Principal {
        Principal {
            arn: "*".to_string(),
            account: String::new(),
            kind: PrincipalKind::Anonymous,
        }
    }

    /// A role session with an explicit role ARN (keeps the role's path, which the
    /// session ARN does not carry).
    pub fn assumed_role(session_arn: &str, role_arn: &str) -> Result<Principal, PolicyError> {
        let mut p = Principal::from_arn(session_arn)?;
        match &mut p.kind {
            PrincipalKind::AssumedRole { role_arn: r } => *r = role_arn.to_string(),
            _ => {
                return Err(PolicyError::invalid_input(format!(
                    "not a role session ARN: {session_arn}"
                )));
            }
        }
        Ok(p)
    }

    /// The ARN policies use for `aws:PrincipalArn`: the role ARN for role sessions.
    pub fn principal_arn(&self) -> &str {
        match &self.kind {
            PrincipalKind::AssumedRole { role_arn } => role_arn,
            _ => &self.arn,
        }
    }

    /// The value of `aws:PrincipalType`.
    pub fn principal_type(&self) -> &'static str {
        match self.kind {
            PrincipalKind::Root => "Account",
            PrincipalKind::User => "User",
            PrincipalKind::AssumedRole { .. } => "AssumedRole",
            PrincipalKind::FederatedUser => "FederatedUser",
            PrincipalKind::Service => "Service",
            PrincipalKind::Anonymous => "Anonymous",
        }
    }

    /// The value of `aws:username` (IAM users only).
    pub fn username(&self) -> Option<&str> {
        match self.kind {
            PrincipalKind::User => self.arn.rsplit('/').next(),
            _ => None,
        }
    }

    /// True for principals that have an identity side (an account with policies).
    pub(crate) fn has_identity_side(&self) -> bool {
        !matches!(self.kind, PrincipalKind::Service | PrincipalKind::Anonymous)
    }
}

fn name_ok(s: &str) -> bool {
    !s.is_empty() && !s.ends_with('/')
}
