//! The rules: what a finding is about, how bad, how to fix it, and what
//! AWS Config / Security Hub / Prowler call the same check. `evaluate` is a
//! pure function of the state and the time, so every rule is testable with
//! any clock.

use std::collections::{BTreeMap, BTreeSet};

use keycard_policy::{Context, PolicyRef, PolicySet, Principal, Request, evaluate as eval_policy};
use serde::Serialize;

use crate::ec2::Instance;
use crate::model::{KeyStatus, PolicyDoc, Tag};
use crate::state::State;

/// ASFF severity labels, lowest first.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Informational => "INFORMATIONAL",
            Severity::Low => "LOW",
            Severity::Medium => "MEDIUM",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        }
    }

    /// ASFF's `Severity.Normalized` for the label.
    pub fn normalized(self) -> u32 {
        match self {
            Severity::Informational => 0,
            Severity::Low => 30,
            Severity::Medium => 50,
            Severity::High => 70,
            Severity::Critical => 90,
        }
    }

    pub const ALL: [Severity; 5] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Informational,
    ];
}

/// One rule of the table.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// Stable: findings, suppressions and dashboards refer to it.
    pub id: &'static str,
    pub title: &'static str,
    pub severity: Severity,
    /// ASFF resource type (`AwsEc2Instance`, `AwsIamUser`, …).
    pub resource_type: &'static str,
    pub remediation: &'static str,
    pub config_rule: Option<&'static str>,
    pub security_hub: Option<&'static str>,
    pub prowler: Option<&'static str>,
    /// Counts towards the exposed-credential trend.
    pub exposed_credential: bool,
}

const fn rule(
    id: &'static str,
    title: &'static str,
    severity: Severity,
    resource_type: &'static str,
    remediation: &'static str,
) -> Rule {
    Rule {
        id,
        title,
        severity,
        resource_type,
        remediation,
        config_rule: None,
        security_hub: None,
        prowler: None,
        exposed_credential: false,
    }
}

const fn aws(
    mut r: Rule,
    config: Option<&'static str>,
    hub: Option<&'static str>,
    prowler: Option<&'static str>,
) -> Rule {
    r.config_rule = config;
    r.security_hub = hub;
    r.prowler = prowler;
    r
}

const fn exposed(mut r: Rule) -> Rule {
    r.exposed_credential = true;
    r
}

pub const EC2_NO_PROFILE: &str = "KC-EC2-001";
pub const EC2_IMDSV1: &str = "KC-EC2-002";
pub const EC2_HOP_LIMIT: &str = "KC-EC2-003";
pub const EC2_ROLE_UNREACHABLE: &str = "KC-EC2-004";
pub const EC2_USER_DATA_SECRET: &str = "KC-EC2-005";
pub const EC2_NO_OWNER: &str = "KC-EC2-006";
pub const EC2_CREDS_OUTSIDE: &str = "KC-EC2-007";
pub const EC2_CREDS_OTHER_INSTANCE: &str = "KC-EC2-008";
pub const EC2_CREDS_AFTER: &str = "KC-EC2-009";
pub const IAM_KEY_OLD: &str = "KC-IAM-001";
pub const IAM_KEY_UNUSED_45: &str = "KC-IAM-002";
pub const IAM_KEY_UNUSED_90: &str = "KC-IAM-003";
pub const IAM_ROOT_KEY: &str = "KC-IAM-004";
pub const IAM_ADMIN: &str = "KC-IAM-005";
pub const IAM_SERVICE_WIDE: &str = "KC-IAM-006";
pub const IAM_PASSROLE_ANY: &str = "KC-IAM-007";
pub const IAM_ROLE_SHARED: &str = "KC-IAM-008";
pub const IAM_ROLE_BROAD_MANY: &str = "KC-IAM-009";
pub const IAM_ROLE_UNUSED: &str = "KC-IAM-010";
pub const IAM_ROLE_NO_OWNER: &str = "KC-IAM-011";
pub const IAM_KEY_AFTER_MIGRATION: &str = "KC-IAM-012";
pub const IAM_CONSOLE_NO_MFA: &str = "KC-IAM-013";
pub const IAM_PASSWORD_UNUSED: &str = "KC-IAM-014";
pub const SCAN_KEY_EXPOSED: &str = "KC-SCAN-001";

