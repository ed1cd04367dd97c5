//! keycard-loadgen: a closed-loop load generator for keycard (and for any
//! AWS-compatible endpoint on loopback, such as moto_server).
//!
//! Every worker owns one keep-alive HTTP/1.1 connection and sends one request
//! at a time on it, signed with SigV4 by AWS's own `aws-sigv4` crate. A
//! fixed request is signed once per second per worker and sent unchanged for
//! the rest of that second (its SigV4 signature could not differ: same
//! request, same `x-amz-date`), the way wrk replays one request; the server
//! still verifies every request in full. `--sign-each` signs every request
//! instead, as an SDK does (the generator then spent ~40 µs of CPU per
//! GetObject here, against ~30: CPU the server doesn't get). Latency is measured per
//! request from just before building it to the last byte of the response
//! body, into an HDR histogram. The result is one JSON line on stdout.
//!
//! A second mode, `startup`, spawns `keycard serve` on a fresh data dir and
//! measures the time to the first answered request and the idle RSS.
//!
//! A third, `imds`, fetches instance-role credentials (IMDSv2 token PUT +
//! credentials GET) from many instances' metadata listeners round-robin; see
//! `imds.rs`.

mod imds;

use std::net::{IpAddr, SocketAddr, TcpStream as StdTcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use clap::{Args, Parser, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::json;

#[derive(Parser, Debug)]
#[command(
    name = "keycard-loadgen",
    version,
    about = "Closed-loop SigV4 load generator for keycard and other AWS-compatible endpoints on loopback",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Spawn `keycard serve` on a fresh data dir, time the first answered
    /// request (GET /_keycard/health) and read the idle RSS.
    Startup(StartupArgs),
    /// IMDSv2 credential fetches (token PUT + credentials GET) from many
    /// instances' own metadata listeners, round-robin; a cold pass (each
    /// instance's first fetch) or a timed warm loop.
    Imds(imds::ImdsArgs),
}

#[derive(Args, Debug)]
struct LoadArgs {
    /// Target, e.g. http://127.0.0.1:9000 (loopback only).
    #[arg(long, required = true)]
    endpoint: Option<String>,
    /// Access key id to sign with.
    #[arg(
        long,
        env = "LOADGEN_ACCESS_KEY",
        required = true,
        hide_env_values = true
    )]
    access_key: Option<String>,
    /// Secret access key to sign with.
    #[arg(
        long,
        env = "LOADGEN_SECRET_KEY",
        required = true,
        hide_env_values = true
    )]
    secret_key: Option<String>,
    /// Session token (temporary credentials).
    #[arg(long, env = "LOADGEN_SESSION_TOKEN", hide_env_values = true)]
    session_token: Option<String>,
    /// What to send.
    #[arg(long, value_enum, required = true)]
    workload: Option<Workload>,
    /// Bucket for get-object.
    #[arg(long, default_value = "bench-bucket")]
    bucket: String,
    /// Object key for get-object.
    #[arg(long, default_value = "k")]
    key: String,
    /// Role name for get-role.
    #[arg(long, default_value = "bench-role")]
    role_name: String,
    /// Signing region.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// Number of workers, each with its own keep-alive connection.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Measured duration, seconds.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Total requests per second, spread evenly over the workers (0: each
    /// worker sends its next request as soon as the last is answered). A
    /// fixed rate compares servers' CPU per request at the same load.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Unmeasured warm-up before the measured window, seconds.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Label for the target in the JSON output (e.g. keycard, moto).
    #[arg(long, default_value = "keycard")]
    target: String,
    /// PID of the server under load: report its CPU time per request and how
    /// much CPU everything else on the machine used meanwhile.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Runtime threads of the load generator (1 = current-thread runtime,
    /// the right choice when the generator is pinned to one CPU).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Sign every request afresh instead of once per second per worker.
    #[arg(long)]
    sign_each: bool,
}

