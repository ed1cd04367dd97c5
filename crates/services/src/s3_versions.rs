//! S3 versioning: a key's versions are its current live object (in
//! `State::objects`, so listing and reads of current objects stay as they
//! were) plus its noncurrent versions and delete markers (in
//! `State::versions`, newest first). Every write plans which records move
//! between the two in one commit.

use crate::error::{Result, ServiceError};
use crate::model::*;
use crate::state::State;
use crate::{Keycard, now_ms};

/// A bucket's versioning state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Versioning never set: one (null) version per key, overwritten.
    Unversioned,
    Enabled,
    /// New writes make the null version; older versions stay.
    Suspended,
}

impl Status {
    pub fn of(b: &Bucket) -> Status {
        match b.versioning.as_deref() {
            Some("Enabled") => Status::Enabled,
            Some(_) => Status::Suspended,
            None => Status::Unversioned,
        }
    }
}

/// The 64 characters AWS version ids are made of.
const ID_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._";

/// A new version id: 32 characters like AWS's (`3sL4kqtJlcpXroDTDmJ.rmSpXd3dIbrH`).
pub fn new_version_id() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes
        .iter()
        .map(|b| {
            let i = usize::from(b & 63);
            ID_ALPHABET.get(i).map_or('A', |c| char::from(*c))
        })
        .collect()
}

/// Whether `v` could name a version: `null` or a keycard version id.
pub fn check_version_id(v: &str) -> Result<()> {
    let ok = v == "null" || (v.len() == 32 && v.bytes().all(|c| ID_ALPHABET.contains(&c)));
    if ok {
        Ok(())
    } else {
        Err(ServiceError::InvalidArgument(
            "Invalid version id specified".into(),
        ))
    }
}

fn no_such_version() -> ServiceError {
    ServiceError::Modeled(
        "NoSuchVersion",
        404,
        "The specified version does not exist.".into(),
    )
}

fn no_bucket() -> ServiceError {
    ServiceError::NoSuchBucket("The specified bucket does not exist".into())
}

fn matches(o: &ObjectMeta, version: &str) -> bool {
    o.version() == version
}

/// The key's noncurrent versions and markers, newest first.
pub(crate) fn older<'a>(st: &'a State, bucket: &str, key: &str) -> &'a [ObjectMeta] {
    st.versions
        .get(bucket)
        .and_then(|m| m.get(key))
        .map_or(&[], Vec::as_slice)
}

fn current<'a>(st: &'a State, bucket: &str, key: &str) -> Option<&'a ObjectMeta> {
    st.objects.get(bucket).and_then(|m| m.get(key))
}

/// Every version of a key, newest first (the first is the latest).
pub(crate) fn all_versions<'a>(
    st: &'a State,
    bucket: &str,
    key: &str,
) -> impl Iterator<Item = &'a ObjectMeta> {
    current(st, bucket, key)
        .into_iter()
        .chain(older(st, bucket, key))
}

fn now_ns() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

/// A write's plan: the changes, and the data files to remove once they
/// have committed.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub changes: Vec<Change>,
    pub files: Vec<String>,
}

impl Plan {
    fn drop_file(&mut self, o: &ObjectMeta) {
        if !o.delete_marker && !o.file.is_empty() {
            self.files.push(o.file.clone());
        }
    }
}

/// Plan making `new` (an object or a delete marker) the latest version of
/// its key in bucket `b`: its version id and order are set here. On an
/// unversioned or suspended bucket it replaces the null version.
pub(crate) fn plan_latest(st: &State, b: &Bucket, mut new: ObjectMeta) -> (Plan, ObjectMeta) {
    let status = Status::of(b);
    let (bucket, key) = (new.bucket.clone(), new.key.clone());
    let cur = current(st, &bucket, &key);
    let top = all_versions(st, &bucket, &key)
        .map(|o| o.seq)
        .max()
        .unwrap_or(0);
    new.seq = now_ns().max(top.saturating_add(1));
    new.version_id = (status == Status::Enabled).then(new_version_id);
    let replaces_null = status != Status::Enabled;
    let mut plan = Plan::default();
    if let Some(c) = cur {
        if c.version_id.is_none() && replaces_null {
            if c.file != new.file {
                plan.drop_file(c);
            }
        } else {
            plan.changes
                .push(Change::Put(Entity::ObjectVersion(c.clone())));
        }
        if new.delete_marker {
            plan.changes
                .push(Change::Delete("object", format!("{bucket}/{key}")));
        }
    }
    if replaces_null {
        for v in older(st, &bucket, &key)
            .iter()
            .filter(|v| v.version_id.is_none())
        {
            plan.changes
                .push(Change::Delete("object_version", version_key(v)));
            plan.drop_file(v);
        }
    }
    plan.changes.push(Change::Put(if new.delete_marker {
        Entity::ObjectVersion(new.clone())
    } else {
        Entity::Object(new.clone())
    }));
    (plan, new)
}

