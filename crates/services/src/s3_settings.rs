//! S3 bucket settings: CORS, default encryption, Block Public Access,
//! Object Ownership, ACLs and the stored-only website, logging and
//! notification configurations. They live in the bucket record, so both
//! store backends keep them and deleting the bucket removes them.
//!
//! Also AWS's definition of a "public" bucket policy and ACL (Block Public
//! Access, GetBucketPolicyStatus) and the translation of ACL grants into
//! resource-policy statements, so ACLs take part in authorization the way
//! AWS evaluates them: a grant allows like a bucket-policy statement, an
//! explicit deny still wins.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Keycard;
use crate::error::{Result, ServiceError};
use crate::model::{Bucket, PolicyDoc};

/// The group every requester belongs to, anonymous ones included.
pub const ALL_USERS: &str = "http://acs.amazonaws.com/groups/global/AllUsers";
/// The group of every signed (AWS account) requester.
pub const AUTHENTICATED_USERS: &str = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers";
/// S3 server access log delivery.
pub const LOG_DELIVERY: &str = "http://acs.amazonaws.com/groups/s3/LogDelivery";

/// Object Ownership values.
pub const OWNERSHIP_VALUES: &[&str] = &[
    "BucketOwnerPreferred",
    "ObjectWriter",
    "BucketOwnerEnforced",
];
/// The ownership new buckets get (AWS, since April 2023).
pub const OWNER_ENFORCED: &str = "BucketOwnerEnforced";

/// One CORS rule, as PutBucketCors takes it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CorsRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub methods: Vec<String>,
    pub origins: Vec<String>,
    #[serde(default)]
    pub headers: Vec<String>,
    #[serde(default)]
    pub expose: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<i64>,
}

/// Default encryption (`ApplyServerSideEncryptionByDefault`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Encryption {
    pub algorithm: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key: Option<String>,
    #[serde(default)]
    pub bucket_key: bool,
}

impl Default for Encryption {
    /// SSE-S3: every bucket's encryption since January 2023.
    fn default() -> Self {
        Encryption {
            algorithm: "AES256".into(),
            kms_key: None,
            bucket_key: false,
        }
    }
}

/// The four Block Public Access switches.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PublicAccessBlock {
    pub block_public_acls: bool,
    pub ignore_public_acls: bool,
    pub block_public_policy: bool,
    pub restrict_public_buckets: bool,
}

impl PublicAccessBlock {
    /// All four on: what new buckets get (AWS, since April 2023).
    pub fn all() -> Self {
        PublicAccessBlock {
            block_public_acls: true,
            ignore_public_acls: true,
            block_public_policy: true,
            restrict_public_buckets: true,
        }
    }
}

/// Who an ACL grant is for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum Grantee {
    /// A canonical user id and the account it stands for.
    Account { id: String, account: String },
    /// A predefined group, by URI.
    Group(String),
}

/// One ACL grant.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Grant {
    pub grantee: Grantee,
    pub permission: String,
}

/// ACL permissions.
pub const PERMISSIONS: &[&str] = &["FULL_CONTROL", "WRITE", "WRITE_ACP", "READ", "READ_ACP"];

/// A bucket's settings. Buckets created before keycard had them
/// deserialize to the empty value: no Block Public Access, no ownership
/// controls (ACLs enabled), as such buckets are on AWS.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BucketSettings {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cors: Vec<CorsRule>,
    /// `None`: the SSE-S3 default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_access_block: Option<PublicAccessBlock>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ownership: Option<String>,
    /// Grants besides the owner's FULL_CONTROL (`None`: just that).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl: Option<Vec<Grant>>,
    /// Stored-only configurations, as validated XML (root element included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub website: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification: Option<String>,
}

