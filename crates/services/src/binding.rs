//! Instance credentials that cannot be used elsewhere.
//!
//! keycard knows which instance every instance-role session was delivered
//! to (the session's claims) and, for a request that arrived over an
//! instance's own network path (its namespace, or its loopback API
//! listener), which instance sent it. That makes three things possible:
//!
//! - the VPC condition keys AWS documents (`aws:Ec2InstanceSourceVpc`,
//!   `aws:SourceVpc`, `aws:VpcSourceIp`), so AWS's binding policy works
//!   word for word;
//! - `--instance-credentials bound`: refuse any use from elsewhere, with
//!   no policy at all (beyond AWS);
//! - detection: every use from elsewhere becomes a sighting shaped like
//!   GuardDuty's `InstanceCredentialExfiltration` finding, which the
//!   governance rules turn into findings.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::Keycard;
use crate::auth::{Caller, CallerKind};
use crate::state::State;

/// GuardDuty's finding types, and keycard's for a stale session.
pub const OUTSIDE_AWS: &str =
    "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS";
pub const INSIDE_AWS: &str = "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.InsideAWS";
/// keycard's own: credentials of an instance that stopped, terminated or
/// changed its role (AWS refuses these calls too, but reports nothing).
pub const AFTER_INSTANCE: &str = "Keycard:IAMUser/InstanceCredentialUse.AfterInstance";

/// `--instance-credentials`: what happens when an instance's credentials
/// are used anywhere but on their instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BindingMode {
    /// Allowed (unless a policy says otherwise) and reported.
    #[default]
    Detect,
    /// Refused, and reported.
    Bound,
}

impl BindingMode {
    pub fn parse(s: &str) -> Option<BindingMode> {
        match s {
            "detect" => Some(BindingMode::Detect),
            "bound" => Some(BindingMode::Bound),
            _ => None,
        }
    }
}

/// The network path a request arrived on: an instance's own listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPath {
    pub instance_id: String,
    pub private_ip: IpAddr,
}

/// Where instance credentials were used, relative to their instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Use {
    /// On the instance they were delivered to.
    OnInstance,
    /// From the host or any other network path (GuardDuty's OutsideAWS).
    Outside,
    /// From another instance's network path (GuardDuty's InsideAWS); the
    /// other instance and its account.
    OtherInstance {
        instance_id: String,
        account: String,
    },
}

/// One instance credential used from elsewhere: the session, where from,
/// which calls, first and last seen. Stored (record kind `exfil`) and
/// merged per (type, instance, access key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sighting {
    pub finding_type: String,
    pub account: String,
    pub region: String,
    pub instance_id: String,
    pub role_arn: String,
    /// The session's principal, `arn:aws:sts::…:assumed-role/R/i-…`.
    pub session_arn: String,
    pub access_key_id: String,
    /// Source addresses, with how many calls each made.
    pub sources: BTreeMap<String, u64>,
    /// Event names with how many calls each.
    pub calls: BTreeMap<String, u64>,
    /// For InsideAWS: the instance whose path the calls came over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_instance_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_account_id: Option<String>,
    /// For AfterInstance: what had happened to the instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Calls refused (bound mode, a policy, or a stale session).
    #[serde(default)]
    pub denied: u64,
    pub first_seen: i64,
    pub last_seen: i64,
}

