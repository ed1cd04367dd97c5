//! Input checks shared by the services, with IAM's messages.

use crate::error::{Result, ServiceError};

fn invalid(field: &str, value: &str, pattern: &str) -> ServiceError {
    ServiceError::ValidationError(format!(
        "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: Member must satisfy regular expression pattern: {pattern}"
    ))
}

fn length(field: &str, value: &str, min: usize, max: usize) -> Result<()> {
    let n = value.chars().count();
    if n < min {
        return Err(ServiceError::ValidationError(format!(
            "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: Member must have length greater than or equal to {min}"
        )));
    }
    if n > max {
        return Err(ServiceError::ValidationError(format!(
            "1 validation error detected: Value at '{field}' failed to satisfy constraint: Member must have length less than or equal to {max}"
        )));
    }
    Ok(())
}

/// User, group, role, instance-profile and policy names: `[\w+=,.@-]+`.
pub fn name(field: &str, value: &str, max: usize) -> Result<()> {
    length(field, value, 1, max)?;
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
    {
        return Err(invalid(field, value, "[\\w+=,.@-]+"));
    }
    Ok(())
}

/// IAM paths: `/` or `/a/b/`.
pub fn path(field: &str, value: &str) -> Result<()> {
    length(field, value, 1, 512)?;
    let ok = value.starts_with('/')
        && value.ends_with('/')
        && value.chars().all(|c| ('\u{21}'..='\u{7E}').contains(&c));
    if !ok {
        return Err(invalid(
            field,
            value,
            "(\\u002F)|(\\u002F[\\u0021-\\u007E]+\\u002F)",
        ));
    }
    Ok(())
}

/// The new name (of `max` characters at most) and new path of an
/// Update* call, where given.
pub fn renamed(
    name_field: &str,
    new_name: Option<&str>,
    max: usize,
    new_path: Option<&str>,
) -> Result<()> {
    if let Some(n) = new_name {
        name(name_field, n, max)?;
    }
    if let Some(p) = new_path {
        path("newPath", p)?;
    }
    Ok(())
}

pub fn path_prefix(field: &str, value: &str) -> Result<()> {
    length(field, value, 1, 512)?;
    if !value.starts_with('/') || !value.chars().all(|c| ('\u{21}'..='\u{7E}').contains(&c)) {
        return Err(invalid(field, value, "\\u002F[\\u0021-\\u007F]*"));
    }
    Ok(())
}

pub fn account_id(value: &str) -> Result<()> {
    if value.len() == 12 && value.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(ServiceError::InvalidInput(format!(
            "Account id '{value}' must be 12 digits."
        )))
    }
}

pub fn tags(tags: &[crate::model::Tag]) -> Result<()> {
    if tags.len() > 50 {
        return Err(ServiceError::LimitExceeded(
            "Cannot exceed quota for TagsPerUser: 50".into(),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for t in tags {
        length("tags.member.key", &t.key, 1, 128)?;
        length("tags.member.value", &t.value, 0, 256)?;
        if t.key.to_ascii_lowercase().starts_with("aws:") {
            return Err(ServiceError::InvalidInput(
                "User-defined tag keys can't start with \"aws:\".".into(),
            ));
        }
        if !seen.insert(t.key.to_ascii_lowercase()) {
            return Err(ServiceError::InvalidInput(
                "Duplicate tag keys found. Please note that Tag keys are case insensitive.".into(),
            ));
        }
    }
    Ok(())
}

/// `arn:aws:iam::ACCOUNT:policy/PATH/NAME` -> (account, path, name).
pub fn policy_arn(arn: &str) -> Result<(String, String, String)> {
    let bad = || ServiceError::InvalidInput(format!("ARN {arn} is not valid."));
    let rest = arn.strip_prefix("arn:aws:iam::").ok_or_else(bad)?;
    let (acct, res) = rest.split_once(':').ok_or_else(bad)?;
    if acct != "aws" && account_id(acct).is_err() {
        return Err(bad());
    }
    let res = res.strip_prefix("policy").ok_or_else(bad)?;
    if !res.starts_with('/') {
        return Err(bad());
    }
    let idx = res.rfind('/').ok_or_else(bad)?;
    let (p, n) = (&res[..=idx], &res[idx + 1..]);
    if n.is_empty() {
        return Err(bad());
    }
    Ok((acct.to_string(), p.to_string(), n.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn names_and_paths() {
        assert!(name("UserName", "alice+ops@x.y-z_1", 64).is_ok());
        assert!(name("UserName", "", 64).is_err());
        assert!(name("UserName", "a b", 64).is_err());
        assert!(name("UserName", &"a".repeat(65), 64).is_err());
        assert!(path("Path", "/").is_ok());
        assert!(path("Path", "/a/b/").is_ok());
        assert!(path("Path", "a/").is_err());
        assert!(path("Path", "/a").is_err());
        assert_eq!(
            policy_arn("arn:aws:iam::123456789012:policy/x/y/P").unwrap(),
            ("123456789012".into(), "/x/y/".into(), "P".into())
        );
        assert!(policy_arn("arn:aws:iam::123:policy/P").is_err());
        assert!(policy_arn("arn:aws:iam::aws:policy/").is_err());
    }
}
