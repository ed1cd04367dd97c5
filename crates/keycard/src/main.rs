//! `keycard`: the binary. It only wires the crates together.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use keycard_policy::PolicyKind;
use keycard_services::{Config, Keycard};
use keycard_store::{AuditQuery, SqliteStore, Store};

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
enum Command {
    /// Run the server: IAM, STS, S3 and CloudTrail on one port.
    Serve {
        #[command(flatten)]
        data: DataDir,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:4566", env = "KEYCARD_LISTEN")]
        listen: String,
        /// Region reported to clients.
        #[arg(long, default_value = "us-east-1", env = "KEYCARD_REGION")]
        region: String,
        /// Root access key id of the default account.
        #[arg(
            long,
            env = "KEYCARD_ROOT_ACCESS_KEY_ID",
            requires = "root_secret_access_key"
        )]
        root_access_key_id: Option<String>,
        /// Root secret access key of the default account.
        #[arg(
            long,
            env = "KEYCARD_ROOT_SECRET_ACCESS_KEY",
            hide_env_values = true,
            requires = "root_access_key_id"
        )]
        root_secret_access_key: Option<String>,
        /// `moto`: also answer moto_server's reset endpoints, auth off until reset-auth.
        #[arg(long)]
        compat: Option<String>,
        /// Lifetime of instance-role credentials, seconds.
        #[arg(long, default_value_t = 21600)]
        instance_credential_lifetime: i64,
    },
    /// Evaluate and validate IAM policies offline.
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

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Policy { command } => policy(command),
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

fn policy(cmd: PolicyCommand) -> anyhow::Result<()> {
    match cmd {
        PolicyCommand::Evaluate { input } => {
            let text = read_input(&input)?;
            match keycard_policy::cli::evaluate_json(&text) {
                Ok(out) => {
                    println!("{out}");
                    Ok(())
                }
                Err(e) => bail!("{e}"),
            }
        }
        PolicyCommand::Validate { file, kind } => {
            let kind: PolicyKind = kind.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
            let text = read_input(&file)?;
            match keycard_policy::validate_json(&text, kind) {
                Ok(()) => {
                    println!("{{\"valid\": true}}");
                    Ok(())
                }
                Err(e) => bail!("{}: {}", e.code.as_str(), e.message),
            }
        }
    }
}

async fn open_store(dir: &std::path::Path) -> anyhow::Result<Arc<dyn Store>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let store = SqliteStore::open(&dir.join("keycard.db"))
        .await
        .with_context(|| format!("opening database in {}", dir.display()))?;
    Ok(Arc::new(store))
}

async fn run(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Serve {
            data,
            listen,
            region,
            root_access_key_id,
            root_secret_access_key,
            compat,
            instance_credential_lifetime,
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
            config.root_secret_access_key = root_secret_access_key;
            config.instance_credential_lifetime = instance_credential_lifetime;
            match compat.as_deref() {
                None => {}
                Some("moto") => config.compat_moto = true,
                Some(other) => bail!("unknown --compat mode {other} (known: moto)"),
            }
            let store = open_store(&dir).await?;
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
            let shutdown = async {
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
            };
            keycard_server::serve(kc.clone(), listener, shutdown).await?;
            kc.audit.flush().await;
            let _ = std::fs::remove_file(dir.join("server.addr"));
            Ok(())
        }
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
                println!("{out}");
                return Ok(());
            }
            let store = open_store(&dir).await?;
            let kc = Keycard::open(Config::new(&dir), store)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let (id, key, secret) = kc
                .create_account(account_id.as_deref())
                .await
                .map_err(|e| anyhow::anyhow!("{}: {}", e.code(), e.message()))?;
            println!(
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
            let store = open_store(&data.path()).await?;
            let mut recent = store
                .query_audit(&AuditQuery {
                    limit: last.max(1),
                    ..Default::default()
                })
                .await?;
            recent.reverse();
            let mut after = recent.last().map(|r| r.seq).unwrap_or(0);
            for r in recent.iter().skip(if last == 0 { recent.len() } else { 0 }) {
                println!("{}", r.body);
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
                    println!("{}", r.body);
                    after = r.seq;
                }
                if rows.is_empty() {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
        Command::Policy { .. } => unreachable!("handled without a runtime"),
    }
}

/// A minimal HTTP/1.1 POST to the local admin endpoint.
async fn admin_post(addr: &str, path: &str, token: &str, body: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to the running keycard at {addr}"))?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
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
