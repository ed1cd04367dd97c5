//! `keycard`: the binary. It only wires the crates together.

/// `println!` that stops quietly when stdout is closed (`keycard
/// operations | head`) instead of panicking on the broken pipe.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout().lock(), $($t)*).is_err() {
            std::process::exit(0);
        }
    }};
}

/// jemalloc instead of glibc's malloc: about 280 allocations per authorized
/// GetObject, and glibc's malloc/free/consolidate were ~16% of the server's
/// CPU; mimalloc was as fast but held more memory after load
/// (docs/benchmarks.md, "Issue 8, session 12"). The `jemalloc` feature is on
/// by default; the test script's debug builds leave it off.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod denials_cmd;
mod generate_cmd;
mod node_cmd;
mod open;
mod policy_cmd;
mod posture;

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use keycard_policy::PolicyKind;
use keycard_proto::SecretKey;
use keycard_services::{Config, Keycard};
use keycard_store::{AuditQuery, Durability, Store};

mod scan_cmd;

#[derive(Parser)]
#[command(
    name = "keycard",
    version,
    about = "An AWS-compatible identity plane for compute"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct DataDir {
    /// Where keycard keeps its database, keys and objects.
    #[arg(long, env = "KEYCARD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Where the entities and the audit trail live: a
    /// `postgres://user[:password]@host:port/db` URL shares them between
    /// nodes; default: SQLite in the data dir (which still holds keys and
    /// S3 object bodies either way).
    #[arg(
        long,
        value_name = "URL",
        env = "KEYCARD_STORE",
        hide_env_values = true
    )]
    store: Option<String>,
}

impl DataDir {
    fn path(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(default_data_dir)
    }
}

fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(x).join("keycard");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/share/keycard"),
        None => PathBuf::from(".keycard"),
    }
}

