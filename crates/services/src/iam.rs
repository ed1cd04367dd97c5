//! IAM: users, groups, roles, managed and inline policies, boundaries,
//! instance profiles, access keys, tags. Every write is computed from one
//! consistent view of the state and committed atomically.

use std::collections::BTreeMap;

use keycard_policy::{PolicyKind, policy_size};

use crate::crypto;
use crate::error::{Result, ServiceError};
use crate::model::*;
use crate::state::State;
use crate::validate;
use crate::{Keycard, now};

/// Which kind of IAM identity holds inline / attached policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    User,
    Group,
    Role,
}

impl Holder {
    pub fn label(self) -> &'static str {
        match self {
            Holder::User => "user",
            Holder::Group => "group",
            Holder::Role => "role",
        }
    }
    fn inline_quota(self) -> usize {
        match self {
            Holder::User => 2048,
            Holder::Group => 5120,
            Holder::Role => 10240,
        }
    }
}

pub(crate) fn no_such(kind: &str, name: &str) -> ServiceError {
    ServiceError::NoSuchEntity(format!("The {kind} with name {name} cannot be found."))
}

fn exists(kind: &str, name: &str) -> ServiceError {
    ServiceError::EntityAlreadyExists(format!("{kind} with name {name} already exists."))
}

fn new_id(prefix: &str) -> String {
    keycard_proto::ids::unique_id(prefix, &crypto::random_bytes::<16>())
}

/// An identity holding policies, cloned for modification.
enum Held {
    User(User),
    Group(Group),
    Role(Role),
}

impl Held {
    fn load(st: &State, h: Holder, account: &str, name: &str) -> Result<Held> {
        match h {
            Holder::User => st
                .user(account, name)
                .cloned()
                .map(Held::User)
                .ok_or_else(|| no_such("user", name)),
            Holder::Group => st
                .group(account, name)
                .cloned()
                .map(Held::Group)
                .ok_or_else(|| no_such("group", name)),
            Holder::Role => st
                .role(account, name)
                .cloned()
                .map(Held::Role)
                .ok_or_else(|| no_such("role", name)),
        }
    }
    fn inline(&mut self) -> &mut BTreeMap<String, PolicyDoc> {
        match self {
            Held::User(u) => &mut u.inline,
            Held::Group(g) => &mut g.inline,
            Held::Role(r) => &mut r.inline,
        }
    }
    fn attached(&mut self) -> &mut Vec<String> {
        match self {
            Held::User(u) => &mut u.attached,
            Held::Group(g) => &mut g.attached,
            Held::Role(r) => &mut r.attached,
        }
    }
    fn into_change(self) -> Change {
        Change::Put(match self {
            Held::User(u) => Entity::User(u),
            Held::Group(g) => Entity::Group(g),
            Held::Role(r) => Entity::Role(r),
        })
    }
}

/// Input for CreateRole.
#[derive(Debug, Clone, Default)]
pub struct NewRole {
    pub name: String,
    pub path: String,
    pub trust: String,
    pub description: Option<String>,
    pub max_session_duration: Option<u32>,
    pub tags: Vec<Tag>,
    pub boundary: Option<String>,
}

/// What GetAccountAuthorizationDetails reports.
pub type AuthorizationDetails = (
    Vec<User>,
    Vec<Group>,
    Vec<(Role, Vec<InstanceProfile>)>,
    Vec<(ManagedPolicy, PolicyUsage)>,
);

/// Access keys (by id) and roles (by state key) whose last use changed
/// since the last flush to the store.
#[derive(Debug, Clone, Default)]
pub struct LastUsedDirty {
    pub keys: std::collections::BTreeSet<String>,
    pub roles: std::collections::BTreeSet<String>,
}

/// Summary counts for GetAccountSummary.
pub type Summary = BTreeMap<&'static str, usize>;

impl Keycard {
    fn check_boundary_arn(st: &State, arn: &str) -> Result<()> {
        validate::policy_arn(arn)?;
        if !st.policies.contains_key(arn) {
            return Err(ServiceError::NoSuchEntity(format!(
                "Policy {arn} does not exist or is not attachable."
            )));
        }
        Ok(())
    }

    // ---------------------------------------------------------------- users

    pub async fn create_user(
        &self,
        account: &str,
        name: &str,
        path: &str,
        tags: Vec<Tag>,
        boundary: Option<String>,
    ) -> Result<User> {
        validate::name("userName", name, 64)?;
        validate::path("path", path)?;
        validate::tags(&tags)?;
        let user = User {
            account: account.into(),
            name: name.into(),
            id: new_id("AIDA"),
            path: path.into(),
            created: now(),
            tags,
            boundary,
            inline: BTreeMap::new(),
            attached: Vec::new(),
            groups: Vec::new(),
            login_profile: None,
            creds: Default::default(),
        };
        self.mutate(|st| {
            if st.user(account, name).is_some() {
                return Err(exists("User", name));
            }
            if let Some(b) = &user.boundary {
                Self::check_boundary_arn(st, b)?;
            }
            Ok((vec![Change::Put(Entity::User(user.clone()))], user.clone()))
        })
        .await
    }

    pub fn get_user(&self, account: &str, name: &str) -> Result<User> {
        self.state()
            .user(account, name)
            .cloned()
            .ok_or_else(|| no_such("user", name))
    }

    pub fn list_users(&self, account: &str, path_prefix: &str) -> Vec<User> {
        self.state()
            .users
            .values()
            .filter(|u| u.account == account && u.path.starts_with(path_prefix))
            .cloned()
            .collect()
    }

