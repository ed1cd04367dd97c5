//! keycard's domain services: IAM, STS, S3, EC2 and audit. Nothing here
//! knows about HTTP; the server parses requests into calls on `Keycard` and
//! renders what comes back.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

pub mod audit;
pub mod auth;
pub mod binding;
pub mod certs;
pub mod console;
pub mod crypto;
pub mod delivery;
pub mod denials;
pub mod ec2;
pub mod eni;
pub mod error;
pub mod federation;
pub mod follow;
pub mod generate;
pub mod governance;
pub mod iam;
pub mod iam_access;
pub mod iam_creds;
pub mod iam_governance;
pub mod iam_more;
pub mod image;
pub mod instance_attrs;
pub mod instance_types;
pub mod jwt;
pub mod keyinfo;
pub mod keypair;
pub mod managed;
pub mod model;
pub mod network;
pub mod nodes;
pub mod object_cache;
pub mod s3;
pub mod s3_lifecycle;
pub mod s3_settings;
pub mod s3_versions;
pub mod saml;
pub mod saml_assertion;
pub mod simulate;
pub mod sshkey;
pub mod state;
pub mod sts;
pub mod tags;
pub mod template;
pub mod trail_digest;
pub mod trail_selectors;
pub mod trails;
pub mod validate;
pub mod volume;
pub mod vpc;
pub mod xmldsig;
pub mod xmltree;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use keycard_proto::secret::SecretKey;
use keycard_store::{Op, Store};

pub use error::{Result, ServiceError, Wire, WireError};
use follow::is_entity_kind;
use model::{Account, Change, Entity};
use state::State;

/// Account created on first start, as in AWS documentation examples.
pub const DEFAULT_ACCOUNT: &str = "123456789012";

/// Settings that the binary reads from flags and environment.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub region: String,
    /// Root credentials for the default account, when given explicitly.
    pub root_access_key_id: Option<String>,
    /// Typed so that `Debug` of the config prints `***`.
    pub root_secret_access_key: Option<SecretKey>,
    /// Lifetime of instance-role credentials served by the IMDS, seconds.
    pub instance_credential_lifetime: i64,
    /// Serve a new set once the current one has less than this left.
    pub instance_credential_refresh: i64,
    /// `--compat moto`: reset endpoints and auth-off start.
    pub compat_moto: bool,
    /// `--test-clock`: the admin endpoint may move governance's clock
    /// forward (tests of age-based rules without waiting).
    pub test_clock: bool,
    /// Most audit events waiting for the writer; `record` waits beyond it.
    pub audit_queue: usize,
    /// `--instance-credentials`: refuse (bound) or report (detect) use of
    /// instance credentials away from their instance.
    pub instance_credentials: binding::BindingMode,
    /// `--enforcement soft`: every denial is logged and recorded but the
    /// call goes ahead.
    pub soft_enforcement: bool,
    /// `--soft-principal ARN`: soft for these users / roles only.
    pub soft_principals: Vec<String>,
    /// `--master-key-file` / `KEYCARD_MASTER_KEY`: the master key (hex)
    /// every node of a shared store seals with; None: `<data-dir>/master.key`.
    pub master_key_hex: Option<SecretKey>,
    /// `--max-staleness`: with a shared store, refuse requests once the
    /// node has not confirmed it is up to date for this long.
    pub max_staleness: Option<std::time::Duration>,
    /// `--node`: this node's name; instances it launches belong to it.
    pub node: String,
    /// With a shared store: a node whose heartbeat is older than this is
    /// down (its instances impaired). `None`: one node owns everything.
    pub node_timeout: Option<std::time::Duration>,
    /// `--trail-digest-interval`: how often trails with log file
    /// validation deliver digest files (AWS: hourly), milliseconds.
    pub trail_digest_interval_ms: i64,
}

impl Config {
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            region: "us-east-1".into(),
            root_access_key_id: None,
            root_secret_access_key: None,
            instance_credential_lifetime: 6 * 3600,
            instance_credential_refresh: 3600,
            compat_moto: false,
            test_clock: false,
            audit_queue: audit::DEFAULT_QUEUE,
            instance_credentials: binding::BindingMode::Detect,
            soft_enforcement: false,
            soft_principals: Vec::new(),
            master_key_hex: None,
            max_staleness: None,
            node: nodes::DEFAULT_NODE.to_string(),
            node_timeout: None,
            trail_digest_interval_ms: 3_600_000,
        }
    }
}

