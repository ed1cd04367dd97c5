//! AWS managed policies that the seed documents name, with their real
//! documents (see `managed/SOURCES.md`), under `arn:aws:iam::aws:policy/…`.

use keycard_policy::{Policy, PolicyKind};

use crate::model::{Change, Entity, ManagedPolicy, PolicyDoc, PolicyVersion};
use crate::{Keycard, Result};

/// (name, path, description, document).
pub const AWS_MANAGED: &[(&str, &str, &str, &str)] = &[
    (
        "AdministratorAccess",
        "/",
        "Provides full access to AWS services and resources.",
        include_str!("../managed/AdministratorAccess.json"),
    ),
    (
        "IAMReadOnlyAccess",
        "/",
        "Provides read only access to IAM via the AWS Management Console.",
        include_str!("../managed/IAMReadOnlyAccess.json"),
    ),
    (
        "AmazonS3ReadOnlyAccess",
        "/",
        "Provides read only access to all buckets via the AWS Management Console.",
        include_str!("../managed/AmazonS3ReadOnlyAccess.json"),
    ),
    (
        "AmazonS3FullAccess",
        "/",
        "Provides full access to all buckets via the AWS Management Console.",
        include_str!("../managed/AmazonS3FullAccess.json"),
    ),
    (
        "AmazonEC2ReadOnlyAccess",
        "/",
        "Provides read only access to Amazon EC2 via the AWS Management Console.",
        include_str!("../managed/AmazonEC2ReadOnlyAccess.json"),
    ),
    (
        "CloudWatchAgentServerPolicy",
        "/",
        "Permissions required to use AmazonCloudWatchAgent on servers",
        include_str!("../managed/CloudWatchAgentServerPolicy.json"),
    ),
    (
        "AmazonSSMManagedInstanceCore",
        "/",
        "The policy for Amazon EC2 Role to enable AWS Systems Manager service core functionality.",
        include_str!("../managed/AmazonSSMManagedInstanceCore.json"),
    ),
    (
        "ReadOnlyAccess",
        "/",
        "Provides read-only access to AWS services and resources.",
        include_str!("../managed/ReadOnlyAccess.json"),
    ),
    // From moto's snapshot (managed/extract_moto.py; see SOURCES.md).
    (
        "SecurityAudit",
        "/",
        "The security audit template grants access to read security configuration metadata. It is useful for software that audits the configuration of an AWS account.",
        include_str!("../managed/SecurityAudit.json"),
    ),
    (
        "ViewOnlyAccess",
        "/job-function/",
        "This policy grants permissions to view resources and basic metadata across all AWS services.",
        include_str!("../managed/ViewOnlyAccess.json"),
    ),
    (
        "AWSSupportAccess",
        "/",
        "Allow users to access the AWS Support Center.",
        include_str!("../managed/AWSSupportAccess.json"),
    ),
    (
        "AWSCloudShellFullAccess",
        "/",
        "Grants full access to AWS CloudShell",
        include_str!("../managed/AWSCloudShellFullAccess.json"),
    ),
    (
        "PowerUserAccess",
        "/",
        "Provides full access to AWS services and resources, but does not allow management of Users and groups.",
        include_str!("../managed/PowerUserAccess.json"),
    ),
    (
        "IAMFullAccess",
        "/",
        "Provides full access to IAM via the AWS Management Console.",
        include_str!("../managed/IAMFullAccess.json"),
    ),
    (
        "AmazonEC2FullAccess",
        "/",
        "Provides full access to Amazon EC2 via the AWS Management Console.",
        include_str!("../managed/AmazonEC2FullAccess.json"),
    ),
];

/// Make sure every AWS managed policy exists with its current document.
pub async fn install(kc: &Keycard) -> Result<()> {
    let mut changes = Vec::new();
    {
        let st = kc.state();
        for (name, path, desc, doc) in AWS_MANAGED {
            let arn = format!("arn:aws:iam::aws:policy{path}{name}");
            if st
                .policies
                .get(&arn)
                .and_then(|p| p.default_doc())
                .is_some_and(|d| d.text == *doc)
            {
                continue;
            }
            // AWS's own documents exceed customer quotas (ReadOnlyAccess):
            // compile them without the size check.
            let compiled =
                Policy::parse_unchecked_size(doc, PolicyKind::Identity).map_err(|e| {
                    crate::ServiceError::Internal(format!("managed policy {name}: {e}"))
                })?;
            let t = 1_423_008_000; // 2015-02-04, when AWS published them
            changes.push(Change::Put(Entity::Policy(ManagedPolicy {
                account: "aws".into(),
                name: (*name).into(),
                id: keycard_proto::ids::unique_id("ANPA", name.as_bytes()),
                path: (*path).into(),
                created: t,
                updated: t,
                description: Some((*desc).into()),
                default_version: "v1".into(),
                versions: vec![PolicyVersion {
                    id: "v1".into(),
                    doc: PolicyDoc {
                        text: (*doc).into(),
                        compiled: Some(std::sync::Arc::new(compiled)),
                    },
                    created: t,
                }],
                next_version: 2,
                tags: Vec::new(),
            })));
        }
    }
    if !changes.is_empty() {
        kc.mutate(|_| Ok((changes.clone(), ()))).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_document_compiles_and_names_are_unique() {
        let mut names = std::collections::BTreeSet::new();
        for (name, path, _, doc) in AWS_MANAGED {
            assert!(names.insert(*name), "{name} twice");
            assert!(path.starts_with('/') && path.ends_with('/'));
            Policy::parse_unchecked_size(doc, PolicyKind::Identity)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        for want in [
            "SecurityAudit",
            "ReadOnlyAccess",
            "ViewOnlyAccess",
            "AWSSupportAccess",
            "AWSCloudShellFullAccess",
            "AdministratorAccess",
            "PowerUserAccess",
            "IAMFullAccess",
            "AmazonS3FullAccess",
            "AmazonS3ReadOnlyAccess",
            "AmazonEC2FullAccess",
            "AmazonEC2ReadOnlyAccess",
            "AmazonSSMManagedInstanceCore",
        ] {
            assert!(names.contains(want), "{want} missing");
        }
    }
}