    pub async fn update_user(
        &self,
        account: &str,
        name: &str,
        new_name: Option<&str>,
        new_path: Option<&str>,
    ) -> Result<()> {
        validate::renamed("newUserName", new_name, 64, new_path)?;
        self.mutate(|st| {
            let mut u = st
                .user(account, name)
                .cloned()
                .ok_or_else(|| no_such("user", name))?;
            let mut changes = Vec::new();
            if let Some(n) = new_name
                && !n.eq_ignore_ascii_case(name)
            {
                if st.user(account, n).is_some() {
                    return Err(exists("User", n));
                }
                changes.push(Change::Delete("user", name_key(account, name)));
                // Keys belong to the user by name: move them along.
                for k in st.access_keys.values() {
                    if k.account == account
                        && k.user
                            .as_deref()
                            .is_some_and(|x| x.eq_ignore_ascii_case(name))
                    {
                        let mut k = k.clone();
                        k.user = Some(n.to_string());
                        changes.push(Change::Put(Entity::AccessKey(k)));
                    }
                }
            }
            if let Some(n) = new_name {
                // So does its MFA device.
                changes.extend(crate::iam_governance::rename_mfa_user(st, account, name, n));
                u.name = n.to_string();
            }
            if let Some(p) = new_path {
                u.path = p.to_string();
            }
            changes.push(Change::Put(Entity::User(u)));
            Ok((changes, ()))
        })
        .await
    }

    pub async fn delete_user(&self, account: &str, name: &str) -> Result<()> {
        self.mutate(|st| {
            let u = st
                .user(account, name)
                .ok_or_else(|| no_such("user", name))?;
            let has_keys = st
                .access_keys
                .values()
                .any(|k| k.account == account && k.user.as_deref() == Some(u.name.as_str()));
            let has_mfa = crate::iam_governance::mfa_of_user(st, account, &u.name).is_some();
            if let Some(kind) = u.creds.first_kind() {
                return Err(ServiceError::DeleteConflict(format!(
                    "Cannot delete entity, must delete {kind} first."
                )));
            }
            if has_keys
                || has_mfa
                || u.login_profile.is_some()
                || !u.inline.is_empty()
                || !u.attached.is_empty()
                || !u.groups.is_empty()
            {
                return Err(ServiceError::DeleteConflict(
                    "Cannot delete entity, must delete policies first.".into(),
                ));
            }
            Ok((vec![Change::Delete("user", name_key(account, name))], ()))
        })
        .await
    }

    // ---------------------------------------------------------- access keys

    /// Create a key for `user` (or the root when `None`): (key, clear secret).
    pub async fn create_access_key(
        &self,
        account: &str,
        user: Option<&str>,
    ) -> Result<(AccessKey, String)> {
        let id = keycard_proto::ids::access_key_id("AKIA", account, &crypto::random_bytes::<16>());
        let secret = keycard_proto::ids::secret_access_key(&crypto::random_bytes::<30>());
        let sealed = crypto::seal_secret(self.master(), &secret, &id);
        let key = self
            .mutate(|st| {
                let owner = match user {
                    Some(n) => Some(
                        st.user(account, n)
                            .ok_or_else(|| no_such("user", n))?
                            .name
                            .clone(),
                    ),
                    None => None,
                };
                let count = st
                    .access_keys
                    .values()
                    .filter(|k| k.account == account && k.user == owner)
                    .count();
                if owner.is_some() && count >= 2 {
                    return Err(ServiceError::LimitExceeded(
                        "Cannot exceed quota for AccessKeysPerUser: 2".into(),
                    ));
                }
                let key = AccessKey {
                    account: account.into(),
                    user: owner,
                    id: id.clone(),
                    sealed_secret: sealed.clone(),
                    status: KeyStatus::Active,
                    created: now(),
                    last_used: None,
                };
                Ok((vec![Change::Put(Entity::AccessKey(key.clone()))], key))
            })
            .await?;
        self.remember_secret(&id, &secret);
        Ok((key, secret))
    }

