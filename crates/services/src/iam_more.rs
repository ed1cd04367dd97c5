//! IAM operations beyond the core: UpdateGroup, tags on managed policies,
//! instance profiles and MFA devices, service-linked roles and their
//! deletion tasks, the STS global endpoint token preference. No HTTP here.

use crate::error::{Result, ServiceError};
use crate::iam::{NewRole, no_such};
use crate::iam_creds::{DeletionTask, ServerCert, account_of, merge_tags, no_server_cert};
use crate::iam_governance::VirtualMfa;
use crate::model::*;
use crate::state::State;
use crate::validate;
use crate::{Keycard, now};

/// What carries tags besides users and roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tagged<'a> {
    /// By ARN.
    Policy(&'a str),
    InstanceProfile(&'a str),
    /// By serial number.
    MfaDevice(&'a str),
    /// By name.
    ServerCertificate(&'a str),
}

/// The path every service-linked role lives under.
pub const SLR_PATH_PREFIX: &str = "/aws-service-role/";

/// Whether a role is service-linked (only its service may change it).
pub fn is_service_linked(r: &Role) -> bool {
    r.path.starts_with(SLR_PATH_PREFIX)
}

/// AWS's refusal to change a service-linked role.
pub fn unmodifiable(name: &str) -> ServiceError {
    ServiceError::UnmodifiableEntity(format!(
        "Cannot perform the operation on the protected role '{name}' - this role is only modifiable by AWS"
    ))
}

/// Known service principals: the role-name part AWS gives their
/// service-linked role, and whether they take a custom suffix.
const SLR_NAMES: &[(&str, &str, bool)] = &[
    ("autoscaling.amazonaws.com", "AutoScaling", true),
    ("elasticbeanstalk.amazonaws.com", "ElasticBeanstalk", true),
    (
        "elasticloadbalancing.amazonaws.com",
        "ElasticLoadBalancing",
        false,
    ),
    ("ecs.amazonaws.com", "ECS", false),
    ("eks.amazonaws.com", "AmazonEKS", false),
    ("rds.amazonaws.com", "RDS", false),
    ("organizations.amazonaws.com", "Organizations", false),
    ("support.amazonaws.com", "Support", false),
    ("trustedadvisor.amazonaws.com", "TrustedAdvisor", false),
    ("config.amazonaws.com", "Config", false),
    ("guardduty.amazonaws.com", "AmazonGuardDuty", false),
    ("securityhub.amazonaws.com", "SecurityHub", false),
    ("access-analyzer.amazonaws.com", "AccessAnalyzer", false),
    ("spot.amazonaws.com", "EC2Spot", false),
    ("cloudtrail.amazonaws.com", "CloudTrail", false),
    ("sso.amazonaws.com", "SSO", false),
    ("lex.amazonaws.com", "LexBots", true),
];

/// The role name (without suffix) and suffix support for a service
/// principal: the table's, or the service's first label in CamelCase.
fn slr_base(service: &str) -> Result<(String, bool)> {
    if let Some((_, n, s)) = SLR_NAMES.iter().find(|(svc, _, _)| *svc == service) {
        return Ok((format!("AWSServiceRoleFor{n}"), *s));
    }
    let label = service
        .strip_suffix(".amazonaws.com")
        .filter(|l| !l.is_empty() && !l.contains('.'))
        .ok_or_else(|| ServiceError::InvalidInput(format!("Invalid ServiceName: {service}")))?;
    let camel: String = label
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    Ok((format!("AWSServiceRoleFor{camel}"), false))
}

/// The trust policy AWS gives a service-linked role.
fn slr_trust(service: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"Service":["{service}"]}},"Action":["sts:AssumeRole"]}}]}}"#
    )
}

fn no_device(serial: &str) -> ServiceError {
    ServiceError::NoSuchEntity(format!(
        "MFA Device with serial number {serial} cannot be found."
    ))
}

fn no_policy(arn: &str) -> ServiceError {
    ServiceError::NoSuchEntity(format!("Policy {arn} does not exist or is not attachable."))
}

/// The tag list of a tagged resource, cloned into the change that will
/// carry it back.
enum Holder {
    Policy(ManagedPolicy),
    Profile(InstanceProfile),
    Mfa(Box<Account>, VirtualMfa),
    ServerCert(Box<Account>, ServerCert),
}

