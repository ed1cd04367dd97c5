//! S3: buckets, objects on disk under the data directory, multipart
//! uploads, bucket policies. Object bytes stream into a temp file in the
//! objects directory (digests computed as they pass, memory bounded by one
//! block), are fsynced and renamed into place, and only then does the
//! metadata commit: a failed or interrupted write leaves no trace.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use keycard_policy::PolicyKind;

use crate::error::{Result, ServiceError};
use crate::model::*;
use crate::{Keycard, now, now_ms};

/// Largest object accepted in one PUT or part (AWS: 5 GiB).
pub const MAX_PUT: u64 = 5 * 1024 * 1024 * 1024;

/// How much object data moves at a time (buffered, hashed, written).
pub const BLOCK: usize = 1024 * 1024;

/// The suffix of object files still being written.
const TEMP_SUFFIX: &str = ".tmp";

pub fn validate_bucket_name(name: &str) -> Result<()> {
    let bad = || ServiceError::InvalidBucketName("The specified bucket is not valid.".into());
    if !(3..=63).contains(&name.len()) {
        return Err(bad());
    }
    let b = name.as_bytes();
    if !b
        .iter()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'.' || *c == b'-')
    {
        return Err(bad());
    }
    if !b.first().is_some_and(u8::is_ascii_alphanumeric)
        || !b.last().is_some_and(u8::is_ascii_alphanumeric)
    {
        return Err(bad());
    }
    if name.contains("..") || name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err(bad());
    }
    Ok(())
}

fn no_bucket(name: &str) -> ServiceError {
    let _ = name;
    ServiceError::NoSuchBucket("The specified bucket does not exist".into())
}

/// A ListObjects page.
#[derive(Debug, Default)]
pub struct Listing {
    pub objects: Vec<ObjectMeta>,
    pub common_prefixes: Vec<String>,
    pub truncated: bool,
    /// The last key or prefix returned (continuation point).
    pub next: Option<String>,
}

impl Keycard {
    fn objects_dir(&self) -> PathBuf {
        self.config.data_dir.join("objects")
    }

    pub fn object_path(&self, file: &str) -> PathBuf {
        self.objects_dir().join(file)
    }

    pub fn bucket(&self, name: &str) -> Result<Arc<Bucket>> {
        self.state()
            .buckets
            .get(name)
            .cloned()
            .ok_or_else(|| no_bucket(name))
    }

    pub async fn create_bucket(&self, account: &str, name: &str, region: &str) -> Result<Bucket> {
        let settings = crate::s3_settings::BucketSettings::new_bucket(None);
        self.create_bucket_with(account, name, region, settings)
            .await
    }

    /// [`Keycard::create_bucket`] with the settings CreateBucket's headers
    /// chose (Object Ownership, ACL).
    pub async fn create_bucket_with(
        &self,
        account: &str,
        name: &str,
        region: &str,
        settings: crate::s3_settings::BucketSettings,
    ) -> Result<Bucket> {
        validate_bucket_name(name)?;
        let b = Bucket {
            name: name.into(),
            account: account.into(),
            created: now(),
            region: region.into(),
            policy: None,
            tags: BTreeMap::new(),
            settings,
            versioning: None,
            lifecycle: None,
        };
        self.mutate(|st| {
            if let Some(x) = st.buckets.get(name) {
                return Err(if x.account == account {
                    ServiceError::BucketAlreadyOwnedByYou("Your previous request to create the named bucket succeeded and you already own it.".into())
                } else {
                    ServiceError::BucketAlreadyExists("The requested bucket name is not available. The bucket namespace is shared by all users of the system. Please select a different name and try again.".into())
                });
            }
            Ok((vec![Change::Put(Entity::Bucket(b.clone()))], b.clone()))
        })
        .await
    }

    pub fn list_buckets(&self, account: &str) -> Vec<Bucket> {
        self.state()
            .buckets
            .values()
            .filter(|b| b.account == account)
            .map(|b| Bucket::clone(b))
            .collect()
    }

    pub async fn delete_bucket(&self, name: &str) -> Result<()> {
        self.mutate(|st| {
            st.buckets.get(name).ok_or_else(|| no_bucket(name))?;
            if Self::bucket_has_versions(st, name) {
                return Err(ServiceError::BucketNotEmpty(
                    "The bucket you tried to delete is not empty".into(),
                ));
            }
            let mut changes = Vec::new();
            let mut files = Vec::new();
            for u in st.uploads.values().filter(|u| u.bucket == name) {
                changes.push(Change::Delete("upload", u.id.clone()));
                files.extend(u.parts.values().map(|p| p.file.clone()));
            }
            changes.push(Change::Delete("bucket", name.to_string()));
            Ok((changes, files))
        })
        .await
        .map(|files| self.remove_files(files))
    }