#[derive(Args, Debug)]
struct StartupArgs {
    /// The keycard binary.
    #[arg(long)]
    keycard_bin: PathBuf,
    /// How many fresh start-ups to measure.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// How long to leave the server idle after its first answer before
    /// reading VmRSS, milliseconds.
    #[arg(long, default_value_t = 1000)]
    idle_ms: u64,
    /// Prefix the server command with `taskset -c CPUS` (e.g. 0).
    #[arg(long)]
    server_cpus: Option<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    /// S3 GetObject (path-style GET /bucket/key).
    GetObject,
    /// sts:GetCallerIdentity (query API, POST form).
    GetCallerIdentity,
    /// iam:GetRole (query API, POST form).
    GetRole,
    /// iam:CreateUser with a new name every request (a write: the
    /// store's commit path, and on a shared store the cross-node lock).
    CreateUser,
    /// Calibration: a signed GET /_keycard/health, which keycard answers
    /// without authenticating, authorizing or auditing. Shows the ceiling of
    /// the load generator and the HTTP stack on this machine.
    Health,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::GetObject => "get-object",
            Workload::GetCallerIdentity => "get-caller-identity",
            Workload::GetRole => "get-role",
            Workload::CreateUser => "create-user",
            Workload::Health => "health",
        }
    }
}

/// One request shape, fixed for the run; only the signature changes.
struct Template {
    method: http::Method,
    path_and_query: String,
    body: Bytes,
    /// When set, each request's body is this prefix, a number never used
    /// before in this run, and `&Version=2010-05-08` (unique names).
    numbered: Option<String>,
    content_type: Option<&'static str>,
    service: &'static str,
}

struct Ctx {
    addr: SocketAddr,
    host: String,
    region: String,
    identity: Identity,
    template: Template,
    /// Sign every request (`--sign-each`), not once per second.
    sign_each: bool,
}