/// Every rule keycard evaluates.
pub static RULES: &[Rule] = &[
    aws(
        rule(
            EC2_NO_PROFILE,
            "EC2 instance has no IAM instance profile",
            Severity::Medium,
            "AwsEc2Instance",
            "Create a role trusted by ec2.amazonaws.com with only the permissions the workload needs, put it in an instance profile and associate it (aws ec2 associate-iam-instance-profile); then remove any access keys the workload carried.",
        ),
        Some("ec2-instance-profile-attached"),
        None,
        Some("ec2_instance_profile_attached"),
    ),
    aws(
        rule(
            EC2_IMDSV1,
            "EC2 instance allows IMDSv1 (HttpTokens optional)",
            Severity::High,
            "AwsEc2Instance",
            "Require session tokens: aws ec2 modify-instance-metadata-options --instance-id ID --http-tokens required --http-endpoint enabled.",
        ),
        Some("ec2-imdsv2-check"),
        Some("EC2.8"),
        Some("ec2_instance_imdsv2_enabled"),
    ),
    rule(
        EC2_HOP_LIMIT,
        "EC2 instance metadata hop limit above 1 without a container tag",
        Severity::Low,
        "AwsEc2Instance",
        "Set --http-put-response-hop-limit 1 unless the instance runs containers that need the metadata service (then tag it keycard:containers=true to record why).",
    ),
    rule(
        EC2_ROLE_UNREACHABLE,
        "EC2 instance has a role but its metadata endpoint is disabled",
        Severity::Low,
        "AwsEc2Instance",
        "Enable the metadata endpoint (--http-endpoint enabled, with --http-tokens required) or disassociate the unused instance profile.",
    ),
    exposed(aws(
        rule(
            EC2_USER_DATA_SECRET,
            "EC2 instance user data contains credentials",
            Severity::High,
            "AwsEc2Instance",
            "Deactivate and delete the exposed key (aws iam update-access-key / delete-access-key), give the instance a role instead, and replace the user data (stop, modify-instance-attribute --user-data, start).",
        ),
        None,
        None,
        Some("ec2_instance_secrets_user_data"),
    )),
    rule(
        EC2_NO_OWNER,
        "EC2 instance has no owner tag",
        Severity::Informational,
        "AwsEc2Instance",
        "Tag the instance with Owner (and App / Environment) as the tagging strategy asks: aws ec2 create-tags --resources ID --tags Key=Owner,Value=TEAM.",
    ),
    exposed(rule(
        EC2_CREDS_OUTSIDE,
        "Instance role credentials used outside their instance (GuardDuty InstanceCredentialExfiltration.OutsideAWS)",
        Severity::High,
        "AwsEc2Instance",
        "Treat the session as stolen: revoke it (aws iam put-role-policy with an AWSRevokeOlderSessions-style deny on aws:TokenIssueTime, or replace the instance profile), find how it left the instance (SSRF, IMDSv1, a copied file), require IMDSv2, and run keycard with --instance-credentials bound or attach AWS's aws:SourceVpc / aws:VpcSourceIp deny policy.",
    )),
    exposed(rule(
        EC2_CREDS_OTHER_INSTANCE,
        "Instance role credentials used from another instance (GuardDuty InstanceCredentialExfiltration.InsideAWS)",
        Severity::High,
        "AwsEc2Instance",
        "Treat the session as stolen: revoke it, find how the other instance obtained it, and bind instance credentials to their instance (--instance-credentials bound, or AWS's aws:SourceVpc / aws:VpcSourceIp deny policy).",
    )),
    rule(
        EC2_CREDS_AFTER,
        "Instance role credentials used after their instance stopped, terminated or changed role (refused)",
        Severity::Medium,
        "AwsEc2Instance",
        "The calls were refused, but someone holds a copy of the instance's old credentials: find where they were copied to and remove them; review the calls in the audit trail.",
    ),
    aws(
        rule(
            IAM_KEY_OLD,
            "Access key older than 90 days",
            Severity::Medium,
            "AwsIamAccessKey",
            "Rotate: create a second key, move the workload to it (better: to a role), deactivate the old key, then delete it.",
        ),
        Some("access-keys-rotated"),
        Some("IAM.3"),
        Some("iam_rotate_access_key_90_days"),
    ),
    aws(
        rule(
            IAM_KEY_UNUSED_45,
            "Access key unused for 45 days",
            Severity::Medium,
            "AwsIamAccessKey",
            "Deactivate the key (aws iam update-access-key --status Inactive) and delete it once nothing breaks.",
        ),
        None,
        Some("IAM.22"),
        Some("iam_user_accesskey_unused"),
    ),
    aws(
        rule(
            IAM_KEY_UNUSED_90,
            "Access key unused for 90 days",
            Severity::Medium,
            "AwsIamAccessKey",
            "Delete the key (aws iam delete-access-key).",
        ),
        Some("iam-user-unused-credentials-check"),
        Some("IAM.8"),
        None,
    ),
    exposed(aws(
        rule(
            IAM_ROOT_KEY,
            "Root user has an access key",
            Severity::Critical,
            "AwsAccount",
            "Delete the root user's access keys; use IAM roles or users for every workload.",
        ),
        Some("iam-root-access-key-check"),
        Some("IAM.4"),
        Some("iam_no_root_access_key"),
    )),
    aws(
        rule(
            IAM_ADMIN,
            "Administrator access (* on *) attached",
            Severity::High,
            "AwsIamRole",
            "Replace the policy with one listing the actions and resources the principal uses (keycard's policy generation from the audit trail gives a start).",
        ),
        Some("iam-policy-no-statements-with-admin-access"),
        Some("IAM.1"),
        Some("iam_customer_attached_policy_no_administrative_privileges"),
    ),
    rule(
        IAM_SERVICE_WIDE,
        "Service-wide wildcard on IAM or STS (iam:* / sts:*) granted",
        Severity::High,
        "AwsIamRole",
        "Grant the specific iam:/sts: actions needed, on specific resources; iam:* lets the principal grant itself anything.",
    ),
    aws(
        rule(
            IAM_PASSROLE_ANY,
            "iam:PassRole allowed on any role",
            Severity::Medium,
            "AwsIamRole",
            "Limit iam:PassRole to the role ARNs the principal must pass, with an iam:PassedToService condition.",
        ),
        None,
        None,
        Some("iam_policy_allows_privilege_escalation"),
    ),
    rule(
        IAM_ROLE_SHARED,
        "One instance role shared across owners, apps or environments",
        Severity::Medium,
        "AwsIamRole",
        "Give each workload (owner / app / environment) its own role and instance profile with its own least-privilege policy.",
    ),
    rule(
        IAM_ROLE_BROAD_MANY,
        "Broad role used by many instances",
        Severity::High,
        "AwsIamRole",
        "Split the role per workload and narrow each one's permissions; a compromise of any of these instances gets all of them.",
    ),
    rule(
        IAM_ROLE_UNUSED,
        "Role unused for 90 days",
        Severity::Low,
        "AwsIamRole",
        "Delete the role (and its instance profiles) if nothing needs it.",
    ),
    rule(
        IAM_ROLE_NO_OWNER,
        "Role has no owner tag",
        Severity::Informational,
        "AwsIamRole",
        "Tag the role with Owner: aws iam tag-role --role-name NAME --tags Key=Owner,Value=TEAM.",
    ),
    exposed(rule(
        IAM_KEY_AFTER_MIGRATION,
        "User access key still active on an instance that has a role",
        Severity::High,
        "AwsIamAccessKey",
        "The workload moved to an instance role: deactivate and delete the user's key (aws iam update-access-key --status Inactive, then delete-access-key).",
    )),
    aws(
        rule(
            IAM_CONSOLE_NO_MFA,
            "IAM user with a console password and no MFA device",
            Severity::High,
            "AwsIamUser",
            "Enable a virtual MFA device for the user (aws iam create-virtual-mfa-device, then enable-mfa-device with two consecutive codes), or delete the login profile if the user needs no console access.",
        ),
        Some("mfa-enabled-for-iam-console-access"),
        Some("IAM.5"),
        Some("iam_user_mfa_enabled_console_access"),
    ),
    aws(
        rule(
            IAM_PASSWORD_UNUSED,
            "Console password unused for 45 days",
            Severity::Medium,
            "AwsIamUser",
            "Delete the user's login profile (aws iam delete-login-profile) if console access is not needed.",
        ),
        None,
        Some("IAM.22"),
        Some("iam_user_console_access_unused"),
    ),
    exposed(rule(
        SCAN_KEY_EXPOSED,
        "Access key of this account found in files or git history (keycard scan)",
        Severity::High,
        "AwsIamAccessKey",
        "Deactivate and delete the key (it is in someone's files or repository history for good), move the workload to a role, and rescan.",
    )),
];