    pub async fn put_bucket_policy(&self, name: &str, doc: &str) -> Result<()> {
        let parsed = PolicyDoc::parse(doc, PolicyKind::Resource)?;
        check_policy_resources(name, doc)?;
        self.update_bucket(name, |b| b.policy = Some(parsed.clone()))
            .await
    }

    /// Change one bucket record under the writer lock.
    pub(crate) async fn update_bucket(
        &self,
        name: &str,
        change: impl Fn(&mut Bucket),
    ) -> Result<()> {
        self.mutate(|st| {
            let mut b = st
                .buckets
                .get(name)
                .map(|b| Bucket::clone(b))
                .ok_or_else(|| no_bucket(name))?;
            change(&mut b);
            Ok((vec![Change::Put(Entity::Bucket(b))], ()))
        })
        .await
    }

    /// Replace a bucket's tags (empty: delete them).
    pub async fn put_bucket_tags(&self, name: &str, tags: BTreeMap<String, String>) -> Result<()> {
        self.update_bucket(name, |b| b.tags = tags.clone()).await
    }

    /// Replace an object's tags (empty: delete them): the current
    /// version's, or the named version's.
    pub async fn put_object_tags(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        tags: BTreeMap<String, String>,
    ) -> Result<()> {
        self.mutate(|st| {
            let objs = st.objects.get(bucket).ok_or_else(|| no_bucket(bucket))?;
            let current = objs
                .get(key)
                .filter(|o| version.is_none_or(|v| o.version() == v));
            let change = match (current, version) {
                (Some(o), _) => Entity::Object(o.clone()),
                (None, Some(v)) => crate::s3_versions::older(st, bucket, key)
                    .iter()
                    .find(|o| o.version() == v && !o.delete_marker)
                    .map(|o| Entity::ObjectVersion(o.clone()))
                    .ok_or_else(|| {
                        ServiceError::Modeled(
                            "NoSuchVersion",
                            404,
                            "The specified version does not exist.".into(),
                        )
                    })?,
                (None, None) => {
                    return Err(ServiceError::NoSuchKey(
                        "The specified key does not exist.".into(),
                    ));
                }
            };
            let change = match change {
                Entity::Object(mut o) => {
                    o.tags = tags.clone();
                    Entity::Object(o)
                }
                Entity::ObjectVersion(mut o) => {
                    o.tags = tags.clone();
                    Entity::ObjectVersion(o)
                }
                other => other,
            };
            Ok((vec![Change::Put(change)], ()))
        })
        .await
    }

    pub async fn delete_bucket_policy(&self, name: &str) -> Result<()> {
        self.update_bucket(name, |b| b.policy = None).await
    }

    pub fn get_object_meta(&self, bucket: &str, key: &str) -> Result<ObjectMeta> {
        let st = self.state();
        let objs = st.objects.get(bucket).ok_or_else(|| no_bucket(bucket))?;
        objs.get(key)
            .cloned()
            .ok_or_else(|| ServiceError::NoSuchKey("The specified key does not exist.".into()))
    }

    /// Delete data files (and their cached bytes).
    pub(crate) fn remove_files(&self, files: Vec<String>) {
        for f in files {
            self.object_cache.forget(&f);
            let _ = std::fs::remove_file(self.object_path(&f));
        }
    }

    /// An object's tags (empty when it has none or doesn't exist): the
    /// authorization hot path clones only these, not the whole metadata.
    pub fn object_tags(&self, bucket: &str, key: &str) -> BTreeMap<String, String> {
        self.state()
            .objects
            .get(bucket)
            .and_then(|m| m.get(key))
            .map(|o| o.tags.clone())
            .unwrap_or_default()
    }

    /// Start writing a new object file (see [`ObjectWriter`]).
    pub fn object_writer(&self, spec: &DigestSpec) -> Result<ObjectWriter> {
        ObjectWriter::create(self.objects_dir(), spec)
    }

    /// Write a small object the server itself makes (CloudTrail's log
    /// files): data fsynced before its metadata commits, as for PutObject.
    pub async fn put_object_bytes(
        &self,
        bucket: &str,
        key: &str,
        data: &[u8],
        content_type: &str,
    ) -> Result<ObjectMeta> {
        self.put_object_bytes_with(bucket, key, data, content_type, BTreeMap::new())
            .await
    }

    /// [`Keycard::put_object_bytes`] with user metadata (`x-amz-meta-*`
    /// names without the prefix).
    pub async fn put_object_bytes_with(
        &self,
        bucket: &str,
        key: &str,
        data: &[u8],
        content_type: &str,
        metadata: BTreeMap<String, String>,
    ) -> Result<ObjectMeta> {
        let spec = DigestSpec {
            md5: true,
            sha256: false,
            checksums: Vec::new(),
        };
        let mut w = self.object_writer(&spec)?;
        w.write(data).await?;
        let (staged, digested) = w.finish().await?;
        let etag = digested
            .etag()
            .ok_or_else(|| ServiceError::Internal("no MD5 computed".into()))?;
        let object = NewObject {
            bucket: bucket.into(),
            key: key.into(),
            content_type: Some(content_type.into()),
            metadata,
            headers: BTreeMap::new(),
            tags: BTreeMap::new(),
            acl: Vec::new(),
        };
        self.put_object_staged(staged, etag, object).await
    }

