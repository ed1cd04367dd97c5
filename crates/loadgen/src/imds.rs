//! `keycard-loadgen imds`: IMDSv2 credential fetches from many instances.
//!
//! Each running keycard instance has a metadata listener of its own
//! (`http://127.77.A.B:PORT/`). The instances are read from a file and their
//! endpoints resolved through keycard's admin API. A *fetch* is what an SDK
//! does to get instance-role credentials: `PUT /latest/api/token` and then
//! `GET /latest/meta-data/iam/security-credentials/ROLE` with that token.
//! Every iteration of a worker fetches from the next instance round-robin, so
//! all instances poll.
//!
//! - `--pass cold`: every instance exactly once (its first fetch, which makes
//!   keycard issue the instance's role session), then stop.
//! - `--pass warm`: closed loop for `--duration` seconds after `--warmup`.
//!
//! Connections: `fresh` opens one TCP connection per fetch (both requests go
//! over it, then it is closed) — what an SDK in a newly started process on
//! its own machine does; `keep-alive` keeps one idle connection per instance
//! in a pool that the workers share.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use super::{CpuSnapshot, Sender, cpu_fields, loopback_target, runtime, vm_rss_kb};

const TOKEN_PATH: &str = "/latest/api/token";
const TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
const USER_AGENT: &str = "keycard-loadgen/0.1 (imds)";
/// A fetch that takes longer than this counts as an error.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Args, Debug)]
pub struct ImdsArgs {
    /// keycard's API endpoint, e.g. http://127.0.0.1:9000 (loopback only);
    /// each instance's metadata endpoint is looked up there
    /// (GET /_keycard/admin/instances/ID).
    #[arg(long)]
    endpoint: String,
    /// keycard's data dir, for DIR/admin.token.
    #[arg(long)]
    data_dir: PathBuf,
    /// Instance ids, one a line (blank lines and lines starting with # are
    /// skipped).
    #[arg(long)]
    instances_file: PathBuf,
    /// Poll the first N instances of the file (default: all of them).
    #[arg(long)]
    instances: Option<usize>,
    /// The role of the instances' profile (last part of the credentials path).
    #[arg(long)]
    role: String,
    /// `cold`: one fetch per instance, then stop; `warm`: timed closed loop.
    #[arg(long, value_enum, default_value_t = Pass::Warm)]
    pass: Pass,
    /// `fresh`: a new TCP connection per fetch; `keep-alive`: one pooled
    /// connection per instance, shared by the workers.
    #[arg(long, value_enum, default_value_t = ConnMode::Fresh)]
    connection: ConnMode,
    /// Number of workers, each doing one fetch at a time.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Measured duration of a warm pass, seconds.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Unmeasured warm-up before a warm pass's measured window, seconds.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Value of the token TTL header, seconds.
    #[arg(long, default_value_t = 21600)]
    token_ttl: u32,
    /// After the pass, write `INSTANCE_ID ACCESS_KEY_ID` lines here (the last
    /// key each instance answered with).
    #[arg(long)]
    keys_out: Option<PathBuf>,
    /// Count answers whose AccessKeyId differs from this file's (written by
    /// `--keys-out` of an earlier pass): a warm pass should only get cached
    /// sets.
    #[arg(long)]
    keys_in: Option<PathBuf>,
    /// Label for the target in the JSON output.
    #[arg(long, default_value = "keycard")]
    target: String,
    /// PID of the server: report its CPU time per fetch.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Runtime threads of the load generator (1 = current-thread runtime).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// How long to wait for every instance's listener to accept a
    /// connection before starting, seconds.
    #[arg(long, default_value_t = 30.0)]
    ready_timeout: f64,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    Cold,
    Warm,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnMode {
    Fresh,
    KeepAlive,
}

impl Pass {
    fn name(self) -> &'static str {
        match self {
            Pass::Cold => "cold",
            Pass::Warm => "warm",
        }
    }
}

impl ConnMode {
    fn name(self) -> &'static str {
        match self {
            ConnMode::Fresh => "fresh",
            ConnMode::KeepAlive => "keep-alive",
        }
    }
}