/// Plan removing one version for good; the next older version becomes
/// current if it holds data. `None` when the key has no such version.
pub(crate) fn plan_remove_version(
    st: &State,
    bucket: &str,
    key: &str,
    version: &str,
) -> Option<(Plan, ObjectMeta)> {
    let cur = current(st, bucket, key);
    let old = older(st, bucket, key);
    let mut plan = Plan::default();
    let (removed, next) = if let Some(c) = cur.filter(|c| matches(c, version)) {
        plan.changes
            .push(Change::Delete("object", format!("{bucket}/{key}")));
        (c, old.first())
    } else {
        let i = old.iter().position(|v| matches(v, version))?;
        let v = old.get(i)?;
        plan.changes
            .push(Change::Delete("object_version", version_key(v)));
        let next = if cur.is_none() && i == 0 {
            old.get(1)
        } else {
            None
        };
        (v, next)
    };
    plan.drop_file(removed);
    if let Some(n) = next.filter(|n| !n.delete_marker) {
        plan.changes
            .push(Change::Delete("object_version", version_key(n)));
        plan.changes.push(Change::Put(Entity::Object(n.clone())));
    }
    Some((plan, removed.clone()))
}

/// What a DeleteObject did, for its response headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deleted {
    /// The version removed or the marker created (`x-amz-version-id`).
    pub version_id: Option<String>,
    /// Whether that version is a delete marker (`x-amz-delete-marker`).
    pub delete_marker: bool,
}

/// A page of ListObjectVersions: entries are (version, is latest).
#[derive(Debug, Default)]
pub struct VersionListing {
    pub entries: Vec<(ObjectMeta, bool)>,
    pub common_prefixes: Vec<String>,
    pub truncated: bool,
    pub next_key: Option<String>,
    pub next_version: Option<String>,
}

/// Where a ListObjectVersions page starts.
#[derive(Debug, Default, Clone)]
pub struct VersionQuery<'a> {
    pub prefix: &'a str,
    pub delimiter: Option<&'a str>,
    pub key_marker: Option<&'a str>,
    pub version_marker: Option<&'a str>,
    pub max: usize,
}

impl Keycard {
    /// PutBucketVersioning: `Enabled` or `Suspended`.
    pub async fn put_bucket_versioning(&self, bucket: &str, status: &str) -> Result<()> {
        self.mutate(|st| {
            let mut b = st
                .buckets
                .get(bucket)
                .map(|b| Bucket::clone(b))
                .ok_or_else(no_bucket)?;
            b.versioning = Some(status.to_string());
            Ok((vec![Change::Put(Entity::Bucket(b))], ()))
        })
        .await
    }

    /// One version of a key (`null` names the null version).
    pub fn object_version(&self, bucket: &str, key: &str, version: &str) -> Result<ObjectMeta> {
        let st = self.state();
        st.buckets.get(bucket).ok_or_else(no_bucket)?;
        all_versions(&st, bucket, key)
            .find(|o| matches(o, version))
            .cloned()
            .ok_or_else(no_such_version)
    }

    /// The latest version of a key when it is a delete marker.
    pub fn latest_delete_marker(&self, bucket: &str, key: &str) -> Option<ObjectMeta> {
        let st = self.state();
        all_versions(&st, bucket, key)
            .next()
            .filter(|o| o.delete_marker)
            .cloned()
    }

    /// Whether the bucket holds any object, version or delete marker.
    pub(crate) fn bucket_has_versions(st: &State, bucket: &str) -> bool {
        st.objects.get(bucket).is_some_and(|m| !m.is_empty())
            || st.versions.get(bucket).is_some_and(|m| !m.is_empty())
    }