impl BucketSettings {
    /// A new bucket's: Block Public Access on, ACLs disabled.
    pub fn new_bucket(ownership: Option<&str>) -> Self {
        BucketSettings {
            public_access_block: Some(PublicAccessBlock::all()),
            ownership: Some(ownership.unwrap_or(OWNER_ENFORCED).to_string()),
            ..Default::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == BucketSettings::default()
    }

    /// Whether ACLs are disabled (Object Ownership `BucketOwnerEnforced`).
    pub fn acls_disabled(&self) -> bool {
        self.ownership.as_deref() == Some(OWNER_ENFORCED)
    }

    pub fn pab(&self) -> PublicAccessBlock {
        self.public_access_block.unwrap_or_default()
    }

    /// The encryption objects get when the request names none.
    pub fn default_encryption(&self) -> Encryption {
        self.encryption.clone().unwrap_or_default()
    }
}

// ------------------------------------------------------------- "public"

/// Condition keys whose fixed values make a wildcard-principal statement
/// non-public (AWS, "The meaning of public").
const FIXING_KEYS: &[&str] = &[
    "aws:sourcearn",
    "aws:sourcevpc",
    "aws:sourcevpce",
    "aws:sourceowner",
    "aws:sourceaccount",
    "aws:sourceorgid",
    "aws:sourceorgpaths",
    "aws:userid",
    "aws:principalarn",
    "aws:principalaccount",
    "aws:principalorgid",
    "aws:principalorgpaths",
    "aws:principalservicename",
    "s3:x-amz-server-side-encryption-aws-kms-key-id",
    "s3:dataaccesspointarn",
    "s3:dataaccesspointaccount",
];

fn values(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    }
}

fn has_wildcard(v: &Value) -> bool {
    v.as_str()
        .is_none_or(|s| s.contains('*') || s.contains('?'))
}

/// A principal element that names only fixed principals (accounts, ARNs
/// without wildcards, services, canonical users).
fn fixed_principal(p: &Value) -> bool {
    match p {
        Value::Object(m) => m
            .values()
            .all(|v| values(v).iter().all(|x| !has_wildcard(x))),
        _ => false,
    }
}

/// An `aws:SourceIp` value narrow enough to count as fixed (unverified
/// bound: wider than /8 for IPv4 or /32 for IPv6 is public).
fn fixed_cidr(v: &Value) -> bool {
    let Some(s) = v.as_str() else { return false };
    let (ip, len) = match s.split_once('/') {
        Some((ip, len)) => (ip, len.parse::<u8>().ok()),
        None => (s, Some(128)),
    };
    match (ip.parse::<std::net::IpAddr>(), len) {
        (Ok(std::net::IpAddr::V4(_)), Some(n)) => n >= 8,
        (Ok(std::net::IpAddr::V6(_)), Some(n)) => n >= 32,
        _ => false,
    }
}

/// Whether a statement's conditions pin the requester to fixed values.
fn fixing_condition(cond: Option<&Value>) -> bool {
    let Some(Value::Object(ops)) = cond else {
        return false;
    };
    ops.iter().any(|(op, keys)| {
        let negated = op.contains("Not");
        let Value::Object(keys) = keys else {
            return false;
        };
        !negated
            && keys.iter().any(|(k, v)| {
                let k = k.to_ascii_lowercase();
                let vals = values(v);
                if k == "aws:sourceip" {
                    return !vals.is_empty() && vals.iter().all(|x| fixed_cidr(x));
                }
                FIXING_KEYS.iter().any(|f| f.eq_ignore_ascii_case(&k))
                    && !vals.is_empty()
                    && vals.iter().all(|x| !has_wildcard(x))
            })
    })
}

/// Whether a bucket policy is public: some Allow statement grants to a
/// wildcard (or `NotPrincipal`) without a condition that fixes who can
/// use it.
pub fn policy_is_public(text: &str) -> bool {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return false;
    };
    let stmts = v.get("Statement").map(values).unwrap_or_default();
    stmts.iter().any(|s| {
        let allow = s.get("Effect").and_then(Value::as_str) == Some("Allow");
        let open = match (s.get("Principal"), s.get("NotPrincipal")) {
            (_, Some(_)) => true,
            (Some(p), None) => !fixed_principal(p),
            (None, None) => false,
        };
        allow && open && !fixing_condition(s.get("Condition"))
    })
}

/// Whether a grant makes an ACL public (to everyone or every account).
pub fn grant_is_public(g: &Grant) -> bool {
    matches!(&g.grantee, Grantee::Group(u) if u == ALL_USERS || u == AUTHENTICATED_USERS)
}

// ------------------------------------------------------- ACLs as policy