/// One instance's metadata listener.
struct Target {
    id: String,
    addr: SocketAddr,
    host: String,
}

struct Ctx {
    targets: Vec<Target>,
    creds_path: String,
    ttl: String,
    keep_alive: bool,
    /// Idle keep-alive connections, per instance.
    pool: Vec<Mutex<Vec<Sender>>>,
    /// The AccessKeyId each instance last answered with.
    seen: Vec<Mutex<Option<String>>>,
    /// The AccessKeyId each instance is expected to answer with (--keys-in).
    expected: Option<Vec<Option<String>>>,
    /// Successful measured fetches per instance.
    polls: Vec<AtomicU32>,
    /// Round-robin cursor.
    next: AtomicUsize,
}

impl Ctx {
    fn take_pooled(&self, i: usize) -> Option<Sender> {
        let mut p = self.pool[i].lock().unwrap_or_else(|e| e.into_inner());
        while let Some(s) = p.pop() {
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    fn put_pooled(&self, i: usize, s: Sender) {
        if !s.is_closed() {
            self.pool[i]
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(s);
        }
    }
}

struct Hists {
    /// Token PUT + credentials GET (+ connect when one was opened).
    fetch: Histogram<u64>,
    connect: Histogram<u64>,
    token: Histogram<u64>,
    creds: Histogram<u64>,
}

struct ImdsStats {
    h: Hists,
    ok: u64,
    errors: u64,
    connects: u64,
    /// Pooled connections that failed before an answer and were replaced.
    retries: u64,
    /// An instance answered with a different AccessKeyId than the time before.
    key_changes: u64,
    /// Answers whose AccessKeyId differs from --keys-in.
    key_mismatches: u64,
    first_error: Option<String>,
    last_done: Option<Instant>,
}

fn hist() -> Result<Histogram<u64>> {
    // 1 µs .. 60 s, 3 significant digits.
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

impl ImdsStats {
    fn new() -> Result<Self> {
        Ok(ImdsStats {
            h: Hists {
                fetch: hist()?,
                connect: hist()?,
                token: hist()?,
                creds: hist()?,
            },
            ok: 0,
            errors: 0,
            connects: 0,
            retries: 0,
            key_changes: 0,
            key_mismatches: 0,
            first_error: None,
            last_done: None,
        })
    }

    fn merge(&mut self, o: ImdsStats) -> Result<()> {
        self.h.fetch.add(&o.h.fetch)?;
        self.h.connect.add(&o.h.connect)?;
        self.h.token.add(&o.h.token)?;
        self.h.creds.add(&o.h.creds)?;
        self.ok += o.ok;
        self.errors += o.errors;
        self.connects += o.connects;
        self.retries += o.retries;
        self.key_changes += o.key_changes;
        self.key_mismatches += o.key_mismatches;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
        self.last_done = match (self.last_done, o.last_done) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        Ok(())
    }

    fn error(&mut self, measured: bool, msg: String) {
        if measured {
            self.errors += 1;
        }
        if self.first_error.is_none() {
            self.first_error = Some(msg);
        }
    }
}

/// What one successful fetch took, in µs.
struct Fetched {
    connect_us: Option<u64>,
    token_us: u64,
    creds_us: u64,
    total_us: u64,
    retried: bool,
    access_key: String,
}

fn micros(d: Duration) -> u64 {
    d.as_micros().max(1) as u64
}

pub fn run(a: ImdsArgs) -> Result<()> {
    if a.concurrency == 0 || a.concurrency > 4096 {
        bail!("--concurrency must be in 1..=4096");
    }
    let duration_ok = a.duration > 0.0 && a.duration <= 600.0;
    if !duration_ok || !(0.0..=600.0).contains(&a.warmup) {
        bail!("--duration must be in (0, 600] and --warmup in [0, 600] seconds");
    }
    if !(0.0..=600.0).contains(&a.ready_timeout) {
        bail!("--ready-timeout must be in [0, 600] seconds");
    }
    if a.role.is_empty() || !a.role.bytes().all(|b| b.is_ascii_graphic() && b != b'/') {
        bail!("--role must be a plain role name");
    }
    let (api_addr, api_host) = loopback_target(&a.endpoint)?;
    let admin_token = std::fs::read_to_string(a.data_dir.join("admin.token"))
        .with_context(|| format!("reading {}/admin.token", a.data_dir.display()))?
        .trim()
        .to_string();
    let mut ids = read_ids(&a.instances_file)?;
    if let Some(n) = a.instances {
        if n == 0 || n > ids.len() {
            bail!(
                "--instances {n}: {} lists {} instances",
                a.instances_file.display(),
                ids.len()
            );
        }
        ids.truncate(n);
    }
    let expected = match &a.keys_in {
        Some(p) => Some(read_keys(p, &ids)?),
        None => None,
    };
    let rt = runtime(a.threads)?;
    let keep_alive = a.connection == ConnMode::KeepAlive;
    let (ctx, resolve_ms, ready_ms) = rt.block_on(async {
        let t0 = Instant::now();
        let targets = resolve(api_addr, &api_host, &admin_token, &ids).await?;
        let resolve_ms = t0.elapsed().as_millis() as u64;
        let n = targets.len();
        let ctx = Ctx {
            targets,
            creds_path: format!("/latest/meta-data/iam/security-credentials/{}", a.role),
            ttl: a.token_ttl.to_string(),
            keep_alive,
            pool: (0..n).map(|_| Mutex::new(Vec::new())).collect(),
            seen: (0..n).map(|_| Mutex::new(None)).collect(),
            expected,
            polls: (0..n).map(|_| AtomicU32::new(0)).collect(),
            next: AtomicUsize::new(0),
        };
        let t1 = Instant::now();
        wait_ready(&ctx, Duration::from_secs_f64(a.ready_timeout)).await?;
        anyhow::Ok((Arc::new(ctx), resolve_ms, t1.elapsed().as_millis() as u64))
    })?;
    let n = ctx.targets.len();
    let concurrency = a.concurrency;
    let server_pid = a.server_pid;
    let pass = a.pass;
    let (warmup, duration) = match pass {
        Pass::Cold => (Duration::ZERO, Duration::ZERO),
        Pass::Warm => (
            Duration::from_secs_f64(a.warmup),
            Duration::from_secs_f64(a.duration),
        ),
    };
    let run_ctx = ctx.clone();
    let (total, measure_from, cpu_start, cpu_end) = rt.block_on(async move {
        let ctx = run_ctx;
        let t0 = Instant::now();
        let measure_from = t0 + warmup;
        let end = measure_from + duration;
        let cpu_start = if warmup.is_zero() {
            None
        } else {
            Some(tokio::spawn(async move {
                tokio::time::sleep_until(measure_from.into()).await;
                CpuSnapshot::take(server_pid)
            }))
        };
        let cpu_start_now = CpuSnapshot::take(server_pid);
        let mut handles = Vec::with_capacity(concurrency);
        for _ in 0..concurrency {
            let ctx = ctx.clone();
            handles.push(match pass {
                Pass::Cold => tokio::spawn(cold_worker(ctx)),
                Pass::Warm => tokio::spawn(warm_worker(ctx, measure_from, end)),
            });
        }
        let mut total = ImdsStats::new()?;
        for h in handles {
            let s = h.await.context("worker panicked")??;
            total.merge(s)?;
        }
        let cpu_end = CpuSnapshot::take(server_pid);
        let cpu_start = match cpu_start {
            Some(h) => h.await.context("cpu snapshot")?,
            None => cpu_start_now,
        };
        anyhow::Ok((total, measure_from, cpu_start, cpu_end))
    })?;
    let elapsed = total
        .last_done
        .map(|t| t.saturating_duration_since(measure_from))
        .unwrap_or(duration)
        .max(Duration::from_millis(1))
        .as_secs_f64();
    if let Some(e) = &total.first_error {
        eprintln!("keycard-loadgen: first error: {e}");
    }

    // What the instances answered with.
    let keys: Vec<Option<String>> = ctx
        .seen
        .iter()
        .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()).clone())
        .collect();
    let distinct: HashSet<&str> = keys.iter().flatten().map(String::as_str).collect();
    let polls: Vec<u32> = ctx
        .polls
        .iter()
        .map(|p| p.load(Ordering::Relaxed))
        .collect();
    if let Some(path) = &a.keys_out {
        let mut s = String::new();
        for (t, k) in ctx.targets.iter().zip(&keys) {
            if let Some(k) = k {
                s.push_str(&format!("{} {k}\n", t.id));
            }
        }
        std::fs::write(path, s).with_context(|| format!("writing {}", path.display()))?;
    }

    let q = |h: &Histogram<u64>, q: f64| {
        if h.is_empty() {
            0
        } else {
            h.value_at_quantile(q)
        }
    };
    let h = &total.h;
    let fetches = total.ok + total.errors;
    let mut out = json!({
        "mode": "imds",
        "workload": "imds-credentials",
        "pass": pass.name(),
        "connection": a.connection.name(),
        "target": a.target,
        "instances": n,
        "concurrency": concurrency,
        "fetches": fetches,
        "errors": total.errors,
        "fetches_per_s": ((total.ok as f64 / elapsed) * 10.0).round() / 10.0,
        "p50_us": q(&h.fetch, 0.50),
        "p90_us": q(&h.fetch, 0.90),
        "p99_us": q(&h.fetch, 0.99),
        "max_us": if h.fetch.is_empty() { 0 } else { h.fetch.max() },
        "token_p50_us": q(&h.token, 0.50),
        "token_p90_us": q(&h.token, 0.90),
        "token_p99_us": q(&h.token, 0.99),
        "token_max_us": if h.token.is_empty() { 0 } else { h.token.max() },
        "creds_p50_us": q(&h.creds, 0.50),
        "creds_p90_us": q(&h.creds, 0.90),
        "creds_p99_us": q(&h.creds, 0.99),
        "creds_max_us": if h.creds.is_empty() { 0 } else { h.creds.max() },
        "connect_p50_us": q(&h.connect, 0.50),
        "connect_p99_us": q(&h.connect, 0.99),
        "connects": total.connects,
        "pooled_retries": total.retries,
        "instances_polled": polls.iter().filter(|p| **p > 0).count(),
        "polls_per_instance_min": polls.iter().copied().min().unwrap_or(0),
        "polls_per_instance_max": polls.iter().copied().max().unwrap_or(0),
        "distinct_access_keys": distinct.len(),
        "key_changes": total.key_changes,
        "duration_s": (elapsed * 1000.0).round() / 1000.0,
        "resolve_ms": resolve_ms,
        "ready_ms": ready_ms,
    });
    if ctx.expected.is_some() {
        out["key_mismatches"] = json!(total.key_mismatches);
    }
    cpu_fields(&mut out, cpu_start, cpu_end, fetches, "fetch");
    if let Some(pid) = server_pid
        && let Ok(kb) = vm_rss_kb(pid)
    {
        out["server_rss_kb"] = json!(kb);
    }
    println!("{out}");
    Ok(())
}

fn read_ids(path: &PathBuf) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let ids: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    if ids.is_empty() {
        bail!("{} lists no instances", path.display());
    }
    let mut unique = HashSet::new();
    for id in &ids {
        let valid = id.starts_with("i-") && id[2..].bytes().all(|b| b.is_ascii_alphanumeric());
        if !valid {
            bail!("{}: not an instance id: {id:?}", path.display());
        }
        if !unique.insert(id.as_str()) {
            bail!("{}: {id} is listed twice", path.display());
        }
    }
    Ok(ids)
}