pub fn find(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}

/// What a rule saw on one resource at evaluation time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub rule: &'static str,
    pub account: String,
    pub resource: String,
    pub severity: Severity,
    pub detail: String,
}

/// Facts from outside the entity state (the audit trail, scans).
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// User access key ids seen signing calls from an instance's address,
    /// with that instance id.
    pub keys_used_from_instances: BTreeMap<String, String>,
    /// Key ids `keycard scan` found, with where.
    pub scanned_keys: BTreeMap<String, Vec<String>>,
    /// Instance credentials used from elsewhere.
    pub sightings: Vec<crate::binding::Sighting>,
}

/// How to read user data for secrets (the scanner crate plugs in here).
pub type SecretScan = fn(&[u8]) -> Vec<String>;

const DAY: i64 = 86_400;

/// Evaluate every rule over the state at time `now`.
pub fn evaluate(st: &State, now: i64, facts: &Facts, scan: SecretScan) -> Vec<Observation> {
    let mut out = Vec::new();
    instances(st, scan, &mut out);
    access_keys(st, now, facts, &mut out);
    passwords(st, now, &mut out);
    let on_instances = instance_roles(st);
    policies(st, &on_instances, &mut out);
    roles(st, now, &on_instances, &mut out);
    credential_sightings(facts, &mut out);
    out.sort_by(|a, b| (a.rule, &a.resource).cmp(&(b.rule, &b.resource)));
    out.dedup_by(|a, b| a.rule == b.rule && a.resource == b.resource);
    out
}