/// A worker's signed headers, reused until the clock's second changes.
struct Signed {
    second: u64,
    headers: http::HeaderMap,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Some(Cmd::Startup(a)) => startup(a),
        Some(Cmd::Imds(a)) => imds::run(a),
        None => load(cli.load),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keycard-loadgen: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------- load mode

fn load(a: LoadArgs) -> Result<()> {
    let endpoint = a.endpoint.context("--endpoint is required")?;
    let workload = a.workload.context("--workload is required")?;
    let (addr, host) = loopback_target(&endpoint)?;
    if !(0.0..=1_000_000.0).contains(&a.rate) {
        bail!("--rate must be in [0, 1000000] requests per second");
    }
    if a.concurrency == 0 || a.concurrency > 4096 {
        bail!("--concurrency must be in 1..=4096");
    }
    let duration_ok = a.duration > 0.0 && a.duration <= 600.0;
    if !duration_ok || !(0.0..=600.0).contains(&a.warmup) {
        bail!("--duration must be in (0, 600] and --warmup in [0, 600] seconds");
    }
    let creds = Credentials::new(
        a.access_key.context("--access-key is required")?,
        a.secret_key.context("--secret-key is required")?,
        a.session_token,
        None,
        "keycard-loadgen",
    );
    let template = match workload {
        Workload::GetObject => Template {
            method: http::Method::GET,
            path_and_query: format!(
                "/{}/{}",
                uri_encode(&a.bucket, false),
                uri_encode(&a.key, true)
            ),
            body: Bytes::new(),
            numbered: None,
            content_type: None,
            service: "s3",
        },
        Workload::GetCallerIdentity => Template {
            method: http::Method::POST,
            path_and_query: "/".into(),
            body: Bytes::from_static(b"Action=GetCallerIdentity&Version=2011-06-15"),
            numbered: None,
            content_type: Some("application/x-www-form-urlencoded; charset=utf-8"),
            service: "sts",
        },
        Workload::GetRole => Template {
            method: http::Method::POST,
            path_and_query: "/".into(),
            body: Bytes::from(format!(
                "Action=GetRole&RoleName={}&Version=2010-05-08",
                uri_encode(&a.role_name, false)
            )),
            numbered: None,
            content_type: Some("application/x-www-form-urlencoded; charset=utf-8"),
            service: "iam",
        },
        Workload::CreateUser => Template {
            method: http::Method::POST,
            path_and_query: "/".into(),
            body: Bytes::new(),
            numbered: Some(format!(
                "Action=CreateUser&UserName=lg-{}-{}-",
                std::process::id(),
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            )),
            content_type: Some("application/x-www-form-urlencoded; charset=utf-8"),
            service: "iam",
        },
        Workload::Health => Template {
            method: http::Method::GET,
            path_and_query: "/_keycard/health".into(),
            body: Bytes::new(),
            numbered: None,
            content_type: None,
            service: "sts",
        },
    };
    let ctx = Arc::new(Ctx {
        addr,
        host,
        region: a.region,
        identity: creds.into(),
        template,
        sign_each: a.sign_each,
    });
    let rt = runtime(a.threads)?;
    let concurrency = a.concurrency;
    let warmup = Duration::from_secs_f64(a.warmup);
    let duration = Duration::from_secs_f64(a.duration);
    let server_pid = a.server_pid;
    // Each worker's gap between sends at the asked rate (None: closed loop).
    let gap = (a.rate > 0.0).then(|| Duration::from_secs_f64(concurrency as f64 / a.rate));
    let totals = rt.block_on(async move {
        let t0 = Instant::now();
        let measure_from = t0 + warmup;
        let end = measure_from + duration;
        let mut handles = Vec::with_capacity(concurrency);
        for i in 0..concurrency {
            let ctx = ctx.clone();
            // Workers start spread over one gap, so a fixed rate is even.
            let first = gap.map(|g| t0 + g.mul_f64(i as f64 / concurrency as f64));
            let pace = Pace { gap, next: first };
            handles.push(tokio::spawn(worker(ctx, measure_from, end, pace)));
        }
        let cpu_start = tokio::spawn(async move {
            tokio::time::sleep_until(measure_from.into()).await;
            CpuSnapshot::take(server_pid)
        });
        let mut total = Stats::new()?;
        for h in handles {
            let s = h.await.context("worker panicked")??;
            total.merge(s)?;
        }
        let cpu_end = CpuSnapshot::take(server_pid);
        let cpu_start = cpu_start.await.context("cpu snapshot")?;
        anyhow::Ok((total, measure_from, cpu_start, cpu_end))
    })?;
    let (total, measure_from, cpu_start, cpu_end) = totals;
    let elapsed = total
        .last_done
        .map(|t| t.saturating_duration_since(measure_from))
        .unwrap_or(duration)
        .max(Duration::from_millis(1))
        .as_secs_f64();
    if let Some(e) = &total.first_error {
        eprintln!("keycard-loadgen: first error: {e}");
    }
    let h = &total.hist;
    let mut out = json!({
        "workload": workload.name(),
        "target": a.target,
        "concurrency": concurrency,
        "requests": total.ok + total.errors,
        "errors": total.errors,
        "rps": ((total.ok as f64 / elapsed) * 10.0).round() / 10.0,
        "p50_us": if h.is_empty() { 0 } else { h.value_at_quantile(0.50) },
        "p99_us": if h.is_empty() { 0 } else { h.value_at_quantile(0.99) },
        "max_us": if h.is_empty() { 0 } else { h.max() },
        "duration_s": (elapsed * 1000.0).round() / 1000.0,
    });
    cpu_fields(&mut out, cpu_start, cpu_end, total.ok + total.errors, "req");
    println!("{out}");
    Ok(())
}

/// The load generator's runtime: current-thread for 1 thread.
fn runtime(threads: usize) -> Result<tokio::runtime::Runtime> {
    Ok(if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    })
}

/// Add the CPU used between two snapshots, per `unit` (req, fetch), to `out`:
/// the generator's and the server's, and the share of the machine anything
/// else used.
fn cpu_fields(
    out: &mut serde_json::Value,
    start: Option<CpuSnapshot>,
    end: Option<CpuSnapshot>,
    count: u64,
    unit: &str,
) {
    let (Some(s), Some(e)) = (start, end) else {
        return;
    };
    let n = count.max(1) as f64;
    let tick_us = 1e6 / CLK_TCK;
    let wall_ticks = (e.total - s.total).max(1) as f64;
    let busy = e.busy.saturating_sub(s.busy) as f64;
    let own = e.own.saturating_sub(s.own) as f64;
    let server = match (s.server, e.server) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64),
        _ => None,
    };
    out[format!("loadgen_cpu_us_per_{unit}")] = json!((own * tick_us / n).round());
    if let Some(srv) = server {
        out[format!("server_cpu_us_per_{unit}")] = json!((srv * tick_us / n).round());
        // Share of all CPUs used by anything other than server and
        // generator during the measured window: interference.
        let other = (busy - srv - own).max(0.0) / (wall_ticks * e.ncpu as f64) * 100.0;
        out["other_cpu_pct"] = json!((other * 10.0).round() / 10.0);
        out["server_cpu_pct_of_one"] = json!((srv / wall_ticks * 100.0).round());
    }
}