    /// Commit a staged file as the object `bucket/key`.
    pub async fn put_object_staged(
        &self,
        staged: Staged,
        etag: String,
        object: NewObject,
    ) -> Result<ObjectMeta> {
        validate_key(&object.key)?;
        self.bucket(&object.bucket)?;
        let meta = ObjectMeta {
            bucket: object.bucket,
            key: object.key,
            size: staged.size,
            etag,
            content_type: object.content_type,
            last_modified_ms: now_ms(),
            metadata: object.metadata,
            headers: object.headers,
            file: staged.disarm(),
            parts_count: None,
            tags: object.tags,
            acl: object.acl,
            ..ObjectMeta::default()
        };
        self.replace_object(meta, vec![]).await
    }

    /// Commit new object metadata as the key's latest version; removes
    /// the data of the null version it replaces (see `s3_versions`).
    async fn replace_object(&self, meta: ObjectMeta, extra: Vec<Change>) -> Result<ObjectMeta> {
        let new_file = meta.file.clone();
        let res = self
            .mutate(|st| {
                let b = st
                    .buckets
                    .get(&meta.bucket)
                    .ok_or_else(|| no_bucket(&meta.bucket))?;
                let (plan, meta) = crate::s3_versions::plan_latest(st, b, meta.clone());
                let mut changes = extra.clone();
                changes.extend(plan.changes);
                Ok((changes, (meta, plan.files)))
            })
            .await;
        match res {
            Ok((meta, old)) => {
                self.remove_data(old.into_iter().filter(|f| *f != new_file).collect());
                Ok(meta)
            }
            Err(e) => {
                self.remove_files(vec![new_file]);
                Err(e)
            }
        }
    }

    /// Delete the current object (a delete marker on a versioned bucket;
    /// deleting a missing key succeeds, as in S3).
    pub async fn delete_object(&self, bucket: &str, key: &str) -> Result<()> {
        self.delete_object_version(bucket, key, None)
            .await
            .map(|_| ())
    }