/// How long governance waits after a change for the next ones to join.
const GOVERNANCE_DEBOUNCE: std::time::Duration = std::time::Duration::from_millis(300);

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// The whole domain: state, store, keys.
pub struct Keycard {
    pub config: Config,
    store: Arc<dyn Store>,
    state: RwLock<State>,
    /// Serializes writers so the store and memory see changes in one order.
    write_lock: tokio::sync::Mutex<()>,
    master: crypto::SealKey,
    tokens: RwLock<crypto::KeyRing>,
    /// keycard's OIDC issuer keys, once loaded or made (federation.rs).
    pub(crate) issuer_keys: RwLock<Option<Arc<jwt::IssuerKeys>>>,
    pub audit: audit::AuditLog,
    session_cache: Mutex<std::collections::HashMap<String, Arc<sts::Session>>>,
    /// Small objects' bytes (GetObject's hot path).
    pub object_cache: object_cache::ObjectCache,
    /// Requests still let through without enforcement (moto compat).
    no_auth_remaining: AtomicU64,
    /// Bearer token of the local admin endpoint (`<data-dir>/admin.token`).
    admin_token: SecretKey,
    /// Instance role credentials handed out, per instance and channel.
    pub(crate) deliveries: delivery::DeliveryCache,
    /// Bumped whenever an instance record changes (the IMDS follows it).
    instance_events: tokio::sync::watch::Sender<u64>,
    /// Where this process serves (set by the binary once listening).
    pub runtime: RwLock<Runtime>,
    /// Last-used data changed in memory and not yet in the store.
    last_used_dirty: Mutex<iam::LastUsedDirty>,
    /// Findings and KPIs.
    pub governance: governance::Governance,
    /// Bumped after every committed change (governance re-evaluates).
    changes: tokio::sync::watch::Sender<u64>,
    /// Seconds governance's clock runs ahead (`--test-clock` only).
    clock_offset: std::sync::atomic::AtomicI64,
    /// The address each long-term key last signed from (since start): an
    /// instance's private address means the key lives on that instance.
    key_sources: Mutex<std::collections::HashMap<String, String>>,
    /// Service-last-accessed jobs (GenerateServiceLastAccessedDetails).
    access_jobs: iam_access::AccessJobs,
    /// The last change-feed sequence this node's memory reflects (0 with
    /// a backend without a feed).
    applied_seq: std::sync::atomic::AtomicI64,
    /// When (ms since the epoch) this node last confirmed it had every
    /// change the database had.
    synced_at_ms: std::sync::atomic::AtomicI64,
    /// Whether the node is refusing requests as stale (for logging the
    /// transitions once).
    stale: std::sync::atomic::AtomicBool,
    /// Wakes the follower early (a change notification arrived).
    follow_nudge: tokio::sync::Notify,
    /// Another node rotated the token key ring: re-read it.
    ring_changed: std::sync::atomic::AtomicBool,
    /// Every node's last heartbeat, as last read from the store.
    beats: RwLock<std::collections::BTreeMap<String, nodes::Beat>>,
    /// When this process opened the keycard (ms since the epoch).
    started_ms: i64,
}

/// Addresses the running process serves on, for `keycard exec`.
#[derive(Debug, Clone, Default)]
pub struct Runtime {
    pub api_addr: Option<std::net::SocketAddr>,
    /// Port of the per-instance loopback IMDS listeners.
    pub imds_port: Option<u16>,
    /// Instances live in network namespaces (`--instance-network netns`).
    pub netns: bool,
    /// Port of the per-instance loopback API listeners (an instance's own
    /// network path to keycard's API, at its metadata address).
    pub instance_api_port: Option<u16>,
}

/// A kind the feed carries only to signal that the token key ring (store
/// meta) changed; never an entity.
pub const META_BUMP_KIND: &str = "meta_bump";