/// USER_HZ: Linux reports process and system CPU times in 1/100 s.
const CLK_TCK: f64 = 100.0;

/// CPU counters at one instant, in clock ticks.
#[derive(Clone, Copy, Debug)]
struct CpuSnapshot {
    /// All CPUs, all states (from /proc/stat).
    total: u64,
    /// All CPUs, non-idle states.
    busy: u64,
    /// This process (utime + stime).
    own: u64,
    /// The server process, if asked for.
    server: Option<u64>,
    ncpu: usize,
}

impl CpuSnapshot {
    fn take(server_pid: Option<u32>) -> Option<CpuSnapshot> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let mut lines = stat.lines();
        let cpu: Vec<u64> = lines
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        let ncpu = lines
            .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
            .count()
            .max(1);
        // user nice system idle iowait irq softirq steal (guest counted in user)
        let total: u64 = cpu.iter().take(8).sum();
        let idle = cpu.get(3).copied().unwrap_or(0) + cpu.get(4).copied().unwrap_or(0);
        let own = proc_ticks("self")?;
        let server = server_pid.and_then(|p| proc_ticks(&p.to_string()));
        Some(CpuSnapshot {
            total: total / ncpu as u64,
            busy: total - idle,
            own,
            server,
            ncpu,
        })
    }
}