    /// List keys in order. `after` is exclusive (marker / start-after /
    /// continuation).
    pub fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        after: Option<&str>,
        max_keys: usize,
    ) -> Result<Listing> {
        let st = self.state();
        let objs = st.objects.get(bucket).ok_or_else(|| no_bucket(bucket))?;
        let mut out = Listing::default();
        let start = after.unwrap_or("").to_string();
        let mut count = 0usize;
        if max_keys == 0 {
            return Ok(out);
        }
        // Start at whichever comes later: just past `after`, or the prefix.
        let range = objs.range::<String, _>((
            if after.is_some_and(|a| a >= prefix) {
                std::ops::Bound::Excluded(start.clone())
            } else {
                std::ops::Bound::Included(prefix.to_string())
            },
            std::ops::Bound::Unbounded,
        ));
        let mut last_prefix: Option<String> = None;
        for (k, o) in range {
            if !k.starts_with(prefix) {
                if k.as_str() > prefix {
                    break;
                }
                continue;
            }
            if let Some(d) = delimiter.filter(|d| !d.is_empty())
                && let Some(pos) = k[prefix.len()..].find(d)
            {
                let cp = k[..prefix.len() + pos + d.len()].to_string();
                if last_prefix.as_deref() == Some(cp.as_str()) || cp.as_str() <= start.as_str() {
                    continue;
                }
                if count >= max_keys {
                    out.truncated = true;
                    break;
                }
                last_prefix = Some(cp.clone());
                out.next = Some(cp.clone());
                out.common_prefixes.push(cp);
                count += 1;
                continue;
            }
            if count >= max_keys {
                out.truncated = true;
                break;
            }
            out.next = Some(k.clone());
            out.objects.push(o.clone());
            count += 1;
        }
        Ok(out)
    }

    // ------------------------------------------------------------ multipart

    pub async fn create_multipart(
        &self,
        account: &str,
        bucket: &str,
        key: &str,
        content_type: Option<String>,
        metadata: BTreeMap<String, String>,
        tags: BTreeMap<String, String>,
    ) -> Result<Upload> {
        validate_key(key)?;
        let u = Upload {
            id: uuid::Uuid::new_v4().simple().to_string(),
            bucket: bucket.into(),
            key: key.into(),
            initiated_ms: now_ms(),
            content_type,
            metadata,
            parts: BTreeMap::new(),
            owner_account: account.into(),
            tags,
        };
        self.mutate(|st| {
            st.buckets.get(bucket).ok_or_else(|| no_bucket(bucket))?;
            Ok((vec![Change::Put(Entity::Upload(u.clone()))], u.clone()))
        })
        .await
    }

    fn upload_of(&self, bucket: &str, key: &str, id: &str) -> Result<Upload> {
        self.state()
            .uploads
            .get(id)
            .filter(|u| u.bucket == bucket && u.key == key)
            .cloned()
            .ok_or_else(|| ServiceError::NoSuchUpload("The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.".into()))
    }

    /// Commit a staged file as part `number` of upload `id`.
    pub async fn upload_part_staged(
        &self,
        bucket: &str,
        key: &str,
        id: &str,
        number: u32,
        staged: Staged,
        md5: [u8; 16],
    ) -> Result<PartMeta> {
        if !(1..=10_000).contains(&number) {
            return Err(ServiceError::InvalidArgument(
                "Part number must be an integer between 1 and 10000, inclusive".into(),
            ));
        }
        self.upload_of(bucket, key, id)?;
        let size = staged.size;
        let file = staged.disarm();
        let part = PartMeta {
            number,
            size,
            etag: format!("\"{}\"", hex::encode(md5)),
            file: file.clone(),
            last_modified_ms: now_ms(),
        };
        let res = self
            .mutate(|st| {
                let mut u = st.uploads.get(id).cloned().ok_or_else(|| {
                    ServiceError::NoSuchUpload("The specified upload does not exist.".into())
                })?;
                let old = u.parts.insert(number, part.clone()).map(|p| p.file);
                Ok((vec![Change::Put(Entity::Upload(u))], old))
            })
            .await;
        match res {
            Ok(old) => {
                if let Some(f) = old {
                    self.remove_files(vec![f]);
                }
                Ok(part)
            }
            Err(e) => {
                self.remove_files(vec![file]);
                Err(e)
            }
        }
    }

    pub fn list_parts(&self, bucket: &str, key: &str, id: &str) -> Result<Upload> {
        self.upload_of(bucket, key, id)
    }

    pub fn list_uploads(&self, bucket: &str) -> Result<Vec<Upload>> {
        self.bucket(bucket)?;
        Ok(self
            .state()
            .uploads
            .values()
            .filter(|u| u.bucket == bucket)
            .cloned()
            .collect())
    }

    /// Complete with the client's (part number, etag) list.
    pub async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        id: &str,
        parts: &[(u32, String)],
    ) -> Result<ObjectMeta> {
        let u = self.upload_of(bucket, key, id)?;
        if parts.is_empty() {
            return Err(ServiceError::MalformedXML("The XML you provided was not well-formed or did not validate against our published schema".into()));
        }
        if parts.windows(2).any(|w| matches!(w, [a, b] if b.0 <= a.0)) {
            return Err(ServiceError::InvalidPartOrder("The list of parts was not in ascending order. The parts list must be specified in order by part number.".into()));
        }
        let mut w = self.object_writer(&DigestSpec::default())?;
        let mut md5s = Vec::new();
        for (i, (n, etag)) in parts.iter().enumerate() {
            let p = u.parts.get(n).filter(|p| p.etag.trim_matches('"') == etag.trim_matches('"')).ok_or_else(|| {
                ServiceError::InvalidPart("One or more of the specified parts could not be found. The part might not have been uploaded, or the specified entity tag might not have matched the part's entity tag.".into())
            })?;
            if i + 1 < parts.len() && p.size < 5 * 1024 * 1024 {
                return Err(ServiceError::EntityTooSmall(
                    "Your proposed upload is smaller than the minimum allowed object size.".into(),
                ));
            }
            // Parts are concatenated file to file, never loaded.
            let src = std::fs::File::open(self.object_path(&p.file))
                .map_err(|e| ServiceError::Internal(format!("reading part: {e}")))?;
            w.copy_from(src, 0, p.size).await?;
            md5s.extend_from_slice(&hex::decode(p.etag.trim_matches('"')).unwrap_or_default());
        }
        let etag = format!("\"{}-{}\"", hex::encode(md5(&md5s)), parts.len());
        let (staged, _) = w.finish().await?;
        let size = staged.size;
        let file = staged.disarm();
        let meta = ObjectMeta {
            bucket: bucket.into(),
            key: key.into(),
            size,
            etag,
            content_type: u.content_type.clone(),
            last_modified_ms: now_ms(),
            metadata: u.metadata.clone(),
            headers: BTreeMap::new(),
            file,
            parts_count: Some(parts.len() as u32),
            tags: u.tags.clone(),
            acl: Vec::new(),
            ..ObjectMeta::default()
        };
        let part_files: Vec<String> = u.parts.values().map(|p| p.file.clone()).collect();
        let meta = self
            .replace_object(meta, vec![Change::Delete("upload", id.to_string())])
            .await?;
        self.remove_files(part_files);
        Ok(meta)
    }

    pub async fn abort_multipart(&self, bucket: &str, key: &str, id: &str) -> Result<()> {
        let u = self.upload_of(bucket, key, id)?;
        self.mutate(|_| Ok((vec![Change::Delete("upload", id.to_string())], ())))
            .await?;
        self.remove_files(u.parts.values().map(|p| p.file.clone()).collect());
        Ok(())
    }
}