#[derive(Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once at start; boxing would only obscure clap's derive"
)]
enum Command {
    /// Run the server: IAM, STS, S3 and CloudTrail on one port.
    Serve {
        #[command(flatten)]
        data: DataDir,
        /// Keep audit events this long (e.g. 90d, 24h), dropping older ones
        /// at start and hourly; on PostgreSQL whole days go, so up to a day
        /// more is kept. `all` keeps everything.
        #[arg(long, default_value = "all", env = "KEYCARD_AUDIT_RETENTION")]
        audit_retention: String,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:4566", env = "KEYCARD_LISTEN")]
        listen: String,
        /// Region reported to clients.
        #[arg(long, default_value = "us-east-1", env = "KEYCARD_REGION")]
        region: String,
        /// Root access key id of the default account.
        #[arg(long, env = "KEYCARD_ROOT_ACCESS_KEY_ID", requires = "root_secret")]
        root_access_key_id: Option<String>,
        /// Root secret access key of the default account. Other local users can
        /// read argv: prefer the file or the environment variable.
        #[arg(
            long,
            env = "KEYCARD_ROOT_SECRET_ACCESS_KEY",
            hide_env_values = true,
            group = "root_secret",
            requires = "root_access_key_id"
        )]
        root_secret_access_key: Option<String>,
        /// File whose content is the root secret access key (surrounding
        /// whitespace ignored).
        #[arg(
            long,
            value_name = "PATH",
            group = "root_secret",
            requires = "root_access_key_id"
        )]
        root_secret_access_key_file: Option<PathBuf>,
        /// `moto`: also answer moto_server's reset endpoints, auth off until reset-auth.
        #[arg(long)]
        compat: Option<String>,
        /// Lifetime of instance-role credentials, seconds (EC2: about 6 h).
        #[arg(long, default_value_t = 21600, value_parser = clap::value_parser!(i64).range(15..=43200))]
        instance_credential_lifetime: i64,
        /// Serve a new set once the cached one has less than this left, seconds
        /// (default: 1 h, or a quarter of a shorter lifetime).
        #[arg(long, value_parser = clap::value_parser!(i64).range(1..=43200))]
        instance_credential_refresh: Option<i64>,
        /// How instances reach their metadata service: `loopback` (a
        /// 127.77.x.y address per instance, no privileges) or `netns` (a
        /// network namespace per instance with 169.254.169.254; root).
        #[arg(long, default_value = "loopback", env = "KEYCARD_INSTANCE_NETWORK")]
        instance_network: String,
        /// Port of the per-instance loopback metadata listeners (0: pick one).
        #[arg(long, default_value_t = 4569, env = "KEYCARD_IMDS_PORT")]
        imds_port: u16,
        /// Whether each commit (audit events and the changes they go with)
        /// is fsynced: `never` survives a crash of keycard (kill -9) but not
        /// a power loss; `always` survives both, at the cost measured in
        /// docs/benchmarks.md.
        #[arg(long, alias = "audit-fsync", default_value = "never", env = "KEYCARD_FSYNC",
              value_parser = ["always", "never"])]
        fsync: String,
        /// Let the admin endpoint move governance's clock forward (for
        /// testing age-based rules such as key rotation). Never in
        /// production: findings and KPIs would be dated in the future.
        #[arg(long, hide = true)]
        test_clock: bool,
        /// What happens when an instance's role credentials are used
        /// anywhere but on their instance: `detect` allows the call and
        /// records a finding; `bound` refuses it (and records the finding).
        #[arg(long, default_value = "detect", env = "KEYCARD_INSTANCE_CREDENTIALS",
              value_parser = ["detect", "bound"])]
        instance_credentials: String,
        /// `enforced`: a denied call is refused. `soft`: it goes ahead, and
        /// its audit event and a log line say it would have been denied
        /// and why (for learning what an application needs).
        #[arg(long, default_value = "enforced", env = "KEYCARD_ENFORCEMENT",
              value_parser = ["enforced", "soft"])]
        enforcement: String,
        /// Soft enforcement for this user or role ARN only (repeatable); a
        /// user or role tagged `keycard:enforcement=soft` is soft too.
        #[arg(long = "soft-principal", value_name = "ARN")]
        soft_principals: Vec<String>,
        /// File holding the master key (64 hex digits) that seals secrets
        /// in the store: every node of one PostgreSQL store needs the same.
        /// Env KEYCARD_MASTER_KEY gives the hex itself. Default:
        /// `<data-dir>/master.key`, created on first start.
        #[arg(long, value_name = "PATH", env = "KEYCARD_MASTER_KEY_FILE")]
        master_key_file: Option<PathBuf>,
        /// With a PostgreSQL store: refuse requests (503) once this node
        /// has not confirmed for this long that it has every change
        /// (e.g. 2s, 500ms).
        #[arg(long, default_value = "2s", env = "KEYCARD_MAX_STALENESS")]
        max_staleness: String,
        /// How often logging CloudTrail trails deliver their log files to
        /// S3 (AWS: about every 5 minutes), e.g. 5m, 10s.
        #[arg(long, default_value = "5m", env = "KEYCARD_TRAIL_DELIVERY_INTERVAL")]
        trail_delivery_interval: String,
        /// How often S3 lifecycle rules' expirations are applied (one node
        /// of a shared store sweeps), e.g. 60m, 30s.
        #[arg(long, default_value = "60m", env = "KEYCARD_LIFECYCLE_INTERVAL")]
        lifecycle_interval: String,
        /// How often trails with log file validation deliver digest files
        /// (AWS: hourly), e.g. 1h, 5s; at least 1s.
        #[arg(long, default_value = "1h", env = "KEYCARD_TRAIL_DIGEST_INTERVAL")]
        trail_digest_interval: String,
        /// This node's name (unique per store): instances launched here
        /// belong to it and it runs their metadata services. Default: the
        /// hostname, else `default`.
        #[arg(long, value_name = "NAME", env = "KEYCARD_NODE")]
        node: Option<String>,
        /// With a PostgreSQL store: a node whose heartbeat is older than
        /// this is down, and its instances show impaired until `keycard
        /// node adopt` or `drain` moves them (e.g. 10s, 1500ms).
        #[arg(long, default_value = "10s", env = "KEYCARD_NODE_TIMEOUT")]
        node_timeout: String,
    },
    /// The nodes of a PostgreSQL store: list them, drain one, adopt a dead
    /// one's instances (through the running node of the data dir).
    Node {
        #[command(subcommand)]
        command: node_cmd::NodeCommand,
    },
    /// Findings and KPIs of the estate (asks the running server, which
    /// evaluates every rule first).
    Posture {
        #[command(flatten)]
        data: DataDir,
        /// JSON instead of tables.
        #[arg(long)]
        json: bool,
        /// Account (default: the data dir's default account).
        #[arg(long)]
        account: Option<String>,
        /// Also list resolved findings.
        #[arg(long)]
        all: bool,
    },
    /// Run a command "on" an instance: no static credentials, and the SDKs
    /// find the instance role through the instance's metadata service.
    Exec {
        #[command(flatten)]
        data: DataDir,
        /// `imds` (as on EC2) or `container` (ECS / EKS style endpoint).
        #[arg(long, default_value = "imds")]
        via: String,
        /// The instance (`i-…`).
        instance_id: String,
        /// The command and its arguments.
        #[arg(trailing_var_arg = true, required = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Print the public key that signs instance identity documents (PEM).
    IdentityKey {
        #[command(flatten)]
        data: DataDir,
    },
    /// Evaluate and validate IAM policies offline; simulate a principal on the running server.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Manage accounts.
    Accounts {
        #[command(subcommand)]
        command: AccountsCommand,
    },
    /// Read the audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Find hardcoded AWS keys in files, directories and git history, and
    /// check each against keycard (exit 1 on findings at or above --fail-on).
    Scan(scan_cmd::ScanArgs),
    /// List every operation keycard serves, from its operation tables.
    Operations {
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Decide one request (or an array of them) read as JSON.
    Evaluate {
        /// File with the request JSON, or `-` for standard input.
        #[arg(long)]
        input: String,
    },
    /// Validate a policy document.
    Validate {
        file: String,
        #[arg(long, default_value = "identity")]
        kind: String,
    },
    /// Simulate a principal's policies on the running server (IAM's policy simulator).
    Simulate(policy_cmd::SimulateArgs),
    /// Generate the identity policy a principal needs from what it did
    /// (the audit trail), ready for `aws iam put-role-policy`.
    Generate(generate_cmd::GenerateArgs),
    /// Check a policy as IAM Access Analyzer's ValidatePolicy does, offline.
    Lint(policy_cmd::LintArgs),
}

#[derive(Subcommand)]
enum AccountsCommand {
    /// Create an account with its root access key; prints JSON.
    Create {
        #[command(flatten)]
        data: DataDir,
        /// A specific 12-digit id (random otherwise).
        #[arg(long)]
        account_id: Option<String>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Print audit events as JSON lines, oldest first, and keep following.
    Tail {
        #[command(flatten)]
        data: DataDir,
        /// How many past events to print first.
        #[arg(long, default_value_t = 20)]
        last: u32,
        /// Stop after printing what exists now.
        #[arg(long)]
        no_follow: bool,
    },
    /// Every denial and would-be denial (soft enforcement), grouped by
    /// principal and action, with what decided it.
    Denials {
        #[command(flatten)]
        data: DataDir,
        /// Only this principal (the event's userIdentity ARN, e.g.
        /// arn:aws:sts::123456789012:assumed-role/App/i-…).
        #[arg(long)]
        principal: Option<String>,
        /// How far back: 90s, 30m, 24h, 7d or all.
        #[arg(long, default_value = "24h")]
        since: String,
        /// Account (default: the data dir's default account).
        #[arg(long)]
        account: Option<String>,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Instance credentials used away from their instance (or after it
    /// stopped, terminated or changed role), as GuardDuty findings.
    Exfiltration {
        #[command(flatten)]
        data: DataDir,
        /// GuardDuty `GetFindings` JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// `keycard operations`: the rows of every service's operation table.
fn operations(json: bool) {
    for op in keycard_server::ops::all() {
        if json {
            say!(
                "{}",
                serde_json::json!({
                    "eventSource": op.event_source(),
                    "operation": op.name,
                    "actions": op.actions,
                    "conditionalActions": op.conditional,
                    "versionActions": op.versioned,
                    "readOnly": op.read_only,
                    "dataEvent": op.data_event,
                })
            );
        } else {
            say!(
                "{:<26} {:<42} {:<5} {}",
                op.event_source(),
                op.name,
                if op.read_only { "read" } else { "write" },
                op.actions.join(",")
            );
        }
    }
}

fn read_input(path: &str) -> anyhow::Result<String> {
    if path == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        Ok(s)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {path}"))
    }
}

/// How often access-key and role last-used data reach the store (and at
/// shutdown); a crash loses at most this much of it.
const LAST_USED_FLUSH: Duration = Duration::from_secs(10);

/// How often governance re-evaluates with no change (age-based rules).
const GOVERNANCE_PERIOD: Duration = Duration::from_secs(60);

/// How often audit retention runs (`--audit-retention`).
const AUDIT_RETENTION_PERIOD: Duration = Duration::from_secs(3600);

/// `--audit-retention`: how long to keep events, in seconds (`None`: all).
fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// `--max-staleness` / `--node-timeout` / the trail intervals (the flag,
/// for errors): `2s`, `500ms`, `1m`, `1h`.
fn parse_duration(flag: &str, s: &str) -> anyhow::Result<std::time::Duration> {
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = num
        .parse()
        .with_context(|| format!("{flag} {s}: expected e.g. 2s or 500ms"))?;
    let ms = match unit {
        "ms" => n,
        "s" => n.saturating_mul(1000),
        "m" => n.saturating_mul(60_000),
        "h" => n.saturating_mul(3_600_000),
        _ => bail!("{flag} {s}: units are ms, s, m or h"),
    };
    if ms == 0 {
        bail!("{flag} must be positive");
    }
    Ok(std::time::Duration::from_millis(ms))
}

/// `--node`, else the hostname when it is a valid node name, else
/// `default`.
fn node_name(given: Option<String>) -> anyhow::Result<String> {
    use keycard_services::nodes::{DEFAULT_NODE, valid_node_name};
    if let Some(n) = given {
        if !valid_node_name(&n) {
            bail!("--node {n}: 1-64 letters, digits, '.', '_' or '-'");
        }
        return Ok(n);
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| valid_node_name(h));
    Ok(host.unwrap_or_else(|| DEFAULT_NODE.to_string()))
}

/// How often a node heartbeats: four times per `--node-timeout`, within
/// 100 ms and 2 s.
fn beat_period(timeout: Duration) -> Duration {
    (timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(2))
}

/// The shared master key: KEYCARD_MASTER_KEY (hex), else the file.
fn master_key(file: Option<&std::path::Path>) -> anyhow::Result<Option<SecretKey>> {
    if let Ok(hex) = std::env::var("KEYCARD_MASTER_KEY")
        && !hex.trim().is_empty()
    {
        return Ok(Some(SecretKey::new(hex.trim().to_string())));
    }
    file.map(|p| {
        std::fs::read_to_string(p)
            .map(|t| SecretKey::new(t.trim().to_string()))
            .with_context(|| format!("reading --master-key-file {}", p.display()))
    })
    .transpose()
}

/// Follow the other nodes: the keycard's follower, woken by a task that
/// listens for the store's change notifications (its own connection,
/// re-established after a loss; the follower's polling covers the gap).
async fn spawn_follower(
    kc: &Arc<Keycard>,
    url: &str,
) -> anyhow::Result<[tokio::task::JoinHandle<()>; 2]> {
    let pg = keycard_store::PgStore::open(url)
        .await
        .context("opening the PostgreSQL store for notifications")?;
    let follower = kc.spawn_follower();
    let weak = Arc::downgrade(kc);
    let listener = tokio::spawn(async move {
        loop {
            if let Ok(mut l) = pg.subscribe().await {
                while l.recv().await.is_ok() {
                    let Some(kc) = weak.upgrade() else { return };
                    kc.nudge_follower();
                }
            }
            if weak.strong_count() == 0 {
                return;
            }
            tokio::time::sleep(keycard_services::follow::FOLLOW_PERIOD).await;
        }
    });
    Ok([follower, listener])
}

fn parse_retention(s: &str) -> anyhow::Result<Option<i64>> {
    match denials_cmd::parse_since(s) {
        Ok(Some(secs)) if secs > 0 => Ok(Some(secs)),
        Ok(None) => Ok(None),
        _ => {
            bail!("--audit-retention {s}: expected a positive duration such as 90d or 24h, or all")
        }
    }
}

/// Deliver logging trails' events to their buckets every `every`; a
/// failure is logged and retried next time (the trail's cursor stays).
fn spawn_trail_delivery(kc: Arc<Keycard>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = kc.deliver_trails().await {
                tracing::warn!(error = %e, "trail delivery failed; will retry");
            }
        }
    })
}

/// Apply S3 lifecycle expirations every `every` (the first tick is one
/// period after start); a failure is logged and retried next time.
fn spawn_lifecycle(kc: Arc<Keycard>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match kc.lifecycle_sweep().await {
                Ok(done) if !done.is_empty() => {
                    tracing::info!(count = done.len(), "lifecycle sweep applied rules");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "lifecycle sweep failed; will retry"),
            }
        }
    })
}