/// `INSTANCE_ID ACCESS_KEY_ID` lines, in the order of `ids`.
fn read_keys(path: &PathBuf, ids: &[String]) -> Result<Vec<Option<String>>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let map: std::collections::HashMap<&str, &str> = text
        .lines()
        .filter_map(|l| l.trim().split_once(' '))
        .collect();
    Ok(ids
        .iter()
        .map(|id| map.get(id.as_str()).map(|k| k.trim().to_string()))
        .collect())
}

async fn connect(addr: SocketAddr) -> Result<Sender> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Send one request and read the whole answer.
async fn roundtrip(
    s: &mut Sender,
    req: http::Request<Full<Bytes>>,
) -> std::result::Result<(http::StatusCode, Bytes), String> {
    s.ready()
        .await
        .map_err(|e| format!("connection closed: {e}"))?;
    let resp = s
        .send_request(req)
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading body: {e}"))?
        .to_bytes();
    Ok((status, body))
}

fn snippet(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(500)]).into_owned()
}

/// The instance endpoints, through GET /_keycard/admin/instances/ID on one
/// keep-alive connection.
async fn resolve(api: SocketAddr, host: &str, token: &str, ids: &[String]) -> Result<Vec<Target>> {
    let mut s = connect(api).await?;
    let auth = format!("Bearer {token}");
    let mut out = Vec::with_capacity(ids.len());
    let mut addrs = HashSet::new();
    for id in ids {
        let req = http::Request::builder()
            .method(http::Method::GET)
            .uri(format!("/_keycard/admin/instances/{id}"))
            .header(http::header::HOST, host)
            .header(http::header::USER_AGENT, USER_AGENT)
            .header(http::header::AUTHORIZATION, auth.as_str())
            .body(Full::new(Bytes::new()))?;
        if s.is_closed() {
            s = connect(api).await?;
        }
        let (status, body) = roundtrip(&mut s, req)
            .await
            .map_err(|e| anyhow::anyhow!("admin API: {e}"))?;
        if status != http::StatusCode::OK {
            bail!(
                "GET /_keycard/admin/instances/{id}: HTTP {status}: {}",
                snippet(&body)
            );
        }
        let v: Value = serde_json::from_slice(&body)
            .with_context(|| format!("admin answer for {id} is not JSON"))?;
        let state = v.get("state").and_then(Value::as_str).unwrap_or("");
        if state != "running" {
            bail!("instance {id} is {state:?}, not running");
        }
        let ep = v
            .get("imdsEndpoint")
            .and_then(Value::as_str)
            .with_context(|| format!("no imdsEndpoint for {id}: {}", snippet(&body)))?;
        let (addr, host) = loopback_target(ep).with_context(|| format!("instance {id}"))?;
        if !addrs.insert(addr) {
            bail!("instance {id} shares its metadata endpoint {addr} with another instance");
        }
        out.push(Target {
            id: id.clone(),
            addr,
            host,
        });
    }
    Ok(out)
}