fn obs(rule: &'static str, account: &str, resource: String, detail: String) -> Observation {
    let severity = find(rule).map(|r| r.severity).unwrap_or(Severity::Medium);
    Observation {
        rule,
        account: account.to_string(),
        resource,
        severity,
        detail,
    }
}

fn tag<'a>(tags: &'a [Tag], names: &[&str]) -> Option<&'a str> {
    tags.iter()
        .find(|t| names.iter().any(|n| t.key.eq_ignore_ascii_case(n)))
        .map(|t| t.value.as_str())
}

const OWNER: &[&str] = &["owner", "team"];
const APP: &[&str] = &["app", "application", "service", "workload"];
const ENV: &[&str] = &["environment", "env", "stage"];

/// Instances that count: not terminated.
fn live(st: &State) -> impl Iterator<Item = &Instance> {
    st.instances
        .values()
        .map(|i| i.as_ref())
        .filter(|i| !i.is_terminated())
}

/// One finding per instance and kind of misuse; they stay open until
/// suppressed (archived), as GuardDuty's do: what happened stays true.
fn credential_sightings(facts: &Facts, out: &mut Vec<Observation>) {
    use crate::binding::{INSIDE_AWS, OUTSIDE_AWS};
    for s in &facts.sightings {
        let rule = match s.finding_type.as_str() {
            OUTSIDE_AWS => EC2_CREDS_OUTSIDE,
            INSIDE_AWS => EC2_CREDS_OTHER_INSTANCE,
            _ => EC2_CREDS_AFTER,
        };
        let sources: Vec<&str> = s.sources.keys().map(String::as_str).collect();
        let calls: Vec<String> = s.calls.iter().map(|(c, n)| format!("{c}×{n}")).collect();
        let mut detail = format!(
            "{}: session {} (key {}) used from {}",
            s.instance_id,
            s.session_arn,
            s.access_key_id,
            sources.join(", ")
        );
        if let Some(i) = &s.remote_instance_id {
            detail.push_str(&format!(" over instance {i}"));
        }
        if let Some(r) = &s.reason {
            detail.push_str(&format!(" after {r}"));
        }
        detail.push_str(&format!(
            "; calls {}; {} refused; first seen {}, last seen {}",
            calls.join(", "),
            s.denied,
            crate::sts::iso8601(s.first_seen),
            crate::sts::iso8601(s.last_seen)
        ));
        out.push(obs(rule, &s.account, s.instance_arn(), detail));
    }
}