/// Expire audit events older than `keep_s` now and every
/// `AUDIT_RETENTION_PERIOD`; a failure is logged and retried next time.
fn spawn_audit_retention(store: Arc<dyn Store>, keep_s: i64) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(AUDIT_RETENTION_PERIOD);
        loop {
            tick.tick().await;
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            let cutoff = now_ms.saturating_sub(keep_s.saturating_mul(1000));
            if let Err(e) = store.expire_audit(cutoff).await {
                tracing::warn!(error = %e, "audit retention failed; will retry");
            }
        }
    })
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Scan(args) => return scan_cmd::run(args),
        Command::Policy { command } => match policy(command) {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
        Command::Operations { json } => {
            operations(json);
            Ok(())
        }
        other => {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("keycard: cannot start runtime: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            };
            rt.block_on(run(other))
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keycard: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A `keycard policy` command. Lint sets its own exit status (1: problems
/// found, 2: usage); the others succeed or fail with an error.
fn policy(cmd: PolicyCommand) -> anyhow::Result<std::process::ExitCode> {
    match cmd {
        PolicyCommand::Evaluate { input } => {
            let text = read_input(&input)?;
            match keycard_policy::cli::evaluate_json(&text) {
                Ok(out) => say!("{out}"),
                Err(e) => bail!("{e}"),
            }
        }
        PolicyCommand::Validate { file, kind } => {
            let kind: PolicyKind = kind.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
            let text = read_input(&file)?;
            match keycard_policy::validate_json(&text, kind) {
                Ok(()) => say!("{{\"valid\": true}}"),
                Err(e) => bail!("{}: {}", e.code.as_str(), e.message),
            }
        }
        PolicyCommand::Simulate(args) => policy_cmd::simulate(args)?,
        PolicyCommand::Generate(args) => generate_cmd::run(args)?,
        PolicyCommand::Lint(args) => return Ok(policy_cmd::lint(args)),
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// The root secret from `--root-secret-access-key` (or its environment
/// variable) or from `--root-secret-access-key-file` (clap allows only one).
fn root_secret(
    given: Option<String>,
    file: Option<&std::path::Path>,
) -> anyhow::Result<Option<SecretKey>> {
    let Some(path) = file else {
        return Ok(given.map(SecretKey::new));
    };
    let raw = SecretKey::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("reading the root secret from {}", path.display()))?,
    );
    let secret = raw.expose().trim();
    if secret.is_empty() {
        bail!("{} holds no root secret access key", path.display());
    }
    Ok(Some(SecretKey::new(secret.to_owned())))
}

async fn run(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Serve {
            data,
            audit_retention,
            listen,
            region,
            root_access_key_id,
            root_secret_access_key,
            root_secret_access_key_file,
            compat,
            instance_credential_lifetime,
            instance_credential_refresh,
            instance_network,
            imds_port,
            fsync,
            test_clock,
            instance_credentials,
            enforcement,
            soft_principals,
            master_key_file,
            max_staleness,
            trail_delivery_interval,
            lifecycle_interval,
            trail_digest_interval,
            node,
            node_timeout,
        } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_env("KEYCARD_LOG")
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
                )
                .with_writer(std::io::stderr)
                .init();
            let dir = data.path();
            let mut config = Config::new(&dir);
            config.region = region;
            config.root_access_key_id = root_access_key_id;
            config.root_secret_access_key = root_secret(
                root_secret_access_key,
                root_secret_access_key_file.as_deref(),
            )?;
            config.instance_credential_lifetime = instance_credential_lifetime;
            config.instance_credential_refresh = instance_credential_refresh
                .unwrap_or(3600.min(instance_credential_lifetime / 4))
                .min(instance_credential_lifetime - 1);
            let network = match instance_network.as_str() {
                "loopback" => keycard_imds::Network::Loopback,
                "netns" => {
                    if !keycard_imds::netns::available() {
                        bail!("--instance-network netns needs root and iproute2 (`ip netns`)");
                    }
                    keycard_imds::Network::Netns
                }
                other => bail!("unknown --instance-network {other} (known: loopback, netns)"),
            };
            match compat.as_deref() {
                None => {}
                Some("moto") => config.compat_moto = true,
                Some(other) => bail!("unknown --compat mode {other} (known: moto)"),
            }
            config.test_clock = test_clock;
            config.soft_enforcement = enforcement == "soft";
            config.soft_principals = soft_principals;
            config.master_key_hex = master_key(master_key_file.as_deref())?;
            let shared = data.store.as_deref().is_some_and(is_postgres_url);
            config.max_staleness = shared
                .then(|| parse_duration("--max-staleness", &max_staleness))
                .transpose()?;
            config.node = node_name(node)?;
            let digest_every = parse_duration("--trail-digest-interval", &trail_digest_interval)?;
            if digest_every < Duration::from_secs(1) {
                bail!("--trail-digest-interval {trail_digest_interval}: at least 1s");
            }
            config.trail_digest_interval_ms =
                i64::try_from(digest_every.as_millis()).unwrap_or(i64::MAX);
            config.node_timeout = shared
                .then(|| parse_duration("--node-timeout", &node_timeout))
                .transpose()?;
            config.instance_credentials =
                keycard_services::binding::BindingMode::parse(&instance_credentials)
                    .unwrap_or_default();
            let durability = if fsync == "always" {
                Durability::PowerLoss
            } else {
                Durability::Crash
            };
            let retention = parse_retention(&audit_retention)?;
            let trail_every =
                parse_duration("--trail-delivery-interval", &trail_delivery_interval)?;
            let lifecycle_every = parse_duration("--lifecycle-interval", &lifecycle_interval)?;
            let store = data.open_store_with(durability).await?;
            let retention_task = retention.map(|keep| spawn_audit_retention(store.clone(), keep));
            let kc = Keycard::open(config, store)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            let addr = listener.local_addr()?;
            keycard_services::write_private(&dir.join("server.addr"), addr.to_string().as_bytes())?;
            eprintln!(
                "keycard listening on http://{addr} (data dir {}, credentials {})",
                dir.display(),
                dir.join("credentials").display()
            );
            {
                let mut rt = kc.runtime.write().unwrap_or_else(|e| e.into_inner());
                rt.api_addr = Some(addr);
                rt.netns = network == keycard_imds::Network::Netns;
                rt.imds_port = (imds_port != 0).then_some(imds_port);
            }
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            let api_kc = kc.clone();
            let api_stop = stop_rx.clone();
            let api: keycard_imds::ApiServe = Arc::new(move |l, source| {
                let kc = api_kc.clone();
                let mut stop = api_stop.clone();
                tokio::spawn(async move {
                    let stopped = async move {
                        let _ = stop.wait_for(|s| *s).await;
                    };
                    let _ = match source {
                        Some(path) => keycard_server::serve_instance(kc, l, path, stopped).await,
                        None => keycard_server::serve(kc, l, stopped).await,
                    };
                });
            });
            let imds = keycard_imds::Imds::new(
                kc.clone(),
                keycard_imds::Options {
                    network,
                    port: imds_port,
                    api_port: addr.port(),
                    api: Some(api),
                },
            );
            let mut imds_stop = stop_rx.clone();
            let imds_task = tokio::spawn(imds.clone().run(async move {
                let _ = imds_stop.wait_for(|s| *s).await;
            }));
            let heartbeat = kc
                .config
                .node_timeout
                .map(|t| kc.spawn_heartbeat(beat_period(t)));
            let flusher = kc.spawn_last_used_flusher(LAST_USED_FLUSH);
            let governance = kc.spawn_governance(GOVERNANCE_PERIOD);
            let trails = spawn_trail_delivery(kc.clone(), trail_every);
            let lifecycle = spawn_lifecycle(kc.clone(), lifecycle_every);
            let follower = match data.store.as_deref().filter(|u| is_postgres_url(u)) {
                Some(url) => Some(spawn_follower(&kc, url).await?),
                None => None,
            };
            let shutdown = async move {
                let ctrl_c = tokio::signal::ctrl_c();
                #[cfg(unix)]
                {
                    let mut term =
                        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                            .expect("installing SIGTERM handler");
                    tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
                }
                #[cfg(not(unix))]
                {
                    let _ = ctrl_c.await;
                }
                let _ = stop_tx.send(true);
            };
            keycard_server::serve(kc.clone(), listener, shutdown).await?;
            // Close instance listeners and delete namespaces.
            let _ = imds_task.await;
            flusher.abort();
            governance.abort();
            trails.abort();
            lifecycle.abort();
            if let Some(t) = heartbeat {
                t.abort();
                if let Err(e) = kc.heartbeat_stopped().await {
                    tracing::warn!(error = %e, "could not record this node's stop");
                }
            }
            for t in follower.into_iter().flatten() {
                t.abort();
            }
            if let Some(t) = retention_task {
                t.abort();
            }
            if let Err(e) = kc.flush_last_used().await {
                tracing::error!(error = %e, "persisting last-used data at shutdown failed");
            }
            kc.audit.flush().await;
            let _ = std::fs::remove_file(dir.join("server.addr"));
            Ok(())
        }
        Command::Posture {
            data,
            json,
            account,
            all,
        } => posture::run(&data, json, account, all).await,
        Command::Node { command } => node_cmd::run(command).await,
        Command::Accounts {
            command: AccountsCommand::Create { data, account_id },
        } => {
            let dir = data.path();
            // A running server owns the in-memory state: ask it.
            if let Ok(addr) = std::fs::read_to_string(dir.join("server.addr")) {
                let token = std::fs::read_to_string(dir.join("admin.token"))
                    .context("reading admin.token of the running server")?;
                let body = serde_json::json!({"accountId": account_id}).to_string();
                let out = admin_post(addr.trim(), "/_keycard/admin/accounts", token.trim(), &body)
                    .await?;
                say!("{out}");
                return Ok(());
            }
            let store = data.open_store().await?;
            let kc = Keycard::open(Config::new(&dir), store)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let (id, key, secret) = kc
                .create_account(account_id.as_deref())
                .await
                .map_err(|e| anyhow::anyhow!("{}: {}", e.code(), e.message()))?;
            say!(
                "{}",
                serde_json::json!({"accountId": id, "accessKeyId": key, "secretAccessKey": secret})
            );
            Ok(())
        }
        Command::Audit {
            command:
                AuditCommand::Tail {
                    data,
                    last,
                    no_follow,
                },
        } => {
            let store = data.open_store().await?;
            let mut recent = store
                .query_audit(&AuditQuery {
                    limit: last.max(1),
                    ..Default::default()
                })
                .await?;
            recent.reverse();
            let mut after = recent.last().map(|r| r.seq).unwrap_or(0);
            for r in recent.iter().skip(if last == 0 { recent.len() } else { 0 }) {
                say!("{}", r.body);
            }
            if no_follow {
                return Ok(());
            }
            loop {
                let rows = store
                    .query_audit(&AuditQuery {
                        after_seq: Some(after),
                        limit: 1000,
                        ..Default::default()
                    })
                    .await?;
                for r in &rows {
                    say!("{}", r.body);
                    after = r.seq;
                }
                if rows.is_empty() {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
        Command::Audit {
            command:
                AuditCommand::Denials {
                    data,
                    principal,
                    since,
                    account,
                    json,
                },
        } => denials_cmd::run(&data, account, principal, &since, json).await,
        Command::Audit {
            command: AuditCommand::Exfiltration { data, json },
        } => {
            let store = data.open_store().await?;
            let mut all: Vec<keycard_services::binding::Sighting> = store
                .load_kind("exfil")
                .await?
                .iter()
                .filter_map(|r| serde_json::from_str(&r.value).ok())
                .collect();
            all.sort_by_key(|s| std::cmp::Reverse(s.last_seen));
            print_sightings(&all, json);
            Ok(())
        }
        Command::Exec {
            data,
            via,
            instance_id,
            command,
        } => exec(&data.path(), &via, &instance_id, &command).await,
        Command::IdentityKey { data } => {
            let pem = keycard_imds::identity::public_key_pem_from_dir(&data.path())
                .with_context(|| format!("reading master.key in {}", data.path().display()))?;
            print!("{pem}");
            Ok(())
        }
        Command::Policy { .. } | Command::Operations { .. } | Command::Scan(_) => {
            unreachable!("handled without a runtime")
        }
    }
}

/// `keycard audit exfiltration`: one line per sighting, or GuardDuty JSON.
fn print_sightings(all: &[keycard_services::binding::Sighting], json: bool) {
    if json {
        let findings: Vec<serde_json::Value> = all
            .iter()
            .map(|s| {
                let id = keycard_services::governance::finding_id("exfil", &s.key());
                s.guardduty_json(id.trim_start_matches("exfil/"))
            })
            .collect();
        say!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "Findings": findings }))
                .unwrap_or_default()
        );
        return;
    }
    if all.is_empty() {
        say!("No instance credentials have been used away from their instance.");
        return;
    }
    for s in all {
        let calls: Vec<String> = s.calls.iter().map(|(c, n)| format!("{c}×{n}")).collect();
        let sources: Vec<&str> = s.sources.keys().map(String::as_str).collect();
        say!(
            "{}\n  instance {}  session {}\n  key {}  from {}{}\n  calls {} ({} refused)\n  first {}  last {}\n",
            s.finding_type,
            s.instance_id,
            s.session_arn,
            s.access_key_id,
            sources.join(", "),
            s.remote_instance_id
                .as_ref()
                .map(|i| format!(" over instance {i}"))
                .or_else(|| s.reason.as_ref().map(|r| format!(" after {r}")))
                .unwrap_or_default(),
            calls.join(", "),
            s.denied,
            keycard_services::sts::iso8601(s.first_seen),
            keycard_services::sts::iso8601(s.last_seen),
        );
    }
}