/// How many times `mutate` re-plans after another node wrote first.
const MUTATE_ATTEMPTS: usize = 16;

fn master_from_hex(text: &str) -> std::io::Result<crypto::SealKey> {
    let bytes = hex::decode(text.trim()).map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "master key is not hex")
    })?;
    crypto::SealKey::from_bytes(0, &bytes).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "master key must hold 32 bytes",
        )
    })
}

fn read_or_create_master(dir: &Path) -> std::io::Result<crypto::SealKey> {
    let path = dir.join("master.key");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let bytes = hex::decode(text.trim()).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "master.key is not hex")
        })?;
        return crypto::SealKey::from_bytes(0, &bytes).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "master.key must hold 32 bytes",
            )
        });
    }
    let key = crypto::SealKey::generate(0);
    write_private(&path, hex::encode(key.bytes()).as_bytes())?;
    Ok(key)
}

/// Write a file only its owner can read.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

impl Keycard {
    /// Open the data directory: load state, keys, and create the default
    /// account with its root key on first start.
    pub async fn open(config: Config, store: Arc<dyn Store>) -> anyhow_like::Result<Arc<Keycard>> {
        std::fs::create_dir_all(&config.data_dir)?;
        std::fs::create_dir_all(config.data_dir.join("objects"))?;
        s3::remove_partial_files(&config.data_dir.join("objects"));
        let master = match &config.master_key_hex {
            Some(hex) => master_from_hex(hex.expose())?,
            None => read_or_create_master(&config.data_dir)?,
        };
        // Read before loading: changes after it are replayed by the
        // follower (puts and deletes of whole records are idempotent).
        let start_seq = store.current_seq().await?.unwrap_or(0);
        let ring = match store.get_meta("token_keys").await? {
            Some(sealed) => {
                let plain = master
                    .open(&sealed, b"token_keys")
                    .ok_or("token keys do not open with master.key (wrong data dir?)")?;
                crypto::KeyRing::from_bytes(&plain).ok_or("token keys are corrupt")?
            }
            None => {
                let ring = crypto::KeyRing::new(crypto::SealKey::generate(1));
                store
                    .put_meta("token_keys", &master.seal(&ring.to_bytes(), b"token_keys"))
                    .await?;
                ring
            }
        };
        let mut state = State::default();
        let governance = governance::Governance::load(store.as_ref()).await?;
        for rec in store.load_all().await? {
            if !is_entity_kind(&rec.kind) {
                continue;
            }
            let e = Entity::from_record(&rec.kind, &rec.value)
                .map_err(|e| format!("record {}/{}: {e}", rec.kind, rec.key))?;
            state.put(e);
        }
        for (id, k) in &state.access_keys {
            let secret = crypto::open_secret(&master, &k.sealed_secret, id)
                .map_err(|e| format!("access key {id}: {e}"))?;
            state.secrets.insert(id.clone(), SecretKey::new(secret));
        }
        let admin_path = config.data_dir.join("admin.token");
        let admin_token = match std::fs::read_to_string(&admin_path) {
            Ok(t) => t.trim().to_string(),
            Err(_) => {
                let t = hex::encode(crypto::random_bytes::<32>());
                write_private(&admin_path, t.as_bytes())?;
                t
            }
        };
        let no_auth = if config.compat_moto { u64::MAX } else { 0 };
        let audit = audit::AuditLog::start_with(store.clone(), config.audit_queue);
        let kc = Arc::new(Keycard {
            config,
            store,
            state: RwLock::new(state),
            write_lock: tokio::sync::Mutex::new(()),
            master,
            tokens: RwLock::new(ring),
            issuer_keys: RwLock::new(None),
            audit,
            session_cache: Mutex::new(Default::default()),
            object_cache: Default::default(),
            no_auth_remaining: AtomicU64::new(no_auth),
            admin_token: SecretKey::new(admin_token),
            deliveries: Default::default(),
            instance_events: tokio::sync::watch::channel(0).0,
            runtime: RwLock::new(Runtime::default()),
            last_used_dirty: Mutex::new(Default::default()),
            governance,
            changes: tokio::sync::watch::channel(0).0,
            clock_offset: std::sync::atomic::AtomicI64::new(0),
            key_sources: Mutex::new(Default::default()),
            access_jobs: Default::default(),
            applied_seq: std::sync::atomic::AtomicI64::new(start_seq),
            synced_at_ms: std::sync::atomic::AtomicI64::new(now_ms()),
            stale: std::sync::atomic::AtomicBool::new(false),
            follow_nudge: tokio::sync::Notify::new(),
            ring_changed: std::sync::atomic::AtomicBool::new(false),
            beats: RwLock::new(Default::default()),
            started_ms: now_ms(),
        });
        managed::install(&kc).await?;
        kc.ensure_default_account().await?;
        Ok(kc)
    }

