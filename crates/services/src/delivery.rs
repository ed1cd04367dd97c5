//! Delivering role credentials to instances, as EC2 does through the IMDS
//! (and ECS / EKS through a container endpoint): one cached set per
//! instance and delivery, renewed once it has less than the refresh window
//! left, so each set a client holds stays valid until its own Expiration.

use std::collections::HashMap;
use std::sync::Mutex;

use keycard_policy::Context;
use keycard_proto::hmac_sha256;
use serde_json::json;

use crate::audit::{AuditUnavailable, EventInput};
use crate::auth::Caller;
use crate::ec2::Instance;
use crate::model::Role;
use crate::sts::{Credentials, InstanceClaim};
use crate::{Keycard, now};

/// Which channel a set goes out on; the claim's `ec2:RoleDelivery`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Delivery {
    /// IMDSv1: no session token.
    ImdsV1,
    /// IMDSv2: a PUT-obtained token.
    ImdsV2,
    /// The container credentials endpoint.
    Container,
}

impl Delivery {
    pub fn role_delivery(self) -> &'static str {
        match self {
            Delivery::ImdsV1 => "1.0",
            Delivery::ImdsV2 | Delivery::Container => "2.0",
        }
    }
}

/// What the IMDS answers for an instance's role.
#[derive(Debug, Clone)]
pub enum RoleCredentials {
    /// No profile, or a profile without a role: paths are 404.
    NoRole,
    /// EC2 may not assume the role (its trust policy does not allow
    /// ec2.amazonaws.com): served as a JSON `Code`/`Message`, as AWS does.
    Unassumable { role: String, message: String },
    Issued {
        role: String,
        credentials: Credentials,
        /// When this set was issued (`LastUpdated`).
        issued: i64,
    },
}

#[derive(Clone)]
struct Cached {
    association: String,
    role_id: String,
    credentials: Credentials,
    issued: i64,
    /// When the set was last handed out (the console's credentials status).
    fetched: i64,
}

/// What an instance was last given on one channel (console, admin).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryStatus {
    /// `ImdsV1`, `ImdsV2`, `Container`.
    pub delivery: String,
    pub access_key_id: String,
    pub issued: i64,
    pub last_fetched: i64,
    pub expiration: i64,
}

/// Per-instance credential cache.
#[derive(Default)]
pub struct DeliveryCache {
    sets: Mutex<HashMap<(String, Delivery), Cached>>,
}

impl DeliveryCache {
    /// The sets an instance holds, most recently fetched first.
    pub fn status(&self, instance_id: &str) -> Vec<DeliveryStatus> {
        let m = self.sets.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<DeliveryStatus> = m
            .iter()
            .filter(|((id, _), _)| id == instance_id)
            .map(|((_, d), c)| DeliveryStatus {
                delivery: format!("{d:?}"),
                access_key_id: c.credentials.access_key_id.clone(),
                issued: c.issued,
                last_fetched: c.fetched,
                expiration: c.credentials.expiration,
            })
            .collect();
        out.sort_by_key(|d| std::cmp::Reverse(d.last_fetched));
        out
    }

    /// Forget an instance (terminated).
    pub fn forget(&self, instance_id: &str) {
        let mut m = self.sets.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|(id, _), _| id != instance_id);
    }
}

/// The role name attached to an instance through its profile, if any.
pub fn instance_role(kc: &Keycard, i: &Instance) -> Option<(String, String)> {
    let a = i.profile.as_ref()?;
    let st = kc.state();
    // The ARN ends in the profile's name; the id tells a re-created
    // profile of the same name apart.
    let name = a.profile_arn.rsplit('/').next()?;
    let p = st
        .instance_profile(&i.account, name)
        .filter(|p| p.id == a.profile_id)?;
    let name = p.roles.first()?;
    let role = st.role(&i.account, name)?;
    Some((role.name.clone(), role.id.clone()))
}