impl Sighting {
    /// The record key: one sighting per type, instance and access key.
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}",
            self.finding_type, self.instance_id, self.access_key_id
        )
    }

    pub fn count(&self) -> u64 {
        self.calls.values().sum()
    }

    /// The instance's ARN (the finding's resource).
    pub fn instance_arn(&self) -> String {
        format!(
            "arn:aws:ec2:{}:{}:instance/{}",
            self.region, self.account, self.instance_id
        )
    }

    /// Fold one more call in.
    pub(crate) fn add(&mut self, source: &str, call: &str, denied: bool, at: i64) {
        *self.sources.entry(source.to_string()).or_default() += 1;
        *self.calls.entry(call.to_string()).or_default() += 1;
        if denied {
            self.denied += 1;
        }
        self.first_seen = self.first_seen.min(at);
        self.last_seen = self.last_seen.max(at);
    }

    /// The finding as GuardDuty's `GetFindings` shows it.
    pub fn guardduty_json(&self, id: &str) -> serde_json::Value {
        let iso = |t: i64| crate::sts::iso8601(t);
        let role_name = self.role_arn.rsplit('/').next().unwrap_or_default();
        let remote_ip = self.sources.keys().next().cloned().unwrap_or_default();
        let mut action = serde_json::json!({
            "ActionType": "AWS_API_CALL",
            "AwsApiCallAction": {
                "Api": self.calls.keys().next().cloned().unwrap_or_default(),
                "CallerType": "Remote IP",
                "RemoteIpDetails": {"IpAddressV4": remote_ip},
                "ServiceName": "keycard",
                "AffectedResources": {},
            },
        });
        if let (Some(acct), Some(a)) = (&self.remote_account_id, action.get_mut("AwsApiCallAction"))
            && let Some(o) = a.as_object_mut()
        {
            o.insert(
                "RemoteAccountDetails".into(),
                serde_json::json!({"AccountId": acct, "Affiliated": acct == &self.account}),
            );
        }
        serde_json::json!({
            "AccountId": self.account,
            "Arn": format!("arn:aws:guardduty:{}:{}:detector/keycard/finding/{id}", self.region, self.account),
            "Id": id,
            "Partition": "aws",
            "Region": self.region,
            "SchemaVersion": "2.0",
            "Type": self.finding_type,
            "Severity": 8,
            "Title": title(&self.finding_type),
            "Description": format!(
                "Credentials delivered to instance {} through its role {} were used {}.",
                self.instance_id, role_name, where_phrase(self)
            ),
            "CreatedAt": iso(self.first_seen),
            "UpdatedAt": iso(self.last_seen),
            "Resource": {
                "ResourceType": "AccessKey",
                "AccessKeyDetails": {
                    "AccessKeyId": self.access_key_id,
                    "PrincipalId": self.session_arn.rsplit(':').next().unwrap_or_default(),
                    "UserName": role_name,
                    "UserType": "AssumedRole",
                },
                "InstanceDetails": {"InstanceId": self.instance_id},
            },
            "Service": {
                "Action": action,
                "Count": self.count(),
                "EventFirstSeen": iso(self.first_seen),
                "EventLastSeen": iso(self.last_seen),
                "ServiceName": "guardduty",
                "Archived": false,
                "AdditionalInfo": {
                    "Value": serde_json::json!({
                        "sessionArn": self.session_arn,
                        "roleArn": self.role_arn,
                        "sources": self.sources,
                        "calls": self.calls,
                        "deniedCalls": self.denied,
                        "remoteInstanceId": self.remote_instance_id,
                        "reason": self.reason,
                    }).to_string(),
                    "Type": "default",
                },
            },
        })
    }
}

fn title(kind: &str) -> &'static str {
    match kind {
        OUTSIDE_AWS => "Credentials for instance role used from an external IP address.",
        INSIDE_AWS => "Credentials for instance role used from another instance.",
        _ => "Credentials for instance role used after the instance stopped using the role.",
    }
}