impl Holder {
    fn load(st: &State, account: &str, what: Tagged) -> Result<Holder> {
        match what {
            Tagged::Policy(arn) => st
                .policies
                .get(arn)
                .filter(|p| p.account == account)
                .cloned()
                .map(Holder::Policy)
                .ok_or_else(|| no_policy(arn)),
            Tagged::InstanceProfile(n) => st
                .instance_profile(account, n)
                .cloned()
                .map(Holder::Profile)
                .ok_or_else(|| no_such("instance profile", n)),
            Tagged::MfaDevice(serial) => {
                let a = account_of(st, account)?;
                let d = a
                    .governance
                    .mfa
                    .get(serial)
                    .cloned()
                    .ok_or_else(|| no_device(serial))?;
                Ok(Holder::Mfa(Box::new(a), d))
            }
            Tagged::ServerCertificate(name) => {
                let a = account_of(st, account)?;
                let c = a
                    .extras
                    .server_certs
                    .get(&name.to_ascii_lowercase())
                    .cloned()
                    .ok_or_else(|| no_server_cert(name))?;
                Ok(Holder::ServerCert(Box::new(a), c))
            }
        }
    }

    fn tags(&mut self) -> &mut Vec<Tag> {
        match self {
            Holder::Policy(p) => &mut p.tags,
            Holder::Profile(p) => &mut p.tags,
            Holder::Mfa(_, d) => &mut d.tags,
            Holder::ServerCert(_, c) => &mut c.tags,
        }
    }

    fn into_change(self) -> Change {
        Change::Put(match self {
            Holder::Policy(p) => Entity::Policy(p),
            Holder::Profile(p) => Entity::InstanceProfile(p),
            Holder::Mfa(mut a, d) => {
                a.governance.mfa.insert(d.serial.clone(), d);
                Entity::Account(*a)
            }
            Holder::ServerCert(mut a, c) => {
                a.extras.server_certs.insert(c.name.to_ascii_lowercase(), c);
                Entity::Account(*a)
            }
        })
    }
}

impl Keycard {
    // ------------------------------------------------------------ groups

    /// UpdateGroup: a new name and/or path. Members keep their membership
    /// under the new name.
    pub async fn update_group(
        &self,
        account: &str,
        name: &str,
        new_name: Option<&str>,
        new_path: Option<&str>,
    ) -> Result<()> {
        validate::renamed("newGroupName", new_name, 128, new_path)?;
        self.mutate(|st| {
            let mut g = st
                .group(account, name)
                .cloned()
                .ok_or_else(|| no_such("group", name))?;
            let mut changes = Vec::new();
            if let Some(n) = new_name {
                if !n.eq_ignore_ascii_case(name) {
                    if st.group(account, n).is_some() {
                        return Err(ServiceError::EntityAlreadyExists(format!(
                            "Group with name {n} already exists."
                        )));
                    }
                    changes.push(Change::Delete("group", name_key(account, name)));
                }
                for u in st.users.values().filter(|u| u.account == account) {
                    if u.groups.iter().any(|x| x.eq_ignore_ascii_case(name)) {
                        let mut u = u.clone();
                        for x in u.groups.iter_mut() {
                            if x.eq_ignore_ascii_case(name) {
                                *x = n.to_string();
                            }
                        }
                        changes.push(Change::Put(Entity::User(u)));
                    }
                }
                g.name = n.to_string();
            }
            if let Some(p) = new_path {
                g.path = p.to_string();
            }
            changes.push(Change::Put(Entity::Group(g)));
            Ok((changes, ()))
        })
        .await
    }

    // -------------------------------------------------------------- tags

    pub fn resource_tags_of(&self, account: &str, what: Tagged) -> Result<Vec<Tag>> {
        let mut h = Holder::load(&self.state(), account, what)?;
        Ok(h.tags().clone())
    }

    pub async fn tag_resource(
        &self,
        account: &str,
        what: Tagged<'_>,
        tags: Vec<Tag>,
    ) -> Result<()> {
        self.mutate(|st| {
            let mut h = Holder::load(st, account, what)?;
            merge_tags(h.tags(), &tags)?;
            Ok((vec![h.into_change()], ()))
        })
        .await
    }

    pub async fn untag_resource(
        &self,
        account: &str,
        what: Tagged<'_>,
        keys: &[String],
    ) -> Result<()> {
        self.mutate(|st| {
            let mut h = Holder::load(st, account, what)?;
            h.tags().retain(|t| !keys.contains(&t.key));
            Ok((vec![h.into_change()], ()))
        })
        .await
    }

    // --------------------------------------------------------------- MFA