/// What a new object is, besides its data.
#[derive(Debug, Clone, Default)]
pub struct NewObject {
    pub bucket: String,
    pub key: String,
    pub content_type: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub headers: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    /// ACL grants besides the owner's (`x-amz-acl`, `x-amz-grant-*`).
    pub acl: Vec<crate::s3_settings::Grant>,
}

/// A new object file being written: `<objects>/<name>.tmp` until
/// [`ObjectWriter::finish`] fsyncs it and renames it into place. Data is
/// gathered into one [`BLOCK`] and handed to the blocking pool, which
/// hashes and writes it. Dropped unfinished (an error, a client gone), the
/// temp file is removed.
pub struct ObjectWriter {
    dir: PathBuf,
    name: String,
    file: Option<std::fs::File>,
    digests: Option<Digests>,
    buf: Vec<u8>,
    size: u64,
    done: bool,
}

impl std::fmt::Debug for ObjectWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectWriter")
            .field("name", &self.name)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

fn io_error(what: &str) -> impl Fn(std::io::Error) -> ServiceError + '_ {
    move |e| ServiceError::Internal(format!("{what}: {e}"))
}

fn joined(e: tokio::task::JoinError) -> ServiceError {
    ServiceError::Internal(format!("object data task: {e}"))
}

impl ObjectWriter {
    fn create(dir: PathBuf, spec: &DigestSpec) -> Result<Self> {
        let name = uuid::Uuid::new_v4().simple().to_string();
        let file = std::fs::File::create_new(dir.join(format!("{name}{TEMP_SUFFIX}")))
            .map_err(io_error("creating object data"))?;
        Ok(Self {
            dir,
            name,
            file: Some(file),
            digests: Some(Digests::new(spec)),
            buf: Vec::with_capacity(BLOCK),
            size: 0,
            done: false,
        })
    }

    fn temp_path(&self) -> PathBuf {
        self.dir.join(format!("{}{TEMP_SUFFIX}", self.name))
    }

    /// Bytes accepted so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Append `data` (buffered; written a block at a time).
    pub async fn write(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            let room = BLOCK.saturating_sub(self.buf.len()).max(1);
            let (now, rest) = data.split_at(room.min(data.len()));
            self.buf.extend_from_slice(now);
            self.size += now.len() as u64;
            data = rest;
            if self.buf.len() >= BLOCK {
                self.flush().await?;
            }
        }
        Ok(())
    }

    /// Hash and write the buffer on the blocking pool.
    async fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let (mut file, mut digests) = self.take()?;
        let buf = std::mem::take(&mut self.buf);
        let (file, digests, mut buf) = tokio::task::spawn_blocking(move || {
            use std::io::Write;
            digests.update(&buf);
            file.write_all(&buf).map(|()| (file, digests, buf))
        })
        .await
        .map_err(joined)?
        .map_err(io_error("writing object data"))?;
        buf.clear();
        self.buf = buf;
        self.file = Some(file);
        self.digests = Some(digests);
        Ok(())
    }

    fn take(&mut self) -> Result<(std::fs::File, Digests)> {
        match (self.file.take(), self.digests.take()) {
            (Some(f), Some(d)) => Ok((f, d)),
            _ => Err(ServiceError::Internal(
                "object data writer used after a failure".into(),
            )),
        }
    }

    /// Append `len` bytes of `src` from `start`, a block at a time (file to
    /// file in the kernel when nothing needs hashing).
    pub async fn copy_from(&mut self, src: std::fs::File, start: u64, len: u64) -> Result<()> {
        self.flush().await?;
        let (mut file, mut digests) = self.take()?;
        let (file, digests) = tokio::task::spawn_blocking(move || {
            copy_range(src, start, len, &mut file, &mut digests).map(|()| (file, digests))
        })
        .await
        .map_err(joined)?
        .map_err(io_error("copying object data"))?;
        self.size += len;
        self.file = Some(file);
        self.digests = Some(digests);
        Ok(())
    }

    /// Write what is buffered, fsync the file, rename it into place and
    /// fsync the directory: once this returns the data survives a crash.
    pub async fn finish(mut self) -> Result<(Staged, Digested)> {
        self.flush().await?;
        let (file, digests) = self.take()?;
        let (tmp, dir, name) = (self.temp_path(), self.dir.clone(), self.name.clone());
        let path = dir.join(&name);
        let target = path.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            file.sync_all()?;
            drop(file);
            std::fs::rename(&tmp, &target)?;
            std::fs::File::open(&dir)?.sync_all()
        })
        .await
        .map_err(joined)?
        .map_err(io_error("storing object data"))?;
        self.done = true;
        let staged = Staged {
            path,
            name,
            size: self.size,
            armed: true,
        };
        Ok((staged, digests.finish()))
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(self.temp_path());
        }
    }
}