fn where_phrase(s: &Sighting) -> String {
    match (s.finding_type.as_str(), &s.remote_instance_id, &s.reason) {
        (INSIDE_AWS, Some(i), _) => format!("from instance {i}"),
        (OUTSIDE_AWS, _, _) => format!(
            "from outside their instance ({})",
            s.sources.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
        (_, _, Some(r)) => format!("after {r}"),
        _ => "elsewhere".into(),
    }
}

/// An instance's VPC id (its primary interface's).
pub fn instance_vpc(st: &State, instance_id: &str) -> Option<String> {
    st.instances
        .get(instance_id)
        .and_then(|i| crate::vpc::interface_of(i))
        .map(|e| e.vpc_id)
}

impl Keycard {
    /// The condition keys of a request that came over an instance's
    /// network path, as AWS sets them for a request through a VPC
    /// endpoint: `aws:SourceVpc` and `aws:VpcSourceIp`, and no
    /// `aws:SourceIp` (AWS leaves it out for VPC endpoint requests).
    pub fn add_network_context(&self, path: &NetworkPath, ctx: &mut keycard_policy::Context) {
        if let Some(vpc) = instance_vpc(&self.state(), &path.instance_id) {
            ctx.insert("aws:SourceVpc", vpc);
        }
        ctx.insert("aws:VpcSourceIp", path.private_ip.to_string());
        ctx.remove("aws:SourceIp");
    }

    /// Where instance credentials are being used; None for any other
    /// caller.
    pub fn instance_credential_use(
        &self,
        caller: &Caller,
        path: Option<&NetworkPath>,
    ) -> Option<Use> {
        let CallerKind::Session(s) = &caller.kind else {
            return None;
        };
        let claim = s.claims.instance.as_ref()?;
        Some(match path {
            Some(p) if p.instance_id == claim.id => Use::OnInstance,
            Some(p) => Use::OtherInstance {
                instance_id: p.instance_id.clone(),
                account: self
                    .state()
                    .instances
                    .get(&p.instance_id)
                    .map(|i| i.account.clone())
                    .unwrap_or_default(),
            },
            None => Use::Outside,
        })
    }

    /// Remember a use of instance credentials from elsewhere (or of a
    /// stale session): merged into its sighting, stored, and seen by the
    /// next governance evaluation.
    pub async fn record_sighting(
        &self,
        caller: &Caller,
        kind: &Use,
        reason: Option<&str>,
        source_ip: &str,
        call: &str,
        denied: bool,
    ) {
        let Some(fresh) = self.sighting_for(caller, kind, reason) else {
            return;
        };
        let at = crate::now();
        if let Err(e) = self
            .governance
            .record_sighting(fresh, source_ip, call, denied, at, self.store().as_ref())
            .await
        {
            tracing::error!(error = %e, "could not store an instance credential sighting");
        }
        self.changes.send_modify(|n| *n += 1);
    }

    /// A new, empty sighting for this caller and use.
    fn sighting_for(&self, caller: &Caller, kind: &Use, reason: Option<&str>) -> Option<Sighting> {
        let CallerKind::Session(s) = &caller.kind else {
            return None;
        };
        let c = &s.claims;
        let claim = c.instance.as_ref()?;
        let (finding_type, remote_instance_id, remote_account_id) = match (kind, reason) {
            (_, Some(_)) => (AFTER_INSTANCE, None, None),
            (Use::OnInstance, None) => return None,
            (Use::Outside, None) => (OUTSIDE_AWS, None, None),
            (
                Use::OtherInstance {
                    instance_id,
                    account,
                },
                None,
            ) => (INSIDE_AWS, Some(instance_id.clone()), Some(account.clone())),
        };
        let region = self
            .state()
            .instances
            .get(&claim.id)
            .map(|i| i.region.clone())
            .unwrap_or_else(|| self.config.region.clone());
        Some(Sighting {
            finding_type: finding_type.into(),
            account: c.account.clone(),
            region,
            instance_id: claim.id.clone(),
            role_arn: c.role.as_ref().map(|r| r.arn.clone()).unwrap_or_default(),
            session_arn: caller.principal.arn.clone(),
            access_key_id: c.access_key_id.clone(),
            sources: BTreeMap::new(),
            calls: BTreeMap::new(),
            remote_instance_id,
            remote_account_id,
            reason: reason.map(str::to_string),
            denied: 0,
            first_seen: i64::MAX,
            last_seen: 0,
        })
    }

    /// Why an instance session is no longer valid (stopped, terminated,
    /// another role), or None while it is.
    pub fn stale_instance_reason(&self, s: &crate::sts::Session) -> Option<String> {
        let claim = s.claims.instance.as_ref()?;
        let st = self.state();
        let Some(i) = st.instances.get(&claim.id) else {
            return Some("the instance was deleted".into());
        };
        if i.state != "running" {
            return Some(format!("the instance was {}", i.state));
        }
        match &i.profile {
            Some(a) if a.id == claim.association && a.state == "associated" => None,
            Some(_) => Some("the instance's instance profile was replaced".into()),
            None => Some("the instance's instance profile was disassociated".into()),
        }
    }

    /// The caller of a refused request signed with a stale instance
    /// session (its instance stopped, terminated or changed role), and
    /// why; None for anything else.
    pub fn stale_instance_caller(
        &self,
        key_id: &str,
        token: Option<&str>,
    ) -> Option<(Caller, String)> {
        let session = self.open_session(token?).ok()?;
        if session.claims.access_key_id != key_id || session.claims.expires <= crate::now() {
            return None;
        }
        let reason = self.stale_instance_reason(&session)?;
        Some((self.session_caller(session), reason))
    }

    /// Every stored sighting, newest first.
    pub fn sightings(&self) -> Vec<Sighting> {
        self.governance.sightings()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sighting() -> Sighting {
        Sighting {
            finding_type: OUTSIDE_AWS.into(),
            account: "123456789012".into(),
            region: "us-east-1".into(),
            instance_id: "i-0123456789abcdef0".into(),
            role_arn: "arn:aws:iam::123456789012:role/App".into(),
            session_arn: "arn:aws:sts::123456789012:assumed-role/App/i-0123456789abcdef0".into(),
            access_key_id: "ASIAEXAMPLEEXAMPLE01".into(),
            sources: BTreeMap::new(),
            calls: BTreeMap::new(),
            remote_instance_id: None,
            remote_account_id: None,
            reason: None,
            denied: 0,
            first_seen: i64::MAX,
            last_seen: 0,
        }
    }

    #[test]
    fn adding_counts_calls_sources_and_times() {
        let mut s = sighting();
        s.add("127.0.0.1", "ListBuckets", false, 100);
        s.add("127.0.0.1", "ListBuckets", true, 90);
        s.add("10.0.0.9", "GetObject", false, 120);
        assert_eq!(s.count(), 3);
        assert_eq!(s.calls.get("ListBuckets"), Some(&2));
        assert_eq!(s.sources.get("10.0.0.9"), Some(&1));
        assert_eq!((s.first_seen, s.last_seen, s.denied), (90, 120, 1));
    }

    #[test]
    fn guardduty_shape() {
        let mut s = sighting();
        s.add("127.0.0.1", "ListBuckets", false, 1_700_000_000);
        let g = s.guardduty_json("abc");
        assert_eq!(g["Type"], OUTSIDE_AWS);
        assert_eq!(
            g["Resource"]["InstanceDetails"]["InstanceId"],
            "i-0123456789abcdef0"
        );
        assert_eq!(g["Resource"]["AccessKeyDetails"]["UserType"], "AssumedRole");
        assert_eq!(g["Resource"]["AccessKeyDetails"]["UserName"], "App");
        assert_eq!(
            g["Service"]["Action"]["AwsApiCallAction"]["RemoteIpDetails"]["IpAddressV4"],
            "127.0.0.1"
        );
        assert_eq!(g["Service"]["Count"], 1);
        assert_eq!(g["Service"]["EventFirstSeen"], "2023-11-14T22:13:20Z");
    }

    #[test]
    fn modes_parse() {
        assert_eq!(BindingMode::parse("bound"), Some(BindingMode::Bound));
        assert_eq!(BindingMode::parse("detect"), Some(BindingMode::Detect));
        assert_eq!(BindingMode::parse("off"), None);
    }
}