/// Wait until every listener accepts a connection. No HTTP request is sent
/// in fresh mode, so nothing is issued and a cold pass stays cold; in
/// keep-alive mode the connections go into the pool.
async fn wait_ready(ctx: &Ctx, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    for (i, t) in ctx.targets.iter().enumerate() {
        loop {
            let r = if ctx.keep_alive {
                connect(t.addr).await.map(|s| ctx.put_pooled(i, s))
            } else {
                tokio::net::TcpStream::connect(t.addr)
                    .await
                    .map(drop)
                    .map_err(anyhow::Error::from)
            };
            match r {
                Ok(()) => break,
                Err(e) if Instant::now() >= deadline => {
                    bail!(
                        "metadata listener of {} at {} not ready: {e:#}",
                        t.id,
                        t.addr
                    )
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
    Ok(())
}

/// One credential fetch from instance `i`: token PUT, then credentials GET
/// with that token, over one connection.
async fn fetch(ctx: &Ctx, i: usize) -> std::result::Result<Fetched, String> {
    let t = &ctx.targets[i];
    let t0 = Instant::now();
    let mut connect_us = None;
    let mut retried = false;
    let put = || {
        http::Request::builder()
            .method(http::Method::PUT)
            .uri(TOKEN_PATH)
            .header(http::header::HOST, t.host.as_str())
            .header(http::header::USER_AGENT, USER_AGENT)
            .header(TTL_HEADER, ctx.ttl.as_str())
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())
    };
    let (mut sender, t1, (status, body)) = match ctx.take_pooled(i) {
        Some(mut s) => {
            let t1 = Instant::now();
            match roundtrip(&mut s, put()?).await {
                Ok(r) => (s, t1, r),
                // A pooled connection the server closed meanwhile: what a
                // client's pool does too, retry once on a new connection.
                Err(_) => {
                    retried = true;
                    let c0 = Instant::now();
                    let mut s = connect(t.addr).await.map_err(|e| format!("{e:#}"))?;
                    connect_us = Some(micros(c0.elapsed()));
                    let t1 = Instant::now();
                    let r = roundtrip(&mut s, put()?).await?;
                    (s, t1, r)
                }
            }
        }
        None => {
            let mut s = connect(t.addr).await.map_err(|e| format!("{e:#}"))?;
            connect_us = Some(micros(t0.elapsed()));
            let t1 = Instant::now();
            let r = roundtrip(&mut s, put()?).await?;
            (s, t1, r)
        }
    };
    let t2 = Instant::now();
    if status != http::StatusCode::OK {
        return Err(format!(
            "PUT {TOKEN_PATH} on {} ({}): HTTP {status}: {}",
            t.addr,
            t.id,
            snippet(&body)
        ));
    }
    let token = std::str::from_utf8(&body)
        .map_err(|_| format!("token from {} is not UTF-8", t.id))?
        .trim();
    let get = http::Request::builder()
        .method(http::Method::GET)
        .uri(ctx.creds_path.as_str())
        .header(http::header::HOST, t.host.as_str())
        .header(http::header::USER_AGENT, USER_AGENT)
        .header(TOKEN_HEADER, token)
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let (status, body) = roundtrip(&mut sender, get).await?;
    let t3 = Instant::now();
    if ctx.keep_alive {
        ctx.put_pooled(i, sender);
    } else {
        drop(sender);
    }
    if status != http::StatusCode::OK {
        return Err(format!(
            "GET {} on {} ({}): HTTP {status}: {}",
            ctx.creds_path,
            t.addr,
            t.id,
            snippet(&body)
        ));
    }
    let access_key = credentials_key(&body).map_err(|e| format!("{} ({}): {e}", t.addr, t.id))?;
    Ok(Fetched {
        connect_us,
        token_us: micros(t2 - t1),
        creds_us: micros(t3 - t2),
        total_us: micros(t3 - t0),
        retried,
        access_key,
    })
}

/// The AccessKeyId of a successful credentials document.
fn credentials_key(body: &[u8]) -> std::result::Result<String, String> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| format!("credentials are not JSON: {}", snippet(body)))?;
    let code = v.get("Code").and_then(Value::as_str).unwrap_or("");
    if code != "Success" {
        return Err(format!("credentials Code {code:?}: {}", snippet(body)));
    }
    for k in ["SecretAccessKey", "Token", "Expiration"] {
        if v.get(k).and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(format!("credentials without {k}"));
        }
    }
    v.get("AccessKeyId")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .ok_or_else(|| "credentials without AccessKeyId".into())
}