/// The S3 actions an ACL permission grants on a bucket or an object
/// (AWS, "Mapping of ACL permissions and access policy permissions").
fn acl_actions(permission: &str, object: bool) -> &'static [&'static str] {
    match (object, permission) {
        (false, "READ") => &[
            "s3:ListBucket",
            "s3:ListBucketVersions",
            "s3:ListBucketMultipartUploads",
        ],
        (false, "WRITE") => &["s3:PutObject", "s3:DeleteObject"],
        (false, "READ_ACP") => &["s3:GetBucketAcl"],
        (false, "WRITE_ACP") => &["s3:PutBucketAcl"],
        (false, "FULL_CONTROL") => &[
            "s3:ListBucket",
            "s3:ListBucketVersions",
            "s3:ListBucketMultipartUploads",
            "s3:PutObject",
            "s3:DeleteObject",
            "s3:GetBucketAcl",
            "s3:PutBucketAcl",
        ],
        (true, "READ") => &["s3:GetObject", "s3:GetObjectVersion"],
        (true, "READ_ACP") => &["s3:GetObjectAcl", "s3:GetObjectVersionAcl"],
        (true, "WRITE_ACP") => &["s3:PutObjectAcl", "s3:PutObjectVersionAcl"],
        (true, "FULL_CONTROL") => &[
            "s3:GetObject",
            "s3:GetObjectVersion",
            "s3:GetObjectAcl",
            "s3:GetObjectVersionAcl",
            "s3:PutObjectAcl",
            "s3:PutObjectVersionAcl",
        ],
        _ => &[],
    }
}

/// One grant as a policy statement; `None` for grants that add nothing
/// (the owner's own, which its identities get through IAM anyway).
fn grant_statement(g: &Grant, owner: &str, resource: &str, object: bool) -> Option<Value> {
    let actions = acl_actions(&g.permission, object);
    if actions.is_empty() {
        return None;
    }
    let (principal, condition) = match &g.grantee {
        Grantee::Account { account, .. } if account == owner => return None,
        Grantee::Account { account, .. } => {
            (json!({"AWS": format!("arn:aws:iam::{account}:root")}), None)
        }
        Grantee::Group(u) if u == ALL_USERS => (json!("*"), None),
        Grantee::Group(u) if u == AUTHENTICATED_USERS => (
            json!("*"),
            Some(json!({"StringNotEquals": {"aws:PrincipalType": "Anonymous"}})),
        ),
        Grantee::Group(u) if u == LOG_DELIVERY => {
            (json!({"Service": "logging.s3.amazonaws.com"}), None)
        }
        Grantee::Group(_) => return None,
    };
    let mut st =
        json!({"Effect": "Allow", "Principal": principal, "Action": actions, "Resource": resource});
    if let (Some(c), Some(m)) = (condition, st.as_object_mut()) {
        m.insert("Condition".into(), c);
    }
    Some(st)
}

/// The resource policy a request on `bucket` (or an object of it, with the
/// object's grants) is decided with: the bucket policy, unless Block Public
/// Access restricts a public one for a caller from outside the owner's
/// account, plus the ACL grants in force (none when ACLs are disabled;
/// public ones dropped under IgnorePublicAcls). `None` changes nothing:
/// use `bucket.policy` as it is.
pub fn effective_policy(
    bucket: &Bucket,
    object: Option<(&str, &[Grant])>,
    caller_account: &str,
) -> Option<Option<PolicyDoc>> {
    let s = &bucket.settings;
    let pab = s.pab();
    let restricted = pab.restrict_public_buckets
        && caller_account != bucket.account
        && bucket
            .policy
            .as_ref()
            .is_some_and(|p| policy_is_public(&p.text));
    let mut grants: Vec<Value> = Vec::new();
    if !s.acls_disabled() {
        let keep = |g: &&Grant| !(pab.ignore_public_acls && grant_is_public(g));
        let bucket_arn = format!("arn:aws:s3:::{}", bucket.name);
        for g in s.acl.iter().flatten().filter(keep) {
            grants.extend(grant_statement(g, &bucket.account, &bucket_arn, false));
            // WRITE on the bucket covers every object in it.
            if g.permission == "WRITE" || g.permission == "FULL_CONTROL" {
                let objs = format!("{bucket_arn}/*");
                grants.extend(grant_statement(g, &bucket.account, &objs, false));
            }
        }
        if let Some((key, og)) = object {
            let arn = format!("arn:aws:s3:::{}/{key}", bucket.name);
            for g in og.iter().filter(keep) {
                grants.extend(grant_statement(g, &bucket.account, &arn, true));
            }
        }
    }
    if grants.is_empty() && !restricted {
        return None;
    }
    let mut stmts: Vec<Value> = Vec::new();
    if !restricted && let Some(p) = &bucket.policy {
        let v: Value = serde_json::from_str(&p.text).ok()?;
        stmts.extend(
            v.get("Statement")
                .map(values)
                .unwrap_or_default()
                .into_iter()
                .cloned(),
        );
    }
    if stmts.is_empty() && grants.is_empty() {
        return Some(None);
    }
    stmts.extend(grants);
    let doc = json!({"Version": "2012-10-17", "Statement": stmts}).to_string();
    Some(PolicyDoc::parse(&doc, keycard_policy::PolicyKind::Resource).ok())
}