fn instances(st: &State, scan: SecretScan, out: &mut Vec<Observation>) {
    for i in live(st) {
        let arn = i.arn();
        if i.profile.is_none() {
            out.push(obs(
                EC2_NO_PROFILE,
                &i.account,
                arn.clone(),
                format!("{} ({}) runs with no role", i.id, i.state),
            ));
        }
        let m = &i.metadata;
        if m.http_endpoint == "enabled" && m.http_tokens != "required" {
            out.push(obs(
                EC2_IMDSV1,
                &i.account,
                arn.clone(),
                format!("{}: HttpTokens={}", i.id, m.http_tokens),
            ));
        }
        let containers = tag(&i.tags, &["keycard:containers"]).is_some_and(|v| v == "true");
        if m.hop_limit > 1 && !containers {
            out.push(obs(
                EC2_HOP_LIMIT,
                &i.account,
                arn.clone(),
                format!("{}: HttpPutResponseHopLimit={}", i.id, m.hop_limit),
            ));
        }
        if i.profile.is_some() && m.http_endpoint == "disabled" {
            out.push(obs(
                EC2_ROLE_UNREACHABLE,
                &i.account,
                arn.clone(),
                format!("{}: role associated, HttpEndpoint=disabled", i.id),
            ));
        }
        if tag(&i.tags, OWNER).is_none() {
            out.push(obs(
                EC2_NO_OWNER,
                &i.account,
                arn.clone(),
                format!("{} has no Owner tag", i.id),
            ));
        }
        user_data(st, i, scan, out);
    }
}

/// Key ids (and private keys) in the instance's user data; a key that is
/// live in keycard makes the finding critical.
fn user_data(st: &State, i: &Instance, scan: SecretScan, out: &mut Vec<Observation>) {
    let Some(ud) = &i.user_data else { return };
    let found = scan(ud.as_bytes());
    if found.is_empty() {
        return;
    }
    let live: Vec<&String> = found
        .iter()
        .filter(|k| {
            st.access_keys
                .get(k.as_str())
                .is_some_and(|a| a.status == KeyStatus::Active)
        })
        .collect();
    let mut o = obs(
        EC2_USER_DATA_SECRET,
        &i.account,
        i.arn(),
        format!(
            "{}: {} secret(s) in user data ({} live keycard key(s))",
            i.id,
            found.len(),
            live.len()
        ),
    );
    if !live.is_empty() {
        o.severity = Severity::Critical;
    }
    out.push(o);
}

fn key_arn(st: &State, account: &str, user: Option<&str>) -> String {
    match user.and_then(|u| st.users.get(&crate::model::name_key(account, u))) {
        Some(u) => u.arn(),
        None => match user {
            Some(u) => format!("arn:aws:iam::{account}:user/{u}"),
            None => format!("arn:aws:iam::{account}:root"),
        },
    }
}

/// Console passwords: MFA, and use (keycard has no console sign-in, so a
/// password is unused since it was set unless a last use is recorded).
fn passwords(st: &State, now: i64, out: &mut Vec<Observation>) {
    for u in st.users.values() {
        let Some(p) = &u.login_profile else { continue };
        if crate::iam_governance::mfa_of_user(st, &u.account, &u.name).is_none() {
            out.push(obs(
                IAM_CONSOLE_NO_MFA,
                &u.account,
                u.arn(),
                format!("user {} can sign in with a password and has no MFA", u.name),
            ));
        }
        let since = p.last_used.unwrap_or(p.changed.max(p.created));
        if now - since > 45 * DAY {
            out.push(obs(
                IAM_PASSWORD_UNUSED,
                &u.account,
                u.arn(),
                format!(
                    "user {}'s password unused for {} days",
                    u.name,
                    (now - since) / DAY
                ),
            ));
        }
    }
}