/// Record a successful fetch of instance `i`.
fn record(ctx: &Ctx, stats: &mut ImdsStats, i: usize, f: Fetched, done: Instant) {
    stats.ok += 1;
    stats.h.fetch.saturating_record(f.total_us);
    stats.h.token.saturating_record(f.token_us);
    stats.h.creds.saturating_record(f.creds_us);
    if let Some(c) = f.connect_us {
        stats.h.connect.saturating_record(c);
    }
    stats.last_done = Some(done);
    ctx.polls[i].fetch_add(1, Ordering::Relaxed);
    note_key(ctx, stats, i, f.access_key);
}

/// Keep track of which credentials an instance answered with.
fn note_key(ctx: &Ctx, stats: &mut ImdsStats, i: usize, key: String) {
    if let Some(exp) = &ctx.expected
        && exp[i].as_deref() != Some(key.as_str())
    {
        stats.key_mismatches += 1;
    }
    let mut seen = ctx.seen[i].lock().unwrap_or_else(|e| e.into_inner());
    if seen.as_ref().is_some_and(|k| *k != key) {
        stats.key_changes += 1;
    }
    *seen = Some(key);
}

async fn timed_fetch(ctx: &Ctx, i: usize) -> std::result::Result<Fetched, String> {
    match tokio::time::timeout(FETCH_TIMEOUT, fetch(ctx, i)).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "fetch from {} ({}) took over {} s",
            ctx.targets[i].addr,
            ctx.targets[i].id,
            FETCH_TIMEOUT.as_secs()
        )),
    }
}