    /// DeleteObject: without a version, remove the object (unversioned) or
    /// add a delete marker; with one, remove that version for good.
    pub async fn delete_object_version(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> Result<Deleted> {
        let (files, out) = self
            .mutate(|st| {
                let b = st.buckets.get(bucket).ok_or_else(no_bucket)?;
                let (plan, out) = plan_delete(st, b, key, version);
                Ok((plan.changes, (plan.files, out)))
            })
            .await?;
        self.remove_data(files);
        Ok(out)
    }

    pub(crate) fn remove_data(&self, files: Vec<String>) {
        self.remove_files(files.into_iter().filter(|f| !f.is_empty()).collect());
    }

    /// ListObjectVersions.
    pub fn list_object_versions(
        &self,
        bucket: &str,
        q: &VersionQuery<'_>,
    ) -> Result<VersionListing> {
        let st = self.state();
        st.buckets.get(bucket).ok_or_else(no_bucket)?;
        Ok(list_page(&st, bucket, q))
    }
}

/// Plan a DeleteObject (see [`Keycard::delete_object_version`]).
pub(crate) fn plan_delete(
    st: &State,
    b: &Bucket,
    key: &str,
    version: Option<&str>,
) -> (Plan, Deleted) {
    match (version, Status::of(b)) {
        (Some(v), _) => match plan_remove_version(st, &b.name, key, v) {
            Some((plan, removed)) => (
                plan,
                Deleted {
                    version_id: Some(v.to_string()),
                    delete_marker: removed.delete_marker,
                },
            ),
            None => (
                Plan::default(),
                Deleted {
                    version_id: Some(v.to_string()),
                    delete_marker: false,
                },
            ),
        },
        (None, Status::Unversioned) => match plan_remove_version(st, &b.name, key, "null") {
            Some((plan, _)) => (plan, Deleted::default()),
            None => (Plan::default(), Deleted::default()),
        },
        (None, _) => {
            let marker = ObjectMeta {
                bucket: b.name.clone(),
                key: key.to_string(),
                last_modified_ms: now_ms(),
                delete_marker: true,
                ..ObjectMeta::default()
            };
            let (plan, m) = plan_latest(st, b, marker);
            (
                plan,
                Deleted {
                    version_id: Some(m.version().to_string()),
                    delete_marker: true,
                },
            )
        }
    }
}

/// The union of keys with any version, from `start` on, in order.
fn keys_from<'a>(st: &'a State, bucket: &str, start: &str) -> Vec<&'a String> {
    let mut keys: Vec<&String> = st
        .objects
        .get(bucket)
        .into_iter()
        .flat_map(|m| {
            m.range::<str, _>((std::ops::Bound::Included(start), std::ops::Bound::Unbounded))
                .map(|(k, _)| k)
        })
        .chain(st.versions.get(bucket).into_iter().flat_map(|m| {
            m.range::<str, _>((std::ops::Bound::Included(start), std::ops::Bound::Unbounded))
                .map(|(k, _)| k)
        }))
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