    /// Read access to the state. Never hold it across an await.
    pub fn state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Apply changes computed from a consistent view of the state. `plan`
    /// runs under the writer lock; its changes reach the store atomically,
    /// then memory. An error from `plan` changes nothing. Inside
    /// `audit::with_pending`, the request's draft event commits in the
    /// same transaction as the changes.
    pub async fn mutate<T>(
        &self,
        mut plan: impl FnMut(&State) -> Result<(Vec<Change>, T)>,
    ) -> Result<T> {
        let _w = self.write_lock.lock().await;
        for attempt in 0..MUTATE_ATTEMPTS {
            let (changes, out) = {
                let st = self.state();
                plan(&st)?
            };
            if self.commit(changes).await? {
                return Ok(out);
            }
            // Another node wrote first: wait a random, growing while (so
            // busy nodes stop colliding in step), take its changes and
            // plan again on the newer state (its write may make this one
            // an error).
            let cap_us = 500u64 << attempt.min(6);
            let wait = rand::random::<u64>() % cap_us;
            tokio::time::sleep(std::time::Duration::from_micros(wait)).await;
            self.catch_up_locked().await?;
        }
        Err(ServiceError::ServiceUnavailable(
            "too many concurrent changes from other nodes; retry".into(),
        ))
    }

    /// Write changes through the store (only if this node has seen every
    /// change the store has), then memory. False: another node wrote
    /// first and nothing was written.
    async fn commit(&self, changes: Vec<Change>) -> Result<bool> {
        let draft = if changes.is_empty() {
            None
        } else {
            audit::pending_draft()
        };
        let ops: Vec<Op> = changes
            .iter()
            .map(|c| match c {
                Change::Put(e) => {
                    let (k, key) = e.kind_key();
                    Op::put(k, key, e.to_json())
                }
                Change::Delete(kind, key) => Op::delete(kind, key.clone()),
            })
            .collect();
        if ops.is_empty() && draft.is_none() {
            return Ok(true);
        }
        let expected = self.applied_seq.load(Ordering::SeqCst);
        match self
            .store
            .commit_at(&ops, draft.as_slice(), Some(expected))
            .await?
        {
            keycard_store::CommitOutcome::Conflict => return Ok(false),
            keycard_store::CommitOutcome::Committed(Some(seq)) => {
                self.applied_seq.store(seq, Ordering::SeqCst);
            }
            keycard_store::CommitOutcome::Committed(None) => {}
        }
        if draft.is_some() {
            audit::draft_committed();
        }
        let instances = changes.iter().any(|c| {
            matches!(
                c,
                Change::Put(Entity::Instance(_)) | Change::Delete("instance", _)
            )
        });
        {
            let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
            for c in changes {
                match c {
                    Change::Put(e) => st.put(e),
                    Change::Delete(kind, key) => st.delete(kind, &key),
                }
            }
        }
        if instances {
            self.instance_events.send_modify(|n| *n += 1);
        }
        self.changes.send_modify(|n| *n += 1);
        Ok(true)
    }