fn access_keys(st: &State, now: i64, facts: &Facts, out: &mut Vec<Observation>) {
    for k in st.access_keys.values() {
        let owner = key_arn(st, &k.account, k.user.as_deref());
        let resource = format!("{owner}/accesskey/{}", k.id);
        if let Some(locs) = facts.scanned_keys.get(&k.id) {
            let at: Vec<&str> = locs.iter().take(3).map(String::as_str).collect();
            let mut o = obs(
                SCAN_KEY_EXPOSED,
                &k.account,
                resource.clone(),
                format!(
                    "{} ({}) found at {}",
                    k.id,
                    k.status.as_str(),
                    at.join(", ")
                ),
            );
            if k.status == KeyStatus::Active {
                o.severity = Severity::Critical;
            }
            out.push(o);
        }
        if k.status != KeyStatus::Active {
            continue;
        }
        if k.user.is_none() {
            out.push(obs(
                IAM_ROOT_KEY,
                &k.account,
                format!("arn:aws:iam::{}:root", k.account),
                format!("root access key {} is active", k.id),
            ));
        }
        let age = now - k.created;
        if age > 90 * DAY {
            out.push(obs(
                IAM_KEY_OLD,
                &k.account,
                resource.clone(),
                format!("{} is {} days old", k.id, age / DAY),
            ));
        }
        let since = k.last_used.as_ref().map(|u| u.date).unwrap_or(k.created);
        let idle = now - since;
        if idle > 90 * DAY {
            out.push(obs(
                IAM_KEY_UNUSED_90,
                &k.account,
                resource.clone(),
                format!("{} unused for {} days", k.id, idle / DAY),
            ));
        } else if idle > 45 * DAY {
            out.push(obs(
                IAM_KEY_UNUSED_45,
                &k.account,
                resource.clone(),
                format!("{} unused for {} days", k.id, idle / DAY),
            ));
        }
        if k.user.is_some()
            && let Some(iid) = facts.keys_used_from_instances.get(&k.id)
            && st
                .instances
                .get(iid)
                .is_some_and(|i| i.profile.is_some() && !i.is_terminated())
        {
            out.push(obs(
                IAM_KEY_AFTER_MIGRATION,
                &k.account,
                resource,
                format!("{} signs calls from {iid}, which has a role", k.id),
            ));
        }
    }
}

/// What a set of policies grants, probed through the evaluator itself so
/// `NotAction`, wildcards and conditions count as IAM counts them.
#[derive(Debug, Default, Clone, Copy)]
struct Grants {
    admin: bool,
    iam_or_sts_wide: bool,
    pass_any_role: bool,
}

fn probe(docs: &[&PolicyDoc], account: &str) -> Grants {
    let policies: Vec<PolicyRef<'_>> = docs
        .iter()
        .filter_map(|d| d.compiled.as_deref())
        .map(|p| PolicyRef {
            id: "probe",
            policy: p,
        })
        .collect();
    if policies.is_empty() {
        return Grants::default();
    }
    let Ok(principal) = Principal::from_arn(&format!(
        "arn:aws:iam::{account}:user/keycard-governance-probe"
    )) else {
        return Grants::default();
    };
    let ctx = Context::new();
    let set = PolicySet {
        identity: policies,
        ..PolicySet::default()
    };
    let allowed = |action: &str, resource: &str| {
        eval_policy(
            &Request {
                principal: &principal,
                action,
                resource,
                resource_account: Some(account),
                context: &ctx,
            },
            &set,
        )
        .is_allowed()
    };
    Grants {
        admin: allowed(
            "keycardprobe:AnyAction",
            "arn:aws:keycardprobe:us-east-1:000000000000:thing/x",
        ) && allowed(
            "iam:CreateUser",
            &format!("arn:aws:iam::{account}:user/keycard-probe"),
        ),
        iam_or_sts_wide: allowed(
            "iam:KeycardProbeAction",
            &format!("arn:aws:iam::{account}:keycard-probe/x"),
        ) || allowed(
            "sts:KeycardProbeAction",
            &format!("arn:aws:iam::{account}:role/keycard-probe"),
        ),
        pass_any_role: allowed(
            "iam:PassRole",
            &format!("arn:aws:iam::{account}:role/keycard-probe-any-role"),
        ),
    }
}

/// Identity policies attached to a principal (inline + managed).
fn docs<'a>(
    st: &'a State,
    inline: &'a BTreeMap<String, PolicyDoc>,
    attached: &'a [String],
) -> Vec<&'a PolicyDoc> {
    inline
        .values()
        .chain(
            attached
                .iter()
                .filter_map(|arn| st.policies.get(arn).and_then(|p| p.default_doc())),
        )
        .collect()
}

fn grant_findings(
    g: Grants,
    account: &str,
    arn: &str,
    what: &str,
    instance_role: bool,
    out: &mut Vec<Observation>,
) {
    if g.admin {
        let mut o = obs(
            IAM_ADMIN,
            account,
            arn.to_string(),
            format!("{what} has * on *"),
        );
        if instance_role {
            o.severity = Severity::Critical;
            o.detail.push_str(" and is an instance role");
        }
        out.push(o);
    } else if g.iam_or_sts_wide {
        out.push(obs(
            IAM_SERVICE_WIDE,
            account,
            arn.to_string(),
            format!("{what} is granted iam:* or sts:*"),
        ));
    }
    if g.pass_any_role && !g.admin {
        out.push(obs(
            IAM_PASSROLE_ANY,
            account,
            arn.to_string(),
            format!("{what} may pass any role"),
        ));
    }
}