    /// GetMFADevice: the device, if `user` (when given) holds it.
    pub fn get_mfa_device(
        &self,
        account: &str,
        serial: &str,
        user: Option<&str>,
    ) -> Result<VirtualMfa> {
        let st = self.state();
        let d = st
            .accounts
            .get(account)
            .and_then(|a| a.governance.mfa.get(serial))
            .cloned()
            .ok_or_else(|| no_device(serial))?;
        if let Some(u) = user {
            if st.user(account, u).is_none() {
                return Err(no_such("user", u));
            }
            if !d.user.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(u)) {
                return Err(no_device(serial));
            }
        }
        Ok(d)
    }

    // ------------------------------------------------ service-linked roles

    /// CreateServiceLinkedRole: `AWSServiceRoleFor<Service>[_<suffix>]`
    /// under `/aws-service-role/<service>/`, trusted by the service.
    pub async fn create_service_linked_role(
        &self,
        account: &str,
        service: &str,
        description: Option<&str>,
        suffix: Option<&str>,
    ) -> Result<Role> {
        validate::name("aWSServiceName", service, 128)?;
        if let Some(s) = suffix {
            validate::name("customSuffix", s, 64)?;
        }
        let (base, takes_suffix) = slr_base(service)?;
        let name = match suffix {
            Some(_) if !takes_suffix => {
                return Err(ServiceError::InvalidInput(format!(
                    "Custom suffix is not allowed for {base}"
                )));
            }
            Some(s) => format!("{base}_{s}"),
            None => base,
        };
        if name.len() > 64 {
            return Err(ServiceError::InvalidInput(format!(
                "The role name {name} is longer than 64 characters."
            )));
        }
        if self.state().role(account, &name).is_some() {
            return Err(ServiceError::InvalidInput(format!(
                "Service role name {name} has been taken in this account, please try a different suffix."
            )));
        }
        self.create_role(
            account,
            NewRole {
                name,
                path: format!("{SLR_PATH_PREFIX}{service}/"),
                trust: slr_trust(service),
                description: description.map(str::to_string),
                ..NewRole::default()
            },
        )
        .await
    }

    /// DeleteServiceLinkedRole: keycard has no resources that use the
    /// role, so the task succeeds at once.
    pub async fn delete_service_linked_role(&self, account: &str, name: &str) -> Result<String> {
        self.mutate(|st| {
            let r = st
                .role(account, name)
                .cloned()
                .ok_or_else(|| no_such("role", name))?;
            if !is_service_linked(&r) {
                return Err(ServiceError::InvalidInput(format!(
                    "Role {name} is not a service-linked role."
                )));
            }
            let service = r
                .path
                .trim_start_matches(SLR_PATH_PREFIX)
                .trim_end_matches('/');
            let id = format!(
                "task/aws-service-role/{service}/{}/{}",
                r.name,
                uuid::Uuid::new_v4()
            );
            let mut a = account_of(st, account)?;
            a.extras.deletion_tasks.insert(
                id.clone(),
                DeletionTask {
                    id: id.clone(),
                    created: now(),
                    status: "SUCCEEDED".into(),
                    reason: None,
                },
            );
            let mut changes = vec![Change::Delete("role", name_key(account, name))];
            for p in st.instance_profiles.values().filter(|p| {
                p.account == account && p.roles.iter().any(|x| x.eq_ignore_ascii_case(name))
            }) {
                let mut p = p.clone();
                p.roles.retain(|x| !x.eq_ignore_ascii_case(name));
                changes.push(Change::Put(Entity::InstanceProfile(p)));
            }
            changes.push(Change::Put(Entity::Account(a)));
            Ok((changes, id.clone()))
        })
        .await
    }

    pub fn deletion_status(&self, account: &str, id: &str) -> Result<DeletionTask> {
        if !id.starts_with("task/aws-service-role/") {
            return Err(ServiceError::InvalidInput(format!(
                "Invalid deletion task id: {id}"
            )));
        }
        self.state()
            .accounts
            .get(account)
            .and_then(|a| a.extras.deletion_tasks.get(id))
            .cloned()
            .ok_or_else(|| {
                ServiceError::NoSuchEntity(format!("Deletion task {id} cannot be found."))
            })
    }

    // --------------------------------------------------------------- STS

    /// SetSecurityTokenServicePreferences: `v1Token` or `v2Token`.
    pub async fn set_token_version(&self, account: &str, version: &str) -> Result<()> {
        self.with_extras(account, |x| {
            x.token_version = Some(version.to_string());
            Ok(())
        })
        .await
    }

    // ------------------------------------------- organizations reports

    /// GenerateOrganizationsAccessReport: a job id. The job fails (the
    /// account is in no organization); GetOrganizationsAccessReport says so.
    pub async fn start_org_report(&self, account: &str) -> Result<String> {
        let id = uuid::Uuid::new_v4().to_string();
        self.with_extras(account, |x| {
            x.org_reports.insert(id.clone(), now());
            Ok(id.clone())
        })
        .await
    }

    /// When the report job was made.
    pub fn org_report(&self, account: &str, id: &str) -> Result<Epoch> {
        self.state()
            .accounts
            .get(account)
            .and_then(|a| a.extras.org_reports.get(id))
            .copied()
            .ok_or_else(|| {
                ServiceError::NoSuchEntity(format!("The job with id {id} cannot be found."))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slr_names() {
        assert_eq!(
            slr_base("autoscaling.amazonaws.com").unwrap(),
            ("AWSServiceRoleForAutoScaling".to_string(), true)
        );
        assert_eq!(
            slr_base("my-thing.amazonaws.com").unwrap().0,
            "AWSServiceRoleForMyThing"
        );
        assert!(slr_base("example.com").is_err());
    }
}