/// Settings a command on an instance may keep; every other `AWS_*`
/// variable is removed, so no static credential source survives.
const KEEP_ENV: &[&str] = &[
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_DEFAULT_OUTPUT",
    "AWS_PAGER",
    "AWS_MAX_ATTEMPTS",
    "AWS_RETRY_MODE",
    "AWS_CA_BUNDLE",
    "AWS_EC2_METADATA_V1_DISABLED",
    "AWS_METADATA_SERVICE_TIMEOUT",
    "AWS_METADATA_SERVICE_NUM_ATTEMPTS",
    "AWS_SDK_LOAD_CONFIG",
];

/// `keycard exec`: ask the running server how the instance is reached,
/// then replace this process with the command in that environment.
async fn exec(
    dir: &std::path::Path,
    via: &str,
    id: &str,
    command: &[String],
) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    if !matches!(via, "imds" | "container") {
        bail!("unknown --via {via} (known: imds, container)");
    }
    let (addr, token) = running_server(dir)?;
    let info = admin_request(
        &addr,
        "GET",
        &format!("/_keycard/admin/instances/{id}"),
        &token,
        "",
    )
    .await?;
    let info: serde_json::Value = serde_json::from_str(&info)?;
    let s = |k: &str| {
        info.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    if s("state") != "running" {
        bail!("instance {id} is {}, not running", s("state"));
    }
    if info.get("imdsEndpoint").is_none() {
        bail!(
            "instance {id} runs on node {}: run keycard exec on that node's data dir",
            s("node")
        );
    }
    let netns = info
        .get("netns")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    let imds = s("imdsEndpoint");
    if netns.is_none() && via == "imds" {
        // The listener opens right after launch; wait for it briefly.
        for url in [imds.as_str(), &s("apiEndpoint")] {
            let hostport = url
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string();
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while tokio::net::TcpStream::connect(&hostport).await.is_err() {
                if std::time::Instant::now() > deadline {
                    bail!("the listener of {id} at {hostport} does not answer");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    let (program, args): (String, Vec<String>) = match &netns {
        Some(ns) => (
            "ip".into(),
            ["netns", "exec", ns.as_str()]
                .iter()
                .map(|x| x.to_string())
                .chain(command.iter().cloned())
                .collect(),
        ),
        None => (command[0].clone(), command[1..].to_vec()),
    };
    let mut cmd = std::process::Command::new(&program);
    cmd.args(&args);
    for (k, _) in std::env::vars_os() {
        let name = k.to_string_lossy();
        if name.starts_with("AWS_") && !KEEP_ENV.contains(&name.as_ref()) {
            cmd.env_remove(&k);
        }
    }
    cmd.env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_CONFIG_FILE", "/dev/null");
    // The instance's own path to the API, unless the user chose another
    // endpoint on purpose (one that is not this server).
    match std::env::var("AWS_ENDPOINT_URL") {
        Ok(v) if !is_this_server(&v, addr.trim()) => cmd.env("AWS_ENDPOINT_URL", v),
        _ => cmd.env("AWS_ENDPOINT_URL", s("apiEndpoint")),
    };
    let region = s("region");
    if std::env::var_os("AWS_REGION").is_none() {
        cmd.env("AWS_REGION", &region);
    }
    if std::env::var_os("AWS_DEFAULT_REGION").is_none() {
        cmd.env("AWS_DEFAULT_REGION", &region);
    }
    if via == "container" {
        cmd.env(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            s("containerCredentialsFullUri"),
        )
        .env(
            "AWS_CONTAINER_AUTHORIZATION_TOKEN",
            s("containerAuthorizationToken"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true");
    } else if netns.is_none() {
        cmd.env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds);
    }
    let err = cmd.exec();
    bail!("running {program}: {err}")
}

/// Whether an endpoint URL names the server listening at `addr`
/// (`127.0.0.1:4566`), by address or as localhost.
fn is_this_server(url: &str, addr: &str) -> bool {
    let hostport = url
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/');
    let Ok(server) = addr.parse::<std::net::SocketAddr>() else {
        return false;
    };
    let Some((host, port)) = hostport.rsplit_once(':') else {
        return false;
    };
    if port.parse::<u16>().ok() != Some(server.port()) {
        return false;
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip == server.ip() || (ip.is_loopback() && server.ip().is_unspecified()))
}

/// The address and admin token of the server running on a data dir.
fn running_server(dir: &std::path::Path) -> anyhow::Result<(String, String)> {
    let addr = std::fs::read_to_string(dir.join("server.addr")).with_context(|| {
        format!(
            "no keycard server is running on {} (server.addr missing)",
            dir.display()
        )
    })?;
    let token = std::fs::read_to_string(dir.join("admin.token"))
        .context("reading admin.token of the running server")?;
    Ok((addr.trim().to_string(), token.trim().to_string()))
}

/// A minimal HTTP/1.1 POST to the local admin endpoint.
async fn admin_post(addr: &str, path: &str, token: &str, body: &str) -> anyhow::Result<String> {
    admin_request(addr, "POST", path, token, body).await
}

/// A minimal HTTP/1.1 request to the local admin endpoint.
async fn admin_request(
    addr: &str,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to the running keycard at {addr}"))?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).await?;
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    if !head.starts_with("HTTP/1.1 200") {
        bail!(
            "keycard answered: {}",
            head.lines().next().unwrap_or("").to_string() + " " + body
        );
    }
    Ok(body.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_retention_values() {
        assert_eq!(parse_retention("90d").unwrap(), Some(90 * 86_400));
        assert_eq!(parse_retention("all").unwrap(), None);
        for bad in ["0d", "-1d", "90", "90w", ""] {
            assert!(parse_retention(bad).is_err(), "{bad}");
        }
    }

    fn serve(args: &[&str]) -> Result<(Option<String>, Option<PathBuf>), clap::Error> {
        let argv = ["keycard", "serve"].iter().chain(args).copied();
        match Cli::try_parse_from(argv)?.command {
            Command::Serve {
                root_secret_access_key,
                root_secret_access_key_file,
                ..
            } => Ok((root_secret_access_key, root_secret_access_key_file)),
            _ => unreachable!("serve parses as Serve"),
        }
    }

    #[test]
    fn exec_recognises_this_server_by_address_or_localhost() {
        assert!(is_this_server("http://127.0.0.1:4566", "127.0.0.1:4566"));
        assert!(is_this_server("http://localhost:4566/", "127.0.0.1:4566"));
        assert!(is_this_server("http://127.0.0.1:4566", "0.0.0.0:4566"));
        assert!(!is_this_server("http://127.0.0.1:4567", "127.0.0.1:4566"));
        assert!(!is_this_server(
            "https://s3.amazonaws.com",
            "127.0.0.1:4566"
        ));
        assert!(!is_this_server("http://10.0.0.1:4566", "127.0.0.1:4566"));
        assert!(!is_this_server("garbage", "127.0.0.1:4566"));
    }

    #[test]
    fn root_secret_from_a_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("root.secret");
        std::fs::write(&path, "keycardTestRootSecretKey0123456789abcdef\n").expect("write");
        let p = path.to_str().expect("utf-8 path");
        let (given, file) = serve(&[
            "--root-access-key-id",
            "AKIAKEYCARDTESTROOT1",
            "--root-secret-access-key-file",
            p,
        ])
        .expect("parses");
        let secret = root_secret(given, file.as_deref())
            .expect("reads")
            .expect("some");
        assert_eq!(secret.expose(), "keycardTestRootSecretKey0123456789abcdef");
        assert_eq!(format!("{secret:?}"), "***");
    }

    #[test]
    fn root_secret_sources_are_exclusive_and_need_the_key_id() {
        let both = serve(&[
            "--root-access-key-id",
            "AKIA1",
            "--root-secret-access-key",
            "s",
            "--root-secret-access-key-file",
            "/nonexistent",
        ]);
        assert!(both.is_err());
        assert!(serve(&["--root-secret-access-key-file", "/x"]).is_err());
        assert!(serve(&["--root-access-key-id", "AKIA1"]).is_err());
        let (given, file) = serve(&[
            "--root-access-key-id",
            "AKIA1",
            "--root-secret-access-key",
            "s",
        ])
        .expect("ok");
        let s = root_secret(given, file.as_deref())
            .expect("ok")
            .expect("some");
        assert_eq!(s.expose(), "s");
    }

    #[test]
    fn empty_or_missing_secret_file_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("empty");
        std::fs::write(&path, " \n").expect("write");
        assert!(root_secret(None, Some(&path)).is_err());
        assert!(root_secret(None, Some(&dir.path().join("missing"))).is_err());
    }
}