    /// Wakes after any committed change.
    pub fn watch_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Governance's "now": the real clock, moved forward by `--test-clock`.
    pub fn governance_now(&self) -> i64 {
        now() + self.clock_offset.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Move governance's clock forward (only with `--test-clock`); returns
    /// the new offset, or None when the server runs without the flag.
    pub fn advance_clock(&self, seconds: i64) -> Option<i64> {
        if !self.config.test_clock || seconds < 0 {
            return None;
        }
        let add = seconds.min(100 * 365 * 86_400);
        Some(
            self.clock_offset
                .fetch_add(add, std::sync::atomic::Ordering::Relaxed)
                + add,
        )
    }

    /// Re-evaluate governance shortly after every change (changes close
    /// together share one evaluation) and every `period` for the
    /// age-based rules. Ends with the keycard.
    pub fn spawn_governance(
        self: &Arc<Self>,
        period: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        let mut changes = self.watch_changes();
        tokio::spawn(async move {
            loop {
                if let Some(kc) = weak.upgrade()
                    && let Err(e) = kc.evaluate_governance().await
                {
                    tracing::warn!(error = %e, "governance evaluation failed; will retry");
                }
                match tokio::time::timeout(period, changes.changed()).await {
                    Ok(Err(_)) => return,
                    Ok(Ok(())) => tokio::time::sleep(GOVERNANCE_DEBOUNCE).await,
                    Err(_) => {}
                }
                changes.borrow_and_update();
            }
        })
    }

    /// Remember where a long-term key signs from (changes only).
    pub(crate) fn note_key_source(&self, key_id: &str, source_ip: &str) {
        let mut m = self.key_sources.lock().unwrap_or_else(|e| e.into_inner());
        if m.get(key_id).is_none_or(|ip| ip != source_ip) {
            m.insert(key_id.to_string(), source_ip.to_string());
        }
    }

    /// Facts from the traffic: user keys last used from an address that
    /// is a live instance's private address.
    fn governance_facts(&self, st: &State) -> governance::Facts {
        let by_ip: std::collections::HashMap<&str, &str> = st
            .instances
            .values()
            .filter(|i| !i.is_terminated())
            .filter_map(|i| i.private_ip.as_deref().map(|ip| (ip, i.id.as_str())))
            .collect();
        let sources = self.key_sources.lock().unwrap_or_else(|e| e.into_inner());
        governance::Facts {
            scanned_keys: self.governance.scan_hits(),
            sightings: self.governance.sightings(),
            keys_used_from_instances: sources
                .iter()
                .filter_map(|(k, ip)| by_ip.get(ip.as_str()).map(|i| (k.clone(), i.to_string())))
                .collect(),
        }
    }

    /// Evaluate every governance rule now and store the outcome.
    pub async fn evaluate_governance(&self) -> Result<governance::Delta> {
        let now = self.governance_now();
        let (observed, input) = {
            let st = self.state();
            let facts = self.governance_facts(&st);
            (
                governance::rules::evaluate(&st, now, &facts, governance::user_data_secrets),
                governance::KpiInput::from_state(&st),
            )
        };
        Ok(self
            .governance
            .evaluate(observed, input, now, self.store.as_ref())
            .await?)
    }

    /// The account that owns access key id `key_id`, to attribute a failed
    /// authentication: a long-term key's account from the state, a session
    /// key's from its token's claims when the token opens and belongs to
    /// that key id. None when it is not known.
    pub fn key_account(&self, key_id: &str, session_token: Option<&str>) -> Option<String> {
        if key_id.starts_with("ASIA") {
            let session = self.open_session(session_token?).ok()?;
            return (session.claims.access_key_id == key_id)
                .then(|| session.claims.account.clone());
        }
        self.state()
            .access_keys
            .get(key_id)
            .map(|k| k.account.clone())
    }

    /// Wakes when any instance changes (launch, state, profile, options).
    pub fn watch_instances(&self) -> tokio::sync::watch::Receiver<u64> {
        self.instance_events.subscribe()
    }

    pub(crate) fn master_bytes(&self) -> &[u8] {
        self.master.bytes()
    }

    /// Constant-time check of the admin endpoint's bearer token.
    pub fn check_admin_token(&self, given: &str) -> bool {
        keycard_proto::ct_eq(given.as_bytes(), self.admin_token.expose().as_bytes())
    }

    pub fn master(&self) -> &crypto::SealKey {
        &self.master
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Rotate the session-token key: new tokens use the new key, old ones
    /// keep verifying.
    pub async fn rotate_token_key(&self) -> Result<u8> {
        let (id, bytes) = {
            let mut ring = self.tokens.write().unwrap_or_else(|e| e.into_inner());
            let id = ring.rotate();
            (id, ring.to_bytes())
        };
        self.store
            .put_meta("token_keys", &self.master.seal(&bytes, b"token_keys"))
            .await?;
        // The feed carries the news to other nodes, which re-read the ring.
        self.store
            .commit(
                &[Op::put(META_BUMP_KIND, "token_keys", id.to_string())],
                &[],
            )
            .await?;
        Ok(id)
    }

    pub(crate) fn token_ring(&self) -> crypto::KeyRing {
        self.tokens
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Create an account with a root access key; returns (key id, secret).
    pub async fn create_account(&self, id: Option<&str>) -> Result<(String, String, String)> {
        let id = match id {
            Some(i) => {
                validate::account_id(i)?;
                i.to_string()
            }
            None => {
                let n = u64::from_be_bytes(crypto::random_bytes::<8>()) % 900_000_000_000;
                format!("{:012}", 100_000_000_000 + n)
            }
        };
        let (key_id, secret) = self.new_key_material(&id, None, None);
        let sealed = crypto::seal_secret(&self.master, &secret, &key_id);
        let created = now();
        let acct = id.clone();
        let kid = key_id.clone();
        self.mutate(move |st| {
            if st.accounts.contains_key(&acct) {
                return Err(ServiceError::EntityAlreadyExists(format!(
                    "Account {acct} already exists."
                )));
            }
            Ok((
                vec![
                    Change::Put(Entity::Account(Account {
                        id: acct.clone(),
                        created,
                        root_key_id: kid.clone(),
                        alias: None,
                        governance: Default::default(),
                        extras: Default::default(),
                        federation: Default::default(),
                    })),
                    Change::Put(Entity::AccessKey(model::AccessKey {
                        account: acct.clone(),
                        user: None,
                        id: kid.clone(),
                        sealed_secret: sealed.clone(),
                        status: model::KeyStatus::Active,
                        created,
                        last_used: None,
                    })),
                ],
                (),
            ))
        })
        .await?;
        self.remember_secret(&key_id, &secret);
        Ok((id, key_id, secret))
    }

    fn remember_secret(&self, key_id: &str, secret: &str) {
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        st.secrets
            .insert(key_id.to_string(), SecretKey::new(secret.to_string()));
    }

    /// A fresh long-term key id and secret for `account` (given ones are
    /// used for the root key when configured).
    fn new_key_material(
        &self,
        account: &str,
        given_id: Option<&str>,
        given_secret: Option<&str>,
    ) -> (String, String) {
        let id = given_id.map(str::to_string).unwrap_or_else(|| {
            keycard_proto::ids::access_key_id("AKIA", account, &crypto::random_bytes::<16>())
        });
        let secret = given_secret.map(str::to_string).unwrap_or_else(|| {
            keycard_proto::ids::secret_access_key(&crypto::random_bytes::<30>())
        });
        (id, secret)
    }

    async fn ensure_default_account(&self) -> Result<()> {
        let exists = self.state().accounts.contains_key(DEFAULT_ACCOUNT);
        let given_id = self.config.root_access_key_id.clone();
        let given_secret = self.config.root_secret_access_key.clone();
        if !exists {
            let (key_id, secret) = self.new_key_material(
                DEFAULT_ACCOUNT,
                given_id.as_deref(),
                given_secret.as_ref().map(SecretKey::expose),
            );
            self.install_root_account(DEFAULT_ACCOUNT, &key_id, &secret)
                .await?;
        } else if let (Some(id), Some(secret)) = (given_id, given_secret) {
            // Explicit root credentials replace the stored root key.
            let known = self.state().access_keys.contains_key(&id);
            if !known {
                self.install_root_account(DEFAULT_ACCOUNT, &id, secret.expose())
                    .await?;
            }
        }
        self.write_credentials_file()?;
        Ok(())
    }

    async fn install_root_account(&self, account: &str, key_id: &str, secret: &str) -> Result<()> {
        let sealed = crypto::seal_secret(&self.master, secret, key_id);
        let created = now();
        let (acct, kid) = (account.to_string(), key_id.to_string());
        self.mutate(move |st| {
            let mut changes = Vec::new();
            if let Some(old) = st.accounts.get(&acct) {
                changes.push(Change::Delete("access_key", old.root_key_id.clone()));
                if let Some(k) = st.access_keys.get(&old.root_key_id)
                    && k.id != kid
                {
                    let gone = model::DeletedAccessKey::of(k, created);
                    changes.push(Change::Put(Entity::DeletedAccessKey(gone)));
                }
            }
            let old = st.accounts.get(&acct);
            changes.push(Change::Put(Entity::Account(Account {
                id: acct.clone(),
                created,
                root_key_id: kid.clone(),
                alias: old.and_then(|a| a.alias.clone()),
                governance: old.map(|a| a.governance.clone()).unwrap_or_default(),
                extras: old.map(|a| a.extras.clone()).unwrap_or_default(),
                federation: old.map(|a| a.federation.clone()).unwrap_or_default(),
            })));
            changes.push(Change::Put(Entity::AccessKey(model::AccessKey {
                account: acct.clone(),
                user: None,
                id: kid.clone(),
                sealed_secret: sealed.clone(),
                status: model::KeyStatus::Active,
                created,
                last_used: None,
            })));
            Ok((changes, ()))
        })
        .await?;
        self.remember_secret(key_id, secret);
        Ok(())
    }

    /// `<data-dir>/credentials`: the default account's root key as an AWS
    /// shared-credentials file (profile `default`), mode 0600.
    pub fn write_credentials_file(&self) -> Result<()> {
        let st = self.state();
        let Some(acct) = st.accounts.get(DEFAULT_ACCOUNT) else {
            return Ok(());
        };
        let Some(secret) = st.secrets.get(&acct.root_key_id) else {
            return Ok(());
        };
        let text = format!(
            "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\nregion = {}\n",
            acct.root_key_id,
            secret.expose(),
            self.config.region
        );
        write_private(&self.config.data_dir.join("credentials"), text.as_bytes())
            .map_err(|e| ServiceError::Internal(format!("writing credentials file: {e}")))
    }

    /// moto compat: how many requests are still let through unenforced.
    pub fn enforcement_off(&self) -> bool {
        let mut cur = self.no_auth_remaining.load(Ordering::Relaxed);
        loop {
            if cur == 0 {
                return false;
            }
            if cur == u64::MAX {
                return true;
            }
            match self.no_auth_remaining.compare_exchange(
                cur,
                cur - 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(c) => cur = c,
            }
        }
    }

    /// moto compat `reset-auth`: returns the previous count.
    pub fn set_no_auth_count(&self, n: u64) -> u64 {
        self.no_auth_remaining.swap(n, Ordering::Relaxed)
    }

    /// moto compat `reset`: wipe every entity and event, then re-create
    /// the default account and AWS managed policies.
    pub async fn reset(&self) -> Result<()> {
        {
            let _w = self.write_lock.lock().await;
            let kinds = [
                "account",
                "user",
                "group",
                "role",
                "policy",
                "instance_profile",
                "access_key",
                "deleted_access_key",
                "bucket",
                "object",
                "object_version",
                "upload",
                "instance",
                "vpc",
                "subnet",
                "security_group",
                "key_pair",
                "image",
                "launch_template",
                "volume",
                "network_interface",
                "resource_tags",
                generate::KIND,
            ];
            let ops: Vec<Op> = kinds
                .iter()
                .map(|k| Op::DeleteKind {
                    kind: k.to_string(),
                })
                .collect();
            self.store.commit(&ops, &[]).await?;
            self.store.clear_audit().await?;
            *self.state.write().unwrap_or_else(|e| e.into_inner()) = State::default();
            self.session_cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
        }
        let _ = std::fs::remove_dir_all(self.config.data_dir.join("objects"));
        let _ = std::fs::create_dir_all(self.config.data_dir.join("objects"));
        managed::install(self).await?;
        self.ensure_default_account().await
    }
}

/// A tiny boxed-error result for start-up, where any failure is fatal.
pub mod anyhow_like {
    pub type Error = Box<dyn std::error::Error + Send + Sync>;
    pub type Result<T> = std::result::Result<T, Error>;
}