// ---------------------------------------------------------------- store

impl Keycard {
    /// Change a bucket's settings under the writer lock.
    pub async fn update_bucket_settings(
        &self,
        name: &str,
        change: impl Fn(&mut BucketSettings),
    ) -> Result<()> {
        self.update_bucket(name, |b| change(&mut b.settings)).await
    }

    /// Every account's id (canonical user ids are resolved against them).
    pub fn account_ids(&self) -> Vec<String> {
        self.state().accounts.keys().cloned().collect()
    }

    /// An object's ACL grants (empty when it has none or doesn't exist);
    /// the authorization path clones only these.
    pub fn object_acl(&self, bucket: &str, key: &str) -> Vec<Grant> {
        self.state()
            .objects
            .get(bucket)
            .and_then(|m| m.get(key))
            .map(|o| o.acl.clone())
            .unwrap_or_default()
    }

    /// Replace an object's ACL grants.
    pub async fn put_object_acl(&self, bucket: &str, key: &str, acl: Vec<Grant>) -> Result<()> {
        self.mutate(|st| {
            let objs = st.objects.get(bucket).ok_or_else(|| {
                ServiceError::NoSuchBucket("The specified bucket does not exist".into())
            })?;
            let mut o = objs.get(key).cloned().ok_or_else(|| {
                ServiceError::NoSuchKey("The specified key does not exist.".into())
            })?;
            o.acl = acl.clone();
            Ok((
                vec![crate::model::Change::Put(crate::model::Entity::Object(o))],
                (),
            ))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_policies_by_aws_definition() {
        let st = |s: Value| json!({"Version": "2012-10-17", "Statement": [s]}).to_string();
        let open = json!({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"});
        assert!(policy_is_public(&st(open.clone())));
        let mut aws_star = open.clone();
        aws_star["Principal"] = json!({"AWS": "*"});
        assert!(policy_is_public(&st(aws_star)));
        let mut acct = open.clone();
        acct["Principal"] = json!({"AWS": "arn:aws:iam::123456789012:root"});
        assert!(!policy_is_public(&st(acct)));
        let mut svc = open.clone();
        svc["Principal"] = json!({"Service": "cloudtrail.amazonaws.com"});
        assert!(!policy_is_public(&st(svc)));
        let mut deny = open.clone();
        deny["Effect"] = json!("Deny");
        assert!(!policy_is_public(&st(deny)));
        let mut pinned = open.clone();
        pinned["Condition"] = json!({"StringEquals": {"aws:SourceAccount": "123456789012"}});
        assert!(!policy_is_public(&st(pinned)));
        let mut like = open.clone();
        like["Condition"] = json!({"StringLike": {"aws:SourceAccount": "12*"}});
        assert!(policy_is_public(&st(like)));
        let mut ip = open.clone();
        ip["Condition"] = json!({"IpAddress": {"aws:SourceIp": "10.0.0.0/16"}});
        assert!(!policy_is_public(&st(ip.clone())));
        ip["Condition"] = json!({"IpAddress": {"aws:SourceIp": "0.0.0.0/0"}});
        assert!(policy_is_public(&st(ip)));
    }

    #[test]
    fn grants_become_statements() {
        let g = Grant {
            grantee: Grantee::Group(ALL_USERS.into()),
            permission: "READ".into(),
        };
        let s = grant_statement(&g, "111111111111", "arn:aws:s3:::b/k", true).expect("stmt");
        assert_eq!(s["Principal"], json!("*"));
        assert_eq!(s["Action"], json!(["s3:GetObject", "s3:GetObjectVersion"]));
        let own = Grant {
            grantee: Grantee::Account {
                id: "x".into(),
                account: "111111111111".into(),
            },
            permission: "FULL_CONTROL".into(),
        };
        assert!(grant_statement(&own, "111111111111", "arn:aws:s3:::b", false).is_none());
    }
}