    fn key_of(st: &State, account: &str, user: Option<&str>, id: &str) -> Result<AccessKey> {
        st.access_keys
            .get(id)
            .filter(|k| {
                k.account == account
                    && match user {
                        Some(u) => k.user.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(u)),
                        None => true,
                    }
            })
            .cloned()
            .ok_or_else(|| {
                ServiceError::NoSuchEntity(format!("The Access Key with id {id} cannot be found."))
            })
    }

    pub fn list_access_keys(&self, account: &str, user: Option<&str>) -> Result<Vec<AccessKey>> {
        let st = self.state();
        let owner = match user {
            Some(n) => Some(
                st.user(account, n)
                    .ok_or_else(|| no_such("user", n))?
                    .name
                    .clone(),
            ),
            None => None,
        };
        Ok(st
            .access_keys
            .values()
            .filter(|k| k.account == account && k.user == owner)
            .cloned()
            .collect())
    }

    pub async fn update_access_key(
        &self,
        account: &str,
        user: Option<&str>,
        id: &str,
        status: KeyStatus,
    ) -> Result<()> {
        self.mutate(|st| {
            let mut k = Self::key_of(st, account, user, id)?;
            k.status = status;
            Ok((vec![Change::Put(Entity::AccessKey(k))], ()))
        })
        .await
    }

    pub async fn delete_access_key(
        &self,
        account: &str,
        user: Option<&str>,
        id: &str,
    ) -> Result<()> {
        self.mutate(|st| {
            let k = Self::key_of(st, account, user, id)?;
            if k.user.is_none() {
                return Err(ServiceError::DeleteConflict(
                    "The root access key of an account cannot be deleted through this API.".into(),
                ));
            }
            let gone = DeletedAccessKey::of(&k, now());
            Ok((
                vec![
                    Change::Delete("access_key", id.to_string()),
                    Change::Put(Entity::DeletedAccessKey(gone)),
                ],
                (),
            ))
        })
        .await
    }

    /// (user name or None for root, last use).
    pub fn access_key_last_used(&self, id: &str) -> Result<AccessKey> {
        self.state().access_keys.get(id).cloned().ok_or_else(|| {
            ServiceError::NoSuchEntity(format!("The Access Key with id {id} cannot be found."))
        })
    }

    /// Record that a key was used: in memory at once (at most once a
    /// minute per key and service), in the store with the next
    /// [`Keycard::flush_last_used`]. Cheap enough for the hot path.
    pub fn touch_access_key(&self, id: &str, service: &str, region: &str) {
        let t = now();
        let needs = {
            let st = self.state();
            st.access_keys.get(id).is_some_and(|k| {
                k.last_used
                    .as_ref()
                    .is_none_or(|l| t - l.date >= 60 || l.service != service)
            })
        };
        if needs {
            let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
            if let Some(k) = st.access_keys.get_mut(id) {
                k.last_used = Some(LastUsed {
                    date: t,
                    service: service.into(),
                    region: region.into(),
                });
                self.dirty_last_used().keys.insert(id.to_string());
            }
        }
    }

    /// Record that a role made a call (through one of its sessions), as
    /// GetRole's `RoleLastUsed` reports: in memory at once (at most once a
    /// minute per role and region), in the store with the next flush. A
    /// role deleted and re-created under the same name is not touched by
    /// the old one's sessions.
    pub fn touch_role(&self, account: &str, name: &str, role_id: &str, region: &str) {
        let t = now();
        let key = name_key(account, name);
        let needs = self.state().roles.get(&key).is_some_and(|r| {
            r.id == role_id
                && (r.last_used.is_none_or(|d| t - d >= 60)
                    || r.last_used_region.as_deref() != Some(region))
        });
        if !needs {
            return;
        }
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = st.roles.get_mut(&key).filter(|r| r.id == role_id) {
            r.last_used = Some(t);
            r.last_used_region = Some(region.to_string());
            self.dirty_last_used().roles.insert(key);
        }
    }

    fn dirty_last_used(&self) -> std::sync::MutexGuard<'_, LastUsedDirty> {
        self.last_used_dirty
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Write the last-used data touched since the previous flush to the
    /// store, in one commit. Entities deleted meanwhile are skipped; on a
    /// failed commit the set stays dirty for the next try.
    pub async fn flush_last_used(&self) -> Result<()> {
        let dirty = std::mem::take(&mut *self.dirty_last_used());
        if dirty.keys.is_empty() && dirty.roles.is_empty() {
            return Ok(());
        }
        let d = dirty.clone();
        let res = self
            .mutate(move |st| {
                let keys = d
                    .keys
                    .iter()
                    .filter_map(|id| st.access_keys.get(id))
                    .map(|k| Change::Put(Entity::AccessKey(k.clone())));
                let roles = d
                    .roles
                    .iter()
                    .filter_map(|key| st.roles.get(key))
                    .map(|r| Change::Put(Entity::Role(r.clone())));
                Ok((keys.chain(roles).collect(), ()))
            })
            .await;
        if res.is_err() {
            let mut cur = self.dirty_last_used();
            cur.keys.extend(dirty.keys);
            cur.roles.extend(dirty.roles);
        }
        res
    }

    /// Flush last-used data every `period` until the keycard is dropped.
    pub fn spawn_last_used_flusher(
        self: &std::sync::Arc<Self>,
        period: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        let weak = std::sync::Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(kc) = weak.upgrade() else { return };
                if let Err(e) = kc.flush_last_used().await {
                    tracing::warn!(error = %e, "persisting last-used data failed; will retry");
                }
            }
        })
    }

    // --------------------------------------------------------------- groups

    pub async fn create_group(&self, account: &str, name: &str, path: &str) -> Result<Group> {
        validate::name("groupName", name, 128)?;
        validate::path("path", path)?;
        let g = Group {
            account: account.into(),
            name: name.into(),
            id: new_id("AGPA"),
            path: path.into(),
            created: now(),
            inline: BTreeMap::new(),
            attached: Vec::new(),
        };
        self.mutate(|st| {
            if st.group(account, name).is_some() {
                return Err(exists("Group", name));
            }
            Ok((vec![Change::Put(Entity::Group(g.clone()))], g.clone()))
        })
        .await
    }

    /// The group and its members.
    pub fn get_group(&self, account: &str, name: &str) -> Result<(Group, Vec<User>)> {
        let st = self.state();
        let g = st
            .group(account, name)
            .cloned()
            .ok_or_else(|| no_such("group", name))?;
        let users = st
            .users
            .values()
            .filter(|u| {
                u.account == account && u.groups.iter().any(|x| x.eq_ignore_ascii_case(name))
            })
            .cloned()
            .collect();
        Ok((g, users))
    }

    pub fn list_groups(&self, account: &str, path_prefix: &str) -> Vec<Group> {
        self.state()
            .groups
            .values()
            .filter(|g| g.account == account && g.path.starts_with(path_prefix))
            .cloned()
            .collect()
    }

    pub fn list_groups_for_user(&self, account: &str, user: &str) -> Result<Vec<Group>> {
        let st = self.state();
        let u = st
            .user(account, user)
            .ok_or_else(|| no_such("user", user))?;
        Ok(u.groups
            .iter()
            .filter_map(|g| st.group(account, g).cloned())
            .collect())
    }

    pub async fn delete_group(&self, account: &str, name: &str) -> Result<()> {
        self.mutate(|st| {
            let g = st
                .group(account, name)
                .ok_or_else(|| no_such("group", name))?;
            let has_members = st.users.values().any(|u| {
                u.account == account && u.groups.iter().any(|x| x.eq_ignore_ascii_case(name))
            });
            if has_members || !g.inline.is_empty() || !g.attached.is_empty() {
                return Err(ServiceError::DeleteConflict(
                    "Cannot delete entity, must remove users from group first.".into(),
                ));
            }
            Ok((vec![Change::Delete("group", name_key(account, name))], ()))
        })
        .await
    }

    pub async fn add_user_to_group(&self, account: &str, group: &str, user: &str) -> Result<()> {
        self.mutate(|st| {
            let g = st
                .group(account, group)
                .ok_or_else(|| no_such("group", group))?;
            let mut u = st
                .user(account, user)
                .cloned()
                .ok_or_else(|| no_such("user", user))?;
            if u.groups.iter().any(|x| x.eq_ignore_ascii_case(group)) {
                return Ok((vec![], ()));
            }
            if u.groups.len() >= 10 {
                return Err(ServiceError::LimitExceeded(
                    "Cannot exceed quota for GroupsPerUser: 10".into(),
                ));
            }
            u.groups.push(g.name.clone());
            Ok((vec![Change::Put(Entity::User(u))], ()))
        })
        .await
    }

    pub async fn remove_user_from_group(
        &self,
        account: &str,
        group: &str,
        user: &str,
    ) -> Result<()> {
        self.mutate(|st| {
            st.group(account, group)
                .ok_or_else(|| no_such("group", group))?;
            let mut u = st
                .user(account, user)
                .cloned()
                .ok_or_else(|| no_such("user", user))?;
            let before = u.groups.len();
            u.groups.retain(|x| !x.eq_ignore_ascii_case(group));
            if u.groups.len() == before {
                return Err(ServiceError::NoSuchEntity(format!(
                    "User {user} is not in group {group}."
                )));
            }
            Ok((vec![Change::Put(Entity::User(u))], ()))
        })
        .await
    }

    // ---------------------------------------------------------------- roles

    pub async fn create_role(&self, account: &str, input: NewRole) -> Result<Role> {
        validate::name("roleName", &input.name, 64)?;
        validate::path("path", &input.path)?;
        validate::tags(&input.tags)?;
        let max = input.max_session_duration.unwrap_or(3600);
        if !(3600..=43200).contains(&max) {
            return Err(ServiceError::ValidationError(format!(
                "1 validation error detected: Value '{max}' at 'maxSessionDuration' failed to satisfy constraint: Member must have value less than or equal to 43200 and greater than or equal to 3600"
            )));
        }
        if let Some(d) = &input.description
            && d.chars().count() > 1000
        {
            return Err(ServiceError::ValidationError(
                "1 validation error detected: Value at 'description' failed to satisfy constraint: Member must have length less than or equal to 1000".into(),
            ));
        }
        let trust = PolicyDoc::parse(&input.trust, PolicyKind::Trust)?;
        let role = Role {
            account: account.into(),
            name: input.name.clone(),
            id: new_id("AROA"),
            path: input.path.clone(),
            created: now(),
            trust,
            description: input.description.clone(),
            max_session_duration: max,
            tags: input.tags.clone(),
            boundary: input.boundary.clone(),
            inline: BTreeMap::new(),
            attached: Vec::new(),
            last_used: None,
            last_used_region: None,
        };
        self.mutate(|st| {
            if st.role(account, &role.name).is_some() {
                return Err(exists("Role", &role.name));
            }
            if let Some(b) = &role.boundary {
                Self::check_boundary_arn(st, b)?;
            }
            Ok((vec![Change::Put(Entity::Role(role.clone()))], role.clone()))
        })
        .await
    }

    pub fn get_role(&self, account: &str, name: &str) -> Result<Role> {
        self.state()
            .role(account, name)
            .cloned()
            .ok_or_else(|| no_such("role", name))
    }

    pub fn list_roles(&self, account: &str, path_prefix: &str) -> Vec<Role> {
        self.state()
            .roles
            .values()
            .filter(|r| r.account == account && r.path.starts_with(path_prefix))
            .cloned()
            .collect()
    }

    pub async fn update_role(
        &self,
        account: &str,
        name: &str,
        description: Option<&str>,
        max_session_duration: Option<u32>,
    ) -> Result<()> {
        if let Some(m) = max_session_duration
            && !(3600..=43200).contains(&m)
        {
            return Err(ServiceError::ValidationError(format!(
                "1 validation error detected: Value '{m}' at 'maxSessionDuration' failed to satisfy constraint: Member must have value less than or equal to 43200 and greater than or equal to 3600"
            )));
        }
        self.mutate(|st| {
            let mut r = st
                .role(account, name)
                .cloned()
                .ok_or_else(|| no_such("role", name))?;
            if let Some(d) = description {
                r.description = Some(d.to_string());
            }
            if let Some(m) = max_session_duration {
                r.max_session_duration = m;
            }
            Ok((vec![Change::Put(Entity::Role(r))], ()))
        })
        .await
    }

    pub async fn update_assume_role_policy(
        &self,
        account: &str,
        name: &str,
        doc: &str,
    ) -> Result<()> {
        let trust = PolicyDoc::parse(doc, PolicyKind::Trust)?;
        self.mutate(|st| {
            let mut r = st
                .role(account, name)
                .cloned()
                .ok_or_else(|| no_such("role", name))?;
            if crate::iam_more::is_service_linked(&r) {
                return Err(crate::iam_more::unmodifiable(&r.name));
            }
            r.trust = trust.clone();
            Ok((vec![Change::Put(Entity::Role(r))], ()))
        })
        .await
    }

    pub async fn delete_role(&self, account: &str, name: &str) -> Result<()> {
        self.mutate(|st| {
            let r = st
                .role(account, name)
                .ok_or_else(|| no_such("role", name))?;
            if crate::iam_more::is_service_linked(r) {
                return Err(crate::iam_more::unmodifiable(&r.name));
            }
            let in_profile = st.instance_profiles.values().any(|p| {
                p.account == account && p.roles.iter().any(|x| x.eq_ignore_ascii_case(name))
            });
            if in_profile {
                return Err(ServiceError::DeleteConflict(
                    "Cannot delete entity, must remove roles from instance profile first.".into(),
                ));
            }
            if !r.inline.is_empty() || !r.attached.is_empty() {
                return Err(ServiceError::DeleteConflict(
                    "Cannot delete entity, must detach all policies first.".into(),
                ));
            }
            Ok((vec![Change::Delete("role", name_key(account, name))], ()))
        })
        .await
    }

    // ------------------------------------------------------------- tagging

    pub async fn tag(&self, account: &str, h: Holder, name: &str, tags: Vec<Tag>) -> Result<()> {
        self.mutate(|st| {
            let mut held = Held::load(st, h, account, name)?;
            let list = match &mut held {
                Held::User(u) => &mut u.tags,
                Held::Role(r) => &mut r.tags,
                Held::Group(_) => {
                    return Err(ServiceError::InvalidInput("groups have no tags".into()));
                }
            };
            for t in &tags {
                match list.iter_mut().find(|x| x.key == t.key) {
                    Some(x) => x.value = t.value.clone(),
                    None => list.push(t.clone()),
                }
            }
            validate::tags(list)?;
            Ok((vec![held.into_change()], ()))
        })
        .await
    }

    pub async fn untag(
        &self,
        account: &str,
        h: Holder,
        name: &str,
        keys: Vec<String>,
    ) -> Result<()> {
        self.mutate(|st| {
            let mut held = Held::load(st, h, account, name)?;
            let list = match &mut held {
                Held::User(u) => &mut u.tags,
                Held::Role(r) => &mut r.tags,
                Held::Group(_) => {
                    return Err(ServiceError::InvalidInput("groups have no tags".into()));
                }
            };
            list.retain(|t| !keys.contains(&t.key));
            Ok((vec![held.into_change()], ()))
        })
        .await
    }

    // ---------------------------------------------------- managed policies

    pub async fn create_policy(
        &self,
        account: &str,
        name: &str,
        path: &str,
        doc: &str,
        description: Option<String>,
        tags: Vec<Tag>,
    ) -> Result<ManagedPolicy> {
        validate::name("policyName", name, 128)?;
        validate::path("path", path)?;
        validate::tags(&tags)?;
        let doc = PolicyDoc::parse(doc, PolicyKind::Identity)?;
        let t = now();
        let p = ManagedPolicy {
            account: account.into(),
            name: name.into(),
            id: new_id("ANPA"),
            path: path.into(),
            created: t,
            updated: t,
            description,
            default_version: "v1".into(),
            versions: vec![PolicyVersion {
                id: "v1".into(),
                doc,
                created: t,
            }],
            next_version: 2,
            tags,
        };
        self.mutate(|st| {
            let dup = st
                .policies
                .values()
                .any(|x| x.account == account && x.name.eq_ignore_ascii_case(name));
            if dup {
                return Err(ServiceError::EntityAlreadyExists(format!(
                    "A policy called {name} already exists. Duplicate names are not allowed."
                )));
            }
            Ok((vec![Change::Put(Entity::Policy(p.clone()))], p.clone()))
        })
        .await
    }

    fn policy_in(st: &State, arn: &str) -> Result<ManagedPolicy> {
        validate::policy_arn(arn)?;
        st.policies.get(arn).cloned().ok_or_else(|| {
            ServiceError::NoSuchEntity(format!("Policy {arn} does not exist or is not attachable."))
        })
    }

    /// The policy and how it is used (attachments, boundaries).
    pub fn get_policy(&self, arn: &str) -> Result<(ManagedPolicy, PolicyUsage)> {
        let st = self.state();
        let p = Self::policy_in(&st, arn)?;
        Ok((p, st.policy_usage(arn)))
    }

    /// Scope: "All" | "AWS" | "Local".
    pub fn list_policies(
        &self,
        account: &str,
        scope: &str,
        only_attached: bool,
        path_prefix: &str,
    ) -> Vec<(ManagedPolicy, PolicyUsage)> {
        let st = self.state();
        st.policies
            .values()
            .filter(|p| match scope {
                "AWS" => p.account == "aws",
                "Local" => p.account == account,
                _ => p.account == "aws" || p.account == account,
            })
            .filter(|p| p.path.starts_with(path_prefix))
            .map(|p| (p.clone(), st.policy_usage(&p.arn())))
            .filter(|(_, n)| !only_attached || n.attachments > 0)
            .collect()
    }

    fn own_policy(st: &State, account: &str, arn: &str) -> Result<ManagedPolicy> {
        let p = Self::policy_in(st, arn)?;
        if p.account != account {
            return Err(ServiceError::AccessDenied(format!(
                "Policy {arn} is not owned by account {account}."
            )));
        }
        Ok(p)
    }

    pub async fn create_policy_version(
        &self,
        account: &str,
        arn: &str,
        doc: &str,
        set_default: bool,
    ) -> Result<PolicyVersion> {
        let doc = PolicyDoc::parse(doc, PolicyKind::Identity)?;
        self.mutate(|st| {
            let mut p = Self::own_policy(st, account, arn)?;
            if p.versions.len() >= 5 {
                return Err(ServiceError::LimitExceeded(
                    "A managed policy can have up to 5 versions. Before you create a new version, you must delete an existing version.".into(),
                ));
            }
            let v = PolicyVersion {
                id: format!("v{}", p.next_version),
                doc: doc.clone(),
                created: now(),
            };
            p.next_version += 1;
            p.versions.push(v.clone());
            if set_default {
                p.default_version = v.id.clone();
            }
            p.updated = now();
            Ok((vec![Change::Put(Entity::Policy(p))], v))
        })
        .await
    }

    pub fn get_policy_version(&self, arn: &str, version: &str) -> Result<(PolicyVersion, bool)> {
        let st = self.state();
        let p = Self::policy_in(&st, arn)?;
        let v = p
            .versions
            .iter()
            .find(|v| v.id == version)
            .cloned()
            .ok_or_else(|| {
                ServiceError::NoSuchEntity(format!(
                    "Policy {arn} version {version} does not exist or is not attachable."
                ))
            })?;
        let is_default = p.default_version == version;
        Ok((v, is_default))
    }

    pub async fn set_default_policy_version(
        &self,
        account: &str,
        arn: &str,
        version: &str,
    ) -> Result<()> {
        self.mutate(|st| {
            let mut p = Self::own_policy(st, account, arn)?;
            if !p.versions.iter().any(|v| v.id == version) {
                return Err(ServiceError::NoSuchEntity(format!(
                    "Policy {arn} version {version} does not exist or is not attachable."
                )));
            }
            p.default_version = version.to_string();
            p.updated = now();
            Ok((vec![Change::Put(Entity::Policy(p))], ()))
        })
        .await
    }

    pub async fn delete_policy_version(
        &self,
        account: &str,
        arn: &str,
        version: &str,
    ) -> Result<()> {
        self.mutate(|st| {
            let mut p = Self::own_policy(st, account, arn)?;
            if p.default_version == version {
                return Err(ServiceError::DeleteConflict(
                    "Cannot delete the default version of a policy.".into(),
                ));
            }
            let before = p.versions.len();
            p.versions.retain(|v| v.id != version);
            if p.versions.len() == before {
                return Err(ServiceError::NoSuchEntity(format!(
                    "Policy {arn} version {version} does not exist or is not attachable."
                )));
            }
            Ok((vec![Change::Put(Entity::Policy(p))], ()))
        })
        .await
    }

    pub async fn delete_policy(&self, account: &str, arn: &str) -> Result<()> {
        self.mutate(|st| {
            let p = Self::own_policy(st, account, arn)?;
            if st.attachment_count(arn) > 0 || st.boundary_count(arn) > 0 {
                return Err(ServiceError::DeleteConflict(
                    "Cannot delete a policy attached to entities.".into(),
                ));
            }
            if p.versions.len() > 1 {
                return Err(ServiceError::DeleteConflict(
                    "This policy has more than one version. Before you delete a policy, you must delete the policy's versions. The default version is deleted with the policy.".into(),
                ));
            }
            Ok((vec![Change::Delete("policy", arn.to_string())], ()))
        })
        .await
    }

    pub async fn attach_policy(
        &self,
        account: &str,
        h: Holder,
        name: &str,
        arn: &str,
    ) -> Result<()> {
        self.mutate(|st| {
            let p = Self::policy_in(st, arn)?;
            if p.account != "aws" && p.account != account {
                return Err(ServiceError::NoSuchEntity(format!(
                    "Policy {arn} does not exist or is not attachable."
                )));
            }
            let mut held = Held::load(st, h, account, name)?;
            let list = held.attached();
            if list.iter().any(|x| x == arn) {
                return Ok((vec![], ()));
            }
            if list.len() >= 10 {
                return Err(ServiceError::LimitExceeded(
                    "Cannot exceed quota for PoliciesPerRole: 10".into(),
                ));
            }
            list.push(arn.to_string());
            Ok((vec![held.into_change()], ()))
        })
        .await
    }

    pub async fn detach_policy(
        &self,
        account: &str,
        h: Holder,
        name: &str,
        arn: &str,
    ) -> Result<()> {
        validate::policy_arn(arn)?;
        self.mutate(|st| {
            let mut held = Held::load(st, h, account, name)?;
            let list = held.attached();
            let before = list.len();
            list.retain(|x| x != arn);
            if list.len() == before {
                return Err(ServiceError::NoSuchEntity(format!(
                    "Policy {arn} was not found."
                )));
            }
            Ok((vec![held.into_change()], ()))
        })
        .await
    }

    /// Attached policies as (name, arn).
    pub fn list_attached(
        &self,
        account: &str,
        h: Holder,
        name: &str,
    ) -> Result<Vec<(String, String)>> {
        let st = self.state();
        let mut held = Held::load(&st, h, account, name)?;
        Ok(held
            .attached()
            .iter()
            .map(|arn| {
                let n = st
                    .policies
                    .get(arn)
                    .map(|p| p.name.clone())
                    .unwrap_or_else(|| arn.rsplit('/').next().unwrap_or(arn).to_string());
                (n, arn.clone())
            })
            .collect())
    }

    /// Users, groups and roles a policy is attached to.
    pub fn entities_for_policy(&self, arn: &str) -> Result<(Vec<User>, Vec<Group>, Vec<Role>)> {
        let st = self.state();
        Self::policy_in(&st, arn)?;
        let has = |v: &Vec<String>| v.iter().any(|x| x == arn);
        Ok((
            st.users
                .values()
                .filter(|u| has(&u.attached))
                .cloned()
                .collect(),
            st.groups
                .values()
                .filter(|g| has(&g.attached))
                .cloned()
                .collect(),
            st.roles
                .values()
                .filter(|r| has(&r.attached))
                .cloned()
                .collect(),
        ))
    }

    // ------------------------------------------------------ inline policies

    pub async fn put_inline(
        &self,
        account: &str,
        h: Holder,
        name: &str,
        policy: &str,
        doc: &str,
    ) -> Result<()> {
        validate::name("policyName", policy, 128)?;
        let parsed = PolicyDoc::parse(doc, PolicyKind::Identity)?;
        self.mutate(|st| {
            let mut held = Held::load(st, h, account, name)?;
            let inline = held.inline();
            inline.insert(policy.to_string(), parsed.clone());
            let total: usize = inline.values().map(|d| policy_size(&d.text)).sum();
            if total > h.inline_quota() {
                return Err(ServiceError::LimitExceeded(format!(
                    "Maximum policy size of {} bytes exceeded for {} {name}",
                    h.inline_quota(),
                    h.label()
                )));
            }
            Ok((vec![held.into_change()], ()))
        })
        .await
    }

    pub fn get_inline(&self, account: &str, h: Holder, name: &str, policy: &str) -> Result<String> {
        let st = self.state();
        let mut held = Held::load(&st, h, account, name)?;
        held.inline()
            .get(policy)
            .map(|d| d.text.clone())
            .ok_or_else(|| {
                ServiceError::NoSuchEntity(format!(
                    "The {} policy with name {policy} cannot be found.",
                    h.label()
                ))
            })
    }

    pub fn list_inline(&self, account: &str, h: Holder, name: &str) -> Result<Vec<String>> {
        let st = self.state();
        let mut held = Held::load(&st, h, account, name)?;
        Ok(held.inline().keys().cloned().collect())
    }

    pub async fn delete_inline(
        &self,
        account: &str,
        h: Holder,
        name: &str,
        policy: &str,
    ) -> Result<()> {
        self.mutate(|st| {
            let mut held = Held::load(st, h, account, name)?;
            if held.inline().remove(policy).is_none() {
                return Err(ServiceError::NoSuchEntity(format!(
                    "The {} policy with name {policy} cannot be found.",
                    h.label()
                )));
            }
            Ok((vec![held.into_change()], ()))
        })
        .await
    }

    // ------------------------------------------------ permissions boundary

    pub async fn set_boundary(
        &self,
        account: &str,
        h: Holder,
        name: &str,
        arn: Option<&str>,
    ) -> Result<()> {
        self.mutate(|st| {
            if let Some(a) = arn {
                Self::check_boundary_arn(st, a)?;
            }
            let mut held = Held::load(st, h, account, name)?;
            match &mut held {
                Held::User(u) => u.boundary = arn.map(str::to_string),
                Held::Role(r) => r.boundary = arn.map(str::to_string),
                Held::Group(_) => {
                    return Err(ServiceError::InvalidInput("groups have no boundary".into()));
                }
            }
            Ok((vec![held.into_change()], ()))
        })
        .await
    }

    // --------------------------------------------------- instance profiles

    pub async fn create_instance_profile(
        &self,
        account: &str,
        name: &str,
        path: &str,
        tags: Vec<Tag>,
    ) -> Result<InstanceProfile> {
        validate::name("instanceProfileName", name, 128)?;
        validate::path("path", path)?;
        validate::tags(&tags)?;
        let p = InstanceProfile {
            account: account.into(),
            name: name.into(),
            id: new_id("AIPA"),
            path: path.into(),
            created: now(),
            roles: Vec::new(),
            tags,
        };
        self.mutate(|st| {
            if st.instance_profile(account, name).is_some() {
                return Err(exists("Instance Profile", name));
            }
            Ok((
                vec![Change::Put(Entity::InstanceProfile(p.clone()))],
                p.clone(),
            ))
        })
        .await
    }

    /// The profile and its roles.
    pub fn get_instance_profile(
        &self,
        account: &str,
        name: &str,
    ) -> Result<(InstanceProfile, Vec<Role>)> {
        let st = self.state();
        let p = st
            .instance_profile(account, name)
            .cloned()
            .ok_or_else(|| no_such("instance profile", name))?;
        let roles = p
            .roles
            .iter()
            .filter_map(|r| st.role(account, r).cloned())
            .collect();
        Ok((p, roles))
    }

    pub fn list_instance_profiles(
        &self,
        account: &str,
        path_prefix: &str,
        role: Option<&str>,
    ) -> Result<Vec<(InstanceProfile, Vec<Role>)>> {
        let st = self.state();
        if let Some(r) = role {
            st.role(account, r).ok_or_else(|| no_such("role", r))?;
        }
        Ok(st
            .instance_profiles
            .values()
            .filter(|p| p.account == account && p.path.starts_with(path_prefix))
            .filter(|p| role.is_none_or(|r| p.roles.iter().any(|x| x.eq_ignore_ascii_case(r))))
            .map(|p| {
                let roles = p
                    .roles
                    .iter()
                    .filter_map(|r| st.role(account, r).cloned())
                    .collect();
                (p.clone(), roles)
            })
            .collect())
    }

    pub async fn delete_instance_profile(&self, account: &str, name: &str) -> Result<()> {
        self.mutate(|st| {
            let p = st
                .instance_profile(account, name)
                .ok_or_else(|| no_such("instance profile", name))?;
            if !p.roles.is_empty() {
                return Err(ServiceError::DeleteConflict(
                    "Cannot delete entity, must remove roles from instance profile first.".into(),
                ));
            }
            let arn = p.arn();
            let in_use = st.instances.values().any(|i| {
                i.profile.as_ref().is_some_and(|a| a.profile_arn == arn) && !i.is_terminated()
            });
            if in_use {
                return Err(ServiceError::DeleteConflict(
                    "Cannot delete entity, the instance profile is associated with an instance."
                        .into(),
                ));
            }
            Ok((
                vec![Change::Delete("instance_profile", name_key(account, name))],
                (),
            ))
        })
        .await
    }

    pub async fn add_role_to_instance_profile(
        &self,
        account: &str,
        profile: &str,
        role: &str,
    ) -> Result<()> {
        self.mutate(|st| {
            let mut p = st
                .instance_profile(account, profile)
                .cloned()
                .ok_or_else(|| no_such("instance profile", profile))?;
            let r = st
                .role(account, role)
                .ok_or_else(|| no_such("role", role))?;
            if !p.roles.is_empty() {
                return Err(ServiceError::LimitExceeded(
                    "Cannot exceed quota for InstanceSessionsPerInstanceProfile: 1".into(),
                ));
            }
            p.roles.push(r.name.clone());
            Ok((vec![Change::Put(Entity::InstanceProfile(p))], ()))
        })
        .await
    }

    pub async fn remove_role_from_instance_profile(
        &self,
        account: &str,
        profile: &str,
        role: &str,
    ) -> Result<()> {
        self.mutate(|st| {
            let mut p = st
                .instance_profile(account, profile)
                .cloned()
                .ok_or_else(|| no_such("instance profile", profile))?;
            st.role(account, role)
                .ok_or_else(|| no_such("role", role))?;
            let before = p.roles.len();
            p.roles.retain(|x| !x.eq_ignore_ascii_case(role));
            if before == p.roles.len() {
                return Err(ServiceError::NoSuchEntity(format!(
                    "The role with name {role} cannot be found in instance profile {profile}."
                )));
            }
            Ok((vec![Change::Put(Entity::InstanceProfile(p))], ()))
        })
        .await
    }

    // ------------------------------------------------------------- account

    pub fn account_summary(&self, account: &str) -> Summary {
        let st = self.state();
        let mut m = Summary::new();
        let users: Vec<&User> = st.users.values().filter(|u| u.account == account).collect();
        let roles: Vec<&Role> = st.roles.values().filter(|r| r.account == account).collect();
        let groups: Vec<&Group> = st
            .groups
            .values()
            .filter(|g| g.account == account)
            .collect();
        m.insert("Users", users.len());
        m.insert("UsersQuota", 5000);
        m.insert("Groups", groups.len());
        m.insert("GroupsQuota", 300);
        m.insert("Roles", roles.len());
        m.insert("RolesQuota", 1000);
        m.insert(
            "Policies",
            st.policies
                .values()
                .filter(|p| p.account == account)
                .count(),
        );
        m.insert("PoliciesQuota", 1500);
        m.insert(
            "InstanceProfiles",
            st.instance_profiles
                .values()
                .filter(|p| p.account == account)
                .count(),
        );
        m.insert("InstanceProfilesQuota", 1000);
        m.insert("AccessKeysPerUserQuota", 2);
        m.insert(
            "AccountAccessKeysPresent",
            st.access_keys
                .values()
                .filter(|k| k.account == account && k.user.is_none())
                .count()
                .min(1),
        );
        // Root has no MFA device, password or signing certificate here.
        m.insert("AccountMFAEnabled", 0);
        m.insert("AccountPasswordPresent", 0);
        m.insert("AccountSigningCertificatesPresent", 0);
        let mfa = st.accounts.get(account).map(|a| &a.governance.mfa);
        m.insert("MFADevices", mfa.map_or(0, |d| d.len()));
        m.insert(
            "MFADevicesInUse",
            mfa.map_or(0, |d| d.values().filter(|x| x.user.is_some()).count()),
        );
        m.insert("Providers", 0);
        m.insert("SigningCertificatesPerUserQuota", 2);
        m.insert(
            "PolicyVersionsInUse",
            users.iter().map(|u| u.attached.len()).sum::<usize>()
                + roles.iter().map(|r| r.attached.len()).sum::<usize>()
                + groups.iter().map(|g| g.attached.len()).sum::<usize>(),
        );
        m.insert("PolicyVersionsInUseQuota", 10000);
        m.insert(
            "ServerCertificates",
            st.accounts
                .get(account)
                .map_or(0, |a| a.extras.server_certs.len()),
        );
        m.insert("ServerCertificatesQuota", 20);
        m.insert("AttachedPoliciesPerUserQuota", 10);
        m.insert("AttachedPoliciesPerGroupQuota", 10);
        m.insert("AttachedPoliciesPerRoleQuota", 10);
        m.insert("GroupsPerUserQuota", 10);
        m.insert("UserPolicySizeQuota", 2048);
        m.insert("GroupPolicySizeQuota", 5120);
        m.insert("RolePolicySizeQuota", 10240);
        m.insert("PolicySizeQuota", 6144);
        m.insert("VersionsPerPolicyQuota", 5);
        m.insert("AssumeRolePolicySizeQuota", 2048);
        let v2 = st
            .accounts
            .get(account)
            .is_some_and(|a| a.extras.token_version.as_deref() == Some("v2Token"));
        m.insert("GlobalEndpointTokenVersion", if v2 { 2 } else { 1 });
        m
    }

    /// Everything for GetAccountAuthorizationDetails.
    pub fn authorization_details(&self, account: &str) -> AuthorizationDetails {
        let st = self.state();
        let users = st
            .users
            .values()
            .filter(|u| u.account == account)
            .cloned()
            .collect();
        let groups = st
            .groups
            .values()
            .filter(|g| g.account == account)
            .cloned()
            .collect();
        let roles = st
            .roles
            .values()
            .filter(|r| r.account == account)
            .map(|r| {
                let profiles = st
                    .instance_profiles
                    .values()
                    .filter(|p| p.account == account && p.roles.iter().any(|x| x == &r.name))
                    .cloned()
                    .collect();
                (r.clone(), profiles)
            })
            .collect();
        let policies = st
            .policies
            .values()
            .filter(|p| {
                p.account == account || (p.account == "aws" && st.attachment_count(&p.arn()) > 0)
            })
            .map(|p| (p.clone(), st.policy_usage(&p.arn())))
            .collect();
        (users, groups, roles, policies)
    }
}