/// utime + stime of a process, from /proc/PID/stat.
fn proc_ticks(pid: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields start after the last ')'.
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

struct Stats {
    hist: Histogram<u64>,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    last_done: Option<Instant>,
}

impl Stats {
    fn new() -> Result<Self> {
        Ok(Stats {
            // 1 µs .. 60 s, 3 significant digits.
            hist: Histogram::new_with_bounds(1, 60_000_000, 3)?,
            ok: 0,
            errors: 0,
            first_error: None,
            last_done: None,
        })
    }

    fn merge(&mut self, o: Stats) -> Result<()> {
        self.hist.add(&o.hist)?;
        self.ok += o.ok;
        self.errors += o.errors;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
        self.last_done = match (self.last_done, o.last_done) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        Ok(())
    }

    fn error(&mut self, measured: bool, msg: impl FnOnce() -> String) {
        if measured {
            self.errors += 1;
        }
        if self.first_error.is_none() {
            self.first_error = Some(msg());
        }
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(ctx: &Ctx) -> Result<Sender> {
    let stream = tokio::net::TcpStream::connect(ctx.addr)
        .await
        .with_context(|| format!("connecting to {}", ctx.addr))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// A worker's schedule at a fixed rate: when its next request is due.
struct Pace {
    gap: Option<Duration>,
    next: Option<Instant>,
}

impl Pace {
    /// Wait until the next request is due (at once in a closed loop). A
    /// worker that fell behind starts again from now rather than bursting.
    async fn wait(&mut self) {
        let (Some(gap), Some(next)) = (self.gap, self.next) else {
            return;
        };
        let now = Instant::now();
        if next > now {
            tokio::time::sleep_until(next.into()).await;
            self.next = Some(next + gap);
        } else {
            self.next = Some(now + gap);
        }
    }
}

async fn worker(
    ctx: Arc<Ctx>,
    measure_from: Instant,
    end: Instant,
    mut pace: Pace,
) -> Result<Stats> {
    let mut stats = Stats::new()?;
    let mut sender: Option<Sender> = None;
    let mut signed: Option<Signed> = None;
    loop {
        pace.wait().await;
        let start = Instant::now();
        if start >= end {
            break;
        }
        let measured = start >= measure_from;
        let s = match sender.as_mut() {
            Some(s) => s,
            None => match connect(&ctx).await {
                Ok(s) => sender.insert(s),
                Err(e) => {
                    stats.error(measured, || format!("{e:#}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let req = request(&ctx, &mut signed)?;
        if s.ready().await.is_err() {
            sender = None;
            stats.error(measured, || "connection closed by peer".into());
            continue;
        }
        let resp = match s.send_request(req).await {
            Ok(r) => r,
            Err(e) => {
                sender = None;
                stats.error(measured, || format!("request failed: {e}"));
                continue;
            }
        };
        let status = resp.status();
        let keep_alive = !resp
            .headers()
            .get(http::header::CONNECTION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let body = match resp.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                sender = None;
                stats.error(measured, || format!("reading body: {e}"));
                continue;
            }
        };
        let done = Instant::now();
        if !keep_alive {
            sender = None;
        }
        if !measured {
            continue;
        }
        if status.is_success() {
            stats.ok += 1;
            let us = done.duration_since(start).as_micros().max(1) as u64;
            stats.hist.saturating_record(us);
            stats.last_done = Some(done);
        } else {
            stats.error(true, || {
                format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(2000)])
                )
            });
            stats.last_done = Some(done);
        }
    }
    Ok(stats)
}

/// The workload's next request: signed at this second, or the worker's
/// request of this second again (`Signed`). Numbered bodies differ per
/// request, so those are always signed.
fn request(ctx: &Ctx, cache: &mut Option<Signed>) -> Result<http::Request<Full<Bytes>>> {
    let t = &ctx.template;
    if ctx.sign_each || t.numbered.is_some() {
        return signed_request(ctx, SystemTime::now());
    }
    let second = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)?
        .as_secs();
    if let Some(c) = cache.as_ref().filter(|c| c.second == second) {
        let mut req = http::Request::builder()
            .method(t.method.clone())
            .uri(t.path_and_query.as_str())
            .body(Full::new(t.body.clone()))?;
        *req.headers_mut() = c.headers.clone();
        return Ok(req);
    }
    let req = signed_request(ctx, SystemTime::UNIX_EPOCH + Duration::from_secs(second))?;
    *cache = Some(Signed {
        second,
        headers: req.headers().clone(),
    });
    Ok(req)
}

/// Build the workload's request and sign it with SigV4 at `time`.
fn signed_request(ctx: &Ctx, time: SystemTime) -> Result<http::Request<Full<Bytes>>> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let t = &ctx.template;
    let body = match &t.numbered {
        Some(prefix) => {
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Bytes::from(format!("{prefix}{n}&Version=2010-05-08"))
        }
        None => t.body.clone(),
    };
    let mut settings = SigningSettings::default();
    if t.service == "s3" {
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    let params = v4::SigningParams::builder()
        .identity(&ctx.identity)
        .region(&ctx.region)
        .name(t.service)
        .time(time)
        .settings(settings)
        .build()?
        .into();
    let url = format!("http://{}{}", ctx.host, t.path_and_query);
    let mut headers: Vec<(&str, &str)> = vec![("host", ctx.host.as_str())];
    if let Some(ct) = t.content_type {
        headers.push(("content-type", ct));
    }
    let signable = SignableRequest::new(
        t.method.as_str(),
        url,
        headers.iter().copied(),
        SignableBody::Bytes(&body),
    )?;
    let (instructions, _sig) = sign(signable, &params)?.into_parts();
    let mut b = http::Request::builder()
        .method(t.method.clone())
        .uri(t.path_and_query.as_str())
        .header(http::header::HOST, ctx.host.as_str())
        .header(http::header::USER_AGENT, "keycard-loadgen/0.1");
    if let Some(ct) = t.content_type {
        b = b.header(http::header::CONTENT_TYPE, ct);
    }
    let mut req = b.body(Full::new(body))?;
    instructions.apply_to_request_http1x(&mut req);
    Ok(req)
}

/// SigV4/S3 URI encoding of one path segment (or a key, keeping '/').
fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Parse an http:// endpoint and insist that it is on loopback.
fn loopback_target(endpoint: &str) -> Result<(SocketAddr, String)> {
    let uri: http::Uri = endpoint.parse().context("parsing --endpoint")?;
    if uri.scheme_str() != Some("http") {
        bail!("--endpoint must be an http:// URL");
    }
    let auth = uri.authority().context("--endpoint has no host")?;
    let host = auth.host().trim_start_matches('[').trim_end_matches(']');
    let port = auth.port_u16().unwrap_or(80);
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {host}"))?
        .collect();
    let addr = addrs
        .iter()
        .copied()
        .find(|a| a.ip().is_ipv4())
        .or_else(|| addrs.first().copied())
        .context("endpoint resolves to no address")?;
    if !addrs.iter().all(|a| is_loopback(a.ip())) {
        bail!("refusing to load-test {endpoint}: only loopback targets are allowed");
    }
    Ok((addr, auth.as_str().to_string()))
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback(),
    }
}

// ------------------------------------------------------------- startup mode

fn startup(a: StartupArgs) -> Result<()> {
    if a.runs == 0 || a.runs > 100 {
        bail!("--runs must be in 1..=100");
    }
    let mut startup_us = Vec::with_capacity(a.runs);
    let mut rss_kb = Vec::with_capacity(a.runs);
    for i in 0..a.runs {
        let (us, kb) = startup_once(&a, i)?;
        startup_us.push(us);
        rss_kb.push(kb);
    }
    let ms: Vec<f64> = startup_us.iter().map(|u| *u as f64 / 1000.0).collect();
    let out = json!({
        "mode": "startup",
        "runs": a.runs,
        "startup_ms": ms.iter().map(|m| (m * 100.0).round() / 100.0).collect::<Vec<_>>(),
        "startup_ms_median": (median(&ms) * 100.0).round() / 100.0,
        "startup_ms_max": (ms.iter().copied().fold(0.0, f64::max) * 100.0).round() / 100.0,
        "idle_rss_kb": rss_kb,
        "idle_rss_mb_median": (median(&rss_kb.iter().map(|k| *k as f64 / 1024.0).collect::<Vec<_>>()) * 10.0).round() / 10.0,
        "idle_ms": a.idle_ms,
    });
    println!("{out}");
    Ok(())
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() { 0.0 } else { s[s.len() / 2] }
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// One fresh start-up: returns (µs to first answered request, VmRSS kB when idle).
fn startup_once(a: &StartupArgs, i: usize) -> Result<(u64, u64)> {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)?
        .as_nanos();
    let dir = std::env::temp_dir().join(format!(
        "keycard-startup-{}-{}-{i}",
        std::process::id(),
        nanos
    ));
    let port = free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = match &a.server_cpus {
        Some(cpus) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpus).arg(&a.keycard_bin);
            c
        }
        None => Command::new(&a.keycard_bin),
    };
    cmd.arg("serve")
        .arg("--listen")
        .arg(&listen)
        .arg("--data-dir")
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let t0 = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("spawning {}", a.keycard_bin.display()))?;
    let addr: SocketAddr = listen.parse()?;
    let deadline = t0 + Duration::from_secs(10);
    let result = loop {
        if health_ok(addr, &listen) {
            break Ok(t0.elapsed());
        }
        if let Some(st) = child.try_wait()? {
            break Err(anyhow::anyhow!("keycard exited before answering: {st}"));
        }
        if Instant::now() > deadline {
            break Err(anyhow::anyhow!("keycard did not answer within 10 s"));
        }
        std::thread::sleep(Duration::from_micros(100));
    };
    let rss = match &result {
        Ok(_) => {
            std::thread::sleep(Duration::from_millis(a.idle_ms));
            vm_rss_kb(child.id())
        }
        Err(_) => Ok(0),
    };
    // SIGTERM for a clean shutdown; SIGKILL if it lingers.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let stop_deadline = Instant::now() + Duration::from_secs(5);
    while child.try_wait()?.is_none() {
        if Instant::now() > stop_deadline {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = std::fs::remove_dir_all(&dir);
    let elapsed = result?;
    Ok((elapsed.as_micros() as u64, rss?))
}

/// GET /_keycard/health over a fresh connection; true on HTTP 200.
fn health_ok(addr: SocketAddr, host: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = StdTcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_nodelay(true);
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET /_keycard/health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        match s.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    buf[..n].starts_with(b"HTTP/1.1 200")
}

fn vm_rss_kb(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix("VmRSS:") {
            let kb = rest
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .context("parsing VmRSS")?;
            return Ok(kb);
        }
    }
    bail!("no VmRSS in /proc/{pid}/status")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets() {
        assert!(loopback_target("http://127.0.0.1:9000").is_ok());
        assert!(loopback_target("http://127.1.2.3:9000").is_ok());
        assert!(loopback_target("http://[::1]:9000").is_ok());
        assert!(loopback_target("http://localhost:9000").is_ok());
        assert!(loopback_target("http://10.0.0.1:9000").is_err());
        assert!(loopback_target("http://192.168.1.1").is_err());
        assert!(loopback_target("https://127.0.0.1:9000").is_err());
        let (addr, host) = loopback_target("http://127.0.0.1:9000").unwrap();
        assert_eq!(addr.port(), 9000);
        assert_eq!(host, "127.0.0.1:9000");
    }

    #[test]
    fn s3_uri_encoding() {
        assert_eq!(uri_encode("bench-bucket", false), "bench-bucket");
        assert_eq!(uri_encode("a b/c+d~", true), "a%20b/c%2Bd~");
        assert_eq!(uri_encode("a/b", false), "a%2Fb");
    }

    fn ctx(workload: &str) -> Ctx {
        let template = match workload {
            "s3" => Template {
                method: http::Method::GET,
                path_and_query: "/bench-bucket/k".into(),
                body: Bytes::new(),
                numbered: None,
                content_type: None,
                service: "s3",
            },
            _ => Template {
                method: http::Method::POST,
                path_and_query: "/".into(),
                body: Bytes::from_static(b"Action=GetCallerIdentity&Version=2011-06-15"),
                numbered: None,
                content_type: Some("application/x-www-form-urlencoded; charset=utf-8"),
                service: "sts",
            },
        };
        Ctx {
            addr: "127.0.0.1:9000".parse().unwrap(),
            host: "127.0.0.1:9000".into(),
            region: "us-east-1".into(),
            identity: Credentials::new("AKIDEXAMPLE", "secret", None, None, "t").into(),
            template,
            sign_each: false,
        }
    }

    #[test]
    fn requests_are_signed() {
        let r = signed_request(&ctx("s3"), SystemTime::now()).unwrap();
        let auth = r.headers()["authorization"].to_str().unwrap();
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"));
        assert!(auth.contains("/us-east-1/s3/aws4_request"));
        assert!(auth.contains("SignedHeaders=host;x-amz-content-sha256;x-amz-date"));
        assert_eq!(r.uri(), "/bench-bucket/k");
        assert_eq!(r.headers()["host"], "127.0.0.1:9000");
        assert!(r.headers().contains_key("x-amz-date"));

        let r = signed_request(&ctx("sts"), SystemTime::now()).unwrap();
        let auth = r.headers()["authorization"].to_str().unwrap();
        assert!(auth.contains("/us-east-1/sts/aws4_request"));
        assert!(auth.contains("SignedHeaders=content-type;host;x-amz-date"));
    }

    /// A second's requests carry that second's signature; a new second
    /// signs again; `--sign-each` never reuses.
    #[test]
    fn signatures_are_reused_only_within_their_second() {
        let c = ctx("s3");
        let auth = |r: &http::Request<Full<Bytes>>| r.headers()["authorization"].clone();
        let mut cache = None;
        let first = request(&c, &mut cache).unwrap();
        let second = cache.as_ref().unwrap().second;
        let again = request(&c, &mut cache).unwrap();
        if cache.as_ref().unwrap().second == second {
            assert_eq!(auth(&first), auth(&again));
            assert_eq!(first.headers(), again.headers());
            assert_eq!(again.uri(), "/bench-bucket/k");
        }
        // The clock moved on (as far as the cache knows): signed afresh,
        // for the current second.
        cache.as_mut().unwrap().second -= 5;
        cache.as_mut().unwrap().headers.remove("authorization");
        let later = request(&c, &mut cache).unwrap();
        assert!(later.headers().contains_key("authorization"));
        assert!(cache.as_ref().unwrap().second >= second);

        let each = Ctx {
            sign_each: true,
            ..ctx("s3")
        };
        let mut none = None;
        request(&each, &mut none).unwrap();
        assert!(none.is_none(), "--sign-each keeps nothing");
    }

    #[test]
    fn vm_rss_of_self() {
        assert!(vm_rss_kb(std::process::id()).unwrap() > 0);
        assert!(proc_ticks("self").is_some());
    }
}