/// Remove the temp files of writes a crash interrupted (at start, before
/// any writer exists).
pub fn remove_partial_files(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().ends_with(TEMP_SUFFIX) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Copy `len` bytes of `src` from `start` into `dst`, hashing when asked.
fn copy_range(
    mut src: std::fs::File,
    start: u64,
    len: u64,
    dst: &mut std::fs::File,
    digests: &mut Digests,
) -> std::io::Result<()> {
    use std::io::{Read, Seek, Write};
    src.seek(std::io::SeekFrom::Start(start))?;
    let short = || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "object data is short");
    if digests.is_empty() {
        let n = std::io::copy(&mut src.take(len), dst)?;
        return if n == len { Ok(()) } else { Err(short()) };
    }
    let mut buf = vec![0u8; BLOCK];
    let mut left = len;
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(BLOCK).min(BLOCK);
        let chunk = buf.get_mut(..want).ok_or_else(short)?;
        src.read_exact(chunk)?;
        digests.update(chunk);
        dst.write_all(chunk)?;
        left -= want as u64;
    }
    Ok(())
}

/// An object file in place but not yet referenced by any metadata: removed
/// when dropped unless a commit took it.
#[derive(Debug)]
pub struct Staged {
    path: PathBuf,
    name: String,
    pub size: u64,
    armed: bool,
}

impl Staged {
    /// Hand the file to a metadata commit (which owns it from now on).
    fn disarm(mut self) -> String {
        self.armed = false;
        std::mem::take(&mut self.name)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Which digests to compute over object data as it passes.
#[derive(Debug, Clone, Default)]
pub struct DigestSpec {
    /// MD5 (the ETag, `Content-MD5`).
    pub md5: bool,
    /// SHA-256 (a signed `x-amz-content-sha256`).
    pub sha256: bool,
    /// Flexible checksums by header suffix (`crc32`, …, `sha256`).
    pub checksums: Vec<String>,
}

/// Digests computed over object data.
#[derive(Debug, Clone, Default)]
pub struct Digested {
    pub md5: Option<[u8; 16]>,
    pub sha256: Option<[u8; 32]>,
    /// Base64 checksum by algorithm (header suffix).
    pub checksums: BTreeMap<String, String>,
}

impl Digested {
    /// The ETag of a single-part object (its quoted MD5).
    pub fn etag(&self) -> Option<String> {
        self.md5.map(|m| format!("\"{}\"", hex::encode(m)))
    }

    /// The SHA-256 in lower-case hex.
    pub fn sha256_hex(&self) -> Option<String> {
        self.sha256.map(hex::encode)
    }
}

enum Running {
    Crc32(&'static [u32; 256], u32),
    Crc64(u64),
    Sha256,
}

/// Running digests (see [`DigestSpec`]).
pub struct Digests {
    md5: Option<md5::Context>,
    sha256: Option<sha2::Sha256>,
    checksums: Vec<(String, Running)>,
}

impl Digests {
    pub fn new(spec: &DigestSpec) -> Self {
        use sha2::Digest;
        let checksums: Vec<(String, Running)> = spec
            .checksums
            .iter()
            .filter_map(|alg| {
                let r = match alg.as_str() {
                    "crc32" => Running::Crc32(&CRC32, !0),
                    "crc32c" => Running::Crc32(&CRC32C, !0),
                    "crc64nvme" => Running::Crc64(!0),
                    "sha256" => Running::Sha256,
                    _ => return None,
                };
                Some((alg.clone(), r))
            })
            .collect();
        let sha = spec.sha256 || checksums.iter().any(|(_, r)| matches!(r, Running::Sha256));
        Self {
            md5: spec.md5.then(md5::Context::new),
            sha256: sha.then(sha2::Sha256::new),
            checksums,
        }
    }

    fn is_empty(&self) -> bool {
        self.md5.is_none() && self.sha256.is_none() && self.checksums.is_empty()
    }

    pub fn update(&mut self, data: &[u8]) {
        if let Some(m) = self.md5.as_mut() {
            m.consume(data);
        }
        if let Some(s) = self.sha256.as_mut() {
            sha2::Digest::update(s, data);
        }
        for (_, r) in &mut self.checksums {
            match r {
                Running::Crc32(t, c) => *c = crc32_update(t, *c, data),
                Running::Crc64(c) => *c = crc64_update(*c, data),
                Running::Sha256 => {}
            }
        }
    }

    pub fn finish(self) -> Digested {
        let sha256: Option<[u8; 32]> = self.sha256.map(|s| sha2::Digest::finalize(s).into());
        let checksums = self
            .checksums
            .into_iter()
            .filter_map(|(alg, r)| {
                let raw = match r {
                    Running::Crc32(_, c) => (!c).to_be_bytes().to_vec(),
                    Running::Crc64(c) => (!c).to_be_bytes().to_vec(),
                    Running::Sha256 => sha256?.to_vec(),
                };
                Some((alg, b64_encode(&raw)))
            })
            .collect();
        Digested {
            md5: self.md5.map(|m| m.finalize().0),
            sha256,
            checksums,
        }
    }
}

/// S3 only takes bucket policies whose resources lie in the bucket.
fn check_policy_resources(bucket: &str, doc: &str) -> Result<()> {
    let bad = || ServiceError::MalformedPolicyDocument("Policy has invalid resource".into());
    let v: serde_json::Value = serde_json::from_str(doc).map_err(|_| {
        ServiceError::MalformedPolicyDocument("This policy contains invalid Json".into())
    })?;
    let base = format!("arn:aws:s3:::{bucket}");
    let ok = |r: &serde_json::Value| {
        r.as_str().is_some_and(|r| {
            r.strip_prefix(&base)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', '*']))
        })
    };
    let stmts: Vec<&serde_json::Value> = match v.get("Statement") {
        Some(serde_json::Value::Array(a)) => a.iter().collect(),
        Some(o) => vec![o],
        None => vec![],
    };
    for st in stmts {
        for field in ["Resource", "NotResource"] {
            let all_ok = match st.get(field) {
                None => true,
                Some(serde_json::Value::Array(a)) => a.iter().all(ok),
                Some(r) => ok(r),
            };
            if !all_ok {
                return Err(bad());
            }
        }
    }
    Ok(())
}

pub fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > 1024 {
        return Err(ServiceError::InvalidArgument(
            "Object key must be between 1 and 1024 bytes long".into(),
        ));
    }
    Ok(())
}

/// MD5 for ETags (S3 compatibility, not security).
pub fn md5(data: &[u8]) -> [u8; 16] {
    md5::compute(data).0
}

/// Standard base64 (Content-MD5, checksums, continuation tokens).
pub fn b64_encode(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Decode standard base64; `None` if it is not.
pub fn b64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
}

/// Check a `Content-MD5` header against the bytes received.
pub fn check_content_md5(header: &str, data: &[u8]) -> Result<()> {
    check_content_md5_digest(header, md5(data))
}

/// Check a `Content-MD5` header against the MD5 of the bytes received.
pub fn check_content_md5_digest(header: &str, digest: [u8; 16]) -> Result<()> {
    let given = b64_decode(header)
        .filter(|d| d.len() == 16)
        .ok_or_else(|| {
            ServiceError::InvalidArgument("The Content-MD5 you specified was invalid.".into())
        })?;
    if given != digest {
        return Err(ServiceError::BadDigest(
            "The Content-MD5 you specified did not match what we received.".into(),
        ));
    }
    Ok(())
}

/// The flexible-checksum algorithms S3 knows, by the header suffix
/// (`x-amz-checksum-<name>`).
pub const CHECKSUM_ALGORITHMS: [&str; 5] = ["crc32", "crc32c", "crc64nvme", "sha1", "sha256"];

#[expect(
    clippy::indexing_slicing,
    reason = "const-evaluated for statics: an out-of-range index fails the build, not a request"
)]
const fn crc32_table(poly: u32) -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ poly } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