/// Whether the role's trust policy lets EC2 (`ec2.amazonaws.com`) assume it.
fn ec2_may_assume(role: &Role) -> bool {
    let Some(trust) = role.trust.compiled.clone() else {
        return false;
    };
    let arn = role.arn();
    crate::auth::service_allowed(
        "ec2.amazonaws.com",
        &trust,
        true,
        ("sts:AssumeRole", &arn, &role.account),
        Context::new(),
    )
}

impl Keycard {
    /// Drop cached sets of an instance that stopped or terminated, so a
    /// restart gets a fresh session.
    pub fn forget_instance_credentials(&self, instance_id: &str) {
        self.deliveries.forget(instance_id);
    }

    /// The role credentials an instance was delivered, per channel.
    pub fn instance_delivery_status(&self, instance_id: &str) -> Vec<DeliveryStatus> {
        self.deliveries.status(instance_id)
    }

    /// The credentials an instance's metadata service serves now: the
    /// cached set while it has more than the refresh window left, else a
    /// fresh one (audited as EC2's AssumeRole).
    pub fn instance_credentials(&self, instance_id: &str, delivery: Delivery) -> RoleCredentials {
        let Some(inst) = self.state().instances.get(instance_id).cloned() else {
            return RoleCredentials::NoRole;
        };
        let (Some(assoc), Some((role_name, role_id))) =
            (inst.profile.as_ref(), instance_role(self, &inst))
        else {
            return RoleCredentials::NoRole;
        };
        if !inst.is_running() {
            return RoleCredentials::NoRole;
        }
        let key = (instance_id.to_string(), delivery);
        let t = now();
        let refresh = self
            .config
            .instance_credential_refresh
            .min(self.config.instance_credential_lifetime - 1);
        // A cached set is served while it belongs to the current
        // association and role and has more than the refresh window left.
        let usable = |c: &Cached| {
            c.association == assoc.id
                && c.role_id == role_id
                && c.credentials.expiration - t > refresh
        };
        let serve = |c: &Cached| RoleCredentials::Issued {
            role: role_name.clone(),
            credentials: c.credentials.clone(),
            issued: c.issued,
        };
        if let Some(c) = self
            .deliveries
            .sets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&key)
            && usable(c)
        {
            c.fetched = t;
            return serve(c);
        }
        let Some(role) = self
            .state()
            .role(&inst.account, &role_name)
            .filter(|r| r.id == role_id)
            .cloned()
        else {
            return RoleCredentials::NoRole;
        };
        if !ec2_may_assume(&role) {
            return RoleCredentials::Unassumable {
                message: format!(
                    "EC2 cannot assume the role {role_name}.  Please see documentation at https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_switch-role-ec2.html#roles-usingrole-ec2instance-roles."
                ),
                role: role_name,
            };
        }
        let claim = InstanceClaim {
            id: inst.id.clone(),
            delivery: delivery.role_delivery().to_string(),
            private_ip: inst.private_ip.clone(),
            association: assoc.id.clone(),
        };
        let lifetime = self.config.instance_credential_lifetime;
        let creds = self.issue_instance_session(&inst.account, &role, claim, lifetime);
        let mut m = self
            .deliveries
            .sets
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // A concurrent request may have cached a set since we looked: serve
        // that one and drop ours, so each window hands out one set.
        if let Some(c) = m.get_mut(&key)
            && usable(c)
        {
            c.fetched = t;
            return serve(c);
        }
        let cached = Cached {
            association: assoc.id.clone(),
            role_id: role_id.clone(),
            credentials: creds,
            issued: t,
            fetched: t,
        };
        let out = serve(&cached);
        m.insert(key, cached);
        drop(m);
        self.audit_instance_issue(&inst, &role.arn(), delivery, &out);
        out
    }

    /// CloudTrail shows EC2 assuming the role for the instance.
    fn audit_instance_issue(
        &self,
        inst: &Instance,
        role_arn: &str,
        delivery: Delivery,
        issued: &RoleCredentials,
    ) {
        let RoleCredentials::Issued {
            credentials: creds, ..
        } = issued
        else {
            return;
        };
        let caller = Caller::service("ec2.amazonaws.com");
        let recorded = self.audit.record(EventInput {
            caller: Some(&caller),
            event_source: "sts.amazonaws.com",
            event_name: "AssumeRole",
            region: &inst.region,
            source_ip: "ec2.amazonaws.com",
            user_agent: "ec2.amazonaws.com",
            request_parameters: json!({
                "roleArn": role_arn,
                "roleSessionName": inst.id,
                "durationSeconds": creds.expiration - now(),
            }),
            response_elements: json!({
                "credentials": {
                    "accessKeyId": creds.access_key_id,
                    "expiration": crate::sts::iso8601(creds.expiration),
                    "sessionToken": "HIDDEN_DUE_TO_SECURITY_REASONS",
                },
                "ec2RoleDelivery": delivery.role_delivery(),
            }),
            error_code: None,
            error_message: None,
            request_id: &uuid::Uuid::new_v4().to_string(),
            read_only: true,
            resources: vec![
                (role_arn.to_string(), "AWS::IAM::Role".into()),
                (inst.arn(), "AWS::EC2::Instance".into()),
            ],
            decided: &[],
            data_event: false,
            recipient_account: &inst.account,
            instance_credentials: None,
        });
        // Inside `delivered`, the metadata service waits for the commit
        // before it answers; elsewhere the event commits in the background.
        if AWAITED.try_with(|_| ()).is_ok() {
            AWAITED.with(|v| v.borrow_mut().push(Box::pin(recorded)));
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    if recorded.await.is_err() {
                        tracing::error!("instance credential event not recorded");
                    }
                });
            }
            Err(_) => tracing::error!("instance credential event not recorded: no runtime"),
        }
    }

    /// A keyed MAC for tokens that must survive restarts (IMDSv2 session
    /// tokens, container authorization tokens): a per-purpose key derived
    /// from master.key.
    pub fn mac(&self, label: &str, data: &[u8]) -> [u8; 32] {
        derive_mac(self.master_bytes(), label, data)
    }
}