/// Role names used by instance profiles of live instances, per account.
fn instance_roles(st: &State) -> BTreeMap<String, Vec<&Instance>> {
    let mut by_role: BTreeMap<String, Vec<&Instance>> = BTreeMap::new();
    for i in live(st) {
        let Some(p) = &i.profile else { continue };
        let Some(profile) = st
            .instance_profiles
            .values()
            .find(|ip| ip.arn() == p.profile_arn)
        else {
            continue;
        };
        for r in &profile.roles {
            by_role
                .entry(format!("{}/{r}", i.account))
                .or_default()
                .push(i);
        }
    }
    by_role
}

fn policies(
    st: &State,
    on_instances: &BTreeMap<String, Vec<&Instance>>,
    out: &mut Vec<Observation>,
) {
    for u in st.users.values() {
        let mut d = docs(st, &u.inline, &u.attached);
        for g in &u.groups {
            if let Some(grp) = st.groups.get(&crate::model::name_key(&u.account, g)) {
                d.extend(docs(st, &grp.inline, &grp.attached));
            }
        }
        grant_findings(
            probe(&d, &u.account),
            &u.account,
            &u.arn(),
            &format!("user {}", u.name),
            false,
            out,
        );
    }
    for r in st.roles.values() {
        let d = docs(st, &r.inline, &r.attached);
        let g = probe(&d, &r.account);
        let insts = on_instances.get(&format!("{}/{}", r.account, r.name));
        grant_findings(
            g,
            &r.account,
            &r.arn(),
            &format!("role {}", r.name),
            insts.is_some(),
            out,
        );
        if let Some(insts) = insts
            && (g.admin || g.iam_or_sts_wide)
            && insts.len() >= BROAD_MANY
            && !r.path.starts_with("/aws-service-role/")
        {
            out.push(obs(
                IAM_ROLE_BROAD_MANY,
                &r.account,
                r.arn(),
                format!(
                    "role {} with broad permissions is used by {} instances",
                    r.name,
                    insts.len()
                ),
            ));
        }
    }
}

/// Role usage and tagging (their grants are judged in `policies`).
fn roles(
    st: &State,
    now: i64,
    on_instances: &BTreeMap<String, Vec<&Instance>>,
    out: &mut Vec<Observation>,
) {
    for r in st.roles.values() {
        if r.path.starts_with("/aws-service-role/") {
            continue;
        }
        let arn = r.arn();
        let users = on_instances.get(&format!("{}/{}", r.account, r.name));
        if let Some(insts) = users {
            shared(r.account.as_str(), &arn, &r.name, insts, out);
        }
        let since = r.last_used.unwrap_or(r.created);
        if users.is_none() && now - since > 90 * DAY {
            out.push(obs(
                IAM_ROLE_UNUSED,
                &r.account,
                arn.clone(),
                format!("role {} unused for {} days", r.name, (now - since) / DAY),
            ));
        }
        if tag(&r.tags, OWNER).is_none() {
            out.push(obs(
                IAM_ROLE_NO_OWNER,
                &r.account,
                arn,
                format!("role {} has no Owner tag", r.name),
            ));
        }
    }
}

/// Instances a broad role may serve before that is a finding.
const BROAD_MANY: usize = 3;

/// A role on instances whose owner, app or environment tags differ.
fn shared(account: &str, arn: &str, name: &str, insts: &[&Instance], out: &mut Vec<Observation>) {
    for (what, keys) in [("owners", OWNER), ("apps", APP), ("environments", ENV)] {
        let values: BTreeSet<&str> = insts.iter().filter_map(|i| tag(&i.tags, keys)).collect();
        if values.len() > 1 {
            let list: Vec<&str> = values.into_iter().collect();
            out.push(obs(
                IAM_ROLE_SHARED,
                account,
                arn.to_string(),
                format!(
                    "role {name} is used by instances of {} {what}: {}",
                    list.len(),
                    list.join(", ")
                ),
            ));
            return;
        }
    }
}