#[expect(
    clippy::indexing_slicing,
    reason = "const-evaluated for statics: an out-of-range index fails the build, not a request"
)]
const fn crc64_table(poly: u64) -> [u64; 256] {
    let mut t = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u64;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ poly } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static CRC32: [u32; 256] = crc32_table(0xEDB8_8320);
static CRC32C: [u32; 256] = crc32_table(0x82F6_3B78);
static CRC64NVME: [u64; 256] = crc64_table(0x9A6C_9329_AC4B_C9B5);

/// Feed `data` to a running (pre-inverted) CRC-32.
fn crc32_update(table: &[u32; 256], mut c: u32, data: &[u8]) -> u32 {
    for &b in data {
        // The mask keeps the index below 256, so the fallback is never taken.
        let entry = table.get(((c ^ u32::from(b)) & 0xff) as usize);
        c = entry.copied().unwrap_or(0) ^ (c >> 8);
    }
    c
}

fn crc64_update(mut c: u64, data: &[u8]) -> u64 {
    for &b in data {
        // The mask keeps the index below 256, so the fallback is never taken.
        let entry = CRC64NVME.get(((c ^ u64::from(b)) & 0xff) as usize);
        c = entry.copied().unwrap_or(0) ^ (c >> 8);
    }
    c
}

fn crc32_with(table: &[u32; 256], data: &[u8]) -> u32 {
    !crc32_update(table, !0, data)
}

fn crc64nvme(data: &[u8]) -> u64 {
    !crc64_update(!0, data)
}