async fn warm_worker(ctx: Arc<Ctx>, measure_from: Instant, end: Instant) -> Result<ImdsStats> {
    let mut stats = ImdsStats::new()?;
    let n = ctx.targets.len();
    loop {
        let start = Instant::now();
        if start >= end {
            break;
        }
        let measured = start >= measure_from;
        let i = ctx.next.fetch_add(1, Ordering::Relaxed) % n;
        let r = timed_fetch(&ctx, i).await;
        let done = Instant::now();
        match r {
            Ok(f) => {
                if !measured {
                    note_key(&ctx, &mut stats, i, f.access_key);
                    continue;
                }
                stats.connects += u64::from(f.connect_us.is_some());
                stats.retries += u64::from(f.retried);
                record(&ctx, &mut stats, i, f, done);
            }
            Err(e) => {
                stats.error(measured, e);
                if measured {
                    stats.last_done = Some(done);
                }
            }
        }
    }
    Ok(stats)
}

/// Every instance once: take the next instance not fetched yet until none
/// is left.
async fn cold_worker(ctx: Arc<Ctx>) -> Result<ImdsStats> {
    let mut stats = ImdsStats::new()?;
    loop {
        let i = ctx.next.fetch_add(1, Ordering::Relaxed);
        if i >= ctx.targets.len() {
            break;
        }
        let r = timed_fetch(&ctx, i).await;
        let done = Instant::now();
        match r {
            Ok(f) => {
                stats.connects += u64::from(f.connect_us.is_some());
                stats.retries += u64::from(f.retried);
                record(&ctx, &mut stats, i, f, done);
            }
            Err(e) => {
                stats.error(true, e);
                stats.last_done = Some(done);
            }
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_documents() {
        let ok = br#"{
  "Code" : "Success",
  "LastUpdated" : "2026-01-01T00:00:00Z",
  "Type" : "AWS-HMAC",
  "AccessKeyId" : "ASIAEXAMPLE",
  "SecretAccessKey" : "s",
  "Token" : "t",
  "Expiration" : "2026-01-01T06:00:00Z"
}"#;
        assert_eq!(credentials_key(ok).unwrap(), "ASIAEXAMPLE");
        let denied = br#"{"Code":"AssumeRoleUnauthorizedAccess","Message":"no"}"#;
        assert!(credentials_key(denied).is_err());
        assert!(credentials_key(b"<html>").is_err());
        let partial = br#"{"Code":"Success","AccessKeyId":"A","SecretAccessKey":"s"}"#;
        assert!(credentials_key(partial).is_err());
    }

    #[test]
    fn instance_files() {
        let dir = std::env::temp_dir().join(format!("loadgen-imds-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("ids");
        std::fs::write(&f, "# ids\ni-0123456789abcdef0\n\ni-00000000000000001\n").unwrap();
        let ids = read_ids(&f).unwrap();
        assert_eq!(ids, ["i-0123456789abcdef0", "i-00000000000000001"]);
        std::fs::write(&f, "i-1\ni-1\n").unwrap();
        assert!(read_ids(&f).is_err());
        std::fs::write(&f, "i-1\nnot-an-id\n").unwrap();
        assert!(read_ids(&f).is_err());
        let k = dir.join("keys");
        std::fs::write(&k, "i-00000000000000001 ASIAB\ni-0123456789abcdef0 ASIAA\n").unwrap();
        assert_eq!(
            read_keys(&k, &ids).unwrap(),
            [Some("ASIAA".to_string()), Some("ASIAB".to_string())]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