fn list_page(st: &State, bucket: &str, q: &VersionQuery<'_>) -> VersionListing {
    let mut out = VersionListing::default();
    if q.max == 0 {
        return out;
    }
    let marker = q.key_marker.unwrap_or("");
    let start = if marker > q.prefix { marker } else { q.prefix };
    let mut count = 0usize;
    let mut last_prefix: Option<String> = None;
    for k in keys_from(st, bucket, start) {
        if !k.starts_with(q.prefix) {
            break;
        }
        if let Some(d) = q.delimiter.filter(|d| !d.is_empty())
            && let Some(pos) = k.get(q.prefix.len()..).and_then(|r| r.find(d))
        {
            let cp = k.get(..q.prefix.len() + pos + d.len()).unwrap_or(k);
            if last_prefix.as_deref() == Some(cp) || cp <= marker {
                continue;
            }
            if count >= q.max {
                out.truncated = true;
                break;
            }
            last_prefix = Some(cp.to_string());
            out.next_key = Some(cp.to_string());
            out.next_version = None;
            out.common_prefixes.push(cp.to_string());
            count += 1;
            continue;
        }
        let mut versions: Vec<(usize, &ObjectMeta)> =
            all_versions(st, bucket, k).enumerate().collect();
        if k.as_str() == marker {
            match q.version_marker {
                None => continue,
                Some(vm) => match versions.iter().position(|(_, o)| matches(o, vm)) {
                    Some(p) => {
                        versions.drain(..=p);
                    }
                    None => continue,
                },
            }
        }
        for (i, o) in versions {
            if count >= q.max {
                out.truncated = true;
                return out;
            }
            out.next_key = Some(k.clone());
            out.next_version = Some(o.version().to_string());
            out.entries.push((o.clone(), i == 0));
            count += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(versioning: Option<&str>) -> Bucket {
        Bucket {
            name: "b".into(),
            account: "1".into(),
            created: 0,
            region: "us-east-1".into(),
            policy: None,
            tags: Default::default(),
            versioning: versioning.map(str::to_string),
            lifecycle: None,
            settings: Default::default(),
        }
    }

    fn apply(st: &mut State, plan: Plan) {
        for c in plan.changes {
            match c {
                Change::Put(e) => st.put(e),
                Change::Delete(kind, key) => st.delete(kind, &key),
            }
        }
    }

    fn put(st: &mut State, data: &str) -> ObjectMeta {
        let b = st.buckets.get("b").cloned().expect("bucket");
        let new = ObjectMeta {
            bucket: "b".into(),
            key: "k".into(),
            file: data.into(),
            ..ObjectMeta::default()
        };
        let (plan, meta) = plan_latest(st, &b, new);
        apply(st, plan);
        meta
    }

    fn listing(st: &State) -> Vec<(String, bool, bool)> {
        let q = VersionQuery {
            max: 100,
            ..VersionQuery::default()
        };
        list_page(st, "b", &q)
            .entries
            .into_iter()
            .map(|(o, latest)| (o.file, o.delete_marker, latest))
            .collect()
    }

    #[test]
    fn versions_markers_and_promotion() {
        let mut st = State::default();
        st.put(Entity::Bucket(bucket(Some("Enabled"))));
        let v1 = put(&mut st, "one");
        let v2 = put(&mut st, "two");
        let b = st.buckets.get("b").cloned().expect("bucket");
        let (plan, d) = plan_delete(&st, &b, "k", None);
        apply(&mut st, plan);
        assert!(d.delete_marker);
        assert!(st.objects.get("b").is_some_and(|m| m.is_empty()));
        assert_eq!(
            listing(&st),
            vec![
                (String::new(), true, true),
                ("two".into(), false, false),
                ("one".into(), false, false)
            ]
        );
        // Removing the marker makes the newest version current again.
        let marker = d.version_id.expect("marker id");
        let (plan, _) = plan_remove_version(&st, "b", "k", &marker).expect("found");
        apply(&mut st, plan);
        assert_eq!(st.objects["b"]["k"].version_id, v2.version_id);
        // Removing the current version promotes the older one.
        let (plan, _) = plan_remove_version(&st, "b", "k", v2.version()).expect("found");
        assert_eq!(plan.files, vec!["two".to_string()]);
        apply(&mut st, plan);
        assert_eq!(st.objects["b"]["k"].version_id, v1.version_id);
        assert!(older(&st, "b", "k").is_empty());
    }

    #[test]
    fn suspended_writes_replace_the_null_version() {
        let mut st = State::default();
        st.put(Entity::Bucket(bucket(None)));
        let plain = put(&mut st, "plain");
        assert_eq!(plain.version_id, None);
        st.put(Entity::Bucket(bucket(Some("Enabled"))));
        put(&mut st, "v");
        st.put(Entity::Bucket(bucket(Some("Suspended"))));
        let b = st.buckets.get("b").cloned().expect("bucket");
        let new = ObjectMeta {
            bucket: "b".into(),
            key: "k".into(),
            file: "s".into(),
            ..ObjectMeta::default()
        };
        let (plan, meta) = plan_latest(&st, &b, new);
        // The old null version's data goes; the Enabled-era version stays.
        assert_eq!(plan.files, vec!["plain".to_string()]);
        apply(&mut st, plan);
        assert_eq!(meta.version(), "null");
        let files: Vec<String> = listing(&st).into_iter().map(|(f, _, _)| f).collect();
        assert_eq!(files, vec!["s".to_string(), "v".to_string()]);
    }

    #[test]
    fn version_ids_look_like_aws() {
        let id = new_version_id();
        assert_eq!(id.len(), 32);
        assert!(check_version_id(&id).is_ok());
        assert!(check_version_id("null").is_ok());
        for bad in [
            "",
            "abc",
            "x".repeat(33).as_str(),
            "a/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ] {
            assert!(check_version_id(bad).is_err(), "{bad}");
        }
    }
}