/// The base64 checksum of `data` with `algorithm` (lower-case suffix),
/// or `None` when keycard can't compute it (it then stores the client's).
pub fn checksum(algorithm: &str, data: &[u8]) -> Option<String> {
    use sha2::Digest;
    let raw: Vec<u8> = match algorithm {
        "crc32" => crc32_with(&CRC32, data).to_be_bytes().to_vec(),
        "crc32c" => crc32_with(&CRC32C, data).to_be_bytes().to_vec(),
        "crc64nvme" => crc64nvme(data).to_be_bytes().to_vec(),
        "sha256" => sha2::Sha256::digest(data).to_vec(),
        _ => return None,
    };
    Some(b64_encode(&raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_match_known_values() {
        // Check values from the CRC catalogue ("123456789").
        let d = b"123456789";
        assert_eq!(crc32_with(&CRC32, d), 0xCBF4_3926);
        assert_eq!(crc32_with(&CRC32C, d), 0xE306_9283);
        assert_eq!(crc64nvme(d), 0xAE8B_1486_0A79_9888);
        assert_eq!(checksum("crc32", b"").as_deref(), Some("AAAAAA=="));
        assert_eq!(checksum("sha1", b"x"), None);
    }

    #[test]
    fn running_digests_match_one_shot() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 256) as u8).collect();
        let spec = DigestSpec {
            md5: true,
            sha256: false,
            checksums: CHECKSUM_ALGORITHMS.iter().map(|a| a.to_string()).collect(),
        };
        let mut d = Digests::new(&spec);
        for piece in data.chunks(333) {
            d.update(piece);
        }
        let out = d.finish();
        assert_eq!(out.md5, Some(md5(&data)));
        for alg in ["crc32", "crc32c", "crc64nvme", "sha256"] {
            assert_eq!(
                out.checksums.get(alg),
                checksum(alg, &data).as_ref(),
                "{alg}"
            );
        }
        assert!(!out.checksums.contains_key("sha1"));
    }

    fn scratch_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("kc-objects-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&d).expect("dir");
        d
    }

    fn names(d: &std::path::Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn writer_streams_hashes_and_cleans_up() {
        let dir = scratch_dir();
        let data: Vec<u8> = (0..(3 * BLOCK + 17)).map(|i| (i % 253) as u8).collect();
        let spec = DigestSpec {
            md5: true,
            sha256: true,
            checksums: vec!["crc32c".into()],
        };
        let mut w = ObjectWriter::create(dir.clone(), &spec).expect("writer");
        for piece in data.chunks(100_000) {
            w.write(piece).await.expect("write");
        }
        assert_eq!(w.size(), data.len() as u64);
        let (staged, d) = w.finish().await.expect("finish");
        assert_eq!(d.md5, Some(md5(&data)));
        assert_eq!(d.sha256_hex(), Some(keycard_proto::sha256_hex(&data)));
        assert_eq!(
            d.checksums.get("crc32c"),
            checksum("crc32c", &data).as_ref()
        );
        assert_eq!(names(&dir), vec![staged.name.clone()]);
        assert_eq!(std::fs::read(&staged.path).expect("read"), data);

        // Copy a range into a second file, hashed and not.
        for spec in [DigestSpec::default(), spec.clone()] {
            let mut c = ObjectWriter::create(dir.clone(), &spec).expect("writer");
            let src = std::fs::File::open(&staged.path).expect("open");
            c.copy_from(src, 5, 2 * BLOCK as u64).await.expect("copy");
            let (copy, cd) = c.finish().await.expect("finish");
            let want = &data[5..5 + 2 * BLOCK];
            assert_eq!(std::fs::read(&copy.path).expect("read"), want);
            assert_eq!(cd.md5, spec.md5.then(|| md5(want)));
        }
        // Reading past the end fails.
        let mut c = ObjectWriter::create(dir.clone(), &DigestSpec::default()).expect("writer");
        let src = std::fs::File::open(&staged.path).expect("open");
        assert!(c.copy_from(src, 10, data.len() as u64).await.is_err());
        drop(c);
        // Staged files not committed and unfinished writers leave nothing.
        let mut w = ObjectWriter::create(dir.clone(), &spec).expect("writer");
        w.write(b"partial").await.expect("write");
        drop(w);
        drop(staged);
        assert_eq!(names(&dir), Vec::<String>::new());
        // What a crash leaves behind is swept at start; object files stay.
        std::fs::write(dir.join(format!("abc{TEMP_SUFFIX}")), b"partial").expect("write");
        std::fs::write(dir.join("abc"), b"object").expect("write");
        remove_partial_files(&dir);
        assert_eq!(names(&dir), vec!["abc".to_string()]);
        std::fs::remove_file(dir.join("abc")).expect("cleanup");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn content_md5() {
        let h = b64_encode(&md5(b"hello"));
        assert!(check_content_md5(&h, b"hello").is_ok());
        assert!(matches!(
            check_content_md5(&h, b"hellO"),
            Err(ServiceError::BadDigest(_))
        ));
        assert!(matches!(
            check_content_md5("nope", b"hello"),
            Err(ServiceError::InvalidArgument(_))
        ));
    }
}