/// An audit commit a delivery waits for.
type Recording =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), AuditUnavailable>> + Send>>;

tokio::task_local! {
    /// The issue events of the delivery running in this task.
    static AWAITED: std::cell::RefCell<Vec<Recording>>;
}

/// Run a synchronous delivery (the metadata service's answer) and wait
/// until every credential it issued is in the audit trail: no instance
/// gets credentials whose issue is not recorded. An audit failure is
/// `AuditUnavailable` (answer 503).
pub async fn delivered<T>(f: impl FnOnce() -> T) -> Result<T, AuditUnavailable> {
    let (out, pending) = AWAITED.sync_scope(std::cell::RefCell::new(Vec::new()), || {
        let out = f();
        let pending = AWAITED.with(|v| std::mem::take(&mut *v.borrow_mut()));
        (out, pending)
    });
    for r in pending {
        r.await?;
    }
    Ok(out)
}

/// `HMAC(HMAC(master, label), data)`: one key per purpose.
pub fn derive_mac(master: &[u8], label: &str, data: &[u8]) -> [u8; 32] {
    let derived = hmac_sha256(master, label.as_bytes());
    hmac_sha256(&derived, data)
}

/// The same MAC from a data directory's master.key, for commands that run
/// beside a server without opening the database.
pub fn mac_from_data_dir(
    dir: &std::path::Path,
    label: &str,
    data: &[u8],
) -> std::io::Result<[u8; 32]> {
    let text = std::fs::read_to_string(dir.join("master.key"))?;
    let bytes = hex::decode(text.trim()).map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "master.key is not hex")
    })?;
    Ok(derive_mac(&bytes, label, data))
}
